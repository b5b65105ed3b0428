//! Automatic rebalancing: CPU-heavy partitions all born on core 0 spread
//! over the cores on their own.
//!
//! The runtime is built with `.rebalance(Some(100 ms))`. It creates
//! `2 × cores` partitions `cpu-0`, `cpu-1`, … all on core 0
//! (`Placement::Core(0)` with `.pinned(false)`, so they may move), each
//! running one task that does fixed units of CPU work and yields between
//! them. At first core 0 does all the work and the other cores idle; the
//! balancer then migrates partitions from the busiest to the idlest core
//! until the gap closes.
//!
//! The program prints, for three windows of the run (the first ~100 ms,
//! before the balancer has acted, then up to 1 s and from 1 s to 2 s), each
//! core's load (its busy time over the window's wall time, from the deltas
//! of `Runtime::metrics().cores[i].busy`), where each partition is at the
//! end of the window and how often it has moved, and the work done per
//! second.
//!
//! ```text
//! cargo run --release --example rebalance [-- CORES [PARTITIONS]]
//! ```
//!
//! `CORES` defaults to 2, `PARTITIONS` to twice the cores.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop::metrics::RuntimeMetrics;
use fairloop::partition::{Partition, Placement};
use fairloop::Runtime;

const BALANCE_EVERY: Duration = Duration::from_millis(100);
/// The ends of the windows reported, from the start of the work.
const CHECKPOINTS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(1_000),
    Duration::from_millis(2_000),
];
/// Rounds of `work` per unit (some tens of µs of CPU).
const UNIT: u32 = 20_000;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let cores: usize = args
        .next()
        .map(|s| s.parse().expect("CORES must be a whole number"))
        .unwrap_or(2);
    let count: usize = args
        .next()
        .map(|s| s.parse().expect("PARTITIONS must be a whole number"))
        .unwrap_or(2 * cores);

    let rt = Runtime::builder()
        .cores(cores)
        .rebalance(Some(BALANCE_EVERY))
        .build()?;
    println!(
        "{cores} cores, rebalance every {BALANCE_EVERY:?}; {count} CPU-bound partitions \
         born on core 0 (Placement::Core(0), pinned(false))\n"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let units: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let (stop2, units2) = (stop.clone(), units.clone());
    let (partitions, tasks) = rt.block_on(async move {
        let mut partitions = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let p = Partition::builder()
                .name(&format!("cpu-{i}"))
                .placement(Placement::Core(0))
                .pinned(false)
                .build()?;
            let (stop, units) = (stop2.clone(), units2.clone());
            tasks.push(p.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    work(UNIT);
                    units[i].fetch_add(1, Ordering::Relaxed);
                    fairloop::yield_now().await;
                }
            }));
            partitions.push(p);
        }
        Ok::<_, std::io::Error>((partitions, tasks))
    })?;

    let start = Instant::now();
    let mut last = Sample::take(&rt, &units, start);
    for end in CHECKPOINTS {
        if let Some(left) = end.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        let now = Sample::take(&rt, &units, start);
        report(&last, &now, &partitions);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    futures_lite::future::block_on(async {
        for t in tasks {
            t.await.expect("worker panicked");
        }
    });
    Ok(())
}

/// Metrics and work counters at one instant.
struct Sample {
    at: Duration,
    metrics: RuntimeMetrics,
    units: Vec<u64>,
}

impl Sample {
    fn take(rt: &Runtime, units: &[AtomicU64], start: Instant) -> Sample {
        Sample {
            at: start.elapsed(),
            metrics: rt.metrics(),
            units: units.iter().map(|u| u.load(Ordering::Relaxed)).collect(),
        }
    }
}

/// Prints the window between two samples.
fn report(from: &Sample, to: &Sample, partitions: &[Partition]) {
    let secs = (to.at - from.at).as_secs_f64();
    println!(
        "window {:>4}–{:>4} ms:",
        from.at.as_millis(),
        to.at.as_millis()
    );
    for (a, b) in from.metrics.cores.iter().zip(&to.metrics.cores) {
        let on: Vec<String> = partitions
            .iter()
            .filter_map(|p| {
                let m = to.metrics.partitions.iter().find(|m| m.id == p.id())?;
                (m.core == b.core).then(|| m.name.clone().unwrap_or_default())
            })
            .collect();
        println!(
            "  core {}: busy {:>5.1}% of the window  partitions now: [{}]",
            b.core,
            100.0 * (b.busy - a.busy).as_secs_f64() / secs,
            on.join(", ")
        );
    }
    let total: u64 = to.units.iter().zip(&from.units).map(|(t, f)| t - f).sum();
    let rows: Vec<String> = partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = to
                .metrics
                .partitions
                .iter()
                .find(|m| m.id == p.id())
                .cloned()
                .unwrap_or_default();
            format!(
                "{} on core {} ({} moves, {:.0} units/s)",
                p.name().unwrap_or_default(),
                m.core,
                m.migrations,
                (to.units[i] - from.units[i]) as f64 / secs
            )
        })
        .collect();
    println!("  {}", rows.join("; "));
    println!("  total work: {:.0} units/s\n", total as f64 / secs);
}

/// A fixed amount of CPU work (no clock read): xorshift rounds.
fn work(rounds: u32) -> u64 {
    let mut x = std::hint::black_box(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}
