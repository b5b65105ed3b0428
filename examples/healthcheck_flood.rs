//! The 2017 proposal's story, measured: a `healthcheck` that must keep
//! ticking while an `api` partition drowns in CPU-heavy work.
//!
//! Thousands of tasks that each burn ~50 µs of CPU flood the `api`
//! partition for a few seconds, while a `healthcheck` ticks every 10 ms and
//! records how late each tick runs. The same load runs twice on one core:
//!
//! 1. partitioned: `api` and `healthcheck` are separate partitions (the
//!    healthcheck with a 1 ms latency bound);
//! 2. one partition: everything in the core's root partition, the plain
//!    FIFO behaviour of a classic event loop.
//!
//! ```text
//! cargo run --release --example healthcheck_flood [-- SECONDS]
//! ```

use std::time::{Duration, Instant};

use fairloop::partition::{self, Partition, PartitionSpec};
use fairloop::{time, Runtime};

const TICK: Duration = Duration::from_millis(10);
const FLOOD_TASKS: usize = 2_000;
const TASK_CPU: Duration = Duration::from_micros(50);

fn main() -> std::io::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(3.0);
    let run_for = Duration::from_secs_f64(seconds);
    println!(
        "flood: waves of {FLOOD_TASKS} tasks x {TASK_CPU:?} CPU for {run_for:?} on 1 core; \
         healthcheck every {TICK:?}\n"
    );
    let fair = scenario(run_for, true)?;
    let fifo = scenario(run_for, false)?;
    println!("{}", fair);
    println!("{}", fifo);
    Ok(())
}

/// Runs the flood and the healthcheck on a fresh one-core runtime and
/// describes what the healthcheck saw.
fn scenario(run_for: Duration, partitioned: bool) -> std::io::Result<String> {
    let rt = Runtime::builder().cores(1).build()?;
    let (lateness, flood_done) = rt.block_on(async move {
        let (api, health) = if partitioned {
            let health = Partition::builder()
                .name("healthcheck")
                .latency(Duration::from_millis(1))
                .build()?;
            (PartitionSpec::from("api"), PartitionSpec::from(health))
        } else {
            let root = partition::current();
            (PartitionSpec::from(&root), PartitionSpec::from(root))
        };
        let start = Instant::now();
        let flood = partition::spawn(api, async move {
            let mut done = 0usize;
            while start.elapsed() < run_for {
                let wave: Vec<_> = (0..FLOOD_TASKS)
                    .map(|_| fairloop::spawn(async { burn(TASK_CPU) }))
                    .collect();
                for t in wave {
                    t.await.expect("flood task panicked");
                    done += 1;
                }
            }
            done
        });
        let health = partition::spawn(health, async move {
            // Let the flood get going before measuring.
            time::sleep(Duration::from_millis(50)).await;
            let mut ticks = time::interval(TICK);
            let mut lateness = Vec::new();
            while start.elapsed() < run_for {
                let scheduled = ticks.tick().await;
                lateness.push(scheduled.elapsed());
            }
            lateness
        });
        let lateness = health.await.expect("healthcheck panicked");
        let done = flood.await.expect("flood panicked");
        Ok::<_, std::io::Error>((lateness, done))
    })?;
    let m = rt.metrics();
    let total: Duration = m.partitions.iter().map(|p| p.busy).sum();
    let shares: Vec<String> = m
        .partitions
        .iter()
        .filter(|p| !p.busy.is_zero())
        .map(|p| {
            format!(
                "{} {:.1}%",
                p.name.as_deref().unwrap_or("root"),
                100.0 * p.busy.as_secs_f64() / total.as_secs_f64().max(1e-9)
            )
        })
        .collect();
    Ok(format!(
        "{:<15} healthcheck lateness p50 {:>9}  p99 {:>9}  max {:>9}  ({} ticks) | \
         flood {:>6} tasks/s | CPU share: {}",
        if partitioned {
            "partitioned:"
        } else {
            "one partition:"
        },
        ms(quantile(&lateness, 0.50)),
        ms(quantile(&lateness, 0.99)),
        ms(quantile(&lateness, 1.0)),
        lateness.len(),
        (flood_done as f64 / run_for.as_secs_f64()) as u64,
        shares.join(", ")
    ))
}

/// Keeps the CPU busy for `d`, as a request handler doing real work would.
fn burn(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
