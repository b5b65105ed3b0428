//! Where a woken task goes.
//!
//! `async-task` hands every woken [`Runnable`](async_task::Runnable) to
//! [`schedule`]. The runnable's metadata names its partition, and the
//! partition names the core that owns it now, so routing is two loads:
//!
//! * on the owning core's own thread, the task is pushed onto the
//!   partition's run queue in that core's scheduler: no atomics beyond
//!   `async-task`'s own, no lock, no syscall;
//! * from any other thread (another core, a `spawn_blocking` thread, a plain
//!   `std::thread`), it goes onto the partition's lock-free injection queue,
//!   and the partition is announced to its owner once per batch
//!   (`PartitionInner::notify_owner`, [`crate::partition::route`]); the
//!   owner's `mio::Waker` is written only if the owner is parked
//!   ([`crate::park`]).
//!
//! A wake is never lost and never runs a task twice at once: `async-task`
//! guarantees that a task is scheduled at most once until it runs, and the
//! owner drains the injection queue after clearing the partition's
//! "announced" flag, so a push that races the drain announces the
//! partition again.

use std::sync::Arc;

use super::Reactor;
use crate::context::with_core;
use crate::task::Task;

/// The schedule function of every fairloop task.
pub(crate) fn schedule(task: Task) {
    let task = with_core(|core| match core {
        Some(core) => core.schedule_local(task),
        None => Err(task),
    });
    if let Err(task) = task {
        inject(task);
    }
}

/// The foreign path: hand `task` to whichever core owns its partition.
fn inject(task: Task) {
    // The clone keeps the partition alive after the push: once the task is
    // in the queue, its owner may run it to completion and free it.
    let partition = Arc::clone(&task.metadata().partition);
    partition.injector().push(task);
    partition.notify_owner();
}

impl Reactor {
    /// The local path of [`schedule`]: takes `task` if its partition
    /// belongs to this core, else gives it back.
    #[inline]
    pub(crate) fn schedule_local(&self, task: Task) -> Result<(), Task> {
        let p = &task.metadata().partition;
        if !self.is(&p.runtime, p.owner()) {
            return Err(task);
        }
        if self.shutting_down.get() {
            self.graveyard.borrow_mut().push(task);
            return Ok(());
        }
        let Some(key) = self.key_of(p) else {
            // In transit to this core: the adoption drains the injection
            // queue, so the foreign path is the safe one.
            return Err(task);
        };
        self.sched.borrow_mut().push(key, task, self.now.get());
        // Woken by tokio's work while the loop is parked in tokio.
        #[cfg(feature = "tokio-compat")]
        self.tokio.wake_loop();
        Ok(())
    }
}
