//! The loop of a core: turns, the work between them, and parking.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crossbeam_deque::Steal;
use fairloop_partitions::{prefetch, Nanos, PartitionKey};

use super::{Control, Reactor};
use crate::context::with_core;
use crate::driver::uring::RingRequest;
use crate::driver::wake_all;
use crate::partition::route::Holder;
use crate::partition::{PartitionInner, NOT_ATTACHED};
use std::cmp::Reverse;
use std::sync::Weak;
use std::time::Duration;

/// Ready IO operations one task poll may perform before it yields (the
/// cooperative budget; see `fairloop_runtime::io`).
pub const BUDGET: u32 = 128;

/// How often the load figure used by `Placement::LeastLoaded` is updated.
const LOAD_PERIOD_NS: Nanos = 10_000_000;
/// `current` when no turn is running.
pub(crate) const NO_TURN: usize = usize::MAX;

/// Harvest IO readiness at least every this many polls while busy (as
/// tokio's `event_interval`), and at least once per `task_quota`.
const IO_EVERY_POLLS: u64 = 61;

/// Takes one unit of the running task's IO budget; `false` when it is
/// spent (the caller yields). Off a core thread there is no budget.
pub(crate) fn consume_budget() -> bool {
    with_core(|core| core.is_none_or(|c| c.consume_budget()))
}

/// A turn that stopped in the middle: the poll that ended it asked to
/// hand the thread to tokio first (`tokio_compat.rs`), and the poll's end
/// (its CPU time, charged when the thread comes back) is still to come.
#[derive(Clone, Copy, Debug)]
pub(super) struct OpenTurn {
    key: PartitionKey,
    start: Nanos,
    polls: u64,
}

/// Why [`Reactor::run_turns`] returned.
#[derive(Debug)]
pub(super) enum Pause {
    /// The core is shutting down.
    Shutdown,
    /// Nothing is runnable: the caller parks, then calls again.
    Idle,
    /// The last poll asked to hand the thread to tokio (only the tokio
    /// partition's pump does); the caller does, then resumes the turn
    /// with `run_turns(Some(turn))`.
    #[cfg_attr(not(feature = "tokio-compat"), allow(dead_code))]
    Yield(OpenTurn),
}

impl Reactor {
    /// The loop of a core that blocks in its own driver.
    pub(super) fn run_loop(&self) {
        let mut resume = None;
        loop {
            match self.run_turns(resume.take()) {
                Pause::Shutdown => return,
                Pause::Idle => self.park(),
                // Only a core that drives tokio has a pump to ask for this;
                // anywhere else the turn just goes on.
                Pause::Yield(turn) => resume = Some(turn),
            }
        }
    }

    /// Runs turns until shutdown, until nothing is runnable, or until a
    /// poll asks for the thread ([`Pause`]); `resume` continues a turn
    /// that stopped that way.
    ///
    /// Inlined into both loops: as a call, with 10,000 tenants (a turn per
    /// 20 µs poll) the work per CPU-second fell from 0.89 to 0.81 of the
    /// same tasks in one partition (medians of 5 alternated runs of
    /// `--bench tenants`' child against `5be8b65`), and Jain's index from
    /// 0.93 to 0.87; inlined, level with `5be8b65` again.
    #[inline(always)]
    pub(super) fn run_turns(&self, mut resume: Option<OpenTurn>) -> Pause {
        let cs = self.remote();
        loop {
            // A resumed turn first ends the poll that paused it.
            let mut mid_poll = resume.is_some();
            let mut turn = match resume.take() {
                Some(turn) => turn,
                None => {
                    self.between_turns();
                    if self.shutting_down.get() {
                        return Pause::Shutdown;
                    }
                    let start = self.tick();
                    let key = self.sched.borrow_mut().begin_turn(start);
                    let Some(key) = key else {
                        return Pause::Idle;
                    };
                    self.current.set(key.index());
                    self.prefetch_upcoming();
                    OpenTurn {
                        key,
                        start,
                        polls: 0,
                    }
                }
            };
            let mut now = turn.start;
            loop {
                if !mid_poll {
                    let task = self.sched.borrow_mut().next_in_turn(now);
                    let Some(task) = task else { break };
                    // The task future catches its own panics; this catches
                    // one from a destructor or a waker, which must not kill
                    // the core.
                    self.budget.set(BUDGET);
                    let _ = catch_unwind(AssertUnwindSafe(|| task.run()));
                    #[cfg(feature = "tokio-compat")]
                    if self.tokio.take_yield() {
                        return Pause::Yield(turn);
                    }
                }
                mid_poll = false;
                now = self.tick();
                self.sched.borrow_mut().poll_done(now);
                turn.polls += 1;
                if now >= self.timer_due.get() {
                    self.fire_timers(Instant::now());
                }
                if cs.latency_pending.load(Ordering::Relaxed) {
                    // A latency partition got foreign work: queue it now so
                    // the scheduler can preempt at this task boundary.
                    self.drain_pending();
                }
            }
            self.end_turn(turn, now);
        }
    }

    #[inline(always)]
    fn end_turn(&self, turn: OpenTurn, now: Nanos) {
        // Its busy time now, while its statistics are in cache: the
        // leaderboard's refresh then ranks without touching them.
        let busy = {
            let mut sched = self.sched.borrow_mut();
            sched.end_turn();
            sched.stats(turn.key).map(|s| s.busy())
        };
        self.current.set(NO_TURN);
        let ran = {
            let mut ran = self.ran.borrow_mut();
            if let Some(busy) = busy {
                note_turn(&mut ran, turn.key.index(), busy);
            }
            ran.len()
        };
        if ran >= RAN_REFRESH {
            // Many short turns: refresh before the list grows long.
            self.refresh_leaders();
        }
        self.remote()
            .stats
            .add_turn(now.saturating_sub(turn.start), turn.polls);
        self.polls_since_io
            .set(self.polls_since_io.get() + turn.polls);
    }

    fn between_turns(&self) {
        if !self.control.is_empty() {
            while let Ok(msg) = self.control.try_recv() {
                self.handle_contained(msg);
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
        #[cfg(feature = "tokio-compat")]
        self.tokio.check_period(now);
        if now >= self.timer_due.get() {
            self.fire_timers(Instant::now());
        }
        // Sockets get their readiness and ring completions between turns,
        // often enough that a busy core's IO waits at most one quota or a
        // few dozen polls. Ring entries queued by the turn go to the kernel
        // now if more work follows (a core about to park submits them as
        // it parks, in the same syscall).
        let driver = self.driver.borrow();
        let io_due = driver.has_io()
            && (self.polls_since_io.get() >= IO_EVERY_POLLS
                || now.saturating_sub(self.last_io.get())
                    >= self.runtime.config.sched.task_quota.as_nanos() as Nanos
                || (driver.unsubmitted() > 0 && self.sched.borrow().has_runnable()));
        drop(driver);
        if io_due {
            let ready = self.driver.borrow_mut().poll_now();
            self.io_harvested(now);
            wake_all(ready);
        }
        if !self.retiring.borrow().is_empty() {
            self.retire_idle();
        }
        if now.saturating_sub(self.load_at.get()) >= LOAD_PERIOD_NS {
            self.update_load(now);
        }
        self.remote()
            .stats
            .queued
            .store(self.sched.borrow().total_queued() as u64, Ordering::Relaxed);
    }

    /// Starts loading what the next turn's first poll will touch (its
    /// task and its partition's runtime state) while this turn runs; the
    /// scheduler does the same for its own state. With thousands of
    /// partitions, each turn is a different partition's, last touched a
    /// round ago, and these misses were much of the cost of a turn.
    fn prefetch_upcoming(&self) {
        let sched = self.sched.borrow();
        let Some((next, task)) = sched.upcoming() else {
            return;
        };
        // The task's header and the start of its future.
        prefetch(std::ptr::from_ref(task.metadata()).cast::<[u8; 128]>());
        if let Some(Some(p)) = self.attached.borrow().get(next.index()) {
            prefetch(Arc::as_ptr(p).cast::<[u8; 128]>());
        }
    }

    /// Does what other threads asked of the ring.
    pub(super) fn take_requests(&self) {
        let cs = self.remote();
        if !cs.has_requests() {
            return;
        }
        let requests = cs.take_requests();
        self.with_ring(|ring| {
            for request in requests {
                match request {
                    RingRequest::Cancel(user_data) => ring.cancel(user_data),
                    RingRequest::Call(target) => {
                        let _ = catch_unwind(AssertUnwindSafe(|| target.on_core(ring)));
                    }
                }
            }
        });
    }

    /// [`Reactor::handle`], with a panic contained: a bug in one message's
    /// handling must not stop the core and strand every task on it.
    pub(super) fn handle_contained(&self, msg: Control) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.handle(msg)));
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
    pub(super) fn take_injected(&self, p: &Arc<PartitionInner>) -> u64 {
        let Some(injector) = p.injected() else {
            return 0;
        };
        let mut moved = 0;
        loop {
            match injector.steal_batch(&self.batch) {
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
    pub(super) fn drain_pending(&self) {
        let cs = self.remote();
        cs.latency_pending.store(false, Ordering::Relaxed);
        let mut moved = 0u64;
        loop {
            match cs.pending.steal() {
                Steal::Success(p) => match p.route.take_announcement(self.index) {
                    Holder::Here => moved += self.take_injected(&p),
                    // It moved on after the announcement: pass it on.
                    Holder::Elsewhere(_) => p.notify_owner(),
                    // On its way here: the adoption drains its queue.
                    Holder::Arriving => {}
                },
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        if moved > 0 {
            cs.stats.add_remote_wakes(moved);
        }
    }

    pub(super) fn fire_timers(&self, now: Instant) {
        // Wake outside the borrow: a woken task's destructor could touch
        // the timers.
        let (fired, next) = {
            let mut timers = self.timers.borrow_mut();
            let fired = timers.expire(now);
            (fired, timers.next_deadline())
        };
        self.timer_due
            .set(next.map_or(Nanos::MAX, |d| self.to_core_time(d)));
        wake_all(fired);
    }

    fn park(&self) {
        let Some(deadline) = self.prepare_park() else {
            return;
        };
        let ready = self.driver.borrow_mut().park(deadline);
        self.finish_park(ready, deadline);
    }

    /// The first half of parking: `None` if the core must not block after
    /// all (work arrived, or a timer is due and was fired), else the
    /// deadline to block until. The caller then blocks and calls
    /// [`Reactor::finish_park`].
    pub(super) fn prepare_park(&self) -> Option<Option<Instant>> {
        let cs = self.remote();
        if !self.ran.borrow().is_empty() {
            // Idle from here on: publish the last turns' busy time now.
            self.refresh_leaders();
        }
        let flag = cs.park_flag();
        if !flag.prepare_park() {
            // Foreign work arrived since the last drain.
            return None;
        }
        // Local work (queued by a timer or a destructor since the turn
        // ended) needs no token; neither do cancellations asked for by
        // other threads.
        let has_work = self.sched.borrow().has_runnable()
            || !self.retiring.borrow().is_empty()
            || cs.has_requests();
        if has_work {
            flag.unpark_self();
            return None;
        }
        let deadline = self.timers.borrow_mut().next_deadline();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            flag.unpark_self();
            self.fire_timers(Instant::now());
            return None;
        }
        cs.stats.add_park();
        Some(deadline)
    }

    /// The second half of parking: back to running, then the IO that
    /// `ready` holds and the timers that fell due.
    pub(super) fn finish_park(&self, ready: Vec<Waker>, deadline: Option<Instant>) {
        self.remote().park_flag().unpark_self();
        let now = self.tick();
        self.io_harvested(now);
        wake_all(ready);
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
            if !p.tasks.lock().wakers.is_empty() || p.injected().is_some_and(|i| !i.is_empty()) {
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
        let stats = &self.remote().stats;
        let busy = stats.busy_ns();
        let elapsed = now.saturating_sub(self.load_at.get()).max(1);
        let frac = (busy.saturating_sub(self.load_busy.get()) as f64 / elapsed as f64).min(1.0);
        stats.set_load(0.7 * stats.load() + 0.3 * frac);
        let wanting = self.sched.borrow().runnable_partitions() as f64;
        stats.set_demand(0.7 * stats.demand() + 0.3 * wanting);
        self.load_at.set(now);
        self.load_busy.set(busy);
        self.refresh_leaders();
    }

    /// Refreshes this core's leaderboard: of the partitions on it before
    /// and those that had a turn since, the [`LEADERS`] with the most busy
    /// time, published on the core's [`Remote`](super::Remote) for
    /// `top_partitions`. Every 10 ms (and every [`RAN_REFRESH`] turns); it
    /// costs O(turns since + LEADERS), whatever the number of partitions,
    /// and a partition whose busy time grows has had a turn, so none is
    /// missed.
    fn refresh_leaders(&self) {
        let mut ran = std::mem::take(&mut *self.ran.borrow_mut());
        // One entry per partition, its latest (largest) busy time: a core
        // with few partitions notes the same ones again and again.
        ran.sort_unstable_by_key(|&(k, busy)| (k, Reverse(busy)));
        ran.dedup_by_key(|&mut (k, _)| k);
        let weak: Vec<Weak<PartitionInner>> = {
            let attached = self.attached.borrow();
            let leaders: Vec<Arc<PartitionInner>> = self
                .leaders
                .borrow()
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            // Rank by the busy times noted at the end of each turn: with
            // thousands of partitions, reading each one's state here (and
            // cloning its `Arc`, a write to its cache line) cost more than
            // the ranking itself. Only the winners are looked up.
            let mut board: Vec<(Duration, Candidate<'_>)> = leaders
                .iter()
                .map(|p| (p.stats.busy(), Candidate::Leader(p)))
                .chain(ran.iter().map(|&(k, busy)| (busy, Candidate::Ran(k))))
                .collect();
            // Leaders may also be among the turns just ended: keep twice
            // as many candidates as places, so that after removing those
            // duplicates the board is still full if it can be.
            let keep = 2 * LEADERS;
            if board.len() > keep {
                board.select_nth_unstable_by_key(keep - 1, |&(busy, _)| Reverse(busy));
                board.truncate(keep);
            }
            let mut found: Vec<(Duration, &Arc<PartitionInner>)> = board
                .iter()
                .filter_map(|&(busy, c)| {
                    let p = match c {
                        Candidate::Leader(p) => p,
                        // The slot may have been reused by a newer
                        // partition since the turn: busy time only grows,
                        // so one that has less than was noted is another.
                        Candidate::Ran(k) => attached
                            .get(k)
                            .and_then(Option::as_ref)
                            .filter(|p| p.stats.busy() >= busy)?,
                    };
                    (p.owner() == self.index).then_some((p.stats.busy(), p))
                })
                .collect();
            found.sort_unstable_by_key(|&(busy, p)| (p.id, Reverse(busy)));
            found.dedup_by_key(|&mut (_, p)| p.id);
            found.sort_unstable_by_key(|&(busy, p)| (Reverse(busy), p.id));
            found.truncate(LEADERS);
            found.iter().map(|&(_, p)| Arc::downgrade(p)).collect()
        };
        *self.remote().leaders.lock() = weak.clone();
        *self.leaders.borrow_mut() = weak;
        // Keep the scratch vector's capacity for the next period.
        ran.clear();
        *self.ran.borrow_mut() = ran;
    }
}

/// A partition that may enter the leaderboard: a current leader, or the
/// scheduler key of one whose turn ended since the last refresh.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Leader(&'a Arc<PartitionInner>),
    Ran(usize),
}

/// Notes a turn of the partition at scheduler key `key`, whose busy time
/// is now `busy`, for the next leaderboard refresh. Turns of the same
/// partition in a row (a core with one busy partition, every spawn or
/// wake of which is a turn) update one entry, since the refresh keeps only
/// the latest busy time of each: noted one by one, they filled the list
/// every [`RAN_REFRESH`] turns, and the refreshes cost `--bench sched`'s
/// `chained_spawn` (a turn per task) some 5 % (medians of 4 alternated
/// runs: 216 against 203 µs).
fn note_turn(ran: &mut Vec<(usize, Duration)>, key: usize, busy: Duration) {
    match ran.last_mut() {
        Some(last) if last.0 == key => last.1 = busy,
        _ => ran.push((key, busy)),
    }
}

/// Partitions in each core's leaderboard: `top_partitions(n)` is exact for
/// `n` up to this many.
const LEADERS: usize = 64;
/// Turns after which the leaderboard is refreshed even within the 10 ms
/// period, so that the refresh sorts a short list: O(log) per turn.
const RAN_REFRESH: usize = 4 * LEADERS;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::note_turn;

    /// Turns of one partition in a row take one entry, with the latest
    /// busy time; another partition's turn in between takes its own.
    #[test]
    fn turns_in_a_row_of_one_partition_are_noted_once() {
        let ms = Duration::from_millis;
        let mut ran = Vec::new();
        for i in 1..=1000 {
            note_turn(&mut ran, 3, ms(i));
        }
        assert_eq!(ran, [(3, ms(1000))]);
        note_turn(&mut ran, 5, ms(7));
        note_turn(&mut ran, 3, ms(1001));
        assert_eq!(ran, [(3, ms(1000)), (5, ms(7)), (3, ms(1001))]);
    }
}
