//! [`Builder`]: the runtime's settings, their validation into a
//! [`Config`], and starting the core threads.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fairloop_partitions::{Fairness, SchedulerConfig};

use super::{Handle, Runtime, RuntimeInner};
use crate::error::invalid;
use crate::partition::balance;
use crate::partition::Placement;
use crate::reactor::{self, Remote};

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
    tokio_compat: bool,
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
            tokio_compat: tokio_compat_default(),
        }
    }
}

/// `Builder::tokio_compat`'s default: off, unless this build has the
/// `tokio-compat` feature and the environment variable
/// `FAIRLOOP_TOKIO_COMPAT` is `1`, `on` or `true` (how the test suite runs
/// every runtime it builds over tokio).
fn tokio_compat_default() -> bool {
    cfg!(feature = "tokio-compat")
        && matches!(
            std::env::var("FAIRLOOP_TOKIO_COMPAT").as_deref(),
            Ok("1" | "on" | "true")
        )
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
    /// [`Placement::Local`]): where a partition goes when its builder
    /// names no placement, and where `partition::spawn("name", ..)` puts a
    /// partition it creates.
    ///
    /// With [`Placement::EveryCore`], those partitions are sharded: one
    /// shard on every unreserved core (the Seastar model, where every
    /// scheduling group exists on every shard). Anonymous partitions
    /// (`PartitionSpec::anonymous`) are the exception: they end with their
    /// tasks, so they are placed [`Placement::Local`], never sharded. The
    /// root partitions are per core whatever the default. A default that
    /// names a core that does not exist, a reserved core (`Core(i)`) or an
    /// unknown reservation makes [`build`](Builder::build) fail.
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

    /// Whether tokio's APIs work inside fairloop tasks (default `false`,
    /// unless the build has the feature and the environment variable
    /// `FAIRLOOP_TOKIO_COMPAT` is `1`, `on` or `true`; needs the cargo
    /// feature `tokio-compat`).
    ///
    /// With `true`, every core thread also runs a tokio `current_thread`
    /// runtime, driven by the core itself: `tokio::spawn`,
    /// `tokio::time`, `tokio::net`, `tokio::task::spawn_blocking`,
    /// `tokio::task::yield_now` and `tokio::runtime::Handle::current()`
    /// work in any task, on any core and in any partition, and what they
    /// start runs on that core's thread. The work tokio schedules runs
    /// under a sharded partition named `"tokio"` (a shard on every core,
    /// reserved ones included), which shares the core with the others by
    /// its shares like any partition and shows in the metrics. See the
    /// crate's `tokio_compat` docs for the model and its costs.
    ///
    /// Without it, a tokio API called in a fairloop task panics with
    /// tokio's own message ("there is no reactor running, must be called
    /// from the context of a Tokio 1.x runtime"). With `true` but without
    /// the cargo feature, [`build`](Builder::build) fails with
    /// `InvalidInput`, saying which feature to enable.
    pub fn tokio_compat(mut self, yes: bool) -> Self {
        self.tokio_compat = yes;
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
            let (remote, control) = Remote::new(i, &poll, config.reserved[i].clone())?;
            cores.push(remote);
            locals.push((poll, control, cpus.get(i).copied()));
        }
        let runtime = RuntimeInner::new(cores.into_boxed_slice(), config);

        let (ready_tx, ready_rx) = crossbeam_channel::bounded(n);
        let mut threads = Vec::with_capacity(n);
        let mut failure = None;
        for (i, (poll, rx, cpu)) in locals.into_iter().enumerate() {
            let runtime = runtime.clone();
            let ready = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("fairloop-core-{i}"))
                .spawn(move || reactor::run(runtime, i, poll, rx, cpu, ready));
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
            if let Some(every) = runtime.config.rebalance {
                let (tx, rx) = crossbeam_channel::bounded(0);
                match balance::spawn(Arc::downgrade(&runtime), every, rx) {
                    Ok(t) => balancer = Some((tx, t)),
                    Err(e) => failure = Some(e),
                }
            }
        }
        let rt = Runtime {
            handle: Handle { inner: runtime },
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
        if self.tokio_compat && !cfg!(feature = "tokio-compat") {
            return Err(invalid(
                "tokio_compat(true): this build of fairloop has no tokio support; enable the \
                 cargo feature `tokio-compat` of the `fairloop` crate",
            ));
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
            tokio_compat: self.tokio_compat,
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
    /// Whether each core also drives a tokio runtime (only ever `true`
    /// with the `tokio-compat` feature).
    pub(crate) tokio_compat: bool,
}

impl Config {
    pub(crate) fn is_reserved(&self, core: usize) -> bool {
        self.reserved[core].is_some()
    }

    /// The cores not reserved with [`Builder::reserve_core`], ascending:
    /// where unplaced work may go.
    pub(crate) fn unreserved_cores(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cores).filter(|&i| !self.is_reserved(i))
    }
}
