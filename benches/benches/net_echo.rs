//! TCP echo on one core: requests/s, requests per second of *server* CPU
//! time, and per-request latency, for fairloop and its peers.
//!
//! This process is the client: a tokio `multi_thread` runtime
//! (`NET_CLIENT_THREADS` workers, default 2) drives `NET_CONNS` connections
//! (default 64). Each connection sends a message, waits for its full echo
//! (checking every byte), and repeats. The server is a child process
//! (`net_server echo RUNTIME`), one per configuration, so its utime + stime
//! from `/proc/<pid>/stat` is its CPU time and nothing else.
//!
//! ```text
//! cargo bench -p fairloop-benches --bench net_echo [-- FILTER..]
//! ```
//!
//! With `--features tokio-compat`, the row `fairloop-compat` is the same
//! fairloop server on a runtime with `Builder::tokio_compat(true)`.
//!
//! A filter picks rows by name (`fairloop`, `mio`, `64B`, ...). Each row
//! runs `NET_WARMUP` s (default 0.5) of warm-up, then `NET_SECS` s
//! (default 3) of measurement. `NET_REPEAT` (default 1) runs that many
//! rounds of every row, rotating the order of the servers, and reports
//! medians and ranges; ratios are taken within a round.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop_benches::net::{loadavg, raise_nofile, secs_from_env, selected, Server};
use fairloop_benches::{machine, quantile, us};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = env!("CARGO_BIN_EXE_net_server");
const RUNTIMES: [&str; 9] = [
    "fairloop",
    "fairloop-compat",
    "fairloop-epoll",
    "tokio",
    "monoio-legacy",
    "monoio-uring",
    "glommio",
    "mio",
    "mio-eagain",
];
const SIZES: [usize; 2] = [64, 1024];

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Row {
    runtime: &'static str,
    round: usize,
    size: usize,
    requests: u64,
    elapsed: Duration,
    server_cpu: Duration,
    p50: Duration,
    p99: Duration,
}

impl Row {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn per_cpu(&self) -> f64 {
        self.requests as f64 / self.server_cpu.as_secs_f64().max(1e-9)
    }
    fn cpu_share(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    raise_nofile();
    let conns = env_usize("NET_CONNS", 64);
    let threads = env_usize("NET_CLIENT_THREADS", 2);
    let rounds = env_usize("NET_REPEAT", 1).max(1);
    let warmup = secs_from_env("NET_WARMUP", 0.5);
    let secs = secs_from_env("NET_SECS", 3.0);
    println!(
        "net_echo: {} | {conns} connections, client: tokio multi_thread with {threads} workers | \
         {:.1} s warm-up + {:.1} s per row, {rounds} round(s) | load average before: {}",
        machine(),
        warmup.as_secs_f64(),
        secs.as_secs_f64(),
        loadavg()
    );
    let mut rows = Vec::new();
    for round in 0..rounds {
        for size in SIZES {
            // Each round starts with a different server, so that no server
            // always runs first (or last) in a size's series.
            for k in 0..RUNTIMES.len() {
                let runtime = RUNTIMES[(k + round) % RUNTIMES.len()];
                let name = format!("{runtime} {size}B");
                // `fairloop-compat` (tokio_compat on) needs the feature.
                let built = runtime != "fairloop-compat" || cfg!(feature = "tokio-compat");
                if !built || !selected(&name) {
                    continue;
                }
                match run(runtime, size, conns, threads, warmup, secs) {
                    Ok(mut r) => {
                        r.round = round;
                        println!(
                            "  round {round} {name:<20} {:>9.0} req/s  server CPU {:>5.2} s/s  \
                             {:>9.0} req/CPU-s  p50 {:>7} µs  p99 {:>7} µs",
                            r.rps(),
                            r.cpu_share(),
                            r.per_cpu(),
                            us(r.p50),
                            us(r.p99)
                        );
                        rows.push(r);
                    }
                    Err(e) => println!("  round {round} {name:<20} SKIPPED: {e}"),
                }
            }
        }
    }
    println!("load average after: {}", loadavg());

    // Medians over the rounds, with the range.
    println!();
    println!(
        "| server | msg | req/s | req per server CPU-s | server CPU (s/s) | p50 µs | p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        for runtime in RUNTIMES {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| r.runtime == runtime && r.size == size)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let col = |f: &dyn Fn(&Row) -> f64, digits: usize| {
                let v: Vec<f64> = mine.iter().map(|r| f(r)).collect();
                spread(&v, digits)
            };
            println!(
                "| {runtime} | {size} B | {} | {} | {} | {} | {} |",
                col(&|r| r.rps(), 0),
                col(&|r| r.per_cpu(), 0),
                col(&|r| r.cpu_share(), 2),
                col(&|r| r.p50.as_secs_f64() * 1e6, 1),
                col(&|r| r.p99.as_secs_f64() * 1e6, 1),
            );
        }
    }
    println!();
    println!(
        "ratios fairloop / peer, per round, median [min-max] (above 1.0: fairloop better; \
         for p99 the ratio is peer / fairloop):"
    );
    for size in SIZES {
        for peer in RUNTIMES.iter().filter(|&&r| r != "fairloop") {
            let pairs: Vec<(&Row, &Row)> = (0..rounds)
                .filter_map(|round| {
                    let find = |name: &str| {
                        rows.iter()
                            .find(|r| r.runtime == name && r.size == size && r.round == round)
                    };
                    Some((find("fairloop")?, find(peer)?))
                })
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let ratio = |f: &dyn Fn(&Row, &Row) -> f64| {
                let v: Vec<f64> = pairs.iter().map(|(a, b)| f(a, b)).collect();
                spread(&v, 3)
            };
            println!(
                "  {size:>4} B vs {peer:<14} req/s {}  req/CPU-s {}  p99 {}",
                ratio(&|f, p| f.rps() / p.rps()),
                ratio(&|f, p| f.per_cpu() / p.per_cpu()),
                ratio(&|f, p| p.p99.as_secs_f64() / f.p99.as_secs_f64().max(1e-12)),
            );
        }
    }
}

/// The median of `v`, and its range when there is more than one value.
fn spread(v: &[f64], digits: usize) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    if v.len() == 1 {
        format!("{med:.digits$}")
    } else {
        format!(
            "{med:.digits$} [{:.digits$}-{:.digits$}]",
            v[0],
            v[v.len() - 1]
        )
    }
}

fn run(
    runtime: &'static str,
    size: usize,
    conns: usize,
    threads: usize,
    warmup: Duration,
    secs: Duration,
) -> std::io::Result<Row> {
    let server = Server::start(SERVER, &["echo", runtime])?;
    let addr = server.addrs[0];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(conns);
        for c in 0..conns {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let phase = phase.clone();
            clients.push(tokio::spawn(client(s, c, size, phase)));
        }
        Ok::<_, std::io::Error>(clients)
    })?;
    std::thread::sleep(warmup);
    let cpu0 = server.cpu_time();
    let t0 = Instant::now();
    phase.store(MEASURE, Ordering::Release);
    std::thread::sleep(secs);
    phase.store(STOP, Ordering::Release);
    let elapsed = t0.elapsed();
    let cpu1 = server.cpu_time();
    let mut lat: Vec<Duration> = Vec::new();
    rt.block_on(async {
        for c in clients {
            match c.await {
                Ok(Ok(v)) => lat.extend(v.into_iter().map(|n| Duration::from_nanos(n as u64))),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    })?;
    drop(rt);
    drop(server);
    lat.sort_unstable();
    Ok(Row {
        runtime,
        round: 0,
        size,
        requests: lat.len() as u64,
        elapsed,
        server_cpu: cpu1.saturating_sub(cpu0),
        p50: quantile(&lat, 0.50),
        p99: quantile(&lat, 0.99),
    })
}

/// One connection: send, read the whole echo, check it, repeat; returns
/// the latencies (ns) of the requests completed while measuring.
async fn client(
    mut s: tokio::net::TcpStream,
    conn: usize,
    size: usize,
    phase: Arc<AtomicU8>,
) -> std::io::Result<Vec<u32>> {
    let msg: Vec<u8> = (0..size).map(|i| (i * 31 + conn * 7) as u8).collect();
    let mut back = vec![0u8; size];
    let mut lat = Vec::with_capacity(1 << 16);
    loop {
        let p = phase.load(Ordering::Acquire);
        if p == STOP {
            return Ok(lat);
        }
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        let took = t.elapsed();
        if back != msg {
            return Err(std::io::Error::other(format!(
                "connection {conn}: echo differs from what was sent"
            )));
        }
        // Count a request only if it started and ended inside the window
        // (edge effects: at most one request per connection at each end).
        if p == MEASURE && phase.load(Ordering::Acquire) == MEASURE {
            lat.push(took.as_nanos().min(u32::MAX as u128) as u32);
        }
    }
}
