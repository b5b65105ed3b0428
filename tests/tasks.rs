//! Tasks: spawn, join, abort, detach, panics, spawn_local, yield_now,
//! core_id, spawn_blocking, run_on_shards and handles.

mod common;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{panic_message, rt, until, with_timeout, DropGuard, Signal};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{core_id, spawn, spawn_local, task, yield_now, Handle, JoinError, JoinHandle};

const T: u64 = 20;

#[test]
fn spawn_and_join() {
    with_timeout(T, || {
        let rt = rt(2);
        let sum = rt.block_on(async {
            let handles: Vec<_> = (0..100u64).map(|i| spawn(async move { i * 2 })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("task completes");
            }
            sum
        });
        assert_eq!(sum, (0..100u64).map(|i| i * 2).sum::<u64>());

        // From outside: Runtime::spawn, joined with a plain executor.
        let h = rt.spawn(async { "outside" });
        assert_eq!(futures_lite::future::block_on(h).unwrap(), "outside");

        // Nested spawns several levels deep.
        let depth = rt.block_on(async {
            fn nest(n: u32) -> JoinHandle<u32> {
                spawn(async move {
                    if n == 0 {
                        0
                    } else {
                        nest(n - 1).await.unwrap() + 1
                    }
                })
            }
            nest(50).await.unwrap()
        });
        assert_eq!(depth, 50);
    })
}

#[test]
fn abort_cancels_a_parked_task_and_drops_its_future() {
    with_timeout(T, || {
        let rt = rt(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        rt.block_on(async move {
            let started = Signal::new();
            let s = started.clone();
            let guard = DropGuard::new(&d);
            let h = spawn(async move {
                let _guard = guard;
                s.set();
                std::future::pending::<()>().await;
                unreachable!("pending never completes");
            });
            started.wait().await;
            assert!(!h.is_finished());
            h.abort();
            h.abort(); // idempotent
            let err = h.await.expect_err("an aborted task yields an error");
            assert!(err.is_cancelled(), "{err:?}");
            assert!(!err.is_panic());
            assert!(!err.to_string().is_empty());
            assert_eq!(d.load(Ordering::SeqCst), 1, "the future was dropped");
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    })
}

#[test]
fn abort_before_first_poll_and_after_completion() {
    with_timeout(T, || {
        let rt = rt(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        rt.block_on(async move {
            // Aborted before it ever ran (spawned in our own partition, which
            // cannot run it until we yield).
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let guard = DropGuard::new(&d);
            let h = spawn(async move {
                let _guard = guard;
                r.store(true, Ordering::SeqCst);
            });
            h.abort();
            let err = h.await.expect_err("aborted");
            assert!(err.is_cancelled());
            assert!(!ran.load(Ordering::SeqCst), "an aborted task must not run");
            assert_eq!(d.load(Ordering::SeqCst), 1);

            // Aborting a finished task changes nothing.
            let h = spawn(async { 7 });
            until(Duration::from_secs(5), "task finished", || h.is_finished()).await;
            h.abort();
            assert_eq!(h.await.unwrap(), 7);

            // Abort from another thread.
            let h = spawn(std::future::pending::<()>());
            std::thread::scope(|s| {
                s.spawn(|| h.abort());
            });
            assert!(h.await.unwrap_err().is_cancelled());
        });
    })
}

#[test]
fn detached_task_runs_to_completion() {
    with_timeout(T, || {
        let rt = rt(2);
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        rt.spawn(async move {
            fairloop::time::sleep(Duration::from_millis(5)).await;
            yield_now().await;
            tx.send("explicit detach").unwrap();
        })
        .detach();
        // Dropping the handle detaches too.
        drop(rt.spawn(async move {
            fairloop::time::sleep(Duration::from_millis(5)).await;
            tx2.send("dropped handle").unwrap();
        }));
        // Detached from inside a task, which then ends first.
        let (tx3, rx3) = mpsc::channel();
        rt.block_on(async move {
            spawn(async move {
                fairloop::time::sleep(Duration::from_millis(10)).await;
                tx3.send(core_id()).unwrap();
            })
            .detach();
        });
        let mut got = vec![
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        ];
        got.sort();
        assert_eq!(got, ["dropped handle", "explicit detach"]);
        assert_eq!(rx3.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    })
}

#[test]
fn panic_is_reported_and_the_core_keeps_working() {
    with_timeout(T, || {
        let rt = rt(2);
        for core in 0..2 {
            let err = futures_lite::future::block_on(rt.spawn_on(core, async {
                panic!("boom on purpose");
            }))
            .expect_err("a panicking task yields an error");
            assert!(err.is_panic(), "{err:?}");
            assert!(!err.is_cancelled());
            assert!(err.to_string().contains("boom on purpose"), "{err}");
            let payload = err.into_panic();
            assert_eq!(panic_message(&*payload), "boom on purpose");

            // Same core, afterwards: still works.
            let hs: Vec<_> = (0..20)
                .map(|i| rt.spawn_on(core, async move { (core_id(), i) }))
                .collect();
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(futures_lite::future::block_on(h).unwrap(), (core, i));
            }
        }

        // Inside a partition: the partition survives its task's panic.
        rt.block_on(async {
            let p = Partition::builder().name("panicky").build().unwrap();
            let err = p
                .spawn(async {
                    yield_now().await;
                    panic!("in partition");
                })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            for i in 0..10 {
                assert_eq!(p.spawn(async move { i + 1 }).await.unwrap(), i + 1);
            }
            // A panic in a nested child is reported to the parent only.
            let r = partition::spawn("panicky", async {
                let child = spawn(async { panic!("child") });
                child.await.unwrap_err().is_panic()
            })
            .await
            .unwrap();
            assert!(r);
        });
    })
}

#[test]
fn is_finished_tracks_completion() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let go = Signal::new();
            let g = go.clone();
            let h = spawn(async move {
                g.wait().await;
                5
            });
            for _ in 0..10 {
                yield_now().await;
            }
            assert!(!h.is_finished());
            go.set();
            until(Duration::from_secs(5), "is_finished", || h.is_finished()).await;
            assert_eq!(h.await.unwrap(), 5);

            let h = spawn(std::future::pending::<()>());
            yield_now().await;
            assert!(!h.is_finished());
            h.abort();
            until(Duration::from_secs(5), "aborted is_finished", || {
                h.is_finished()
            })
            .await;
            assert!(h.await.unwrap_err().is_cancelled());

            let h = spawn(async { panic!("finish by panicking") });
            until(Duration::from_secs(5), "panicked is_finished", || {
                h.is_finished()
            })
            .await;
            assert!(h.await.unwrap_err().is_panic());
        });
    })
}

#[test]
fn spawn_local_stays_on_its_core() {
    with_timeout(T, || {
        let rt = rt(2);
        for core in 0..2 {
            let h = rt.spawn_on(core, async move {
                let h = spawn_local(async move {
                    // !Send state across awaits.
                    let rc = Rc::new(Cell::new(0u32));
                    let me = core_id();
                    for i in 0..200 {
                        let rc2 = rc.clone();
                        yield_now().await;
                        if i % 20 == 0 {
                            fairloop::time::sleep(Duration::from_millis(1)).await;
                        }
                        // A nested local task sharing the Rc.
                        if i % 50 == 0 {
                            spawn_local(async move { rc2.set(rc2.get() + 1000) })
                                .await
                                .unwrap();
                        } else {
                            rc2.set(rc2.get() + 1);
                        }
                        assert_eq!(core_id(), me, "a local task moved core");
                    }
                    (me, rc.get())
                });
                h.await.unwrap()
            });
            let (me, n) = futures_lite::future::block_on(h).unwrap();
            assert_eq!(me, core);
            assert_eq!(n, 4 * 1000 + 196);
        }
    })
}

#[test]
fn spawn_local_pins_its_partition() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let p = Partition::builder()
                .name("will-be-pinned")
                .placement(Placement::Local)
                .build()
                .unwrap();
            let pinned = p
                .spawn(async {
                    spawn_local(async { Rc::new(1).as_ref() + 1 })
                        .await
                        .unwrap()
                })
                .await
                .unwrap();
            assert_eq!(pinned, 2);
            let err = p
                .migrate_to(1)
                .expect_err("a partition that ran spawn_local is pinned");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
            assert!(!err.to_string().is_empty());
        });
    })
}

#[test]
fn yield_now_lets_others_run() {
    with_timeout(T, || {
        let rt = rt(1);
        rt.block_on(async {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            // Same core, same partition: without a real yield this would spin
            // forever on a single-core runtime.
            let other = spawn(async move { f.store(true, Ordering::SeqCst) });
            let mut yields = 0u32;
            while !flag.load(Ordering::SeqCst) {
                yield_now().await;
                yields += 1;
                assert!(yields < 1_000_000, "the other task never ran");
            }
            other.await.unwrap();

            // Two tasks interleave through yield_now.
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..2)
                .map(|t| {
                    let log = log.clone();
                    spawn(async move {
                        for i in 0..5 {
                            log.lock().unwrap().push((t, i));
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let log = log.lock().unwrap();
            assert_eq!(log.len(), 10);
            // Neither task ran all its steps before the other started.
            let first_of_1 = log.iter().position(|&(t, _)| t == 1).unwrap();
            let last_of_0 = log.iter().rposition(|&(t, _)| t == 0).unwrap();
            assert!(first_of_1 < last_of_0, "no interleaving: {log:?}");
        });
    })
}

#[test]
fn core_id_reports_the_running_core() {
    with_timeout(T, || {
        let rt = rt(2);
        assert_eq!(rt.cores(), 2);
        for core in 0..2 {
            let h = rt.spawn_on(core, async {
                let a = core_id();
                yield_now().await;
                fairloop::time::sleep(Duration::from_millis(1)).await;
                let b = core_id();
                (a, b, spawn(async { core_id() }).await.unwrap())
            });
            assert_eq!(
                futures_lite::future::block_on(h).unwrap(),
                (core, core, core)
            );
        }
        assert_eq!(
            rt.block_on(async { core_id() }),
            0,
            "block_on runs on core 0"
        );
        // Runtime::spawn round-robins over the cores.
        let mut seen: Vec<usize> = (0..4)
            .map(|_| futures_lite::future::block_on(rt.spawn(async { core_id() })).unwrap())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, [0, 1]);
    })
}

#[test]
fn free_functions_outside_a_runtime_panic_with_a_clear_message() {
    with_timeout(T, || {
        fn check(what: &str, f: impl FnOnce()) {
            let payload = catch_unwind(AssertUnwindSafe(f))
                .expect_err(&format!("{what} outside a runtime must panic"));
            let msg = panic_message(&*payload);
            assert!(
                msg.contains("outside a fairloop runtime"),
                "{what}: unhelpful message: {msg:?}"
            );
        }
        check("spawn", || drop(spawn(async {})));
        check("spawn_local", || drop(spawn_local(async {})));
        check("spawn_blocking", || drop(task::spawn_blocking(|| ())));
        check("core_id", || {
            core_id();
        });
        check("partition::spawn", || drop(partition::spawn("x", async {})));
        check("partition::current", || {
            partition::current();
        });
        // partition::get is documented to return None outside a runtime.
        assert!(partition::get("anything").is_none());

        // A runtime existing somewhere does not make this thread part of it.
        let rt = rt(1);
        check("spawn beside a live runtime", || drop(spawn(async {})));
        drop(rt);
    })
}

#[test]
fn spawn_blocking_returns_value_and_reports_panic() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let v = task::spawn_blocking(|| {
                std::thread::sleep(Duration::from_millis(5));
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
            assert!(
                !v.as_deref().unwrap_or("").starts_with("fairloop-core"),
                "blocking work ran on a core thread: {v:?}"
            );
            assert_eq!(task::spawn_blocking(|| 6 * 7).await.unwrap(), 42);

            let err = task::spawn_blocking(|| -> u32 { panic!("blocking boom") })
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert!(err.to_string().contains("blocking boom"), "{err}");

            // Still usable after the panic.
            assert_eq!(task::spawn_blocking(|| 1).await.unwrap(), 1);
        });
    })
}

#[test]
fn spawn_from_blocking_closure_goes_to_the_callers_partition() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let r = partition::spawn("blocking-parent", async {
                let me = partition::current();
                let (name_in_closure, child) = task::spawn_blocking(|| {
                    let name = partition::current().name();
                    let child = spawn(async {
                        fairloop::time::sleep(Duration::from_millis(1)).await;
                        let p = partition::current();
                        (p.name(), p.id())
                    });
                    (name, child)
                })
                .await
                .unwrap();
                let (child_name, child_id) = child.await.unwrap();
                (me.id(), name_in_closure, child_name, child_id)
            })
            .await
            .unwrap();
            let (id, in_closure, child_name, child_id) = r;
            assert_eq!(in_closure.as_deref(), Some("blocking-parent"));
            assert_eq!(child_name.as_deref(), Some("blocking-parent"));
            assert_eq!(child_id, id);
        });
    })
}

#[test]
fn run_on_shards_one_result_per_core_in_order() {
    with_timeout(T, || {
        let rt = rt(2);
        let out = rt.run_on_shards(|core| async move {
            // !Send futures are allowed.
            let rc = Rc::new(core);
            yield_now().await;
            fairloop::time::sleep(Duration::from_millis(2)).await;
            (*rc, core_id())
        });
        assert_eq!(out, vec![(0, 0), (1, 1)]);

        // A reserved core gets no copy.
        let rt = fairloop::Runtime::builder()
            .cores(3)
            .pin_cores(false)
            .reserve_core("r")
            .build()
            .unwrap();
        let out = rt.run_on_shards(|core| async move { (core, core_id()) });
        assert_eq!(out, vec![(0, 0), (1, 1)]);
    })
}

#[test]
fn handle_spawns_from_plain_threads() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Handle>();
    with_timeout(T, || {
        let rt = rt(2);
        let handle = rt.handle();
        assert_eq!(handle.cores(), 2);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = handle.clone();
                std::thread::spawn(move || {
                    let mut cores = Vec::new();
                    for i in 0..50u64 {
                        let j = h.spawn(async move {
                            yield_now().await;
                            (core_id(), t * 1000 + i)
                        });
                        let (core, v) = futures_lite::future::block_on(j).unwrap();
                        assert_eq!(v, t * 1000 + i);
                        cores.push(core);
                    }
                    let j = h.spawn_on(1, async { core_id() });
                    assert_eq!(futures_lite::future::block_on(j).unwrap(), 1);
                    cores
                })
            })
            .collect();
        for t in threads {
            let cores = t.join().expect("spawner thread");
            assert!(cores.iter().all(|&c| c < 2));
        }
    })
}

#[test]
fn spawn_on_a_missing_core_is_an_error_naming_it() {
    with_timeout(T, || {
        let rt = rt(2);
        let err: JoinError =
            futures_lite::future::block_on(rt.spawn_on(99, async { 1 })).unwrap_err();
        assert!(!err.is_panic());
        let msg = err.to_string();
        assert!(
            msg.contains("99"),
            "message does not name the core: {msg:?}"
        );
        let err = futures_lite::future::block_on(rt.handle().spawn_on(2, async {})).unwrap_err();
        assert!(err.to_string().contains('2'), "{err}");

        // A reserved core hosts only its reservation's partitions.
        let rt2 = fairloop::Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .reserve_core("hc")
            .build()
            .unwrap();
        let r = futures_lite::future::block_on(rt2.spawn_on(1, async { core_id() }));
        assert!(r.is_err(), "spawn_on(reserved core) ran: {r:?}");

        // Both runtimes keep working.
        assert_eq!(
            futures_lite::future::block_on(rt.spawn_on(1, async { 3 })).unwrap(),
            3
        );
        assert_eq!(rt2.block_on(async { core_id() }), 0);
    })
}

#[test]
fn block_on_panic_resumes_on_the_caller() {
    with_timeout(T, || {
        let rt = rt(2);
        let payload = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                yield_now().await;
                panic!("block_on body panicked");
            })
        }))
        .expect_err("the panic must reach the caller");
        assert_eq!(panic_message(&*payload), "block_on body panicked");
        // Still usable.
        assert_eq!(rt.block_on(async { spawn(async { 1 }).await.unwrap() }), 1);

        let payload = catch_unwind(AssertUnwindSafe(|| {
            rt.run_on_shards(|core| async move {
                if core == 1 {
                    panic!("shard 1 panicked");
                }
                core
            })
        }))
        .expect_err("a shard's panic must reach the caller");
        assert_eq!(panic_message(&*payload), "shard 1 panicked");
        assert_eq!(rt.run_on_shards(|core| async move { core }), vec![0, 1]);
    })
}

#[test]
fn block_on_from_several_threads_at_once() {
    with_timeout(T, || {
        let rt = rt(2);
        std::thread::scope(|s| {
            let rt = &rt;
            let ts: Vec<_> = (0..4u64)
                .map(|t| {
                    s.spawn(move || {
                        (0..50u64)
                            .map(|i| {
                                rt.block_on(async move {
                                    fairloop::time::sleep(Duration::from_micros(100)).await;
                                    spawn(async move { t * 100 + i }).await.unwrap()
                                })
                            })
                            .sum::<u64>()
                    })
                })
                .collect();
            for (t, h) in ts.into_iter().enumerate() {
                let t = t as u64;
                assert_eq!(h.join().unwrap(), (0..50).map(|i| t * 100 + i).sum::<u64>());
            }
        });
    })
}

#[test]
fn spawn_local_in_a_blocking_closure_is_a_reported_panic() {
    with_timeout(T, || {
        let rt = rt(1);
        rt.block_on(async {
            let err = task::spawn_blocking(|| drop(spawn_local(async {})))
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert_eq!(spawn(async { 2 }).await.unwrap(), 2);
        });
    })
}

/// Panics when dropped (but not while already unwinding).
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

#[test]
fn abort_of_a_task_whose_destructor_panics_still_joins() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let started = Signal::new();
            let s = started.clone();
            let h = spawn(async move {
                let _p = PanicOnDrop;
                s.set();
                std::future::pending::<()>().await;
            });
            started.wait().await;
            h.abort();
            // The join must end (cancelled, or a panic), not hang.
            let r = fairloop::time::timeout(Duration::from_secs(3), h).await;
            let join = r.expect("join of an aborted task with a panicking destructor hung");
            let err = join.expect_err("aborted");
            assert!(err.is_cancelled() || err.is_panic(), "{err:?}");
            // The core still works.
            assert_eq!(spawn(async { 1 }).await.unwrap(), 1);
        });
    })
}
