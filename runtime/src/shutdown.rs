//! Graceful shutdown: how tasks learn that their runtime is stopping
//! ([`requested`], [`is_requested`]) and what
//! [`Runtime::shutdown_graceful`] reports ([`ShutdownReport`]).
//!
//! ## The model
//!
//! A runtime's life ends in three steps when it is stopped with
//! [`Runtime::shutdown_graceful(deadline)`](crate::Runtime::shutdown_graceful):
//!
//! 1. **Requested.** The runtime marks the shutdown requested and wakes
//!    every task waiting in [`requested()`], on every core. Nothing else
//!    changes: tasks keep running and may spawn, sleep and do IO. Each
//!    should now finish what it has started and end (an accept loop drops
//!    its listener, a connection finishes its request).
//! 2. **Drain.** The caller waits until no task of the runtime is left, or
//!    until `deadline` has passed, whichever comes first.
//! 3. **Cancel.** Exactly as [`Runtime::shutdown_timeout`]: every core
//!    stops between two polls and drops the future of every task still
//!    pending (each once), and the caller waits at most [`STOP_LIMIT`] for
//!    the core threads to exit.
//!
//! [`shutdown_timeout`](crate::Runtime::shutdown_timeout) and dropping the
//! [`Runtime`] skip the first two steps, but they too mark the shutdown
//! requested (and wake the waiters) as they begin, so [`is_requested`] is
//! `true` in the destructors they run.
//!
//! Tasks are the unit of the drain: a task is *left* from its spawn until
//! its future has been dropped (it returned, panicked, was aborted, or was
//! cancelled). Detached tasks count. A task that never ends on its own (an
//! accept loop that does not watch [`requested()`], a task blocked on a
//! waker nobody calls) keeps the drain going until the deadline.
//!
//! [`Runtime`]: crate::Runtime
//! [`Runtime::shutdown_graceful`]: crate::Runtime::shutdown_graceful
//! [`Runtime::shutdown_timeout`]: crate::Runtime::shutdown_timeout

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::context::{here, Here};
use crate::error::outside_runtime;
use crate::notify::Waiters;
use crate::runtime::RuntimeInner;

/// How long [`Runtime::shutdown_graceful`](crate::Runtime::shutdown_graceful)
/// waits, after the drain, for the cores to drop what is left and exit:
/// 2 s. They need microseconds unless one is stuck in a long poll, or the
/// kernel is slow to give back a core's io_uring buffers (a core waits up
/// to 1 s for them). A core still running after that finishes on its own
/// and [`ShutdownReport::stopped`] is `false`.
pub const STOP_LIMIT: Duration = Duration::from_secs(2);

/// What [`Runtime::shutdown_graceful`](crate::Runtime::shutdown_graceful)
/// did.
///
/// Every task that ends between the moment the shutdown begins and the
/// moment the cores have exited is counted once, in `completed` or in
/// `cancelled`; so with `stopped`, `completed + cancelled` is the number of
/// tasks that were left when the shutdown began plus those spawned during
/// it. (A task that ends on another core at the very moment the shutdown
/// begins may count as having ended before it.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that ended on their own during the shutdown: their future
    /// returned, panicked, or was aborted through its `JoinHandle`. Mostly
    /// during the drain; also a poll that was running when the cores were
    /// told to stop and returned `Ready`.
    pub completed: usize,
    /// Tasks whose future the shutdown dropped before it completed: the
    /// ones left when the drain ended, and any spawned while the cores
    /// were stopping (from a `Handle`, a destructor, a `spawn_blocking`
    /// closure).
    pub cancelled: usize,
    /// Whether every task ended before the deadline (so none was left to
    /// cancel when the drain ended).
    pub drained: bool,
    /// Whether every core thread had exited when
    /// [`shutdown_graceful`](crate::Runtime::shutdown_graceful) returned
    /// (see [`STOP_LIMIT`]). When `false`, the counts miss the tasks those
    /// cores had not dropped yet.
    pub stopped: bool,
    /// With `Builder::tokio_compat`: the tasks of the cores' tokio runtimes
    /// (started with `tokio::spawn`) that were still alive when their core
    /// stopped, and were dropped with it. They are not part of the drain
    /// (fairloop does not know them; a connection pool's tasks live as
    /// long as the pool), nor of `completed` or `cancelled`: a task that
    /// must finish belongs in a fairloop task, or awaited by one.
    pub tokio_dropped: usize,
}

/// A future that resolves once a shutdown of the caller's runtime has
/// begun: at once if it already has.
///
/// The runtime is the one of the task that first polls the future (or of
/// the task that started the `spawn_blocking` closure that polls it), so
/// it works on every core and in `spawn_blocking` closures. It does not
/// keep a task from being cancelled: after the deadline of
/// [`Runtime::shutdown_graceful`](crate::Runtime::shutdown_graceful), a
/// task still waiting elsewhere is dropped like any other.
///
/// ```
/// use std::time::Duration;
///
/// use fairloop_runtime::{shutdown, time, Runtime};
///
/// let rt = Runtime::builder().cores(2).pin_cores(false).build()?;
/// rt.spawn(async {
///     let mut ticks = time::interval(Duration::from_millis(10));
///     let mut stop = std::pin::pin!(shutdown::requested());
///     loop {
///         let stopping = futures_lite::future::or(
///             async { stop.as_mut().await; true },
///             async { ticks.tick().await; false },
///         );
///         if stopping.await {
///             break; // flush, say goodbye, ...
///         }
///     }
/// })
/// .detach();
/// let report = rt.shutdown_graceful(Duration::from_secs(5));
/// assert!(report.drained);
/// assert_eq!((report.completed, report.cancelled), (1, 0));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// When polled outside a fairloop runtime (off its core threads and
/// outside its `spawn_blocking` closures): no runtime, so no shutdown to
/// wait for.
pub fn requested() -> Requested {
    Requested {
        runtime: None,
        key: None,
    }
}

/// Whether a shutdown of the caller's runtime has begun (see
/// [`requested`]). `false` outside a fairloop runtime, which has no
/// runtime to shut down.
pub fn is_requested() -> bool {
    current_runtime().is_some_and(|rt| rt.lifecycle.is_requested())
}

/// The future of [`requested`].
#[must_use = "futures do nothing unless awaited"]
pub struct Requested {
    /// The caller's runtime, found at the first poll.
    runtime: Option<Arc<RuntimeInner>>,
    /// This future's place among the runtime's waiters.
    key: Option<usize>,
}

impl Future for Requested {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let runtime = this.runtime.get_or_insert_with(|| {
            current_runtime().unwrap_or_else(|| outside_runtime("fairloop::shutdown::requested"))
        });
        let lifecycle = &runtime.lifecycle;
        if !lifecycle.is_requested() {
            lifecycle.waiters.register(&mut this.key, cx.waker());
            if !lifecycle.is_requested() {
                return Poll::Pending;
            }
        }
        lifecycle.waiters.remove(&mut this.key);
        Poll::Ready(())
    }
}

impl Drop for Requested {
    fn drop(&mut self) {
        if let Some(runtime) = &self.runtime {
            runtime.lifecycle.waiters.remove(&mut self.key);
        }
    }
}

impl std::fmt::Debug for Requested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requested")
            .field(
                "requested",
                &self.runtime.as_ref().map(|r| r.lifecycle.is_requested()),
            )
            .finish()
    }
}

/// The runtime of the calling task or `spawn_blocking` closure.
fn current_runtime() -> Option<Arc<RuntimeInner>> {
    match here()? {
        Here::Core { runtime, .. } => Some(runtime),
        Here::Blocking { partition } => Some(partition.runtime.clone()),
    }
}

/// Whether the caller is a task (or a `spawn_blocking` closure) of
/// `runtime`: one of the tasks a drain would wait for.
pub(crate) fn inside(runtime: &Arc<RuntimeInner>) -> bool {
    current_runtime().is_some_and(|r| Arc::ptr_eq(&r, runtime))
}

/// A runtime's shutdown state: the request, its waiters, and the counts of
/// a graceful shutdown.
pub(crate) struct Lifecycle {
    requested: AtomicBool,
    waiters: Waiters,
    /// Set when a graceful shutdown begins: from then on every task's end
    /// is counted, and a partition losing its last task wakes `drainer`.
    counting: AtomicBool,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
    /// See [`ShutdownReport::tokio_dropped`].
    pub(crate) tokio_dropped: AtomicUsize,
    /// The thread waiting in [`RuntimeInner::drain`].
    drainer: Mutex<Option<Thread>>,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Lifecycle {
            requested: AtomicBool::new(false),
            waiters: Waiters::new(),
            counting: AtomicBool::new(false),
            completed: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            tokio_dropped: AtomicUsize::new(0),
            drainer: Mutex::new(None),
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Marks the shutdown requested and, the first time, wakes every
    /// [`Requested`] future.
    pub(crate) fn request(&self) {
        if !self.requested.swap(true, Ordering::SeqCst) {
            self.waiters.wake_all();
        }
    }

    /// A task ended: `cancelled` if the shutdown dropped its future,
    /// otherwise on its own. Counted only during a graceful shutdown. Every
    /// cancellation is counted: the runtime is closed only after `counting`
    /// is set, on the same thread, and the cores learn of it through their
    /// channels.
    /// `counts` says whether the task is a user's (asked only while
    /// counting).
    #[inline]
    pub(crate) fn task_ended(&self, cancelled: bool, counts: impl FnOnce() -> bool) {
        if self.counting.load(Ordering::Relaxed) && counts() {
            let count = if cancelled {
                &self.cancelled
            } else {
                &self.completed
            };
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A partition's last task ended: the drain may be over.
    ///
    /// The caller has just removed the task from the partition's task set,
    /// under the set's lock. Either the drainer counted that set after the
    /// removal (and saw it), or before it, in which case the drainer's store
    /// of `counting` happens before this load through the set's lock, and
    /// the drainer is woken here: no wake is lost.
    #[inline]
    pub(crate) fn partition_emptied(&self) {
        if self.counting.load(Ordering::Relaxed) {
            if let Some(t) = &*self.drainer.lock() {
                t.unpark();
            }
        }
    }
}

impl RuntimeInner {
    /// Steps 1 and 2 of a graceful shutdown (see the module docs): marks
    /// the shutdown requested, then waits, on the calling thread, until no
    /// task is left or `until` has passed (`None`: no limit). Returns
    /// whether no task is left.
    pub(crate) fn drain(&self, until: Option<Instant>) -> bool {
        let lifecycle = &self.lifecycle;
        *lifecycle.drainer.lock() = Some(thread::current());
        lifecycle.counting.store(true, Ordering::SeqCst);
        lifecycle.request();
        let drained = loop {
            if self.live_tasks() == 0 {
                break true;
            }
            // Woken by `partition_emptied`; spurious wakes just count again.
            match until {
                None => thread::park(),
                Some(until) => match until.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => thread::park_timeout(left),
                    _ => break false,
                },
            }
        };
        lifecycle.drainer.lock().take();
        drained
    }

    /// Marks a graceful shutdown begun without waiting for any task (the
    /// caller is one of them), so that its ends are counted.
    pub(crate) fn start_counting(&self) {
        self.lifecycle.counting.store(true, Ordering::SeqCst);
        self.lifecycle.request();
    }

    /// The tasks of every partition that are left (spawned, future not yet
    /// dropped). O(partitions).
    fn live_tasks(&self) -> usize {
        self.partitions()
            .iter()
            .map(|p| {
                let tasks = p.tasks.lock().wakers.len();
                // The tokio partition's pump lasts until the core stops.
                tasks - usize::from(tasks > 0 && self.is_tokio_shard(p))
            })
            .sum()
    }

    /// The report of a graceful shutdown whose cores were told to stop.
    pub(crate) fn report(&self, drained: bool, stopped: bool) -> ShutdownReport {
        ShutdownReport {
            completed: self.lifecycle.completed.load(Ordering::SeqCst),
            cancelled: self.lifecycle.cancelled.load(Ordering::SeqCst),
            drained,
            stopped,
            tokio_dropped: self.lifecycle.tokio_dropped.load(Ordering::SeqCst),
        }
    }
}
