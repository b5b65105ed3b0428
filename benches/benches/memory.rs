//! Bytes per idle spawned task, fairloop against tokio `current_thread`.
//!
//! Spawns 100,000 detached tasks that each await a future that never
//! completes, waits until every one has been polled once (so each is parked,
//! not just queued), and measures the growth of
//!
//! * live heap bytes, by a counting `#[global_allocator]` (the figure that
//!   matters: exact, and independent of allocator caching), and
//! * resident set size (`VmRSS` from `/proc/self/status`), for reference.
//!
//! Each runtime is measured in a fresh child process (this executable,
//! re-run with `FAIRLOOP_MEMORY_RUN=<runtime>`), so neither inherits the
//! other's freed memory. The runtime is dropped at the end, which also
//! checks that shutdown drops 100k parked tasks.
//!
//! Run: `cargo bench -p fairloop-benches --bench memory`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use fairloop_benches::mem::{live_bytes, rss_bytes, Counting};
use fairloop_benches::{child_numbers, fairloop_rt, machine, tokio_rt};

const TASKS: usize = 100_000;
const CHILD_ENV: &str = "FAIRLOOP_MEMORY_RUN";

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tasks that have been polled once (and so are parked for good).
static PARKED: AtomicUsize = AtomicUsize::new(0);

struct Measured {
    heap: isize,
    rss: isize,
    spawn_ms: f64,
    drop_ms: f64,
}

/// Spawns the tasks (from inside the runtime), waits until all are parked
/// and returns (heap growth, rss growth, spawn time).
async fn park_tasks<Y: Future<Output = ()>>(
    spawn: impl Fn(),
    yield_now: impl Fn() -> Y,
) -> (isize, isize, f64) {
    // Let lazily built runtime state settle before the baseline.
    yield_now().await;
    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let start = Instant::now();
    for _ in 0..TASKS {
        spawn();
    }
    while PARKED.load(Ordering::Relaxed) < TASKS {
        yield_now().await;
    }
    let spawn_ms = start.elapsed().as_secs_f64() * 1e3;
    (live_bytes() - heap0, rss_bytes() - rss0, spawn_ms)
}

async fn idle_task() {
    PARKED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await
}

fn measure(runtime: &str) -> Measured {
    match runtime {
        "fairloop" => {
            let rt = fairloop_rt();
            let (heap, rss, spawn_ms) = rt.block_on(park_tasks(
                || fairloop::spawn(idle_task()).detach(),
                fairloop::yield_now,
            ));
            let t = Instant::now();
            drop(rt);
            Measured {
                heap,
                rss,
                spawn_ms,
                drop_ms: t.elapsed().as_secs_f64() * 1e3,
            }
        }
        "tokio" => {
            let rt = tokio_rt();
            let (heap, rss, spawn_ms) = rt.block_on(park_tasks(
                || drop(tokio::spawn(idle_task())),
                tokio::task::yield_now,
            ));
            let t = Instant::now();
            drop(rt);
            Measured {
                heap,
                rss,
                spawn_ms,
                drop_ms: t.elapsed().as_secs_f64() * 1e3,
            }
        }
        other => panic!("unknown runtime {other}"),
    }
}

fn child(runtime: &str) -> Measured {
    let f = child_numbers(CHILD_ENV, runtime);
    Measured {
        heap: f[0] as isize,
        rss: f[1] as isize,
        spawn_ms: f[2],
        drop_ms: f[3],
    }
}

fn main() {
    if let Ok(runtime) = std::env::var(CHILD_ENV) {
        let m = measure(&runtime);
        println!("{} {} {} {}", m.heap, m.rss, m.spawn_ms, m.drop_ms);
        return;
    }
    println!(
        "memory per idle task: {TASKS} detached tasks parked on a never-ready future; {}",
        machine()
    );
    let fl = child("fairloop");
    let tk = child("tokio");
    println!();
    println!(
        "{:<24} {:>12} {:>12} {:>16} {:>10}",
        "runtime", "heap B/task", "RSS B/task", "spawn+park ms", "drop ms"
    );
    for (name, m) in [("fairloop (1 core)", &fl), ("tokio current_thread", &tk)] {
        println!(
            "{:<24} {:>12.1} {:>12.1} {:>16.1} {:>10.1}",
            name,
            m.heap as f64 / TASKS as f64,
            m.rss as f64 / TASKS as f64,
            m.spawn_ms,
            m.drop_ms
        );
    }
    println!();
    println!(
        "heap ratio fairloop/tokio = {:.3} (below 1.0: fairloop uses less memory per task)",
        fl.heap as f64 / tk.heap as f64
    );
}
