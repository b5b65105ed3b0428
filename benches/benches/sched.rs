//! Scheduler micro-benchmarks: fairloop (one core, unpinned) against tokio's
//! `current_thread` runtime on the same work, in the same run.
//!
//! Each group has two functions, `fairloop` and `tokio`, on runtimes built
//! once outside every measurement. One iteration is one run of the whole
//! workload (e.g. 10k spawns and joins); a sample times its iterations from
//! inside one `block_on` (`iter_custom`), so the figures are the schedulers'
//! work, not the cost of entering `block_on` — that cost is its own group,
//! `block_on`, because it differs by design: fairloop runs the future as a
//! task on its core thread and parks the caller, tokio's `current_thread`
//! runs it on the calling thread. At the end the bench prints
//! `ratio = tokio / fairloop` of the median times (above 1.0: fairloop is
//! faster).
//!
//! Run: `cargo bench -p fairloop-benches --bench sched` (a filter such as
//! `-- ping_pong` runs one group).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use async_channel::{bounded, Receiver, Sender};
use criterion::measurement::WallTime;
use criterion::{black_box, BenchmarkGroup, Criterion};
use fairloop_benches::{fairloop_rt, machine, tokio_rt};

const SPAWN_MANY: usize = 10_000;
const YIELD_TASKS: usize = 200;
const YIELDS: usize = 1_000;
const PING_PONG_PAIRS: usize = 1_000;
const CHAIN_DEPTH: usize = 1_000;
const REMOTE_TASKS: usize = 1_000;
const PARTITIONS: usize = 4;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

/// More samples for the groups whose spread on a shared 2-CPU machine is
/// widest (a foreign thread, or a 5% criterion to judge).
fn configure_noisy(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// Times `iters` runs of `work()` inside ONE `block_on` of fairloop, so the
/// figure is the scheduler's work only; the cost of entering and leaving
/// `block_on` is measured on its own by the `block_on` group.
fn bench_fairloop<W, Fut>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &fairloop::Runtime,
    work: W,
) where
    W: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let work = work.clone();
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    work().await;
                }
                start.elapsed()
            })
        })
    });
}

/// [`bench_fairloop`] for tokio's `current_thread` runtime.
fn bench_tokio<W, Fut>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &tokio::runtime::Runtime, work: W)
where
    W: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let work = work.clone();
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    work().await;
                }
                start.elapsed()
            })
        })
    });
}

// ---- block_on: the round trip into the runtime and back ---------------------

/// An empty `block_on`. fairloop runs the future as a task on its core
/// thread and parks the caller; tokio's `current_thread` runs it on the
/// calling thread. Not part of the other groups' figures.
fn block_on(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("block_on");
    configure(&mut g);
    g.bench_function("fairloop", |b| {
        b.iter(|| fl.block_on(async { black_box(1) }))
    });
    g.bench_function("tokio", |b| b.iter(|| tk.block_on(async { black_box(1) })));
    g.finish();
}

// ---- spawn_many: 10k spawn + join -------------------------------------------

async fn fl_spawn_many() {
    let handles: Vec<_> = (0..SPAWN_MANY)
        .map(|i| fairloop::spawn(async move { black_box(i) }))
        .collect();
    for h in handles {
        black_box(h.await.expect("task ok"));
    }
}

async fn tk_spawn_many() {
    let handles: Vec<_> = (0..SPAWN_MANY)
        .map(|i| tokio::spawn(async move { black_box(i) }))
        .collect();
    for h in handles {
        black_box(h.await.expect("task ok"));
    }
}

fn spawn_many(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("spawn_many");
    configure(&mut g);
    bench_fairloop(&mut g, "fairloop", fl, fl_spawn_many);
    bench_tokio(&mut g, tk, tk_spawn_many);
    g.finish();
}

// ---- yield_many: 200 tasks × 1000 yield_now ---------------------------------

async fn fl_yield_tasks(n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            fairloop::spawn(async {
                for _ in 0..YIELDS {
                    fairloop::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task ok");
    }
}

async fn tk_yield_tasks(n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..YIELDS {
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task ok");
    }
}

fn yield_many(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("yield_many");
    configure(&mut g);
    bench_fairloop(&mut g, "fairloop", fl, || fl_yield_tasks(YIELD_TASKS));
    bench_tokio(&mut g, tk, || tk_yield_tasks(YIELD_TASKS));
    g.finish();
}

// ---- yield_many split over 4 partitions vs one partition (fairloop only) ----

fn yield_many_partitions(c: &mut Criterion, fl: &fairloop::Runtime) {
    let mut g = c.benchmark_group("yield_many_partitions");
    configure_noisy(&mut g);
    // The same 200 × 1000 yields, driven from a named partition (so both
    // variants pay for the same `partition::spawn` hops).
    bench_fairloop(&mut g, "one_partition", fl, || async {
        fairloop::partition::spawn("one", fl_yield_tasks(YIELD_TASKS))
            .await
            .expect("partition ok")
    });
    bench_fairloop(&mut g, "four_partitions", fl, || async {
        let drivers: Vec<_> = (0..PARTITIONS)
            .map(|i| {
                fairloop::partition::spawn(
                    format!("p{i}"),
                    fl_yield_tasks(YIELD_TASKS / PARTITIONS),
                )
            })
            .collect();
        for d in drivers {
            d.await.expect("partition ok");
        }
    });
    g.finish();
}

// ---- ping_pong: 1000 pairs, one message each way ----------------------------

async fn fl_ping_pong() {
    let pingers: Vec<_> = (0..PING_PONG_PAIRS)
        .map(|i| {
            fairloop::spawn(async move {
                let (ping_tx, ping_rx) = bounded::<usize>(1);
                let (pong_tx, pong_rx) = bounded::<usize>(1);
                fairloop::spawn(async move {
                    let v = ping_rx.recv().await.expect("ping");
                    pong_tx.send(v + 1).await.expect("pong");
                })
                .detach();
                ping_tx.send(i).await.expect("ping");
                pong_rx.recv().await.expect("pong")
            })
        })
        .collect();
    for p in pingers {
        black_box(p.await.expect("task ok"));
    }
}

async fn tk_ping_pong() {
    let pingers: Vec<_> = (0..PING_PONG_PAIRS)
        .map(|i| {
            tokio::spawn(async move {
                let (ping_tx, ping_rx) = bounded::<usize>(1);
                let (pong_tx, pong_rx) = bounded::<usize>(1);
                drop(tokio::spawn(async move {
                    let v = ping_rx.recv().await.expect("ping");
                    pong_tx.send(v + 1).await.expect("pong");
                }));
                ping_tx.send(i).await.expect("ping");
                pong_rx.recv().await.expect("pong")
            })
        })
        .collect();
    for p in pingers {
        black_box(p.await.expect("task ok"));
    }
}

fn ping_pong(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("ping_pong");
    configure(&mut g);
    bench_fairloop(&mut g, "fairloop", fl, fl_ping_pong);
    bench_tokio(&mut g, tk, tk_ping_pong);
    g.finish();
}

// ---- chained_spawn: depth 1000, a oneshot handed down the chain -------------

fn fl_chain(done: Sender<()>, n: usize) {
    if n == 0 {
        done.try_send(()).expect("chain end");
    } else {
        fairloop::spawn(async move { fl_chain(done, n - 1) }).detach();
    }
}

fn tk_chain(done: Sender<()>, n: usize) {
    if n == 0 {
        done.try_send(()).expect("chain end");
    } else {
        drop(tokio::spawn(async move { tk_chain(done, n - 1) }));
    }
}

fn chained_spawn(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("chained_spawn");
    configure(&mut g);
    bench_fairloop(&mut g, "fairloop", fl, || async {
        let (tx, rx) = bounded(1);
        fl_chain(tx, CHAIN_DEPTH);
        rx.recv().await.expect("chain done");
    });
    bench_tokio(&mut g, tk, || async {
        let (tx, rx) = bounded(1);
        tk_chain(tx, CHAIN_DEPTH);
        rx.recv().await.expect("chain done");
    });
    g.finish();
}

// ---- remote_wake: 1000 parked tasks woken from a plain std::thread ----------

/// A plain `std::thread` (no runtime on it) that completes every sender it
/// is handed: each completion wakes a parked task from a foreign thread.
struct ForeignWaker {
    tx: Mutex<Option<mpsc::Sender<Vec<Sender<()>>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ForeignWaker {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Vec<Sender<()>>>();
        let thread = thread::spawn(move || {
            for senders in rx {
                for s in senders {
                    s.try_send(()).expect("wake");
                }
            }
        });
        ForeignWaker {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
        }
    }

    fn wake_all(&self, senders: Vec<Sender<()>>) {
        self.tx
            .lock()
            .expect("not poisoned")
            .as_ref()
            .expect("running")
            .send(senders)
            .expect("waker thread alive");
    }
}

impl Drop for ForeignWaker {
    fn drop(&mut self) {
        self.tx.lock().expect("not poisoned").take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Spawns the tasks with `spawn`, waits (yielding with `yield_now`) until
/// every one is parked on its receiver, then has the foreign thread wake
/// them all and joins them.
async fn remote_wake_round<H, Y>(
    waker: &ForeignWaker,
    spawn: impl Fn(Arc<AtomicUsize>, Receiver<()>) -> H,
    yield_now: impl Fn() -> Y,
) where
    H: Future,
    Y: Future<Output = ()>,
{
    let parked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(REMOTE_TASKS);
    let handles: Vec<_> = (0..REMOTE_TASKS)
        .map(|_| {
            let (tx, rx) = bounded::<()>(1);
            senders.push(tx);
            spawn(parked.clone(), rx)
        })
        .collect();
    // Every task must be parked before the foreign thread sends, so that
    // each completion is a remote wake of a parked task.
    while parked.load(Ordering::Relaxed) < REMOTE_TASKS {
        yield_now().await;
    }
    waker.wake_all(senders);
    for h in handles {
        h.await;
    }
}

fn remote_wake(c: &mut Criterion, fl: &fairloop::Runtime, tk: &tokio::runtime::Runtime) {
    let waker = Arc::new(ForeignWaker::start());
    let mut g = c.benchmark_group("remote_wake");
    configure_noisy(&mut g);
    let w = waker.clone();
    bench_fairloop(&mut g, "fairloop", fl, move || {
        let w = w.clone();
        async move {
            remote_wake_round(
                &w,
                |parked, rx| {
                    let h = fairloop::spawn(async move {
                        parked.fetch_add(1, Ordering::Relaxed);
                        rx.recv().await.expect("woken");
                    });
                    async move { h.await.expect("task ok") }
                },
                fairloop::yield_now,
            )
            .await
        }
    });
    let w = waker.clone();
    bench_tokio(&mut g, tk, move || {
        let w = w.clone();
        async move {
            remote_wake_round(
                &w,
                |parked, rx| {
                    let h = tokio::spawn(async move {
                        parked.fetch_add(1, Ordering::Relaxed);
                        rx.recv().await.expect("woken");
                    });
                    async move { h.await.expect("task ok") }
                },
                tokio::task::yield_now,
            )
            .await
        }
    });
    g.finish();
}

// ---- the ratio table --------------------------------------------------------

/// criterion's output folder: `$CARGO_TARGET_DIR/criterion`, else the
/// `target/` that holds this executable (`target/release/deps/sched-…`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median time (ns) of `group/function`, if this process measured it
/// (estimates older than `since` are from an earlier, filtered-out run).
fn median_ns(group: &str, function: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_ratios(pairs: &[(&str, &str, &str)], since: SystemTime) {
    println!();
    println!("median time per iteration; {}", machine());
    println!("ratio = B / A: above 1.0 means A (fairloop, or four partitions) is faster");
    println!(
        "{:<22} {:>16} {:>12} {:>14} {:>12} {:>8}",
        "group", "A", "A µs", "B", "B µs", "ratio"
    );
    for (group, a, b) in pairs {
        if let (Some(ta), Some(tb)) = (median_ns(group, a, since), median_ns(group, b, since)) {
            println!(
                "{:<22} {:>16} {:>12.1} {:>14} {:>12.1} {:>7.3}x",
                group,
                a,
                ta / 1e3,
                b,
                tb / 1e3,
                tb / ta
            );
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    // Each runtime is built once, outside every measurement.
    let fl = fairloop_rt();
    let tk = tokio_rt();
    block_on(&mut c, &fl, &tk);
    spawn_many(&mut c, &fl, &tk);
    yield_many(&mut c, &fl, &tk);
    ping_pong(&mut c, &fl, &tk);
    chained_spawn(&mut c, &fl, &tk);
    remote_wake(&mut c, &fl, &tk);
    yield_many_partitions(&mut c, &fl);
    c.final_summary();
    print_ratios(
        &[
            ("block_on", "fairloop", "tokio"),
            ("spawn_many", "fairloop", "tokio"),
            ("yield_many", "fairloop", "tokio"),
            ("ping_pong", "fairloop", "tokio"),
            ("chained_spawn", "fairloop", "tokio"),
            ("remote_wake", "fairloop", "tokio"),
            ("yield_many_partitions", "four_partitions", "one_partition"),
        ],
        since,
    );
}
