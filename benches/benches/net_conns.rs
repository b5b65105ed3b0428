//! Connection scale: server memory per idle connection, with
//! `NET_IDLE_CONNS` (default 10,000) connections held open to a one-core
//! fairloop server and to a tokio `current_thread` server (and, as the
//! floor, the hand-written mio loop).
//!
//! The server is `net_server echo RUNTIME --buf 64`: each connection is a
//! task (a slab entry for mio) waiting in `read` with a 64-byte heap
//! buffer, so the figure is the runtime's own cost per connection (task,
//! IO registration, buffer) and not a big read buffer. `NET_IDLE_BUF`
//! sets another buffer size (e.g. 8192, a typical HTTP read buffer: then
//! every server holds that much per connection, and what a runtime adds
//! on top of it shows). `fairloop-epoll` is fairloop with
//! `io_uring(false)`. Kernel socket
//! memory is not in RSS. This process opens the connections one by one
//! from plain blocking sockets and makes each echo one byte before the
//! next, so each is accepted and its task has polled (and parked) once.
//! RSS is the server's `VmRSS` before and after, from `/proc/<pid>/status`.
//!
//! ```text
//! cargo bench -p fairloop-benches --bench net_conns [-- fairloop|tokio|mio]
//! ```
//!
//! Both processes raise `RLIMIT_NOFILE` to its hard limit (10,000
//! connections need more than 10,000 descriptors on each side).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fairloop_benches::machine;
use fairloop_benches::net::{loadavg, raise_nofile, selected, Server};

const SERVER: &str = env!("CARGO_BIN_EXE_net_server");

struct Row {
    runtime: &'static str,
    conns: usize,
    rss0: u64,
    rss_half: u64,
    rss1: u64,
    open: Duration,
}

impl Row {
    fn per_conn(&self) -> f64 {
        (self.rss1 as f64 - self.rss0 as f64) / self.conns as f64
    }
    fn slope(&self) -> f64 {
        (self.rss1 as f64 - self.rss_half as f64) / (self.conns - self.conns / 2) as f64
    }
}

fn main() {
    let nofile = raise_nofile();
    let conns: usize = std::env::var("NET_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!(
        "net_conns: {} | {conns} idle connections, {} B read buffers | RLIMIT_NOFILE {nofile} | \
         load average: {}",
        machine(),
        std::env::var("NET_IDLE_BUF").unwrap_or_else(|_| "64".to_owned()),
        loadavg()
    );
    let mut rows = Vec::new();
    for runtime in ["fairloop", "fairloop-epoll", "tokio", "mio"] {
        if !selected(runtime) {
            continue;
        }
        match run(runtime, conns) {
            Ok(r) => {
                println!(
                    "  {runtime:<9} RSS {:.1} MiB -> {:.1} MiB: {:.0} B per connection \
                     (second half: {:.0} B); opened in {:.2} s",
                    r.rss0 as f64 / (1 << 20) as f64,
                    r.rss1 as f64 / (1 << 20) as f64,
                    r.per_conn(),
                    r.slope(),
                    r.open.as_secs_f64()
                );
                rows.push(r);
            }
            Err(e) => println!("  {runtime:<9} FAILED: {e}"),
        }
    }
    println!();
    println!("| server | connections | RSS before | RSS after | B per connection | B per connection, second half |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.0} | {:.0} |",
            r.runtime,
            r.conns,
            r.rss0 as f64 / (1 << 20) as f64,
            r.rss1 as f64 / (1 << 20) as f64,
            r.per_conn(),
            r.slope()
        );
    }
    if let (Some(f), Some(t)) = (
        rows.iter().find(|r| r.runtime == "fairloop"),
        rows.iter().find(|r| r.runtime == "tokio"),
    ) {
        println!();
        println!(
            "RSS per connection fairloop / tokio = {:.2} (below 1.0: fairloop uses less)",
            f.per_conn() / t.per_conn()
        );
    }
}

fn run(runtime: &'static str, conns: usize) -> std::io::Result<Row> {
    let buf = std::env::var("NET_IDLE_BUF").unwrap_or_else(|_| "64".to_owned());
    let server = Server::start(SERVER, &["echo", runtime, "--buf", &buf])?;
    let addr = server.addrs[0];
    // One connection first, so one-time costs (the first registration,
    // the first task) are in the baseline.
    let mut held = Vec::with_capacity(conns);
    ping(&mut open(addr)?)?;
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = server.rss();
    let start = Instant::now();
    let mut rss_half = 0;
    for i in 0..conns {
        if i == conns / 2 {
            std::thread::sleep(Duration::from_millis(100));
            rss_half = server.rss();
        }
        let mut s = open(addr)?;
        ping(&mut s)?;
        held.push(s);
    }
    let open_time = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let rss1 = server.rss();
    // Every connection still answers.
    for s in held.iter_mut().step_by(997) {
        ping(s)?;
    }
    drop(held);
    drop(server);
    Ok(Row {
        runtime,
        conns,
        rss0,
        rss_half,
        rss1,
        open: open_time,
    })
}

fn open(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One byte out, the same byte back.
fn ping(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    if b[0] != b'x' {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}
