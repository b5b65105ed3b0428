//! Scenario tests driven by a fake clock: share ratios, the wake-from-idle
//! rule, quota, backpressure, latency preemption and round-robin order.

use std::sync::Arc;
use std::time::Duration;

use fairloop_partitions::{
    Fairness, PartitionKey, PartitionParams, PartitionStats, Scheduler, SchedulerConfig,
};

const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A simulated task: which partition it belongs to, how long a poll takes,
/// and whether it wakes itself again when done (an always-busy partition).
#[derive(Clone, Copy, Debug)]
struct Job {
    part: usize,
    cost: u64,
    respawn: bool,
    pushed_at: u64,
}

/// A core driven by the scheduler, with a fake clock.
struct Sim {
    s: Scheduler<Job>,
    now: u64,
    keys: Vec<PartitionKey>,
    stats: Vec<Arc<PartitionStats>>,
    cpu: Vec<u64>,
    /// Largest observed push-to-handout delay per partition.
    max_delay: Vec<u64>,
}

impl Sim {
    fn new(config: SchedulerConfig) -> Self {
        Sim {
            s: Scheduler::new(config),
            now: 0,
            keys: Vec::new(),
            stats: Vec::new(),
            cpu: Vec::new(),
            max_delay: Vec::new(),
        }
    }

    fn shares() -> Self {
        Self::new(SchedulerConfig::default())
    }

    fn add(&mut self, params: PartitionParams) -> usize {
        let stats = Arc::new(PartitionStats::new());
        self.keys.push(self.s.add_partition(params, stats.clone()));
        self.stats.push(stats);
        self.cpu.push(0);
        self.max_delay.push(0);
        self.keys.len() - 1
    }

    fn push(&mut self, part: usize, cost: u64, respawn: bool, at: u64) {
        let job = Job {
            part,
            cost,
            respawn,
            pushed_at: at,
        };
        self.s.push(self.keys[part], job, at);
    }

    /// `n` self-respawning tasks of `cost` each: the partition never runs dry.
    fn saturate(&mut self, part: usize, n: usize, cost: u64) {
        for _ in 0..n {
            self.push(part, cost, true, self.now);
        }
    }

    /// Runs turns until the clock reaches `end`; `during_poll(sim, start,
    /// end)` runs while each poll is in flight (to inject foreign wakes).
    fn run_until_with(&mut self, end: u64, mut during_poll: impl FnMut(&mut Sim, u64, u64)) {
        while self.now < end {
            let Some(key) = self.s.begin_turn(self.now) else {
                break;
            };
            while let Some(job) = self.s.next_in_turn(self.now) {
                assert_eq!(
                    self.keys[job.part], key,
                    "task handed out in its own partition's turn"
                );
                let d = self.now - job.pushed_at;
                self.max_delay[job.part] = self.max_delay[job.part].max(d);
                let start = self.now;
                self.now += job.cost;
                self.cpu[job.part] += job.cost;
                during_poll(self, start, self.now);
                self.s.poll_done(self.now);
                if job.respawn {
                    self.push(job.part, job.cost, true, self.now);
                }
            }
        }
        self.s.end_turn();
    }

    fn run_until(&mut self, end: u64) {
        self.run_until_with(end, |_, _, _| {});
    }
}

fn assert_ratio(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let err = (actual / expected - 1.0).abs();
    eprintln!("{what}: {actual:.5} (expected {expected})");
    assert!(
        err <= tolerance,
        "{what}: ratio {actual:.5}, expected {expected} ± {:.1}%",
        tolerance * 100.0
    );
}

#[test]
fn cpu_time_follows_shares_1_2_4() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::with_shares(100));
    let b = sim.add(PartitionParams::with_shares(200));
    let c = sim.add(PartitionParams::with_shares(400));
    for p in [a, b, c] {
        sim.saturate(p, 20, 50 * US);
    }
    sim.run_until(10 * S);
    let base = sim.cpu[a] as f64;
    assert_ratio(sim.cpu[b] as f64 / base, 2.0, 0.02, "B/A");
    assert_ratio(sim.cpu[c] as f64 / base, 4.0, 0.02, "C/A");
    // The stats saw exactly the CPU time the simulation spent.
    for p in [a, b, c] {
        assert_eq!(
            sim.stats[p].snapshot().busy,
            Duration::from_nanos(sim.cpu[p])
        );
    }
}

#[test]
fn extreme_shares_stay_proportional() {
    // A small quota so the 1-share partition gets many (short) turns in the
    // simulated time and the ratio is not dominated by turn granularity.
    let mut sim = Sim::new(SchedulerConfig {
        task_quota: Duration::from_micros(100),
        ..SchedulerConfig::default()
    });
    let small = sim.add(PartitionParams::with_shares(1));
    let big = sim.add(PartitionParams::with_shares(10_000));
    sim.saturate(small, 4, 50 * US);
    sim.saturate(big, 4, 2 * MS);
    sim.run_until(200 * S);
    assert!(sim.cpu[small] > 0);
    assert_ratio(
        sim.cpu[big] as f64 / sim.cpu[small] as f64,
        10_000.0,
        0.02,
        "big/small",
    );
}

#[test]
fn mixed_task_costs_still_follow_shares() {
    let mut sim = Sim::shares();
    let cheap = sim.add(PartitionParams::with_shares(100));
    let costly = sim.add(PartitionParams::with_shares(200));
    sim.saturate(cheap, 100, 10 * US);
    sim.saturate(costly, 10, 300 * US);
    sim.run_until(10 * S);
    assert_ratio(
        sim.cpu[costly] as f64 / sim.cpu[cheap] as f64,
        2.0,
        0.02,
        "costly/cheap",
    );
}

#[test]
fn equal_shares_with_uneven_costs_split_evenly() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::default());
    let b = sim.add(PartitionParams::default());
    sim.saturate(a, 50, 10 * US);
    sim.saturate(b, 3, 300 * US);
    sim.run_until(10 * S);
    assert_ratio(sim.cpu[a] as f64 / sim.cpu[b] as f64, 1.0, 0.02, "A/B");
}

#[test]
fn idle_partition_cannot_bank_credit() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::default());
    let b = sim.add(PartitionParams::default());
    sim.saturate(a, 20, 50 * US);
    sim.run_until(5 * S);
    assert_eq!(sim.cpu[b], 0);
    let a_before = sim.cpu[a];
    let t0 = sim.now;
    sim.saturate(b, 20, 50 * US);
    // B does not start a whole quantum behind A's 5 s: its vruntime is
    // lifted to A's.
    let (va, vb) = (
        sim.s.vruntime(sim.keys[a]).unwrap(),
        sim.s.vruntime(sim.keys[b]).unwrap(),
    );
    assert!(vb >= va, "B woke at {vb}, below A's {va}");
    sim.run_until(t0 + S);
    let total = (sim.now - t0) as f64;
    let b_share = sim.cpu[b] as f64 / total;
    assert!(
        b_share <= 0.51,
        "B got {:.1}% of the second after waking",
        b_share * 100.0
    );
    assert!(b_share >= 0.49, "B got only {:.1}%", b_share * 100.0);
    assert!(sim.cpu[a] > a_before);
}

#[test]
fn sleeper_keeps_its_debt() {
    let mut s: Scheduler<u64> = Scheduler::new(SchedulerConfig::default());
    let a = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let b = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    for i in 0..100 {
        s.push(a, i, 0);
    }
    s.push(b, 1000, 0);
    // A takes one quantum, then B one 10 ms poll, after which B sleeps.
    let mut now = 0;
    assert_eq!(s.begin_turn(now), Some(a));
    while s.next_in_turn(now).is_some() {
        now += 100 * US;
        s.poll_done(now);
    }
    assert_eq!(s.begin_turn(now), Some(b));
    s.next_in_turn(now);
    now += 10 * MS;
    s.poll_done(now);
    s.end_turn();
    assert_eq!(s.vruntime(b), Some(10_000_000.0));
    // B wakes while A is far behind: it keeps its debt and waits until A
    // has caught up.
    s.push(b, 1001, now);
    assert_eq!(s.vruntime(b), Some(10_000_000.0));
    let mut a_turns = 0;
    while s.begin_turn(now) == Some(a) {
        a_turns += 1;
        while s.next_in_turn(now).is_some() {
            now += 100 * US;
            s.poll_done(now);
        }
    }
    assert_eq!(s.current(), Some(b));
    assert_eq!(a_turns, 19, "A runs from 0.5 ms to 10 ms of vruntime first");
}

#[test]
fn quota_ends_a_long_turn() {
    let mut s: Scheduler<u32> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let q = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let mut now = 0;
    for i in 0..1000 {
        s.push(p, i, now);
    }
    s.push(q, 5000, now);
    assert_eq!(s.begin_turn(now), Some(p));
    let mut handed = Vec::new();
    while let Some(t) = s.next_in_turn(now) {
        handed.push(t);
        now += 100 * US;
        s.poll_done(now);
    }
    assert_eq!(
        handed,
        vec![0, 1, 2, 3, 4],
        "500 µs quota = five 100 µs tasks"
    );
    assert_eq!(s.next_in_turn(now), None, "a finished turn stays finished");
    assert_eq!(s.begin_turn(now), Some(q));
    assert_eq!(s.next_in_turn(now), Some(5000));
    now += 10 * US;
    s.poll_done(now);
    assert_eq!(s.next_in_turn(now), None);
    assert_eq!(s.begin_turn(now), Some(p));
    assert_eq!(s.next_in_turn(now), Some(5));
    assert_eq!(s.queued(p), 994);
}

#[test]
fn quota_counts_a_poll_closed_by_the_next_call() {
    // A caller that reads the clock once per poll (no poll_done) still gets
    // its turns cut at the quota.
    let mut s: Scheduler<u32> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    for i in 0..100 {
        s.push(p, i, 0);
    }
    s.begin_turn(0);
    let mut now = 0;
    let mut n = 0;
    while s.next_in_turn(now).is_some() {
        n += 1;
        now += 200 * US;
    }
    assert_eq!(n, 3, "200 + 200 < 500 <= 600");
    let snap = s.stats(p).unwrap().snapshot();
    assert_eq!(snap.polls, 3);
    assert_eq!(snap.busy, Duration::from_micros(600));
}

#[test]
fn zero_quota_still_makes_progress() {
    let mut s: Scheduler<u32> = Scheduler::new(SchedulerConfig {
        task_quota: Duration::ZERO,
        ..SchedulerConfig::default()
    });
    let p = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    s.push(p, 1, 0);
    s.push(p, 2, 0);
    s.begin_turn(0);
    assert_eq!(s.next_in_turn(0), Some(1));
    s.poll_done(0);
    assert_eq!(s.next_in_turn(0), None);
}

#[test]
fn tasks_pushed_during_a_turn_wait_for_the_next() {
    let mut s: Scheduler<&str> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    s.push(p, "a", 0);
    s.push(p, "b", 0);
    assert_eq!(s.begin_turn(0), Some(p));
    assert_eq!(s.next_in_turn(0), Some("a"));
    s.push(p, "c", 1);
    s.poll_done(1);
    assert_eq!(s.next_in_turn(1), Some("b"));
    s.push(p, "d", 2);
    s.poll_done(2);
    assert_eq!(
        s.next_in_turn(2),
        None,
        "c and d were woken during the turn"
    );
    assert_eq!(s.queued(p), 2);
    assert!(s.has_runnable());
    assert_eq!(s.begin_turn(2), Some(p));
    assert_eq!(s.next_in_turn(2), Some("c"));
    assert_eq!(s.next_in_turn(2), Some("d"));
    assert_eq!(s.next_in_turn(2), None);
    assert!(!s.has_runnable());
    assert_eq!(s.begin_turn(3), None);
    assert_eq!(s.current(), None);
}

#[test]
fn partition_pushed_into_an_empty_current_turn_stays_runnable() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    s.push(p, 1, 0);
    s.begin_turn(0);
    assert_eq!(s.next_in_turn(0), Some(1));
    s.poll_done(5);
    // The queue is empty, but the partition is current: no wake here...
    s.push(p, 2, 5);
    assert_eq!(s.next_in_turn(5), None);
    // ...and it is runnable once the turn ends.
    assert_eq!(s.begin_turn(5), Some(p));
    assert_eq!(s.next_in_turn(5), Some(2));
}

fn latency_params(ms: u64) -> PartitionParams {
    PartitionParams::default().latency(Duration::from_millis(ms))
}

/// A deterministic pseudo-random sequence (xorshift), so "arbitrary" push
/// times are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn latency_partition_runs_within_one_task_of_a_wake() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::default());
    let b = sim.add(latency_params(1));
    sim.saturate(a, 20, 100 * US);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next_wake = 3 * MS + rng.next() % (5 * MS);
    let mut wakes = 0u64;
    sim.run_until_with(2 * S, |sim, start, end| {
        // A foreign wake of B arriving while one of A's tasks is polled.
        while next_wake < end {
            let at = next_wake.max(start);
            sim.push(b, 20 * US, false, at);
            wakes += 1;
            assert!(
                sim.s.preempt_requested(),
                "waking B must request preemption"
            );
            next_wake = at + MS + rng.next() % (10 * MS);
        }
    });
    assert!(wakes > 100, "only {wakes} wakes");
    let snap = sim.stats[b].snapshot();
    assert_eq!(snap.polls, wakes);
    // Directly observed: every B task started within one A task (100 µs).
    assert!(
        sim.max_delay[b] <= 100 * US,
        "max delay {} ns",
        sim.max_delay[b]
    );
    // And the histogram's exact maximum agrees.
    assert!(
        snap.sched_delay_max <= Duration::from_micros(100),
        "{snap:?}"
    );
    assert!(snap.sched_delay_max <= Duration::from_millis(1));
    assert_eq!(snap.sched_delay_max, Duration::from_nanos(sim.max_delay[b]));
    // A barely noticed.
    assert!(sim.cpu[a] as f64 >= 0.97 * sim.now as f64);
}

#[test]
fn latency_wake_between_turns_goes_first() {
    let mut s: Scheduler<&str> = Scheduler::new(SchedulerConfig::default());
    let a = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let c = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let l = s.add_partition(latency_params(1), Arc::new(PartitionStats::new()));
    s.push(a, "a", 0);
    s.push(c, "c", 0);
    s.push(l, "l", 0);
    assert!(s.preempt_requested());
    assert_eq!(
        s.begin_turn(0),
        Some(l),
        "latency first, although its key is highest"
    );
    assert!(!s.preempt_requested(), "begin_turn clears the request");
    assert_eq!(s.next_in_turn(0), Some("l"));
    assert_eq!(s.next_in_turn(0), None);
    assert_eq!(s.begin_turn(0), Some(a));
}

#[test]
fn earliest_latency_deadline_goes_first() {
    let mut s: Scheduler<&str> = Scheduler::new(SchedulerConfig::default());
    let slow = s.add_partition(latency_params(10), Arc::new(PartitionStats::new()));
    let fast = s.add_partition(latency_params(1), Arc::new(PartitionStats::new()));
    s.push(slow, "slow", 0);
    s.push(fast, "fast", 5 * MS);
    // Deadlines: slow at 10 ms, fast at 6 ms.
    assert_eq!(s.begin_turn(5 * MS), Some(fast));
    assert_eq!(s.next_in_turn(5 * MS), Some("fast"));
    assert_eq!(s.begin_turn(5 * MS), Some(slow));
}

#[test]
fn push_into_the_current_latency_partition_does_not_preempt_it() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let l = s.add_partition(latency_params(1), Arc::new(PartitionStats::new()));
    s.push(l, 1, 0);
    s.push(l, 2, 0);
    s.begin_turn(0);
    assert_eq!(s.next_in_turn(0), Some(1));
    s.push(l, 3, 1);
    assert!(!s.preempt_requested());
    assert_eq!(s.next_in_turn(1), Some(2));
}

#[test]
fn flooding_latency_partition_cannot_starve_others() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::default());
    let b = sim.add(latency_params(1));
    sim.saturate(a, 20, 100 * US);
    sim.saturate(b, 20, 100 * US);
    let mut rng = Rng(42);
    let mut next_wake = 0;
    sim.run_until_with(10 * S, |sim, start, end| {
        // On top of its own endless work, B is woken from outside every
        // ~50 µs, each wake asking to preempt whatever runs.
        while next_wake < end {
            let at = next_wake.max(start);
            sim.push(b, 100 * US, false, at);
            next_wake = at + rng.next() % (100 * US);
        }
    });
    let total = sim.now as f64;
    let a_share = sim.cpu[a] as f64 / total;
    assert!(
        (0.49..=0.51).contains(&a_share),
        "A got {:.2}% against a flooding latency partition",
        a_share * 100.0
    );
}

#[test]
fn latency_partition_with_more_shares_gets_its_share_and_low_delay() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::with_shares(100));
    let b = sim.add(PartitionParams::with_shares(300).latency(Duration::from_millis(1)));
    sim.saturate(a, 20, 100 * US);
    let mut rng = Rng(7);
    let mut next_wake = 0;
    sim.run_until_with(5 * S, |sim, start, end| {
        while next_wake < end {
            let at = next_wake.max(start);
            sim.push(b, 50 * US, false, at);
            next_wake = at + 200 * US + rng.next() % (400 * US);
        }
    });
    // B asks for ~1/8 of the CPU, well under its 3/4 share: never delayed by
    // more than one of A's tasks, even when a wake lands during B's own turn.
    assert!(
        sim.max_delay[b] <= 150 * US,
        "max delay {}",
        sim.max_delay[b]
    );
}

fn rr_scheduler() -> Scheduler<String> {
    Scheduler::new(SchedulerConfig {
        fairness: Fairness::RoundRobin,
        ..SchedulerConfig::default()
    })
}

/// Runs turns to completion and returns the tasks in the order handed out.
fn drain_turns(s: &mut Scheduler<String>, turns: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..turns {
        if s.begin_turn(0).is_none() {
            break;
        }
        while let Some(t) = s.next_in_turn(0) {
            out.push(t);
            s.poll_done(0);
        }
    }
    out
}

#[test]
fn round_robin_order_is_one_task_per_partition_per_round() {
    let mut s = rr_scheduler();
    let keys: Vec<_> = (0..3)
        .map(|_| s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new())))
        .collect();
    for (name, &k) in ["A", "B", "C"].iter().zip(&keys) {
        for i in 0..3 {
            s.push(k, format!("{name}{i}"), 0);
        }
    }
    let order = drain_turns(&mut s, 100);
    assert_eq!(
        order,
        ["A0", "B0", "C0", "A1", "B1", "C1", "A2", "B2", "C2"]
    );
}

#[test]
fn round_robin_ignores_shares_and_costs() {
    let mut s = rr_scheduler();
    let a = s.add_partition(
        PartitionParams::with_shares(10_000),
        Arc::new(PartitionStats::new()),
    );
    let b = s.add_partition(
        PartitionParams::with_shares(1),
        Arc::new(PartitionStats::new()),
    );
    for i in 0..3 {
        s.push(a, format!("A{i}"), 0);
        s.push(b, format!("B{i}"), 0);
    }
    let mut now = 0;
    let mut order = Vec::new();
    while s.begin_turn(now).is_some() {
        while let Some(t) = s.next_in_turn(now) {
            now += if t.starts_with('B') { 10 * MS } else { US };
            order.push(t);
            s.poll_done(now);
        }
    }
    assert_eq!(order, ["A0", "B0", "A1", "B1", "A2", "B2"]);
}

#[test]
fn round_robin_latecomers_join_the_back_of_the_ring() {
    let mut s = rr_scheduler();
    let stats = || Arc::new(PartitionStats::new());
    let a = s.add_partition(PartitionParams::default(), stats());
    let b = s.add_partition(PartitionParams::default(), stats());
    let c = s.add_partition(PartitionParams::default(), stats());
    let d = s.add_partition(PartitionParams::default(), stats());
    for i in 0..3 {
        s.push(a, format!("A{i}"), 0);
        s.push(b, format!("B{i}"), 0);
    }
    // A's turn; C wakes during it: ring is now [B, C], and A goes behind C.
    assert_eq!(s.begin_turn(0), Some(a));
    assert_eq!(s.next_in_turn(0).as_deref(), Some("A0"));
    s.push(c, "C0".into(), 0);
    s.push(c, "C1".into(), 0);
    assert_eq!(s.next_in_turn(0), None);
    // Between turns D wakes: it joins after A.
    s.end_turn();
    s.push(d, "D0".into(), 0);
    let order = drain_turns(&mut s, 100);
    assert_eq!(order, ["B0", "C0", "A1", "D0", "B1", "C1", "A2", "B2"]);
}

#[test]
fn round_robin_still_honours_latency() {
    let mut s = rr_scheduler();
    let a = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let b = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let l = s.add_partition(latency_params(1), Arc::new(PartitionStats::new()));
    for i in 0..3 {
        s.push(a, format!("A{i}"), 0);
        s.push(b, format!("B{i}"), 0);
    }
    assert_eq!(s.begin_turn(0), Some(a));
    assert_eq!(s.next_in_turn(0).as_deref(), Some("A0"));
    s.push(l, "L0".into(), 1);
    assert!(s.preempt_requested());
    s.poll_done(1);
    assert_eq!(s.next_in_turn(1), None);
    let order = drain_turns(&mut s, 100);
    assert_eq!(order, ["L0", "B0", "A1", "B1", "A2", "B2"]);
}

#[test]
fn stall_threshold_counts_long_polls() {
    let mut sim = Sim::shares();
    let a = sim.add(PartitionParams::default());
    sim.push(a, 5 * MS, false, 0);
    sim.push(a, 11 * MS, false, 0);
    sim.push(a, 10 * MS, false, 0);
    sim.run_until(S);
    let snap = sim.stats[a].snapshot();
    assert_eq!(snap.polls, 3);
    assert_eq!(snap.long_polls, 1, "only the poll strictly over 10 ms");
    assert_eq!(snap.busy, Duration::from_millis(26));
    assert_eq!(snap.queued, 0);
}

#[test]
fn queued_gauge_tracks_push_and_pop() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let stats = Arc::new(PartitionStats::new());
    let p = s.add_partition(PartitionParams::default(), stats.clone());
    for i in 0..4 {
        s.push(p, i, 0);
    }
    assert_eq!(stats.snapshot().queued, 4);
    s.begin_turn(0);
    s.next_in_turn(0);
    assert_eq!(stats.snapshot().queued, 3);
    assert_eq!(s.drain_all(), vec![1, 2, 3]);
    assert_eq!(stats.snapshot().queued, 0);
    assert_eq!(s.total_queued(), 0);
    assert_eq!(s.partitions(), 1);
    assert_eq!(s.current(), None);
}

#[test]
fn shares_are_clamped_and_settable() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(
        PartitionParams::with_shares(0),
        Arc::new(PartitionStats::new()),
    );
    assert_eq!(s.shares(p), Some(1));
    s.set_shares(p, 50_000);
    assert_eq!(s.shares(p), Some(10_000));
    s.set_shares(p, 250);
    assert_eq!(s.shares(p), Some(250));
    s.set_shares(PartitionKey::from_index(99), 5); // unknown: ignored
    assert_eq!(s.shares(PartitionKey::from_index(99)), None);
}

#[test]
fn vruntime_accrues_at_ten_thousand_shares_with_tiny_turns() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let p = s.add_partition(
        PartitionParams::with_shares(10_000),
        Arc::new(PartitionStats::new()),
    );
    for i in 0..100 {
        s.push(p, i, 0);
        s.begin_turn(i as u64);
        s.next_in_turn(i as u64);
        s.poll_done(i as u64 + 1);
        s.end_turn();
    }
    // 100 turns of 1 ns at 100× default shares = 1 ns at default shares.
    assert!(
        (s.vruntime(p).unwrap() - 1.0).abs() < 1e-9,
        "{:?}",
        s.vruntime(p)
    );
}

#[test]
#[should_panic(expected = "unknown partition")]
fn push_to_unknown_partition_panics() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    s.push(PartitionKey::from_index(3), 1, 0);
}

#[test]
fn a_cached_clock_still_charges_the_whole_turn() {
    // The caller reads the real clock only every fourth poll and passes the
    // cached value in between: the turn is still charged its full span.
    let mut s: Scheduler<u32> = Scheduler::new(SchedulerConfig::default());
    let stats = Arc::new(PartitionStats::new());
    let p = s.add_partition(PartitionParams::default(), stats.clone());
    for i in 0..100 {
        s.push(p, i, 0);
    }
    let (mut real, mut cached) = (0u64, 0u64);
    s.begin_turn(cached);
    let mut n = 0;
    while s.next_in_turn(cached).is_some() {
        n += 1;
        real += 40 * US;
        if n % 4 == 0 {
            cached = real;
        }
        s.poll_done(cached);
    }
    s.end_turn();
    assert_eq!(
        n, 16,
        "the quota is noticed at the first clock read past it"
    );
    assert_eq!(s.vruntime(p), Some(640_000.0));
    assert_eq!(stats.snapshot().busy, Duration::from_micros(640));
    assert_eq!(stats.snapshot().polls, 16);
}

#[test]
fn runnable_partitions_counts_demand_not_tasks() {
    let mut s: Scheduler<u8> = Scheduler::new(SchedulerConfig::default());
    let stats = || Arc::new(PartitionStats::new());
    let a = s.add_partition(PartitionParams::default(), stats());
    let b = s.add_partition(PartitionParams::default(), stats());
    let _idle = s.add_partition(PartitionParams::default(), stats());
    assert_eq!(s.runnable_partitions(), 0);
    for t in 0..5 {
        s.push(a, t, 0);
    }
    assert_eq!(s.runnable_partitions(), 1, "many tasks, one partition");
    s.push(b, 9, 0);
    assert_eq!(s.runnable_partitions(), 2);
    // The partition whose turn is open still wants the CPU.
    let first = s.begin_turn(0).expect("runnable");
    assert_eq!(s.runnable_partitions(), 2);
    while s.next_in_turn(1).is_some() {}
    s.end_turn();
    assert_eq!(s.runnable_partitions(), 1, "{first:?} ran dry");
}
