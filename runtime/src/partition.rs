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
//! scheduler when their last task ends. A *sharded* partition
//! ([`Placement::EveryCore`]) is one partition per unreserved core under
//! one name: see [`Partition`](Partition#sharded-partitions).
//!
//! This file is the public face; inside, `inner.rs` holds a partition's
//! shared state, `route.rs` where its wakes go (the state migration
//! changes), `placement.rs` which core a new partition starts on,
//! `sharded.rs` the sharded partitions, and `balance.rs` the balancer that
//! moves partitions off busy cores.

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
mod sharded;

pub(crate) use inner::{NewPartition, PartitionInner, NOT_ATTACHED};
pub use placement::Placement;
pub(crate) use sharded::ShardedInner;

/// A handle to a partition: cheap to clone, `Send + Sync`, usable from any
/// thread (spawning through it from outside the runtime's cores is a foreign
/// wake of the owning core). Two handles are equal when they name the same
/// partition.
///
/// # Sharded partitions
///
/// A partition built with [`Placement::EveryCore`] is *sharded*: it has one
/// *shard* on every core not reserved with
/// [`Builder::reserve_core`](crate::Builder::reserve_core), and its handle
/// stands for all of them. Each shard is a real partition of its core's
/// scheduler, pinned there, bearing the sharded partition's name, shares
/// and latency bound, so shares and latency hold per shard: on each core,
/// the shard gets its shares' worth of that core against the other
/// partitions of that core. What the handle does:
///
/// | method | on a sharded partition |
/// |---|---|
/// | [`spawn`](Partition::spawn) | into the shard of the caller's core (a task on a core that hosts a shard; a `spawn_blocking` closure counts as on the core of its partition); from anywhere else (a reserved core, a plain thread, another runtime), into the shards in turn |
/// | [`id`](Partition::id) | the sharded partition's own id; each shard has an id of its own (the next ones, by core) |
/// | [`name`](Partition::name) | its name, which every shard bears too |
/// | [`core`](Partition::core) | the lowest core with a shard |
/// | [`cores`](Partition::cores) | every core with a shard, ascending |
/// | [`shard`](Partition::shard) | one shard, as a plain, pinned partition handle |
/// | [`shares`](Partition::shares) / [`set_shares`](Partition::set_shares) | the shares of every shard / sets them on every shard |
/// | [`migrate_to`](Partition::migrate_to) | `ErrorKind::InvalidInput`: shards never move, and the balancer never moves them |
/// | [`metrics`](Partition::metrics) | the sum over the shards (delays: the largest) |
///
/// Tasks spawned inside a shard (with [`crate::spawn`]) stay in that shard,
/// on its core; [`current`] called there returns the shard (a plain handle
/// whose [`spawn`](Partition::spawn) stays on that core, whose
/// [`shard_of`](Partition::shard_of) is the sharded partition); [`get`] and
/// [`spawn`](fn@spawn) by name find the sharded partition itself.
/// [`Runtime::metrics`](crate::Runtime::metrics) lists every shard, with
/// its core, and [`PartitionMetrics::shard_of`] set.
///
/// ```
/// use fairloop_runtime::partition::{self, Partition, Placement};
/// use fairloop_runtime::{core_id, Runtime};
///
/// let rt = Runtime::builder()
///     .cores(3)
///     .pin_cores(false)
///     .reserve_core("healthcheck")
///     .build()?;
/// rt.block_on(async {
///     let api = Partition::builder()
///         .name("api")
///         .placement(Placement::EveryCore)
///         .build()?;
///     assert_eq!(api.cores(), vec![0, 1]); // core 2 is reserved
///     // block_on runs on core 0: into core 0's shard.
///     let (core, me) = api
///         .spawn(async { (core_id(), partition::current()) })
///         .await
///         .unwrap();
///     assert_eq!(core, 0);
///     assert_eq!(Some(me.clone()), api.shard(0));
///     assert_eq!(me.shard_of(), Some(api.clone()));
///     api.set_shares(300)?; // every shard
///     assert_eq!(api.shard(1).unwrap().shares(), 300);
///     assert!(api.migrate_to(1).is_err());
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Partition {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// A partition of one core (a root, a plain partition, or a shard).
    Plain(Arc<PartitionInner>),
    /// A sharded partition: one shard per unreserved core.
    Sharded(Arc<ShardedInner>),
}

impl Partition {
    /// The handle of a partition of one core (a shard included).
    pub(crate) fn from_inner(inner: Arc<PartitionInner>) -> Self {
        Partition {
            kind: Kind::Plain(inner),
        }
    }

    /// The handle of a sharded partition.
    pub(crate) fn from_sharded(inner: Arc<ShardedInner>) -> Self {
        Partition {
            kind: Kind::Sharded(inner),
        }
    }

    /// Starts describing a new partition.
    pub fn builder() -> PartitionBuilder {
        PartitionBuilder::default()
    }

    /// The partition's id, unique within its runtime. Root partitions have
    /// the ids `0..cores`. A sharded partition has an id of its own, and
    /// each of its shards another (in
    /// [`PartitionMetrics::shard_of`], a shard names the sharded
    /// partition's).
    pub fn id(&self) -> u64 {
        match &self.kind {
            Kind::Plain(p) => p.id,
            Kind::Sharded(s) => s.id,
        }
    }

    /// The partition's name; `None` for root and anonymous partitions. The
    /// shards of a sharded partition bear its name.
    pub fn name(&self) -> Option<String> {
        match &self.kind {
            Kind::Plain(p) => p.name.clone(),
            Kind::Sharded(s) => s.name.clone(),
        }
    }

    /// The core that owns the partition now; for a sharded partition, the
    /// lowest core that has a shard (all of them: [`cores`](Partition::cores)).
    pub fn core(&self) -> usize {
        match &self.kind {
            Kind::Plain(p) => p.owner(),
            Kind::Sharded(s) => s.cores()[0],
        }
    }

    /// The cores the partition runs on, ascending: for a sharded partition,
    /// every core that has a shard (every core not reserved); for any
    /// other, the one core that owns it now.
    pub fn cores(&self) -> Vec<usize> {
        match &self.kind {
            Kind::Plain(p) => vec![p.owner()],
            Kind::Sharded(s) => s.cores().to_vec(),
        }
    }

    /// The partition's part on `core`, as a plain partition handle: for a
    /// sharded partition, its shard there (pinned to `core`; `None` on a
    /// reserved core or one that does not exist); for any other partition,
    /// itself if `core` owns it now, else `None`. So `shard(c)` is `Some`
    /// for every `c` in [`cores`](Partition::cores).
    pub fn shard(&self, core: usize) -> Option<Partition> {
        match &self.kind {
            Kind::Plain(p) => (p.owner() == core).then(|| self.clone()),
            Kind::Sharded(s) => s.shard(core).cloned().map(Partition::from_inner),
        }
    }

    /// Whether this is a sharded partition ([`Placement::EveryCore`]); a
    /// shard's own handle is not.
    pub fn is_sharded(&self) -> bool {
        matches!(self.kind, Kind::Sharded(_))
    }

    /// For a shard of a sharded partition (from [`shard`](Partition::shard),
    /// or [`current`] inside it): the sharded partition. `None` for any
    /// other partition, and once no handle to an unnamed sharded partition
    /// is left (its shards run their tasks to the end all the same).
    pub fn shard_of(&self) -> Option<Partition> {
        match &self.kind {
            Kind::Plain(p) => p
                .shard_of
                .as_ref()
                .and_then(|s| s.whole.upgrade())
                .map(Partition::from_sharded),
            Kind::Sharded(_) => None,
        }
    }

    /// The partition's CPU shares (1..=10,000). For a sharded partition,
    /// the shares it gave every shard, at creation or with its last
    /// [`set_shares`](Partition::set_shares) (a shard's own `set_shares`
    /// changes that shard alone).
    pub fn shares(&self) -> u32 {
        match &self.kind {
            Kind::Plain(p) => p.shares.load(Ordering::Relaxed),
            Kind::Sharded(s) => s.shares(),
        }
    }

    /// Changes the partition's shares (of every shard, for a sharded
    /// partition); the owning core applies the new weight from its next
    /// scheduling turn on. `ErrorKind::InvalidInput` outside 1..=10,000.
    pub fn set_shares(&self, shares: u32) -> io::Result<()> {
        let shares = check_shares(shares).map_err(invalid)?;
        match &self.kind {
            Kind::Plain(p) => p.set_shares(shares),
            Kind::Sharded(s) => s.set_shares(shares),
        }
        Ok(())
    }

    /// Spawns a task into this partition. Every task it spawns, and every
    /// timer it waits on, belongs to this partition too.
    ///
    /// Into a sharded partition: into the shard of the caller's core, if
    /// it has one (a `spawn_blocking` closure counts as on the core that
    /// owns its partition); from anywhere else (a reserved core, a thread
    /// of no runtime, another runtime), into the shards in turn. The task
    /// then belongs to that shard, and what it spawns stays there.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.kind {
            Kind::Plain(p) => p.spawn(future),
            Kind::Sharded(s) => s.target().spawn(future),
        }
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
    /// exist, a reserved core, a pinned partition (a root partition, one
    /// placed on `Core`/`Reserved` or built `pinned(true)`, or one that ran
    /// `spawn_local`), a sharded partition, or a shard: a sharded partition
    /// is on every unreserved core already, and its shards never move (to
    /// run work on another core, spawn into that core's
    /// [`shard`](Partition::shard)).
    pub fn migrate_to(&self, core: usize) -> io::Result<()> {
        let inner = match &self.kind {
            Kind::Plain(p) => p,
            Kind::Sharded(s) => {
                return Err(invalid(format!(
                    "migrate_to({core}): partition {} is sharded (Placement::EveryCore): it has a \
                     shard on each of the cores {:?} and shards never move; to run work on one \
                     core, spawn into that core's shard (Partition::shard)",
                    s.describe(),
                    s.cores()
                )))
            }
        };
        let runtime = &inner.runtime;
        runtime.check_migration(inner, core)?;
        if runtime.is_closed() {
            return Err(io::Error::other("migrate_to: the runtime is shutting down"));
        }
        runtime
            .remote(inner.owner())
            .send(Control::Migrate(inner.clone(), core));
        Ok(())
    }

    /// A snapshot of the partition's metrics. For a sharded partition, the
    /// sum over its shards: tasks, queued tasks, polls, busy time, long
    /// polls and migrations add up; each scheduling delay (p50, p99, max)
    /// is the largest of the shards'; `id`, `name` and `shares` are the
    /// sharded partition's, `core` is the lowest core with a shard, and
    /// `shard_of` is `None`. Each shard's own:
    /// `shard(core).metrics()`, or [`Runtime::metrics`](crate::Runtime::metrics).
    pub fn metrics(&self) -> PartitionMetrics {
        match &self.kind {
            Kind::Plain(p) => p.metrics(),
            Kind::Sharded(s) => s.metrics(),
        }
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Partition");
        d.field("id", &self.id()).field("name", &self.name());
        match &self.kind {
            Kind::Plain(p) => {
                d.field("core", &self.core());
                if let Some(s) = &p.shard_of {
                    d.field("shard_of", &s.id);
                }
            }
            Kind::Sharded(_) => {
                d.field("cores", &self.cores());
            }
        }
        d.field("shares", &self.shares()).finish()
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Plain(a), Kind::Plain(b)) => Arc::ptr_eq(a, b),
            (Kind::Sharded(a), Kind::Sharded(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
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
    /// (The shards of a sharded partition bear its name, and only the
    /// sharded partition is found by it.)
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// CPU shares, 1..=10,000 (default 100): on a busy core, partitions get
    /// CPU time in proportion to their shares. A sharded partition gives
    /// them to every shard, each weighed against its own core's partitions.
    pub fn shares(mut self, shares: u32) -> Self {
        self.shares = Some(shares);
        self
    }

    /// A latency bound: once runnable, the partition starts running within
    /// `d` even while other partitions on its core are busy (as long as its
    /// own polls and those of the others are short, and it does not use far
    /// more than its share). A sharded partition gives it to every shard,
    /// each bound on its own core.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = Some(d);
        self
    }

    /// Where to place the partition (default: the runtime's default
    /// placement, which defaults to [`Placement::Local`]).
    /// [`Placement::EveryCore`] makes a sharded partition.
    pub fn placement(mut self, p: Placement) -> Self {
        self.placement = Some(p);
        self
    }

    /// Whether the partition must stay on its core (default: `true` for
    /// `Core`, `Reserved` and `EveryCore` placement, else `false`;
    /// `pinned(false)` is an error with `Reserved` and `EveryCore`).
    pub fn pinned(mut self, yes: bool) -> Self {
        self.pinned = Some(yes);
        self
    }

    /// Creates the partition in the runtime the caller runs in.
    ///
    /// Placed [`Placement::EveryCore`] (or with that as the runtime's
    /// default placement), it creates a sharded partition: one shard on
    /// every unreserved core, and returns its handle.
    ///
    /// `ErrorKind::InvalidInput` with a message for: a name already taken,
    /// shares outside 1..=10,000, a core that does not exist, a reserved
    /// core named by `Core(i)`, an unknown reservation, `pinned(false)`
    /// with `Reserved` or `EveryCore`, or a call from a thread that no
    /// fairloop runtime runs.
    pub fn build(self) -> io::Result<Partition> {
        let here = context::here().ok_or_else(|| {
            invalid(
                "Partition::builder().build() must be called inside a fairloop runtime \
                 (from a task or a spawn_blocking closure)",
            )
        })?;
        let (runtime, core) = here_runtime(&here);
        runtime.create_partition(self, core, false)
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
    /// A fresh, unnamed partition that ends with its tasks. It is placed
    /// as the runtime's default placement says, except that it is never
    /// sharded: under a default of [`Placement::EveryCore`] it is placed
    /// [`Placement::Local`] (a partition made to serve every core has no
    /// business ending with one task).
    pub fn anonymous() -> Self {
        PartitionSpec(SpecKind::Anonymous)
    }
}

impl From<&str> for PartitionSpec {
    /// Join the partition with this name (plain or sharded), creating it
    /// with default settings (and the runtime's default placement) if it
    /// does not exist.
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
/// When `spec` names a sharded partition (a name, a builder placed
/// [`Placement::EveryCore`], or its handle), the task goes where
/// [`Partition::spawn`] sends it: into the shard of the caller's core, or,
/// from a reserved core, into the shards in turn.
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
        SpecKind::Existing(p) => Ok(p),
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
/// Inside a shard of a sharded partition, this is the shard: the partition
/// the task belongs to, a plain handle pinned to the caller's core, so
/// that work spawned through it stays on this core wherever the handle is
/// used from. It bears the sharded partition's name, and
/// [`Partition::shard_of`] gives the sharded partition.
///
/// # Panics
/// When called from a thread that no fairloop runtime runs, or on a core
/// thread outside any task.
pub fn current() -> Partition {
    match context::here() {
        Some(Here::Core {
            partition: Some(p), ..
        })
        | Some(Here::Blocking { partition: p }) => Partition::from_inner(p),
        _ => outside_runtime("fairloop::partition::current"),
    }
}

/// The partition named `name` in the caller's runtime; `None` if there is
/// none, or if the caller runs under no fairloop runtime. For a sharded
/// partition, the sharded partition itself (its shards: [`Partition::shard`]).
pub fn get(name: &str) -> Option<Partition> {
    let here = context::here()?;
    let (runtime, _) = here_runtime(&here);
    runtime.partition_by_name(name)
}

/// The runtime and the core to use for `Placement::Local`.
fn here_runtime(here: &Here) -> (Arc<RuntimeInner>, usize) {
    match here {
        Here::Core { runtime, core, .. } => (runtime.clone(), *core),
        Here::Blocking { partition } => (partition.runtime.clone(), partition.owner()),
    }
}
