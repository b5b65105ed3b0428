//! Scaling over cores: TCP echo and hyper "hello" on 1, 2, 4, ... N server
//! cores, fairloop sharded against tokio `multi_thread(N)`: requests/s and
//! requests per second of *server* CPU time at each core count.
//!
//! The servers are child processes (`net_server echo|hyper RUNTIME --cores
//! N`):
//!
//! * `fairloop`: `cores(N)`, unpinned (`SCALE_PIN=1` pins them), the
//!   thread-per-core way: one `SO_REUSEPORT` listener per core, all bound
//!   before the client connects, so the kernel hashes the connections over
//!   the cores; every connection stays on the core that accepted it
//!   (`run_on_shards`, `spawn_local`), with no stealing.
//! * `tokio`: `multi_thread` with `N` workers and one listener; the work
//!   stealing balances the connections over the workers.
//!
//! Even at one core these are the multi-core servers (tokio
//! `multi_thread(1)`, not `current_thread`), so each curve is of one kind;
//! `net_echo` and `net_http` measure the one-core servers.
//!
//! Workloads: `echo`, 64 B messages, the server reading into a 4 KiB
//! buffer (`SCALE_ECHO_BUF` bytes), driven by the Rust echo client of
//! `net_echo` ([`fairloop_benches::net::load`]); `hyper`, `GET /` answered
//! `Hello, World!`, driven by `wrk` when it is on `PATH` (else, or with
//! `NET_HTTP_CLIENT=rust`, the Rust HTTP client of `net_http`). Both are
//! closed loops on `NET_CONNS` connections (default 64, at every core
//! count).
//!
//! **The client's threads** at `N` server cores: `SCALE_CLIENT_THREADS`
//! if set, else `max(1, nproc - N)`: the client gets the CPUs the server
//! does not, so on a machine with at least `2N` CPUs client and server
//! never compete. Where `N > nproc / 2` they do, and the client cannot
//! keep `N` server cores busy: requests/s there is client-bound, and
//! requests per server CPU-second is the figure to read (the server's CPU
//! s/s says how busy it was). On the 2-CPU VM this means one client thread
//! (`wrk -t1`) at both 1 and 2 server cores.
//!
//! Each row: `NET_WARMUP` s of load (default 1; wrk rounds up to whole
//! seconds), then `NET_SECS` s measured (default 3). Server CPU is utime +
//! stime of the whole process from `/proc/<pid>/stat`; the per-round lines
//! also give each server thread's CPU s/s (largest first, those above
//! 0.01), which shows how evenly fairloop's `SO_REUSEPORT` shards share the
//! connections, and the client's CPU s/s (wrk's, or this process's), which
//! says when the client is the bottleneck. Core counts go up to `SCALE_MAX_CORES` (default `nproc`;
//! the last count is `SCALE_MAX_CORES` itself when it is not a power of
//! two). `NET_REPEAT` rounds (default 3), rotating the order of the
//! runtimes; medians [min-max], ratios within a round.
//!
//! ```text
//! cargo bench -p fairloop-benches --bench scaling [-- FILTER..]
//! SCALE_MAX_CORES=16 cargo bench -p fairloop-benches --bench scaling
//! ```
//!
//! Rows are named `WORKLOAD RUNTIME Nc` (`echo fairloop 2c`); a filter
//! picks rows by words: `hyper`, `tokio`, `4c`, `echo 1c`, ...

use std::time::Duration;

use fairloop_benches::machine;
use fairloop_benches::net::{
    env_usize, load, loadavg, raise_nofile, secs_from_env, selected, spread, HttpClient, Measured,
    Ratios, Server,
};

const SERVER: &str = env!("CARGO_BIN_EXE_net_server");
const WORKLOADS: [&str; 2] = ["echo", "hyper"];
const RUNTIMES: [&str; 2] = ["fairloop", "tokio"];
/// Echo message length.
const ECHO_SIZE: usize = 64;

struct Row {
    workload: &'static str,
    runtime: &'static str,
    cores: usize,
    round: usize,
    m: Measured,
}

/// 1, 2, 4, ... up to `max`, and `max` itself.
fn core_counts(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n <= max)
        .collect();
    if v.last() != Some(&max) && max > 0 {
        v.push(max);
    }
    v
}

struct Config {
    nproc: usize,
    conns: usize,
    warmup: Duration,
    secs: Duration,
    echo_buf: usize,
    pin: bool,
    client_threads: Option<usize>,
}

impl Config {
    fn client_threads(&self, cores: usize) -> usize {
        self.client_threads
            .unwrap_or_else(|| self.nproc.saturating_sub(cores))
            .max(1)
    }
}

fn main() {
    raise_nofile();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = env_usize("SCALE_MAX_CORES", nproc).max(1);
    let rounds = env_usize("NET_REPEAT", 3).max(1);
    let cfg = Config {
        nproc,
        conns: env_usize("NET_CONNS", 64),
        warmup: secs_from_env("NET_WARMUP", 1.0),
        secs: secs_from_env("NET_SECS", 3.0),
        echo_buf: env_usize("SCALE_ECHO_BUF", 4096),
        pin: std::env::var("SCALE_PIN").is_ok_and(|v| v == "1"),
        client_threads: std::env::var("SCALE_CLIENT_THREADS")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    // The kind of HTTP client (wrk or Rust); its threads vary with N.
    let http_kind = match HttpClient::choose(1, 1) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scaling: {e}");
            std::process::exit(2);
        }
    };
    let counts = core_counts(max);
    println!(
        "scaling: {} | server cores {counts:?} | echo {ECHO_SIZE} B messages, {} B server buffer, \
         Rust echo client | hyper \"hello\", client: {} | client threads: {} | fairloop cores {} | \
         {:.1} s warm-up + {:.1} s per row, {rounds} round(s) | load average before: {}",
        machine(),
        cfg.echo_buf,
        match http_kind {
            HttpClient::Wrk { .. } => format!("wrk -tT -c{} --latency", cfg.conns),
            HttpClient::Rust { .. } => format!(
                "Rust HTTP client, tokio multi_thread(T), {} connections",
                cfg.conns
            ),
        },
        match cfg.client_threads {
            Some(t) => format!("T = {t} (SCALE_CLIENT_THREADS)"),
            None => format!("T = max(1, {nproc} - N)"),
        },
        if cfg.pin { "pinned" } else { "unpinned" },
        cfg.warmup.as_secs_f64(),
        cfg.secs.as_secs_f64(),
        loadavg()
    );
    let mut rows = Vec::new();
    for round in 0..rounds {
        for &cores in &counts {
            for workload in WORKLOADS {
                for k in 0..RUNTIMES.len() {
                    let runtime = RUNTIMES[(k + round) % RUNTIMES.len()];
                    let name = format!("{workload} {runtime} {cores}c");
                    if !selected(&name) {
                        continue;
                    }
                    match run(workload, runtime, cores, &cfg, http_kind) {
                        Ok(m) => {
                            println!(
                                "  round {round} {name:<20} {:>9.0} req/s  server CPU {:>5.2} s/s \
                                 (threads {})  {:>9.0} req/CPU-s  p99 {:>8.1} µs  \
                                 client CPU {:.2} s/s{}",
                                m.rps(),
                                m.cpu_share(),
                                m.threads_share(),
                                m.per_cpu(),
                                m.p99.as_secs_f64() * 1e6,
                                m.client_share(),
                                if m.note.is_empty() {
                                    String::new()
                                } else {
                                    format!("  ({})", m.note)
                                }
                            );
                            rows.push(Row {
                                workload,
                                runtime,
                                cores,
                                round,
                                m,
                            });
                        }
                        Err(e) => println!("  round {round} {name:<20} SKIPPED: {e}"),
                    }
                }
            }
        }
    }
    println!("load average after: {}", loadavg());

    println!();
    println!("machine: {}", machine());
    println!(
        "| workload | server cores | server | req/s | req/s / 1 core | server CPU (s/s) | \
         req per server CPU-s | p99 µs |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    let med = |w: &str, r: &str, c: usize, f: &dyn Fn(&Measured) -> f64| -> Vec<f64> {
        rows.iter()
            .filter(|x| x.workload == w && x.runtime == r && x.cores == c)
            .map(|x| f(&x.m))
            .collect()
    };
    for workload in WORKLOADS {
        for &cores in &counts {
            for runtime in RUNTIMES {
                let rps = med(workload, runtime, cores, &|m| m.rps());
                if rps.is_empty() {
                    continue;
                }
                let base = fairloop_benches::net::median(&med(workload, runtime, 1, &|m| m.rps()));
                let speedup = if base.is_nan() {
                    "-".to_string()
                } else {
                    format!(
                        "{:.2}",
                        fairloop_benches::net::median(&rps) / base.max(1e-9)
                    )
                };
                println!(
                    "| {workload} | {cores} | {runtime} | {} | {speedup} | {} | {} | {} |",
                    spread(&rps, 0),
                    spread(&med(workload, runtime, cores, &|m| m.cpu_share()), 2),
                    spread(&med(workload, runtime, cores, &|m| m.per_cpu()), 0),
                    spread(
                        &med(workload, runtime, cores, &|m| m.p99.as_secs_f64() * 1e6),
                        1
                    ),
                );
            }
        }
    }
    println!();
    println!(
        "ratios fairloop / tokio, per round, median [min-max] (above 1.0: fairloop better; \
         for p99 the ratio is tokio / fairloop):"
    );
    for workload in WORKLOADS {
        for &cores in &counts {
            let pairs = Ratios::pairs(rounds, "tokio", |name, round| {
                rows.iter()
                    .find(|r| {
                        r.workload == workload
                            && r.runtime == name
                            && r.cores == cores
                            && r.round == round
                    })
                    .map(|r| &r.m)
            });
            if pairs.is_empty() {
                continue;
            }
            println!("  {workload:<5} {cores:>2} core(s): {}", Ratios::of(&pairs));
        }
    }
}

fn run(
    workload: &str,
    runtime: &str,
    cores: usize,
    cfg: &Config,
    http_kind: HttpClient,
) -> std::io::Result<Measured> {
    let cores_arg = cores.to_string();
    let buf_arg = cfg.echo_buf.to_string();
    let mut args = vec![workload, runtime, "--cores", &cores_arg];
    if workload == "echo" {
        args.extend(["--buf", &buf_arg]);
    }
    if cfg.pin && runtime == "fairloop" {
        args.push("--pin");
    }
    let server = Server::start(SERVER, &args)?;
    let addr = server.addrs[0];
    let threads = cfg.client_threads(cores);
    match workload {
        "echo" => load::run(
            &server,
            addr,
            load::Work::Echo { size: ECHO_SIZE },
            &load::Spec {
                conns: cfg.conns,
                threads,
                warmup: cfg.warmup,
                secs: cfg.secs,
                per_thread: true,
            },
        ),
        _ => {
            let client = match http_kind {
                HttpClient::Wrk { .. } => HttpClient::Wrk { threads },
                HttpClient::Rust { .. } => HttpClient::Rust { threads },
            };
            client.measure(&server, addr, cfg.conns, cfg.warmup, cfg.secs, true)
        }
    }
}
