//! Sharded partitions (`Placement::EveryCore`): one partition per
//! unreserved core under one name, as Seastar's scheduling groups exist on
//! every shard.
//!
//! A sharded partition is a set of *shards*: on every core not reserved
//! with `Builder::reserve_core`, one ordinary partition, pinned to that
//! core, bearing the sharded partition's name, shares and latency bound.
//! Each shard is scheduled by its core like any other partition, so
//! shares and latency hold per shard, against the other partitions of the
//! same core; nothing here touches a scheduler, a route or a wake. What
//! this file adds is the whole ([`ShardedInner`]): which shard a spawn
//! goes to, setting the shares of every shard, and the sum of their
//! metrics.
//!
//! **Routing** ([`ShardedInner::target`]). A spawn from a core that hosts
//! a shard goes to that shard (a local spawn, no cross-core traffic); one
//! from a `spawn_blocking` closure goes to the shard of the core that owns
//! the closure's partition; one from anywhere else (a reserved core,
//! another runtime's core, a plain thread) goes to the shards in turn.
//! Tasks spawned inside a shard (`fairloop::spawn`) stay in it, as in any
//! partition: a task belongs to its shard for life.
//!
//! **Lifetime.** The whole holds its shards; a shard names the whole only
//! weakly ([`ShardOf`]), so no cycle keeps them alive. The registry keeps
//! a named sharded partition until the runtime ends, as any named one; an
//! unnamed one lives while a handle to it does, and each of its shards
//! while a handle or a task of it does.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{NewPartition, PartitionInner};
use crate::context;
use crate::metrics::PartitionMetrics;
use crate::runtime::RuntimeInner;

/// A sharded partition: its shards and what they share.
pub(crate) struct ShardedInner {
    /// Its own id, unique in the runtime like any partition's (the shards
    /// have the next ids, by core).
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    /// The shares given to every shard at creation or by the last
    /// `set_shares` on the whole (a shard's own `set_shares` changes only
    /// that shard).
    shares: AtomicU32,
    /// Per core, by index: its shard; `None` on reserved cores.
    by_core: Box<[Option<Arc<PartitionInner>>]>,
    /// The cores that have a shard, ascending.
    cores: Box<[usize]>,
    /// Round robin over `cores` for spawns from where no shard is.
    next: AtomicUsize,
    pub(crate) runtime: Arc<RuntimeInner>,
}

/// What a shard knows of the sharded partition it belongs to.
pub(crate) struct ShardOf {
    /// The sharded partition's id.
    pub(crate) id: u64,
    /// Weak: the whole holds its shards.
    pub(crate) whole: Weak<ShardedInner>,
}

impl ShardedInner {
    /// A sharded partition with id `id` and one shard on each of `cores`
    /// (ascending: every unreserved core, for a user's partition), the
    /// shards taking the ids `id + 1 ..` by core. The caller registers all
    /// of them (under the registry's lock, with the ids reserved).
    pub(crate) fn new(
        runtime: &Arc<RuntimeInner>,
        id: u64,
        name: Option<String>,
        shares: u32,
        latency: Option<Duration>,
        cores: Box<[usize]>,
    ) -> Arc<ShardedInner> {
        Arc::new_cyclic(|whole| {
            let mut by_core = vec![None; runtime.config.cores].into_boxed_slice();
            for (k, &core) in cores.iter().enumerate() {
                by_core[core] = Some(Arc::new(PartitionInner::new(
                    runtime.clone(),
                    NewPartition {
                        id: id + 1 + k as u64,
                        name: name.clone(),
                        anonymous: false,
                        shares,
                        latency,
                        pinned: true,
                        core,
                        shard_of: Some(ShardOf {
                            id,
                            whole: whole.clone(),
                        }),
                    },
                )));
            }
            ShardedInner {
                id,
                name,
                shares: AtomicU32::new(shares),
                by_core,
                cores,
                next: AtomicUsize::new(0),
                runtime: runtime.clone(),
            }
        })
    }

    /// The shards, by core.
    pub(crate) fn shards(&self) -> impl Iterator<Item = &Arc<PartitionInner>> {
        self.by_core.iter().flatten()
    }

    /// The cores that have a shard, ascending (never empty: a runtime
    /// keeps at least one core unreserved).
    pub(crate) fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// The shard on `core`, if `core` has one.
    pub(crate) fn shard(&self, core: usize) -> Option<&Arc<PartitionInner>> {
        self.by_core.get(core)?.as_ref()
    }

    /// The shard a spawn from the calling thread goes to (see the module
    /// docs): the caller's core's, or the next in turn.
    pub(crate) fn target(&self) -> &Arc<PartitionInner> {
        if let Some(shard) = context::local_core(&self.runtime).and_then(|c| self.shard(c)) {
            return shard;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.cores.len();
        self.shard(self.cores[k])
            .expect("every core in `cores` has a shard")
    }

    /// The shares set for every shard.
    pub(crate) fn shares(&self) -> u32 {
        self.shares.load(Ordering::Relaxed)
    }

    /// Gives every shard `shares` (already validated); each owning core
    /// applies it from its next turn.
    pub(crate) fn set_shares(&self, shares: u32) {
        self.shares.store(shares, Ordering::Relaxed);
        for shard in self.shards() {
            shard.set_shares(shares);
        }
    }

    /// The sum of the shards' metrics, under the whole's id and name: see
    /// [`PartitionMetrics::add_shard`]. `core` is the lowest core with a
    /// shard; `shares` the shares set for every shard.
    pub(crate) fn metrics(&self) -> PartitionMetrics {
        let mut sum = PartitionMetrics {
            id: self.id,
            name: self.name.clone(),
            core: self.cores[0],
            shares: self.shares(),
            ..PartitionMetrics::default()
        };
        for shard in self.shards() {
            sum.add_shard(&shard.metrics());
        }
        sum
    }

    /// How error messages name it: `"name"`, or its id.
    pub(crate) fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?}"),
            None => self.id.to_string(),
        }
    }
}
