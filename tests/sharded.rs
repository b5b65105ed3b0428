//! Sharded partitions (`Placement::EveryCore`): one shard on every
//! unreserved core, spawns routed to the caller's core's shard (or to the
//! shards in turn from where no shard is), tasks that stay in their shard,
//! shares set on every shard and holding per core, no migration (asked or
//! by the balancer), metrics summed, and a graceful shutdown that drains
//! every shard.
//!
//! Every test is bounded by `with_timeout`; fairness is measured in work
//! done (counts), never in wall-clock time.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, with_timeout, Signal};
use fairloop::partition::{self, Partition, PartitionSpec, Placement};
use fairloop::{core_id, shutdown, spawn, task, yield_now, Runtime};

const T: u64 = 60;

/// 4 unpinned cores, core 3 reserved for "hc": shards on 0, 1 and 2.
fn reserved_rt() -> Runtime {
    Runtime::builder()
        .cores(4)
        .pin_cores(false)
        .reserve_core("hc")
        .build()
        .expect("build a runtime with a reservation")
}

/// Builds `api`, sharded, from inside `rt`.
fn make_api(rt: &Runtime) -> Partition {
    rt.block_on(async {
        Partition::builder()
            .name("api")
            .placement(Placement::EveryCore)
            .build()
            .expect("build a sharded partition")
    })
}

/// Cores the next `n` spawns through `spawn` land on, counted.
async fn spawn_counts(
    n: usize,
    spawn: impl Fn() -> fairloop::JoinHandle<usize>,
) -> BTreeMap<usize, usize> {
    let handles: Vec<_> = (0..n).map(|_| spawn()).collect();
    let mut counts = BTreeMap::new();
    for h in handles {
        *counts.entry(h.await.expect("spawned task")).or_insert(0) += 1;
    }
    counts
}

/// One shard on every unreserved core, none on the reserved one; each
/// shard is a plain, pinned partition of its core, named like the whole,
/// and found by id; the whole is found by name and id.
#[test]
fn one_shard_on_every_unreserved_core() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        assert!(api.is_sharded());
        assert_eq!(api.cores(), vec![0, 1, 2]);
        assert_eq!(api.core(), 0, "core(): the lowest core with a shard");
        assert_eq!(api.name().as_deref(), Some("api"));
        assert_eq!(api.shares(), 100);
        assert_eq!(api.shard(3), None, "core 3 is reserved");
        assert_eq!(api.shard(99), None, "core 99 does not exist");

        let handle = rt.handle();
        let mut ids = vec![api.id()];
        for core in 0..3 {
            let shard = api.shard(core).expect("a shard on every unreserved core");
            assert!(!shard.is_sharded());
            assert_eq!(shard.core(), core);
            assert_eq!(shard.cores(), vec![core]);
            assert_eq!(shard.shard(core), Some(shard.clone()));
            assert_eq!(shard.name().as_deref(), Some("api"));
            assert_eq!(shard.shard_of(), Some(api.clone()));
            assert_eq!(handle.partition(shard.id()), Some(shard.clone()));
            let ran_on = futures_lite::future::block_on(shard.spawn(async { core_id() }))
                .expect("a task in the shard");
            assert_eq!(ran_on, core, "a shard's tasks run on its core");
            ids.push(shard.id());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            4,
            "the whole and its shards have ids of their own"
        );
        assert_eq!(handle.partition(api.id()), Some(api.clone()));
        let (by_name, plain) = rt.block_on(async {
            (
                partition::get("api"),
                Partition::builder().name("plain").build().unwrap(),
            )
        });
        assert_eq!(by_name, Some(api.clone()), "get(name) finds the whole");
        assert_eq!(plain.shard_of(), None);
        assert!(!plain.is_sharded());
        assert_eq!(plain.cores(), vec![plain.core()]);
        assert_eq!(plain.shard(plain.core()), Some(plain.clone()));

        // The metrics list every shard with its core, named like the whole.
        let m = rt.metrics();
        let shards = m.shards(api.id());
        assert_eq!(
            shards.iter().map(|p| p.core).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for s in &shards {
            assert_eq!(s.name.as_deref(), Some("api"));
            assert_eq!(s.shard_of, Some(api.id()));
        }
        assert_eq!(m.partition("api").map(|p| p.core), Some(0));
        assert!(m
            .partitions
            .iter()
            .all(|p| p.core != 3 || p.shard_of.is_none()));
        assert!(!m.partitions.iter().any(|p| p.id == api.id()));
        let debug = format!("{api:?}");
        assert!(debug.contains("cores: [0, 1, 2]"), "{debug}");
    })
}

/// From a core with a shard, a spawn through the handle, by name or by
/// builder-made handle goes to that core's shard; from the reserved core
/// (no shard), from a plain thread and from another runtime's core, to
/// the shards in turn; from a `spawn_blocking` closure, to the shard of
/// its partition's core.
#[test]
fn spawn_routing() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        for core in 0..3 {
            let api1 = api.clone();
            let got = futures_lite::future::block_on(rt.spawn_on(core, async move {
                let api = api1;
                let by_handle = spawn_counts(6, || api.spawn(async { core_id() })).await;
                let by_name =
                    spawn_counts(6, || partition::spawn("api", async { core_id() })).await;
                let by_spec = spawn_counts(6, || partition::spawn(&api, async { core_id() })).await;
                let in_shard = api
                    .spawn(async { partition::current() })
                    .await
                    .expect("current");
                (by_handle, by_name, by_spec, in_shard)
            }))
            .expect("the spawning task");
            let here = BTreeMap::from([(core, 6)]);
            assert_eq!(got.0, here, "Partition::spawn from core {core}");
            assert_eq!(got.1, here, "partition::spawn(name) from core {core}");
            assert_eq!(got.2, here, "partition::spawn(&handle) from core {core}");
            assert_eq!(Some(got.3), api.shard(core));
        }

        // The reserved core has no shard: the shards in turn, evenly.
        let even = BTreeMap::from([(0, 10), (1, 10), (2, 10)]);
        let hc = rt.block_on(async {
            Partition::builder()
                .name("healthcheck")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap()
        });
        let api2 = api.clone();
        let (by_handle, by_name) = futures_lite::future::block_on(hc.spawn(async move {
            assert_eq!(core_id(), 3);
            (
                spawn_counts(30, || api2.spawn(async { core_id() })).await,
                spawn_counts(30, || partition::spawn("api", async { core_id() })).await,
            )
        }))
        .expect("the task on the reserved core");
        assert_eq!(by_handle, even, "Partition::spawn from the reserved core");
        assert_eq!(
            by_name, even,
            "partition::spawn(name) from the reserved core"
        );

        // A plain thread.
        let outside =
            futures_lite::future::block_on(spawn_counts(30, || api.spawn(async { core_id() })));
        assert_eq!(outside, even, "Partition::spawn from a plain thread");

        // Another runtime's core is "anywhere else" too.
        let other = fairloop::Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .build()
            .unwrap();
        let api3 = api.clone();
        let from_other = other
            .block_on(async move { spawn_counts(30, || api3.spawn(async { core_id() })).await });
        assert_eq!(from_other, even, "Partition::spawn from another runtime");
        drop(other);

        // A spawn_blocking closure started on core 1 counts as on core 1.
        let api4 = api.clone();
        let from_blocking = futures_lite::future::block_on(rt.spawn_on(1, async move {
            task::spawn_blocking(move || {
                futures_lite::future::block_on(spawn_counts(6, || api4.spawn(async { core_id() })))
            })
            .await
            .expect("the blocking closure")
        }))
        .expect("the spawning task");
        assert_eq!(from_blocking, BTreeMap::from([(1, 6)]));
    })
}

/// A task spawned into a shard stays there, and so does everything it
/// spawns, across yields, timers and cross-core wakes; `current()` is the
/// shard, and spawning through it stays on the core wherever it is called.
#[test]
fn tasks_spawned_inside_a_shard_stay_in_it() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        let woken = Signal::new();
        let mut checks = Vec::new();
        for core in 0..3 {
            let shard = api.shard(core).unwrap();
            let api = api.clone();
            let woken = woken.clone();
            checks.push(shard.clone().spawn(async move {
                let me = partition::current();
                assert_eq!(me, shard);
                assert_eq!(me.name().as_deref(), Some("api"));
                assert_eq!(me.shard_of(), Some(api.clone()));
                let mut seen = vec![core_id()];
                yield_now().await;
                seen.push(core_id());
                fairloop::time::sleep(Duration::from_millis(1)).await;
                seen.push(core_id());
                // Woken from a plain thread: still here.
                woken.wait().await;
                seen.push(core_id());
                let child = spawn(async {
                    let grandchild = spawn(async { (core_id(), partition::current()) });
                    let (c, p) = grandchild.await.unwrap();
                    (core_id(), c, p)
                })
                .await
                .unwrap();
                seen.push(child.0);
                seen.push(child.1);
                assert_eq!(child.2, me, "a grandchild stays in the shard");
                // The shard's handle spawns onto its core from here (and,
                // below, from a plain thread).
                seen.push(me.spawn(async { core_id() }).await.unwrap());
                (seen, me)
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
        woken.set();
        for (core, check) in checks.into_iter().enumerate() {
            let (mut seen, me) = futures_lite::future::block_on(check).expect("the shard's task");
            seen.push(futures_lite::future::block_on(me.spawn(async { core_id() })).unwrap());
            assert!(seen.iter().all(|&c| c == core), "shard {core}: {seen:?}");
        }
    })
}

/// `set_shares` on the whole reaches every shard (and each core's
/// scheduler: see the fairness test); on a shard, only that shard. Bad
/// values are refused with a message.
#[test]
fn set_shares_reaches_every_shard() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = rt.block_on(async {
            Partition::builder()
                .name("api")
                .shares(250)
                .latency(Duration::from_millis(5))
                .placement(Placement::EveryCore)
                .build()
                .unwrap()
        });
        let shares = |rt: &Runtime| {
            rt.metrics()
                .shards(api.id())
                .iter()
                .map(|p| p.shares)
                .collect::<Vec<_>>()
        };
        assert_eq!(api.shares(), 250);
        assert_eq!(shares(&rt), vec![250; 3]);
        api.set_shares(300).unwrap();
        assert_eq!(api.shares(), 300);
        assert_eq!(api.metrics().shares, 300);
        assert_eq!(shares(&rt), vec![300; 3]);
        for core in 0..3 {
            assert_eq!(api.shard(core).unwrap().shares(), 300);
        }
        // One shard alone.
        api.shard(1).unwrap().set_shares(50).unwrap();
        assert_eq!(shares(&rt), vec![300, 50, 300]);
        assert_eq!(api.shares(), 300);
        // From a plain thread, again on all of them.
        let api2 = api.clone();
        std::thread::spawn(move || api2.set_shares(10_000).unwrap())
            .join()
            .unwrap();
        assert_eq!(shares(&rt), vec![10_000; 3]);
        for bad in [0, 10_001] {
            let e = api.set_shares(bad).expect_err("out of range");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.to_string().contains("10000") || e.to_string().contains("10,000"),
                "{e}"
            );
        }
        assert_eq!(shares(&rt), vec![10_000; 3]);
        // The shards still run.
        for core in 0..3 {
            let shard = api.shard(core).unwrap();
            assert_eq!(
                futures_lite::future::block_on(shard.spawn(async { core_id() })).unwrap(),
                core
            );
        }
    })
}

/// `migrate_to` is refused for the whole and for each shard, with a
/// message that says why and what to do.
#[test]
fn migrate_to_is_refused() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        for target in [0, 1, 2, 3, 9] {
            let e = api.migrate_to(target).expect_err("a sharded partition");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let msg = e.to_string();
            assert!(
                msg.contains("sharded") && msg.contains("never move"),
                "{msg}"
            );
            assert!(msg.contains("Partition::shard"), "{msg}");
        }
        let shard = api.shard(0).unwrap();
        let e = shard.migrate_to(1).expect_err("a shard");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let msg = e.to_string();
        assert!(
            msg.contains("shard on core 0") && msg.contains("never move"),
            "{msg}"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(shard.core(), 0);
        assert!(rt
            .metrics()
            .shards(api.id())
            .iter()
            .all(|p| p.migrations == 0));
    })
}

/// Spins through `units` fixed pieces of work (no clock involved).
fn work(units: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..units * 2_000 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// With the balancer on, a core whose sharded partition and a plain
/// partition are both CPU-bound, beside an idle core: the balancer moves
/// the plain partition (so it is at work), never a shard.
#[test]
fn the_balancer_never_moves_a_shard() {
    with_timeout(T, || {
        let rt = Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .rebalance(Some(Duration::from_millis(20)))
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (api, plain) = rt.block_on(async {
            let api = Partition::builder()
                .name("api")
                .placement(Placement::EveryCore)
                .build()
                .unwrap();
            let plain = Partition::builder()
                .name("plain")
                .placement(Placement::Core(0))
                .pinned(false)
                .build()
                .unwrap();
            (api, plain)
        });
        let hog = |p: &Partition| {
            let stop = stop.clone();
            p.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    work(5);
                    yield_now().await;
                }
            })
            .detach();
        };
        // Core 0: the api shard and the plain partition, both busy; core 1
        // idle. Spawned from core 0, so the api tasks go to its shard.
        let api2 = api.clone();
        let stop2 = stop.clone();
        futures_lite::future::block_on(rt.spawn_on(0, async move {
            for _ in 0..3 {
                let stop = stop2.clone();
                api2.spawn(async move {
                    assert_eq!(core_id(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        work(5);
                        yield_now().await;
                    }
                })
                .detach();
            }
        }))
        .unwrap();
        hog(&plain);
        hog(&plain);
        wait_until(
            Duration::from_secs(20),
            "the balancer moves the plain partition off core 0",
            || plain.metrics().migrations > 0,
        );
        // Give it more looks to change its mind about the shards.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let m = rt.metrics();
        let shards = m.shards(api.id());
        assert_eq!(shards.len(), 2);
        for s in shards {
            assert_eq!(s.migrations, 0, "shard {s:?} moved");
        }
        assert_eq!(api.shard(0).unwrap().core(), 0);
        assert_eq!(api.shard(1).unwrap().core(), 1);
        assert_eq!(api.metrics().migrations, 0);
    })
}

/// `metrics()` on the whole is the sum over the shards (delays: the
/// largest), with the whole's id, name and shares.
#[test]
fn metrics_sum_over_the_shards() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        // Shard k runs (k + 1) * 4 tasks of 3 polls each.
        for core in 0..3 {
            let shard = api.shard(core).unwrap();
            let tasks: Vec<_> = (0..(core + 1) * 4)
                .map(|_| {
                    shard.spawn(async {
                        yield_now().await;
                        yield_now().await;
                    })
                })
                .collect();
            futures_lite::future::block_on(async {
                for t in tasks {
                    t.await.unwrap();
                }
            });
        }
        // Parked tasks: live, not queued.
        let park = Signal::new();
        for core in 0..3 {
            let shard = api.shard(core).unwrap();
            for _ in 0..2 {
                let park = park.clone();
                shard.spawn(async move { park.wait().await }).detach();
            }
        }
        wait_until(Duration::from_secs(10), "the parked tasks park", || {
            api.metrics().queued == 0 && api.metrics().polls >= 24 * 3 + 6
        });

        let sum = api.metrics();
        let rows = rt.metrics();
        let rows = rows.shards(api.id());
        assert_eq!(rows.len(), 3);
        assert_eq!(sum.id, api.id());
        assert_eq!(sum.name.as_deref(), Some("api"));
        assert_eq!(sum.core, 0);
        assert_eq!(sum.shares, 100);
        assert_eq!(sum.shard_of, None);
        assert_eq!(sum.tasks, 6);
        assert_eq!(sum.tasks, rows.iter().map(|r| r.tasks).sum::<usize>());
        assert_eq!(sum.queued, 0);
        assert_eq!(sum.polls, rows.iter().map(|r| r.polls).sum::<u64>());
        assert_eq!(
            sum.polls,
            24 * 3 + 6,
            "3 polls per finished task, 1 per parked"
        );
        for (core, r) in rows.iter().enumerate() {
            assert_eq!(r.polls, (core as u64 + 1) * 4 * 3 + 2, "shard {core}");
        }
        assert_eq!(sum.busy, rows.iter().map(|r| r.busy).sum());
        assert_eq!(
            sum.long_polls,
            rows.iter().map(|r| r.long_polls).sum::<u64>()
        );
        assert_eq!(sum.migrations, 0);
        let max = |f: fn(&fairloop::metrics::PartitionMetrics) -> Duration| {
            rows.iter().map(|r| f(r)).max().unwrap()
        };
        assert_eq!(sum.sched_delay_p50, max(|r| r.sched_delay_p50));
        assert_eq!(sum.sched_delay_p99, max(|r| r.sched_delay_p99));
        assert_eq!(sum.sched_delay_max, max(|r| r.sched_delay_max));
        park.set();
        wait_until(Duration::from_secs(10), "the parked tasks end", || {
            api.metrics().tasks == 0
        });
    })
}

/// On each core, a sharded partition's shard competes with another
/// partition of that core by its shares: with 400 shares (set on the whole
/// after creation) against 100, it does about four times the work, on
/// every core (without the shares it would be even). Measured in units of
/// work done until each core's total reaches a fixed count; the bounds are
/// wide because a poll is charged its wall time, and a test machine's
/// other load preempts the cores' threads at random.
#[test]
fn shares_hold_per_shard_against_another_partition_on_the_same_core() {
    with_timeout(T, || {
        const TOTAL: u64 = 20_000;
        const HOGS: usize = 4;
        let rt = common::rt(2);
        let api = make_api(&rt);
        api.set_shares(400).unwrap();
        // Per core: [api units, batch units].
        let counts: Arc<Vec<[AtomicU64; 2]>> =
            Arc::new((0..2).map(|_| Default::default()).collect());
        let start = Signal::new();
        let mut done = Vec::new();
        for core in 0..2 {
            let batch = rt.block_on(async move {
                Partition::builder()
                    .name(&format!("batch-{core}"))
                    .placement(Placement::Core(core))
                    .build()
                    .unwrap()
            });
            for (which, p) in [(0, api.shard(core).unwrap()), (1, batch)] {
                for _ in 0..HOGS {
                    let counts = counts.clone();
                    let start = start.clone();
                    done.push(p.spawn(async move {
                        start.wait().await;
                        let mine = &counts[core_id()];
                        while mine[0].load(Ordering::Relaxed) + mine[1].load(Ordering::Relaxed)
                            < TOTAL
                        {
                            work(5);
                            mine[which].fetch_add(1, Ordering::Relaxed);
                            yield_now().await;
                        }
                    }));
                }
            }
        }
        start.set();
        futures_lite::future::block_on(async {
            for d in done {
                d.await.unwrap();
            }
        });
        for (core, c) in counts.iter().enumerate() {
            let (a, b) = (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed));
            let ratio = a as f64 / b.max(1) as f64;
            println!("core {core}: api shard {a} units, batch {b} units: {ratio:.2} (shares 4:1)");
            assert!(
                (2.0..=8.0).contains(&ratio),
                "core {core}: the shard with 400 shares did {a} units against {b} for 100 shares"
            );
        }
    })
}

/// A graceful shutdown drains every shard: tasks that wait for the
/// request finish (with a child each), none is cancelled; afterwards a
/// spawn into the sharded partition is refused.
#[test]
fn shutdown_graceful_drains_the_shards() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let api = make_api(&rt);
        let finished = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        for core in 0..3 {
            let shard = api.shard(core).unwrap();
            for _ in 0..4 {
                let finished = finished.clone();
                let waiting = waiting.clone();
                shard
                    .spawn(async move {
                        waiting.fetch_add(1, Ordering::SeqCst);
                        shutdown::requested().await;
                        // Work after the request, in the shard: a timer
                        // and a child task.
                        fairloop::time::sleep(Duration::from_millis(5)).await;
                        let here = core_id();
                        let child = spawn(async { core_id() }).await.unwrap();
                        assert_eq!(child, here);
                        finished.fetch_add(1, Ordering::SeqCst);
                    })
                    .detach();
            }
        }
        wait_until(Duration::from_secs(10), "every task waits", || {
            waiting.load(Ordering::SeqCst) == 12
        });
        let report = rt.shutdown_graceful(Duration::from_secs(20));
        assert!(report.drained, "{report:?}");
        assert_eq!(report.cancelled, 0, "{report:?}");
        assert_eq!(
            report.completed, 24,
            "12 tasks and their children: {report:?}"
        );
        assert_eq!(finished.load(Ordering::SeqCst), 12);
        let late = futures_lite::future::block_on(api.spawn(async {}));
        assert!(late.expect_err("refused after shutdown").is_cancelled());
    })
}

/// `Builder::placement(Placement::EveryCore)` as the runtime's default:
/// partitions made without a placement of their own, and by name, are
/// sharded; anonymous partitions stay on one core; an explicit placement
/// still wins; `pinned(false)` and a name taken are refused.
#[test]
fn every_core_as_the_runtime_default() {
    with_timeout(T, || {
        let rt = Runtime::builder()
            .cores(3)
            .pin_cores(false)
            .reserve_core("hc")
            .placement(Placement::EveryCore)
            .build()
            .expect("EveryCore is a valid default placement");
        let spread = Arc::new(Mutex::new(BTreeMap::new()));
        rt.block_on(async move {
            let built = Partition::builder().name("built").build().unwrap();
            assert!(built.is_sharded());
            assert_eq!(built.cores(), vec![0, 1]);
            let unnamed = Partition::builder().build().unwrap();
            assert!(unnamed.is_sharded(), "an unnamed partition is sharded too");

            // By name: created sharded, then joined.
            let by_name = partition::spawn("tenant", async { partition::current() })
                .await
                .unwrap();
            let tenant = partition::get("tenant").expect("created by name");
            assert!(tenant.is_sharded());
            assert_eq!(by_name.shard_of(), Some(tenant.clone()));
            assert_eq!(by_name.core(), 0, "from core 0, into core 0's shard");

            // Anonymous: one plain partition on this core.
            let anon = partition::spawn(PartitionSpec::anonymous(), async {
                (partition::current(), core_id())
            })
            .await
            .unwrap();
            assert!(!anon.0.is_sharded() && anon.0.shard_of().is_none());
            assert_eq!(anon.1, 0);

            // An explicit placement wins.
            let one = Partition::builder()
                .placement(Placement::Core(1))
                .build()
                .unwrap();
            assert!(!one.is_sharded());
            assert_eq!(one.cores(), vec![1]);

            let e = Partition::builder()
                .pinned(false)
                .build()
                .expect_err("pinned(false) with EveryCore");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("EveryCore"), "{e}");
            let e = Partition::builder()
                .name("built")
                .placement(Placement::Core(0))
                .build()
                .expect_err("a name taken by a sharded partition");
            assert!(e.to_string().contains("already taken"), "{e}");
            let e = Partition::builder()
                .name("one-core")
                .placement(Placement::Core(0))
                .build()
                .and_then(|_| Partition::builder().name("one-core").build())
                .expect_err("a sharded partition under a plain one's name");
            assert!(e.to_string().contains("already taken"), "{e}");
        });
        // Work spawned by name from each core stays on it.
        for core in 0..2 {
            let spread = spread.clone();
            futures_lite::future::block_on(rt.spawn_on(core, async move {
                let c = partition::spawn("tenant", async { core_id() })
                    .await
                    .unwrap();
                spread.lock().unwrap().insert(core, c);
            }))
            .unwrap();
        }
        assert_eq!(*spread.lock().unwrap(), BTreeMap::from([(0, 0), (1, 1)]));
    })
}
