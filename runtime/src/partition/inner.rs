//! The shared state of one partition, behind every [`Partition`] handle
//! and in every task's header.
//!
//! [`Partition`]: super::Partition

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_deque::Injector;
use fairloop_partitions::PartitionStats;
use parking_lot::Mutex;

use super::route::Route;
use super::sharded::ShardOf;
use crate::context::on_core;
use crate::metrics::PartitionMetrics;
use crate::runtime::RuntimeInner;
use crate::task::{self, JoinHandle, Task, TaskSet};

/// `slot` value of a partition that is in no scheduler.
pub(crate) const NOT_ATTACHED: usize = usize::MAX;

/// The shared state of one partition.
pub(crate) struct PartitionInner {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    /// Leaves its core's scheduler when the last task ends.
    pub(crate) anonymous: bool,
    pub(crate) shares: AtomicU32,
    pub(crate) latency: Option<Duration>,
    pub(crate) pinned: AtomicBool,
    /// Which core owns it, whether it is moving, whether its owner was
    /// told about foreign work.
    pub(crate) route: Route,
    /// This partition's key in its owner's scheduler, or [`NOT_ATTACHED`].
    /// Read and written only on the owner's thread.
    pub(crate) slot: AtomicUsize,
    /// Tasks woken or spawned from threads other than the owner's; made
    /// by the first such wake, and boxed: an injector is 1.3 KiB with its
    /// first block (its head and tail on cache lines of their own), and
    /// most tenant partitions are only ever woken on their own core.
    injector: OnceLock<Box<Injector<Task>>>,
    pub(crate) tasks: Mutex<TaskSet>,
    pub(crate) stats: Arc<PartitionStats>,
    pub(crate) runtime: Arc<RuntimeInner>,
    /// For a shard of a sharded partition: that partition.
    pub(crate) shard_of: Option<ShardOf>,
}

/// What a new partition is made of, after validation.
pub(crate) struct NewPartition {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    pub(crate) anonymous: bool,
    pub(crate) shares: u32,
    pub(crate) latency: Option<Duration>,
    pub(crate) pinned: bool,
    pub(crate) core: usize,
    pub(crate) shard_of: Option<ShardOf>,
}

impl PartitionInner {
    pub(crate) fn new(runtime: Arc<RuntimeInner>, p: NewPartition) -> Self {
        PartitionInner {
            id: p.id,
            name: p.name,
            anonymous: p.anonymous,
            shares: AtomicU32::new(p.shares),
            latency: p.latency,
            pinned: AtomicBool::new(p.pinned),
            route: Route::new(p.core),
            slot: AtomicUsize::new(NOT_ATTACHED),
            injector: OnceLock::new(),
            tasks: Mutex::new(TaskSet::default()),
            stats: Arc::new(PartitionStats::new()),
            runtime,
            shard_of: p.shard_of,
        }
    }

    /// Sets the shares (already validated); the owning core applies them
    /// from its next turn.
    pub(crate) fn set_shares(self: &Arc<Self>, shares: u32) {
        // Release: the core that reads it (applying it, or adopting the
        // partition) sees the new value.
        self.shares.store(shares, Ordering::Release);
        self.runtime.apply_shares(self);
    }

    /// How error messages name it: `"name"`, or its id.
    pub(crate) fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?}"),
            None => self.id.to_string(),
        }
    }

    /// Announces this partition to its owner after a push onto
    /// `injector`, once per batch (see [`Route::announce`]).
    #[inline]
    pub(crate) fn notify_owner(self: &Arc<Self>) {
        let Some(owner) = self.route.announce() else {
            return;
        };
        let core = self.runtime.remote(owner);
        if self.latency.is_some() {
            core.latency_pending.store(true, Ordering::Release);
        }
        core.pending.push(self.clone());
        core.unpark();
    }

    /// The injection queue, made on first use (a foreign wake or spawn).
    pub(crate) fn injector(&self) -> &Injector<Task> {
        self.injector.get_or_init(|| Box::new(Injector::new()))
    }

    /// The injection queue if a foreign wake ever made it.
    #[inline]
    pub(crate) fn injected(&self) -> Option<&Injector<Task>> {
        self.injector.get().map(|b| &**b)
    }

    /// `spawn_local` ties the partition to its core for good.
    pub(crate) fn pin_for_local(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// The core that owns the partition now.
    #[inline]
    pub(crate) fn owner(&self) -> usize {
        self.route.owner()
    }

    /// Called when the task set becomes empty: an anonymous partition then
    /// leaves its core's scheduler (on the owner's thread, between turns).
    pub(crate) fn on_last_task_gone(self: &Arc<Self>) {
        if !self.anonymous {
            return;
        }
        on_core(&self.runtime, self.owner(), |core| {
            core.retire_later(self.clone())
        });
    }

    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        task::spawn_into(self.clone(), future, false)
    }

    pub(crate) fn metrics(&self) -> PartitionMetrics {
        let s = self.stats.snapshot();
        PartitionMetrics {
            id: self.id,
            name: self.name.clone(),
            core: self.owner(),
            shares: self.shares.load(Ordering::Relaxed),
            tasks: self.tasks.lock().wakers.len(),
            queued: s.queued + self.injected().map_or(0, Injector::len),
            polls: s.polls,
            busy: s.busy,
            sched_delay_p50: s.sched_delay_p50,
            sched_delay_p99: s.sched_delay_p99,
            sched_delay_max: s.sched_delay_max,
            long_polls: s.long_polls,
            migrations: s.migrations,
            shard_of: self.shard_of.as_ref().map(|s| s.id),
        }
    }
}
