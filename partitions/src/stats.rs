//! Per-partition statistics shared between the owning core and readers on
//! any thread.
//!
//! # Concurrency model
//!
//! A [`PartitionStats`] has exactly one writer at a time: the core that owns
//! the partition. When a partition migrates, the hand-over between cores is
//! synchronised by the caller (a channel send/receive is a happens-before
//! edge), so the new owner sees every value the old owner wrote. Readers on
//! other threads may observe a snapshot that is mid-update (for example a
//! poll counted but its busy time not yet added); every individual counter
//! is still a value that was really written, never torn.
//!
//! Because there is a single writer, updates are a `Relaxed` load followed
//! by a `Relaxed` store instead of an atomic read-modify-write: on x86 a
//! `lock xadd` costs ~20 cycles and serialises the pipeline, a plain
//! load+store costs about one, and this runs on every task poll.

use std::fmt;
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Nanos;

/// Linear sub-buckets per power-of-two range; 8 gives a worst-case relative
/// error of 12.5%, plenty for latency percentiles.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Power-of-two ranges are tracked up to 2^MAX_EXP ns (~18 minutes); longer
/// delays land in the last bucket, whose reported bound is clamped to the
/// exact maximum anyway.
const MAX_EXP: u32 = 40;
/// Values `0..SUB` get one exact bucket each; then each range
/// `[2^e, 2^(e+1))` for `e` in `SUB_BITS..MAX_EXP` gets `SUB` buckets.
pub(crate) const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS) as usize * SUB;

/// Index of the bucket that counts value `v`.
fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    if e >= MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = e - SUB_BITS;
    // (v >> shift) is in SUB..2*SUB, so consecutive ranges tile the indices.
    shift as usize * SUB + (v >> shift) as usize
}

/// Largest value that falls into bucket `i` (inclusive). The last bucket
/// also takes everything beyond the tracked range.
fn bucket_upper(i: usize) -> u64 {
    if i == BUCKETS - 1 {
        return u64::MAX;
    }
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let mantissa = (i % SUB + SUB) as u64;
    ((mantissa + 1) << shift) - 1
}

/// Buckets kept inline, each with its count of delays, before the
/// histogram gets them. A busy partition's delays (about a round on the
/// first poll of a turn, about a poll's length on the tasks it re-queued,
/// each spread over a few 12.5 % buckets by the machine's jitter) take
/// about 10 buckets on this project's VMs, and each time it sleeps and is
/// woken among many others, the wait for its first turn lands wherever in
/// a round: one more bucket per wake. With 12, 10,000 busy tenants that
/// paused a few times all made their histogram: 2.2-2.6 KB more RSS
/// each, some 16-24 MB in all, whose page faults and cold lines cost them
/// 3-8 % of the core in the seconds they were made (`--bench tenants`;
/// with 8, most made it even without pauses). With 28 the RSS grows by
/// 28 B per tenant over the same run, and the statistics take three cache
/// lines instead of two.
const PENDING: usize = 28;
/// Buckets kept inline once the histogram exists: the list then only
/// batches its updates.
const PENDING_WITH_HISTOGRAM: usize = 12;
/// A pending entry is `bucket << 16 | count`; a count stops here.
const COUNT_MASK: u32 = 0xFFFF;

/// A pending entry's bucket and count.
fn unpack(entry: u32) -> (usize, u64) {
    ((entry >> 16) as usize, u64::from(entry & COUNT_MASK))
}

/// Statistics of one partition: poll counts, busy time, long polls,
/// migrations, the queued-task gauge and a scheduling-delay histogram.
///
/// Written by exactly one thread at a time (the core that owns the
/// partition; ownership changes are synchronised by the caller) and read
/// from any thread through [`snapshot`](Self::snapshot). Writes never block
/// and never use read-modify-write instructions.
///
/// Delays are counted inline, in up to 28 buckets with a count each, and
/// added to the 2.4 KiB histogram when a 29th bucket is needed; the
/// histogram is allocated by the first such batch, and gets later ones 12
/// buckets at a time. A partition's delays cluster in a few buckets (a
/// busy tenant waits about one round, a task it re-queued about the poll
/// that did it, and each wake among thousands adds one), so most
/// partitions never make their histogram. A service with 100,000 tenant
/// partitions, most of them idle, pays for histograms only where there is
/// something to measure, and one with 10,000 busy tenants on a core does
/// not touch a histogram (a cache and TLB miss, each turn a different
/// partition's, some 17 µs in this project's VM) every few turns: with a
/// batch of 16 delays flushed whole, that was still 3-11 % of the core.
/// Percentiles read the same either way.
pub struct PartitionStats {
    polls: AtomicU64,
    busy_ns: AtomicU64,
    long_polls: AtomicU64,
    migrations: AtomicU64,
    queued: AtomicUsize,
    delay_max: AtomicU64,
    /// `pending_len` buckets with their counts (`bucket << 16 | count`)
    /// of delays not yet in the histogram.
    pending: [AtomicU32; PENDING],
    pending_len: AtomicU8,
    /// Log-linear histogram of scheduling delays in nanoseconds, made by
    /// the first batch.
    delay_buckets: OnceLock<Box<[AtomicU64; BUCKETS]>>,
}

/// A histogram's buckets, every one written: zeroed memory may come
/// untouched from the OS, and each of its pages would otherwise fault
/// (microseconds in a VM) on its first count, later, inside some turn.
fn touched() -> Box<[AtomicU64; BUCKETS]> {
    let h = Box::new([const { AtomicU64::new(0) }; BUCKETS]);
    for c in h.iter() {
        c.store(0, Relaxed);
    }
    h
}

/// Adds `n` to a counter that has a single writer.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

/// [`bump`], publishing with `Release` what the writer stored before.
#[inline]
fn bump_release(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Release);
}

impl PartitionStats {
    /// All counters zero, histogram empty.
    pub fn new() -> Self {
        PartitionStats {
            polls: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            long_polls: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            delay_max: AtomicU64::new(0),
            pending: [const { AtomicU32::new(0) }; PENDING],
            pending_len: AtomicU8::new(0),
            delay_buckets: OnceLock::new(),
        }
    }

    /// Counts one finished poll that took `poll_ns` nanoseconds; `long`
    /// says whether it ran past the stall threshold.
    #[inline]
    pub fn record_poll(&self, poll_ns: Nanos, long: bool) {
        bump(&self.polls, 1);
        bump(&self.busy_ns, poll_ns);
        if long {
            bump(&self.long_polls, 1);
        }
    }

    /// Records one scheduling delay (time from a task becoming runnable to
    /// it being handed out) into the histogram; the maximum is kept exactly.
    #[inline]
    pub fn record_delay(&self, delay_ns: Nanos) {
        if delay_ns > self.delay_max.load(Relaxed) {
            self.delay_max.store(delay_ns, Relaxed);
        }
        let bucket = bucket_of(delay_ns);
        let mut n = self.pending_len.load(Relaxed) as usize;
        for entry in &self.pending[..n] {
            let e = entry.load(Relaxed);
            let (b, count) = unpack(e);
            if b == bucket && count < u64::from(COUNT_MASK) {
                // A reader sees the count before or after; either is a
                // value that was really counted.
                entry.store(e + 1, Relaxed);
                return;
            }
        }
        // Until the histogram exists the list keeps its delays out of it
        // (28 buckets); once made, it only batches the histogram's
        // updates, and a short list is a short scan on every delay (with
        // 28, `--bench sched`'s `yield_many`, whose one partition spreads
        // its delays over dozens of buckets, took 8 % longer).
        let cap = if self.delay_buckets.get().is_some() {
            PENDING_WITH_HISTOGRAM
        } else {
            PENDING
        };
        if n >= cap {
            self.flush_pending();
            n = 0;
        }
        self.pending[n].store((bucket as u32) << 16 | 1, Relaxed);
        // Release: a reader that sees the length sees the entry.
        self.pending_len.store(n as u8 + 1, Release);
    }

    /// Adds the pending delays to the histogram (making it, the first
    /// time) and empties the pending list.
    #[cold]
    fn flush_pending(&self) {
        let n = self.pending_len.load(Relaxed) as usize;
        let all: [(usize, u64); PENDING] =
            std::array::from_fn(|i| unpack(self.pending[i].load(Relaxed)));
        let entries = &all[..n];
        // The list is emptied (Release) before the histogram gets its
        // delays (Release stores; the `OnceLock` publishes a new one): a
        // reader that sees any of them in the histogram (Acquire) also
        // sees the emptied list, so a concurrent snapshot may miss a
        // sample but never counts one twice.
        self.pending_len.store(0, Release);
        match self.delay_buckets.get() {
            Some(h) => {
                for &(b, n) in entries {
                    bump_release(&h[b], n);
                }
            }
            None => {
                self.delay_buckets.get_or_init(|| {
                    let h = touched();
                    for &(b, n) in entries {
                        bump(&h[b], n);
                    }
                    h
                });
            }
        }
    }

    /// The pending buckets with their counts. Read after the histogram: a
    /// flush empties the list before it adds to the histogram, so a
    /// concurrent reader may miss delays but never counts one twice.
    fn pending_counts(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let n = self.pending_len.load(Acquire) as usize;
        self.pending[..n].iter().map(|e| unpack(e.load(Relaxed)))
    }

    /// The bucket counts recorded so far, not counting pending delays.
    fn for_each_count(&self, mut f: impl FnMut(usize, u64)) {
        if let Some(h) = self.delay_buckets.get() {
            for (b, c) in h.iter().enumerate() {
                f(b, c.load(Acquire));
            }
        }
    }

    /// Counts one migration of the partition to another core. The
    /// scheduler never calls this itself: the runtime, which decides on
    /// migrations, counts them exactly once.
    pub fn add_migration(&self) {
        bump(&self.migrations, 1);
    }

    /// Sets the gauge of tasks waiting in the partition's queue. The
    /// scheduler keeps it current on every push and pop.
    #[inline]
    pub fn set_queued(&self, n: usize) {
        self.queued.store(n, Relaxed);
    }

    /// The busy time alone, without the cost of a full snapshot.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Relaxed))
    }

    /// The queued-tasks gauge alone, without the cost of a full snapshot.
    pub fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }

    /// Number of scheduling delays recorded so far.
    pub fn delay_count(&self) -> u64 {
        let mut counted = 0;
        self.for_each_count(|_, n| counted += n);
        counted + self.pending_counts().map(|(_, n)| n).sum::<u64>()
    }

    /// The scheduling delay at quantile `q` (clamped to `0.0..=1.0`): the
    /// upper bound of the histogram bucket holding the `ceil(q * n)`-th
    /// smallest sample, clamped to the exact maximum. Within 12.5% of the
    /// true value (exact below 16 ns). Zero when nothing was recorded.
    pub fn delay_quantile(&self, q: f64) -> Duration {
        let (counts, max) = self.load_histogram();
        Duration::from_nanos(quantile(&counts, q, max))
    }

    /// The bucket counts and the maximum, copied onto the stack so a
    /// snapshot does not allocate.
    fn load_histogram(&self) -> ([u64; BUCKETS], u64) {
        let mut counts = [0u64; BUCKETS];
        self.for_each_count(|b, n| counts[b] += n);
        for (b, n) in self.pending_counts() {
            counts[b] += n;
        }
        (counts, self.delay_max.load(Relaxed))
    }

    /// A copy of all statistics. Safe to call from any thread at any time;
    /// see the module docs for what a concurrent snapshot may observe.
    pub fn snapshot(&self) -> StatsSnapshot {
        let (counts, max) = self.load_histogram();
        StatsSnapshot {
            polls: self.polls.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            long_polls: self.long_polls.load(Relaxed),
            migrations: self.migrations.load(Relaxed),
            queued: self.queued.load(Relaxed),
            sched_delay_p50: Duration::from_nanos(quantile(&counts, 0.50, max)),
            sched_delay_p99: Duration::from_nanos(quantile(&counts, 0.99, max)),
            sched_delay_max: Duration::from_nanos(max),
        }
    }
}

/// Quantile over bucket counts; see [`PartitionStats::delay_quantile`].
fn quantile(counts: &[u64], q: f64, max: u64) -> u64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0;
    }
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return bucket_upper(i).min(max);
        }
    }
    // Only reachable if a concurrent writer raced the sum above.
    max
}

impl Default for PartitionStats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PartitionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PartitionStats")
            .field(&self.snapshot())
            .finish()
    }
}

/// A point-in-time copy of a partition's [`PartitionStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Task polls completed.
    pub polls: u64,
    /// Total time spent in those polls.
    pub busy: Duration,
    /// Polls that ran longer than the scheduler's stall threshold.
    pub long_polls: u64,
    /// Times the partition moved to another core.
    pub migrations: u64,
    /// Tasks waiting in the partition's queue.
    pub queued: usize,
    /// Median scheduling delay (within histogram precision, 12.5%).
    pub sched_delay_p50: Duration,
    /// 99th-percentile scheduling delay (within histogram precision, 12.5%).
    pub sched_delay_p99: Duration,
    /// Largest scheduling delay recorded (exact).
    pub sched_delay_max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        let check = |v: u64| {
            let i = bucket_of(v);
            assert!(i < BUCKETS);
            assert!(v <= bucket_upper(i), "v={v} i={i}");
            if i > 0 {
                assert!(v > bucket_upper(i - 1), "v={v} i={i}");
            }
            i
        };
        let mut prev = 0;
        for v in 0..5000u64 {
            let i = check(v);
            assert!(i == prev || i == prev + 1, "monotone and contiguous at {v}");
            prev = i;
        }
        for e in 1..=40 {
            let p = 1u64 << e;
            for v in [p - 1, p, p + 1] {
                check(v);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of((1 << 40) - 1), BUCKETS - 1);
    }

    #[test]
    fn relative_precision() {
        for v in [16u64, 17, 100, 999, 12_345, 1_000_000, 987_654_321] {
            let up = bucket_upper(bucket_of(v));
            assert!(
                up >= v && (up - v) as f64 <= v as f64 / 8.0,
                "v={v} up={up}"
            );
        }
    }

    /// Runs of delays in one bucket, delays scattered over neighbouring
    /// buckets and jumps count the same through the pending batches as
    /// straight into a histogram.
    #[test]
    fn batched_delays_count_like_the_histogram() {
        let s = PartitionStats::new();
        let mut counts = [0u64; BUCKETS];
        let mut max = 0;
        for i in 0..6_000u64 {
            let d = match i {
                0..=4_499 => 200_000_000 + i,
                // Neighbouring buckets, scattered around 230 ms.
                _ if i % 50 < 30 => 200_000_000 + (i * 7_919 % 60) * 1_000_000,
                _ if i % 50 < 40 => 1_000,
                _ => 5_000_000 * (i % 7 + 1),
            };
            s.record_delay(d);
            counts[bucket_of(d)] += 1;
            max = max.max(d);
            assert_eq!(s.delay_count(), i + 1);
            for q in [0.1, 0.5, 0.9, 0.99] {
                assert_eq!(
                    s.delay_quantile(q),
                    Duration::from_nanos(quantile(&counts, q, max))
                );
            }
        }
    }

    /// Three cache lines, and no histogram until a delay needs it.
    #[test]
    fn small_until_it_has_something_to_measure() {
        assert!(std::mem::size_of::<PartitionStats>() <= 192);
        let s = PartitionStats::new();
        s.record_poll(20_000, false);
        s.set_queued(1);
        assert!(s.delay_buckets.get().is_none());
    }

    /// The first delays counted inline and the histogram made by the first
    /// delay in a 29th bucket give the same counts and quantiles as
    /// recording them all in a histogram.
    #[test]
    fn the_first_delays_move_into_the_histogram() {
        let s = PartitionStats::new();
        // 31 buckets: the histogram is made part way.
        let delays: Vec<u64> = (0..200).map(|i| 1_000 * (i * 37 % 61 + 1)).collect();
        let mut buckets = std::collections::BTreeSet::new();
        for (k, &d) in delays.iter().enumerate() {
            s.record_delay(d);
            buckets.insert(bucket_of(d));
            let seen = &delays[..=k];
            assert_eq!(s.delay_count(), seen.len() as u64);
            let made = s.delay_buckets.get().is_some();
            assert_eq!(made, buckets.len() > PENDING);
            let cap = if made {
                PENDING_WITH_HISTOGRAM
            } else {
                PENDING
            };
            assert!(s.pending_len.load(Relaxed) as usize <= cap);
            let mut counts = [0u64; BUCKETS];
            for &v in seen {
                counts[bucket_of(v)] += 1;
            }
            let max = *seen.iter().max().unwrap();
            for q in [0.0, 0.5, 0.99, 1.0] {
                assert_eq!(
                    s.delay_quantile(q),
                    Duration::from_nanos(quantile(&counts, q, max)),
                    "q={q} after {} delays",
                    seen.len()
                );
            }
        }
        assert!(
            s.delay_buckets.get().is_some(),
            "never reached the histogram"
        );
    }

    /// Delays in a few buckets stay inline however many there are (a count
    /// that reaches its limit goes on in a new entry), and count exactly.
    #[test]
    fn delays_in_few_buckets_never_need_the_histogram() {
        let s = PartitionStats::new();
        let mut counts = [0u64; BUCKETS];
        let n = 3 * u64::from(COUNT_MASK) + 10;
        for i in 0..n {
            let d = if i % 3 == 0 { 230_000_000 } else { 300 };
            s.record_delay(d);
            counts[bucket_of(d)] += 1;
        }
        assert!(s.delay_buckets.get().is_none());
        assert_eq!(s.delay_count(), n);
        for q in [0.0, 0.3, 0.5, 0.67, 0.99, 1.0] {
            assert_eq!(
                s.delay_quantile(q),
                Duration::from_nanos(quantile(&counts, q, 230_000_000)),
                "q={q}"
            );
        }
    }

    /// The tests' jitter: a xorshift generator, the same every run.
    struct Jitter(u64);

    impl Jitter {
        fn new() -> Self {
            Jitter(0x2545_f491_4f6c_dd1d)
        }

        /// A value in `lo..hi`.
        fn between(&mut self, lo: u64, hi: u64) -> u64 {
            let x = &mut self.0;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            lo + *x % (hi - lo)
        }

        /// A busy tenant's turn among 10,000: its first poll waited about
        /// a round (560-700 ms), the two tasks it re-queued about a poll's
        /// length (18-30 µs), with a VM's jitter.
        fn busy_turn(&mut self) -> [u64; 3] {
            [
                self.between(560_000_000, 700_000_000),
                self.between(18_000, 30_000),
                self.between(18_000, 30_000),
            ]
        }
    }

    /// Records `delays` in `s`; returns the buckets they took.
    fn record_all(
        s: &PartitionStats,
        delays: impl IntoIterator<Item = u64>,
    ) -> std::collections::BTreeSet<usize> {
        delays
            .into_iter()
            .map(|d| {
                s.record_delay(d);
                bucket_of(d)
            })
            .collect()
    }

    /// A busy tenant's turns take ten buckets: all inline, no histogram
    /// (with 8 inline buckets it was made, and its first page faults cost
    /// 2-3 % of the core in `--bench tenants`).
    #[test]
    fn a_busy_tenants_delays_stay_inline() {
        let s = PartitionStats::new();
        let mut j = Jitter::new();
        let buckets = record_all(&s, (0..1_000).flat_map(|_| j.busy_turn()));
        assert_eq!(buckets.len(), 10, "the mix spans {} buckets", buckets.len());
        assert!(s.delay_buckets.get().is_none(), "the histogram was made");
        assert_eq!(s.delay_count(), 3_000);
    }

    /// The same tenant, paused and woken among 10,000 others 12 times: its
    /// first turn after each wake comes anywhere in a round (0-600 ms),
    /// one more bucket each time. Inline still; with 12 inline buckets the
    /// histogram was made (and with 10,000 such tenants, their 24 MB of
    /// histograms cost them 3-8 % of the core in `--bench tenants`).
    #[test]
    fn a_busy_tenant_that_pauses_keeps_its_delays_inline() {
        let s = PartitionStats::new();
        let mut j = Jitter::new();
        let mut delays = Vec::new();
        for _pause in 0..12 {
            delays.push(j.between(1_000_000, 600_000_000));
            for _ in 0..300 {
                delays.extend(j.busy_turn());
            }
        }
        let buckets = record_all(&s, delays);
        assert_eq!(buckets.len(), 20, "the mix spans {} buckets", buckets.len());
        assert!(s.delay_buckets.get().is_none(), "the histogram was made");
        assert_eq!(s.delay_count(), 12 * 901);
    }

    #[test]
    fn empty_snapshot_is_zero() {
        assert_eq!(PartitionStats::new().snapshot(), StatsSnapshot::default());
    }
}
