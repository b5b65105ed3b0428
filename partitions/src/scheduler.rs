//! The per-core scheduler: partitions, their run queues, turns and the
//! choice of the next partition. See the crate docs for the model.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::config::{clamp_shares, duration_to_nanos, Fairness, PartitionParams, SchedulerConfig};
use crate::prefetch::prefetch;
use crate::stats::PartitionStats;
use crate::{Nanos, DEFAULT_SHARES};

/// Virtual runtime is fixed point: one nanosecond of CPU time at `s` shares
/// adds `VR_ONE / s` units. `VR_ONE` is a multiple of every power of ten up
/// to `MAX_SHARES`, so at 10 000 shares a 1 ns turn still adds 100 units
/// instead of rounding to zero, and the rounding error at any valid shares
/// value is below one unit (10⁻⁴ ns at default shares) per turn.
const VR_ONE: u128 = 1_000_000;
/// The vruntime `elapsed` ns of CPU time add at `shares`: exact, and in
/// 64-bit arithmetic for any turn shorter than about 5 hours (a 128-bit
/// division costs several times more, on every turn).
#[inline]
fn charge(elapsed: Nanos, shares: u32) -> u128 {
    const ONE: u64 = VR_ONE as u64;
    match elapsed.checked_mul(ONE) {
        Some(units) => u128::from(units / u64::from(shares)),
        None => u128::from(elapsed) * VR_ONE / u128::from(shares),
    }
}

const NANOS_PER_SECOND: Nanos = 1_000_000_000;

/// The vruntime a partition at `shares` is forgiven for having slept
/// `slept` ns, at `per_second` ns of CPU time per second asleep (see
/// [`SchedulerConfig::sleep_credit`]).
#[inline]
fn sleep_credit(slept: Nanos, per_second: Nanos, shares: u32) -> u128 {
    // 64-bit for any sleep under about 18 s at the default credit: this
    // runs on every wake from idle, and a 128-bit division costs more.
    let ns = match slept.checked_mul(per_second) {
        Some(x) => x / NANOS_PER_SECOND,
        None => {
            let ns = u128::from(slept) * u128::from(per_second) / u128::from(NANOS_PER_SECOND);
            u64::try_from(ns).unwrap_or(u64::MAX)
        }
    };
    charge(ns, shares)
}

/// Units per nanosecond of CPU time at [`DEFAULT_SHARES`].
const VR_PER_NS_AT_DEFAULT: u128 = VR_ONE / DEFAULT_SHARES as u128;

/// Identifies a partition within one [`Scheduler`]: an index into its slab.
///
/// Keys of removed partitions are reused by later insertions, so a key is
/// only meaningful while its partition is in the scheduler; the scheduler
/// treats unknown keys as documented per method (mostly: no effect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey(usize);

impl PartitionKey {
    /// The slab index, e.g. to pack the key into task metadata.
    pub fn index(self) -> usize {
        self.0
    }

    /// The key with the given slab index (the inverse of
    /// [`index`](Self::index)). Whether it names a partition is up to the
    /// scheduler it is used with.
    pub fn from_index(index: usize) -> Self {
        PartitionKey(index)
    }
}

/// A task waiting in a partition's queue, stamped with when it got there so
/// the scheduling delay can be measured when it is handed out.
struct Queued<T> {
    task: T,
    queued_at: Nanos,
}

/// A partition's run queue: its first task inline, the others behind it.
///
/// Most partitions of a service with many tenants have one task waiting,
/// if any: keeping it in the partition's own slot spares a separate
/// allocation and, on every turn, the cache miss of reaching it.
struct RunQueue<T> {
    first: Option<Queued<T>>,
    rest: VecDeque<Queued<T>>,
}

impl<T> RunQueue<T> {
    fn new() -> Self {
        RunQueue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    fn from_deque(mut tasks: VecDeque<Queued<T>>) -> Self {
        RunQueue {
            first: tasks.pop_front(),
            rest: tasks,
        }
    }

    fn into_deque(self) -> VecDeque<Queued<T>> {
        let mut tasks = self.rest;
        if let Some(first) = self.first {
            tasks.push_front(first);
        }
        tasks
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn front(&self) -> Option<&Queued<T>> {
        self.first.as_ref()
    }

    fn push_back(&mut self, q: Queued<T>) {
        if self.first.is_none() {
            self.first = Some(q);
        } else {
            self.rest.push_back(q);
        }
    }

    fn pop_front(&mut self) -> Option<Queued<T>> {
        let first = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(first)
    }

    fn take_all(&mut self) -> impl Iterator<Item = Queued<T>> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Empty queue and not the current turn's: in no run structure.
    Idle,
    /// Non-empty queue, waiting for a turn: in `runnable` (and the ring in
    /// round-robin mode).
    Runnable,
    /// Its turn is open: in no run structure until the turn ends.
    Current,
}

struct Partition<T> {
    params: PartitionParams,
    /// Cached `params.latency` in nanoseconds.
    latency_ns: Option<Nanos>,
    stats: Arc<PartitionStats>,
    queue: RunQueue<T>,
    vruntime: u128,
    state: State,
    /// When it entered its state: while runnable, the start of its wait
    /// for a turn (with the latency bound, the deadline that orders latency
    /// partitions); while idle, the start of its sleep (its sleep credit).
    since: Nanos,
    /// How it became runnable ([`WOKEN`] or [`REQUEUED`]): part of its key
    /// in `runnable`.
    rank: u8,
}

/// Rank of a partition that became runnable from idle (a wake, a new
/// partition's first task, an adoption).
const WOKEN: u8 = 0;
/// Rank of a partition that still had tasks when its turn ended.
const REQUEUED: u8 = 1;

/// The open turn.
struct Turn {
    key: usize,
    /// Tasks the turn may still hand out. Fixed when the turn begins, so
    /// tasks pushed during the turn wait for a later one, unless the quota
    /// was cut for many waiting partitions (see `begin_turn`): then it is
    /// unbounded and the quota alone ends the turn.
    remaining: usize,
    /// Whether any task was handed out; the quota only ends a turn that
    /// made progress, so a zero quota cannot stall the core.
    handed_out: bool,
    /// Poll time accumulated in this turn.
    elapsed: Nanos,
    /// The poll time after which this turn ends (Shares mode): `task_quota`,
    /// shortened when many partitions wait (see `SchedulerConfig::round`).
    quota: Nanos,
    /// Start of the poll in progress, if a task was handed out and its
    /// poll has not been reported done.
    poll_start: Option<Nanos>,
}

/// What a partition carries when it is taken out of one scheduler to be put
/// into another (migration): its parameters, its statistics handle, its
/// queued tasks in order, and its lag — how far its virtual runtime was
/// ahead of the source scheduler's minimum — so it keeps its debt (but no
/// credit) on the new core.
pub struct DetachedPartition<T> {
    /// The partition's parameters, with its shares as last set.
    pub params: PartitionParams,
    /// The partition's statistics, shared with the runtime. Its `queued`
    /// gauge still counts the tasks in transit.
    pub stats: Arc<PartitionStats>,
    tasks: VecDeque<Queued<T>>,
    lag: u128,
}

impl<T> DetachedPartition<T> {
    /// Number of tasks it carries.
    pub fn queued(&self) -> usize {
        self.tasks.len()
    }

    /// Its lag behind the source scheduler's minimum virtual runtime, in
    /// nanoseconds at default shares (never negative: credit is not kept).
    pub fn lag(&self) -> f64 {
        self.lag as f64 / VR_PER_NS_AT_DEFAULT as f64
    }

    /// Gives up the partition and returns its queued tasks in queue order
    /// (for example to drop them at shutdown).
    pub fn into_tasks(self) -> Vec<T> {
        self.tasks.into_iter().map(|q| q.task).collect()
    }
}

impl<T> fmt::Debug for DetachedPartition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetachedPartition")
            .field("params", &self.params)
            .field("queued", &self.tasks.len())
            .field("lag", &self.lag())
            .finish_non_exhaustive()
    }
}

/// The fair scheduler of one core; see the crate docs for the model.
///
/// Deterministic: its decisions depend only on the calls made and the
/// times passed in. Every task given to [`push`](Self::push) (or carried in
/// by [`insert_detached`](Self::insert_detached)) leaves exactly once:
/// through [`next_in_turn`](Self::next_in_turn),
/// [`remove_partition`](Self::remove_partition) or
/// [`drain_all`](Self::drain_all). Tasks of one partition leave in the order
/// they were pushed.
pub struct Scheduler<T> {
    config: SchedulerConfig,
    quota_ns: Nanos,
    stall_ns: Nanos,
    /// `2 × task_quota` in vruntime units at default shares.
    eligibility_cap: u128,
    /// `SchedulerConfig::round` and the shortest turn quota.
    round_ns: Nanos,
    /// `SchedulerConfig::sleep_credit`: debt forgiven per second asleep.
    sleep_credit_ns: Nanos,
    min_slice_ns: Nanos,
    /// Partitions added while a poll was in progress: they join level with
    /// the partition that ran that poll once it is charged (`close_poll`).
    joining: Vec<usize>,
    slots: Vec<Option<Partition<T>>>,
    free: Vec<usize>,
    partitions: usize,
    /// Runnable partitions ordered by (vruntime, rank, key): at equal
    /// vruntime one that woke ([`WOKEN`]) goes before one that just ended
    /// its turn ([`REQUEUED`]), so a woken partition placed at the floor
    /// runs next. A runnable partition's vruntime changes only while it is
    /// current (or when it joins level with its creator, which re-keys
    /// it), so the key stays valid while it is in the set.
    runnable: BTreeSet<(u128, u8, usize)>,
    /// Round-robin mode only: runnable partitions in turn order.
    ring: VecDeque<usize>,
    /// Partitions with a latency bound; usually few or none, so scanning
    /// them at each turn is cheaper than keeping another ordered index.
    latency_keys: Vec<usize>,
    turn: Option<Turn>,
    preempt: bool,
    /// Never decreases; the floor for partitions waking from idle when
    /// nothing else is runnable, and the reference for migration lag.
    min_vruntime: u128,
    total_queued: usize,
    /// Latest time passed in, used where a call carries no time.
    last_now: Nanos,
}

impl<T> Scheduler<T> {
    /// An empty scheduler with the given configuration.
    pub fn new(config: SchedulerConfig) -> Self {
        let quota_ns = duration_to_nanos(config.task_quota);
        Scheduler {
            quota_ns,
            stall_ns: duration_to_nanos(config.stall_threshold),
            eligibility_cap: 2 * quota_ns as u128 * VR_PER_NS_AT_DEFAULT,
            round_ns: duration_to_nanos(config.round),
            sleep_credit_ns: duration_to_nanos(config.sleep_credit).min(NANOS_PER_SECOND),
            min_slice_ns: duration_to_nanos(config.min_slice).min(quota_ns),
            joining: Vec::new(),
            config,
            slots: Vec::new(),
            free: Vec::new(),
            partitions: 0,
            runnable: BTreeSet::new(),
            ring: VecDeque::new(),
            latency_keys: Vec::new(),
            turn: None,
            preempt: false,
            min_vruntime: 0,
            total_queued: 0,
            last_now: 0,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Adds a new idle partition and returns its key. Its shares are
    /// clamped into the valid range. `stats` is shared with the runtime,
    /// which reads it from other threads; the scheduler resets its `queued`
    /// gauge to 0.
    ///
    /// It joins at the fair point, as an equal, neither with credit nor
    /// with debt: its virtual runtime starts at the scheduler's current
    /// minimum (its first push then applies the wake-from-idle floor). A
    /// partition added *while a poll is in progress* (created by the task
    /// being polled) joins level with the partition of that poll, once that
    /// poll is charged: it cannot claim the CPU time its creator spent
    /// before it existed, so a task that creates thousands of partitions in
    /// one poll does not then wait for every one of them to "catch up"
    /// with it. The other side of that coin: a partition made by a task
    /// that has used more than its share starts with that debt, so among
    /// thousands of busy partitions its first task waits until they have
    /// caught up.
    pub fn add_partition(
        &mut self,
        params: PartitionParams,
        stats: Arc<PartitionStats>,
    ) -> PartitionKey {
        let polling = self.turn.as_ref().is_some_and(|t| t.poll_start.is_some());
        let start = match polling {
            true => self.current_vruntime().max(self.min_vruntime),
            false => self.min_vruntime,
        };
        let key = self.insert_slot(params, stats, RunQueue::new(), start);
        if polling {
            self.joining.push(key);
        }
        PartitionKey(key)
    }

    /// Removes a partition and returns what it carries, or `None` for an
    /// unknown key. If its turn is in progress, that turn ends first and is
    /// charged (a poll still open is closed at the latest time the scheduler
    /// has seen, so report it with [`poll_done`](Self::poll_done) first to
    /// charge it fully). Its key may be reused by a later insertion.
    pub fn remove_partition(&mut self, key: PartitionKey) -> Option<DetachedPartition<T>> {
        if !self.contains(key) {
            return None;
        }
        if self.current() == Some(key) {
            self.end_turn();
        }
        let p = self.slots[key.0].take()?;
        self.free.push(key.0);
        self.partitions -= 1;
        self.joining.retain(|&k| k != key.0);
        if p.state == State::Runnable {
            self.runnable.remove(&(p.vruntime, p.rank, key.0));
            self.remove_from_ring(key.0);
        }
        if p.latency_ns.is_some() {
            self.latency_keys.retain(|&k| k != key.0);
        }
        self.total_queued -= p.queue.len();
        Some(DetachedPartition {
            params: p.params,
            stats: p.stats,
            tasks: p.queue.into_deque(),
            lag: p.vruntime.saturating_sub(self.min_vruntime),
        })
    }

    /// Inserts a migrated partition and returns its new key. Its virtual
    /// runtime becomes this scheduler's minimum plus its lag; its tasks stay
    /// queued, in order, stamped `queued_at = now`. If it has tasks it is
    /// runnable at once, and a latency partition requests preemption as
    /// [`push`](Self::push) does. Migrations are not counted here (see
    /// [`PartitionStats::add_migration`]).
    pub fn insert_detached(&mut self, detached: DetachedPartition<T>, now: Nanos) -> PartitionKey {
        self.observe(now);
        let DetachedPartition {
            params,
            stats,
            tasks,
            lag,
        } = detached;
        let mut tasks = tasks;
        // In place: a long queue must not be copied before its first poll.
        for q in tasks.iter_mut() {
            q.queued_at = now;
        }
        let has_tasks = !tasks.is_empty();
        let vruntime = self.min_vruntime.saturating_add(lag);
        let key = self.insert_slot(params, stats, RunQueue::from_deque(tasks), vruntime);
        if has_tasks {
            self.make_runnable(key, now, WOKEN);
            self.maybe_request_preempt(key);
        }
        PartitionKey(key)
    }

    /// Whether `key` names a partition in this scheduler.
    pub fn contains(&self, key: PartitionKey) -> bool {
        matches!(self.slots.get(key.0), Some(Some(_)))
    }

    /// Sets a partition's shares (clamped into the valid range); takes
    /// effect from the next charge, including the open turn's. Unknown
    /// keys are ignored.
    pub fn set_shares(&mut self, key: PartitionKey, shares: u32) {
        if let Some(p) = self.slot_mut(key.0) {
            p.params.shares = clamp_shares(shares);
        }
    }

    /// A partition's shares, or `None` for an unknown key.
    pub fn shares(&self, key: PartitionKey) -> Option<u32> {
        self.slot(key.0).map(|p| p.params.shares)
    }

    /// A partition's parameters, or `None` for an unknown key.
    pub fn params(&self, key: PartitionKey) -> Option<&PartitionParams> {
        self.slot(key.0).map(|p| &p.params)
    }

    /// A partition's statistics handle, or `None` for an unknown key.
    pub fn stats(&self, key: PartitionKey) -> Option<&Arc<PartitionStats>> {
        self.slot(key.0).map(|p| &p.stats)
    }

    /// Makes `task` runnable in `key`: appended to the back of its queue,
    /// stamped `queued_at = now`.
    ///
    /// If the partition was idle (empty queue, not the current turn's) it
    /// becomes runnable with vruntime `max(own − sleep credit, floor)`,
    /// where the floor is the lowest vruntime among runnable partitions, or
    /// the scheduler's monotonic minimum if none is runnable (the floor is
    /// never below that minimum): a partition cannot bank credit by
    /// sleeping, and is forgiven some debt for the time it slept (see
    /// [`SchedulerConfig::sleep_credit`]). If the partition has a latency bound, is not the current
    /// turn's, and is eligible (see the crate docs), a preemption is
    /// requested, so the open turn ends at the next task boundary.
    ///
    /// # Panics
    ///
    /// On an unknown key, which is a bug in the caller.
    pub fn push(&mut self, key: PartitionKey, task: T, now: Nanos) {
        self.observe(now);
        let Some(p) = self.slot_mut(key.0) else {
            panic!("fairloop-partitions: push into unknown partition {}", key.0)
        };
        p.queue.push_back(Queued {
            task,
            queued_at: now,
        });
        p.stats.set_queued(p.queue.len());
        let (state, has_latency) = (p.state, p.latency_ns.is_some());
        self.total_queued += 1;
        if state == State::Idle {
            let floor = match self.runnable.first() {
                Some(&(v, _, _)) => v.max(self.min_vruntime),
                None => self.min_vruntime,
            };
            let per_second = self.sleep_credit_ns;
            let p = self.slot_mut(key.0).expect("checked above");
            let credit = sleep_credit(now.saturating_sub(p.since), per_second, p.params.shares);
            p.vruntime = p.vruntime.saturating_sub(credit).max(floor);
            self.make_runnable(key.0, now, WOKEN);
        }
        if has_latency && state != State::Current {
            self.maybe_request_preempt(key.0);
        }
    }

    /// Starts the next turn and returns its partition, or `None` when
    /// nothing is runnable. A turn still open is ended first (as by
    /// [`end_turn`](Self::end_turn)), and the preemption request is cleared.
    ///
    /// The partition chosen is
    /// 1. the eligible runnable latency partition with the earliest deadline
    ///    (`became_runnable + latency`, ties: lowest key); else
    /// 2. in [`Fairness::Shares`] mode, the runnable partition with the
    ///    lowest vruntime (ties: lowest key); in [`Fairness::RoundRobin`]
    ///    mode, the partition at the front of the ring.
    ///
    /// The turn may hand out at most the number of tasks queued in the
    /// partition now (Shares mode) or exactly one (RoundRobin mode). When
    /// so many partitions are runnable that the turn's quota is cut below
    /// `task_quota` (see [`SchedulerConfig::round`]), a Shares turn also
    /// hands out tasks queued during it, until the quota is used.
    pub fn begin_turn(&mut self, now: Nanos) -> Option<PartitionKey> {
        self.observe(now);
        self.end_turn();
        self.preempt = false;
        let key = self.pick()?;
        let p = self.slots[key].as_mut().expect("runnable partitions exist");
        debug_assert_eq!(p.state, State::Runnable);
        self.runnable.remove(&(p.vruntime, p.rank, key));
        p.state = State::Current;
        // With many partitions waiting, shorter turns keep a round of all
        // of them within `round`. `runnable` still counts this one.
        let waiting = self.runnable.len() as u64 + 1;
        let quota = (self.round_ns / waiting).clamp(self.min_slice_ns, self.quota_ns);
        let remaining = match self.config.fairness {
            // So many wait that the quota was cut: the turn also runs the
            // tasks queued during it (a yield, a local wake) until its
            // quota is used. Otherwise a partition whose one task yields
            // would get a turn per poll, and each turn begins with cold
            // misses on a partition last run a round ago: at 10,000
            // tenants polling 20 µs each, that was 8-10 % of the core.
            Fairness::Shares if quota < self.quota_ns => usize::MAX,
            Fairness::Shares => p.queue.len(),
            Fairness::RoundRobin => 1,
        };
        self.remove_from_ring(key);
        self.prefetch_upcoming();
        self.turn = Some(Turn {
            key,
            remaining,
            handed_out: false,
            elapsed: 0,
            quota,
            poll_start: None,
        });
        Some(PartitionKey(key))
    }

    /// The next task of the open turn, or `None` when the turn is over: no
    /// turn is open, its task allowance is used up, its partition's queue
    /// is empty, a preemption was requested, or (Shares mode only) its
    /// accumulated poll time reached `task_quota` (checked only after the
    /// turn handed out at least one task). Once it returned `None` it keeps
    /// doing so until the next turn begins.
    ///
    /// Records the task's scheduling delay (`now - queued_at`) in the
    /// partition's stats and starts a poll at `now`. If the previous poll
    /// was not reported with [`poll_done`](Self::poll_done), it is closed
    /// at `now` first, so a caller may read the clock once per poll.
    ///
    /// Poll times telescope: when the time given to `poll_done` (or to
    /// this method, closing the previous poll) is also the next poll's
    /// start, the turn accumulates exactly the span of the times passed in.
    /// So a caller may pass a cached time and read the real clock only
    /// every few polls: the turn and the partition are still charged in
    /// full, only the split between polls is coarser.
    pub fn next_in_turn(&mut self, now: Nanos) -> Option<T> {
        self.observe(now);
        self.close_poll(now);
        let turn = self.turn.as_mut()?;
        if self.preempt
            || turn.remaining == 0
            || (self.config.fairness == Fairness::Shares
                && turn.handed_out
                && turn.elapsed >= turn.quota)
        {
            // Later calls must keep saying no, even if the quota or the
            // preemption would no longer hold by then.
            turn.remaining = 0;
            return None;
        }
        let p = self.slots[turn.key]
            .as_mut()
            .expect("the current partition exists");
        let Some(Queued { task, queued_at }) = p.queue.pop_front() else {
            turn.remaining = 0;
            return None;
        };
        turn.remaining -= 1;
        turn.handed_out = true;
        turn.poll_start = Some(now);
        self.total_queued -= 1;
        p.stats.set_queued(p.queue.len());
        p.stats.record_delay(now.saturating_sub(queued_at));
        Some(task)
    }

    /// Reports that the poll of the task last handed out ended at `now`.
    /// Its poll time (`now` minus its start) is added to the turn's
    /// accumulated time and to the partition's stats (a poll, its busy
    /// time, and a long poll if it exceeded `stall_threshold`). Does nothing
    /// when no poll is in progress.
    pub fn poll_done(&mut self, now: Nanos) {
        self.observe(now);
        self.close_poll(now);
    }

    /// Ends the open turn (no-op if none). The partition is charged
    /// `turn_time × 100 / shares` of vruntime, the monotonic minimum
    /// vruntime advances, and the partition goes to the back of the
    /// runnables if its queue is non-empty, or becomes idle otherwise. A
    /// poll still open is closed at the latest time the scheduler has seen.
    pub fn end_turn(&mut self) {
        self.close_poll(self.last_now);
        let Some(turn) = self.turn.take() else {
            return;
        };
        let p = self.slots[turn.key]
            .as_mut()
            .expect("the current partition exists");
        p.vruntime += charge(turn.elapsed, p.params.shares);
        let vruntime = p.vruntime;
        match p.queue.front() {
            Some(front) => {
                // Its deadline counts from when its oldest task has waited.
                let since = front.queued_at;
                self.make_runnable(turn.key, since, REQUEUED);
            }
            None => {
                p.state = State::Idle;
                p.since = self.last_now;
            }
        }
        let floor = self.runnable.first().map_or(vruntime, |&(v, _, _)| v);
        self.min_vruntime = self.min_vruntime.max(floor);
    }

    /// The partition whose turn is open.
    pub fn current(&self) -> Option<PartitionKey> {
        self.turn.as_ref().map(|t| PartitionKey(t.key))
    }

    /// Whether a latency partition asked to run since the open turn began;
    /// if so, [`next_in_turn`](Self::next_in_turn) returns `None`. A cheap
    /// flag meant to be checked between polls.
    pub fn preempt_requested(&self) -> bool {
        self.preempt
    }

    /// Whether any partition, the current turn's included, has a queued
    /// task.
    pub fn has_runnable(&self) -> bool {
        self.total_queued > 0
    }

    /// Partitions that want the CPU: the runnable ones plus the one whose
    /// turn is open. Sampled over time, it is the core's *demand* (as a
    /// run-queue length is for an OS scheduler): two always-busy partitions
    /// make 2 even though the core's busy time cannot exceed 100%.
    pub fn runnable_partitions(&self) -> usize {
        self.runnable.len() + usize::from(self.turn.is_some())
    }

    /// Tasks waiting in a partition's queue (0 for an unknown key).
    pub fn queued(&self, key: PartitionKey) -> usize {
        self.slot(key.0).map_or(0, |p| p.queue.len())
    }

    /// Tasks waiting in all queues.
    pub fn total_queued(&self) -> usize {
        self.total_queued
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// A partition's virtual runtime in nanoseconds of CPU time at default
    /// shares (for tests and metrics), or `None` for an unknown key.
    pub fn vruntime(&self, key: PartitionKey) -> Option<f64> {
        self.slot(key.0)
            .map(|p| p.vruntime as f64 / VR_PER_NS_AT_DEFAULT as f64)
    }

    /// The scheduler's monotonic minimum virtual runtime, in the units of
    /// [`vruntime`](Self::vruntime).
    pub fn min_vruntime(&self) -> f64 {
        self.min_vruntime as f64 / VR_PER_NS_AT_DEFAULT as f64
    }

    /// Removes and returns every queued task of every partition (for
    /// shutdown), ending the open turn first. Partitions stay, idle.
    pub fn drain_all(&mut self) -> Vec<T> {
        self.end_turn();
        let mut out = Vec::with_capacity(self.total_queued);
        for p in self.slots.iter_mut().flatten() {
            out.extend(p.queue.take_all().map(|q| q.task));
            p.stats.set_queued(0);
            if p.state != State::Idle {
                p.state = State::Idle;
                p.since = self.last_now;
            }
        }
        self.runnable.clear();
        self.ring.clear();
        self.total_queued = 0;
        out
    }

    fn observe(&mut self, now: Nanos) {
        self.last_now = self.last_now.max(now);
    }

    fn slot(&self, index: usize) -> Option<&Partition<T>> {
        self.slots.get(index).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Partition<T>> {
        self.slots.get_mut(index).and_then(Option::as_mut)
    }

    fn insert_slot(
        &mut self,
        mut params: PartitionParams,
        stats: Arc<PartitionStats>,
        queue: RunQueue<T>,
        vruntime: u128,
    ) -> usize {
        params.shares = clamp_shares(params.shares);
        let latency_ns = params.latency.map(duration_to_nanos);
        stats.set_queued(queue.len());
        self.total_queued += queue.len();
        let partition = Partition {
            params,
            latency_ns,
            stats,
            queue,
            vruntime,
            state: State::Idle,
            since: self.last_now,
            rank: REQUEUED,
        };
        let key = match self.free.pop() {
            Some(k) => {
                self.slots[k] = Some(partition);
                k
            }
            None => {
                self.slots.push(Some(partition));
                self.slots.len() - 1
            }
        };
        if latency_ns.is_some() {
            self.latency_keys.push(key);
        }
        self.partitions += 1;
        key
    }

    /// Puts a partition with a non-empty queue among the runnables.
    fn make_runnable(&mut self, key: usize, since: Nanos, rank: u8) {
        let p = self.slots[key].as_mut().expect("partition exists");
        p.state = State::Runnable;
        p.since = since;
        p.rank = rank;
        self.runnable.insert((p.vruntime, rank, key));
        if self.config.fairness == Fairness::RoundRobin {
            self.ring.push_back(key);
        }
    }

    fn remove_from_ring(&mut self, key: usize) {
        if self.ring.front() == Some(&key) {
            self.ring.pop_front();
        } else if let Some(pos) = self.ring.iter().position(|&k| k == key) {
            self.ring.remove(pos);
        }
    }

    /// A latency partition may jump the queue only while it has not run far
    /// ahead of its share: its vruntime is at most `2 × task_quota` (at
    /// default shares) above the lowest runnable vruntime. Without this cap
    /// a flooding latency partition would starve everyone else.
    fn eligible(&self, vruntime: u128, min: u128) -> bool {
        vruntime <= min.saturating_add(self.eligibility_cap)
    }

    /// Requests preemption of the open turn if `key` (a runnable latency
    /// partition that is not current) would be chosen by eligibility.
    fn maybe_request_preempt(&mut self, key: usize) {
        let Some(p) = self.slot(key) else { return };
        if p.latency_ns.is_none() || p.state != State::Runnable {
            return;
        }
        // The open turn's partition is not in `runnable`, but it will be
        // when the turn ends, so it takes part in the minimum.
        let current = self
            .turn
            .as_ref()
            .and_then(|t| self.slot(t.key))
            .map(|c| c.vruntime);
        let first = self.runnable.first().map(|&(v, _, _)| v);
        let min = match (first, current) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(p.vruntime),
        };
        if self.eligible(p.vruntime, min) {
            self.preempt = true;
        }
    }

    /// The partition the next turn belongs to.
    fn pick(&self) -> Option<usize> {
        let &(min, _, lowest) = self.runnable.first()?;
        let mut best: Option<(Nanos, usize)> = None;
        for &k in &self.latency_keys {
            let p = self.slots[k].as_ref().expect("latency keys are live");
            if p.state != State::Runnable || !self.eligible(p.vruntime, min) {
                continue;
            }
            let deadline = p.since.saturating_add(p.latency_ns.unwrap_or(0));
            match best {
                Some(b) if b <= (deadline, k) => {}
                _ => best = Some((deadline, k)),
            }
        }
        if let Some((_, k)) = best {
            return Some(k);
        }
        match self.config.fairness {
            Fairness::Shares => Some(lowest),
            Fairness::RoundRobin => self.ring.front().copied(),
        }
    }

    /// The partition most likely to have the next turn, and its first
    /// task: in [`Fairness::Shares`] mode the runnable partition with the
    /// lowest vruntime (a latency partition may still go first); `None` in
    /// round-robin mode or when nothing else is runnable. A hint for
    /// prefetching, as the scheduler does for its own state at each
    /// [`begin_turn`](Self::begin_turn).
    pub fn upcoming(&self) -> Option<(PartitionKey, &T)> {
        if self.config.fairness != Fairness::Shares {
            return None;
        }
        let &(_, _, key) = self.runnable.first()?;
        let task = &self.slot(key)?.queue.front()?.task;
        Some((PartitionKey(key), task))
    }

    /// Starts loading the state of the partitions likely to run in the next
    /// two turns (in Shares mode the next runnables in order): the
    /// statistics of the next one, whose slot the previous call already
    /// asked for, and the slot of the one after it. See [`prefetch`].
    fn prefetch_upcoming(&self) {
        if self.config.fairness != Fairness::Shares {
            return;
        }
        let mut next = self.runnable.iter().map(|&(_, _, k)| k);
        if let Some(Some(p)) = next.next().and_then(|k| self.slots.get(k)) {
            prefetch(Arc::as_ptr(&p.stats));
        }
        if let Some(slot) = next.next().and_then(|k| self.slots.get(k)) {
            prefetch(slot as *const Option<Partition<T>>);
        }
    }

    /// Closes the poll in progress, if any, at `end`.
    fn close_poll(&mut self, end: Nanos) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let Some(start) = turn.poll_start.take() else {
            return;
        };
        let t = end.saturating_sub(start);
        turn.elapsed = turn.elapsed.saturating_add(t);
        if let Some(Some(p)) = self.slots.get(turn.key) {
            p.stats.record_poll(t, t > self.stall_ns);
        }
        if !self.joining.is_empty() {
            self.settle_joining();
        }
    }

    /// The current partition's virtual runtime including the open turn's
    /// poll time so far (as `end_turn` will charge it); the minimum when no
    /// turn is open.
    fn current_vruntime(&self) -> u128 {
        let Some(turn) = &self.turn else {
            return self.min_vruntime;
        };
        let p = self.slots[turn.key]
            .as_ref()
            .expect("the current partition exists");
        p.vruntime + charge(turn.elapsed, p.params.shares)
    }

    /// Raises the partitions added during the poll just closed to the
    /// level of the partition that ran it (see `add_partition`).
    fn settle_joining(&mut self) {
        let level = self.current_vruntime().max(self.min_vruntime);
        for key in std::mem::take(&mut self.joining) {
            let Some(p) = self.slots[key].as_mut() else {
                continue;
            };
            if p.vruntime >= level {
                continue;
            }
            let old = p.vruntime;
            p.vruntime = level;
            if p.state == State::Runnable {
                self.runnable.remove(&(old, p.rank, key));
                self.runnable.insert((level, p.rank, key));
            }
        }
    }
}

impl<T> fmt::Debug for Scheduler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .field("partitions", &self.partitions)
            .field("total_queued", &self.total_queued)
            .field("current", &self.current())
            .field("preempt", &self.preempt)
            .field("min_vruntime", &self.min_vruntime())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-bit path and the 128-bit one give the same credit on both
    /// sides of where the first overflows (about 18 s of sleep at 1/64).
    #[test]
    fn sleep_credit_is_exact_for_short_and_long_sleeps() {
        let per_second = NANOS_PER_SECOND / 64;
        let exact = |slept: Nanos, shares: u32| {
            let ns = u128::from(slept) * u128::from(per_second) / u128::from(NANOS_PER_SECOND);
            u128::from(u64::try_from(ns).unwrap()) * VR_ONE / u128::from(shares)
        };
        let edge = u64::MAX / per_second;
        for slept in [
            0,
            1,
            999,
            NANOS_PER_SECOND,
            edge - 1,
            edge,
            edge + 1,
            u64::MAX / 2,
        ] {
            for shares in [1, 100, 10_000] {
                assert_eq!(
                    sleep_credit(slept, per_second, shares),
                    exact(slept, shares),
                    "slept {slept} ns at {shares} shares"
                );
            }
        }
        assert_eq!(
            sleep_credit(u64::MAX, NANOS_PER_SECOND, 100),
            charge(u64::MAX, 100)
        );
    }
}
