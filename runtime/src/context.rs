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

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::partition::PartitionInner;
use crate::reactor::Reactor;
use crate::runtime::RuntimeInner;

thread_local! {
    pub(crate) static CORE: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
    pub(crate) static BLOCKING: RefCell<Option<Arc<PartitionInner>>> = const { RefCell::new(None) };
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
