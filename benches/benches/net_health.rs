//! `/health` latency while `/work` is saturated, one core: fairloop (api
//! and healthcheck partitions, the latter with `.latency(1 ms)`) against
//! tokio `current_thread` running the same handlers.
//!
//! The server is a child process (`net_server http RUNTIME`): `/work` fans
//! out into 8 sub-tasks of fixed CPU work (about 200 µs each) and answers
//! when all are done; `/health` answers `ok`, on its own port. This process
//! is the client: `NET_WORK_CONNS` (default 128) keep-alive connections
//! send `/work` back to back from a tokio `multi_thread` runtime (2
//! workers), and every 10 ms a new plain thread opens a *fresh* connection
//! and asks `/health` (open loop: a slow probe does not delay the next).
//! A probe's latency runs from `connect` to the last byte of the response.
//!
//! ```text
//! cargo bench -p fairloop-benches --bench net_health [-- fairloop|tokio]
//! ```
//!
//! `NET_WARMUP` s (default 0.5) of flood before probing starts, then
//! `NET_SECS` s (default 4) of probes and `/work` counting.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fairloop_benches::net::{http, loadavg, raise_nofile, secs_from_env, selected, Server};
use fairloop_benches::{machine, ms, quantile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = env!("CARGO_BIN_EXE_net_server");
const PROBE_EVERY: Duration = Duration::from_millis(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Row {
    runtime: &'static str,
    probes: Vec<Duration>,
    failures: Vec<String>,
    work: u64,
    elapsed: Duration,
    server_cpu: Duration,
}

impl Row {
    fn work_rps(&self) -> f64 {
        self.work as f64 / self.elapsed.as_secs_f64()
    }
    fn p99(&self) -> Duration {
        quantile(&self.probes, 0.99)
    }
}

fn main() {
    raise_nofile();
    let conns: usize = std::env::var("NET_WORK_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let warmup = secs_from_env("NET_WARMUP", 0.5);
    let secs = secs_from_env("NET_SECS", 4.0);
    println!(
        "net_health: {} | {conns} /work connections, /health probe every {:?} on a fresh \
         connection | {:.1} s flood before probing, {:.1} s measured | load average before: {}",
        machine(),
        PROBE_EVERY,
        warmup.as_secs_f64(),
        secs.as_secs_f64(),
        loadavg()
    );
    let mut rows = Vec::new();
    for runtime in ["fairloop", "tokio"] {
        if !selected(runtime) {
            continue;
        }
        match run(runtime, conns, warmup, secs) {
            Ok(r) => {
                println!(
                    "  {runtime:<9} /health: {} probes, p50 {} ms  p99 {} ms  max {} ms, {} failed | \
                     /work {:.0} req/s | server CPU {:.2} s/s",
                    r.probes.len(),
                    ms(quantile(&r.probes, 0.5)),
                    ms(r.p99()),
                    ms(quantile(&r.probes, 1.0)),
                    r.failures.len(),
                    r.work_rps(),
                    r.server_cpu.as_secs_f64() / r.elapsed.as_secs_f64()
                );
                for f in r.failures.iter().take(3) {
                    println!("    failed probe: {f}");
                }
                rows.push(r);
            }
            Err(e) => println!("  {runtime:<9} FAILED: {e}"),
        }
    }
    println!("load average after: {}", loadavg());
    println!();
    println!(
        "| server | probes | /health p50 ms | p99 ms | max ms | failed | /work req/s | server CPU (s/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} |",
            r.runtime,
            r.probes.len(),
            ms(quantile(&r.probes, 0.5)),
            ms(r.p99()),
            ms(quantile(&r.probes, 1.0)),
            r.failures.len(),
            r.work_rps(),
            r.server_cpu.as_secs_f64() / r.elapsed.as_secs_f64()
        );
    }
    if let (Some(f), Some(t)) = (
        rows.iter().find(|r| r.runtime == "fairloop"),
        rows.iter().find(|r| r.runtime == "tokio"),
    ) {
        println!();
        println!(
            "p99 tokio / fairloop = {:.1}x (criterion >= 10x, fairloop p99 <= 5 ms: {}); \
             /work fairloop / tokio = {:.3} (criterion within 10 %)",
            t.p99().as_secs_f64() / f.p99().as_secs_f64().max(1e-12),
            if f.p99() <= Duration::from_millis(5) {
                "yes"
            } else {
                "no"
            },
            f.work_rps() / t.work_rps()
        );
    }
}

fn run(
    runtime: &'static str,
    conns: usize,
    warmup: Duration,
    secs: Duration,
) -> std::io::Result<Row> {
    let server = Server::start(SERVER, &["http", runtime])?;
    let (api, health) = (server.addrs[0], server.addrs[1]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let workers = rt.block_on(async {
        let mut v = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(api).await?;
            s.set_nodelay(true)?;
            v.push(tokio::spawn(work_client(s, phase.clone())));
        }
        Ok::<_, std::io::Error>(v)
    })?;
    std::thread::sleep(warmup);

    let results: Arc<Mutex<(Vec<Duration>, Vec<String>)>> = Arc::default();
    let cpu0 = server.cpu_time();
    let t0 = Instant::now();
    phase.store(MEASURE, Ordering::Release);
    let mut probes = Vec::new();
    let mut next = t0;
    while t0.elapsed() < secs {
        let results = results.clone();
        probes.push(std::thread::spawn(move || {
            let start = Instant::now();
            let r = probe(health);
            let took = start.elapsed();
            let mut g = results.lock().unwrap();
            match r {
                Ok(()) => g.0.push(took),
                Err(e) => g.1.push(format!("{e} after {took:?}")),
            }
        }));
        next += PROBE_EVERY;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    phase.store(STOP, Ordering::Release);
    let elapsed = t0.elapsed();
    let cpu1 = server.cpu_time();
    for p in probes {
        let _ = p.join();
    }
    let mut work = 0;
    rt.block_on(async {
        for w in workers {
            match w.await {
                Ok(Ok(n)) => work += n,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    })?;
    drop(rt);
    drop(server);
    let (mut ok, failures) = std::mem::take(&mut *results.lock().unwrap());
    ok.sort_unstable();
    Ok(Row {
        runtime,
        probes: ok,
        failures,
        work,
        elapsed,
        server_cpu: cpu1.saturating_sub(cpu0),
    })
}

/// One `/work` connection: requests back to back; returns how many
/// completed inside the measurement window.
async fn work_client(mut s: tokio::net::TcpStream, phase: Arc<AtomicU8>) -> std::io::Result<u64> {
    let req = b"GET /work HTTP/1.1\r\nhost: bench\r\n\r\n";
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut done = 0;
    loop {
        let p = phase.load(Ordering::Acquire);
        if p == STOP {
            return Ok(done);
        }
        s.write_all(req).await?;
        buf.clear();
        let status = loop {
            if let Some((status, len)) =
                http::parse_response(&buf).map_err(std::io::Error::other)?
            {
                buf.drain(..len);
                break status;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if status != 200 {
            return Err(std::io::Error::other(format!("/work answered {status}")));
        }
        if p == MEASURE && phase.load(Ordering::Acquire) == MEASURE {
            done += 1;
        }
    }
}

/// One `/health` probe on a fresh connection, from `connect` to the whole
/// response.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(b"GET /health HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some((status, _)) = http::parse_response(&buf).map_err(std::io::Error::other)? {
            return if status == 200 && buf.ends_with(b"ok\n") {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("/health answered {status}")))
            };
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
