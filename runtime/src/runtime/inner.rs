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
use crate::partition::{NewPartition, PartitionBuilder, PartitionInner, Placement};
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
}

impl RuntimeInner {
    /// The runtime around `cores`, with a root partition on each.
    pub(super) fn new(cores: Box<[Remote]>, config: Config) -> Arc<Self> {
        static RUNTIME_IDS: AtomicU64 = AtomicU64::new(0);
        let n = cores.len();
        let runtime = Arc::new(RuntimeInner {
            id: RUNTIME_IDS.fetch_add(1, Ordering::Relaxed),
            cores,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(n as u64),
            closed: AtomicBool::new(false),
            spawn_rr: AtomicUsize::new(0),
            place_rr: AtomicUsize::new(0),
            lifecycle: Lifecycle::new(),
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
                },
            ));
            reg.insert(&root);
            reg.roots.push(root);
        }
        drop(reg);
        runtime
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
        let (names, roots) = {
            let mut reg = self.registry.lock();
            (
                std::mem::take(&mut reg.by_name),
                std::mem::take(&mut reg.roots),
            )
        };
        drop(names);
        drop(roots);
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

    pub(crate) fn partition_by_name(&self, name: &str) -> Option<Arc<PartitionInner>> {
        self.registry.lock().by_name.get(name).cloned()
    }

    /// The named partition, created with default settings if it does not
    /// exist yet.
    pub(crate) fn named_partition(
        self: &Arc<Self>,
        name: &str,
        local_core: usize,
    ) -> io::Result<Arc<PartitionInner>> {
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

    /// Validates `b` and registers the new partition.
    pub(crate) fn create_partition(
        self: &Arc<Self>,
        b: PartitionBuilder,
        local_core: usize,
        anonymous: bool,
    ) -> io::Result<Arc<PartitionInner>> {
        let shares = match b.shares {
            Some(s) => check_shares(s).map_err(invalid)?,
            None => DEFAULT_SHARES,
        };
        if let Some(name) = &b.name {
            if name.is_empty() {
                return Err(invalid("a partition name must not be empty"));
            }
        }
        let placement = b.placement.unwrap_or_else(|| self.config.placement.clone());
        self.config.check_placement(&placement)?;
        let pinned = b.pinned.unwrap_or(matches!(
            placement,
            Placement::Core(_) | Placement::Reserved(_)
        ));
        if matches!(placement, Placement::Reserved(_)) && !pinned {
            return Err(invalid(
                "Placement::Reserved with pinned(false): a reserved partition cannot leave its core",
            ));
        }
        let core = self.place(&placement, local_core);
        let mut reg = self.registry.lock();
        if let Some(name) = &b.name {
            if reg.by_name.contains_key(name) {
                return Err(invalid(format!(
                    "partition name {name:?} is already taken in this runtime"
                )));
            }
        }
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
            },
        ));
        reg.insert(&p);
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
                p.name
                    .as_deref()
                    .map(|n| format!("{n:?}"))
                    .unwrap_or_else(|| p.id.to_string())
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

    /// The live partition with this id.
    pub(crate) fn partition_by_id(&self, id: u64) -> Option<Arc<PartitionInner>> {
        self.registry.lock().all.get(&id).and_then(Weak::upgrade)
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
