//! hyper 1.x "hello" on one server core: requests/s, requests per second
//! of *server* CPU time, and latency, fairloop against tokio.
//!
//! The server is a child process (`net_server hyper RUNTIME`), one per
//! row, started afresh for each run (below): hyper's HTTP/1.1 server
//! answering `GET /` with `200 OK` and `Hello, World!`, keep-alive,
//! written the way a user writes it (a task per connection running
//! `http1::Builder::new().serve_connection(io, service_fn(hello))`,
//! `TCP_NODELAY`). Rows:
//!
//! * `fairloop`: `cores(1)`, unpinned; fairloop's `TcpStream` handed to
//!   hyper directly (the `hyper` feature's `hyper::rt::{Read, Write}`).
//! * `tokio`: `current_thread`, the stream in hyper-util's `TokioIo`.
//! * `fairloop-tokioio`: fairloop's stream in `TokioIo` (through the
//!   `tokio` feature's traits): what the adapter costs, against `fairloop`.
//!
//! The client is `wrk -tT -cC -dDs --latency http://ADDR/` when `wrk` is on
//! `PATH` (Debian's `wrk` package; `T` = `NET_HTTP_WRK_THREADS`, default 1;
//! `C` = `NET_CONNS`, default 64), else, or with `NET_HTTP_CLIENT=rust`,
//! a Rust client in this process (tokio `multi_thread` with
//! `NET_CLIENT_THREADS` workers, default 1, like wrk's; `NET_CONNS` keep-alive
//! connections each sending `GET /` back to back, every response parsed
//! and checked, every request's latency recorded). Both are closed loops:
//! one request in flight per connection. wrk costs far less CPU per request
//! than the Rust client, so on a small machine it is the one that can keep
//! a one-core server busy. The per-round lines say who the bottleneck was:
//! "server CPU" (1.00 is a saturated one-core server) and "client CPU"
//! (wrk's, from `getrusage(RUSAGE_CHILDREN)`, or this process's; 1.00 per
//! wrk thread is a saturated wrk).
//!
//! **Client threads decide the ratio on a small machine.** On the 2-CPU
//! VM, a one-thread client (wrk `-t1`, or `NET_CLIENT_THREADS=1`) and the
//! one-core server each have a CPU; a two-thread client makes three
//! runnable threads on two CPUs, and then every response tokio writes with
//! its own `writev` wakes a client thread that preempts the server (tokio
//! took ten times fairloop's involuntary context switches per request
//! there), while fairloop submits a loop iteration's writes in one
//! `io_uring_enter`. The two clients agree when their thread counts do
//! (wrk `-t2` and the Rust client with 2 workers both put fairloop ahead;
//! both with one thread put it level or behind), so the default is one
//! thread for both: client and server do not compete for a CPU.
//!
//! **The servers take turns.** The bench runs `NET_REPEAT` rounds
//! (default 9), and in each round every selected server gets one measured
//! window of `NET_SECS` s (default 2; whole seconds for wrk), the order
//! rotating from round to round. So the two servers of a ratio are
//! measured seconds apart, in the same spell of the shared VM (which runs
//! the same server a few percent faster or slower from one spell to the
//! next). A server that waits its turn is idle (parked in its poller); the
//! bench checks it: the other servers' CPU during each window is printed
//! as "idle CPU" (0.00 s/s expected).
//!
//! **Fresh processes.** The rounds are split into `NET_INSTANCES` runs
//! (default 3: rounds 0-2, 3-5, 6-8), and every server is started afresh
//! for each run and warmed up for `NET_WARMUP` s (default 1; wrk rounds up
//! to whole seconds). A server process has a speed of its own, about 1.6 %
//! either way on the bench VM (`fairloop_benches::net::instance_runs`), so
//! a run that kept one process per server would carry that bias in every
//! round; over fresh processes it averages out.
//!
//! `NET_PIN=1` starts every server with `--pin`: fairloop's core, and the
//! one thread of the others, on the first CPU (the client floats). The
//! default leaves them unpinned, as the shared bench machine asks.
//!
//! The server's CPU time (utime + stime from `/proc/<pid>/stat`) is read
//! just before and just after each measured client run; for wrk that spans
//! the wrk process (its start and its 64 connects: milliseconds in
//! seconds). Every window opens new connections (wrk's or the Rust
//! client's), as a fresh row did. Latency percentiles are wrk's
//! `--latency` distribution, or the Rust client's own per-request figures
//! (write to the last byte of the response).
//!
//! The table gives medians [min-max] over the rounds; the ratios are taken
//! within a round (fairloop / peer for req/s and req/CPU-s, peer /
//! fairloop for p99, so that above 1.0 is fairloop better), then given as
//! median [min-max].
//!
//! ```text
//! cargo bench -p fairloop-benches --bench net_http [-- FILTER..]
//! NET_HTTP_CLIENT=rust cargo bench -p fairloop-benches --bench net_http
//! ```
//!
//! Filters pick rows by name (`fairloop`, `tokio`, `fairloop-tokioio`).
//! `NET_BASELINE=PATH` adds the row `baseline`: the `fairloop` server of
//! another `net_server` build, to measure a change against the build
//! before it in the same run (`fairloop_benches::net::baseline_server`).
//! The target (issue 12): fairloop ≥ 1.05× tokio in requests per server
//! CPU-second, with a p99 no worse than tokio's.

use std::time::Duration;

use fairloop_benches::net::{
    env_usize, instance_runs, loadavg, measure_in_turn, median, raise_nofile, secs_from_env,
    selected, HttpClient, Lineup, Measured, Ratios,
};
use fairloop_benches::{machine, us};

const SERVER: &str = env!("CARGO_BIN_EXE_net_server");
const RUNTIMES: [&str; 3] = ["fairloop", "tokio", "fairloop-tokioio"];

struct Row {
    runtime: &'static str,
    round: usize,
    m: Measured,
}

fn main() {
    raise_nofile();
    let conns = env_usize("NET_CONNS", 64);
    let rounds = env_usize("NET_REPEAT", 9).max(1);
    let warmup = secs_from_env("NET_WARMUP", 1.0);
    let secs = secs_from_env("NET_SECS", 2.0);
    let pin = std::env::var("NET_PIN").is_ok_and(|v| v == "1");
    let client = match HttpClient::choose(
        env_usize("NET_HTTP_WRK_THREADS", 1).max(1),
        env_usize("NET_CLIENT_THREADS", 1).max(1),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("net_http: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "net_http: {} | hyper \"hello\" on one server core | client: {} | \
         {rounds} round(s) of one {:.1} s window per server, the servers taking turns, \
         over {} fresh start(s) of every server, each warmed up for {:.1} s | servers {} | \
         load average before: {}",
        machine(),
        client.describe(conns),
        secs.as_secs_f64(),
        instance_runs(rounds).len(),
        warmup.as_secs_f64(),
        if pin {
            "pinned to the first CPU (NET_PIN=1)"
        } else {
            "unpinned"
        },
        loadavg()
    );
    let lineup = Lineup::new(&RUNTIMES, selected);
    let names = lineup.names();
    let mut rows = Vec::new();
    for (run, run_rounds) in instance_runs(rounds).into_iter().enumerate() {
        let servers = lineup.start(run, SERVER, |runtime| {
            let mut args = vec!["hyper".to_string(), runtime.to_string()];
            if pin {
                args.push("--pin".into());
            }
            args
        });
        for (runtime, server) in &servers {
            if let Err(e) = client.measure(
                server,
                server.addrs[0],
                conns,
                Duration::ZERO,
                warmup,
                false,
            ) {
                println!("  warm-up {runtime:<15} failed: {e}");
            }
        }
        for round in run_rounds {
            // Each round starts with a different server, so that no server
            // always runs first (or last).
            for k in 0..servers.len() {
                let (runtime, server) = &servers[(k + round) % servers.len()];
                let measured = measure_in_turn(&servers, server, || {
                    client.measure(server, server.addrs[0], conns, Duration::ZERO, secs, false)
                });
                match measured {
                    Ok((m, idle)) => {
                        println!(
                            "  round {round} {runtime:<17} {:>9.0} req/s  server CPU {:>5.2} s/s  \
                             {:>9.0} req/CPU-s  p50 {:>7} µs  p99 {:>7} µs  client CPU {:>4.2} s/s  \
                             idle CPU {idle:>4.2} s/s{}",
                            m.rps(),
                            m.cpu_share(),
                            m.per_cpu(),
                            us(m.p50),
                            us(m.p99),
                            m.client_share(),
                            if m.note.is_empty() {
                                String::new()
                            } else {
                                format!("  ({})", m.note)
                            }
                        );
                        rows.push(Row { runtime, round, m });
                    }
                    Err(e) => println!("  round {round} {runtime:<17} SKIPPED: {e}"),
                }
            }
        }
    }
    println!("load average after: {}", loadavg());

    println!();
    println!("| server | req/s | req per server CPU-s | server CPU (s/s) | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &runtime in names {
        let mine: Vec<&Measured> = rows
            .iter()
            .filter(|r| r.runtime == runtime)
            .map(|r| &r.m)
            .collect();
        if mine.is_empty() {
            continue;
        }
        println!("| {runtime} | {} |", Measured::median_cells(&mine));
    }
    println!();
    println!(
        "ratios fairloop / peer, per round, median [min-max] (above 1.0: fairloop better; \
         for p99 the ratio is peer / fairloop):"
    );
    for peer in names.iter().filter(|&&r| r != "fairloop") {
        let pairs = Ratios::pairs(rounds, peer, |name, round| {
            rows.iter()
                .find(|r| r.runtime == name && r.round == round)
                .map(|r| &r.m)
        });
        if pairs.is_empty() {
            continue;
        }
        let ratios = Ratios::of(&pairs);
        println!("  vs {peer:<17} {ratios}");
        if *peer == "tokio" {
            println!(
                "  target (issue 12): req/CPU-s >= 1.05x tokio: {}; p99 no worse than tokio's: {} \
                 (on the medians of the per-round ratios)",
                yes_no(median(&ratios.per_cpu) >= 1.05),
                yes_no(median(&ratios.p99) >= 1.0),
            );
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "not met"
    }
}
