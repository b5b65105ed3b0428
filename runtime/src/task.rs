//! Tasks: spawning, joining, aborting, and the errors a join reports.
//!
//! A task is an [`async_task`] allocation whose metadata ([`TaskMeta`])
//! carries a pointer to the task's partition, so scheduling a woken task
//! needs no lookup. Each task's future is wrapped in [`TaskFuture`], which
//!
//! * catches a panic and turns it into a [`JoinError`] (a panic never takes
//!   its core or its partition down),
//! * honours [`JoinHandle::abort`] at the next poll, and
//! * on drop, deregisters the task from its partition's set of live tasks —
//!   the set the runtime walks at shutdown to drop every pending future.
//!
//! [`join`] has the user's side of a task ([`JoinHandle`], [`JoinError`]);
//! [`spawn`](mod@spawn) the free functions tasks call (`spawn`,
//! `spawn_local`, `spawn_blocking`, `yield_now`, `core_id`).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_task::Runnable;
use slab::Slab;

use crate::context::task_poll;
use crate::partition::PartitionInner;
use crate::reactor::schedule;

mod join;
mod spawn;

pub(crate) use join::Cancelled;
pub use join::{JoinError, JoinHandle};
pub use spawn::{core_id, spawn, spawn_blocking, spawn_local, yield_now, YieldNow};

/// The per-task header stored by `async-task` next to the future.
pub(crate) struct TaskMeta {
    pub(crate) partition: Arc<PartitionInner>,
    /// `RUNNING`, or why the task must stop at its next poll.
    cancel: AtomicU8,
    /// Index in the partition's [`TaskSet`]; `usize::MAX` until registered.
    key: AtomicUsize,
}

pub(crate) type Task = Runnable<TaskMeta>;

const RUNNING: u8 = 0;
const ABORTED: u8 = 1;
const SHUT_DOWN: u8 = 2;

/// Ends a task that must not run any more, on the calling thread: its next
/// poll returns a cancellation without touching the future, which
/// `async-task` then drops. Going through `run` rather than dropping the
/// `Runnable` matters: the task then completes with an output, so its
/// `JoinHandle` reports `is_cancelled()` instead of finding no output.
pub(crate) fn cancel_now(task: Task) {
    task.metadata().cancel.store(SHUT_DOWN, Ordering::Release);
    task.run();
}

impl TaskMeta {
    /// The task's future was dropped: counted by a graceful shutdown in
    /// progress, as cancelled if `by_shutdown` (but not the pump of a
    /// `tokio` shard, which is the runtime's own).
    #[inline]
    fn ended(&self, by_shutdown: bool) {
        let runtime = &self.partition.runtime;
        runtime
            .lifecycle
            .task_ended(by_shutdown, || !runtime.is_tokio_shard(&self.partition));
    }

    /// Asks the task to stop at its next poll (see [`JoinHandle::abort`]).
    fn abort(&self) {
        let _ = self
            .cancel
            .compare_exchange(RUNNING, ABORTED, Ordering::AcqRel, Ordering::Acquire);
        let key = self.key.load(Ordering::Acquire);
        if key == usize::MAX {
            return;
        }
        // The task may be parked on a waker nobody will call: wake it so it
        // gets polled and sees the flag. If the slot was reused by another
        // task of the partition, that task sees a harmless spurious wake.
        let waker = self.partition.tasks.lock().wakers.get(key).cloned();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The live tasks of one partition: a waker for each, so that shutdown can
/// reach tasks that no queue holds (parked on a timer, in a reference
/// cycle, or waiting on a waker nobody will ever call).
#[derive(Default)]
pub(crate) struct TaskSet {
    pub(crate) wakers: Slab<Waker>,
    /// Set at shutdown: no task may join the partition afterwards.
    pub(crate) closed: bool,
}

pin_project_lite::pin_project! {
    /// A task's future as the runtime polls it.
    struct TaskFuture<'a, F> {
        meta: &'a TaskMeta,
        // Dropped by `TaskFuture` itself, under `catch_unwind`, as soon as
        // the task ends: `async-task` aborts the process if a future's
        // destructor panics inside it, and a panicking destructor must not
        // take the core down.
        #[pin]
        future: Option<F>,
        // Declared last so that it runs after the future's own destructor:
        // the task counts as live while its destructor runs.
        guard: Deregister<'a>,
    }
}

impl<F: Future> Future for TaskFuture<'_, F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut slot = this.future;
        let cancelled = match this.meta.cancel.load(Ordering::Acquire) {
            RUNNING => None,
            ABORTED => Some(Cancelled::Aborted),
            _ => Some(Cancelled::Shutdown),
        };
        if let Some(why) = cancelled {
            let by_shutdown = matches!(why, Cancelled::Shutdown);
            let result = match drop_future(slot) {
                Ok(()) => Err(JoinError::cancelled(why)),
                Err(payload) => Err(JoinError::panic(payload)),
            };
            this.meta.ended(by_shutdown);
            return Poll::Ready(result);
        }
        let Some(future) = slot.as_mut().as_pin_mut() else {
            // `async-task` never polls a task again after it completed.
            return Poll::Pending;
        };
        // Wakes the poll defers (a channel's) go out when it returns.
        let polled = task_poll(|| catch_unwind(AssertUnwindSafe(|| future.poll(cx))));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(JoinError::panic(payload)),
        };
        let result = match (result, drop_future(slot)) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(payload)) => Err(JoinError::panic(payload)),
            // The first panic is the one worth reporting.
            (Err(e), _) => Err(e),
        };
        this.meta.ended(false);
        Poll::Ready(result)
    }
}

/// Drops the task's future in place, catching a panicking destructor.
fn drop_future<F>(slot: Pin<&mut Option<F>>) -> Result<(), Box<dyn Any + Send + 'static>> {
    let mut slot = slot;
    catch_unwind(AssertUnwindSafe(|| slot.set(None)))
}

struct Deregister<'a>(&'a TaskMeta);

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        let key = self.0.key.load(Ordering::Acquire);
        if key == usize::MAX {
            return;
        }
        let partition = &self.0.partition;
        let now_empty = {
            let mut set = partition.tasks.lock();
            set.wakers.try_remove(key);
            set.wakers.is_empty()
        };
        if now_empty {
            partition.runtime.lifecycle.partition_emptied();
            partition.on_last_task_gone();
        }
    }
}

/// Spawns `future` into `partition`.
///
/// `local` tasks may be `!Send`: the caller guarantees that `partition` is
/// pinned to the calling core thread, so the task is only ever polled and
/// dropped there.
pub(crate) fn spawn_into<F>(
    partition: Arc<PartitionInner>,
    future: F,
    local: bool,
) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let meta = TaskMeta {
        partition,
        cancel: AtomicU8::new(RUNNING),
        key: AtomicUsize::new(usize::MAX),
    };
    // SAFETY: `spawn_unchecked` requires, for a future that is not `Send`,
    // that its `Runnable` is used and dropped on the thread that created it:
    // callers pass non-`Send` futures only with `local = true`, whose
    // partition is pinned to this core thread; every `Runnable` of a pinned
    // partition is routed to, run on and (at shutdown) dropped on that
    // thread (see `reactor::schedule` and `Reactor::shutdown`). Callers with
    // `local = false` pass `Send` futures (enforced by the public `spawn`
    // bounds). The future borrows only the task's metadata, which
    // `async-task` keeps alive for as long as the future exists. The
    // schedule function is `Send + Sync + 'static`.
    let (runnable, task) = unsafe {
        async_task::Builder::new()
            .metadata(meta)
            .spawn_unchecked(wrap(future), schedule)
    };
    let registered = {
        let partition = &runnable.metadata().partition;
        if local {
            partition.pin_for_local();
        }
        let mut set = partition.tasks.lock();
        // Checking the runtime's flag under the set's lock closes the race
        // with shutdown: a core that starts shutting down after this check
        // finds the task in the set and drops it.
        if set.closed || partition.runtime.is_closed() {
            false
        } else {
            let key = set.wakers.insert(runnable.waker());
            runnable.metadata().key.store(key, Ordering::Release);
            true
        }
    };
    if !registered {
        cancel_now(runnable);
        return JoinHandle::from_task(task);
    }
    runnable.schedule();
    JoinHandle::from_task(task)
}

/// The constructor of a task's future, borrowing the task's metadata.
fn wrap<'a, F: Future + 'a>(future: F) -> impl FnOnce(&'a TaskMeta) -> TaskFuture<'a, F> {
    move |meta| TaskFuture {
        meta,
        future: Some(future),
        guard: Deregister(meta),
    }
}
