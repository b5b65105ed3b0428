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
//! * **fairness and latency** — a light sleeper (a partition made first,
//!   that wakes every 100 ms and only notes the time: well under its fair
//!   share up to some 50,000 tenants, where a tenant's share of the core is
//!   2 µs per 100 ms); a creator task makes the tenants (the case)
//!   and sleeps 100 ms: its lateness; after `TENANTS_WARMUP` (default 4 s,
//!   in which each busy tenant's statistics allocate their histogram, a
//!   one-time cost) the tenants run for `TENANTS_SECS` (default 6): Jain's
//!   index of the tenants' work over each 2 s window (the worst window),
//!   the sleeper's wake delay from the creator's end (p50, p99), and the
//!   work per CPU-second of the core (and per wall second) against the
//!   same tasks in one partition and on tokio `current_thread`, run for as
//!   long right after; and, for each of the three, the share of the core's
//!   CPU time spent inside the tenants' work (each call timed), which the
//!   VM running the work itself faster or slower from one phase to the
//!   next does not move, as it moves the work ratio by some 3 %.
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
use fairloop_benches::net::{cpu_time, thread_cpu_time};
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
    /// Time spent inside `cpu_work`, all tenants together.
    in_work_ns: AtomicU64,
    stop: AtomicBool,
    rounds: u32,
}

impl Load {
    fn new(n: usize, rounds: u32) -> Arc<Self> {
        Arc::new(Load {
            work: (0..n).map(|_| AtomicU64::new(0)).collect(),
            in_work_ns: AtomicU64::new(0),
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

    /// One tenant's step: the work, timed, and its count.
    fn step(&self, i: usize) {
        let start = Instant::now();
        cpu_work(self.rounds);
        let took = start.elapsed().as_nanos() as u64;
        self.in_work_ns.fetch_add(took, Ordering::Relaxed);
        self.work[i].fetch_add(1, Ordering::Relaxed);
    }

    fn in_work(&self) -> Duration {
        Duration::from_nanos(self.in_work_ns.load(Ordering::Relaxed))
    }
}

async fn tenant(load: Arc<Load>, i: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        load.step(i);
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

/// CPU time of the thread that runs fairloop's core 0.
fn core_cpu() -> Duration {
    thread_cpu_time("fairloop-core-0").expect("the core thread's CPU time")
}

/// CPU time of this process (tokio `current_thread` runs on the main
/// thread; the watcher beside it sleeps).
fn process_cpu() -> Duration {
    cpu_time(std::process::id()).expect("the process's CPU time")
}

/// What a span of the load did.
struct Rates {
    /// Work per second.
    per_s: f64,
    /// Work per CPU-second of the thread(s) measured.
    per_cpu_s: f64,
    /// The share of that CPU time spent inside `cpu_work`: the rest is the
    /// runtime's. Unlike the rates, it does not move when the VM runs
    /// `cpu_work` itself faster or slower from one phase to the next.
    in_work: f64,
}

/// The rates of `done` work and `in_work` time inside it, in `wall` and
/// `used` CPU time.
fn rates(done: u64, in_work: Duration, wall: Duration, used: Duration) -> Rates {
    let used = used.as_secs_f64().max(1e-9);
    Rates {
        per_s: done as f64 / wall.as_secs_f64(),
        per_cpu_s: done as f64 / used,
        in_work: in_work.as_secs_f64() / used,
    }
}

/// Watches the running tenants for whole windows spanning about `secs`;
/// returns the worst window's Jain index and the work done per second and
/// per CPU-second of the core.
fn watch(load: &Load, secs: Duration) -> (f64, Rates) {
    let start = Instant::now();
    let (cpu0, in_work0) = (core_cpu(), load.in_work());
    let first = load.snapshot();
    let mut last = first.clone();
    let mut worst = f64::INFINITY;
    // Whole windows only; a little slack so that `secs` a multiple of the
    // window gives all of them.
    while start.elapsed() + WINDOW <= secs + WINDOW / 10 {
        std::thread::sleep(WINDOW);
        let now = load.snapshot();
        let window: Vec<f64> = now.iter().zip(&last).map(|(a, b)| (a - b) as f64).collect();
        worst = worst.min(jain(&window));
        last = now;
    }
    let done: u64 = last.iter().zip(&first).map(|(a, b)| a - b).sum();
    let in_work = load.in_work() - in_work0;
    (
        worst,
        rates(done, in_work, start.elapsed(), core_cpu() - cpu0),
    )
}

/// Work per second and per CPU-second (as `cpu` counts it) of `load` over
/// `secs`, after 200 ms of warm-up.
fn rate(load: &Load, secs: Duration, cpu: fn() -> Duration) -> Rates {
    std::thread::sleep(Duration::from_millis(200));
    let (base, in_work0) = (load.total(), load.in_work());
    let (start, cpu0) = (Instant::now(), cpu());
    std::thread::sleep(secs);
    let done = load.total() - base;
    let in_work = load.in_work() - in_work0;
    let r = rates(done, in_work, start.elapsed(), cpu() - cpu0);
    load.stop.store(true, Ordering::Relaxed);
    r
}

/// The same tasks, all in one partition (the root): work per second and
/// per CPU-second.
fn one_partition(n: usize, rounds: u32, secs: Duration) -> Rates {
    let load = Load::new(n, rounds);
    let rt = fairloop_rt();
    for i in 0..n {
        rt.spawn(tenant(load.clone(), i)).detach();
    }
    let r = rate(&load, secs, core_cpu);
    drop(rt);
    r
}

/// The same tasks on tokio `current_thread`: work per second and per
/// CPU-second.
fn on_tokio(n: usize, rounds: u32, secs: Duration) -> Rates {
    let load = Load::new(n, rounds);
    let rt = tokio_rt();
    let watcher = {
        let load = load.clone();
        std::thread::spawn(move || rate(&load, secs, process_cpu))
    };
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let load = load.clone();
                tokio::spawn(async move {
                    while !load.stop.load(Ordering::Relaxed) {
                        load.step(i);
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
    // The light sleeper, in a partition of its own, made first: a
    // partition made later, by a task in a partition that has just run
    // among 10,000 tenants, would start only once that partition's last
    // poll is repaid (strict shares), which is not what is measured here.
    // Its wakes count from when the tenants run.
    let measuring = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let load = load.clone();
        let measuring = measuring.clone();
        rt.spawn(async move {
            partition::spawn("sleeper", async move {
                let mut late = Vec::new();
                while !load.stop.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + SLEEPER_PERIOD;
                    fairloop::time::sleep_until(deadline).await;
                    if measuring.load(Ordering::Relaxed) {
                        late.push(Instant::now().saturating_duration_since(deadline));
                    }
                }
                late
            })
            .await
            .expect("sleeper")
        })
    };
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
    measuring.store(true, Ordering::Relaxed);
    // Warm-up: every busy tenant's statistics fill their first batch of
    // delays and allocate its histogram (a one-time page fault each,
    // some 10 % of the core while 10,000 of them do it).
    std::thread::sleep(warmup());
    let (worst_jain, work) = watch(&load, secs);
    load.stop.store(true, Ordering::Relaxed);
    let mut late = futures_lite::future::block_on(sleeper).expect("sleeper");
    drop(rt);
    late.sort();
    let one = one_partition(n, rounds, secs);
    let tokio = on_tokio(n, rounds, secs);
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        creator_late.as_secs_f64() * 1e3,
        worst_jain,
        work.per_s,
        one.per_s,
        tokio.per_s,
        quantile(&late, 0.5).as_secs_f64() * 1e3,
        quantile(&late, 0.99).as_secs_f64() * 1e3,
        late.len(),
        work.per_cpu_s,
        one.per_cpu_s,
        tokio.per_cpu_s,
        work.in_work,
        one.in_work,
        tokio.in_work,
    )
}

fn child(kind: &str, n: usize) -> Vec<f64> {
    child_numbers(CHILD_ENV, &format!("{kind}:{n}"))
}

/// `TENANTS_WARMUP` seconds (default 4) of tenants running before the
/// fairness and work figures count.
fn warmup() -> Duration {
    let s = std::env::var("TENANTS_WARMUP")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(4.0);
    Duration::from_secs_f64(s.max(0.0))
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
         | work per core CPU-s / one partition [range] | / tokio | per wall s / one partition \
         | / tokio | core time in the work: tenants · one partition · tokio [ratio range] \
         | sleeper late p50 ms | p99 ms | sleeps |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let work = med(&|r| r[8] / r[9]);
        let in_work = med(&|r| r[11] / r[12]);
        println!(
            "| {n} | {} | {:.3} | {:.3} [{:.3}-{:.3}] | {:.3} | {:.3} | {:.3} \
             | {:.3} · {:.3} · {:.3} [{:.3}-{:.3}] | {} | {} | {} |",
            ms(Duration::from_secs_f64(med(&|r| r[0]).0 / 1e3)),
            med(&|r| r[1]).0,
            work.0,
            work.1,
            work.2,
            med(&|r| r[8] / r[10]).0,
            med(&|r| r[2] / r[3]).0,
            med(&|r| r[2] / r[4]).0,
            med(&|r| r[11]).0,
            med(&|r| r[12]).0,
            med(&|r| r[13]).0,
            in_work.1,
            in_work.2,
            ms(Duration::from_secs_f64(med(&|r| r[5]).0 / 1e3)),
            ms(Duration::from_secs_f64(med(&|r| r[6]).0 / 1e3)),
            med(&|r| r[7]).0,
        );
    }
}
