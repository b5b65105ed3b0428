//! Removing partitions and inserting them into another scheduler.

use std::sync::Arc;
use std::time::Duration;

use fairloop_partitions::{PartitionParams, PartitionStats, Scheduler, SchedulerConfig};

const US: u64 = 1_000;

fn sched() -> Scheduler<u32> {
    Scheduler::new(SchedulerConfig::default())
}

/// Runs one turn, each task taking `cost`; returns the tasks handed out.
fn run_turn(s: &mut Scheduler<u32>, now: &mut u64, cost: u64) -> Vec<u32> {
    let mut out = Vec::new();
    if s.begin_turn(*now).is_none() {
        return out;
    }
    while let Some(t) = s.next_in_turn(*now) {
        out.push(t);
        *now += cost;
        s.poll_done(*now);
    }
    s.end_turn();
    out
}

#[test]
fn migration_keeps_tasks_order_and_lag() {
    // The moving partition is ahead of the minimum.
    let mut src = sched();
    let slow = src.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let fast = src.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let mut now = 0;
    for i in 0..50 {
        src.push(slow, i, now);
        src.push(fast, 1000 + i, now);
    }
    run_turn(&mut src, &mut now, 100 * US); // slow: 500 µs
    run_turn(&mut src, &mut now, 300 * US); // fast: 600 µs
    assert_eq!(src.vruntime(fast), Some(600_000.0));
    assert_eq!(src.min_vruntime(), 500_000.0);
    let detached = src.remove_partition(fast).unwrap();
    assert!(!src.contains(fast));
    assert_eq!(src.partitions(), 1);
    assert_eq!(detached.queued(), 48);
    assert_eq!(detached.lag(), 100_000.0);
    assert_eq!(src.total_queued(), src.queued(slow));

    // The destination has been running for a while.
    let mut dst = sched();
    let local = dst.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let mut dnow = 5_000_000;
    for i in 0..100 {
        dst.push(local, 5000 + i, dnow);
    }
    for _ in 0..4 {
        run_turn(&mut dst, &mut dnow, 100 * US);
    }
    let dmin = dst.min_vruntime();
    assert_eq!(dmin, 2_000_000.0);
    let stats = detached.stats.clone();
    let moved = dst.insert_detached(detached, dnow);
    assert_eq!(dst.vruntime(moved), Some(dmin + 100_000.0));
    assert_eq!(dst.queued(moved), 48);
    assert_eq!(stats.snapshot().queued, 48);
    // The local partition is behind by the lag, so it runs first; then the
    // migrated tasks come out in their original order.
    assert_eq!(dst.begin_turn(dnow), Some(local));
    dst.end_turn();
    let mut got = Vec::new();
    while dst.has_runnable() {
        if dst.begin_turn(dnow) == Some(moved) {
            while let Some(t) = dst.next_in_turn(dnow) {
                got.push(t);
                dnow += 10 * US;
                dst.poll_done(dnow);
            }
        } else {
            while dst.next_in_turn(dnow).is_some() {
                dnow += 10 * US;
                dst.poll_done(dnow);
            }
        }
    }
    assert_eq!(got, (1002..1050).collect::<Vec<_>>());
    // The delay of the first migrated task counts from its arrival here.
    let snap = stats.snapshot();
    assert_eq!(snap.polls, 2 + 48);
    assert!(snap.sched_delay_max < Duration::from_millis(2));
}

#[test]
fn a_partition_behind_the_minimum_carries_no_credit() {
    let mut s = sched();
    let idle = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let busy = s.add_partition(
        PartitionParams::with_shares(50),
        Arc::new(PartitionStats::new()),
    );
    let mut now = 0;
    for i in 0..10 {
        s.push(busy, i, now);
    }
    run_turn(&mut s, &mut now, 100 * US);
    assert_eq!(s.vruntime(busy), Some(1_000_000.0));
    assert_eq!(s.min_vruntime(), 1_000_000.0);
    assert_eq!(s.vruntime(idle), Some(0.0));
    let d = s.remove_partition(idle).unwrap();
    assert_eq!(d.lag(), 0.0);
    assert_eq!(d.queued(), 0);
    let back = s.insert_detached(d, now);
    assert_eq!(s.vruntime(back), Some(1_000_000.0));
    assert_eq!(s.queued(back), 0);
    assert_eq!(s.begin_turn(now), Some(busy));
}

#[test]
fn removing_the_current_partition_mid_turn() {
    let mut s = sched();
    let stats = Arc::new(PartitionStats::new());
    let a = s.add_partition(PartitionParams::default(), stats.clone());
    let b = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    for i in 0..5 {
        s.push(a, i, 0);
    }
    s.push(b, 100, 0);
    assert_eq!(s.begin_turn(0), Some(a));
    assert_eq!(s.next_in_turn(0), Some(0));
    s.poll_done(10 * US);
    assert_eq!(s.next_in_turn(10 * US), Some(1));
    s.poll_done(30 * US);
    let d = s.remove_partition(a).unwrap();
    assert_eq!(s.current(), None);
    assert_eq!(d.lag(), 30_000.0, "the turn was charged before removal");
    assert_eq!(d.into_tasks(), vec![2, 3, 4]);
    let snap = stats.snapshot();
    assert_eq!(snap.polls, 2);
    assert_eq!(snap.busy, Duration::from_micros(30));
    // The scheduler carries on with the others.
    assert_eq!(s.next_in_turn(30 * US), None);
    assert_eq!(s.begin_turn(30 * US), Some(b));
    assert_eq!(s.next_in_turn(30 * US), Some(100));
    assert_eq!(s.total_queued(), 0);
    assert!(s.remove_partition(a).is_none(), "already removed");
}

#[test]
fn removing_mid_poll_closes_the_poll() {
    let mut s = sched();
    let stats = Arc::new(PartitionStats::new());
    let a = s.add_partition(PartitionParams::default(), stats.clone());
    s.push(a, 1, 0);
    s.push(a, 2, 0);
    s.begin_turn(0);
    assert_eq!(s.next_in_turn(0), Some(1));
    let d = s.remove_partition(a).unwrap();
    // A late poll_done is ignored: no poll is in progress any more.
    s.poll_done(50 * US);
    assert_eq!(stats.snapshot().polls, 1);
    assert_eq!(d.into_tasks(), vec![2]);
}

#[test]
fn keys_are_reused_and_runnable_state_is_clean() {
    let mut s = sched();
    let a = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    let b = s.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    s.push(a, 1, 0);
    s.push(b, 2, 0);
    let d = s.remove_partition(a).unwrap();
    assert_eq!(s.total_queued(), 1);
    let a2 = s.insert_detached(d, 7);
    assert_eq!(a2.index(), a.index(), "slot reused");
    assert_eq!(s.total_queued(), 2);
    let mut seen = Vec::new();
    while let Some(_k) = s.begin_turn(7) {
        while let Some(t) = s.next_in_turn(7) {
            seen.push(t);
        }
    }
    seen.sort();
    assert_eq!(seen, vec![1, 2]);
}

#[test]
fn migrating_a_latency_partition_requests_preemption() {
    let mut src = sched();
    let l = src.add_partition(
        PartitionParams::default().latency(Duration::from_millis(1)),
        Arc::new(PartitionStats::new()),
    );
    src.push(l, 9, 0);
    let d = src.remove_partition(l).unwrap();
    assert!(d.params.latency.is_some());

    let mut dst = sched();
    let busy = dst.add_partition(PartitionParams::default(), Arc::new(PartitionStats::new()));
    for i in 0..10 {
        dst.push(busy, i, 0);
    }
    dst.begin_turn(0);
    assert_eq!(dst.next_in_turn(0), Some(0));
    let l2 = dst.insert_detached(d, 5);
    assert!(dst.preempt_requested());
    dst.poll_done(10);
    assert_eq!(dst.next_in_turn(10), None);
    assert_eq!(dst.begin_turn(10), Some(l2));
    assert_eq!(dst.next_in_turn(10), Some(9));
}
