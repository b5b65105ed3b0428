//! Graceful shutdown: `Runtime::shutdown_graceful` wakes every
//! `shutdown::requested()` waiter on every core, waits for the tasks until
//! none is left or the deadline passes, cancels the rest once each, and
//! reports what it did.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{panic_message, rt, wait_until, with_timeout, DropGuard};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{shutdown, task, time};

const T: u64 = 30;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn get(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

#[test]
fn every_waiter_on_every_core_is_woken_and_the_drain_waits_for_all() {
    with_timeout(T, || {
        let rt = rt(2);
        let (started, finished) = (counter(), counter());
        let mut spawned = 0;
        // Root partitions of both cores, a named partition pinned to core
        // 1, and a spawn_blocking closure driving the future with another
        // executor's waker.
        for core in 0..2 {
            for _ in 0..10 {
                let (s, f) = (started.clone(), finished.clone());
                rt.spawn_on(core, async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    shutdown::requested().await;
                    // Work after the request still runs: sleep, spawn.
                    time::sleep(Duration::from_millis(5)).await;
                    fairloop::spawn(async move {
                        f.fetch_add(1, Ordering::SeqCst);
                    })
                    .detach();
                })
                .detach();
                spawned += 2;
            }
        }
        let (s, f) = (started.clone(), finished.clone());
        rt.block_on(async move {
            let p = Partition::builder()
                .name("svc")
                .placement(Placement::Core(1))
                .build()
                .expect("partition");
            p.spawn(async move {
                s.fetch_add(1, Ordering::SeqCst);
                assert!(!shutdown::is_requested());
                task::spawn_blocking(move || {
                    futures_lite::future::block_on(shutdown::requested());
                    assert!(shutdown::is_requested());
                    f.fetch_add(1, Ordering::SeqCst);
                })
                .await
                .expect("the blocking closure");
            })
            .detach();
        });
        spawned += 2; // the partition's task and the spawn_blocking task
        wait_until(Duration::from_secs(10), "every task started", || {
            get(&started) == 21
        });
        let report = rt.shutdown_graceful(Duration::from_secs(20));
        assert_eq!(get(&finished), 21, "a waiter was not woken: {report:?}");
        assert_eq!(report.completed, spawned, "{report:?}");
        assert_eq!(report.cancelled, 0, "{report:?}");
        assert!(report.drained && report.stopped, "{report:?}");
    })
}

#[test]
fn tasks_left_at_the_deadline_are_cancelled_once_and_counted() {
    with_timeout(T, || {
        let rt = rt(2);
        let (dropped, started) = (counter(), counter());
        for i in 0..6 {
            let guard = DropGuard::new(&dropped);
            let s = started.clone();
            rt.spawn_on(i % 2, async move {
                let _guard = guard;
                s.fetch_add(1, Ordering::SeqCst);
                // Ignores the request: only cancellation ends it.
                std::future::pending::<()>().await;
            })
            .detach();
        }
        // Three that end on request: one returns, one panics, one is
        // aborted by another task.
        rt.spawn(async { shutdown::requested().await }).detach();
        rt.spawn(async {
            shutdown::requested().await;
            panic!("a task panicking during the drain");
        })
        .detach();
        let victim = rt.spawn(std::future::pending::<()>());
        rt.spawn(async move {
            shutdown::requested().await;
            victim.abort();
        })
        .detach();
        wait_until(
            Duration::from_secs(10),
            "the stubborn tasks started",
            || get(&started) == 6,
        );
        // Long enough for the three to end on a loaded machine; the six
        // stubborn ones make the drain last all of it.
        let report = rt.shutdown_graceful(Duration::from_secs(1));
        assert_eq!(get(&dropped), 6, "{report:?}");
        assert_eq!(report.cancelled, 6, "{report:?}");
        assert_eq!(
            report.completed, 4,
            "returned, panicked, aborted, aborter: {report:?}"
        );
        assert!(!report.drained, "{report:?}");
        assert!(report.stopped, "{report:?}");
    })
}

#[test]
fn an_empty_runtime_drains_at_once_and_duration_max_is_no_deadline() {
    with_timeout(T, || {
        let report = rt(2).shutdown_graceful(Duration::MAX);
        assert_eq!(report.completed + report.cancelled, 0, "{report:?}");
        assert!(report.drained && report.stopped, "{report:?}");

        // With tasks that end on request, Duration::MAX waits for them.
        let rt = rt(2);
        let done = counter();
        for _ in 0..4 {
            let d = done.clone();
            rt.spawn(async move {
                shutdown::requested().await;
                time::sleep(Duration::from_millis(2)).await;
                d.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        }
        let report = rt.shutdown_graceful(Duration::MAX);
        assert_eq!(get(&done), 4);
        assert_eq!((report.completed, report.cancelled), (4, 0), "{report:?}");
    })
}

#[test]
fn a_zero_deadline_cancels_everything_and_still_counts_it() {
    with_timeout(T, || {
        let rt = rt(1);
        let dropped = counter();
        for _ in 0..5 {
            let guard = DropGuard::new(&dropped);
            rt.spawn(async move {
                let _guard = guard;
                time::sleep(Duration::from_secs(3600)).await;
            })
            .detach();
        }
        let report = rt.shutdown_graceful(Duration::ZERO);
        assert_eq!(get(&dropped), 5);
        // None can end on its own: all five are cancelled, once each.
        assert_eq!((report.completed, report.cancelled), (0, 5), "{report:?}");
        assert!(!report.drained, "{report:?}");
    })
}

#[test]
fn is_requested_says_false_before_true_after_and_false_outside() {
    with_timeout(T, || {
        assert!(!shutdown::is_requested(), "outside a runtime");
        let rt = rt(2);
        assert!(!rt.block_on(async { shutdown::is_requested() }));
        let seen = Arc::new(AtomicBool::new(false));
        let s = seen.clone();
        rt.spawn(async move {
            shutdown::requested().await;
            s.store(shutdown::is_requested(), Ordering::SeqCst);
        })
        .detach();
        rt.shutdown_graceful(Duration::from_secs(10));
        assert!(seen.load(Ordering::SeqCst));
    })
}

#[test]
fn requested_outside_a_runtime_panics_saying_where_to_call_it() {
    with_timeout(T, || {
        let err = catch_unwind(AssertUnwindSafe(|| {
            futures_lite::future::block_on(shutdown::requested())
        }))
        .expect_err("polled outside a runtime");
        let msg = panic_message(&*err);
        assert!(
            msg.contains("fairloop::shutdown::requested called outside a fairloop runtime"),
            "{msg}"
        );
    })
}

#[test]
fn a_hard_shutdown_marks_the_request_for_destructors_and_waiters() {
    with_timeout(T, || {
        struct Check(Arc<AtomicBool>);
        impl Drop for Check {
            fn drop(&mut self) {
                self.0.store(shutdown::is_requested(), Ordering::SeqCst);
            }
        }
        let rt = rt(1);
        let in_drop = Arc::new(AtomicBool::new(false));
        let check = Check(in_drop.clone());
        let started = counter();
        let s = started.clone();
        rt.spawn(async move {
            let _check = check;
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        })
        .detach();
        // A waiter outside the cores (a blocking closure's executor) is
        // woken by the hard shutdown too, rather than left waiting. (Once
        // running, the closure outlives its cancelled task.)
        let (tx, rx) = mpsc::channel();
        rt.block_on(async move {
            task::spawn_blocking(move || {
                futures_lite::future::block_on(async {
                    let mut requested = std::pin::pin!(shutdown::requested());
                    let first = futures_lite::future::poll_once(&mut requested).await;
                    assert!(first.is_none(), "no shutdown yet");
                    tx.send("waiting").expect("the test waits");
                    requested.await;
                });
                tx.send("woken").expect("the test waits");
            })
            .detach();
        });
        wait_until(Duration::from_secs(10), "the task started", || {
            get(&started) == 1
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok("waiting"));
        rt.shutdown_timeout(Duration::from_secs(10));
        assert!(
            in_drop.load(Ordering::SeqCst),
            "is_requested in a destructor"
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok("woken"),
            "the blocking waiter"
        );
    })
}

#[test]
fn called_from_its_own_task_it_does_not_wait_for_itself() {
    with_timeout(T, || {
        let rt = rt(2);
        let handle = rt.handle();
        let (give, take) = mpsc::channel();
        let (report_tx, report_rx) = mpsc::channel();
        handle
            .spawn(async move {
                let rt: fairloop::Runtime = take.recv().expect("the runtime");
                // An hour: waiting for the caller's own task would hang.
                let report = rt.shutdown_graceful(Duration::from_secs(3600));
                report_tx.send(report).expect("the test waits");
            })
            .detach();
        give.send(rt).expect("the task waits");
        let report = report_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("shutdown_graceful returned");
        assert!(!report.drained, "{report:?}");
        assert!(!report.stopped, "its own core cannot be joined: {report:?}");
    })
}

#[test]
fn tasks_in_named_and_anonymous_partitions_are_drained_too() {
    with_timeout(T, || {
        let rt = rt(2);
        let done = counter();
        let d = done.clone();
        rt.block_on(async move {
            for name in ["a", "b"] {
                let d = d.clone();
                partition::spawn(name, async move {
                    shutdown::requested().await;
                    d.fetch_add(1, Ordering::SeqCst);
                })
                .detach();
            }
            let d = d.clone();
            partition::spawn(partition::PartitionSpec::anonymous(), async move {
                shutdown::requested().await;
                d.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        });
        let report = rt.shutdown_graceful(Duration::from_secs(20));
        assert_eq!(get(&done), 3);
        assert_eq!((report.completed, report.cancelled), (3, 0), "{report:?}");
        assert!(report.drained);
    })
}
