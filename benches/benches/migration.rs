//! The cost of one partition migration: from the `migrate_to` request to
//! the first poll of one of the partition's tasks on the new core, with 1,
//! 100 and 10,000 tasks queued in the partition (queued, not yet run).
//!
//! `cores(2)`, unpinned. A fresh partition per repetition, born on core 0
//! (`Placement::Core(0)`, `.pinned(false)`), moved to core 1, which is idle
//! (parked in `epoll_wait`) when the request is made — as the target of a
//! balancer's move would be. Each task of the partition checks
//! `fairloop::core_id()`; the first to run on core 1 records the instant.
//! Two ways of having the tasks queued:
//!
//! * **run queue**: a task on core 0 (in core 0's root partition) spawns
//!   the N tasks into the partition (they go to the partition's run queue
//!   on core 0) and calls `migrate_to(1)` in the same poll, so core 0 takes
//!   the request between two turns, before the partition ever runs: the
//!   queue moves with the partition.
//! * **injection queue**: core 0 is busy in a long poll (a task of its root
//!   partition spinning on a flag); a foreign thread spawns the N tasks into
//!   the partition (they wait in its injection queue), calls
//!   `migrate_to(1)` and releases the spinning task. The target drains the
//!   injection queue when it adopts the partition.
//!
//! Reference (not a migration; tokio cannot move queued tasks between
//! runtimes): a foreign thread spawns the same N tasks into a tokio
//! `current_thread` runtime whose thread is parked in `block_on` on another
//! thread; the time from the first `spawn` call to the first poll. That is
//! the cost of handing work to an idle runtime thread (mostly waking it),
//! which every migration to an idle core pays too.
//!
//! 100 repetitions per size; p50/p90/p99/max (p99 of 100 samples is the
//! second-largest). Run: `cargo bench -p fairloop-benches --bench migration`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop::partition::{Partition, Placement};
use fairloop_benches::{machine, quantile, us};

const SIZES: [usize; 3] = [1, 100, 10_000];
const REPS: usize = 100;
/// Pause between repetitions, so the target core is parked again.
const SETTLE: Duration = Duration::from_millis(2);

/// The first poll on the target, in ns since the run's base instant.
static FIRST_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Tasks that ran anywhere but on the target (should stay 0).
static OFF_TARGET: AtomicU64 = AtomicU64::new(0);

/// One task of the migrated partition: records the first poll on `target`.
async fn probe(base: Instant, target: usize) {
    if fairloop::core_id() == target {
        if FIRST_NS.load(Ordering::Relaxed) == u64::MAX {
            let now = base.elapsed().as_nanos() as u64;
            let _ = FIRST_NS.compare_exchange(u64::MAX, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    } else {
        OFF_TARGET.fetch_add(1, Ordering::Relaxed);
    }
}

/// The time from `requested` (ns since `base`) to the recorded first poll.
fn sample(requested: u64) -> Duration {
    let first = FIRST_NS.load(Ordering::Acquire);
    assert_ne!(first, u64::MAX, "no task ran on the target core");
    Duration::from_nanos(first.saturating_sub(requested))
}

fn runtime() -> fairloop::Runtime {
    fairloop::Runtime::builder()
        .cores(2)
        .pin_cores(false)
        .build()
        .expect("build a two-core runtime")
}

fn movable_partition() -> Partition {
    Partition::builder()
        .placement(Placement::Core(0))
        .pinned(false)
        .build()
        .expect("a migratable partition on core 0")
}

/// Tasks spawned on core 0 into the partition's run queue, then moved.
fn fl_run_queue(rt: &fairloop::Runtime, n: usize) -> (Vec<Duration>, u64) {
    rt.block_on(async move {
        let base = Instant::now();
        let mut samples = Vec::with_capacity(REPS);
        let mut migrations = 0;
        for _ in 0..REPS {
            fairloop::time::sleep(SETTLE).await;
            let p = movable_partition();
            FIRST_NS.store(u64::MAX, Ordering::Release);
            let handles: Vec<_> = (0..n).map(|_| p.spawn(probe(base, 1))).collect();
            let requested = base.elapsed().as_nanos() as u64;
            p.migrate_to(1).expect("migrate_to(1)");
            // This poll ends at the first await; core 0 then takes the
            // request between turns, before the partition ever runs.
            for h in handles {
                h.await.expect("probe ok");
            }
            samples.push(sample(requested));
            migrations += p.metrics().migrations;
        }
        (samples, migrations)
    })
}

/// Tasks spawned from this (foreign) thread into the partition's injection
/// queue while core 0 is in a long poll, then moved.
fn fl_injection_queue(rt: &fairloop::Runtime, n: usize) -> (Vec<Duration>, u64) {
    let base = Instant::now();
    let mut samples = Vec::with_capacity(REPS);
    let mut migrations = 0;
    for _ in 0..REPS {
        std::thread::sleep(SETTLE);
        let p = rt.block_on(async { movable_partition() });
        let spinning = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let blocker = {
            let (spinning, go) = (spinning.clone(), go.clone());
            rt.spawn_on(0, async move {
                spinning.store(true, Ordering::Release);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            })
        };
        while !spinning.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        FIRST_NS.store(u64::MAX, Ordering::Release);
        let handles: Vec<_> = (0..n).map(|_| p.spawn(probe(base, 1))).collect();
        let requested = base.elapsed().as_nanos() as u64;
        p.migrate_to(1).expect("migrate_to(1)");
        go.store(true, Ordering::Release);
        futures_lite::future::block_on(async {
            blocker.await.expect("blocker ok");
            for h in handles {
                h.await.expect("probe ok");
            }
        });
        samples.push(sample(requested));
        migrations += p.metrics().migrations;
    }
    (samples, migrations)
}

/// Reference: N tasks spawned from this thread into a tokio current_thread
/// runtime parked in `block_on` on another thread.
fn tokio_handoff(n: usize) -> Vec<Duration> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio current_thread"),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            rt.block_on(async {
                let _ = stop_rx.await;
            })
        })
    };
    let handle = rt.handle().clone();
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let base = Instant::now();
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        std::thread::sleep(SETTLE);
        first.store(u64::MAX, Ordering::Release);
        let requested = base.elapsed().as_nanos() as u64;
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let first = first.clone();
                handle.spawn(async move {
                    if first.load(Ordering::Relaxed) == u64::MAX {
                        let now = base.elapsed().as_nanos() as u64;
                        let _ = first.compare_exchange(
                            u64::MAX,
                            now,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                })
            })
            .collect();
        futures_lite::future::block_on(async {
            for h in handles {
                h.await.expect("tokio task ok");
            }
        });
        let t = first.load(Ordering::Acquire);
        samples.push(Duration::from_nanos(t.saturating_sub(requested)));
    }
    let _ = stop_tx.send(());
    driver.join().expect("tokio driver thread");
    samples
}

fn row(name: &str, n: usize, mut samples: Vec<Duration>, migrations: Option<u64>) {
    samples.sort();
    println!(
        "{:<38} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        name,
        n,
        us(quantile(&samples, 0.50)),
        us(quantile(&samples, 0.90)),
        us(quantile(&samples, 0.99)),
        us(quantile(&samples, 1.0)),
        migrations.map_or("-".to_string(), |m| format!("{m}/{REPS}")),
    );
}

fn main() {
    println!(
        "migration cost: migrate_to(1) request → first poll on core 1, cores(2) unpinned, \
         target idle; {REPS} repetitions per size; {}",
        machine()
    );
    println!();
    println!(
        "{:<38} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "case", "queued", "p50 µs", "p90 µs", "p99 µs", "max µs", "migrations"
    );
    let rt = runtime();
    for n in SIZES {
        let (s, m) = fl_run_queue(&rt, n);
        row("fairloop, tasks in the run queue", n, s, Some(m));
    }
    for n in SIZES {
        let (s, m) = fl_injection_queue(&rt, n);
        row("fairloop, tasks in the injection queue", n, s, Some(m));
    }
    drop(rt);
    for n in SIZES {
        row(
            "tokio reference: spawn to idle thread",
            n,
            tokio_handoff(n),
            None,
        );
    }
    let off = OFF_TARGET.load(Ordering::Relaxed);
    println!();
    println!(
        "tasks of a migrated partition that ran on the source core: {off} (expected 0); \
         the tokio rows time the first of N remote spawns into a parked runtime thread, \
         not a migration"
    );
}
