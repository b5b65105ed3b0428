//! The runtime's partitions, by id and by name.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::partition::PartitionInner;

/// Every partition of a runtime.
#[derive(Default)]
pub(super) struct Registry {
    /// Named partitions live until the runtime ends.
    pub(super) by_name: HashMap<String, Arc<PartitionInner>>,
    /// Every partition, for metrics and shutdown; anonymous ones drop out
    /// when their last handle and task are gone.
    pub(super) all: HashMap<u64, Weak<PartitionInner>>,
    pub(super) roots: Vec<Arc<PartitionInner>>,
    /// Size at which dead entries of `all` are swept next.
    sweep_at: usize,
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
}
