//! [`RuntimeInner`]: what the runtime's cores, handles, partitions and
//! tasks share.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use fairloop_partitions::{check_shares, DEFAULT_SHARES};
use parking_lot::Mutex;

use super::registry::Registry;
use super::Config;
use crate::context::on_core;
use crate::error::invalid;
use crate::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use crate::partition::{
    NewPartition, Partition, PartitionBuilder, PartitionInner, Placement, ShardedInner,
};
use crate::reactor::{Control, Remote};
use crate::shutdown::Lifecycle;
use crate::task::{Cancelled, JoinError, JoinHandle};

/// State shared by the runtime's cores, handles, partitions and tasks.
pub(crate) struct RuntimeInner {
    /// Unique among the runtimes of the process (sockets use it to notice
    /// they moved to another runtime).
    pub(crate) id: u64,
    /// What other threads may touch of each core, by index.
    cores: Box<[Remote]>,
    pub(crate) config: Config,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    closed: AtomicBool,
    pub(crate) spawn_rr: AtomicUsize,
    pub(crate) place_rr: AtomicUsize,
    /// The shutdown request, its waiters, and a graceful shutdown's counts.
    pub(crate) lifecycle: Lifecycle,
    /// With `Builder::tokio_compat`: the id of the sharded partition
    /// [`TOKIO_PARTITION`] (a shard on every core) whose turns are
    /// tokio's.
    pub(crate) tokio_id: Option<u64>,
}

/// The name of the partition whose turns are tokio's, with
/// `Builder::tokio_compat`.
pub(crate) const TOKIO_PARTITION: &str = "tokio";

impl RuntimeInner {
    /// The runtime around `cores`, with a root partition on each (ids
    /// `0..n`) and, with `tokio_compat`, the sharded partition
    /// [`TOKIO_PARTITION`] (id `n`, its shards `n + 1 ..= 2n`).
    pub(super) fn new(cores: Box<[Remote]>, config: Config) -> Arc<Self> {
        static RUNTIME_IDS: AtomicU64 = AtomicU64::new(0);
        let n = cores.len();
        let tokio_id = config.tokio_compat.then_some(n as u64);
        let first_free = if config.tokio_compat { 2 * n + 1 } else { n };
        let runtime = Arc::new(RuntimeInner {
            id: RUNTIME_IDS.fetch_add(1, Ordering::Relaxed),
            cores,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(first_free as u64),
            closed: AtomicBool::new(false),
            spawn_rr: AtomicUsize::new(0),
            place_rr: AtomicUsize::new(0),
            lifecycle: Lifecycle::new(),
            tokio_id,
            config,
        });
        let mut reg = runtime.registry.lock();
        for i in 0..n {
            let root = Arc::new(PartitionInner::new(
                runtime.clone(),
                NewPartition {
                    id: i as u64,
                    name: None,
                    anonymous: false,
                    shares: DEFAULT_SHARES,
                    latency: None,
                    pinned: true,
                    core: i,
                    shard_of: None,
                },
            ));
            reg.insert(&root);
            reg.roots.push(root);
        }
        if let Some(id) = tokio_id {
            // On every core, reserved ones too: tokio work started there
            // runs there.
            let s = ShardedInner::new(
                &runtime,
                id,
                Some(TOKIO_PARTITION.to_owned()),
                DEFAULT_SHARES,
                None,
                (0..n).collect(),
            );
            reg.insert_sharded(&s);
            reg.by_name.insert(
                TOKIO_PARTITION.to_owned(),
                Partition::from_sharded(s.clone()),
            );
            reg.tokio = Some(s);
        }
        drop(reg);
        runtime
    }

    /// Whether `p` is a shard of [`TOKIO_PARTITION`], whose one task (the
    /// pump) is the runtime's own and never ends by itself.
    pub(crate) fn is_tokio_shard(&self, p: &PartitionInner) -> bool {
        self.tokio_id.is_some() && p.shard_of.as_ref().map(|s| s.id) == self.tokio_id
    }

    /// The shard of [`TOKIO_PARTITION`] on `core`, with `tokio_compat`.
    #[cfg(feature = "tokio-compat")]
    pub(crate) fn tokio_shard(&self, core: usize) -> Option<Arc<PartitionInner>> {
        self.registry.lock().tokio.as_ref()?.shard(core).cloned()
    }

    /// What other threads may touch of core `core`.
    #[inline]
    pub(crate) fn remote(&self, core: usize) -> &Remote {
        &self.cores[core]
    }

    /// Every core's [`Remote`], by index.
    pub(crate) fn remotes(&self) -> &[Remote] {
        &self.cores
    }

    /// Marks the shutdown requested (if a graceful shutdown has not) and
    /// the runtime closed (no task starts afterwards), and tells every core
    /// to stop.
    pub(super) fn close(&self) {
        self.lifecycle.request();
        self.closed.store(true, Ordering::SeqCst);
        for c in self.cores.iter() {
            c.send(Control::Shutdown);
        }
    }

    /// Drops the registry's strong references (named partitions, roots),
    /// breaking the cycles partition -> runtime -> registry -> partition.
    pub(super) fn forget_partitions(&self) {
        let (names, roots, sharded, tokio) = {
            let mut reg = self.registry.lock();
            (
                std::mem::take(&mut reg.by_name),
                std::mem::take(&mut reg.roots),
                std::mem::take(&mut reg.sharded),
                reg.tokio.take(),
            )
        };
        drop(names);
        drop(roots);
        drop(sharded);
        drop(tokio);
    }

    /// Whether shutdown has begun: no task starts afterwards.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn root(&self, core: usize) -> Option<Arc<PartitionInner>> {
        self.registry.lock().roots.get(core).cloned()
    }

    /// Every live partition (strong references, taken outside the lock's
    /// critical path by the caller).
    pub(crate) fn partitions(&self) -> Vec<Arc<PartitionInner>> {
        let reg = self.registry.lock();
        let mut v: Vec<_> = reg.all.values().filter_map(Weak::upgrade).collect();
        drop(reg);
        v.sort_by_key(|p| p.id);
        v
    }

    /// The partition named `name`: plain, or sharded.
    pub(crate) fn partition_by_name(&self, name: &str) -> Option<Partition> {
        self.registry.lock().by_name.get(name).cloned()
    }

    /// The named partition, created with default settings (so with the
    /// runtime's default placement) if it does not exist yet.
    pub(crate) fn named_partition(
        self: &Arc<Self>,
        name: &str,
        local_core: usize,
    ) -> io::Result<Partition> {
        if let Some(p) = self.partition_by_name(name) {
            return Ok(p);
        }
        match self.create_partition(PartitionBuilder::default().name(name), local_core, false) {
            Ok(p) => Ok(p),
            // Another thread created it in between: join it.
            Err(_) if self.partition_by_name(name).is_some() => {
                Ok(self.partition_by_name(name).expect("checked"))
            }
            Err(e) => Err(e),
        }
    }

    /// Validates `b` and registers the new partition: a plain one, or,
    /// placed `EveryCore`, a sharded one with its shards. An anonymous
    /// partition is never sharded: under an `EveryCore` default it is
    /// placed `Local`.
    pub(crate) fn create_partition(
        self: &Arc<Self>,
        b: PartitionBuilder,
        local_core: usize,
        anonymous: bool,
    ) -> io::Result<Partition> {
        let shares = match b.shares {
            Some(s) => check_shares(s).map_err(invalid)?,
            None => DEFAULT_SHARES,
        };
        if let Some(name) = &b.name {
            if name.is_empty() {
                return Err(invalid("a partition name must not be empty"));
            }
        }
        let placement = match b.placement {
            Some(p) => p,
            None if anonymous && self.config.placement == Placement::EveryCore => Placement::Local,
            None => self.config.placement.clone(),
        };
        self.config.check_placement(&placement)?;
        let pinned = b.pinned.unwrap_or(matches!(
            placement,
            Placement::Core(_) | Placement::Reserved(_) | Placement::EveryCore
        ));
        if matches!(placement, Placement::Reserved(_)) && !pinned {
            return Err(invalid(
                "Placement::Reserved with pinned(false): a reserved partition cannot leave its core",
            ));
        }
        let sharded = placement == Placement::EveryCore;
        if sharded && !pinned {
            return Err(invalid(
                "Placement::EveryCore with pinned(false): a sharded partition has a shard on \
                 every unreserved core already, and its shards never move",
            ));
        }
        // A plain partition's core; a sharded one places its shards itself.
        let plain_core = (!sharded).then(|| self.place(&placement, local_core));
        let mut reg = self.registry.lock();
        if let Some(name) = &b.name {
            if reg.by_name.contains_key(name) {
                return Err(invalid(format!(
                    "partition name {name:?} is already taken in this runtime"
                )));
            }
        }
        let Some(core) = plain_core else {
            // One id for the whole, then one per shard, by core.
            let shards = self.config.unreserved_cores().count() as u64;
            let id = self.next_id.fetch_add(1 + shards, Ordering::Relaxed);
            let cores = self.config.unreserved_cores().collect();
            let s = ShardedInner::new(self, id, b.name.clone(), shares, b.latency, cores);
            reg.insert_sharded(&s);
            let p = Partition::from_sharded(s);
            if let Some(name) = b.name {
                reg.by_name.insert(name, p.clone());
            }
            return Ok(p);
        };
        let p = Arc::new(PartitionInner::new(
            self.clone(),
            NewPartition {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                name: b.name.clone(),
                anonymous,
                shares,
                latency: b.latency,
                pinned,
                core,
                shard_of: None,
            },
        ));
        reg.insert(&p);
        let p = Partition::from_inner(p);
        if let Some(name) = b.name {
            reg.by_name.insert(name, p.clone());
        }
        Ok(p)
    }

    /// Makes the owner apply a partition's new shares.
    pub(crate) fn apply_shares(&self, p: &Arc<PartitionInner>) {
        let owner = p.owner();
        if on_core(&p.runtime, owner, |core| core.apply_shares(p)).is_none() {
            self.cores[owner].send(Control::SetShares(p.clone()));
        }
    }

    pub(crate) fn check_migration(&self, p: &PartitionInner, core: usize) -> io::Result<()> {
        if p.shard_of.is_some() {
            return Err(invalid(format!(
                "migrate_to({core}): partition {} is the shard on core {} of a sharded partition \
                 (Placement::EveryCore); shards never move: to run work on another core, spawn \
                 into that core's shard (Partition::shard)",
                p.describe(),
                p.owner()
            )));
        }
        let n = self.config.cores;
        if core >= n {
            return Err(invalid(format!(
                "migrate_to({core}): the runtime has {n} core(s), numbered 0..{n}"
            )));
        }
        if let Some(r) = &self.config.reserved[core] {
            return Err(invalid(format!(
                "migrate_to({core}): core {core} is reserved for {r:?}"
            )));
        }
        if p.pinned.load(Ordering::Acquire) {
            return Err(invalid(format!(
                "migrate_to({core}): partition {} is pinned (root, Core/Reserved placement, \
                 pinned(true), or it ran spawn_local)",
                p.describe()
            )));
        }
        Ok(())
    }

    pub(super) fn metrics(&self) -> RuntimeMetrics {
        let partitions = self.partitions();
        RuntimeMetrics {
            cores: self.core_metrics(),
            partitions: partitions.iter().map(|p| p.metrics()).collect(),
        }
    }

    /// Every core's metrics, by index.
    pub(super) fn core_metrics(&self) -> Vec<CoreMetrics> {
        self.cores
            .iter()
            .map(|c| c.stats.snapshot(c.index, c.reserved_for.clone()))
            .collect()
    }

    /// The `n` partitions with the most busy time, most busy first, from
    /// the cores' leaderboards: O(cores × LEADERS), whatever the number of
    /// partitions.
    pub(super) fn top_partitions(&self, n: usize) -> Vec<PartitionMetrics> {
        let mut top: Vec<PartitionMetrics> = self
            .cores
            .iter()
            .flat_map(|c| c.leaders.lock().clone())
            .filter_map(|w| w.upgrade())
            .map(|p| p.metrics())
            .collect();
        // A partition that moved may be on two boards.
        top.sort_unstable_by_key(|m| m.id);
        top.dedup_by_key(|m| m.id);
        top.sort_by(|a, b| b.busy.cmp(&a.busy).then(a.id.cmp(&b.id)));
        top.truncate(n);
        top
    }

    /// The live partition with this id: a plain partition, a shard (as a
    /// plain handle), or a sharded partition.
    pub(crate) fn partition_by_id(&self, id: u64) -> Option<Partition> {
        let reg = self.registry.lock();
        if let Some(p) = reg.all.get(&id).and_then(Weak::upgrade) {
            return Some(Partition::from_inner(p));
        }
        reg.sharded
            .get(&id)
            .and_then(Weak::upgrade)
            .map(Partition::from_sharded)
    }

    /// Starts `future` in the root partition of `core`, or refuses with a
    /// message.
    pub(super) fn spawn_root<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.check_spawn_core(core) {
            Ok(root) => root.spawn(future),
            Err(e) => JoinHandle::refused(JoinError::cancelled(Cancelled::Refused(e.to_string()))),
        }
    }

    pub(super) fn check_spawn_core(&self, core: usize) -> io::Result<Arc<PartitionInner>> {
        let n = self.config.cores;
        if core >= n {
            return Err(invalid(format!(
                "spawn_on({core}): the runtime has {n} core(s), numbered 0..{n}"
            )));
        }
        if let Some(r) = &self.config.reserved[core] {
            return Err(invalid(format!(
                "spawn_on({core}): core {core} is reserved for {r:?}; spawn into a partition \
                 placed with Placement::Reserved({r:?})"
            )));
        }
        self.root(core)
            .ok_or_else(|| io::Error::other("the runtime has shut down"))
    }
}
