//! The healthcheck-under-a-flood scenario shared by `benches/healthcheck.rs`
//! (one core) and `benches/reserved.rs` (a reserved core): a flood of
//! CPU-bound tasks in batches, and a healthcheck that records how late each
//! 10 ms tick runs, written once for each runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::burn;

/// How long the flood lasts.
pub const FLOOD_FOR: Duration = Duration::from_secs(2);
/// Flood tasks spawned per batch.
pub const BATCH: usize = 2_000;
/// CPU time each flood task burns.
pub const WORK: Duration = Duration::from_micros(50);
/// The healthcheck's period.
pub const TICK: Duration = Duration::from_millis(10);

/// The next tick after `deadline`; if the healthcheck is so late that
/// it is already past, the next tick is one period from now (missed ticks
/// are skipped, not bunched).
pub fn next_tick(deadline: Instant, woke: Instant) -> Instant {
    let next = deadline + TICK;
    if next <= woke {
        woke + TICK
    } else {
        next
    }
}

/// fairloop's healthcheck: ticks until `stop`, returning each tick's
/// lateness.
pub async fn fl_healthcheck(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut deadline = Instant::now() + TICK;
    loop {
        fairloop::time::sleep_until(deadline).await;
        let woke = Instant::now();
        if stop.load(Ordering::Acquire) {
            return samples;
        }
        samples.push(woke - deadline);
        deadline = next_tick(deadline, woke);
    }
}

/// fairloop's flood: batches of [`BATCH`] tasks of [`WORK`] for
/// [`FLOOD_FOR`]; returns the tasks completed and the time taken.
pub async fn fl_flood() -> (u64, Duration) {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < FLOOD_FOR {
        let batch: Vec<_> = (0..BATCH)
            .map(|_| fairloop::spawn(async { burn(WORK) }))
            .collect();
        for t in batch {
            t.await.expect("flood task ok");
            done += 1;
        }
    }
    (done, start.elapsed())
}

/// tokio's healthcheck, as [`fl_healthcheck`].
pub async fn tk_healthcheck(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut deadline = Instant::now() + TICK;
    loop {
        tokio::time::sleep_until(deadline.into()).await;
        let woke = Instant::now();
        if stop.load(Ordering::Acquire) {
            return samples;
        }
        samples.push(woke - deadline);
        deadline = next_tick(deadline, woke);
    }
}

/// tokio's flood, as [`fl_flood`].
pub async fn tk_flood() -> (u64, Duration) {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < FLOOD_FOR {
        let batch: Vec<_> = (0..BATCH)
            .map(|_| tokio::spawn(async { burn(WORK) }))
            .collect();
        for t in batch {
            t.await.expect("flood task ok");
            done += 1;
        }
    }
    (done, start.elapsed())
}

/// What one run of the scenario measured: the healthcheck's lateness
/// (sorted), the flood tasks completed, and how long the flood ran.
pub struct Measured {
    pub lateness: Vec<Duration>,
    pub completed: u64,
    pub flood_time: Duration,
}

/// The whole scenario on a tokio runtime (either flavour): the
/// healthcheck and the flood spawned side by side, the healthcheck
/// stopped when the flood ends.
pub fn run_on_tokio(rt: &tokio::runtime::Runtime) -> Measured {
    let (mut lateness, completed, flood_time) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let check = tokio::spawn(tk_healthcheck(stop.clone()));
        let (completed, flood_time) = tokio::spawn(tk_flood()).await.expect("flood ok");
        stop.store(true, Ordering::Release);
        let lateness = check.await.expect("healthcheck ok");
        (lateness, completed, flood_time)
    });
    lateness.sort();
    Measured {
        lateness,
        completed,
        flood_time,
    }
}
