//! A `healthcheck` with a core of its own: the user story of
//! `Builder::reserve_core`.
//!
//! The runtime reserves its highest core for the partition placed with
//! `Placement::Reserved("healthcheck")`; nothing else runs there. A
//! `healthcheck` partition on that core ticks every 10 ms and records how
//! late each tick runs, while a flood of CPU-heavy work (waves of thousands
//! of tasks that each burn ~50 µs of CPU) keeps every other core busy in
//! `api`, a sharded partition (`Placement::EveryCore`: one shard on every
//! unreserved core, none on the reserved one).
//!
//! At the end it prints the healthcheck's lateness (p50/p99/max), each
//! core's busy share over the run and the partitions that ran on it (the
//! reserved core runs the healthcheck and nothing else), and the flood's
//! throughput.
//!
//! ```text
//! cargo run --release --example reserved_healthcheck [-- CORES [SECONDS]]
//! ```
//!
//! `CORES` defaults to 2 (one flooded core, one reserved), `SECONDS` to 3.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop::metrics::RuntimeMetrics;
use fairloop::partition::{Partition, Placement};
use fairloop::{time, Runtime};

const TICK: Duration = Duration::from_millis(10);
const WAVE: usize = 2_000;
const TASK_CPU: Duration = Duration::from_micros(50);
const RESERVATION: &str = "healthcheck";

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let cores: usize = args
        .next()
        .map(|s| s.parse().expect("CORES must be a whole number"))
        .unwrap_or(2);
    let seconds: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(3.0);
    let run_for = Duration::from_secs_f64(seconds);

    let rt = Runtime::builder()
        .cores(cores)
        .reserve_core(RESERVATION)
        .build()?;
    let handle = rt.handle();
    println!(
        "{cores} cores, core {} reserved for {RESERVATION:?}; flood: waves of {WAVE} tasks x \
         {TASK_CPU:?} CPU on the other {} core(s) for {run_for:?}; healthcheck every {TICK:?}\n",
        cores - 1,
        cores - 1,
    );

    let run = rt.block_on(async move {
        let hc = Partition::builder()
            .name("healthcheck")
            .placement(Placement::Reserved(RESERVATION.into()))
            .build()?;
        // The flood's partition: a shard on every unreserved core, never
        // on the reserved one.
        let api = Partition::builder()
            .name("api")
            .placement(Placement::EveryCore)
            .build()?;

        let stop = Arc::new(AtomicBool::new(false));
        let before = handle.metrics();
        let started = Instant::now();
        let check = hc.spawn(healthcheck(stop.clone()));
        // One flood in each shard (each fans out within its shard).
        let floods: Vec<_> = api
            .cores()
            .into_iter()
            .filter_map(|core| api.shard(core))
            .map(|shard| shard.spawn(flood(run_for)))
            .collect();
        let mut done = 0u64;
        for f in floods {
            done += f.await.expect("flood panicked");
        }
        let elapsed = started.elapsed();
        let after = handle.metrics();
        stop.store(true, Ordering::Release);
        let (lateness, ran_on) = check.await.expect("healthcheck panicked");
        Ok::<_, std::io::Error>(Run {
            lateness,
            ran_on,
            done,
            elapsed,
            before,
            after,
        })
    })?;
    report(&run);
    Ok(())
}

/// What one run measured.
struct Run {
    /// Lateness of every tick, in order.
    lateness: Vec<Duration>,
    /// The cores the healthcheck ran on (should be just the reserved one).
    ran_on: Vec<usize>,
    /// Flood tasks completed.
    done: u64,
    elapsed: Duration,
    before: RuntimeMetrics,
    after: RuntimeMetrics,
}

/// Sleeps until each 10 ms tick and records how late it woke; a missed
/// tick is skipped, not made up for.
async fn healthcheck(stop: Arc<AtomicBool>) -> (Vec<Duration>, Vec<usize>) {
    let mut lateness = Vec::new();
    let mut ran_on = vec![fairloop::core_id()];
    let mut deadline = Instant::now() + TICK;
    loop {
        time::sleep_until(deadline).await;
        let woke = Instant::now();
        if stop.load(Ordering::Acquire) {
            return (lateness, ran_on);
        }
        lateness.push(woke - deadline);
        let core = fairloop::core_id();
        if !ran_on.contains(&core) {
            ran_on.push(core);
        }
        deadline += TICK;
        if deadline <= woke {
            deadline = woke + TICK;
        }
    }
}

/// Waves of CPU-heavy tasks in the calling partition until `run_for` has
/// passed; returns how many tasks completed.
async fn flood(run_for: Duration) -> u64 {
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < run_for {
        let wave: Vec<_> = (0..WAVE)
            .map(|_| fairloop::spawn(async { burn(TASK_CPU) }))
            .collect();
        for t in wave {
            t.await.expect("flood task panicked");
            done += 1;
        }
    }
    done
}

fn report(run: &Run) {
    let mut sorted = run.lateness.clone();
    sorted.sort();
    println!(
        "healthcheck lateness: p50 {}  p99 {}  max {}  ({} ticks, ran on core(s) {:?})",
        ms(quantile(&sorted, 0.50)),
        ms(quantile(&sorted, 0.99)),
        ms(quantile(&sorted, 1.0)),
        sorted.len(),
        run.ran_on,
    );
    println!(
        "flood: {} tasks in {:.2} s = {:.0} tasks/s\n",
        run.done,
        run.elapsed.as_secs_f64(),
        run.done as f64 / run.elapsed.as_secs_f64()
    );

    let wall = run.elapsed.as_secs_f64();
    println!("per core, over the flood (busy share = busy time / wall time):");
    for (c0, c1) in run.before.cores.iter().zip(&run.after.cores) {
        let busy = c1.busy.saturating_sub(c0.busy);
        let polls = c1.polls - c0.polls;
        // The partitions that ran on this core during the run, by polls.
        let ran: Vec<String> = run
            .after
            .partitions
            .iter()
            .filter(|p| p.core == c1.core)
            .filter_map(|p| {
                let earlier = run.before.partitions.iter().find(|q| q.id == p.id);
                let polls = p.polls - earlier.map_or(0, |q| q.polls);
                (polls > 0)
                    .then(|| format!("{} ({polls} polls)", p.name.as_deref().unwrap_or("root")))
            })
            .collect();
        println!(
            "  core {} {:<24} busy {:>6.2}%  polls {:>7}  pinned {:<5}  ran: {}",
            c1.core,
            c1.reserved_for
                .as_deref()
                .map(|r| format!("(reserved {r:?})"))
                .unwrap_or_default(),
            100.0 * busy.as_secs_f64() / wall,
            polls,
            c1.pinned,
            if ran.is_empty() {
                "nothing".to_string()
            } else {
                ran.join(", ")
            },
        );
    }
    if let Some(reserved) = run.after.cores.iter().find(|c| c.reserved_for.is_some()) {
        let others: Vec<&str> = run
            .after
            .partitions
            .iter()
            .filter(|p| p.core == reserved.core && p.polls > 0)
            .map(|p| p.name.as_deref().unwrap_or("root"))
            .filter(|n| *n != "healthcheck")
            .collect();
        if others.is_empty() {
            println!(
                "\nthe reserved core {} ran the healthcheck and nothing else",
                reserved.core
            );
        } else {
            println!(
                "\nUNEXPECTED: the reserved core {} also ran {others:?}",
                reserved.core
            );
        }
    }
}

/// Keeps the CPU busy for `d`, as a request handler doing real work would.
fn burn(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The `q`-quantile of `sorted` by nearest rank; zero if empty.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
