//! Which core, and which partition, the current thread is working for.
//!
//! Two thread-locals answer "where am I?" for the free functions
//! (`fairloop::spawn`, `core_id`, `partition::current`, timers):
//!
//! * [`CORE`] is set for the life of a core thread and points at that core's
//!   thread-local state. It is what makes a wake on the owning core a plain
//!   local queue push.
//! * [`BLOCKING`] is set on a `spawn_blocking` thread while it runs the
//!   closure, so that work spawned from blocking code lands in the partition
//!   that asked for it.
//!
//! Two more, `POLL` and `DEFERRED`, hold the wakes a running task poll
//! has put off until it returns ([`task_poll`], [`defer_wake`]): a
//! channel's wakes, so that a burst of sends in one poll reaches a parked
//! receiver as one wake and one batch.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use crate::partition::PartitionInner;
use crate::reactor::Reactor;
use crate::runtime::RuntimeInner;

thread_local! {
    pub(crate) static CORE: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
    pub(crate) static BLOCKING: RefCell<Option<Arc<PartitionInner>>> = const { RefCell::new(None) };
}

/// Whether a task poll runs on this thread, and whether it has deferred
/// wakes. No destructor: every poll reads it, and a thread-local without
/// one is a plain load at a fixed offset.
struct PollState {
    polling: Cell<bool>,
    deferred: Cell<bool>,
}

thread_local! {
    static POLL: PollState = const {
        PollState {
            polling: Cell::new(false),
            deferred: Cell::new(false),
        }
    };
    /// The wakes put off until the running task poll returns.
    static DEFERRED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Runs `poll`, one poll of a task's future: the wakes deferred during it
/// ([`defer_wake`]) go out when it returns, or unwinds.
#[inline]
pub(crate) fn task_poll<R>(poll: impl FnOnce() -> R) -> R {
    POLL.with(|p| {
        // A poll inside a poll (none is expected) leaves the flush to the
        // outer one.
        let _end = EndOfPoll {
            state: p,
            outer: !p.polling.replace(true),
        };
        poll()
    })
}

/// Ends a task poll: no more deferring, and the deferred wakes go out.
struct EndOfPoll<'a> {
    state: &'a PollState,
    outer: bool,
}

impl Drop for EndOfPoll<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.outer {
            self.state.polling.set(false);
            if self.state.deferred.get() {
                wake_deferred();
            }
        }
    }
}

/// Inside a task poll, keeps `waker` to be woken when the poll returns;
/// anywhere else (another thread, a core between polls), gives it back to
/// be woken now.
pub(crate) fn defer_wake(waker: Waker) -> Result<(), Waker> {
    if !POLL.with(|p| p.polling.get()) {
        return Err(waker);
    }
    let mut waker = Some(waker);
    let _ = DEFERRED.try_with(|d| d.borrow_mut().extend(waker.take()));
    match waker {
        // The thread's locals are being torn down: wake now.
        Some(w) => Err(w),
        None => {
            POLL.with(|p| p.deferred.set(true));
            Ok(())
        }
    }
}

/// Wakes every deferred waker now (in the order deferred). A waker is user
/// code: one that panics is contained, as the driver's `wake_all` does.
pub(crate) fn wake_deferred() {
    loop {
        POLL.with(|p| p.deferred.set(false));
        let Ok(mut batch) = DEFERRED.try_with(|d| std::mem::take(&mut *d.borrow_mut())) else {
            return;
        };
        if batch.is_empty() {
            return;
        }
        for w in batch.drain(..) {
            let _ = catch_unwind(AssertUnwindSafe(|| w.wake()));
        }
        // Keep the allocation for the next poll, unless a waker deferred
        // more meanwhile (then go round again).
        let again = DEFERRED
            .try_with(|d| {
                let mut slot = d.borrow_mut();
                if slot.is_empty() {
                    *slot = batch;
                    false
                } else {
                    true
                }
            })
            .unwrap_or(false);
        if !again {
            return;
        }
    }
}

/// Runs `f` with this thread's core, if it is a fairloop core thread.
#[inline]
pub(crate) fn with_core<R>(f: impl FnOnce(Option<&Rc<Reactor>>) -> R) -> R {
    let mut f = Some(f);
    // `try_with` fails only while the thread is being torn down; such a
    // thread behaves as a foreign one.
    match CORE.try_with(|c| (f.take().expect("called once"))(c.borrow().as_ref())) {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// Runs `f` with this thread's core if this thread is core `core` of
/// `runtime`; `None` on any other thread.
#[inline]
pub(crate) fn on_core<R>(
    runtime: &Arc<RuntimeInner>,
    core: usize,
    f: impl FnOnce(&Reactor) -> R,
) -> Option<R> {
    with_core(|c| c.filter(|c| c.is(runtime, core)).map(|c| f(c)))
}

/// The core of `runtime` the calling code works on: this thread's index
/// if it is one of `runtime`'s core threads; in a `spawn_blocking`
/// closure started from `runtime`, the core that owns the closure's
/// partition now; `None` anywhere else (a plain thread, another runtime's
/// core or closure).
pub(crate) fn local_core(runtime: &Arc<RuntimeInner>) -> Option<usize> {
    let core = with_core(|c| c.and_then(|c| Arc::ptr_eq(&c.runtime, runtime).then_some(c.index)));
    if core.is_some() {
        return core;
    }
    BLOCKING
        .try_with(|b| {
            b.borrow()
                .as_ref()
                .filter(|p| Arc::ptr_eq(&p.runtime, runtime))
                .map(|p| p.owner())
        })
        .ok()
        .flatten()
}

/// What the calling code belongs to, if it runs under a fairloop runtime.
pub(crate) enum Here {
    /// A task (or other code) on core thread `core`, inside partition
    /// `partition` when a task is running.
    Core {
        runtime: Arc<RuntimeInner>,
        core: usize,
        partition: Option<Arc<PartitionInner>>,
        shutting_down: bool,
    },
    /// A `spawn_blocking` closure started from `partition`.
    Blocking { partition: Arc<PartitionInner> },
}

/// Where the caller is, or `None` on a thread that fairloop does not run.
pub(crate) fn here() -> Option<Here> {
    let core = CORE
        .try_with(|c| {
            c.borrow().as_ref().map(|core| Here::Core {
                runtime: core.runtime.clone(),
                core: core.index,
                partition: core.current_partition(),
                shutting_down: core.is_shutting_down(),
            })
        })
        .ok()
        .flatten();
    if core.is_some() {
        return core;
    }
    BLOCKING
        .try_with(|b| {
            b.borrow().as_ref().map(|p| Here::Blocking {
                partition: p.clone(),
            })
        })
        .ok()
        .flatten()
}

/// Restores the previous blocking context when a `spawn_blocking` closure
/// ends, also when it panics.
pub(crate) struct BlockingGuard(Option<Arc<PartitionInner>>);

impl BlockingGuard {
    pub(crate) fn enter(partition: Arc<PartitionInner>) -> Self {
        BlockingGuard(BLOCKING.with(|b| b.borrow_mut().replace(partition)))
    }
}

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        let _ = BLOCKING.try_with(|b| *b.borrow_mut() = prev);
    }
}
