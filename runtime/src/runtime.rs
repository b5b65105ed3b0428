//! The runtime: its configuration, its cores, and the handles users hold.
//!
//! [`Builder::build`] validates the configuration, creates one `mio::Poll`
//! and `mio::Waker` per core, starts one thread per core (pinned to a CPU
//! where the machine has it), and returns once every core is running.
//! Dropping the [`Runtime`] shuts it down: see [`Runtime::shutdown_timeout`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use crossbeam_deque::Injector;
use fairloop_partitions::{check_shares, Fairness, SchedulerConfig, DEFAULT_SHARES};
use parking_lot::Mutex;

use crate::balance;
use crate::cancel::RequestQueue;
use crate::context::with_core;
use crate::core::{self, Control};
use crate::io::IoDriver;
use crate::metrics::{CoreStats, RuntimeMetrics};
use crate::park::ParkFlag;
use crate::partition::{invalid, NewPartition, Partition, PartitionBuilder, PartitionInner};
use crate::placement::Placement;
use crate::reactor::WAKER_TOKEN;
use crate::task::{Cancelled, JoinError, JoinHandle};
use crate::uring::RingRequest;

/// The most cores a runtime may have.
pub const MAX_CORES: usize = 1024;

/// Configures and builds a [`Runtime`]. Every setting has a default;
/// [`Builder::build`] reports a bad one as `ErrorKind::InvalidInput` with a
/// message naming it.
#[derive(Clone, Debug)]
pub struct Builder {
    cores: Option<usize>,
    pin: bool,
    reservations: Vec<String>,
    placement: Placement,
    sched: SchedulerConfig,
    rebalance: Option<Duration>,
    io_uring: bool,
    stream_linger: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cores: None,
            pin: true,
            reservations: Vec::new(),
            placement: Placement::Local,
            sched: SchedulerConfig::default(),
            rebalance: None,
            io_uring: io_uring_default(),
            stream_linger: Duration::from_secs(10),
        }
    }
}

/// `Builder::io_uring`'s default: on, unless the environment variable
/// `FAIRLOOP_IO_URING` is `0`, `off` or `false` (an operator's switch that
/// needs no rebuild).
fn io_uring_default() -> bool {
    !matches!(
        std::env::var("FAIRLOOP_IO_URING").as_deref(),
        Ok("0" | "off" | "false")
    )
}

impl Builder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of cores: reactor threads, one per CPU (default: the
    /// number of CPUs). 1..=1024.
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = Some(n);
        self
    }

    /// Whether to pin core `i`'s thread to CPU `i` (default `true`). A core
    /// whose CPU does not exist runs unpinned and says so in
    /// [`CoreMetrics::pinned`](crate::metrics::CoreMetrics::pinned).
    pub fn pin_cores(mut self, yes: bool) -> Self {
        self.pin = yes;
        self
    }

    /// Reserves the highest free core for partitions placed with
    /// [`Placement::Reserved(name)`](Placement::Reserved): nothing else
    /// runs there. At least one core must stay unreserved.
    pub fn reserve_core(mut self, name: &str) -> Self {
        self.reservations.push(name.to_owned());
        self
    }

    /// The default placement of new partitions (default
    /// [`Placement::Local`]).
    pub fn placement(mut self, p: Placement) -> Self {
        self.placement = p;
        self
    }

    /// How partitions on a core share it (default [`Fairness::Shares`]).
    pub fn fairness(mut self, f: Fairness) -> Self {
        self.sched.fairness = f;
        self
    }

    /// The longest scheduling turn of one partition while others wait
    /// (default 500 µs). Must be non-zero.
    pub fn task_quota(mut self, d: Duration) -> Self {
        self.sched.task_quota = d;
        self
    }

    /// A task poll longer than this is counted as a long poll in
    /// [`PartitionMetrics::long_polls`](crate::metrics::PartitionMetrics)
    /// (default 10 ms).
    pub fn stall_threshold(mut self, d: Duration) -> Self {
        self.sched.stall_threshold = d;
        self
    }

    /// Moving partitions between cores on the runtime's own initiative:
    /// with `Some(every)`, a balancer looks at the cores' load every
    /// `every` and migrates partitions from the busiest to the idlest
    /// unreserved core when the gap is large and stays large (see the
    /// crate's `balance` module for the rule). Default `None`: partitions
    /// move only when told to. A zero interval is `InvalidInput`.
    pub fn rebalance(mut self, every: Option<Duration>) -> Self {
        self.rebalance = every;
        self
    }

    /// Whether stream sockets (TCP, Unix) read and write through a
    /// per-core `io_uring` where the kernel allows one (default `true`,
    /// unless the environment variable `FAIRLOOP_IO_URING` is `0`, `off`
    /// or `false`). The ring hands a core's reads and writes to the kernel
    /// in batches, one syscall per loop iteration instead of one per
    /// operation; see `fairloop::net` for what changes for a stream (its
    /// writes are buffered until they reach the kernel: `flush` waits for
    /// that). Where io_uring is missing or forbidden (a kernel before 6.1,
    /// seccomp, `kernel.io_uring_disabled`), or with `false`, streams use
    /// epoll readiness and one syscall per read or write.
    /// [`Runtime::uses_io_uring`] says which one the runtime got.
    pub fn io_uring(mut self, yes: bool) -> Self {
        self.io_uring = yes;
        self
    }

    /// How long a stream dropped with written bytes still on their way may
    /// go on sending them (default 10 s; only with io_uring, where a write
    /// returns before the kernel has the bytes). If the peer has not taken
    /// them by then, the connection is reset rather than ended cleanly, so
    /// the peer cannot mistake the cut for the end of the data, and the
    /// socket closes. Zero resets such a stream at once (as `SO_LINGER` 0).
    pub fn stream_linger(mut self, d: Duration) -> Self {
        self.stream_linger = d;
        self
    }

    /// Starts the runtime's cores and returns once all of them run.
    pub fn build(self) -> io::Result<Runtime> {
        let config = self.validate()?;
        let n = config.cores;
        let cpus = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut cores = Vec::with_capacity(n);
        let mut locals = Vec::with_capacity(n);
        for i in 0..n {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            cores.push(CoreShared {
                index: i,
                park: ParkFlag::new(),
                waker,
                pending: Injector::new(),
                control: tx,
                latency_pending: AtomicBool::new(false),
                stats: CoreStats::default(),
                reserved_for: config.reserved[i].clone(),
                exited: Mutex::new(false),
                io: IoDriver::new(poll.registry().try_clone()?),
                requests: RequestQueue::new(),
            });
            locals.push((poll, rx, cpus.get(i).copied()));
        }
        static RUNTIME_IDS: AtomicU64 = AtomicU64::new(0);
        let shared = Arc::new(Shared {
            id: RUNTIME_IDS.fetch_add(1, Ordering::Relaxed),
            cores: cores.into_boxed_slice(),
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(n as u64),
            closed: AtomicBool::new(false),
            spawn_rr: AtomicUsize::new(0),
            place_rr: AtomicUsize::new(0),
            config,
        });
        {
            let mut reg = shared.registry.lock();
            for i in 0..n {
                let root = Arc::new(PartitionInner::new(
                    shared.clone(),
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
        }

        let (ready_tx, ready_rx) = crossbeam_channel::bounded(n);
        let mut threads = Vec::with_capacity(n);
        let mut failure = None;
        for (i, (poll, rx, cpu)) in locals.into_iter().enumerate() {
            let shared2 = shared.clone();
            let ready = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("fairloop-core-{i}"))
                .spawn(move || core::run(shared2, i, poll, rx, cpu, ready));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    failure = failure
                        .or_else(|| Some(io::Error::other("a core thread died while starting")))
                }
            }
        }
        let mut balancer = None;
        if failure.is_none() {
            if let Some(every) = shared.config.rebalance {
                let (tx, rx) = crossbeam_channel::bounded(0);
                match balance::spawn(Arc::downgrade(&shared), every, rx) {
                    Ok(t) => balancer = Some((tx, t)),
                    Err(e) => failure = Some(e),
                }
            }
        }
        let rt = Runtime {
            handle: Handle { shared },
            threads,
            balancer,
        };
        match failure {
            None => Ok(rt),
            Some(e) => Err(e), // dropping `rt` stops the cores that did start
        }
    }

    fn validate(self) -> io::Result<Config> {
        let n = self.cores.unwrap_or_else(num_cpus::get);
        if n == 0 || n > MAX_CORES {
            return Err(invalid(format!(
                "cores({n}): a runtime needs between 1 and {MAX_CORES} cores"
            )));
        }
        if self.sched.task_quota.is_zero() {
            return Err(invalid("task_quota(0): the quota must be positive"));
        }
        if self.rebalance.is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "rebalance(Some(0)): the balancer's interval must be positive",
            ));
        }
        if self.reservations.len() >= n {
            return Err(invalid(format!(
                "reserve_core: {} reservation(s) on {n} core(s) would leave no core for unreserved work",
                self.reservations.len()
            )));
        }
        let mut reserved: Vec<Option<String>> = vec![None; n];
        for (k, name) in self.reservations.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid("reserve_core(\"\"): a reservation needs a name"));
            }
            if self.reservations[..k].contains(name) {
                return Err(invalid(format!(
                    "reserve_core({name:?}): that reservation was already made"
                )));
            }
            reserved[n - 1 - k] = Some(name.clone());
        }
        let config = Config {
            cores: n,
            pin: self.pin,
            reserved,
            placement: self.placement.clone(),
            sched: self.sched,
            rebalance: self.rebalance,
            io_uring: self.io_uring,
            stream_linger: self.stream_linger,
        };
        // The default placement must make sense on its own.
        config.check_placement(&self.placement)?;
        Ok(config)
    }
}

/// A validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) cores: usize,
    pub(crate) pin: bool,
    /// Per core: the reservation it serves.
    pub(crate) reserved: Vec<Option<String>>,
    pub(crate) placement: Placement,
    pub(crate) sched: SchedulerConfig,
    pub(crate) rebalance: Option<Duration>,
    pub(crate) io_uring: bool,
    pub(crate) stream_linger: Duration,
}

impl Config {
    pub(crate) fn is_reserved(&self, core: usize) -> bool {
        self.reserved[core].is_some()
    }
}

/// What a core's peers may touch.
pub(crate) struct CoreShared {
    pub(crate) index: usize,
    park: ParkFlag,
    waker: mio::Waker,
    /// Partitions that received foreign work since the core last looked.
    pub(crate) pending: Injector<Arc<PartitionInner>>,
    control: Sender<Control>,
    /// A latency partition received foreign work: look between polls.
    pub(crate) latency_pending: AtomicBool,
    pub(crate) stats: CoreStats,
    pub(crate) reserved_for: Option<String>,
    /// The sockets registered with this core's `mio::Poll`.
    pub(crate) io: IoDriver,
    /// Set, under the lock, when the core has finished shutting down; see
    /// [`CoreShared::send_adoption`].
    pub(crate) exited: Mutex<bool>,
    /// What other threads want done on the ring.
    requests: RequestQueue<RingRequest>,
}

impl CoreShared {
    /// Wakes the core if it is parked (see [`crate::park`]). Call after
    /// making work visible to it.
    pub(crate) fn unpark(&self) {
        if self.park.should_wake() {
            // An error here means the eventfd is gone with its Poll: the
            // core has exited and there is nobody to wake.
            let _ = self.waker.wake();
        }
    }

    /// Asks the core for something on its ring (cancel an operation, call
    /// a target), from a thread that cannot touch the ring (it is the
    /// core's alone).
    pub(crate) fn request(&self, request: RingRequest) {
        self.requests.push(request);
        self.unpark();
    }

    /// Whether ring requests wait (the core checks before it parks).
    pub(crate) fn has_requests(&self) -> bool {
        self.requests.is_pending()
    }

    /// The ring requests made since the last call.
    pub(crate) fn take_requests(&self) -> Vec<RingRequest> {
        self.requests.take()
    }

    pub(crate) fn park_flag(&self) -> &ParkFlag {
        &self.park
    }

    /// Recent busy fraction, 0 while the core sleeps.
    pub(crate) fn load(&self) -> f64 {
        if self.park.is_parked() {
            0.0
        } else {
            self.stats.load()
        }
    }

    /// Recent count of partitions wanting the CPU, 0 while the core sleeps.
    pub(crate) fn demand(&self) -> f64 {
        if self.park.is_parked() {
            0.0
        } else {
            self.stats.demand()
        }
    }

    /// Sends a message that carries nothing the core must take care of
    /// (it is dropped if the core has exited).
    pub(crate) fn send(&self, msg: Control) {
        if self.control.send(msg).is_ok() {
            self.unpark();
        }
    }

    /// Sends an adoption, or gives it back if the core has finished its
    /// shutdown: a partition's tasks must never land in a channel nobody
    /// reads. The lock pairs with the exiting core's last look at its
    /// channel.
    pub(crate) fn send_adoption(&self, msg: Control) -> Result<(), Control> {
        let exited = self.exited.lock();
        if *exited {
            return Err(msg);
        }
        match self.control.send(msg) {
            Ok(()) => {
                drop(exited);
                self.unpark();
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
}

#[derive(Default)]
struct Registry {
    /// Named partitions live until the runtime ends.
    by_name: HashMap<String, Arc<PartitionInner>>,
    /// Every partition, for metrics and shutdown; anonymous ones drop out
    /// when their last handle and task are gone.
    all: HashMap<u64, Weak<PartitionInner>>,
    roots: Vec<Arc<PartitionInner>>,
    /// Size at which dead entries of `all` are swept next.
    sweep_at: usize,
}

impl Registry {
    fn insert(&mut self, p: &Arc<PartitionInner>) {
        if self.all.len() >= self.sweep_at {
            // Amortised O(1): sweep when the map has doubled since the last
            // sweep.
            self.all.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = (self.all.len() * 2).max(64);
        }
        self.all.insert(p.id, Arc::downgrade(p));
    }
}

/// State shared by the runtime's cores, handles, partitions and tasks.
pub(crate) struct Shared {
    /// Unique among the runtimes of the process (sockets use it to notice
    /// they moved to another runtime).
    pub(crate) id: u64,
    pub(crate) cores: Box<[CoreShared]>,
    pub(crate) config: Config,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    closed: AtomicBool,
    pub(crate) spawn_rr: AtomicUsize,
    pub(crate) place_rr: AtomicUsize,
}

impl Shared {
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
        let applied_here = with_core(|core| match core {
            Some(core) if core.index == owner && Arc::ptr_eq(&core.shared, &p.shared) => {
                core.apply_shares(p);
                true
            }
            _ => false,
        });
        if !applied_here {
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

    fn metrics(&self) -> RuntimeMetrics {
        let partitions = self.partitions();
        RuntimeMetrics {
            cores: self
                .cores
                .iter()
                .map(|c| c.stats.snapshot(c.index, c.reserved_for.clone()))
                .collect(),
            partitions: partitions.iter().map(|p| p.metrics()).collect(),
        }
    }

    /// Starts `future` in the root partition of `core`, or refuses with a
    /// message.
    fn spawn_root<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.check_spawn_core(core) {
            Ok(root) => root.spawn(future),
            Err(e) => JoinHandle::refused(JoinError::cancelled(Cancelled::Refused(e.to_string()))),
        }
    }

    fn check_spawn_core(&self, core: usize) -> io::Result<Arc<PartitionInner>> {
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

    fn unreserved_cores(&self) -> Vec<usize> {
        (0..self.config.cores)
            .filter(|&i| !self.config.is_reserved(i))
            .collect()
    }
}

/// A cheap, cloneable, `Send + Sync` handle to a runtime: spawn onto it from
/// any thread. Spawning after the runtime shut down yields a [`JoinError`]
/// that [`is_cancelled`](JoinError::is_cancelled).
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// Spawns `future` into the root partition of the next unreserved core,
    /// round robin.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let core = self.shared.next_unreserved(&self.shared.spawn_rr);
        self.shared.spawn_root(core, future)
    }

    /// Spawns `future` into the root partition of `core`. A core that does
    /// not exist, or a reserved one, gives a handle whose join fails with a
    /// message saying so (see [`Handle::try_spawn_on`] for an `io::Result`).
    pub fn spawn_on<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn_root(core, future)
    }

    /// Like [`Handle::spawn_on`], but reports a bad core as
    /// `ErrorKind::InvalidInput` instead of through the handle.
    pub fn try_spawn_on<F>(&self, core: usize, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let root = self.shared.check_spawn_core(core)?;
        Ok(root.spawn(future))
    }

    /// The root partition of `core`, or `None` for a core that does not
    /// exist.
    pub fn root_partition(&self, core: usize) -> Option<Partition> {
        self.shared.root(core).map(|inner| Partition { inner })
    }

    /// The number of cores.
    pub fn cores(&self) -> usize {
        self.shared.config.cores
    }

    /// A snapshot of every core's and partition's metrics.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.shared.metrics()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("cores", &self.cores())
            .finish()
    }
}

/// A running fairloop runtime: `cores` threads, each running a
/// fair-partition reactor.
///
/// ```
/// use fairloop_runtime::Runtime;
///
/// let rt = Runtime::builder().cores(2).pin_cores(false).build()?;
/// let sum = rt.block_on(async {
///     let a = fairloop_runtime::spawn(async { 20 });
///     let b = fairloop_runtime::spawn(async { 22 });
///     a.await.unwrap() + b.await.unwrap()
/// });
/// assert_eq!(sum, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    handle: Handle,
    threads: Vec<thread::JoinHandle<()>>,
    /// The balancer thread and the channel whose disconnection stops it.
    balancer: Option<(Sender<()>, thread::JoinHandle<()>)>,
}

impl Runtime {
    /// Starts configuring a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Runs `future` to completion in the root partition of core 0, blocking
    /// the calling thread until it is done, and returns its output. A panic
    /// in `future` resumes on the caller.
    ///
    /// # Panics
    /// When called on one of a fairloop runtime's core threads (it would
    /// block that core); await the future there instead.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send,
    {
        if with_core(|c| c.is_some()) {
            panic!(
                "Runtime::block_on called on a fairloop core thread, which would block that core; \
                 await the future instead"
            );
        }
        let root = self
            .handle
            .shared
            .root(0)
            .expect("core 0 exists while the runtime lives");
        // The task's output must be 'static; `F::Output: Send` plus the
        // future being 'static makes it so.
        match futures_lite::future::block_on(root.spawn(future)) {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("Runtime::block_on: {e}"),
        }
    }

    /// See [`Handle::spawn`].
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// See [`Handle::spawn_on`].
    pub fn spawn_on<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn_on(core, future)
    }

    /// Runs one copy of `f(core)` on every unreserved core, in that core's
    /// root partition, and waits for all of them. The futures need not be
    /// `Send`: each is created on the core that runs it. Results come in
    /// core order. A panic in any copy resumes on the caller.
    pub fn run_on_shards<F, Fut>(&self, f: F) -> Vec<Fut::Output>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let f = Arc::new(f);
        let starters: Vec<_> = self
            .handle
            .shared
            .unreserved_cores()
            .into_iter()
            .map(|core| {
                let f = f.clone();
                // The Send starter builds the !Send future on its core and
                // hands back a handle to it, awaited below.
                #[allow(clippy::async_yields_async)]
                self.handle
                    .spawn_on(core, async move { crate::spawn_local(f(core)) })
            })
            .collect();
        futures_lite::future::block_on(async move {
            let mut out = Vec::with_capacity(starters.len());
            for s in starters {
                let result = match s.await {
                    Ok(inner) => inner.await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(v) => out.push(v),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("Runtime::run_on_shards: {e}"),
                }
            }
            out
        })
    }

    /// A handle for spawning from other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The number of cores.
    pub fn cores(&self) -> usize {
        self.handle.cores()
    }

    /// Whether every core reads and writes stream sockets through its own
    /// `io_uring` (see [`Builder::io_uring`]); `false` means epoll
    /// readiness on at least one core.
    pub fn uses_io_uring(&self) -> bool {
        self.handle
            .shared
            .cores
            .iter()
            .all(|c| c.stats.io_uring.load(Ordering::Relaxed))
    }

    /// A snapshot of every core's and partition's metrics.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Shuts the runtime down, waiting at most `d` for its cores.
    ///
    /// Every core stops between two task polls, drops the futures of all its
    /// pending tasks (also detached ones, ones whose `JoinHandle` outlives
    /// the runtime, ones parked on timers or in reference cycles), and
    /// exits. A core stuck in a long poll cannot stop before the poll
    /// returns: after `d` this returns anyway and that core finishes on its
    /// own. Dropping the runtime is the same with no time limit.
    /// `spawn_blocking` closures already running are not waited for.
    pub fn shutdown_timeout(mut self, d: Duration) {
        self.shutdown(Some(d));
    }

    fn shutdown(&mut self, limit: Option<Duration>) {
        let shared = &self.handle.shared;
        shared.closed.store(true, Ordering::SeqCst);
        if let Some((stop, balancer)) = self.balancer.take() {
            drop(stop);
            let _ = balancer.join();
        }
        for c in shared.cores.iter() {
            c.send(Control::Shutdown);
        }
        let deadline = limit.map(|d| Instant::now() + d);
        let me = thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() == me {
                // Dropped from inside one of its own tasks: that core exits
                // after the current poll; joining it here would deadlock.
                continue;
            }
            match deadline {
                None => {
                    let _ = t.join();
                }
                Some(deadline) => {
                    while !t.is_finished() && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(1));
                    }
                    if t.is_finished() {
                        let _ = t.join();
                    }
                }
            }
        }
        // Break the cycles partition -> runtime -> registry -> partition.
        let (names, roots) = {
            let mut reg = shared.registry.lock();
            (
                std::mem::take(&mut reg.by_name),
                std::mem::take(&mut reg.roots),
            )
        };
        drop(names);
        drop(roots);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cores", &self.cores())
            .finish()
    }
}
