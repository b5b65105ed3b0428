//! The runtime's partitions, by id and by name.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::partition::{Partition, PartitionInner, ShardedInner};

/// Every partition of a runtime.
#[derive(Default)]
pub(super) struct Registry {
    /// Named partitions (plain or sharded) live until the runtime ends.
    pub(super) by_name: HashMap<String, Partition>,
    /// Every partition a core schedules (roots, plain partitions, shards),
    /// for metrics and shutdown; anonymous ones drop out when their last
    /// handle and task are gone.
    pub(super) all: HashMap<u64, Weak<PartitionInner>>,
    /// Every sharded partition, by its own id (its shards are in `all`).
    pub(super) sharded: HashMap<u64, Weak<ShardedInner>>,
    pub(super) roots: Vec<Arc<PartitionInner>>,
    /// With `Builder::tokio_compat`: the partition whose turns are tokio's.
    pub(super) tokio: Option<Arc<ShardedInner>>,
    /// Size at which dead entries of `all` are swept next.
    sweep_at: usize,
    /// Size at which dead entries of `sharded` are swept next.
    sweep_sharded_at: usize,
}

impl Registry {
    pub(super) fn insert(&mut self, p: &Arc<PartitionInner>) {
        if self.all.len() >= self.sweep_at {
            // Amortised O(1): sweep when the map has doubled since the last
            // sweep.
            self.all.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = (self.all.len() * 2).max(64);
        }
        self.all.insert(p.id, Arc::downgrade(p));
    }

    /// Registers a sharded partition and its shards.
    pub(super) fn insert_sharded(&mut self, s: &Arc<ShardedInner>) {
        if self.sharded.len() >= self.sweep_sharded_at {
            self.sharded.retain(|_, w| w.strong_count() > 0);
            self.sweep_sharded_at = (self.sharded.len() * 2).max(64);
        }
        self.sharded.insert(s.id, Arc::downgrade(s));
        for shard in s.shards() {
            self.insert(shard);
        }
    }
}
