//! Defects found by reading the runtime (the "thousands of tenants" issue),
//! each pinned by a test that failed before its fix: partitions leaked by a
//! move queued from their last poll, time arithmetic that overflowed or
//! truncated, a reset sleep that forgot its waker, and user code (a waker)
//! panicking on a core thread.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{rt, wait_until, with_timeout};
use fairloop::partition::{self, PartitionSpec};
use fairloop::time::{interval, interval_at, sleep, sleep_until, timeout, Sleep};

/// An anonymous partition whose only task asks, in its last poll, to move
/// to the other core: the move happens after the task has ended, and the
/// partition must still leave the scheduler (on whichever core ends up with
/// it) instead of living on forever. Before the fix, 50 such partitions
/// stayed attached to core 1 for the life of the runtime.
#[test]
fn anonymous_partitions_moved_by_their_last_task_are_retired() {
    with_timeout(30, || {
        let rt = rt(2);
        let roots = rt.metrics().partitions.len();
        rt.block_on(async {
            for _ in 0..50 {
                partition::spawn(PartitionSpec::anonymous(), async {
                    let other = 1 - fairloop::core_id();
                    partition::current()
                        .migrate_to(other)
                        .expect("an anonymous partition may move");
                })
                .await
                .expect("the task ends normally");
            }
        });
        wait_until(
            Duration::from_secs(10),
            "the 50 moved anonymous partitions to be retired",
            || rt.metrics().partitions.len() == roots,
        );
    });
}

/// `shutdown_timeout(Duration::MAX)` means "wait as long as it takes"; it
/// used to overflow `Instant + Duration` and panic.
#[test]
fn shutdown_timeout_with_the_largest_duration_waits_instead_of_panicking() {
    with_timeout(30, || {
        let rt = rt(2);
        let done = rt.spawn(async { 7 });
        assert_eq!(rt.block_on(done).expect("task"), 7);
        rt.shutdown_timeout(Duration::MAX);
    });
}

/// An interval whose period is too long to add to an `Instant` never ticks
/// again after its first tick (it used to panic in `tick`).
#[test]
fn interval_with_a_huge_period_ticks_once_then_waits() {
    with_timeout(30, || {
        let rt = rt(1);
        rt.block_on(async {
            let mut iv = interval(Duration::MAX);
            iv.tick().await;
            assert!(
                timeout(Duration::from_millis(50), iv.tick()).await.is_err(),
                "a second tick of a Duration::MAX interval must not come"
            );
        });
    });
}

/// Missed ticks are skipped however far behind the interval is: the tick
/// after a long stall is scheduled after now, not in the past (which made
/// it fire at once, a burst). A 1 ns period started 5 s ago is more than
/// 2^32 periods behind, where a `u32` count used to cap the catch-up.
#[test]
fn an_interval_far_behind_skips_to_the_next_tick_after_now() {
    with_timeout(30, || {
        let rt = rt(1);
        rt.block_on(async {
            let Some(start) = Instant::now().checked_sub(Duration::from_secs(5)) else {
                return; // the clock started less than 5 s ago: nothing to check
            };
            let mut iv = interval_at(start, Duration::from_nanos(1));
            let before_first = Instant::now();
            assert_eq!(iv.tick().await, start, "the first tick is the start");
            let second = iv.tick().await;
            assert!(
                second >= before_first,
                "the tick after a 5 s stall must be scheduled after the stall, not {:?} before",
                before_first.saturating_duration_since(second)
            );
        });
    });
}

/// A sleep whose deadline is centuries away parks its core like any other,
/// and the core keeps serving tasks. (That its deadline no longer wraps on
/// the core's clock, which made the core look for due timers after every
/// poll, is checked by the runtime's unit test of `core_time`.)
#[test]
fn a_deadline_centuries_away_does_not_break_the_core() {
    with_timeout(30, || {
        let rt = rt(1);
        let far = Instant::now()
            .checked_add(Duration::from_secs(1000 * 365 * 86_400))
            .expect("an Instant 1000 years ahead is representable on Linux");
        let sleeper = rt.spawn(async move { sleep_until(far).await });
        // Let the core park with only the far deadline pending.
        std::thread::sleep(Duration::from_millis(50));
        let alive = rt.spawn(async { 42 });
        assert_eq!(rt.block_on(alive).expect("the core still runs tasks"), 42);
        sleeper.abort();
        let joined = rt.block_on(sleeper);
        assert!(joined.expect_err("aborted").is_cancelled());
    });
}

/// `Sleep::reset` keeps the waker it was polled with, as tokio's does (and
/// as hyper's `Timer::reset` relies on): a sleep reset to a near deadline
/// wakes its task even if nobody polls it in between. It used to drop the
/// waker, and the task below then slept forever.
#[test]
fn a_reset_sleep_wakes_its_task_without_another_poll() {
    with_timeout(30, || {
        let rt = rt(1);
        rt.block_on(async {
            struct ResetOnce {
                sleep: Pin<Box<Sleep>>,
                reset: bool,
            }
            impl Future for ResetOnce {
                type Output = ();
                fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                    if self.sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    if !self.reset {
                        // Registered for an hour; now due in 20 ms, and
                        // this poll returns without polling it again.
                        self.reset = true;
                        let soon = Instant::now() + Duration::from_millis(20);
                        self.sleep.as_mut().reset(soon);
                    }
                    Poll::Pending
                }
            }
            let started = Instant::now();
            ResetOnce {
                sleep: Box::pin(sleep(Duration::from_secs(3600))),
                reset: false,
            }
            .await;
            assert!(started.elapsed() >= Duration::from_millis(20));
        });
    });
}

/// A waker that panics when called: user code (a combinator's own waker)
/// that the core calls when a timer fires.
struct PanickingWaker(AtomicUsize);

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a user's waker panicked");
    }
}

/// A panic in a waker the core calls (here from its timer heap) is
/// contained: the core goes on running tasks and shuts down normally. It
/// used to unwind out of the core loop and kill the core thread.
#[test]
fn a_panicking_waker_does_not_take_its_core_down() {
    with_timeout(30, || {
        let rt = rt(1);
        let calls = Arc::new(PanickingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(calls.clone());
        rt.block_on(async move {
            // Register a timer with the panicking waker, and keep the sleep
            // alive (a dropped sleep cancels its timer).
            let mut s = Box::pin(sleep(Duration::from_millis(10)));
            {
                let mut cx = Context::from_waker(&waker);
                assert!(s.as_mut().poll(&mut cx).is_pending());
            }
            sleep(Duration::from_millis(50)).await;
            drop(s);
        });
        assert_eq!(calls.0.load(Ordering::SeqCst), 1, "the timer fired once");
        let alive = rt.spawn(async { 42 });
        assert_eq!(rt.block_on(alive).expect("the core still runs tasks"), 42);
        rt.shutdown_timeout(Duration::from_secs(10));
    });
}
