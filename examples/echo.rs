//! A sharded TCP echo server: one `SO_REUSEPORT` listener per core.
//!
//! `Runtime::run_on_shards` runs one copy of the server on every core, in
//! that core's root partition. Each copy binds its own listener to the same
//! port with `TcpListener::bind_reuseport`, so the kernel spreads incoming
//! connections over the cores, and every connection is served by a
//! `spawn_local` task on the core that accepted it: nothing is shared
//! between cores, the thread-per-core way.
//!
//! ```text
//! cargo run --release --example echo [-- ADDR]           # serve until SIGTERM or Ctrl-C
//! nc 127.0.0.1 7878                                       # try it
//! cargo run --release --example echo -- --selftest [ADDR] [CONNS] [MIB]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:7878` (with `--selftest`, to a free port on
//! `127.0.0.1`). Without `--selftest` it serves until SIGTERM or Ctrl-C
//! (`fairloop::signal`, listened for before the address is announced):
//! then every shard stops accepting, and `Runtime::shutdown_graceful`
//! gives each open connection up to 5 s to write back what it has read
//! before it is closed; the program exits with status 0. With
//! `--selftest` (or `ECHO_SELFTEST=1`), the program starts the server,
//! runs `CONNS` client connections (default 32) from plain std threads,
//! each sending `MIB` MiB (default 8) of a known pattern while a second
//! thread reads the echo back and checks every byte, then prints the
//! throughput and how many connections each core accepted, stops the
//! server and exits with status 0 (1 if any byte was wrong).

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use fairloop::net::{TcpListener, TcpStream};
use fairloop::signal::StopSignals;
use fairloop::{shutdown, time, Runtime};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// How long open connections get to finish once the server stops.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

fn main() -> io::Result<()> {
    let mut selftest = std::env::var_os("ECHO_SELFTEST").is_some_and(|v| v != "0");
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--selftest" => selftest = true,
            "-h" | "--help" => {
                println!("usage: echo [--selftest] [ADDR] [CONNS] [MIB]");
                return Ok(());
            }
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let addr = positional.next().unwrap_or_else(|| {
        if selftest {
            "127.0.0.1:0".to_owned()
        } else {
            DEFAULT_ADDR.to_owned()
        }
    });
    let conns: usize = positional
        .next()
        .map(|s| s.parse().expect("CONNS must be a whole number"))
        .unwrap_or(32);
    let mib: usize = positional
        .next()
        .map(|s| s.parse().expect("MIB must be a whole number"))
        .unwrap_or(8);

    let rt = Runtime::builder().build()?;
    // Bind the first listener here, so that a bad address is reported at
    // once and a port of 0 becomes a concrete port the other shards share.
    let first = TcpListener::bind_reuseport(addr.as_str())?;
    let addr = first.local_addr()?;
    // Serving until told to stop: from here on SIGTERM and SIGINT are ours
    // to handle, before anyone learns the address.
    let signals = if selftest {
        None
    } else {
        Some(StopSignals::new()?)
    };
    println!(
        "echo: listening on {addr} with one SO_REUSEPORT listener on each of {} cores",
        rt.cores()
    );

    // What makes every shard stop accepting: the self-test's end, or a
    // signal.
    let stop = Arc::new(Stop::default());
    let client = selftest.then(|| {
        let stop = stop.clone();
        thread::spawn(move || {
            let result = selftest_clients(addr, conns, mib << 20);
            stop.set();
            result
        })
    });
    if let Some(mut signals) = signals {
        let stop = stop.clone();
        thread::spawn(move || {
            let why = future::block_on(signals.recv());
            println!("echo: {why}: stopped accepting; finishing the open connections");
            stop.set();
        });
    }

    let first = Mutex::new(Some(first));
    let accepted = rt.run_on_shards(move |core| {
        // Whichever shard starts first takes the listener bound above; the
        // others bind their own to the same port.
        let listener = first.lock().unwrap().take();
        let stop = stop.clone();
        async move {
            let listener = match listener {
                Some(l) => l,
                None => TcpListener::bind_reuseport(addr)?,
            };
            // Serve until stopped; the listener closes with this future.
            let accepted = Rc::new(Cell::new(0u64));
            future::or(serve(listener, core, accepted.clone()), async {
                stop.wait().await;
                Ok(())
            })
            .await?;
            Ok::<_, io::Error>(accepted.get())
        }
    });
    // The connections still open finish what they read, then close.
    let stopped = rt.shutdown_graceful(SHUTDOWN_DEADLINE);
    println!(
        "echo: stopped: {} connection(s) closed, {} cut off at the deadline",
        stopped.completed, stopped.cancelled
    );
    let accepted: Vec<u64> = accepted.into_iter().collect::<io::Result<_>>()?;
    let Some(client) = client else {
        println!("echo: connections accepted per core: {accepted:?}");
        return Ok(());
    };
    let report = client.join().expect("client thread panicked");
    match report {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64();
            println!(
                "selftest: {conns} connections echoed {:.1} MiB in {:.2} s: {:.1} MiB/s \
                 ({:.1} MiB/s each way), every byte checked",
                (2 * r.bytes) as f64 / (1 << 20) as f64,
                secs,
                (2 * r.bytes) as f64 / (1 << 20) as f64 / secs,
                r.bytes as f64 / (1 << 20) as f64 / secs,
            );
            println!("selftest: connections accepted per core: {accepted:?}");
            Ok(())
        }
        Err(e) => {
            eprintln!("selftest FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A one-shot stop: set from any thread, awaited by the shards.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    /// One waker per waiting shard.
    wakers: Mutex<Vec<Waker>>,
}

impl Stop {
    /// Sets the stop and wakes every waiter.
    fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        for w in std::mem::take(&mut *self.wakers.lock().unwrap()) {
            w.wake();
        }
    }

    /// Resolves once the stop is set. The flag is checked again after the
    /// waker is stored, under the same lock `set` takes, so no wake is
    /// lost.
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.lock().unwrap();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            drop(wakers);
            if self.set.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Accepts connections until dropped (when the server stops), echoing each
/// in its own task on this core
/// and counting them in `accepted` (an `Rc`: this future never leaves its
/// core).
async fn serve(listener: TcpListener, core: usize, accepted: Rc<Cell<u64>>) -> io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                accepted.set(accepted.get() + 1);
                // `spawn_local`: the task never leaves this core, so it
                // need not be `Send`.
                fairloop::spawn_local(async move {
                    if let Err(e) = echo(stream).await {
                        eprintln!("echo (core {core}): connection ended with {e}");
                    }
                })
                .detach();
            }
            // Out of file descriptors and the like: back off, keep going.
            Err(e) => {
                eprintln!("echo (core {core}): accept failed: {e}");
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Writes back everything it reads, until the peer closes its side or the
/// runtime is shutting down; then closes ours.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // What has arrived wins over the shutdown: it is echoed first.
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            shutdown::requested().await;
            None
        })
        .await;
        let n = match read {
            Some(n) => n?,
            None => 0,
        };
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// What the self-test's clients did.
struct Report {
    /// Bytes sent (and received back) over all connections.
    bytes: usize,
    elapsed: Duration,
}

/// The byte at offset `i` of connection `conn`'s stream: a pattern that
/// differs between connections and does not repeat every 256 bytes.
fn pattern(conn: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8) ^ conn.wrapping_mul(97)) as u8
}

/// Runs `conns` blocking client connections at once, each sending `bytes`
/// bytes and checking the echo.
fn selftest_clients(addr: SocketAddr, conns: usize, bytes: usize) -> io::Result<Report> {
    let start = Instant::now();
    let clients: Vec<_> = (0..conns)
        .map(|conn| thread::spawn(move || one_client(addr, conn, bytes)))
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.join().expect("client panicked")?;
    }
    Ok(Report {
        bytes: total,
        elapsed: start.elapsed(),
    })
}

/// One connection: a writer thread sends the pattern in uneven chunks (so
/// bytes stay in flight both ways) while this thread reads and checks.
fn one_client(addr: SocketAddr, conn: usize, bytes: usize) -> io::Result<usize> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut sent = 0;
        let mut chunk = Vec::new();
        while sent < bytes {
            let len = (1 + (sent * 7 + conn * 13) % 40_000).min(bytes - sent);
            chunk.clear();
            chunk.extend((sent..sent + len).map(|i| pattern(conn, i)));
            writer.write_all(&chunk)?;
            sent += len;
        }
        // End of stream: the server closes its side once it echoed it all.
        writer.shutdown(Shutdown::Write)
    });

    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            let want = pattern(conn, received + k);
            if b != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "connection {conn}: byte {} is {b:#04x}, expected {want:#04x}",
                        received + k
                    ),
                ));
            }
        }
        received += n;
    }
    sender.join().expect("sender panicked")?;
    if received != bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection {conn}: {received} bytes echoed of {bytes} sent"),
        ));
    }
    Ok(received)
}
