//! Property tests: random call sequences against a simple model. Every
//! pushed task leaves exactly once, in per-partition FIFO order, only within
//! its allowance, and the accounting adds up.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fairloop_partitions::{
    clamp_shares, DetachedPartition, Fairness, PartitionKey, PartitionParams, PartitionStats,
    Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushMany(usize, u8),
    Begin,
    Next,
    PollDone(u64),
    Advance(u64),
    End,
    Add(u32, bool),
    Remove(usize),
    Reinsert(usize),
    SetShares(usize, u32),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    let shares = prop_oneof![8 => 1u32..=10_000, 1 => Just(0u32), 1 => Just(50_000u32)];
    prop_oneof![
        24 => any::<usize>().prop_map(Op::Push),
        8 => (any::<usize>(), 1u8..20).prop_map(|(p, n)| Op::PushMany(p, n)),
        16 => Just(Op::Begin),
        32 => Just(Op::Next),
        24 => (0u64..1_500_000).prop_map(Op::PollDone),
        4 => (0u64..3_000_000).prop_map(Op::Advance),
        4 => Just(Op::End),
        4 => (shares.clone(), prop::bool::weighted(0.25)).prop_map(|(s, l)| Op::Add(s, l)),
        4 => any::<usize>().prop_map(Op::Remove),
        4 => any::<usize>().prop_map(Op::Reinsert),
        4 => (any::<usize>(), shares).prop_map(|(p, s)| Op::SetShares(p, s)),
        1 => Just(Op::Drain),
    ]
}

struct TurnModel {
    key: PartitionKey,
    allowance: usize,
    handed: usize,
    elapsed: u64,
    finished: bool,
    pushed_during: HashSet<u64>,
}

struct Live {
    key: PartitionKey,
    queue: VecDeque<u64>,
    latency: bool,
    /// Became runnable by waking (from idle, or adopted with tasks) rather
    /// than by ending a turn with tasks left: at equal vruntime it goes
    /// first.
    woken: bool,
    /// When it last became idle (or was added): the start of the sleep
    /// its sleep credit counts from.
    idle_since: u64,
}

struct Model {
    s: Scheduler<u64>,
    fairness: Fairness,
    quota: u64,
    now: u64,
    next_id: u64,
    live: Vec<Live>,
    detached: Vec<(DetachedPartition<u64>, VecDeque<u64>, bool)>,
    all_stats: Vec<Arc<PartitionStats>>,
    seen: HashSet<u64>,
    turn: Option<TurnModel>,
    /// Round-robin order of runnable partitions.
    ring: VecDeque<PartitionKey>,
    poll_open: Option<u64>,
    /// Latest time passed to the scheduler; calls without a time close an
    /// open poll at this one.
    seen_now: u64,
    polls: u64,
    busy: u64,
}

impl Model {
    fn new(fairness: Fairness) -> Self {
        let config = SchedulerConfig {
            fairness,
            ..SchedulerConfig::default()
        };
        let quota = config.task_quota.as_nanos() as u64;
        let mut m = Model {
            s: Scheduler::new(config),
            fairness,
            quota,
            now: 0,
            next_id: 0,
            live: Vec::new(),
            detached: Vec::new(),
            all_stats: Vec::new(),
            seen: HashSet::new(),
            turn: None,
            ring: VecDeque::new(),
            poll_open: None,
            seen_now: 0,
            polls: 0,
            busy: 0,
        };
        m.add(100, false);
        m.add(100, false);
        m
    }

    fn add(&mut self, shares: u32, latency: bool) {
        let mut params = PartitionParams::with_shares(shares);
        if latency {
            params = params.latency(Duration::from_millis(1));
        }
        let stats = Arc::new(PartitionStats::new());
        let key = self.s.add_partition(params, stats.clone());
        assert_eq!(self.s.shares(key), Some(clamp_shares(shares)));
        self.all_stats.push(stats);
        self.live.push(Live {
            key,
            queue: VecDeque::new(),
            latency,
            woken: false,
            idle_since: self.seen_now,
        });
    }

    fn any_latency(&self) -> bool {
        self.live.iter().any(|l| l.latency)
    }

    fn pos(&self, key: PartitionKey) -> usize {
        self.live
            .iter()
            .position(|l| l.key == key)
            .expect("live key")
    }

    fn is_current(&self, key: PartitionKey) -> bool {
        self.turn.as_ref().is_some_and(|t| t.key == key)
    }

    fn close_poll(&mut self) {
        if let Some(start) = self.poll_open.take() {
            let t = self.seen_now - start;
            self.polls += 1;
            self.busy += t;
            if let Some(turn) = self.turn.as_mut() {
                turn.elapsed += t;
            }
        }
    }

    /// What `end_turn` does, in the model.
    fn end_turn(&mut self) {
        self.close_poll();
        if let Some(t) = self.turn.take() {
            let i = self.pos(t.key);
            if !self.live[i].queue.is_empty() {
                self.ring.push_back(t.key);
                self.live[i].woken = false;
            } else {
                self.live[i].idle_since = self.seen_now;
            }
        }
    }

    fn push(&mut self, sel: usize) {
        if self.live.is_empty() {
            return;
        }
        let i = sel % self.live.len();
        let key = self.live[i].key;
        let was_idle = self.live[i].queue.is_empty() && !self.is_current(key);
        let before = self.s.vruntime(key).unwrap();
        let min_vruntime = self.s.min_vruntime();
        let slept = self.now - self.live[i].idle_since;
        let floor = self
            .live
            .iter()
            .filter(|l| !l.queue.is_empty() && !self.is_current(l.key))
            .map(|l| self.s.vruntime(l.key).unwrap())
            .fold(f64::INFINITY, f64::min);
        let id = self.next_id;
        self.next_id += 1;
        self.seen_now = self.now;
        self.s.push(key, id, self.now);
        self.live[i].queue.push_back(id);
        if let Some(t) = self.turn.as_mut().filter(|t| t.key == key) {
            t.pushed_during.insert(id);
        }
        if was_idle {
            self.live[i].woken = true;
            self.ring.push_back(key);
            let after = self.s.vruntime(key).unwrap();
            // Debt is forgiven at the sleep credit's rate (1/64 of the
            // sleep, in CPU time at its shares), down to the floor and
            // never below it: no banked credit.
            let shares = f64::from(self.s.shares(key).unwrap());
            let credit = (u128::from(slept) * 15_625_000 / 1_000_000_000) as f64 * 100.0 / shares;
            let floor = if floor.is_finite() {
                floor.max(min_vruntime)
            } else {
                min_vruntime
            };
            let expected = (before - credit).max(floor);
            assert!(
                (after - expected).abs() <= 1e-3 + expected * 1e-12,
                "woke at {after}, expected {expected} (was {before}, floor {floor}, slept {slept} ns)"
            );
            assert!(
                after >= floor,
                "woke at {after}, below the floor {floor}: banked credit"
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Push(p) => self.push(p),
            Op::PushMany(p, n) => {
                for _ in 0..n {
                    self.push(p);
                }
            }
            Op::Begin => {
                // begin_turn charges an open turn first, which the model
                // cannot predict; check the choice only between turns.
                let between_turns = self.turn.is_none();
                self.seen_now = self.now;
                self.end_turn();
                let runnable: Vec<(PartitionKey, f64, bool)> = self
                    .live
                    .iter()
                    .filter(|l| !l.queue.is_empty())
                    .map(|l| (l.key, self.s.vruntime(l.key).unwrap(), l.woken))
                    .collect();
                let got = self.s.begin_turn(self.now);
                assert!(!self.s.preempt_requested());
                let Some(key) = got else {
                    assert!(runnable.is_empty(), "nothing chosen although runnable");
                    return;
                };
                let i = self.pos(key);
                assert!(!self.live[i].queue.is_empty(), "chose an idle partition");
                if !self.any_latency() {
                    match self.fairness {
                        Fairness::Shares if between_turns => {
                            let min = runnable.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
                            let first = runnable
                                .iter()
                                .filter(|r| r.1 == min)
                                .map(|r| (!r.2, r.0))
                                .min()
                                .map(|r| r.1);
                            assert_eq!(
                                Some(key),
                                first,
                                "lowest vruntime, then woken before requeued, then lowest key"
                            );
                        }
                        Fairness::RoundRobin => {
                            assert_eq!(self.ring.front(), Some(&key), "ring order");
                        }
                        Fairness::Shares => {}
                    }
                }
                self.ring.retain(|&k| k != key);
                let allowance = match self.fairness {
                    Fairness::Shares => self.live[i].queue.len(),
                    Fairness::RoundRobin => 1,
                };
                self.turn = Some(TurnModel {
                    key,
                    allowance,
                    handed: 0,
                    elapsed: 0,
                    finished: false,
                    pushed_during: HashSet::new(),
                });
            }
            Op::Next => {
                self.seen_now = self.now;
                self.close_poll();
                let got = self.s.next_in_turn(self.now);
                let Some(turn) = self.turn.as_mut() else {
                    assert_eq!(got, None, "a task outside any turn");
                    return;
                };
                let i = self.live.iter().position(|l| l.key == turn.key).unwrap();
                let queue = &mut self.live[i].queue;
                let quota_used = self.fairness == Fairness::Shares
                    && turn.handed > 0
                    && turn.elapsed >= self.quota;
                let may_hand = !turn.finished
                    && turn.handed < turn.allowance
                    && !queue.is_empty()
                    && !quota_used;
                match got {
                    Some(id) => {
                        assert!(may_hand, "handed out beyond the turn's limits");
                        assert_eq!(queue.pop_front(), Some(id), "FIFO within the partition");
                        assert!(!turn.pushed_during.contains(&id), "woken in this turn");
                        assert!(self.seen.insert(id), "task {id} handed out twice");
                        turn.handed += 1;
                        self.poll_open = Some(self.now);
                    }
                    None => {
                        if may_hand {
                            assert!(self.s.preempt_requested(), "turn cut short without reason");
                        }
                        turn.finished = true;
                    }
                }
            }
            Op::PollDone(d) => {
                self.now += d;
                self.seen_now = self.now;
                self.s.poll_done(self.now);
                self.close_poll();
            }
            Op::Advance(d) => self.now += d,
            Op::End => {
                self.s.end_turn();
                self.end_turn();
            }
            Op::Add(shares, latency) => self.add(shares, latency),
            Op::Remove(p) => {
                if self.live.is_empty() {
                    return;
                }
                let i = p % self.live.len();
                let key = self.live[i].key;
                if self.is_current(key) {
                    self.close_poll();
                    self.turn = None;
                }
                let d = self.s.remove_partition(key).expect("live partition");
                assert!(!self.s.contains(key));
                let l = self.live.remove(i);
                self.ring.retain(|&k| k != key);
                assert_eq!(d.queued(), l.queue.len());
                assert!(d.lag() >= 0.0);
                if p % 3 == 0 {
                    // Gone for good: its tasks come back to the caller.
                    let tasks = d.into_tasks();
                    assert_eq!(tasks, Vec::from(l.queue));
                    for id in tasks {
                        assert!(self.seen.insert(id), "task {id} returned twice");
                    }
                } else {
                    self.detached.push((d, l.queue, l.latency));
                }
            }
            Op::Reinsert(p) => {
                if self.detached.is_empty() {
                    return;
                }
                let (d, queue, latency) = self.detached.remove(p % self.detached.len());
                let has_tasks = !queue.is_empty();
                self.seen_now = self.now;
                let key = self.s.insert_detached(d, self.now);
                assert_eq!(self.s.queued(key), queue.len());
                assert!(self.s.vruntime(key).unwrap() >= self.s.min_vruntime());
                self.live.push(Live {
                    key,
                    queue,
                    latency,
                    woken: has_tasks,
                    idle_since: self.seen_now,
                });
                if has_tasks {
                    self.ring.push_back(key);
                }
            }
            Op::SetShares(p, shares) => {
                if self.live.is_empty() {
                    return;
                }
                let key = self.live[p % self.live.len()].key;
                self.s.set_shares(key, shares);
                assert_eq!(self.s.shares(key), Some(clamp_shares(shares)));
            }
            Op::Drain => {
                self.close_poll();
                let current = self.turn.as_ref().map(|t| t.key);
                for l in &mut self.live {
                    if !l.queue.is_empty() || Some(l.key) == current {
                        l.idle_since = self.seen_now;
                    }
                }
                self.turn = None;
                self.ring.clear();
                let mut got = self.s.drain_all();
                let mut expected: Vec<u64> = self
                    .live
                    .iter_mut()
                    .flat_map(|l| l.queue.drain(..))
                    .collect();
                got.sort_unstable();
                expected.sort_unstable();
                assert_eq!(got, expected);
                for id in got {
                    assert!(self.seen.insert(id), "task {id} drained twice");
                }
            }
        }
    }

    fn check(&self) {
        let total: usize = self.live.iter().map(|l| l.queue.len()).sum();
        assert_eq!(self.s.total_queued(), total);
        assert_eq!(self.s.has_runnable(), total > 0);
        assert_eq!(self.s.partitions(), self.live.len());
        assert_eq!(self.s.current(), self.turn.as_ref().map(|t| t.key));
        for l in &self.live {
            assert_eq!(self.s.queued(l.key), l.queue.len());
            assert_eq!(self.s.stats(l.key).unwrap().queued(), l.queue.len());
        }
    }

    fn finish(mut self) {
        self.close_poll();
        for id in self.s.drain_all() {
            assert!(self.seen.insert(id), "task {id} drained twice");
        }
        for (d, _, _) in self.detached.drain(..) {
            for id in d.into_tasks() {
                assert!(self.seen.insert(id), "task {id} returned twice");
            }
        }
        assert_eq!(self.seen.len() as u64, self.next_id, "tasks lost");
        assert!(self.seen.iter().all(|&id| id < self.next_id));
        let polls: u64 = self.all_stats.iter().map(|s| s.snapshot().polls).sum();
        let busy: u64 = self
            .all_stats
            .iter()
            .map(|s| s.snapshot().busy.as_nanos() as u64)
            .sum();
        assert_eq!(polls, self.polls, "poll count");
        assert_eq!(busy, self.busy, "busy time");
    }
}

fn run(fairness: Fairness, ops: Vec<Op>) {
    let mut m = Model::new(fairness);
    for op in ops {
        m.apply(op);
        m.check();
    }
    m.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shares_mode_never_loses_or_duplicates(ops in prop::collection::vec(op(), 0..400)) {
        run(Fairness::Shares, ops);
    }

    #[test]
    fn round_robin_mode_never_loses_or_duplicates(ops in prop::collection::vec(op(), 0..400)) {
        run(Fairness::RoundRobin, ops);
    }
}

/// A long drive through a busy mix (deterministic), so that some sequences
/// reach deep states that short random ones rarely do.
#[test]
fn long_busy_run() {
    for fairness in [Fairness::Shares, Fairness::RoundRobin] {
        let mut m = Model::new(fairness);
        m.add(300, true);
        m.add(7, false);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let op = match x % 16 {
                0..=3 => Op::Push((x >> 8) as usize),
                4..=5 => Op::Begin,
                6..=10 => Op::Next,
                11..=13 => Op::PollDone((x >> 20) % 400_000),
                14 => match (x >> 4) % 8 {
                    0 => Op::Remove((x >> 12) as usize),
                    1 => Op::Reinsert((x >> 12) as usize),
                    2 => Op::Add(((x >> 12) % 10_000) as u32 + 1, (x >> 30) % 4 == 0),
                    3 => Op::SetShares((x >> 12) as usize, ((x >> 32) % 10_000) as u32),
                    _ => Op::End,
                },
                _ => Op::Advance((x >> 24) % 100_000),
            };
            m.apply(op);
            m.check();
        }
        m.finish();
    }
}
