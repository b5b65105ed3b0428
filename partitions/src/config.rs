//! Scheduler-wide and per-partition settings.

use std::time::Duration;

/// How a [`Scheduler`](crate::Scheduler) chooses the next partition to run.
///
/// Both modes honour latency bounds (a runnable, eligible latency partition
/// always goes first); they differ in how the remaining partitions share
/// the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fairness {
    /// Weighted fair sharing of CPU time: the runnable partition with the
    /// lowest virtual runtime runs next, for at most
    /// [`SchedulerConfig::task_quota`] of poll time or until the tasks queued
    /// when its turn began are done, whichever comes first.
    #[default]
    Shares,
    /// The 2017 proposal's original algorithm: partitions take turns in ring
    /// order, one task per turn, regardless of how long tasks run or of
    /// their shares.
    RoundRobin,
}

/// The smallest valid number of shares.
pub const MIN_SHARES: u32 = 1;
/// The largest valid number of shares.
pub const MAX_SHARES: u32 = 10_000;
/// The shares a partition gets when nothing else is said; a partition with
/// this many shares accrues virtual runtime at the rate of real CPU time.
pub const DEFAULT_SHARES: u32 = 100;

/// Validates a shares value.
///
/// Returns `Ok(s)` when `MIN_SHARES <= s <= MAX_SHARES`, otherwise an error
/// message that names the rejected value and the valid range, suitable for
/// showing to a user unchanged.
pub fn check_shares(s: u32) -> Result<u32, String> {
    if (MIN_SHARES..=MAX_SHARES).contains(&s) {
        Ok(s)
    } else {
        Err(format!(
            "invalid shares {s}: shares must be in {MIN_SHARES}..={MAX_SHARES}"
        ))
    }
}

/// Clamps a shares value into `MIN_SHARES..=MAX_SHARES`.
///
/// The scheduler divides by shares, so it clamps even values the caller
/// already validated rather than trusting them.
pub fn clamp_shares(s: u32) -> u32 {
    s.clamp(MIN_SHARES, MAX_SHARES)
}

/// Settings of one [`Scheduler`](crate::Scheduler), fixed when it is built.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How the next partition is chosen. Default [`Fairness::Shares`].
    pub fairness: Fairness,
    /// In [`Fairness::Shares`] mode, a turn ends at the first task boundary
    /// after its accumulated poll time reaches this. A single poll is never
    /// interrupted, so a turn can overrun by at most one poll. It also sets
    /// the eligibility cap of latency partitions (twice this much virtual
    /// runtime ahead of the slowest runnable partition). Default 500 µs.
    pub task_quota: Duration,
    /// A poll that runs longer than this is counted in
    /// [`StatsSnapshot::long_polls`](crate::StatsSnapshot::long_polls).
    /// Default 10 ms.
    pub stall_threshold: Duration,
    /// In [`Fairness::Shares`] mode, how long a round of every runnable
    /// partition should take at most: with many runnable partitions a
    /// turn's quota shrinks to `round / runnable` (never below
    /// [`min_slice`](Self::min_slice)), so each gets a turn at least this
    /// often however many there are. Default 500 ms.
    ///
    /// A turn whose quota was cut this way also runs the tasks queued
    /// during it (a task that yields, a wake from within the partition)
    /// until the quota is used, where otherwise they wait for the
    /// partition's next turn: with thousands of partitions each turn's
    /// first touch of its partition is a cache miss, and a turn per poll
    /// of a yielding task would pay it on every poll.
    pub round: Duration,
    /// The shortest quota a turn is cut to (or `task_quota`, if that is
    /// shorter): below it, switching partitions would cost more than the
    /// turn does. Default 20 µs.
    pub min_slice: Duration,
    /// How much of a partition's debt (virtual runtime ahead of the floor,
    /// in CPU time at its shares) is forgiven per second it sleeps; at
    /// most one second per second. Default 1/64 s (15.6 ms).
    ///
    /// A poll cannot be interrupted, so one long poll (a cold cache, a
    /// page fault, the OS or the hypervisor taking the CPU away) is debt,
    /// and with thousands of runnable partitions a partition repays debt
    /// at its tiny share of the core: 158 µs of debt among 10,000 tenants
    /// is a 1.6 s wait. Forgiving a little debt for each second asleep lets
    /// a light sleeper wake within a turn after such an outlier, while a
    /// partition that alternates bursts and sleeps can take at most its
    /// share plus this fraction of the core (1/64, 1.6 %). `Duration::ZERO`
    /// gives strict shares.
    pub sleep_credit: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            fairness: Fairness::Shares,
            task_quota: Duration::from_micros(500),
            stall_threshold: Duration::from_millis(10),
            round: Duration::from_millis(500),
            min_slice: Duration::from_micros(20),
            sleep_credit: Duration::from_nanos(1_000_000_000 / 64),
        }
    }
}

/// Settings of one partition.
#[derive(Clone, Debug)]
pub struct PartitionParams {
    /// The partition's weight: over time, runnable partitions receive CPU
    /// time in proportion to their shares. Valid range
    /// `MIN_SHARES..=MAX_SHARES` (see [`check_shares`]); the scheduler clamps
    /// out-of-range values. Default [`DEFAULT_SHARES`].
    pub shares: u32,
    /// When set, the partition should start running within this long of
    /// becoming runnable, ahead of partitions without a bound, as long as it
    /// has not used far more than its share (see the crate docs on
    /// latency). Default `None`.
    pub latency: Option<Duration>,
}

impl Default for PartitionParams {
    fn default() -> Self {
        PartitionParams {
            shares: DEFAULT_SHARES,
            latency: None,
        }
    }
}

impl PartitionParams {
    /// Parameters with the given shares and no latency bound.
    pub fn with_shares(shares: u32) -> Self {
        PartitionParams {
            shares,
            latency: None,
        }
    }

    /// Returns `self` with the given latency bound.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }
}

/// Converts a duration to nanoseconds, saturating at `u64::MAX` (584 years)
/// so absurd configuration values cannot wrap into tiny ones.
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_range() {
        assert_eq!(check_shares(1), Ok(1));
        assert_eq!(check_shares(10_000), Ok(10_000));
        let e = check_shares(0).unwrap_err();
        assert!(e.contains('0') && e.contains("1..=10000"), "{e}");
        let e = check_shares(10_001).unwrap_err();
        assert!(e.contains("10001"), "{e}");
        assert_eq!(clamp_shares(0), 1);
        assert_eq!(clamp_shares(u32::MAX), 10_000);
    }

    #[test]
    fn defaults() {
        let c = SchedulerConfig::default();
        assert_eq!(c.fairness, Fairness::Shares);
        assert_eq!(c.task_quota, Duration::from_micros(500));
        assert_eq!(c.stall_threshold, Duration::from_millis(10));
        let p = PartitionParams::default();
        assert_eq!(p.shares, DEFAULT_SHARES);
        assert_eq!(p.latency, None);
    }
}
