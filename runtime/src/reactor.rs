//! One core: a thread running a fair-partition reactor.
//!
//! Every core of a runtime runs one [`Reactor`] on its own thread: the 2017
//! proposal's reactor, made fair by CPU time. It owns the core's scheduler
//! (`fairloop-partitions`), the partitions attached to it, its timers and
//! its IO [`Driver`]; only its own thread touches them, so a task woken on
//! its own core is queued with no synchronisation at all.
//!
//! The loop (`turn.rs`):
//!
//! 1. *Between turns*: apply control messages, take the partitions that got
//!    foreign work ([`Remote::pending`]) and move that work into the
//!    scheduler, and fire due timers (also looked for after every poll,
//!    so a due timer never waits for a busy partition's turn to end).
//! 2. *A turn*: the scheduler picks a partition (lowest virtual runtime, or
//!    a latency partition that just became runnable) and hands out its
//!    tasks one poll at a time until the turn's allowance, quota or a
//!    preemption ends it. Only the clock is read per poll (a TSC read via
//!    `quanta`), to charge CPU time and detect long polls.
//! 3. *Nothing runnable*: park in the driver (`epoll_wait`, or
//!    `io_uring_enter` while stream reads and writes are in flight) until
//!    IO, the next timer (armed on a `timerfd` for sub-millisecond
//!    precision) or a wakeup from another thread ([`crate::park`]).
//!
//! The rest, a file each: `remote.rs` ([`Remote`], what other threads may
//! touch of a core, and the [`Control`] messages they send it), `wake.rs`
//! (where a woken task goes), `migrate.rs` (moving a partition to another
//! core), `shutdown.rs` (how a core stops).
//!
//! All of a core's state lives in [`Reactor`], reachable from tasks through
//! the thread-local [`crate::context::CORE`]. Borrows of its `RefCell`s
//! never span a task poll or a waker call, so a task may spawn, wake and
//! create timers freely.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use fairloop_partitions::{Nanos, PartitionKey, PartitionParams, Scheduler};

use crate::context::CORE;
use crate::driver::readiness::Registrations;
use crate::driver::uring::Ring;
use crate::driver::Driver;
use crate::partition::{PartitionInner, NOT_ATTACHED};
use crate::runtime::RuntimeInner;
use crate::task::Task;
use crate::time::{Timer, TimerHeap};

mod migrate;
mod remote;
mod shutdown;
#[cfg(feature = "tokio-compat")]
mod tokio_compat;
mod turn;
mod wake;

pub(crate) use migrate::Adoption;
pub(crate) use remote::{Control, Remote};
pub use turn::BUDGET;
pub(crate) use turn::{consume_budget, NO_TURN};
pub(crate) use wake::schedule;

/// The thread-local state of one core: everything its loop owns.
pub(crate) struct Reactor {
    pub(crate) runtime: Arc<RuntimeInner>,
    pub(crate) index: usize,
    sched: RefCell<Scheduler<Task>>,
    /// The partition behind each scheduler key.
    attached: RefCell<Vec<Option<Arc<PartitionInner>>>>,
    /// Key of the partition whose turn is running.
    current: Cell<usize>,
    /// The clock at the end of the last poll: the timestamp of local wakes.
    now: Cell<Nanos>,
    clock: quanta::Clock,
    epoch: quanta::Instant,
    timers: RefCell<TimerHeap>,
    /// When the earliest timer is due, on this core's clock: checked after
    /// every poll, so a due timer (and the latency partition it wakes) need
    /// not wait for the turn to end.
    timer_due: Cell<Nanos>,
    /// A recent reading of both clocks, to translate timer deadlines
    /// (`std::time::Instant`) to the core's clock; re-taken periodically so
    /// the two cannot drift apart.
    anchor: Cell<(Instant, Nanos)>,
    driver: RefCell<Driver>,
    control: Receiver<Control>,
    shutting_down: Cell<bool>,
    /// Scratch space for batches taken from injection queues.
    batch: crossbeam_deque::Worker<Task>,
    /// Tasks woken during shutdown, dropped one at a time (never inside a
    /// waker call, so destructors cannot recurse without bound).
    graveyard: RefCell<Vec<Task>>,
    /// Anonymous partitions whose last task ended.
    retiring: RefCell<Vec<Arc<PartitionInner>>>,
    /// Migrations asked of a partition still in transit to this core,
    /// retried once it has arrived.
    deferred: RefCell<Vec<(Arc<PartitionInner>, usize)>>,
    load_at: Cell<Nanos>,
    load_busy: Cell<u64>,
    /// Scheduler keys of the partitions whose turns ended since the last
    /// leaderboard refresh, with their busy time then (see
    /// `turn.rs::refresh_leaders`).
    ran: RefCell<Vec<(usize, Duration)>>,
    /// This core's busiest partitions, most busy first.
    leaders: RefCell<Vec<Weak<PartitionInner>>>,
    /// IO operations the running task may still perform in this poll (the
    /// cooperative budget, [`BUDGET`] per poll).
    budget: Cell<u32>,
    polls_since_io: Cell<u64>,
    last_io: Cell<Nanos>,
    /// With `Builder::tokio_compat`: the pump's and the loop's state
    /// towards tokio (`tokio_compat.rs`).
    #[cfg(feature = "tokio-compat")]
    tokio: tokio_compat::TokioState,
}

/// The body of core thread `index`: builds the core's driver and
/// [`Reactor`], says so on `ready`, runs the loop until shutdown, then
/// stops the core.
pub(crate) fn run(
    runtime: Arc<RuntimeInner>,
    index: usize,
    poll: mio::Poll,
    control: Receiver<Control>,
    cpu: Option<core_affinity::CoreId>,
    ready: Sender<io::Result<()>>,
) {
    let remote = runtime.remote(index);
    let pinned = cpu.is_some_and(core_affinity::set_for_current);
    remote.stats.pinned.store(pinned, Ordering::Relaxed);
    let ring = runtime
        .config
        .io_uring
        .then(|| remote.ring_owner(runtime.config.stream_linger));
    let external = runtime.config.tokio_compat;
    let driver = match Driver::new(poll, remote.registrations.clone(), ring, external) {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    remote
        .stats
        .io_uring
        .store(driver.has_ring(), Ordering::Relaxed);
    let clock = quanta::Clock::new();
    let epoch = clock.now();
    let core = Rc::new(Reactor {
        sched: RefCell::new(Scheduler::new(runtime.config.sched.clone())),
        runtime,
        index,
        attached: RefCell::new(Vec::new()),
        current: Cell::new(NO_TURN),
        now: Cell::new(0),
        clock,
        epoch,
        timers: RefCell::new(TimerHeap::default()),
        timer_due: Cell::new(Nanos::MAX),
        anchor: Cell::new((Instant::now(), 0)),
        driver: RefCell::new(driver),
        control,
        shutting_down: Cell::new(false),
        batch: crossbeam_deque::Worker::new_fifo(),
        graveyard: RefCell::new(Vec::new()),
        retiring: RefCell::new(Vec::new()),
        deferred: RefCell::new(Vec::new()),
        load_at: Cell::new(0),
        load_busy: Cell::new(0),
        ran: RefCell::new(Vec::new()),
        leaders: RefCell::new(Vec::new()),
        budget: Cell::new(BUDGET),
        polls_since_io: Cell::new(0),
        last_io: Cell::new(0),
        #[cfg(feature = "tokio-compat")]
        tokio: tokio_compat::TokioState::default(),
    });
    CORE.with(|c| *c.borrow_mut() = Some(core.clone()));
    start_and_run(&core, ready);
    CORE.with(|c| c.borrow_mut().take());
}

/// Tells the builder whether the core started (a core that drives tokio
/// needs its tokio runtime first), then runs the loop until shutdown, and
/// shuts down.
fn start_and_run(core: &Rc<Reactor>, ready: Sender<io::Result<()>>) {
    #[cfg(feature = "tokio-compat")]
    let tokio = match core.runtime.config.tokio_compat {
        false => None,
        true => match tokio_compat::CoreTokio::new(core) {
            Ok(tokio) => Some(tokio),
            Err(e) => {
                let _ = ready.send(Err(e));
                // The runtime's build fails and stops the other cores;
                // this one must stop like them.
                drop(ready);
                core.shutdown();
                return;
            }
        },
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    #[cfg(feature = "tokio-compat")]
    if let Some(tokio) = tokio {
        // The loop runs inside tokio's `block_on`, and shuts down there.
        tokio.run(core);
        return;
    }
    core.run_loop();
    core.shutdown();
}

impl Reactor {
    /// What other threads may touch of this core.
    #[inline]
    pub(crate) fn remote(&self) -> &Remote {
        self.runtime.remote(self.index)
    }

    /// Whether this is core `core` of `runtime`.
    #[inline]
    pub(crate) fn is(&self, runtime: &Arc<RuntimeInner>, core: usize) -> bool {
        self.index == core && Arc::ptr_eq(&self.runtime, runtime)
    }

    /// The table of sources registered with this core's epoll.
    pub(crate) fn registrations(&self) -> &Arc<Registrations> {
        &self.remote().registrations
    }

    /// Reads the clock and remembers it as the time of local wakes.
    #[inline]
    pub(super) fn tick(&self) -> Nanos {
        let now = self.clock.now().duration_since(self.epoch).as_nanos() as Nanos;
        self.now.set(now);
        now
    }

    /// Registers a timer of the running task.
    pub(crate) fn add_timer(&self, deadline: Instant, timer: Arc<Timer>) {
        self.timers.borrow_mut().insert(deadline, timer);
        let due = self.to_core_time(deadline);
        if due < self.timer_due.get() {
            self.timer_due.set(due);
            // Added by a tokio task while the loop is parked in tokio: the
            // timerfd must be armed again.
            #[cfg(feature = "tokio-compat")]
            self.tokio.wake_loop();
        }
    }

    pub(super) fn to_core_time(&self, t: Instant) -> Nanos {
        core_time(self.anchor.get(), t)
    }

    /// Takes one unit of the running task's IO budget.
    pub(crate) fn consume_budget(&self) -> bool {
        match self.budget.get() {
            0 => false,
            n => {
                self.budget.set(n - 1);
                true
            }
        }
    }

    /// Runs `f` with this core's completion ring; `None` without one (or
    /// while the driver is busy, which a task poll never sees).
    pub(crate) fn with_ring<R>(&self, f: impl FnOnce(&mut Ring) -> R) -> Option<R> {
        let mut driver = self.driver.try_borrow_mut().ok()?;
        // Used by a tokio task while the loop is parked in tokio: what it
        // queued must reach the kernel.
        #[cfg(feature = "tokio-compat")]
        self.tokio.wake_loop();
        driver.ring().map(f)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// The partition whose task is running now, if any.
    pub(crate) fn current_partition(&self) -> Option<Arc<PartitionInner>> {
        match self.current.get() {
            NO_TURN => None,
            k => self.attached.borrow().get(k).cloned().flatten(),
        }
    }

    /// The id of the partition whose task is running now, if any.
    pub(crate) fn current_partition_id(&self) -> Option<u64> {
        match self.current.get() {
            NO_TURN => None,
            k => self
                .attached
                .borrow()
                .get(k)
                .and_then(|p| p.as_ref().map(|p| p.id)),
        }
    }

    /// The scheduler key of a partition this core owns, attaching it on
    /// first use; `None` while it is in transit to this core.
    pub(super) fn key_of(&self, p: &Arc<PartitionInner>) -> Option<PartitionKey> {
        let slot = p.slot.load(Ordering::Relaxed);
        if slot != NOT_ATTACHED {
            return Some(PartitionKey::from_index(slot));
        }
        if p.route.in_transit() {
            return None;
        }
        let params = PartitionParams {
            shares: p.shares.load(Ordering::Acquire),
            latency: p.latency,
        };
        let key = self
            .sched
            .borrow_mut()
            .add_partition(params, p.stats.clone());
        self.attach(p, key);
        Some(key)
    }

    /// Records that scheduler key `key` is partition `p`.
    pub(super) fn attach(&self, p: &Arc<PartitionInner>, key: PartitionKey) {
        p.slot.store(key.index(), Ordering::Relaxed);
        let mut attached = self.attached.borrow_mut();
        if attached.len() <= key.index() {
            attached.resize(key.index() + 1, None);
        }
        attached[key.index()] = Some(p.clone());
        drop(attached);
        self.publish_partition_count();
    }

    /// Forgets partition `p`, which left the scheduler.
    pub(super) fn detach(&self, p: &PartitionInner, slot: usize) {
        p.slot.store(NOT_ATTACHED, Ordering::Relaxed);
        self.attached.borrow_mut()[slot] = None;
        self.publish_partition_count();
    }

    fn publish_partition_count(&self) {
        let count = self.sched.borrow().partitions();
        self.remote()
            .stats
            .partitions
            .store(count as u64, Ordering::Relaxed);
    }

    /// An anonymous partition's last task ended: detach it between turns.
    pub(crate) fn retire_later(&self, p: Arc<PartitionInner>) {
        self.retiring.borrow_mut().push(p);
    }

    /// Applies `p`'s new shares here, or sends them on to the core that
    /// owns `p` now (see [`Route::route_change`]).
    ///
    /// [`Route::route_change`]: crate::partition::route::Route::route_change
    pub(crate) fn apply_shares(&self, p: &Arc<PartitionInner>) {
        p.route.route_change(
            self.index,
            || {
                let slot = p.slot.load(Ordering::Relaxed);
                // Not attached yet: `key_of` reads the shares when it is.
                if slot != NOT_ATTACHED {
                    self.sched.borrow_mut().set_shares(
                        PartitionKey::from_index(slot),
                        p.shares.load(Ordering::Acquire),
                    );
                }
            },
            |owner| {
                let forward = Control::SetShares(p.clone());
                self.runtime.remote(owner).send(forward);
            },
        );
    }
}

/// `t` on a core's clock, given an `anchor` (a reading of both clocks at
/// one moment). Saturates instead of truncating: a deadline centuries away
/// is `Nanos::MAX` (never due), not a wrapped small number (due at once).
fn core_time((instant, nanos): (Instant, Nanos), t: Instant) -> Nanos {
    let saturating = |d: std::time::Duration| Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX);
    match t.checked_duration_since(instant) {
        Some(d) => nanos.saturating_add(saturating(d)),
        None => nanos.saturating_sub(saturating(instant.duration_since(t))),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::core_time;

    #[test]
    fn core_time_saturates_for_deadlines_centuries_away() {
        let now = Instant::now();
        let anchor = (now, 1_000);
        assert_eq!(core_time(anchor, now + Duration::from_nanos(5)), 1_005);
        let far = now
            .checked_add(Duration::from_secs(1000 * 365 * 86_400))
            .expect("representable");
        assert_eq!(core_time(anchor, far), u64::MAX, "must not wrap");
        if let Some(past) = now.checked_sub(Duration::from_secs(1)) {
            assert_eq!(core_time(anchor, past), 0, "the past saturates at 0");
        }
    }
}
