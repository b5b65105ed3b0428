//! Thousands of tenants on one core: one partition per tenant, each tenant
//! a CPU-bound task that burns about 20 µs and yields.
//!
//! For each tenant count (`TENANTS`, default `1000,10000,100000`), two
//! child processes (this executable again, so that memory figures start
//! clean) measure:
//!
//! * **memory and cost** — the tenants' tasks parked instead of busy:
//!   heap and RSS per partition (with its one parked task), against the
//!   same tasks in one partition; the cost of creating a partition (with
//!   its task); the cost of `Runtime::metrics()` (every partition), of one
//!   `Partition::metrics()` and of `top_partitions(10)`;
//! * **fairness and latency** — a creator task makes the tenants (the
//!   issue's case) and sleeps 100 ms: its lateness; then for `TENANTS_SECS`
//!   (default 6) the tenants run with a light sleeper beside them (a
//!   partition that wakes every 100 ms and only notes the time: well
//!   under its fair share up to some 50,000 tenants, where a tenant's
//!   share of the core is 2 µs per 100 ms): Jain's index of the
//!   tenants' work over each 2 s window (the worst window), the sleeper's
//!   wake delay (p50, p99), and total work against the same tasks in one
//!   partition and on tokio `current_thread`, run for as long right after.
//!
//! The under-load child runs `TENANTS_ROUNDS` times (default 3), each in a
//! fresh process; the table gives medians over rounds (and the range of
//! the work ratio).
//!
//! Run: `cargo bench -p fairloop-benches --bench tenants`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop::partition::{self, PartitionSpec};
use fairloop_benches::mem::{live_bytes, rss_bytes, Counting};
use fairloop_benches::{child_numbers, cpu_work, fairloop_rt, machine, ms, quantile, tokio_rt};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHILD_ENV: &str = "FAIRLOOP_TENANTS_RUN";
/// A window of the fairness figure.
const WINDOW: Duration = Duration::from_secs(2);
/// The sleeper's period.
const SLEEPER_PERIOD: Duration = Duration::from_millis(100);

/// `cpu_work` rounds that take about `d` on this machine.
fn rounds_for(d: Duration) -> u32 {
    let probe = 200_000;
    let start = Instant::now();
    for _ in 0..20 {
        cpu_work(probe);
    }
    let per = start.elapsed().as_secs_f64() / 20.0;
    ((probe as f64) * d.as_secs_f64() / per).max(1.0) as u32
}

// ---- memory and cost ----------------------------------------------------

static PARKED: AtomicUsize = AtomicUsize::new(0);

async fn idle() {
    PARKED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await
}

/// Heap and RSS growth, and the time, of parking `n` tasks made by `spawn`.
async fn park(n: usize, spawn: impl Fn()) -> (isize, isize, Duration) {
    fairloop::yield_now().await;
    PARKED.store(0, Ordering::Relaxed);
    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let start = Instant::now();
    for _ in 0..n {
        spawn();
    }
    let made = start.elapsed();
    while PARKED.load(Ordering::Relaxed) < n {
        fairloop::yield_now().await;
    }
    (live_bytes() - heap0, rss_bytes() - rss0, made)
}

fn memory_child(n: usize) -> String {
    // The same tasks in one partition first, in their own runtime.
    let one = {
        let rt = fairloop_rt();
        rt.block_on(park(n, || fairloop::spawn(idle()).detach()))
    };
    let rt = fairloop_rt();
    let handle = rt.handle();
    let (heap, rss, made, all_ms, one_us, top_us) = rt.block_on(async move {
        let (heap, rss, made) = park(n, || {
            partition::spawn(PartitionSpec::anonymous(), idle()).detach()
        })
        .await;
        let start = Instant::now();
        let m = handle.metrics();
        let all = start.elapsed();
        assert!(m.partitions.len() > n, "every tenant is listed");
        let p = partition::current();
        let start = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(p.metrics());
        }
        let one = start.elapsed() / 1000;
        fairloop::time::sleep(Duration::from_millis(20)).await; // a board refresh
        let start = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(handle.top_partitions(10));
        }
        (heap, rss, made, all, one, start.elapsed() / 100)
    });
    let n = n as f64;
    format!(
        "{} {} {} {} {} {} {} {}",
        heap as f64 / n,
        rss as f64 / n,
        one.0 as f64 / n,
        one.1 as f64 / n,
        made.as_secs_f64() * 1e6 / n,
        all_ms.as_secs_f64() * 1e3,
        one_us.as_secs_f64() * 1e6,
        top_us.as_secs_f64() * 1e6,
    )
}

// ---- fairness and latency -------------------------------------------------

struct Load {
    work: Vec<AtomicU64>,
    stop: AtomicBool,
    rounds: u32,
}

impl Load {
    fn new(n: usize, rounds: u32) -> Arc<Self> {
        Arc::new(Load {
            work: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            rounds,
        })
    }

    fn snapshot(&self) -> Vec<u64> {
        self.work
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }
}

async fn tenant(load: Arc<Load>, i: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        cpu_work(load.rounds);
        load.work[i].fetch_add(1, Ordering::Relaxed);
        fairloop::yield_now().await;
    }
}

fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq == 0.0 {
        return 0.0;
    }
    sum * sum / (x.len() as f64 * sq)
}

/// Watches the running tenants for whole windows spanning about `secs`;
/// returns the worst window's Jain index and the work done per second.
fn watch(load: &Load, secs: Duration) -> (f64, f64) {
    let start = Instant::now();
    let first = load.snapshot();
    let mut last = first.clone();
    let mut worst = f64::INFINITY;
    while start.elapsed() + WINDOW <= secs {
        std::thread::sleep(WINDOW);
        let now = load.snapshot();
        let window: Vec<f64> = now.iter().zip(&last).map(|(a, b)| (a - b) as f64).collect();
        worst = worst.min(jain(&window));
        last = now;
    }
    let done: u64 = last.iter().zip(&first).map(|(a, b)| a - b).sum();
    (worst, done as f64 / start.elapsed().as_secs_f64())
}

/// Work per second of `load` over `secs`, after 200 ms of warm-up.
fn rate(load: &Load, secs: Duration) -> f64 {
    std::thread::sleep(Duration::from_millis(200));
    let base = load.total();
    let start = Instant::now();
    std::thread::sleep(secs);
    let done = load.total() - base;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    load.stop.store(true, Ordering::Relaxed);
    rate
}

/// The same tasks, all in one partition (the root): work per second.
fn one_partition(n: usize, rounds: u32, secs: Duration) -> f64 {
    let load = Load::new(n, rounds);
    let rt = fairloop_rt();
    for i in 0..n {
        rt.spawn(tenant(load.clone(), i)).detach();
    }
    let r = rate(&load, secs);
    drop(rt);
    r
}

/// The same tasks on tokio `current_thread`: work per second.
fn on_tokio(n: usize, rounds: u32, secs: Duration) -> f64 {
    let load = Load::new(n, rounds);
    let rt = tokio_rt();
    let watcher = {
        let load = load.clone();
        std::thread::spawn(move || rate(&load, secs))
    };
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let load = load.clone();
                tokio::spawn(async move {
                    while !load.stop.load(Ordering::Relaxed) {
                        cpu_work(load.rounds);
                        load.work[i].fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    watcher.join().expect("watcher")
}

fn run_child(n: usize, secs: Duration) -> String {
    let rounds = rounds_for(Duration::from_micros(20));
    let load = Load::new(n, rounds);
    let rt = fairloop_rt();
    // The creator: makes every tenant, then sleeps 100 ms.
    let creator = {
        let load = load.clone();
        rt.spawn(async move {
            for i in 0..n {
                partition::spawn(PartitionSpec::anonymous(), tenant(load.clone(), i)).detach();
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            fairloop::time::sleep_until(deadline).await;
            Instant::now().saturating_duration_since(deadline)
        })
    };
    let creator_late = futures_lite::future::block_on(creator).expect("creator");
    // The light sleeper, in a partition of its own.
    let sleeper = {
        let load = load.clone();
        rt.spawn(async move {
            partition::spawn("sleeper", async move {
                let mut late = Vec::new();
                while !load.stop.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + SLEEPER_PERIOD;
                    fairloop::time::sleep_until(deadline).await;
                    late.push(Instant::now().saturating_duration_since(deadline));
                }
                late
            })
            .await
            .expect("sleeper")
        })
    };
    let (worst_jain, work) = watch(&load, secs);
    load.stop.store(true, Ordering::Relaxed);
    let mut late = futures_lite::future::block_on(sleeper).expect("sleeper");
    drop(rt);
    late.sort();
    let one = one_partition(n, rounds, secs);
    let tokio = on_tokio(n, rounds, secs);
    format!(
        "{} {} {} {} {} {} {} {}",
        creator_late.as_secs_f64() * 1e3,
        worst_jain,
        work,
        one,
        tokio,
        quantile(&late, 0.5).as_secs_f64() * 1e3,
        quantile(&late, 0.99).as_secs_f64() * 1e3,
        late.len(),
    )
}

fn child(kind: &str, n: usize) -> Vec<f64> {
    child_numbers(CHILD_ENV, &format!("{kind}:{n}"))
}

fn secs() -> Duration {
    let s = std::env::var("TENANTS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(6.0);
    Duration::from_secs_f64(s.max(2.0 * WINDOW.as_secs_f64()))
}

fn main() {
    if let Ok(what) = std::env::var(CHILD_ENV) {
        let (kind, n) = what.split_once(':').expect("kind:n");
        let n: usize = n.parse().expect("a count");
        let line = match kind {
            "mem" => memory_child(n),
            "run" => run_child(n, secs()),
            other => panic!("unknown child {other}"),
        };
        println!("{line}");
        return;
    }
    let counts: Vec<usize> = std::env::var("TENANTS")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("TENANTS: comma-separated counts"))
        .collect();
    println!(
        "tenants on one core: one partition per tenant, each a task burning ~20 µs and \
         yielding; {} s per run, 2 s windows; {}",
        secs().as_secs_f64(),
        machine()
    );
    println!();
    println!(
        "| tenants | heap B/partition (task in one partition) | RSS B/partition (one partition) \
         | create µs | metrics() ms | one partition's metrics µs | top_partitions(10) µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &counts {
        let m = child("mem", n);
        println!(
            "| {n} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.2} | {:.3} | {:.2} | {:.1} |",
            m[0], m[2], m[1], m[3], m[4], m[5], m[6], m[7]
        );
    }
    println!();
    println!(
        "| tenants (medians of rounds) | creator late ms | worst 2 s Jain \
         | work / one partition [range] | work / tokio | sleeper late p50 ms | p99 ms | sleeps |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rounds: usize = std::env::var("TENANTS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    for &n in &counts {
        let runs: Vec<Vec<f64>> = (0..rounds).map(|_| child("run", n)).collect();
        // (median, min, max) over the rounds of `f`.
        let med = |f: &dyn Fn(&[f64]) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let work = med(&|r| r[2] / r[3]);
        println!(
            "| {n} | {} | {:.3} | {:.3} [{:.3}-{:.3}] | {:.3} | {} | {} | {} |",
            ms(Duration::from_secs_f64(med(&|r| r[0]).0 / 1e3)),
            med(&|r| r[1]).0,
            work.0,
            work.1,
            work.2,
            med(&|r| r[2] / r[4]).0,
            ms(Duration::from_secs_f64(med(&|r| r[5]).0 / 1e3)),
            ms(Duration::from_secs_f64(med(&|r| r[6]).0 / 1e3)),
            med(&|r| r[7]).0,
        );
    }
}
