//! Plain-data snapshots of what the cores and partitions have done.
//!
//! Counters are kept by the core that owns them with single-writer relaxed
//! atomics (no read-modify-write on the hot path) and read from any thread
//! by [`Runtime::metrics`](crate::Runtime::metrics) and
//! [`Partition::metrics`](crate::partition::Partition::metrics). A snapshot
//! is not atomic as a whole: each figure is individually current.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The whole runtime: one entry per core, one per live partition (roots,
/// named partitions, and anonymous partitions that still have tasks).
///
/// A sharded partition (`Placement::EveryCore`) is listed shard by shard:
/// each shard is a partition of its own core, with its own id, its core,
/// the sharded partition's name, and
/// [`shard_of`](PartitionMetrics::shard_of) set to the sharded partition's
/// id. `Partition::metrics` on the sharded partition gives the sum.
#[derive(Clone, Debug, Default)]
pub struct RuntimeMetrics {
    /// Per core, by index.
    pub cores: Vec<CoreMetrics>,
    /// Per partition, by id; a sharded partition contributes one entry
    /// per shard.
    pub partitions: Vec<PartitionMetrics>,
}

impl RuntimeMetrics {
    /// The partition with this name, if any. For a sharded partition,
    /// whose shards all bear its name, this is the shard on the lowest
    /// core; [`shards`](RuntimeMetrics::shards) gives all of them, and
    /// `Partition::metrics` their sum.
    pub fn partition(&self, name: &str) -> Option<&PartitionMetrics> {
        self.partitions
            .iter()
            .filter(|p| p.name.as_deref() == Some(name))
            .min_by_key(|p| p.core)
    }

    /// The shards of the sharded partition with id `id`, by core (none if
    /// `id` is not a sharded partition's).
    pub fn shards(&self, id: u64) -> Vec<&PartitionMetrics> {
        let mut shards: Vec<_> = self
            .partitions
            .iter()
            .filter(|p| p.shard_of == Some(id))
            .collect();
        shards.sort_by_key(|p| p.core);
        shards
    }
}

/// One core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreMetrics {
    /// The core's index, `0..cores`.
    pub core: usize,
    /// Whether its thread is pinned to a CPU (false when pinning was off or
    /// the machine has no CPU of that index).
    pub pinned: bool,
    /// Time spent running scheduling turns (task polls and their
    /// bookkeeping).
    pub busy: Duration,
    /// Task polls.
    pub polls: u64,
    /// Times the core blocked (in `epoll_wait`, or `io_uring_enter` while
    /// stream operations were in flight) for lack of work.
    pub parks: u64,
    /// Tasks that reached this core through the injection queue (woken or
    /// spawned from another thread).
    pub remote_wakes: u64,
    /// The reservation this core serves, if it is reserved.
    pub reserved_for: Option<String>,
    /// Whether the core serves stream sockets through its own io_uring
    /// (see `Builder::io_uring`).
    pub io_uring: bool,
    /// Stream reads and writes (and their timeouts) completed on the
    /// core's ring.
    pub ring_completions: u64,
    /// Stream reads that found the ring's receive-buffer pool empty and
    /// were retried with a buffer of their own (a pool too small for the
    /// load shows here).
    pub pool_misses: u64,
}

/// One partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionMetrics {
    /// The partition's id.
    pub id: u64,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The core that owns it now.
    pub core: usize,
    /// Its CPU shares.
    pub shares: u32,
    /// Live tasks (spawned and not yet completed or dropped).
    pub tasks: usize,
    /// Tasks waiting to run (in its run queue or its injection queue).
    pub queued: usize,
    /// Task polls.
    pub polls: u64,
    /// CPU time its polls took.
    pub busy: Duration,
    /// Median time from becoming runnable to being polled.
    pub sched_delay_p50: Duration,
    /// 99th percentile of the same.
    pub sched_delay_p99: Duration,
    /// Largest scheduling delay seen.
    pub sched_delay_max: Duration,
    /// Polls that ran longer than the stall threshold (default 10 ms).
    pub long_polls: u64,
    /// Times the partition moved to another core (always 0 for a shard,
    /// which never moves).
    pub migrations: u64,
    /// For a shard of a sharded partition (`Placement::EveryCore`): the
    /// sharded partition's id. `None` for every other partition, and in
    /// the sum `Partition::metrics` gives for a sharded partition.
    pub shard_of: Option<u64>,
}

impl PartitionMetrics {
    /// Adds a shard's figures to this sum over the shards of a sharded
    /// partition: counts and times add up, and each scheduling delay is
    /// the largest of the shards' (percentiles of different cores cannot
    /// be merged exactly; the largest is the bound that holds for all).
    pub(crate) fn add_shard(&mut self, shard: &PartitionMetrics) {
        self.tasks += shard.tasks;
        self.queued += shard.queued;
        self.polls += shard.polls;
        self.busy += shard.busy;
        self.sched_delay_p50 = self.sched_delay_p50.max(shard.sched_delay_p50);
        self.sched_delay_p99 = self.sched_delay_p99.max(shard.sched_delay_p99);
        self.sched_delay_max = self.sched_delay_max.max(shard.sched_delay_max);
        self.long_polls += shard.long_polls;
        self.migrations += shard.migrations;
    }
}

/// A core's counters, written only by the core's own thread (on lines of
/// their own, so other threads' writes nearby cannot slow the core).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CoreStats {
    pub(crate) pinned: AtomicBool,
    busy_ns: AtomicU64,
    polls: AtomicU64,
    parks: AtomicU64,
    remote_wakes: AtomicU64,
    pub(crate) io_uring: AtomicBool,
    ring_completions: AtomicU64,
    pool_misses: AtomicU64,
    /// Tasks queued in the core's scheduler at the end of its last turn.
    pub(crate) queued: AtomicU64,
    /// Partitions attached to the core's scheduler.
    pub(crate) partitions: AtomicU64,
    /// Exponentially weighted busy fraction (f64 bits), for `LeastLoaded`.
    load: AtomicU64,
    /// Exponentially weighted count of partitions wanting the CPU (f64
    /// bits), for the balancer.
    demand: AtomicU64,
}

/// Single-writer increment: a relaxed load and store, no locked
/// instruction.
#[inline]
fn bump(a: &AtomicU64, by: u64) {
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl CoreStats {
    pub(crate) fn add_turn(&self, busy_ns: u64, polls: u64) {
        bump(&self.busy_ns, busy_ns);
        bump(&self.polls, polls);
    }

    pub(crate) fn add_park(&self) {
        bump(&self.parks, 1);
    }

    pub(crate) fn add_remote_wakes(&self, n: u64) {
        bump(&self.remote_wakes, n);
    }

    pub(crate) fn add_ring_completion(&self) {
        bump(&self.ring_completions, 1);
    }

    pub(crate) fn add_pool_miss(&self) {
        bump(&self.pool_misses, 1);
    }

    pub(crate) fn busy_ns(&self) -> u64 {
        self.busy_ns.load(Ordering::Relaxed)
    }

    pub(crate) fn load(&self) -> f64 {
        f64::from_bits(self.load.load(Ordering::Relaxed))
    }

    pub(crate) fn set_load(&self, load: f64) {
        self.load.store(load.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn demand(&self) -> f64 {
        f64::from_bits(self.demand.load(Ordering::Relaxed))
    }

    pub(crate) fn set_demand(&self, demand: f64) {
        self.demand.store(demand.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, core: usize, reserved_for: Option<String>) -> CoreMetrics {
        CoreMetrics {
            core,
            pinned: self.pinned.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            polls: self.polls.load(Ordering::Relaxed),
            parks: self.parks.load(Ordering::Relaxed),
            remote_wakes: self.remote_wakes.load(Ordering::Relaxed),
            reserved_for,
            io_uring: self.io_uring.load(Ordering::Relaxed),
            ring_completions: self.ring_completions.load(Ordering::Relaxed),
            pool_misses: self.pool_misses.load(Ordering::Relaxed),
        }
    }
}
