//! Partitions: inheritance, naming, anonymous partitions, placement,
//! shares and metrics.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rt, until, wait_until, with_timeout, Signal};
use fairloop::partition::{self, Partition, PartitionSpec, Placement};
use fairloop::{core_id, spawn, task, yield_now};

const T: u64 = 20;

type Where = (Option<String>, u64, usize);

fn here() -> Where {
    let p = partition::current();
    (p.name(), p.id(), core_id())
}

#[test]
fn children_and_grandchildren_inherit_the_partition() {
    with_timeout(T, || {
        let rt = rt(2);
        let all = rt.block_on(async {
            let root = partition::current();
            assert_eq!(root.name(), None);
            partition::spawn("api", async {
                let mut seen = vec![here()];
                let children: Vec<_> = (0..4)
                    .map(|_| {
                        spawn(async {
                            let mut seen = vec![here()];
                            yield_now().await;
                            let grandchildren: Vec<_> = (0..3)
                                .map(|_| {
                                    spawn(async {
                                        fairloop::time::sleep(Duration::from_millis(1)).await;
                                        here()
                                    })
                                })
                                .collect();
                            for g in grandchildren {
                                seen.push(g.await.unwrap());
                            }
                            seen.push(here());
                            seen
                        })
                    })
                    .collect();
                for c in children {
                    seen.extend(c.await.unwrap());
                }
                seen
            })
            .await
            .unwrap()
        });
        assert_eq!(all.len(), 1 + 4 * (1 + 3 + 1));
        let (name, id, core) = all[0].clone();
        assert_eq!(name.as_deref(), Some("api"));
        assert!(id >= 2, "root partitions have ids 0..cores; got {id}");
        for w in &all {
            assert_eq!(w, &(name.clone(), id, core), "a descendant left `api`");
        }
    })
}

#[test]
fn timer_wakes_the_task_in_its_partition() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let p = Partition::builder().name("timed").build().unwrap();
            let (before, after, elapsed) = p
                .spawn(async {
                    let before = here();
                    let t0 = Instant::now();
                    fairloop::time::sleep(Duration::from_millis(5)).await;
                    let _ = fairloop::time::timeout(
                        Duration::from_millis(3),
                        std::future::pending::<()>(),
                    )
                    .await;
                    let mut iv = fairloop::time::interval(Duration::from_millis(1));
                    iv.tick().await;
                    iv.tick().await;
                    (before, here(), t0.elapsed())
                })
                .await
                .unwrap();
            assert_eq!(before.0.as_deref(), Some("timed"));
            assert_eq!(before, after);
            assert_eq!(before.1, p.id());
            assert!(elapsed >= Duration::from_millis(8), "{elapsed:?}");
        });
    })
}

#[test]
fn spawn_by_name_joins_or_creates() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let db = Partition::builder().name("db").shares(300).build().unwrap();
            assert_eq!(db.name().as_deref(), Some("db"));
            let (name, id, _) = partition::spawn("db", async { here() }).await.unwrap();
            assert_eq!(name.as_deref(), Some("db"));
            assert_eq!(id, db.id(), "&str must join the existing partition");
            // String and &String work too.
            let s = String::from("db");
            assert_eq!(
                partition::spawn(&s, async { partition::current().id() })
                    .await
                    .unwrap(),
                db.id()
            );
            assert_eq!(
                partition::spawn(s, async { partition::current().id() })
                    .await
                    .unwrap(),
                db.id()
            );
            // The shares it was built with are kept.
            assert_eq!(partition::get("db").unwrap().shares(), 300);

            // A new name creates the partition, once.
            assert!(partition::get("fresh").is_none());
            let id1 = partition::spawn("fresh", async { partition::current().id() })
                .await
                .unwrap();
            let fresh = partition::get("fresh").expect("created by partition::spawn");
            assert_eq!(fresh.id(), id1);
            assert_ne!(id1, db.id());
            let id2 = partition::spawn("fresh", async { partition::current().id() })
                .await
                .unwrap();
            assert_eq!(id1, id2);
            // Named partitions stay after their tasks end.
            assert!(partition::get("fresh").is_some());
            assert!(rt_has_partition_named("fresh"));

            // An existing Partition handle is a spec too.
            assert_eq!(
                partition::spawn(&fresh, async { partition::current().id() })
                    .await
                    .unwrap(),
                id1
            );
            assert_eq!(
                partition::spawn(fresh.clone(), async { partition::current().id() })
                    .await
                    .unwrap(),
                id1
            );
            // So is a builder.
            let built = partition::spawn(Partition::builder().name("from-builder"), async {
                partition::current().name()
            })
            .await
            .unwrap();
            assert_eq!(built.as_deref(), Some("from-builder"));
            assert!(partition::get("nope").is_none());
        });
        let m = rt.metrics();
        for n in ["db", "fresh", "from-builder"] {
            assert!(m.partition(n).is_some(), "{n} missing from metrics");
        }
    })
}

fn rt_has_partition_named(name: &str) -> bool {
    partition::get(name).is_some()
}

#[test]
fn named_partition_from_many_tasks_at_once_is_one_partition() {
    with_timeout(T, || {
        let rt = rt(2);
        let hs: Vec<_> = (0..40)
            .map(|_| {
                rt.spawn(async {
                    partition::spawn("raced", async { partition::current().id() })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let ids: Vec<u64> = hs
            .into_iter()
            .map(|h| futures_lite::future::block_on(h).unwrap())
            .collect();
        assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    })
}

#[test]
fn partition_get_and_current() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let p = Partition::builder().name("lookup").build().unwrap();
            let got = partition::get("lookup").unwrap();
            assert_eq!(got, p);
            assert_eq!(got.id(), p.id());
            let cur = p.spawn(async { partition::current() }).await.unwrap();
            assert_eq!(cur, p);
            // Root partitions: ids 0..cores, no name, one per core.
            assert_eq!(partition::current().id(), 0);
            assert_eq!(partition::current().name(), None);
            let root1 = fairloop::spawn(async { partition::current() })
                .await
                .unwrap();
            assert_eq!(root1.id(), 0);
        });
        let r1 = futures_lite::future::block_on(rt.spawn_on(1, async {
            (partition::current().id(), partition::current().core())
        }))
        .unwrap();
        assert_eq!(r1, (1, 1));
        // From a spawn_blocking closure.
        let name = rt.block_on(async {
            partition::spawn("lookup", async {
                task::spawn_blocking(|| {
                    (
                        partition::current().name(),
                        partition::get("lookup").map(|p| p.id()),
                    )
                })
                .await
                .unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(name.0.as_deref(), Some("lookup"));
        assert!(name.1.is_some());
    })
}

#[test]
fn anonymous_partition_is_fresh_and_disappears_after_its_last_task() {
    with_timeout(T, || {
        let rt = rt(2);
        let release = Signal::new();
        let r = release.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let outer = rt.spawn(async move {
            let h = partition::spawn(PartitionSpec::anonymous(), async move {
                let p = partition::current();
                tx.send((p.id(), p.name())).unwrap();
                // A child keeps the partition alive after the first task.
                let child = spawn(async move {
                    r.wait().await;
                    partition::current().id()
                });
                child.detach();
            });
            h.await.unwrap();
        });
        let (id, name) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        futures_lite::future::block_on(outer).unwrap();
        assert_eq!(name, None);
        assert!(id >= 2, "not a root partition: {id}");
        let ids = |rt: &fairloop::Runtime| -> Vec<u64> {
            rt.metrics().partitions.iter().map(|p| p.id).collect()
        };
        assert!(
            ids(&rt).contains(&id),
            "live anonymous partition missing from metrics"
        );
        let m = rt.metrics();
        let pm = m.partitions.iter().find(|p| p.id == id).unwrap();
        assert_eq!(pm.tasks, 1);
        assert_eq!(pm.name, None);

        // A second anonymous partition is distinct.
        let id2 = rt.block_on(async {
            partition::spawn(PartitionSpec::anonymous(), async {
                partition::current().id()
            })
            .await
            .unwrap()
        });
        assert_ne!(id2, id);

        release.set();
        wait_until(
            Duration::from_secs(10),
            "anonymous partitions retired",
            || {
                let ids = ids(&rt);
                !ids.contains(&id) && !ids.contains(&id2)
            },
        );
        // Roots stay.
        let ids = ids(&rt);
        assert!(ids.contains(&0) && ids.contains(&1), "{ids:?}");
    })
}

#[test]
fn anonymous_partition_disappears_even_after_using_timers() {
    with_timeout(T, || {
        let rt = rt(2);
        let id = rt.block_on(async {
            // A live timer on the same core with an earlier deadline than the
            // cancelled one below, so the core's timer heap keeps both.
            spawn(fairloop::time::sleep(Duration::from_secs(1800))).detach();
            yield_now().await;
            partition::spawn(PartitionSpec::anonymous(), async {
                // A timeout that does not fire (its Sleep is dropped pending)
                // and a sleep that does.
                let r = fairloop::time::timeout(Duration::from_secs(3600), async {
                    yield_now().await;
                    3
                })
                .await;
                assert_eq!(r, Ok(3));
                fairloop::time::sleep(Duration::from_millis(1)).await;
                partition::current().id()
            })
            .await
            .unwrap()
        });
        wait_until(
            Duration::from_secs(3),
            "anonymous partition (which used a cancelled timer) to leave metrics",
            || rt.metrics().partitions.iter().all(|p| p.id != id),
        );
    })
}

#[test]
fn core_placement_runs_tasks_on_that_core() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            assert_eq!(core_id(), 0);
            let p = Partition::builder()
                .name("on-one")
                .placement(Placement::Core(1))
                .build()
                .unwrap();
            assert_eq!(p.core(), 1);
            let cores = p
                .spawn(async {
                    let mut cores = vec![core_id()];
                    fairloop::time::sleep(Duration::from_millis(1)).await;
                    cores.push(core_id());
                    cores.push(spawn(async { core_id() }).await.unwrap());
                    cores.push(
                        task::spawn_blocking(|| spawn(async { core_id() }))
                            .await
                            .unwrap()
                            .await
                            .unwrap(),
                    );
                    cores
                })
                .await
                .unwrap();
            assert_eq!(cores, [1, 1, 1, 1]);
            let m = p.metrics();
            assert_eq!(m.core, 1);

            // Core(0) from core 0, and a Local partition created on core 1.
            let p0 = Partition::builder()
                .placement(Placement::Core(0))
                .build()
                .unwrap();
            assert_eq!(p0.spawn(async { core_id() }).await.unwrap(), 0);
            let local_on_1 = p
                .spawn(async {
                    let q = Partition::builder()
                        .placement(Placement::Local)
                        .build()
                        .unwrap();
                    q.spawn(async { core_id() }).await.unwrap()
                })
                .await
                .unwrap();
            assert_eq!(local_on_1, 1);
        });
    })
}

#[test]
fn reserved_placement_uses_the_reserved_core() {
    with_timeout(T, || {
        let rt = fairloop::Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .reserve_core("hc")
            .build()
            .unwrap();
        let m = rt.metrics();
        assert_eq!(m.cores[1].reserved_for.as_deref(), Some("hc"));
        assert_eq!(m.cores[0].reserved_for, None);
        rt.block_on(async {
            let hc = Partition::builder()
                .name("healthcheck")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap();
            assert_eq!(hc.core(), 1);
            assert_eq!(hc.spawn(async { core_id() }).await.unwrap(), 1);
            // Placement::Local from the reserved core keeps the reservation
            // exclusive; so do RoundRobin and LeastLoaded.
            let elsewhere = hc
                .spawn(async {
                    let q = Partition::builder().build().unwrap();
                    q.spawn(async { core_id() }).await.unwrap()
                })
                .await
                .unwrap();
            assert_eq!(elsewhere, 0);
            for _ in 0..4 {
                for pl in [Placement::RoundRobin, Placement::LeastLoaded] {
                    let q = Partition::builder().placement(pl.clone()).build().unwrap();
                    assert_eq!(q.core(), 0, "{pl:?} placed on the reserved core");
                }
            }
        });
    })
}

#[test]
fn shares_and_set_shares() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let p = Partition::builder()
                .name("weighted")
                .shares(300)
                .build()
                .unwrap();
            assert_eq!(p.shares(), 300);
            assert_eq!(p.metrics().shares, 300);
            p.set_shares(50).unwrap();
            assert_eq!(p.shares(), 50);
            assert_eq!(p.metrics().shares, 50);
            // From another thread, and on a partition of another core.
            let q = Partition::builder()
                .placement(Placement::Core(1))
                .build()
                .unwrap();
            assert_eq!(q.shares(), 100, "default shares");
            let q2 = q.clone();
            std::thread::spawn(move || q2.set_shares(10_000).unwrap())
                .join()
                .unwrap();
            assert_eq!(q.shares(), 10_000);
            p.set_shares(1).unwrap();
            assert_eq!(p.shares(), 1);
            // Both still run tasks.
            assert_eq!(p.spawn(async { 1 }).await.unwrap(), 1);
            assert_eq!(q.spawn(async { core_id() }).await.unwrap(), 1);
        });
        let m = rt.metrics();
        assert_eq!(m.partition("weighted").unwrap().shares, 1);
    })
}

#[test]
fn metrics_move() {
    with_timeout(T, || {
        // A stall threshold no 2 ms poll reaches, even when a loaded CI
        // machine preempts the core thread mid-poll.
        let rt = fairloop::Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .stall_threshold(Duration::from_secs(5))
            .build()
            .expect("runtime");
        let before = rt.metrics();
        assert_eq!(before.cores.len(), 2);
        for (i, c) in before.cores.iter().enumerate() {
            assert_eq!(c.core, i);
            assert!(!c.pinned, "pin_cores(false) but core {i} says pinned");
        }
        rt.block_on(async {
            let p = Partition::builder().name("busy").build().unwrap();
            let m0 = p.metrics();
            assert_eq!(m0.polls, 0);
            assert_eq!(m0.tasks, 0);
            assert_eq!(m0.name.as_deref(), Some("busy"));
            assert_eq!(m0.id, p.id());

            // Parked tasks are counted.
            let go = Signal::new();
            let parked: Vec<_> = (0..3)
                .map(|_| {
                    let g = go.clone();
                    p.spawn(async move { g.wait().await })
                })
                .collect();
            assert_eq!(p.metrics().tasks, 3);

            // CPU work in several polls.
            let spins = Arc::new(AtomicUsize::new(0));
            let s = spins.clone();
            p.spawn(async move {
                for _ in 0..10 {
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(2) {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                    yield_now().await;
                }
            })
            .await
            .unwrap();
            go.set();
            for h in parked {
                h.await.unwrap();
            }
            until(Duration::from_secs(5), "busy partition metrics", || {
                let m = p.metrics();
                m.polls >= 11 && m.busy >= Duration::from_millis(10) && m.tasks == 0
            })
            .await;
            let m = p.metrics();
            println!("partition `busy` metrics: {m:?}");
            assert!(m.sched_delay_max >= m.sched_delay_p99);
            assert!(m.sched_delay_p99 >= m.sched_delay_p50);
            assert_eq!(m.long_polls, 0, "no poll took 5 s");
            assert_eq!(m.migrations, 0);
        });
        wait_until(Duration::from_secs(5), "core 0 metrics", || {
            let c = &rt.metrics().cores[0];
            c.polls > before.cores[0].polls && c.busy > before.cores[0].busy
        });
        let m = rt.metrics();
        let busy = m.partition("busy").expect("named partition in metrics");
        assert!(busy.busy >= Duration::from_millis(10));
        assert_eq!(busy.core, 0);
        // Partitions come sorted by id, roots first.
        assert_eq!(m.partitions[0].id, 0);
        assert_eq!(m.partitions[1].id, 1);
        assert!(m.partitions.windows(2).all(|w| w[0].id < w[1].id));
    })
}

#[test]
fn long_poll_is_counted() {
    with_timeout(T, || {
        let rt = fairloop::Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .stall_threshold(Duration::from_millis(5))
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Partition::builder().name("staller").build().unwrap();
            p.spawn(async { std::thread::sleep(Duration::from_millis(20)) })
                .await
                .unwrap();
            until(Duration::from_secs(5), "long poll counted", || {
                p.metrics().long_polls >= 1
            })
            .await;
        });
    })
}

#[test]
fn builder_default_placement_applies_to_new_partitions() {
    with_timeout(T, || {
        let rt = fairloop::Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .placement(Placement::Core(1))
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Partition::builder().build().unwrap();
            assert_eq!(p.core(), 1);
            assert_eq!(p.spawn(async { core_id() }).await.unwrap(), 1);
            let named = partition::spawn("default-placed", async { core_id() })
                .await
                .unwrap();
            assert_eq!(named, 1);
            // An explicit placement wins.
            let q = Partition::builder()
                .placement(Placement::Core(0))
                .build()
                .unwrap();
            assert_eq!(q.spawn(async { core_id() }).await.unwrap(), 0);
        });
        let rt = fairloop::Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .placement(Placement::RoundRobin)
            .build()
            .unwrap();
        let cores = rt.block_on(async {
            let mut cores: Vec<usize> = (0..4)
                .map(|_| Partition::builder().build().unwrap().core())
                .collect();
            cores.sort();
            cores.dedup();
            cores
        });
        assert_eq!(cores, [0, 1], "RoundRobin placement used one core only");
    })
}

/// A partition flooded with always-runnable tasks cannot starve another
/// partition on the same core (correctness: the other one finishes; the
/// time it took is printed, not asserted).
#[test]
fn flood_does_not_starve_another_partition() {
    for fairness in [fairloop::Fairness::Shares, fairloop::Fairness::RoundRobin] {
        with_timeout(T, move || {
            let rt = fairloop::Runtime::builder()
                .cores(1)
                .pin_cores(false)
                .fairness(fairness)
                .build()
                .unwrap();
            rt.block_on(async move {
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flood = Partition::builder().name("flood").build().unwrap();
                for _ in 0..50 {
                    let stop = stop.clone();
                    flood
                        .spawn(async move {
                            while !stop.load(Ordering::Relaxed) {
                                let t = Instant::now();
                                while t.elapsed() < Duration::from_micros(100) {}
                                yield_now().await;
                            }
                        })
                        .detach();
                }
                let hc = Partition::builder()
                    .name("hc")
                    .latency(Duration::from_millis(1))
                    .build()
                    .unwrap();
                let calm = Partition::builder().name("calm").build().unwrap();
                let t0 = Instant::now();
                let a = hc.spawn(async {
                    for _ in 0..20 {
                        yield_now().await;
                        fairloop::time::sleep(Duration::from_micros(200)).await;
                    }
                    Instant::now()
                });
                let b = calm.spawn(async {
                    for _ in 0..20 {
                        yield_now().await;
                    }
                    Instant::now()
                });
                let (ta, tb) = (a.await.unwrap(), b.await.unwrap());
                stop.store(true, Ordering::Relaxed);
                println!(
                    "{fairness:?}: latency partition done in {:?}, calm partition in {:?} \
                     beside a 50-task flood",
                    ta - t0,
                    tb - t0
                );
                let m = flood.metrics();
                assert!(m.polls > 0);
            });
        });
    }
}
