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
//!   then a pause at the gate below and half as long again, so that what
//!   a tenant makes once is made before anything is measured) three
//!   loads take turns on the CPU, one 2 s window each per cycle, the
//!   order reversed every other cycle, for `TENANTS_SECS` (default 6, so 3
//!   cycles) of each: the tenants; the same tasks in one partition of the
//!   same core; the same tasks on tokio `current_thread` in a thread of its
//!   own. A load waits at a gate while another runs, so this VM's drift
//!   (it runs the same work a few percent faster or slower from one spell
//!   to the next) falls on the three alike; run one after another, the
//!   tenants always first, the ratio moved by that much. Reported: Jain's
//!   index of the tenants' work in each window (the worst), the sleeper's
//!   wake delay while the tenants run (p50, p99), the work per CPU-second
//!   of the thread that runs each load (and per wall second) against one
//!   partition and tokio; for each load, the share of its thread's CPU time
//!   spent inside the work (each call timed); and the RSS the process took
//!   while the loads were measured, per tenant (what a tenant's first
//!   histogram would cost there shows in it).
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
use fairloop_benches::net::thread_cpu_time;
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

/// Where a load's tasks wait while another load is measured: the three
/// loads take turns on the CPU within one process, so that the VM running
/// the same work a few percent faster or slower from one second to the
/// next falls on each of them alike.
struct Gate {
    open: AtomicBool,
    opened: tokio::sync::Notify,
}

impl Gate {
    fn closed() -> Self {
        Gate {
            open: AtomicBool::new(false),
            opened: tokio::sync::Notify::new(),
        }
    }

    /// Returns once the gate is open (at once if it is).
    async fn pass(&self) {
        loop {
            if self.open.load(Ordering::Acquire) {
                return;
            }
            let opened = self.opened.notified();
            let mut opened = std::pin::pin!(opened);
            // Registered before the second look, so an opening between the
            // two is not missed.
            opened.as_mut().enable();
            if self.open.load(Ordering::Acquire) {
                return;
            }
            opened.await;
        }
    }

    fn set(&self, open: bool) {
        self.open.store(open, Ordering::Release);
        if open {
            self.opened.notify_waiters();
        }
    }
}

struct Load {
    work: Vec<AtomicU64>,
    /// Time spent inside `cpu_work`, all tenants together.
    in_work_ns: AtomicU64,
    gate: Gate,
    stop: AtomicBool,
    rounds: u32,
}

impl Load {
    fn new(n: usize, rounds: u32) -> Arc<Self> {
        Arc::new(Load {
            work: (0..n).map(|_| AtomicU64::new(0)).collect(),
            in_work_ns: AtomicU64::new(0),
            gate: Gate::closed(),
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

    /// Lets the tasks past the gate once more, to end.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.gate.set(true);
    }

    /// Whether a task may do another step, once the gate lets it by.
    async fn go_on(&self) -> bool {
        self.gate.pass().await;
        !self.stop.load(Ordering::Relaxed)
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
    while load.go_on().await {
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

/// CPU time of the thread that runs fairloop's core 0 (the tenants and the
/// one partition).
fn core_cpu() -> Duration {
    thread_cpu_time("fairloop-core-0").expect("the core thread's CPU time")
}

/// The thread that runs tokio `current_thread`.
const TOKIO_THREAD: &str = "tokio-tenants";

fn tokio_cpu() -> Duration {
    thread_cpu_time(TOKIO_THREAD).expect("the tokio thread's CPU time")
}

/// What a load did in its measured spans, all cycles together.
#[derive(Default)]
struct Totals {
    done: u64,
    /// Time inside `cpu_work`.
    in_work: Duration,
    wall: Duration,
    /// CPU time of the thread that runs the load.
    used: Duration,
    /// The worst Jain index of one span's work.
    worst_jain: f64,
}

impl Totals {
    /// Work per second.
    fn per_s(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Work per CPU-second of the load's thread.
    fn per_cpu_s(&self) -> f64 {
        self.done as f64 / self.used.as_secs_f64().max(1e-9)
    }

    /// The share of that CPU time spent inside `cpu_work`: the rest is the
    /// runtime's. Unlike the rates, it does not move when the VM runs
    /// `cpu_work` itself faster or slower from one phase to the next.
    fn in_work(&self) -> f64 {
        self.in_work.as_secs_f64() / self.used.as_secs_f64().max(1e-9)
    }
}

/// After a gate opens, the time until a span counts: the load's tasks wake
/// and the last load's tasks reach their gate.
const SETTLE: Duration = Duration::from_millis(200);

/// Opens `load`'s gate, lets it settle and counts one `WINDOW` of its work
/// (and, with `during`, says when the window is on) into `totals`; closes
/// the gate.
fn span(load: &Load, cpu: fn() -> Duration, totals: &mut Totals, during: Option<&AtomicBool>) {
    load.gate.set(true);
    std::thread::sleep(SETTLE);
    let first = load.snapshot();
    let (start, cpu0, in_work0) = (Instant::now(), cpu(), load.in_work());
    during.inspect(|d| d.store(true, Ordering::Relaxed));
    std::thread::sleep(WINDOW);
    during.inspect(|d| d.store(false, Ordering::Relaxed));
    let (wall, used, in_work) = (start.elapsed(), cpu() - cpu0, load.in_work() - in_work0);
    let last = load.snapshot();
    load.gate.set(false);
    let window: Vec<f64> = last
        .iter()
        .zip(&first)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let jain = jain(&window);
    if totals.wall.is_zero() || jain < totals.worst_jain {
        totals.worst_jain = jain;
    }
    totals.done += window.iter().sum::<f64>() as u64;
    totals.in_work += in_work;
    totals.wall += wall;
    totals.used += used;
}

fn run_child(n: usize, secs: Duration) -> String {
    let rounds = rounds_for(Duration::from_micros(20));
    let load = Load::new(n, rounds);
    let rt = fairloop_rt();
    // The light sleeper, in a partition of its own, made first: a
    // partition made later, by a task in a partition that has just run
    // among 10,000 tenants, would start only once that partition's last
    // poll is repaid (strict shares), which is not what is measured here.
    // Its wakes count while the tenants' work is measured.
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
    // The tenants run from their creation: the creator makes every one,
    // then sleeps 100 ms.
    load.gate.set(true);
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
    // Warm-up: caches, the allocator and the tenants' statistics settle,
    // and the tenants wait at their gate once. The gate's wakes come from
    // another thread, and a partition's first foreign wake makes its
    // injection queue (1.3 KiB): 10,000 of them made in a measured span
    // would cost the tenants there, once. So would histograms: a busy
    // tenant's delays stay in its statistics' 28 inline buckets, but with
    // 12 inline, after a pause or two, 10,000 histograms (2.4 KiB each)
    // made in the measured spans cost the tenants 3-8 % of the core in
    // them. `rss_growth` below shows what the process took while measured.
    std::thread::sleep(warmup());
    load.gate.set(false);
    std::thread::sleep(SETTLE);
    load.gate.set(true);
    std::thread::sleep(warmup() / 2);
    load.gate.set(false);
    // The same tasks in one partition (the root) of the same core, and on
    // tokio `current_thread` in a thread of its own; both wait at their
    // gates until their turn.
    let one = Load::new(n, rounds);
    for i in 0..n {
        rt.spawn(tenant(one.clone(), i)).detach();
    }
    let on_tokio = Load::new(n, rounds);
    let (spawned, all_spawned) = std::sync::mpsc::channel();
    let tokio_thread = {
        let load = on_tokio.clone();
        std::thread::Builder::new()
            .name(TOKIO_THREAD.into())
            .spawn(move || {
                tokio_rt().block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| {
                            let load = load.clone();
                            tokio::spawn(async move {
                                while load.go_on().await {
                                    load.step(i);
                                    tokio::task::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    let _ = spawned.send(());
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })
            .expect("spawn the tokio thread")
    };
    // Cycles of a window each, the order reversed every other cycle so
    // that a drift through the run falls on the three loads alike.
    let (mut tenants, mut single, mut tokio) =
        (Totals::default(), Totals::default(), Totals::default());
    all_spawned
        .recv()
        .expect("the tokio thread spawned its tasks");
    let rss_before = rss_bytes();
    let cycles = (secs.as_secs_f64() / WINDOW.as_secs_f64()).round().max(1.0) as usize;
    for cycle in 0..cycles {
        let mut order = [0, 1, 2];
        if cycle % 2 == 1 {
            order.reverse();
        }
        for which in order {
            match which {
                0 => span(&load, core_cpu, &mut tenants, Some(&measuring)),
                1 => span(&one, core_cpu, &mut single, None),
                _ => span(&on_tokio, tokio_cpu, &mut tokio, None),
            }
        }
    }
    // Memory the process took while the loads were measured: histograms
    // (or anything else) made then would show here.
    let rss_growth = rss_bytes() - rss_before;
    for l in [&load, &one, &on_tokio] {
        l.stop();
    }
    let mut late = futures_lite::future::block_on(sleeper).expect("sleeper");
    drop(rt);
    tokio_thread.join().expect("the tokio thread");
    late.sort();
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        creator_late.as_secs_f64() * 1e3,
        tenants.worst_jain,
        tenants.per_s(),
        single.per_s(),
        tokio.per_s(),
        quantile(&late, 0.5).as_secs_f64() * 1e3,
        quantile(&late, 0.99).as_secs_f64() * 1e3,
        late.len(),
        tenants.per_cpu_s(),
        single.per_cpu_s(),
        tokio.per_cpu_s(),
        tenants.in_work(),
        single.in_work(),
        tokio.in_work(),
        rss_growth as f64 / n as f64,
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
         | sleeper late p50 ms | p99 ms | sleeps | RSS taken while measured, B per tenant [max] |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
             | {:.3} · {:.3} · {:.3} [{:.3}-{:.3}] | {} | {} | {} | {:.0} [{:.0}] |",
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
            med(&|r| r[14]).0,
            med(&|r| r[14]).2,
        );
    }
}
