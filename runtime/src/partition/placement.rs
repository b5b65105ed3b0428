//! Placement: which core a new partition starts on.
//!
//! A partition is placed once, when it is created; afterwards only
//! [`migrate_to`](crate::partition::Partition::migrate_to) and the balancer
//! move it. Reserved cores (see
//! [`Builder::reserve_core`](crate::Builder::reserve_core)) are exclusive:
//! only `Placement::Reserved(name)` lands there — `Local` from a task on a
//! reserved core, `RoundRobin`, `LeastLoaded` and `EveryCore` all skip
//! them. `EveryCore` places one shard on each of the other cores (see
//! `sharded.rs`), so it never comes to [`RuntimeInner::place`].

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::invalid;
use crate::runtime::{Config, RuntimeInner};

/// Where a new partition is placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On the core of the task that creates it (from a `spawn_blocking`
    /// closure: the core of the partition that started it; from a reserved
    /// core: the next unreserved core).
    #[default]
    Local,
    /// On core `i`. Pinned unless the builder says `.pinned(false)`.
    Core(usize),
    /// On the core reserved under this name with
    /// [`Builder::reserve_core`](crate::Builder::reserve_core). Pinned.
    Reserved(String),
    /// On the non-reserved cores in turn.
    RoundRobin,
    /// On the non-reserved core with the lowest recent load (busy time plus
    /// runnable backlog); ties go to the core with fewest partitions.
    LeastLoaded,
    /// On every core not reserved with
    /// [`Builder::reserve_core`](crate::Builder::reserve_core): a *sharded*
    /// partition, one shard per such core, each a partition of its core's
    /// scheduler with the sharded partition's name, shares and latency.
    /// A task spawned through the sharded partition's handle goes to the
    /// shard of the caller's core, or to the shards in turn from a core
    /// (or thread) without one; shards never move. See
    /// [`Partition`](crate::partition::Partition#sharded-partitions).
    /// Pinned (`.pinned(false)` is an error).
    EveryCore,
}

impl Config {
    pub(crate) fn check_placement(&self, p: &Placement) -> io::Result<()> {
        match p {
            Placement::Core(i) if *i >= self.cores => Err(invalid(format!(
                "Placement::Core({i}): the runtime has {} core(s), numbered 0..{}",
                self.cores, self.cores
            ))),
            Placement::Core(i) => match &self.reserved[*i] {
                Some(r) => Err(invalid(format!(
                    "Placement::Core({i}): core {i} is reserved for {r:?}; use Placement::Reserved({r:?})"
                ))),
                None => Ok(()),
            },
            Placement::Reserved(name) => match self.reserved_core(name) {
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "Placement::Reserved({name:?}): no core is reserved under that name \
                     (Builder::reserve_core makes reservations)"
                ))),
            },
            _ => Ok(()),
        }
    }

    pub(crate) fn reserved_core(&self, name: &str) -> Option<usize> {
        self.reserved
            .iter()
            .position(|r| r.as_deref() == Some(name))
    }
}

impl RuntimeInner {
    /// The core a validated placement resolves to.
    pub(crate) fn place(&self, placement: &Placement, local_core: usize) -> usize {
        match placement {
            Placement::Core(i) => *i,
            Placement::Reserved(name) => self.config.reserved_core(name).expect("validated"),
            // `EveryCore` never comes here: a sharded partition places one
            // shard on each unreserved core itself (`create_partition`),
            // and an anonymous partition under an `EveryCore` default is
            // created `Local`. Were it asked, `Local` is the right answer.
            Placement::Local | Placement::EveryCore => {
                if self.config.is_reserved(local_core) {
                    // A task on a reserved core creating a partition without
                    // saying where: keep the reservation exclusive.
                    self.next_unreserved(&self.place_rr)
                } else {
                    local_core
                }
            }
            Placement::RoundRobin => self.next_unreserved(&self.place_rr),
            Placement::LeastLoaded => self.least_loaded(),
        }
    }

    pub(crate) fn next_unreserved(&self, counter: &AtomicUsize) -> usize {
        let n = self.config.cores;
        loop {
            let i = counter.fetch_add(1, Ordering::Relaxed) % n;
            if !self.config.is_reserved(i) {
                return i;
            }
        }
    }

    fn least_loaded(&self) -> usize {
        let mut best: Option<(f64, u64, usize)> = None;
        for c in self.config.unreserved_cores().map(|i| self.remote(i)) {
            let score = c.load() + c.stats.queued.load(Ordering::Relaxed) as f64 / 1000.0;
            let parts = c.stats.partitions.load(Ordering::Relaxed);
            let better = match best {
                None => true,
                Some((s, p, _)) => score < s || (score == s && parts < p),
            };
            if better {
                best = Some((score, parts, c.index));
            }
        }
        best.map(|b| b.2).unwrap_or(0)
    }
}
