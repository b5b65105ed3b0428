//! The free functions tasks call: [`spawn`], [`spawn_local`],
//! [`yield_now`], [`core_id`] and [`spawn_blocking`].
//!
//! They act on "where the caller is": the partition of the running task (or
//! of the task that started the calling `spawn_blocking` closure). Called
//! from a thread that no fairloop runtime runs, they panic with a message
//! that says so.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{spawn_into, Cancelled, JoinError, JoinHandle};
use crate::context::{with_core, BlockingGuard, BLOCKING};
use crate::error::outside_runtime;
use crate::partition::PartitionInner;

/// Where new work of the caller goes.
enum Target {
    Partition(Arc<PartitionInner>),
    /// A core thread that is shutting down: nothing starts any more.
    Closed,
    Outside,
}

#[inline]
fn target(allow_blocking: bool) -> Target {
    let core = with_core(|core| {
        core.map(|core| {
            if core.is_shutting_down() {
                return Target::Closed;
            }
            match core.current_partition() {
                Some(p) => Target::Partition(p),
                // Code on a core thread between task polls (a destructor, a
                // waker) belongs to the core's root partition.
                None => match core.runtime.root(core.index) {
                    Some(p) => Target::Partition(p),
                    None => Target::Closed,
                },
            }
        })
    });
    if let Some(t) = core {
        return t;
    }
    if allow_blocking {
        if let Ok(Some(p)) = BLOCKING.try_with(|b| b.borrow().clone()) {
            return Target::Partition(p);
        }
    }
    Target::Outside
}

/// Spawns a task into the caller's partition.
///
/// # Panics
/// When called from a thread that no fairloop runtime runs.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match target(true) {
        Target::Partition(p) => spawn_into(p, future, false),
        Target::Closed => JoinHandle::refused(JoinError::cancelled(Cancelled::Shutdown)),
        Target::Outside => outside_runtime("fairloop::spawn"),
    }
}

/// Spawns a `!Send` task into the caller's partition, on the caller's core.
///
/// The partition is pinned to its core for good: it can no longer migrate.
///
/// # Panics
/// When not called from a task on a fairloop core (a `spawn_blocking`
/// closure is not on a core).
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match target(false) {
        // The caller runs a task of `p` on this thread, so this thread owns
        // `p`: the contract `spawn_into` needs for a local task.
        Target::Partition(p) => spawn_into(p, future, true),
        Target::Closed => JoinHandle::refused(JoinError::cancelled(Cancelled::Shutdown)),
        Target::Outside => outside_runtime("fairloop::spawn_local"),
    }
}

/// Lets the other tasks of the partition (and, once the turn ends, other
/// partitions) run before the caller continues.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The index of the core running the caller.
///
/// # Panics
/// When not called on a fairloop core thread.
#[track_caller]
pub fn core_id() -> usize {
    with_core(|core| core.map(|c| c.index)).unwrap_or_else(|| outside_runtime("fairloop::core_id"))
}

/// Runs blocking code on a thread pool (the `blocking` crate's), off the
/// reactors, and awaits its result from the caller's partition.
///
/// Inside `f`, [`spawn`] and [`crate::partition::current`] act for the
/// calling partition. A panic in `f` is reported by the handle's
/// [`JoinError::is_panic`]. Aborting the handle stops waiting, not `f`.
///
/// With `Builder::tokio_compat`, `f` runs inside the tokio context of the
/// core that owns the partition (`tokio::runtime::Handle::current()` and
/// `tokio::spawn` work there, as in its tasks).
///
/// # Panics
/// When called from a thread that no fairloop runtime runs.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let p = match target(true) {
        Target::Partition(p) => p,
        Target::Closed => return JoinHandle::refused(JoinError::cancelled(Cancelled::Shutdown)),
        Target::Outside => outside_runtime("fairloop::task::spawn_blocking"),
    };
    let context = p.clone();
    let work = blocking::unblock(move || {
        // With `tokio_compat`, tokio's context too: that of the core that
        // owns the partition now.
        #[cfg(feature = "tokio-compat")]
        let tokio = context.runtime.remote(context.owner()).tokio.get().cloned();
        #[cfg(feature = "tokio-compat")]
        let _tokio = tokio.as_ref().map(|h| h.enter());
        let _guard = BlockingGuard::enter(context);
        catch_unwind(AssertUnwindSafe(f))
    });
    p.spawn(async move {
        match work.await {
            Ok(v) => v,
            // Re-raised inside the waiting task, whose wrapper turns it into
            // a JoinError without printing it a second time.
            Err(payload) => resume_unwind(payload),
        }
    })
}
