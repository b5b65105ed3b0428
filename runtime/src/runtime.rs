//! The runtime: its configuration, its cores, and the handles users hold.
//!
//! [`Builder::build`] validates the configuration, creates one `mio::Poll`
//! and `mio::Waker` per core, starts one thread per core (pinned to a CPU
//! where the machine has it), and returns once every core is running.
//! Dropping the [`Runtime`] shuts it down: see [`Runtime::shutdown_timeout`];
//! [`Runtime::shutdown_graceful`] gives its tasks time to finish first.
//!
//! Inside: `builder.rs` (settings, validation, starting the threads),
//! `inner.rs` ([`RuntimeInner`], what the cores, handles, partitions and
//! tasks share), `registry.rs` (the partitions by id and name) and
//! `handle.rs` ([`Handle`]).

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::context::with_core;
use crate::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use crate::shutdown::{self, ShutdownReport, STOP_LIMIT};
use crate::task::JoinHandle;

mod builder;
mod handle;
mod inner;
mod registry;

pub(crate) use builder::Config;
pub use builder::{Builder, MAX_CORES};
pub use handle::Handle;
pub(crate) use inner::RuntimeInner;

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
            .inner
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
        let cores: Vec<usize> = self.handle.inner.config.unreserved_cores().collect();
        let starters: Vec<_> = cores
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
            .inner
            .remotes()
            .iter()
            .all(|c| c.stats.io_uring.load(Ordering::Relaxed))
    }

    /// A snapshot of every core's and partition's metrics; see
    /// [`Handle::metrics`] for its cost.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// See [`Handle::core_metrics`].
    pub fn core_metrics(&self) -> Vec<CoreMetrics> {
        self.handle.core_metrics()
    }

    /// See [`Handle::top_partitions`].
    pub fn top_partitions(&self, n: usize) -> Vec<PartitionMetrics> {
        self.handle.top_partitions(n)
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
    /// [`shutdown::is_requested`](crate::shutdown::is_requested) is `true`
    /// from the start, and [`shutdown::requested`](crate::shutdown::requested)
    /// futures are woken, but tasks get no time to act on it: see
    /// [`Runtime::shutdown_graceful`] for that.
    pub fn shutdown_timeout(mut self, d: Duration) {
        self.shutdown(Some(d));
    }

    /// Shuts the runtime down gracefully: asks every task to finish, gives
    /// them until `deadline`, then cancels the rest as
    /// [`shutdown_timeout`](Runtime::shutdown_timeout) does.
    ///
    /// 1. Marks the shutdown requested: every
    ///    [`shutdown::requested()`](crate::shutdown::requested) future
    ///    resolves, on every core, and
    ///    [`shutdown::is_requested()`](crate::shutdown::is_requested)
    ///    returns `true`.
    /// 2. Blocks the calling thread until no task of the runtime is left
    ///    (every future has returned, panicked, been aborted or dropped) or
    ///    `deadline` has passed. Tasks run as usual meanwhile and may spawn
    ///    more. `Duration::MAX` waits for as long as tasks are left.
    /// 3. Stops the cores as `shutdown_timeout(`[`STOP_LIMIT`]`)`: each
    ///    drops the future of every task still pending, once.
    ///
    /// The [`ShutdownReport`] counts the tasks that ended on their own
    /// (`completed`) and those the shutdown cancelled (`cancelled`).
    ///
    /// Called from a task of this runtime (or a `spawn_blocking` closure
    /// it started), the drain would wait for the caller's own task and
    /// block its core: step 2 is skipped (the report's `drained` is
    /// `false`), and the caller's core stops once the caller's poll
    /// returns (`stopped` is `false`).
    ///
    /// [`STOP_LIMIT`]: crate::shutdown::STOP_LIMIT
    pub fn shutdown_graceful(mut self, deadline: Duration) -> ShutdownReport {
        let inner = self.handle.inner.clone();
        // A deadline too far away to add to the clock (`Duration::MAX`) is
        // no deadline.
        let until = Instant::now().checked_add(deadline);
        let drained = if shutdown::inside(&inner) {
            inner.start_counting();
            false
        } else {
            inner.drain(until)
        };
        let stopped = self.shutdown(Some(STOP_LIMIT));
        inner.report(drained, stopped)
    }

    /// Stops the cores and waits for them, at most `limit`; returns whether
    /// every core thread exited and was joined.
    fn shutdown(&mut self, limit: Option<Duration>) -> bool {
        let inner = &self.handle.inner;
        inner.close();
        if let Some((stop, balancer)) = self.balancer.take() {
            drop(stop);
            let _ = balancer.join();
        }
        // A limit too far away to add to the clock (`Duration::MAX`) is no
        // limit.
        let deadline = limit.and_then(|d| Instant::now().checked_add(d));
        let me = thread::current().id();
        let mut all_joined = true;
        for t in self.threads.drain(..) {
            if t.thread().id() == me {
                // Dropped from inside one of its own tasks: that core exits
                // after the current poll; joining it here would deadlock.
                all_joined = false;
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
                    } else {
                        all_joined = false;
                    }
                }
            }
        }
        inner.forget_partitions();
        all_joined
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
