//! A core that also drives tokio (`Builder::tokio_compat`).
//!
//! Nearly every crate a network service calls (reqwest, tonic, sqlx, tower's
//! timeouts) calls tokio inside: `tokio::spawn`, `tokio::time`,
//! `tokio::net`. They need a tokio runtime *on the calling thread*. So each
//! core thread builds a tokio `current_thread` runtime and runs its own loop
//! as the future given to that runtime's `block_on` ([`CoreLoop`]):
//!
//! * Inside every task poll, tokio's context is the core's: `tokio::spawn`
//!   starts a task on this core's tokio runtime, which runs on this thread;
//!   tokio's timers and IO readiness wake fairloop tasks as local wakes.
//! * **Where the loop would park**, it returns `Pending` instead, after
//!   preparing its driver as for a park (timerfd armed for the next
//!   deadline, ring entries submitted) and registering the epoll fd with
//!   tokio (`AsyncFd`). The ring signals its completions through an eventfd
//!   in that epoll (`driver.rs`, external mode), so one fd says "the core
//!   has something": IO readiness, a due timer, a wakeup from another
//!   thread, a completion. tokio then runs its tasks and blocks in its own
//!   `epoll_wait`, which now covers both: the core parks once for both and
//!   nothing polls.
//! * **While the core is busy**, tokio gets the thread through the turns of
//!   the sharded partition `"tokio"` (a shard on every core). Its one task,
//!   the [`Pump`], asks for the thread in each of its polls; the loop then
//!   returns `Pending` with itself woken, tokio runs at most
//!   [`EVENT_INTERVAL`] of its tasks and polls its IO without blocking,
//!   and the loop resumes where it stopped. The time away is the pump's
//!   poll, charged to the `tokio` shard like any poll: tokio's work
//!   competes for the core by the shard's shares, shows in its metrics, and
//!   cannot starve a latency partition (a turn of tokio's is one bounded
//!   batch).
//! * The pump stays runnable while tokio has work (a turn in which tokio
//!   was busy for [`BUSY`] or more), and otherwise waits until the core has
//!   been busy for [`PERIOD`] without tokio: then tokio's timers and IO are
//!   looked at every [`PERIOD`] at least, at the cost of one trip to tokio
//!   (two syscalls) per period, not per turn.
//!
//! Work done on the core's thread while the loop is away must wake the
//! loop if it parked there: a local wake, a new timer, a ring entry
//! ([`TokioState::wake_loop`]). Anything another thread does wakes it
//! through the epoll fd, as for a park.
//!
//! Time that tokio spends while the core has nothing of its own to run is
//! not charged to anyone's virtual time (nobody waited), but it is added to
//! the `tokio` shard's busy time and poll count, so its metrics show all of
//! tokio's work on the core.
//!
//! What tokio starts is not part of a graceful shutdown's drain (fairloop
//! does not know tokio's tasks): tasks that a fairloop task awaits keep
//! running while that task drains; the rest are dropped when the core stops,
//! after fairloop's tasks are asked to end and before they are dropped.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use fairloop_partitions::Nanos;

use super::turn::{OpenTurn, Pause};
use super::{Reactor, NO_TURN};
use crate::context::with_core;
use crate::partition::PartitionInner;

/// The most tokio tasks run in one trip away from the loop, before tokio
/// looks at its IO and the loop gets the thread back (tokio's
/// `event_interval`; its default is 61). It bounds how long a latency
/// partition can wait behind tokio: 8 polls of tokio tasks.
pub(crate) const EVENT_INTERVAL: u32 = 8;

/// A trip to tokio in which it ran this long means tokio has more to do:
/// the pump asks again at the `tokio` shard's next turn. A trip with
/// nothing to run costs a few microseconds.
pub(crate) const BUSY: Duration = Duration::from_micros(20);

/// While the core is busy, tokio gets the thread at least this often.
pub(crate) const PERIOD: Duration = Duration::from_millis(1);

/// What a core driving tokio keeps besides its loop.
#[derive(Default)]
pub(crate) struct TokioState {
    /// Set by the pump's poll: hand the thread to tokio once that poll
    /// returns.
    yield_asked: Cell<bool>,
    /// The pump's waker while it waits for its next trip.
    pump: RefCell<Option<Waker>>,
    /// When tokio last had the thread (the core's clock).
    last_ran: Cell<Nanos>,
    /// While the loop is parked in tokio: the waker of tokio's
    /// `block_on`.
    parked: Cell<Option<Waker>>,
}

impl TokioState {
    /// Whether the last poll asked to hand the thread to tokio (asked
    /// once, answered once).
    #[inline]
    pub(super) fn take_yield(&self) -> bool {
        self.yield_asked.replace(false)
    }

    /// Called from the core's thread when it queued work for the loop:
    /// if the loop is parked in tokio, tokio must poll it again.
    #[inline]
    pub(crate) fn wake_loop(&self) {
        if let Some(w) = self.parked.take() {
            w.wake();
        }
    }

    /// Wakes the pump if it waits for its next trip.
    fn wake_pump(&self) {
        let pump = self.pump.borrow_mut().take();
        if let Some(w) = pump {
            w.wake();
        }
    }

    /// Between turns, at `now` on the core's clock: wakes the pump if
    /// tokio has not had the thread for [`PERIOD`].
    #[inline]
    pub(super) fn check_period(&self, now: Nanos) {
        if now.saturating_sub(self.last_ran.get()) >= PERIOD.as_nanos() as Nanos {
            self.wake_pump();
        }
    }

    /// Tokio had the thread until `now` (the core's clock), and was busy
    /// for `busy` of it.
    fn came_back(&self, now: Nanos, busy: Duration) {
        self.last_ran.set(now);
        if busy >= BUSY {
            self.wake_pump();
        }
    }
}

/// The task of each `tokio` shard: every poll of it is a trip to tokio.
pub(crate) struct Pump;

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        with_core(|core| {
            if let Some(core) = core {
                let state = &core.tokio;
                state.yield_asked.set(true);
                let mut pump = state.pump.borrow_mut();
                match pump.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *pump = Some(cx.waker().clone()),
                }
            }
        });
        Poll::Pending
    }
}

thread_local! {
    /// When tokio's `block_on` parked this thread (its `on_thread_park`
    /// hook), and how long it has been parked in all: tokio's time away
    /// from the loop minus this is the time its tasks and drivers used.
    static TOKIO_PARKED: Cell<(Option<Instant>, Duration)> =
        const { Cell::new((None, Duration::ZERO)) };
}

fn parked_total() -> Duration {
    TOKIO_PARKED.with(|p| p.get().1)
}

/// The core's epoll fd, as tokio's `AsyncFd` wants it. Borrowed: the
/// core's driver owns the fd (see the SAFETY note in [`CoreTokio::new`]).
struct EpollFd(RawFd);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Why the loop is away from the thread, and since when.
enum Away {
    /// The pump asked for a trip to tokio in the middle of `turn`.
    Trip { turn: OpenTurn },
    /// Nothing to run: parked in tokio until `deadline` or an event.
    Park { deadline: Option<Instant> },
}

/// The future a core's tokio runtime blocks on: the core's loop.
struct CoreLoop {
    core: Rc<Reactor>,
    epoll: AsyncFd<EpollFd>,
    /// The `tokio` shard of this core.
    shard: Arc<PartitionInner>,
    away: Option<(Away, Instant, Duration)>,
}

impl CoreLoop {
    /// Tokio's time since the loop left, less the time tokio was parked.
    fn tokio_busy(since: Instant, parked_before: Duration) -> Duration {
        since
            .elapsed()
            .saturating_sub(parked_total().saturating_sub(parked_before))
    }
}

impl Future for CoreLoop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let core = &*this.core;
        let mut resume = None;
        match this.away.take() {
            None => {}
            Some((Away::Trip { turn }, since, parked)) => {
                core.tokio
                    .came_back(core.tick(), Self::tokio_busy(since, parked));
                resume = Some(turn);
            }
            Some((Away::Park { deadline }, since, parked)) => {
                core.current.set(NO_TURN);
                core.tokio.parked.take();
                let busy = Self::tokio_busy(since, parked);
                if !busy.is_zero() {
                    // Not a turn: nobody waited for it. But it is the
                    // shard's work, and its metrics show it.
                    let long = busy >= core.runtime.config.sched.stall_threshold;
                    this.shard.stats.record_poll(busy.as_nanos() as u64, long);
                }
                this.wake_from_park(cx, deadline);
                core.tokio.came_back(core.now.get(), busy);
            }
        }
        loop {
            match core.run_turns(resume.take()) {
                Pause::Shutdown => return Poll::Ready(()),
                Pause::Yield(turn) => {
                    this.away = Some((Away::Trip { turn }, Instant::now(), parked_total()));
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Pause::Idle => {
                    let Some(deadline) = core.prepare_park() else {
                        continue;
                    };
                    let prepared = core.driver.borrow_mut().prepare_external_park(deadline);
                    let Ok(ready) = prepared else {
                        // No timerfd to end tokio's wait on time: come
                        // back at once, and again, until the deadline (the
                        // core's own park falls back to epoll's timeout).
                        this.away = Some((Away::Park { deadline }, Instant::now(), parked_total()));
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    };
                    if !ready.is_empty() {
                        core.finish_park(ready, deadline);
                        continue;
                    }
                    match this.epoll.poll_read_ready(cx) {
                        Poll::Pending => {
                            // What tokio's tasks do meanwhile (spawn, use a
                            // fairloop socket) is the tokio shard's, as in
                            // the pump's turns.
                            if let Some(key) = core.key_of(&this.shard) {
                                core.current.set(key.index());
                            }
                            core.tokio.parked.set(Some(cx.waker().clone()));
                            this.away =
                                Some((Away::Park { deadline }, Instant::now(), parked_total()));
                            return Poll::Pending;
                        }
                        // Something is there already (or tokio could not
                        // tell): harvest now, without parking.
                        Poll::Ready(_) => this.wake_from_park(cx, deadline),
                    }
                }
            }
        }
    }
}

impl CoreLoop {
    /// Back from a park: forget the epoll fd's readiness, then harvest
    /// (in that order, so an event after the harvest raises readiness
    /// again), then as after any park.
    fn wake_from_park(&self, cx: &mut Context<'_>, deadline: Option<Instant>) {
        if let Poll::Ready(Ok(mut guard)) = self.epoll.poll_read_ready(cx) {
            guard.clear_ready();
        }
        let ready = self.core.driver.borrow_mut().poll_now();
        self.core.finish_park(ready, deadline);
    }
}

/// A core's tokio runtime, built on the core's thread before it says it
/// runs.
pub(crate) struct CoreTokio {
    runtime: tokio::runtime::Runtime,
    epoll: AsyncFd<EpollFd>,
    shard: Arc<PartitionInner>,
}

impl CoreTokio {
    /// Builds the runtime, registers the core's epoll fd with it and
    /// starts the pump in the core's `tokio` shard.
    pub(crate) fn new(core: &Rc<Reactor>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .event_interval(EVENT_INTERVAL)
            .on_thread_park(|| {
                TOKIO_PARKED.with(|p| p.set((Some(Instant::now()), p.get().1)));
            })
            .on_thread_unpark(|| {
                TOKIO_PARKED.with(|p| {
                    if let (Some(since), total) = p.get() {
                        p.set((None, total + since.elapsed()));
                    }
                });
            })
            .build()?;
        let epoll = {
            let _tokio = runtime.enter();
            let fd = EpollFd(core.driver.borrow().epoll_fd());
            // SAFETY: the fd is the epoll fd of this core's `Driver`, which
            // the core's `Reactor` owns and keeps open until the thread
            // ends; this `AsyncFd` lives in `CoreLoop`, which `block_on`
            // drops before `run` returns, while the reactor is alive.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?
        };
        let _ = core.remote().tokio.set(runtime.handle().clone());
        let shard = core
            .runtime
            .tokio_shard(core.index)
            .ok_or_else(|| io::Error::other("the tokio partition has no shard on this core"))?;
        // Never awaited: the pump lasts until the core stops.
        drop(shard.spawn(Pump));
        Ok(CoreTokio {
            runtime,
            epoll,
            shard,
        })
    }

    /// Runs the core's loop inside tokio until shutdown, then stops tokio
    /// (dropping its tasks while the core can still take their fairloop
    /// resources back) and the core.
    pub(crate) fn run(self, core: &Rc<Reactor>) {
        let CoreTokio {
            runtime,
            epoll,
            shard,
        } = self;
        let core_loop = CoreLoop {
            core: core.clone(),
            epoll,
            shard,
            away: None,
        };
        // The loop manages its own budget; tokio's cooperative budget
        // would count every fairloop task's tokio calls against one poll.
        runtime.block_on(tokio::task::unconstrained(core_loop));
        // Drops tokio's tasks here and now, counted for the shutdown's
        // report; its blocking threads finish on their own (a stop must not
        // wait for them).
        let alive = runtime.metrics().num_alive_tasks();
        core.runtime
            .lifecycle
            .tokio_dropped
            .fetch_add(alive, std::sync::atomic::Ordering::SeqCst);
        runtime.shutdown_background();
        core.shutdown();
    }
}
