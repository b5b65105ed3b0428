//! One core: a thread running a fair-partition reactor.
//!
//! The loop, the 2017 proposal's reactor made fair by CPU time:
//!
//! 1. *Between turns*: apply control messages, take the partitions that got
//!    foreign work ([`CoreShared::pending`]) and move that work into the
//!    scheduler, and fire expired timers (checked every turn, so a timer
//!    waits behind a busy partition for one turn at most).
//! 2. *A turn*: the scheduler picks a partition (lowest virtual runtime, or
//!    a latency partition that just became runnable) and hands out its
//!    tasks one poll at a time until the turn's allowance, quota or a
//!    preemption ends it. Only the clock is read per poll (a TSC read via
//!    `quanta`), to charge CPU time and detect long polls.
//! 3. *Nothing runnable*: park in `epoll_wait` (or in `io_uring_enter`
//!    while stream reads and writes are in flight on the core's ring,
//!    [`crate::uring`]) until IO, the next timer (armed on a `timerfd` for
//!    sub-millisecond precision) or a wakeup from another thread
//!    ([`crate::park`]).
//!
//! All of a core's state lives in [`CoreLocal`], owned by its thread and
//! reachable from tasks through the thread-local [`crate::context::CORE`].
//! Borrows of its `RefCell`s never span a task poll or a waker call, so a
//! task may spawn, wake and create timers freely.

use std::cell::{Cell, RefCell};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_deque::Steal;
use fairloop_partitions::{Nanos, PartitionKey, PartitionParams, Scheduler};

use crate::context::CORE;
use crate::partition::{PartitionInner, NOT_ATTACHED};
use crate::reactor::Reactor;
use crate::runtime::{CoreShared, Shared};
use crate::task::{cancel_now, Task};
use crate::timer::{TimerShared, Timers};
use crate::uring::RingRequest;

mod migrate;
pub(crate) use migrate::Adoption;

/// How often the load figure used by `Placement::LeastLoaded` is updated.
const LOAD_PERIOD_NS: Nanos = 10_000_000;
/// `current` when no turn is running.
const NO_TURN: usize = usize::MAX;

/// Messages for a core that are not task wakeups.
pub(crate) enum Control {
    /// A partition's shares changed.
    SetShares(Arc<PartitionInner>),
    /// Move this partition (owned here) to another core.
    Migrate(Arc<PartitionInner>, usize),
    /// Take over a partition another core gave up, with its queued tasks.
    Adopt(Box<Adoption>),
    /// Stop: drop every pending task of this core's partitions and exit.
    Shutdown,
}

/// The thread-local state of one core.
pub(crate) struct CoreLocal {
    pub(crate) shared: Arc<Shared>,
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
    timers: RefCell<Timers>,
    /// When the earliest timer is due, on this core's clock: checked after
    /// every poll, so a due timer (and the latency partition it wakes) need
    /// not wait for the turn to end.
    timer_due: Cell<Nanos>,
    /// A recent reading of both clocks, to translate timer deadlines
    /// (`std::time::Instant`) to the core's clock; re-taken periodically so
    /// the two cannot drift apart.
    anchor: Cell<(Instant, Nanos)>,
    reactor: RefCell<Reactor>,
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
    /// IO operations the running task may still perform in this poll.
    budget: Cell<u32>,
    polls_since_io: Cell<u64>,
    last_io: Cell<Nanos>,
}

/// How long an exiting core waits for the kernel to give back its ring's
/// buffers (cancelled socket operations come back at once).
const RING_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Harvest IO readiness at least every this many polls while busy (as
/// tokio's `event_interval`), and at least once per `task_quota`.
const IO_EVERY_POLLS: u64 = 61;

/// The body of core thread `index`.
pub(crate) fn run(
    shared: Arc<Shared>,
    index: usize,
    poll: mio::Poll,
    control: Receiver<Control>,
    cpu: Option<core_affinity::CoreId>,
    ready: Sender<io::Result<()>>,
) {
    let pinned = cpu.is_some_and(core_affinity::set_for_current);
    shared.cores[index]
        .stats
        .pinned
        .store(pinned, Ordering::Relaxed);
    let reactor = match Reactor::new(poll, shared.config.io_uring) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut reactor = reactor;
    if let Some(ring) = reactor.ring.as_mut() {
        ring.set_owner(shared.clone(), index);
    }
    shared.cores[index]
        .stats
        .io_uring
        .store(reactor.ring.is_some(), Ordering::Relaxed);
    let clock = quanta::Clock::new();
    let epoch = clock.now();
    let core = Rc::new(CoreLocal {
        sched: RefCell::new(Scheduler::new(shared.config.sched.clone())),
        shared,
        index,
        attached: RefCell::new(Vec::new()),
        current: Cell::new(NO_TURN),
        now: Cell::new(0),
        clock,
        epoch,
        timers: RefCell::new(Timers::default()),
        timer_due: Cell::new(Nanos::MAX),
        anchor: Cell::new((Instant::now(), 0)),
        reactor: RefCell::new(reactor),
        control,
        shutting_down: Cell::new(false),
        batch: crossbeam_deque::Worker::new_fifo(),
        graveyard: RefCell::new(Vec::new()),
        retiring: RefCell::new(Vec::new()),
        deferred: RefCell::new(Vec::new()),
        load_at: Cell::new(0),
        load_busy: Cell::new(0),
        budget: Cell::new(crate::io::BUDGET),
        polls_since_io: Cell::new(0),
        last_io: Cell::new(0),
    });
    CORE.with(|c| *c.borrow_mut() = Some(core.clone()));
    let _ = ready.send(Ok(()));
    drop(ready);
    core.run_loop();
    core.shutdown();
    CORE.with(|c| c.borrow_mut().take());
}

impl CoreLocal {
    fn core_shared(&self) -> &CoreShared {
        &self.shared.cores[self.index]
    }

    /// Reads the clock and remembers it as the time of local wakes.
    #[inline]
    fn tick(&self) -> Nanos {
        let now = self.clock.now().duration_since(self.epoch).as_nanos() as Nanos;
        self.now.set(now);
        now
    }

    /// Registers a timer of the running task.
    pub(crate) fn add_timer(&self, deadline: Instant, timer: Arc<TimerShared>) {
        self.timers.borrow_mut().insert(deadline, timer);
        let due = self.to_core_time(deadline);
        if due < self.timer_due.get() {
            self.timer_due.set(due);
        }
    }

    fn to_core_time(&self, t: Instant) -> Nanos {
        let (instant, nanos) = self.anchor.get();
        match t.checked_duration_since(instant) {
            Some(d) => nanos.saturating_add(d.as_nanos() as Nanos),
            None => nanos.saturating_sub(instant.duration_since(t).as_nanos() as Nanos),
        }
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
    /// while the reactor is busy, which a task poll never sees).
    pub(crate) fn with_ring<R>(&self, f: impl FnOnce(&mut crate::uring::Ring) -> R) -> Option<R> {
        let mut reactor = self.reactor.try_borrow_mut().ok()?;
        reactor.ring.as_mut().map(f)
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

    /// The local path of [`crate::waker::schedule`]: takes `task` if its
    /// partition belongs to this core, else gives it back.
    #[inline]
    pub(crate) fn schedule_local(&self, task: Task) -> Result<(), Task> {
        let p = &task.metadata().partition;
        if p.owner.load(Ordering::Acquire) != self.index || !Arc::ptr_eq(&p.shared, &self.shared) {
            return Err(task);
        }
        if self.shutting_down.get() {
            self.graveyard.borrow_mut().push(task);
            return Ok(());
        }
        let Some(key) = self.key_of(p) else {
            // In transit to this core: the adoption drains the injection
            // queue, so the foreign path is the safe one.
            return Err(task);
        };
        self.sched.borrow_mut().push(key, task, self.now.get());
        Ok(())
    }

    /// The scheduler key of a partition this core owns, attaching it on
    /// first use; `None` while it is in transit to this core.
    fn key_of(&self, p: &Arc<PartitionInner>) -> Option<PartitionKey> {
        let slot = p.slot.load(Ordering::Relaxed);
        if slot != NOT_ATTACHED {
            return Some(PartitionKey::from_index(slot));
        }
        if p.transit.load(Ordering::Acquire) {
            return None;
        }
        let params = PartitionParams {
            shares: p.shares.load(Ordering::Relaxed),
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
    fn attach(&self, p: &Arc<PartitionInner>, key: PartitionKey) {
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
    fn detach(&self, p: &PartitionInner, slot: usize) {
        p.slot.store(NOT_ATTACHED, Ordering::Relaxed);
        self.attached.borrow_mut()[slot] = None;
        self.publish_partition_count();
    }

    fn publish_partition_count(&self) {
        let count = self.sched.borrow().partitions();
        self.core_shared()
            .stats
            .partitions
            .store(count as u64, Ordering::Relaxed);
    }

    /// An anonymous partition's last task ended: detach it between turns.
    pub(crate) fn retire_later(&self, p: Arc<PartitionInner>) {
        self.retiring.borrow_mut().push(p);
    }

    pub(crate) fn apply_shares(&self, p: &PartitionInner) {
        let slot = p.slot.load(Ordering::Relaxed);
        if p.owner() == self.index && slot != NOT_ATTACHED {
            self.sched.borrow_mut().set_shares(
                PartitionKey::from_index(slot),
                p.shares.load(Ordering::Relaxed),
            );
        }
    }

    fn run_loop(&self) {
        let cs = self.core_shared();
        loop {
            self.between_turns();
            if self.shutting_down.get() {
                return;
            }
            let start = self.tick();
            let key = self.sched.borrow_mut().begin_turn(start);
            let Some(key) = key else {
                self.park();
                continue;
            };
            self.current.set(key.index());
            let mut now = start;
            let mut polls = 0u64;
            loop {
                let task = self.sched.borrow_mut().next_in_turn(now);
                let Some(task) = task else { break };
                // The task future catches its own panics; this catches one
                // from a destructor or a waker, which must not kill the core.
                self.budget.set(crate::io::BUDGET);
                let _ = catch_unwind(AssertUnwindSafe(|| task.run()));
                now = self.tick();
                self.sched.borrow_mut().poll_done(now);
                polls += 1;
                if now >= self.timer_due.get() {
                    self.fire_timers(Instant::now());
                }
                if cs.latency_pending.load(Ordering::Relaxed) {
                    // A latency partition got foreign work: queue it now so
                    // the scheduler can preempt at this task boundary.
                    self.drain_pending();
                }
            }
            self.sched.borrow_mut().end_turn();
            self.current.set(NO_TURN);
            cs.stats.add_turn(now.saturating_sub(start), polls);
            self.polls_since_io.set(self.polls_since_io.get() + polls);
        }
    }

    fn between_turns(&self) {
        if !self.control.is_empty() {
            while let Ok(msg) = self.control.try_recv() {
                self.handle(msg);
            }
        }
        if !self.deferred.borrow().is_empty() {
            let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
            for (p, to) in deferred {
                self.migrate(p, to);
            }
        }
        self.drain_pending();
        self.take_requests();
        let now = self.now.get();
        if now >= self.timer_due.get() {
            self.fire_timers(Instant::now());
        }
        // Sockets get their readiness and ring completions between turns,
        // often enough that a busy core's IO waits at most one quota or a
        // few dozen polls. Ring entries queued by the turn go to the kernel
        // now if more work follows (a core about to park submits them as
        // it parks, in the same syscall).
        let reactor = self.reactor.borrow();
        let io_due = reactor.has_io(&self.core_shared().io)
            && (self.polls_since_io.get() >= IO_EVERY_POLLS
                || now.saturating_sub(self.last_io.get())
                    >= self.shared.config.sched.task_quota.as_nanos() as Nanos
                || (reactor.unsubmitted() > 0 && self.sched.borrow().has_runnable()));
        drop(reactor);
        if io_due {
            let ready = self.reactor.borrow_mut().poll_now(&self.core_shared().io);
            self.io_harvested(now);
            for w in ready {
                w.wake();
            }
        }
        if !self.retiring.borrow().is_empty() {
            self.retire_idle();
        }
        if now.saturating_sub(self.load_at.get()) >= LOAD_PERIOD_NS {
            self.update_load(now);
        }
        self.core_shared()
            .stats
            .queued
            .store(self.sched.borrow().total_queued() as u64, Ordering::Relaxed);
    }

    /// Does what other threads asked of the ring.
    fn take_requests(&self) {
        let cs = self.core_shared();
        if !cs.has_requests() {
            return;
        }
        let requests = cs.take_requests();
        self.with_ring(|ring| {
            for request in requests {
                match request {
                    RingRequest::Cancel(user_data) => ring.cancel(user_data),
                    RingRequest::Call(target) => target.on_core(ring),
                }
            }
        });
    }

    fn handle(&self, msg: Control) {
        match msg {
            Control::SetShares(p) => self.apply_shares(&p),
            Control::Migrate(p, to) => self.migrate(p, to),
            Control::Adopt(adoption) => self.adopt(*adoption),
            Control::Shutdown => self.shutting_down.set(true),
        }
    }

    /// Moves the tasks in `p`'s injection queue (owned here, not in
    /// transit) into the scheduler, a batch per steal: one atomic
    /// operation on the shared queue for up to a few dozen tasks.
    fn take_injected(&self, p: &Arc<PartitionInner>) -> u64 {
        let mut moved = 0;
        loop {
            match p.injector.steal_batch(&self.batch) {
                Steal::Success(()) => {}
                Steal::Empty => break,
                Steal::Retry => continue,
            }
            if self.shutting_down.get() {
                let mut graveyard = self.graveyard.borrow_mut();
                while let Some(task) = self.batch.pop() {
                    moved += 1;
                    graveyard.push(task);
                }
                continue;
            }
            let key = self.key_of(p).expect("callers skip partitions in transit");
            let now = self.now.get();
            // Pushing calls no waker, so the borrow cannot be re-entered.
            let mut sched = self.sched.borrow_mut();
            while let Some(task) = self.batch.pop() {
                moved += 1;
                sched.push(key, task, now);
            }
        }
        moved
    }

    /// Moves foreign work (tasks in the injection queues of partitions that
    /// announced themselves) into the scheduler.
    fn drain_pending(&self) {
        let cs = self.core_shared();
        cs.latency_pending.store(false, Ordering::Relaxed);
        let mut moved = 0u64;
        loop {
            match cs.pending.steal() {
                Steal::Success(p) => {
                    p.take_notification();
                    if p.owner() != self.index {
                        // It moved on after the announcement: pass it on.
                        p.notify_owner();
                    } else if !p.transit.load(Ordering::Acquire) {
                        moved += self.take_injected(&p);
                    }
                    // In transit here: the adoption drains its queue.
                }
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        if moved > 0 {
            cs.stats.add_remote_wakes(moved);
        }
    }

    fn fire_timers(&self, now: Instant) {
        // Wake outside the borrow: a woken task's destructor could touch
        // the timers.
        let (fired, next) = {
            let mut timers = self.timers.borrow_mut();
            let fired = timers.expire(now);
            (fired, timers.next_deadline())
        };
        self.timer_due
            .set(next.map_or(Nanos::MAX, |d| self.to_core_time(d)));
        for w in fired {
            w.wake();
        }
    }

    fn park(&self) {
        let cs = self.core_shared();
        let flag = cs.park_flag();
        if !flag.prepare_park() {
            // Foreign work arrived since the last drain.
            return;
        }
        // Local work (queued by a timer or a destructor since the turn
        // ended) needs no token; neither do cancellations asked for by
        // other threads.
        let has_work = self.sched.borrow().has_runnable()
            || !self.retiring.borrow().is_empty()
            || cs.has_requests();
        if has_work {
            flag.unpark_self();
            return;
        }
        let deadline = self.timers.borrow_mut().next_deadline();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            flag.unpark_self();
            self.fire_timers(Instant::now());
            return;
        }
        cs.stats.add_park();
        let ready = self.reactor.borrow_mut().park(deadline, &cs.io);
        flag.unpark_self();
        let now = self.tick();
        self.io_harvested(now);
        for w in ready {
            w.wake();
        }
        self.anchor.set((Instant::now(), now));
        if now.saturating_sub(self.load_at.get()) >= LOAD_PERIOD_NS {
            // The time asleep counts as idle.
            self.update_load(now);
        }
        if deadline.is_some() {
            self.fire_timers(Instant::now());
        }
    }

    fn io_harvested(&self, now: Nanos) {
        self.polls_since_io.set(0);
        self.last_io.set(now);
    }

    fn retire_idle(&self) {
        let retiring = std::mem::take(&mut *self.retiring.borrow_mut());
        for p in retiring {
            let slot = p.slot.load(Ordering::Relaxed);
            if p.owner() != self.index || slot == NOT_ATTACHED {
                continue;
            }
            // A task may have joined since the last one ended.
            if !p.tasks.lock().wakers.is_empty() || !p.injector.is_empty() {
                continue;
            }
            let key = PartitionKey::from_index(slot);
            if self.sched.borrow().queued(key) > 0 {
                continue;
            }
            let removed = self.sched.borrow_mut().remove_partition(key);
            self.detach(&p, slot);
            drop(removed);
        }
    }

    fn update_load(&self, now: Nanos) {
        self.anchor.set((Instant::now(), now));
        if let Some(d) = self.timers.borrow_mut().next_deadline() {
            self.timer_due.set(self.to_core_time(d));
        }
        let stats = &self.core_shared().stats;
        let busy = stats.busy_ns();
        let elapsed = now.saturating_sub(self.load_at.get()).max(1);
        let frac = (busy.saturating_sub(self.load_busy.get()) as f64 / elapsed as f64).min(1.0);
        stats.set_load(0.7 * stats.load() + 0.3 * frac);
        let wanting = self.sched.borrow().runnable_partitions() as f64;
        stats.set_demand(0.7 * stats.demand() + 0.3 * wanting);
        self.load_at.set(now);
        self.load_busy.set(busy);
    }

    /// Drops every pending task of the partitions this core owns: queued
    /// ones, ones in injection queues, and ones parked anywhere (reached
    /// through the wakers in each partition's task set, which, woken now,
    /// land in the graveyard). Repeats until every task set is empty: a
    /// task can be between queues for an instant when another thread is
    /// mid-wake.
    fn shutdown(&self) {
        self.shutting_down.set(true);
        self.current.set(NO_TURN);
        let queued = self.sched.borrow_mut().drain_all();
        self.graveyard.borrow_mut().extend(queued);
        self.bury();
        // The buried tasks' sockets asked for their reads to be cancelled;
        // cancel everything else on the ring too, and wait until the kernel
        // has let go of every buffer. A task elsewhere waiting for one of
        // these operations is woken (and submits again on its own core).
        self.take_requests();
        let mut woken = Vec::new();
        self.with_ring(|ring| ring.shutdown(RING_SHUTDOWN_LIMIT, &mut woken));
        for w in woken {
            w.wake();
        }
        self.bury();
        loop {
            // Partitions may still arrive (adoptions sent before shutdown):
            // their tasks go to the graveyard.
            while let Ok(msg) = self.control.try_recv() {
                self.handle(msg);
            }
            self.drain_pending();
            let owned: Vec<_> = self
                .shared
                .partitions()
                .into_iter()
                .filter(|p| p.owner() == self.index)
                .collect();
            for p in &owned {
                loop {
                    match p.injector.steal() {
                        Steal::Success(t) => self.graveyard.borrow_mut().push(t),
                        Steal::Empty => break,
                        Steal::Retry => continue,
                    }
                }
                let wakers: Vec<_> = {
                    let mut set = p.tasks.lock();
                    set.closed = true;
                    set.wakers.iter().map(|(_, w)| w.clone()).collect()
                };
                for w in wakers {
                    w.wake();
                }
            }
            self.bury();
            let live: usize = owned.iter().map(|p| p.tasks.lock().wakers.len()).sum();
            drop(owned);
            if live == 0 {
                // Exit only if no adoption slipped in since the last look:
                // under the lock adoptions are sent with, so a core that
                // migrates a partition here either gets its adoption seen
                // or gets it back and keeps the partition.
                let mut exited = self.core_shared().exited.lock();
                if self.control.is_empty() {
                    *exited = true;
                    break;
                }
            }
            std::thread::yield_now();
        }
        self.timers.borrow_mut().clear();
        let attached = std::mem::take(&mut *self.attached.borrow_mut());
        for p in attached.iter().flatten() {
            p.slot.store(NOT_ATTACHED, Ordering::Relaxed);
        }
    }

    /// Ends the graveyard's tasks one at a time (dropping their futures);
    /// ending one may add more.
    fn bury(&self) {
        loop {
            let task = self.graveyard.borrow_mut().pop();
            match task {
                Some(t) => {
                    let _ = catch_unwind(AssertUnwindSafe(move || cancel_now(t)));
                }
                None => break,
            }
        }
    }
}
