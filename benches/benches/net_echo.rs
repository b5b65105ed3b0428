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
//! A filter picks rows by name (`fairloop`, `mio`, `64B`, ...). The
//! servers take turns: each row opens its connections, runs `NET_WARMUP` s
//! (default 0.5) of warm-up, then `NET_SECS` s (default 3) of measurement,
//! while the other servers wait idle (their CPU over the window is printed
//! as "idle CPU": 0.00 s/s expected). `NET_REPEAT` (default 1) runs that
//! many rounds of every row, rotating the order of the servers, and
//! reports medians and ranges; ratios are taken within a round. Rounds of
//! short rows put the two servers of a ratio in the same spell of the
//! shared machine. The rounds are split into `NET_INSTANCES` runs (default
//! 3, at most one per round), every server started afresh for each, so
//! that no process's own speed biases the whole result (see `net_http`).
//!
//! `NET_ECHO_BUF=BYTES` gives every server that read buffer (`net_server
//! echo RUNTIME --buf BYTES`; 4096 to 65536 are the issue's "reasonable
//! user buffers"); unset, the servers use their default of 16 KiB.
//!
//! `NET_BASELINE=PATH` adds the row `baseline`: the `fairloop` server of
//! another `net_server` build, to measure a change against the build
//! before it in the same run (`fairloop_benches::net::baseline_server`).
//!
//! The client is [`fairloop_benches::net::load`] (shared with the HTTP
//! benches' Rust client).

use fairloop_benches::net::{
    env_usize, instance_runs, load, loadavg, measure_in_turn, raise_nofile, secs_from_env,
    selected, Lineup, Measured, Ratios,
};
use fairloop_benches::{machine, us};

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

/// One server's run at one message size in one round.
struct Row {
    runtime: &'static str,
    round: usize,
    size: usize,
    m: Measured,
}

fn main() {
    raise_nofile();
    let conns = env_usize("NET_CONNS", 64);
    let threads = env_usize("NET_CLIENT_THREADS", 2);
    let rounds = env_usize("NET_REPEAT", 1).max(1);
    let warmup = secs_from_env("NET_WARMUP", 0.5);
    let secs = secs_from_env("NET_SECS", 3.0);
    let buf = std::env::var("NET_ECHO_BUF").ok().filter(|b| !b.is_empty());
    println!(
        "net_echo: {} | {conns} connections, client: tokio multi_thread with {threads} workers | \
         {:.1} s warm-up + {:.1} s per row, {rounds} round(s) | server read buffer: {} | \
         load average before: {}",
        machine(),
        warmup.as_secs_f64(),
        secs.as_secs_f64(),
        buf.as_deref()
            .map_or("16384 B (default)".into(), |b| format!("{b} B")),
        loadavg()
    );
    // `fairloop-compat` (tokio_compat on) needs the feature; a server
    // serves every message size.
    let lineup = Lineup::new(&RUNTIMES, |runtime| {
        (runtime != "fairloop-compat" || cfg!(feature = "tokio-compat"))
            && SIZES
                .iter()
                .any(|size| selected(&format!("{runtime} {size}B")))
    });
    let names = lineup.names();
    let spec = load::Spec {
        conns,
        threads,
        warmup,
        secs,
        per_thread: false,
    };
    let mut rows = Vec::new();
    for (run, run_rounds) in instance_runs(rounds).into_iter().enumerate() {
        let servers = lineup.start(run, SERVER, |runtime| {
            let mut args = vec!["echo".to_string(), runtime.to_string()];
            if let Some(b) = buf.as_deref() {
                args.extend(["--buf".to_string(), b.to_string()]);
            }
            args
        });
        for round in run_rounds {
            for size in SIZES {
                // Each round starts with a different server, so that no
                // server always runs first (or last) in a size's series.
                for k in 0..servers.len() {
                    let (runtime, server) = &servers[(k + round) % servers.len()];
                    let name = format!("{runtime} {size}B");
                    if !selected(&name) {
                        continue;
                    }
                    let measured = measure_in_turn(&servers, server, || {
                        load::run(server, server.addrs[0], load::Work::Echo { size }, &spec)
                    });
                    match measured {
                        Ok((m, idle)) => {
                            println!(
                                "  round {round} {name:<20} {:>9.0} req/s  server CPU {:>5.2} s/s  \
                                 {:>9.0} req/CPU-s  p50 {:>7} µs  p99 {:>7} µs  \
                                 idle CPU {idle:>4.2} s/s",
                                m.rps(),
                                m.cpu_share(),
                                m.per_cpu(),
                                us(m.p50),
                                us(m.p99)
                            );
                            rows.push(Row {
                                runtime,
                                round,
                                size,
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

    // Medians over the rounds, with the range.
    println!();
    println!(
        "| server | msg | req/s | req per server CPU-s | server CPU (s/s) | p50 µs | p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        for &runtime in names {
            let mine: Vec<&Measured> = rows
                .iter()
                .filter(|r| r.runtime == runtime && r.size == size)
                .map(|r| &r.m)
                .collect();
            if mine.is_empty() {
                continue;
            }
            println!(
                "| {runtime} | {size} B | {} |",
                Measured::median_cells(&mine)
            );
        }
    }
    println!();
    println!(
        "ratios fairloop / peer, per round, median [min-max] (above 1.0: fairloop better; \
         for p99 the ratio is peer / fairloop):"
    );
    for size in SIZES {
        for peer in names.iter().filter(|&&r| r != "fairloop") {
            let pairs = Ratios::pairs(rounds, peer, |name, round| {
                rows.iter()
                    .find(|r| r.runtime == name && r.size == size && r.round == round)
                    .map(|r| &r.m)
            });
            if pairs.is_empty() {
                continue;
            }
            println!("  {size:>4} B vs {peer:<14} {}", Ratios::of(&pairs));
        }
    }
}
