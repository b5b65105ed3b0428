//! The statistics and their scheduling-delay histogram.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fairloop_partitions::{PartitionStats, StatsSnapshot};

fn within_bucket(reported: Duration, exact_ns: u64) {
    let r = reported.as_nanos() as u64;
    assert!(
        r >= exact_ns && (r - exact_ns) as f64 <= exact_ns as f64 / 8.0,
        "reported {r} ns for {exact_ns} ns"
    );
}

#[test]
fn quantiles_within_bucket_precision() {
    let s = PartitionStats::new();
    // 1..=1000 µs, shuffled deterministically.
    for i in 0..1000u64 {
        let v = (i * 617) % 1000 + 1;
        s.record_delay(v * 1_000);
    }
    let snap = s.snapshot();
    within_bucket(snap.sched_delay_p50, 500_000);
    within_bucket(snap.sched_delay_p99, 990_000);
    assert_eq!(snap.sched_delay_max, Duration::from_micros(1000));
    assert_eq!(s.delay_count(), 1000);
    within_bucket(s.delay_quantile(0.9), 900_000);
    within_bucket(s.delay_quantile(0.0), 1_000);
    assert_eq!(s.delay_quantile(1.0), Duration::from_micros(1000));
}

#[test]
fn quantiles_are_clamped_to_the_exact_max() {
    let s = PartitionStats::new();
    for _ in 0..10 {
        s.record_delay(1_000_001);
    }
    let snap = s.snapshot();
    assert_eq!(snap.sched_delay_p50, Duration::from_nanos(1_000_001));
    assert_eq!(snap.sched_delay_p99, Duration::from_nanos(1_000_001));
    assert_eq!(snap.sched_delay_max, Duration::from_nanos(1_000_001));
}

#[test]
fn small_values_are_exact_and_huge_ones_fit() {
    let s = PartitionStats::new();
    for v in [0u64, 3, 3, 7, 12, 15] {
        s.record_delay(v);
    }
    assert_eq!(s.delay_quantile(0.5), Duration::from_nanos(3));
    assert_eq!(s.delay_quantile(0.8), Duration::from_nanos(12));
    s.record_delay(u64::MAX);
    assert_eq!(s.snapshot().sched_delay_max, Duration::from_nanos(u64::MAX));
    assert_eq!(s.delay_quantile(1.0), Duration::from_nanos(u64::MAX));
}

#[test]
fn p99_sees_the_tail() {
    let s = PartitionStats::new();
    for _ in 0..980 {
        s.record_delay(10_000);
    }
    for _ in 0..20 {
        s.record_delay(5_000_000);
    }
    let snap = s.snapshot();
    within_bucket(snap.sched_delay_p50, 10_000);
    within_bucket(snap.sched_delay_p99, 5_000_000);
}

#[test]
fn poll_counters() {
    let s = PartitionStats::default();
    s.record_poll(100, false);
    s.record_poll(20_000_000, true);
    s.add_migration();
    s.set_queued(7);
    assert_eq!(
        s.snapshot(),
        StatsSnapshot {
            polls: 2,
            busy: Duration::from_nanos(20_000_100),
            long_polls: 1,
            migrations: 1,
            queued: 7,
            ..StatsSnapshot::default()
        }
    );
    assert!(format!("{s:?}").contains("polls: 2"));
}

#[test]
fn snapshot_from_another_thread() {
    let stats = Arc::new(PartitionStats::new());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let stats = stats.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut last = StatsSnapshot::default();
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let snap = stats.snapshot();
                // Single writer: every counter only ever grows.
                assert!(snap.polls >= last.polls);
                assert!(snap.busy >= last.busy);
                assert!(snap.sched_delay_max >= last.sched_delay_max);
                last = snap;
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=20_000u64 {
        stats.record_poll(10, false);
        stats.record_delay(i);
        stats.set_queued(i as usize);
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().unwrap() > 0);
    let snap = stats.snapshot();
    assert_eq!(snap.polls, 20_000);
    assert_eq!(snap.busy, Duration::from_nanos(200_000));
    assert_eq!(snap.sched_delay_max, Duration::from_nanos(20_000));
    assert_eq!(snap.queued, 20_000);
    // And a thread that only sees it after the writer finished (joined) sees
    // everything.
    let s2 = stats.clone();
    let polls = std::thread::spawn(move || s2.snapshot().polls)
        .join()
        .unwrap();
    assert_eq!(polls, 20_000);
}
