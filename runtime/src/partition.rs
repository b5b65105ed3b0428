//! Partitions: groups of tasks that share one CPU budget on one core.
//!
//! A partition is what the 2017 fair-scheduling proposal calls by that name:
//! a set of tasks — and the timers they wait on — that the core's scheduler
//! treats as one unit when it shares CPU time. Partitions on a core get CPU
//! in proportion to their *shares* (see `fairloop-partitions`), so a flood of
//! work in one cannot starve another.
//!
//! Membership is inherited: a task belongs to the partition it was spawned
//! into for life, and everything it spawns with [`crate::spawn`] or
//! [`crate::spawn_local`] belongs there too. [`spawn`] (the proposal's
//! `asyncio.spawn(coro, partition=...)`) starts work in another partition.
//!
//! Every core has a *root* partition (unnamed, pinned) where work starts
//! when nothing else is said. *Named* partitions live until the runtime
//! ends; *anonymous* ones ([`PartitionSpec::anonymous`]) leave their core's
//! scheduler when their last task ends.
//!
//! This file is the public face; inside, `inner.rs` holds a partition's
//! shared state, `route.rs` where its wakes go (the state migration
//! changes), `placement.rs` which core a new partition starts on, and
//! `balance.rs` the balancer that moves partitions off busy cores.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fairloop_partitions::check_shares;

use crate::context::{self, Here};
use crate::error::{invalid, outside_runtime};
use crate::metrics::PartitionMetrics;
use crate::reactor::Control;
use crate::runtime::RuntimeInner;
use crate::task::{Cancelled, JoinError, JoinHandle};

pub(crate) mod balance;
mod inner;
mod placement;
pub(crate) mod route;

pub(crate) use inner::{NewPartition, PartitionInner, NOT_ATTACHED};
pub use placement::Placement;

/// A handle to a partition: cheap to clone, `Send + Sync`, usable from any
/// thread (spawning through it from outside the runtime's cores is a foreign
/// wake of the owning core).
#[derive(Clone)]
pub struct Partition {
    pub(crate) inner: Arc<PartitionInner>,
}

impl Partition {
    /// Starts describing a new partition.
    pub fn builder() -> PartitionBuilder {
        PartitionBuilder::default()
    }

    /// The partition's id, unique within its runtime. Root partitions have
    /// the ids `0..cores`.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The partition's name; `None` for root and anonymous partitions.
    pub fn name(&self) -> Option<String> {
        self.inner.name.clone()
    }

    /// The core that owns the partition now.
    pub fn core(&self) -> usize {
        self.inner.owner()
    }

    /// The partition's CPU shares (1..=10,000).
    pub fn shares(&self) -> u32 {
        self.inner.shares.load(Ordering::Relaxed)
    }

    /// Changes the partition's shares; the owning core applies the new
    /// weight from its next scheduling turn on. `ErrorKind::InvalidInput`
    /// outside 1..=10,000.
    pub fn set_shares(&self, shares: u32) -> io::Result<()> {
        let shares = check_shares(shares).map_err(invalid)?;
        // Release: the core that reads it (applying it, or adopting the
        // partition) sees the new value.
        self.inner.shares.store(shares, Ordering::Release);
        self.inner.runtime.apply_shares(&self.inner);
        Ok(())
    }

    /// Spawns a task into this partition. Every task it spawns, and every
    /// timer it waits on, belongs to this partition too.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn(future)
    }

    /// Moves the partition to `core`, with its queued tasks; its tasks keep
    /// running there, and wakes from timers or other threads that race the
    /// move are delivered on whichever core owns it once the move is done.
    ///
    /// `Ok` means the move is under way: [`core`](Partition::core) reports
    /// `core` once the target owns it, and
    /// [`PartitionMetrics::migrations`](crate::metrics::PartitionMetrics)
    /// counts it once the target has taken it over. A partition that a
    /// `spawn_local` pins before the move happens stays where it is.
    ///
    /// `ErrorKind::InvalidInput` (with a message) for a core that does not
    /// exist, a reserved core, or a pinned partition (a root partition, one
    /// placed on `Core`/`Reserved` or built `pinned(true)`, or one that ran
    /// `spawn_local`).
    pub fn migrate_to(&self, core: usize) -> io::Result<()> {
        let runtime = &self.inner.runtime;
        runtime.check_migration(&self.inner, core)?;
        if runtime.is_closed() {
            return Err(io::Error::other("migrate_to: the runtime is shutting down"));
        }
        runtime
            .remote(self.inner.owner())
            .send(Control::Migrate(self.inner.clone(), core));
        Ok(())
    }

    /// A snapshot of the partition's metrics.
    pub fn metrics(&self) -> PartitionMetrics {
        self.inner.metrics()
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("core", &self.core())
            .field("shares", &self.shares())
            .finish()
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Partition {}

/// Describes a partition to create with [`PartitionBuilder::build`] or
/// [`spawn`].
#[derive(Clone, Debug, Default)]
pub struct PartitionBuilder {
    pub(crate) name: Option<String>,
    pub(crate) shares: Option<u32>,
    pub(crate) latency: Option<Duration>,
    pub(crate) placement: Option<Placement>,
    pub(crate) pinned: Option<bool>,
}

impl PartitionBuilder {
    /// A name, unique within the runtime; [`get`] finds the partition by it.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// CPU shares, 1..=10,000 (default 100): on a busy core, partitions get
    /// CPU time in proportion to their shares.
    pub fn shares(mut self, shares: u32) -> Self {
        self.shares = Some(shares);
        self
    }

    /// A latency bound: once runnable, the partition starts running within
    /// `d` even while other partitions on its core are busy (as long as its
    /// own polls and those of the others are short, and it does not use far
    /// more than its share).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = Some(d);
        self
    }

    /// Where to place the partition (default: the runtime's default
    /// placement, which defaults to [`Placement::Local`]).
    pub fn placement(mut self, p: Placement) -> Self {
        self.placement = Some(p);
        self
    }

    /// Whether the partition must stay on its core (default: `true` for
    /// `Core` and `Reserved` placement, else `false`).
    pub fn pinned(mut self, yes: bool) -> Self {
        self.pinned = Some(yes);
        self
    }

    /// Creates the partition in the runtime the caller runs in.
    ///
    /// `ErrorKind::InvalidInput` with a message for: a name already taken,
    /// shares outside 1..=10,000, a core that does not exist, a reserved
    /// core named by `Core(i)`, an unknown reservation, or a call from a
    /// thread that no fairloop runtime runs.
    pub fn build(self) -> io::Result<Partition> {
        let here = context::here().ok_or_else(|| {
            invalid(
                "Partition::builder().build() must be called inside a fairloop runtime \
                 (from a task or a spawn_blocking closure)",
            )
        })?;
        let (runtime, core) = here_runtime(&here);
        let inner = runtime.create_partition(self, core, false)?;
        Ok(Partition { inner })
    }
}

/// Which partition [`spawn`] starts its task in.
#[derive(Clone, Debug)]
pub struct PartitionSpec(SpecKind);

#[derive(Clone, Debug)]
enum SpecKind {
    Named(String),
    Builder(PartitionBuilder),
    Existing(Partition),
    Anonymous,
}

impl PartitionSpec {
    /// A fresh, unnamed partition that ends with its tasks.
    pub fn anonymous() -> Self {
        PartitionSpec(SpecKind::Anonymous)
    }
}

impl From<&str> for PartitionSpec {
    /// Join the partition with this name, creating it (with default
    /// settings) if it does not exist.
    fn from(name: &str) -> Self {
        PartitionSpec(SpecKind::Named(name.to_owned()))
    }
}

impl From<String> for PartitionSpec {
    /// Join the partition with this name, creating it if needed.
    fn from(name: String) -> Self {
        PartitionSpec(SpecKind::Named(name))
    }
}

impl From<&String> for PartitionSpec {
    /// Join the partition with this name, creating it if needed.
    fn from(name: &String) -> Self {
        PartitionSpec(SpecKind::Named(name.clone()))
    }
}

impl From<PartitionBuilder> for PartitionSpec {
    /// Create this partition (an error if its name is taken).
    fn from(b: PartitionBuilder) -> Self {
        PartitionSpec(SpecKind::Builder(b))
    }
}

impl From<Partition> for PartitionSpec {
    fn from(p: Partition) -> Self {
        PartitionSpec(SpecKind::Existing(p))
    }
}

impl From<&Partition> for PartitionSpec {
    fn from(p: &Partition) -> Self {
        PartitionSpec(SpecKind::Existing(p.clone()))
    }
}

/// Spawns `future` into the partition `spec` names: the proposal's
/// `asyncio.spawn(coro, partition=...)`.
///
/// Everything the task spawns stays in that partition. If the partition
/// cannot be created (a bad builder, a name taken by `PartitionBuilder`),
/// the returned handle fails with a [`JoinError`] that
/// [`is_cancelled`](JoinError::is_cancelled) and whose message says why.
///
/// # Panics
/// When called from a thread that no fairloop runtime runs.
pub fn spawn<F>(spec: impl Into<PartitionSpec>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let spec = spec.into();
    let here = context::here().unwrap_or_else(|| outside_runtime("fairloop::partition::spawn"));
    if let Here::Core {
        shutting_down: true,
        ..
    } = here
    {
        return JoinHandle::refused(JoinError::cancelled(Cancelled::Shutdown));
    }
    let (runtime, core) = here_runtime(&here);
    let partition = match spec.0 {
        SpecKind::Existing(p) => Ok(p.inner),
        SpecKind::Named(name) => runtime.named_partition(&name, core),
        SpecKind::Builder(b) => runtime.create_partition(b, core, false),
        SpecKind::Anonymous => runtime.create_partition(PartitionBuilder::default(), core, true),
    };
    match partition {
        Ok(p) => p.spawn(future),
        Err(e) => JoinHandle::refused(JoinError::cancelled(Cancelled::Refused(e.to_string()))),
    }
}

/// The partition of the calling task (or of the task that started the
/// calling `spawn_blocking` closure).
///
/// # Panics
/// When called from a thread that no fairloop runtime runs, or on a core
/// thread outside any task.
pub fn current() -> Partition {
    match context::here() {
        Some(Here::Core {
            partition: Some(p), ..
        })
        | Some(Here::Blocking { partition: p }) => Partition { inner: p },
        _ => outside_runtime("fairloop::partition::current"),
    }
}

/// The partition named `name` in the caller's runtime; `None` if there is
/// none, or if the caller runs under no fairloop runtime.
pub fn get(name: &str) -> Option<Partition> {
    let here = context::here()?;
    let (runtime, _) = here_runtime(&here);
    runtime
        .partition_by_name(name)
        .map(|inner| Partition { inner })
}

/// The runtime and the core to use for `Placement::Local`.
fn here_runtime(here: &Here) -> (Arc<RuntimeInner>, usize) {
    match here {
        Here::Core { runtime, core, .. } => (runtime.clone(), *core),
        Here::Blocking { partition } => (partition.runtime.clone(), partition.owner()),
    }
}
