//! [`Handle`]: spawning onto a runtime from any thread.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use super::RuntimeInner;
use crate::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use crate::partition::Partition;
use crate::task::JoinHandle;

/// A cheap, cloneable, `Send + Sync` handle to a runtime: spawn onto it from
/// any thread. Spawning after the runtime shut down yields a
/// [`JoinError`](crate::JoinError) that
/// [`is_cancelled`](crate::JoinError::is_cancelled).
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl Handle {
    /// Spawns `future` into the root partition of the next unreserved core,
    /// round robin.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let core = self.inner.next_unreserved(&self.inner.spawn_rr);
        self.inner.spawn_root(core, future)
    }

    /// Spawns `future` into the root partition of `core`. A core that does
    /// not exist, or a reserved one, gives a handle whose join fails with a
    /// message saying so (see [`Handle::try_spawn_on`] for an `io::Result`).
    pub fn spawn_on<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn_root(core, future)
    }

    /// Like [`Handle::spawn_on`], but reports a bad core as
    /// `ErrorKind::InvalidInput` instead of through the handle.
    pub fn try_spawn_on<F>(&self, core: usize, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let root = self.inner.check_spawn_core(core)?;
        Ok(root.spawn(future))
    }

    /// The root partition of `core`, or `None` for a core that does not
    /// exist.
    pub fn root_partition(&self, core: usize) -> Option<Partition> {
        self.inner.root(core).map(Partition::from_inner)
    }

    /// The number of cores.
    pub fn cores(&self) -> usize {
        self.inner.config.cores
    }

    /// A snapshot of every core's and partition's metrics. It costs
    /// O(partitions): with thousands of them, prefer
    /// [`core_metrics`](Handle::core_metrics),
    /// [`top_partitions`](Handle::top_partitions) and
    /// [`partition`](Handle::partition).
    pub fn metrics(&self) -> RuntimeMetrics {
        self.inner.metrics()
    }

    /// Every core's metrics, by index (O(cores)).
    pub fn core_metrics(&self) -> Vec<CoreMetrics> {
        self.inner.core_metrics()
    }

    /// The `n` partitions with the most busy time (CPU time of their
    /// polls), most busy first, at a cost that does not grow with the
    /// number of partitions: each core keeps a leaderboard of its 64
    /// busiest, refreshed every 10 ms while it runs. So the list is exact
    /// for `n` up to 64, and up to 10 ms old; a partition with no busy
    /// time yet may be missing.
    pub fn top_partitions(&self, n: usize) -> Vec<PartitionMetrics> {
        self.inner.top_partitions(n)
    }

    /// The live partition with id `id` (O(1)); `None` once it is gone.
    /// The id of a sharded partition gives the sharded partition; a
    /// shard's id gives that shard (as [`Partition::shard`] would).
    pub fn partition(&self, id: u64) -> Option<Partition> {
        self.inner.partition_by_id(id)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("cores", &self.cores())
            .finish()
    }
}
