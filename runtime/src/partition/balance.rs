//! Automatic rebalancing: moving partitions off overloaded cores.
//!
//! With [`Builder::rebalance(Some(every))`](crate::Builder::rebalance) a
//! balancer thread looks at the cores every `every` and, when one is much
//! busier than another, migrates one partition from the busiest to the
//! idlest unreserved core, exactly as [`Partition::migrate_to`] would.
//!
//! **Load** is *demand*, not busy time: each core samples how many of its
//! partitions want the CPU (runnable or running) every 10 ms and keeps an
//! exponentially weighted average; a parked core has none. Busy time cannot
//! tell two saturated cores apart, demand can: four CPU-bound partitions on
//! one core and none on the other read 4 and 0.
//!
//! **Which partition**: each migratable partition of the busiest core
//! weighs its share of that core's CPU time in the last interval times the
//! core's demand (a CPU-bound partition among k weighs about 1). The one
//! whose weight is closest to half the gap moves, so a move narrows the gap
//! instead of flipping it.
//!
//! **No ping-pong**: a move needs the gap to exceed the partition's weight
//! by a margin (so 2:1 partitions on two cores stay put — moving one would
//! give 1:2), the same busiest/idlest pair on two consecutive looks, and a
//! partition that moved rests for several intervals before it may move
//! again. After a move the balancer waits until the demand figures can
//! show it before deciding anything else, so it does not overshoot. Pinned
//! partitions, the shards of sharded partitions, partitions in transit
//! and reserved cores are never touched.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::PartitionInner;
use crate::reactor::Control;
use crate::runtime::RuntimeInner;

/// A move needs `gap >= weight + MARGIN`.
const MARGIN: f64 = 0.5;
/// Partitions weighing less than this are not worth moving.
const MIN_WEIGHT: f64 = 0.25;
/// Consecutive looks that must agree before a move.
const STREAK: u32 = 2;
/// Looks a partition rests after it moved.
const COOLDOWN: u64 = 5;
/// After a move, the demand figures (a 10 ms-sampled average) need this
/// long to show it; deciding earlier would see the old imbalance and
/// overshoot.
const SETTLE: Duration = Duration::from_millis(150);

/// Starts the balancer thread; it stops when `stop` is disconnected or the
/// runtime is gone.
pub(crate) fn spawn(
    runtime: Weak<RuntimeInner>,
    every: Duration,
    stop: Receiver<()>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("fairloop-balancer".into())
        .spawn(move || {
            let mut balancer = Balancer::default();
            // A baseline, so that the first look already sees an interval's
            // worth of CPU time.
            if let Some(runtime) = runtime.upgrade() {
                balancer.record_busy(&runtime.partitions());
            }
            loop {
                match stop.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(runtime) = runtime.upgrade() else {
                    return;
                };
                if runtime.is_closed() {
                    return;
                }
                balancer.look(&runtime, every);
            }
        })
}

#[derive(Default)]
struct Balancer {
    looks: u64,
    /// Busy time of each partition at the previous look, by id.
    last_busy: HashMap<u64, Duration>,
    /// Look at which each partition last moved, by id.
    moved_at: HashMap<u64, u64>,
    /// The (busiest, idlest) pair seen last, and for how many looks.
    pair: Option<(usize, usize)>,
    streak: u32,
    /// No decision before this (set after a move).
    settle_until: Option<Instant>,
}

struct Candidate {
    partition: Arc<PartitionInner>,
    weight: f64,
}

impl Balancer {
    /// Each partition's CPU time since the previous call (zero for one not
    /// seen before), remembering the current figures.
    fn record_busy(&mut self, partitions: &[Arc<PartitionInner>]) -> HashMap<u64, Duration> {
        let mut deltas = HashMap::with_capacity(partitions.len());
        let mut last_busy = HashMap::with_capacity(partitions.len());
        for p in partitions {
            let busy = p.stats.snapshot().busy;
            let before = self.last_busy.get(&p.id).copied().unwrap_or(busy);
            deltas.insert(p.id, busy.saturating_sub(before));
            last_busy.insert(p.id, busy);
        }
        self.last_busy = last_busy;
        deltas
    }

    fn look(&mut self, runtime: &Arc<RuntimeInner>, every: Duration) {
        self.looks += 1;
        let partitions = runtime.partitions();
        let deltas = self.record_busy(&partitions);
        if self.settle_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.moved_at
            .retain(|_, at| self.looks.saturating_sub(*at) <= COOLDOWN);

        let demand = |c: usize| runtime.remote(c).demand();
        let unreserved: Vec<usize> = runtime.config.unreserved_cores().collect();
        let Some(&busiest) = unreserved
            .iter()
            .max_by(|&&a, &&b| demand(a).total_cmp(&demand(b)).then(b.cmp(&a)))
        else {
            return;
        };
        let Some(&idlest) = unreserved
            .iter()
            .min_by(|&&a, &&b| demand(a).total_cmp(&demand(b)).then(a.cmp(&b)))
        else {
            return;
        };
        let gap = demand(busiest) - demand(idlest);
        if busiest == idlest || gap < MIN_WEIGHT + MARGIN {
            self.pair = None;
            self.streak = 0;
            return;
        }

        let on_busiest: Vec<_> = partitions
            .iter()
            .filter(|p| p.owner() == busiest && !p.route.in_transit())
            .collect();
        let core_busy: f64 = on_busiest.iter().map(|p| deltas[&p.id].as_secs_f64()).sum();
        if core_busy <= 0.0 {
            return;
        }
        let best = on_busiest
            .iter()
            // Shards are pinned; the second test says so once more, so that
            // a shard can never become a candidate whatever sets the flag.
            .filter(|p| {
                !p.pinned.load(Ordering::Acquire)
                    && p.shard_of.is_none()
                    && !self.moved_at.contains_key(&p.id)
            })
            .map(|p| Candidate {
                partition: Arc::clone(p),
                weight: deltas[&p.id].as_secs_f64() / core_busy * demand(busiest),
            })
            .filter(|c| c.weight >= MIN_WEIGHT && gap >= c.weight + MARGIN)
            .min_by(|a, b| {
                (a.weight - gap / 2.0)
                    .abs()
                    .total_cmp(&(b.weight - gap / 2.0).abs())
            });
        let Some(best) = best else {
            self.pair = None;
            self.streak = 0;
            return;
        };
        if self.pair == Some((busiest, idlest)) {
            self.streak += 1;
        } else {
            self.pair = Some((busiest, idlest));
            self.streak = 1;
        }
        if self.streak < STREAK {
            return;
        }
        self.streak = 0;
        self.pair = None;
        if runtime.check_migration(&best.partition, idlest).is_ok() {
            self.moved_at.insert(best.partition.id, self.looks);
            self.settle_until = Some(Instant::now() + SETTLE.max(every * 2));
            runtime
                .remote(busiest)
                .send(Control::Migrate(best.partition, idlest));
        }
    }
}
