//! Timers: [`sleep`], [`sleep_until`], [`timeout`], [`interval`].
//!
//! Each core keeps its own timers (a heap, in `time/heap.rs`). A timer
//! belongs to the task that awaits it, and so to that task's partition:
//! when it fires, the task is woken in its own partition. On an idle core a
//! timer fires within a few microseconds of its deadline (a `timerfd`, not
//! epoll's millisecond timeout, ends the wait); on a busy core the core
//! looks at the earliest deadline after every task poll, so a due timer
//! fires once the poll in progress returns, and its task runs when its
//! partition's turn comes (a latency partition's at the next task
//! boundary).
//!
//! The futures here must be polled by a task of a fairloop runtime; polling
//! one elsewhere panics with a message that says so.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::context::with_core;
use crate::error::outside_core;
use crate::reactor::Reactor;

mod heap;

pub(crate) use heap::{Timer, TimerHeap};

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    let now = Instant::now();
    // Saturate instead of panicking on absurd durations.
    let deadline = now.checked_add(duration).unwrap_or_else(far_future);
    Sleep::new(deadline)
}

/// Waits until `deadline`. A deadline in the past completes at once.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(deadline)
}

fn far_future() -> Instant {
    // About 30 years: beyond any realistic uptime, well inside Instant's range.
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The future of [`sleep`] and [`sleep_until`].
///
/// It registers with the timers of the core that first polls it. Dropping it
/// before it fires cancels the timer in O(1).
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    timer: Option<Arc<Timer>>,
}

impl Sleep {
    fn new(deadline: Instant) -> Self {
        Sleep {
            deadline,
            timer: None,
        }
    }

    /// When the sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (earlier or later). A sleep that was already
    /// waiting keeps its waker: its task is woken at the new deadline
    /// without polling the sleep again in between (as tokio's `reset`
    /// does, which hyper's `Timer::reset` relies on).
    pub fn reset(&mut self, deadline: Instant) {
        let waker = self.cancel();
        self.deadline = deadline;
        let Some(waker) = waker else {
            return;
        };
        if Instant::now() >= deadline {
            // Due already: the task's next poll completes.
            waker.wake();
            return;
        }
        let armed = with_core(|core| {
            core.map(|core| {
                self.timer = Some(register(core, deadline, &waker));
            })
        });
        if armed.is_none() {
            // Reset off a core thread: the task's next poll registers the
            // timer on its own core.
            waker.wake();
        }
    }

    /// Cancels the registered timer, if any, and returns the waker it was
    /// to wake.
    fn cancel(&mut self) -> Option<Waker> {
        let t = self.timer.take()?;
        t.cancelled.store(true, Ordering::Relaxed);
        // The heap drops its entry lazily; the task's waker must not wait
        // for that, or it would keep the task (and its partition) alive
        // until the deadline.
        t.waker.take()
    }
}

/// Registers a timer for `deadline` that wakes `waker`, on `core`.
fn register(core: &Reactor, deadline: Instant, waker: &Waker) -> Arc<Timer> {
    let timer = Arc::new(Timer::default());
    timer.waker.register(waker);
    core.add_timer(deadline, timer.clone());
    timer
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(t) = &self.timer {
            if t.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            t.waker.register(cx.waker());
            // The core may have fired between the check and the register.
            return if t.fired.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let timer = with_core(|core| match core {
            Some(core) => register(core, deadline, cx.waker()),
            None => outside_core("fairloop::time::Sleep"),
        });
        self.timer = Some(timer);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        drop(self.cancel());
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Runs `future` for at most `duration`: `Err(Elapsed)` if it has not
/// completed by then (the future is dropped with the `Timeout`).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The future first: one that is ready at the deadline still wins.
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Elapsed")
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// A stream of instants `period` apart; the first tick completes at once.
///
/// # Panics
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Like [`interval`], with the first tick at `start`.
///
/// # Panics
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "fairloop::time::interval: the period must be non-zero"
    );
    Interval {
        period,
        next: start,
    }
}

/// Ticks at a fixed period. Ticks missed because the task was busy are
/// skipped (the next tick is the next multiple of `period` after now), so
/// a stalled interval does not fire a burst to catch up.
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    next: Instant,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled
    /// for (compare it with `Instant::now()` to measure lateness).
    pub async fn tick(&mut self) -> Instant {
        let scheduled = self.next;
        sleep_until(scheduled).await;
        self.next = next_tick(scheduled, self.period, Instant::now());
        scheduled
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Makes the next tick one period from now.
    pub fn reset(&mut self) {
        self.next = Instant::now()
            .checked_add(self.period)
            .unwrap_or_else(far_future);
    }
}

/// The tick after `scheduled`: one period later, or, if that has passed
/// by `now`, the first multiple of `period` after `now` (missed ticks are
/// skipped, however many). A tick beyond what an `Instant` can hold is
/// [`far_future`]: it never comes.
fn next_tick(scheduled: Instant, period: Duration, now: Instant) -> Instant {
    if let Some(next) = scheduled.checked_add(period) {
        if next > now {
            return next;
        }
    }
    // In nanoseconds as u128: no period or stall is too long to count.
    let period_ns = period.as_nanos();
    let behind = now.saturating_duration_since(scheduled).as_nanos();
    let ahead_ns = (behind / period_ns + 1).saturating_mul(period_ns);
    let secs = u64::try_from(ahead_ns / 1_000_000_000);
    let ahead = secs.map(|s| Duration::new(s, (ahead_ns % 1_000_000_000) as u32));
    ahead
        .ok()
        .and_then(|d| scheduled.checked_add(d))
        .unwrap_or_else(far_future)
}
