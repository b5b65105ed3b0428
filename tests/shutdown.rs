//! Shutdown: dropping the runtime (or `shutdown_timeout`) drops every
//! pending task's future before it returns, and nothing touching the dead
//! runtime afterwards panics or hangs.

mod common;

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use common::{rt, wait_until, with_timeout, DropGuard};
use fairloop::partition::{self, Partition, PartitionSpec, Placement};
use fairloop::{spawn, spawn_local, task, yield_now, JoinHandle, Runtime};

const T: u64 = 20;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn get(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

/// A task body that holds a drop guard, says it started, and never ends.
fn parked_forever(
    dropped: &Arc<AtomicUsize>,
    started: &Arc<AtomicUsize>,
) -> impl Future<Output = ()> + Send + 'static {
    let guard = DropGuard::new(dropped);
    let started = started.clone();
    async move {
        let _guard = guard;
        started.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
}

/// A task body that holds a drop guard and sleeps for an hour.
fn sleeping_an_hour(
    dropped: &Arc<AtomicUsize>,
    started: &Arc<AtomicUsize>,
) -> impl Future<Output = ()> + Send + 'static {
    let guard = DropGuard::new(dropped);
    let started = started.clone();
    async move {
        let _guard = guard;
        started.fetch_add(1, Ordering::SeqCst);
        fairloop::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[test]
fn detached_sleeping_tasks_are_dropped() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        for _ in 0..100 {
            rt.spawn(sleeping_an_hour(&dropped, &started)).detach();
        }
        wait_until(Duration::from_secs(10), "all tasks started", || {
            get(&started) == 100
        });
        assert_eq!(get(&dropped), 0);
        drop(rt);
        assert_eq!(get(&dropped), 100, "detached sleeping tasks leaked");
    })
}

#[test]
fn join_handles_outliving_the_runtime_report_cancelled() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        for i in 0..50 {
            if i % 2 == 0 {
                handles.push(rt.spawn(parked_forever(&dropped, &started)));
            } else {
                handles.push(rt.spawn(sleeping_an_hour(&dropped, &started)));
            }
        }
        // Some never started at all: spawned into a partition of a core
        // that is busy until shutdown.
        let busy = Arc::new(AtomicBool::new(true));
        let b = busy.clone();
        let blocker = rt.spawn_on(1, async move {
            while b.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        wait_until(Duration::from_secs(10), "tasks started", || {
            get(&started) >= 25
        });
        let never = counter();
        let never_started = (0..10)
            .map(|_| rt.spawn_on(1, parked_forever(&dropped, &never)))
            .collect::<Vec<_>>();
        busy.store(false, Ordering::SeqCst);
        drop(rt);
        assert_eq!(get(&dropped), 60, "pending futures not dropped by drop(rt)");
        for h in handles.into_iter().chain(never_started) {
            assert!(h.is_finished());
            let err = futures_lite::future::block_on(h).unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
            assert!(!err.is_panic());
        }
        // The blocker either finished or was cancelled; it must not hang.
        let _ = futures_lite::future::block_on(blocker);
    })
}

#[test]
fn tasks_parked_on_pending_in_all_kinds_of_partitions_are_dropped() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let (d, s) = (dropped.clone(), started.clone());
        rt.block_on(async move {
            spawn(parked_forever(&d, &s)).detach();
            partition::spawn("named", parked_forever(&d, &s)).detach();
            partition::spawn(PartitionSpec::anonymous(), parked_forever(&d, &s)).detach();
            let on1 = Partition::builder()
                .placement(Placement::Core(1))
                .build()
                .unwrap();
            on1.spawn(parked_forever(&d, &s)).detach();
            // A child spawned by a task in a partition of core 1.
            let (d2, s2) = (d.clone(), s.clone());
            on1.spawn(async move {
                spawn(parked_forever(&d2, &s2)).detach();
            })
            .await
            .unwrap();
            // A task waiting on a blocking job that outlives the runtime.
            let g = DropGuard::new(&d);
            let s3 = s.clone();
            spawn(async move {
                let _g = g;
                s3.fetch_add(1, Ordering::SeqCst);
                let _ =
                    task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(300))).await;
                std::future::pending::<()>().await;
            })
            .detach();
        });
        wait_until(Duration::from_secs(10), "tasks started", || {
            get(&started) == 6
        });
        drop(rt);
        // 6 guards + the blocking job's awaiting task holds none.
        assert_eq!(get(&dropped), 6);
    })
}

#[test]
fn tasks_in_a_reference_cycle_are_dropped() {
    with_timeout(T, || {
        type Slot = Arc<Mutex<Option<JoinHandle<()>>>>;
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        for core in 0..2 {
            let slot_a: Slot = Arc::new(Mutex::new(None));
            let slot_b: Slot = Arc::new(Mutex::new(None));
            let task = |other: Slot| {
                let guard = DropGuard::new(&dropped);
                let started = started.clone();
                async move {
                    let _guard = guard;
                    let _other = other; // holds the other task's JoinHandle
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
            };
            let a = rt.spawn_on(core, task(slot_b.clone()));
            let b = rt.spawn_on(1 - core, task(slot_a.clone()));
            *slot_a.lock().unwrap() = Some(a);
            *slot_b.lock().unwrap() = Some(b);
        }
        // A task that holds its own JoinHandle.
        let own: Slot = Arc::new(Mutex::new(None));
        let o = own.clone();
        let guard = DropGuard::new(&dropped);
        let s = started.clone();
        let h = rt.spawn(async move {
            let _guard = guard;
            let _me = o;
            s.fetch_add(1, Ordering::SeqCst);
            fairloop::time::sleep(Duration::from_secs(3600)).await;
        });
        *own.lock().unwrap() = Some(h);
        drop(own);
        wait_until(Duration::from_secs(10), "cycle tasks started", || {
            get(&started) == 5
        });
        drop(rt);
        assert_eq!(get(&dropped), 5, "tasks in reference cycles leaked");
    })
}

#[test]
fn thousands_of_pending_tasks_over_two_cores() {
    with_timeout(T, || {
        const N: usize = 5_000;
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let mut keep = Vec::new();
        for i in 0..N {
            let h = match i % 4 {
                0 => rt.spawn(parked_forever(&dropped, &started)),
                1 => rt.spawn(sleeping_an_hour(&dropped, &started)),
                2 => {
                    // Runnable forever: yields in a loop.
                    let guard = DropGuard::new(&dropped);
                    let s = started.clone();
                    rt.spawn(async move {
                        let _guard = guard;
                        s.fetch_add(1, Ordering::SeqCst);
                        loop {
                            yield_now().await;
                        }
                    })
                }
                _ => rt.spawn(async move { std::future::pending::<()>().await }),
            };
            if i % 3 == 0 {
                keep.push(h);
            } else {
                h.detach();
            }
        }
        // The last quarter holds no guard; count via the others.
        let guarded = N / 4 * 3;
        wait_until(Duration::from_secs(15), "most tasks started", || {
            get(&started) >= guarded / 2
        });
        let t0 = std::time::Instant::now();
        drop(rt);
        println!("drop(rt) with {N} pending tasks took {:?}", t0.elapsed());
        assert_eq!(get(&dropped), guarded);
        for h in keep {
            assert!(futures_lite::future::block_on(h)
                .unwrap_err()
                .is_cancelled());
        }
    })
}

#[test]
fn spawn_local_tasks_are_dropped() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let (d, s) = (dropped.clone(), started.clone());
        rt.run_on_shards(move |_core| {
            let (d, s) = (d.clone(), s.clone());
            async move {
                for _ in 0..10 {
                    // !Send state in the pending future.
                    let guard = Rc::new(DropGuard::new(&d));
                    let s = s.clone();
                    spawn_local(async move {
                        let _guard = guard;
                        s.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    })
                    .detach();
                }
                let guard = Rc::new(DropGuard::new(&d));
                let s = s.clone();
                spawn_local(async move {
                    let _g = guard;
                    s.fetch_add(1, Ordering::SeqCst);
                    fairloop::time::sleep(Duration::from_secs(3600)).await;
                })
                .detach();
            }
        });
        wait_until(Duration::from_secs(10), "local tasks started", || {
            get(&started) == 22
        });
        drop(rt);
        assert_eq!(get(&dropped), 22, "spawn_local tasks leaked");
    })
}

#[test]
fn spawning_after_shutdown_is_cancelled() {
    with_timeout(T, || {
        let rt = rt(2);
        let handle = rt.handle();
        let p = rt.block_on(async { Partition::builder().name("late").build().unwrap() });
        let anon = rt.block_on(async { partition::current() });
        drop(rt);
        let dropped = counter();
        let g = DropGuard::new(&dropped);
        let err = futures_lite::future::block_on(handle.spawn(async move {
            let _g = g;
            1
        }))
        .unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert_eq!(get(&dropped), 1, "a refused future must be dropped");
        let err = futures_lite::future::block_on(handle.spawn_on(1, async {})).unwrap_err();
        assert!(err.is_cancelled());
        let err = futures_lite::future::block_on(p.spawn(async {})).unwrap_err();
        assert!(err.is_cancelled());
        let err = futures_lite::future::block_on(anon.spawn(async {})).unwrap_err();
        assert!(err.is_cancelled());
        // From another thread, too.
        let h2 = handle.clone();
        let r = std::thread::spawn(move || futures_lite::future::block_on(h2.spawn(async { 2 })))
            .join()
            .unwrap();
        assert!(r.unwrap_err().is_cancelled());
    })
}

#[test]
fn waker_invoked_after_the_runtime_is_gone_does_nothing() {
    with_timeout(T, || {
        let rt = rt(2);
        let wakers: Arc<Mutex<Vec<Waker>>> = Arc::new(Mutex::new(Vec::new()));
        let dropped = counter();
        for core in 0..2 {
            let w = wakers.clone();
            let guard = DropGuard::new(&dropped);
            rt.spawn_on(core, async move {
                let _guard = guard;
                std::future::poll_fn(|cx| {
                    w.lock().unwrap().push(cx.waker().clone());
                    Poll::<()>::Pending
                })
                .await;
            })
            .detach();
        }
        wait_until(Duration::from_secs(10), "wakers captured", || {
            wakers.lock().unwrap().len() >= 2
        });
        // Hammer the wakers while the runtime shuts down.
        let stop = Arc::new(AtomicBool::new(false));
        let hammer = {
            let (w, stop) = (wakers.clone(), stop.clone());
            std::thread::spawn(move || {
                let ws: Vec<Waker> = w.lock().unwrap().clone();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for w in &ws {
                        w.wake_by_ref();
                    }
                    n += 1;
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        drop(rt);
        stop.store(true, Ordering::SeqCst);
        let rounds = hammer.join().expect("waking during shutdown panicked");
        println!("{rounds} rounds of wakes raced the shutdown");
        assert_eq!(get(&dropped), 2);
        // And after: wake, wake_by_ref, clone, drop — from a plain thread.
        let ws: Vec<Waker> = std::mem::take(&mut *wakers.lock().unwrap());
        std::thread::spawn(move || {
            for w in ws {
                w.wake_by_ref();
                let c = w.clone();
                c.wake();
                w.wake();
            }
        })
        .join()
        .expect("waking after the runtime is gone panicked");
    })
}

#[test]
fn shutdown_timeout_drops_everything_too() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let mut handles = Vec::new();
        for i in 0..200 {
            let h = if i % 2 == 0 {
                rt.spawn(parked_forever(&dropped, &started))
            } else {
                rt.spawn(sleeping_an_hour(&dropped, &started))
            };
            if i % 10 == 0 {
                handles.push(h);
            } else {
                h.detach();
            }
        }
        let (d, s) = (dropped.clone(), started.clone());
        rt.run_on_shards(move |_| {
            let (d, s) = (d.clone(), s.clone());
            async move {
                let g = Rc::new(DropGuard::new(&d));
                spawn_local(async move {
                    let _g = g;
                    s.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                })
                .detach();
            }
        });
        wait_until(Duration::from_secs(10), "tasks started", || {
            get(&started) == 202
        });
        let handle = rt.handle();
        let t0 = std::time::Instant::now();
        rt.shutdown_timeout(Duration::from_secs(5));
        println!("shutdown_timeout took {:?}", t0.elapsed());
        assert_eq!(get(&dropped), 202);
        for h in handles {
            assert!(futures_lite::future::block_on(h)
                .unwrap_err()
                .is_cancelled());
        }
        let err = futures_lite::future::block_on(handle.spawn(async {})).unwrap_err();
        assert!(err.is_cancelled());
    })
}

/// A drop guard whose destructor spawns (and wakes) during shutdown.
struct SpawnsOnDrop {
    dropped: Arc<AtomicUsize>,
    inner_dropped: Arc<AtomicUsize>,
    wake: Option<Waker>,
}

impl Drop for SpawnsOnDrop {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        let g = DropGuard::new(&self.inner_dropped);
        let h = spawn(async move {
            let _g = g;
            std::future::pending::<()>().await;
        });
        drop(h);
        let g = DropGuard::new(&self.inner_dropped);
        drop(partition::spawn("spawned-while-dying", async move {
            let _g = g;
        }));
        if let Some(w) = self.wake.take() {
            w.wake();
        }
    }
}

#[test]
fn destructors_that_spawn_or_wake_during_shutdown() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, inner_dropped, started) = (counter(), counter(), counter());
        let other_waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        // A task whose waker the dying tasks call.
        {
            let w = other_waker.clone();
            let g = DropGuard::new(&dropped);
            rt.spawn_on(1, async move {
                let _g = g;
                std::future::poll_fn(|cx| {
                    *w.lock().unwrap() = Some(cx.waker().clone());
                    Poll::<()>::Pending
                })
                .await;
            })
            .detach();
        }
        wait_until(Duration::from_secs(10), "waker captured", || {
            other_waker.lock().unwrap().is_some()
        });
        for i in 0..20 {
            let guard = SpawnsOnDrop {
                dropped: dropped.clone(),
                inner_dropped: inner_dropped.clone(),
                wake: other_waker.lock().unwrap().clone(),
            };
            let s = started.clone();
            rt.spawn_on(i % 2, async move {
                let _guard = guard;
                s.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            })
            .detach();
        }
        wait_until(Duration::from_secs(10), "tasks started", || {
            get(&started) == 20
        });
        drop(rt);
        assert_eq!(get(&dropped), 21);
        // Whatever the destructors tried to spawn was dropped (refused, or
        // started and dropped), never leaked.
        assert_eq!(get(&inner_dropped), 40);
    })
}

#[test]
fn blocking_job_finishing_after_shutdown() {
    with_timeout(T, || {
        let rt = rt(2);
        let (tx, rx) = mpsc::channel();
        let dropped = counter();
        let d = dropped.clone();
        rt.block_on(async move {
            partition::spawn("blocking", async move {
                let _ = task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    // The runtime is gone by now: spawning must not panic,
                    // and the refused future must be dropped.
                    let g = DropGuard::new(&d);
                    let h = spawn(async move {
                        let _g = g;
                        1
                    });
                    tx.send(futures_lite::future::block_on(h).map_err(|e| e.is_cancelled()))
                        .unwrap();
                })
                .await;
            })
            .detach();
            fairloop::time::sleep(Duration::from_millis(10)).await;
        });
        drop(rt);
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("blocking job reported");
        assert_eq!(r, Err(true), "spawn after shutdown must be cancelled");
        assert_eq!(get(&dropped), 1);
    })
}

#[test]
fn drop_waits_for_a_poll_in_progress() {
    with_timeout(T, || {
        let rt: Runtime = rt(2);
        let dropped = counter();
        let in_poll = Arc::new(AtomicBool::new(false));
        let (g, ip) = (DropGuard::new(&dropped), in_poll.clone());
        rt.spawn_on(1, async move {
            let _g = g;
            ip.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50)); // a long poll
            yield_now().await;
            std::future::pending::<()>().await;
        })
        .detach();
        wait_until(Duration::from_secs(10), "long poll began", || {
            in_poll.load(Ordering::SeqCst)
        });
        drop(rt);
        assert_eq!(get(&dropped), 1);
    })
}

/// Panics when dropped (but not while already unwinding).
struct PanicOnDrop(#[allow(dead_code)] DropGuard);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

#[test]
fn shutdown_survives_a_panicking_destructor() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        let mut handles = Vec::new();
        for core in 0..2 {
            let p = PanicOnDrop(DropGuard::new(&dropped));
            let s = started.clone();
            handles.push(rt.spawn_on(core, async move {
                let _p = p;
                s.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }));
            rt.spawn_on(core, parked_forever(&dropped, &started))
                .detach();
        }
        wait_until(Duration::from_secs(10), "tasks started", || {
            get(&started) == 4
        });
        drop(rt);
        assert_eq!(get(&dropped), 4);
        for h in handles {
            assert!(
                h.is_finished(),
                "join of a task dropped at shutdown would hang"
            );
            let err = futures_lite::future::block_on(h).unwrap_err();
            assert!(err.is_cancelled() || err.is_panic(), "{err:?}");
        }
    })
}

#[test]
fn spawning_while_the_runtime_shuts_down_leaks_nothing() {
    with_timeout(T, || {
        for round in 0..5 {
            let rt = rt(2);
            let handle = rt.handle();
            let root1 = rt.block_on(async { partition::current() });
            let (created, dropped) = (counter(), counter());
            let stop = Arc::new(AtomicBool::new(false));
            let spawners: Vec<_> = (0..3)
                .map(|t| {
                    let (h, r1) = (handle.clone(), root1.clone());
                    let (c, d, stop) = (created.clone(), dropped.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut joins = Vec::new();
                        while !stop.load(Ordering::SeqCst) {
                            c.fetch_add(1, Ordering::SeqCst);
                            let g = DropGuard::new(&d);
                            let fut = async move {
                                let _g = g;
                                std::future::pending::<()>().await;
                            };
                            let j = match t {
                                0 => h.spawn(fut),
                                1 => r1.spawn(fut),
                                _ => h.spawn_on(1, fut),
                            };
                            if joins.len() < 64 {
                                joins.push(j);
                            } else {
                                j.detach();
                            }
                        }
                        joins
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(5 + round));
            drop(rt);
            // Everything created so far that the runtime accepted is gone.
            stop.store(true, Ordering::SeqCst);
            let mut joins = Vec::new();
            for s in spawners {
                joins.extend(s.join().expect("spawner panicked"));
            }
            assert_eq!(
                get(&dropped),
                get(&created),
                "round {round}: a future spawned during shutdown leaked"
            );
            for j in joins {
                assert!(futures_lite::future::block_on(j)
                    .unwrap_err()
                    .is_cancelled());
            }
        }
    })
}
