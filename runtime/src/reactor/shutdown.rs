//! How a core stops: every pending task's future is dropped on the core
//! that owns it, the ring gives back every buffer, and only then does the
//! core say it has exited.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use crossbeam_deque::Steal;

use super::{Reactor, NO_TURN};
use crate::driver::wake_all;
use crate::partition::NOT_ATTACHED;
use crate::task::cancel_now;

/// How long an exiting core waits for the kernel to give back its ring's
/// buffers (cancelled socket operations come back at once).
const RING_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Reactor {
    /// Drops every pending task of the partitions this core owns: queued
    /// ones, ones in injection queues, and ones parked anywhere (reached
    /// through the wakers in each partition's task set, which, woken now,
    /// land in the graveyard). Repeats until every task set is empty: a
    /// task can be between queues for an instant when another thread is
    /// mid-wake.
    pub(super) fn shutdown(&self) {
        self.shutting_down.set(true);
        self.current.set(NO_TURN);
        let queued = self.sched.borrow_mut().drain_all();
        self.graveyard.borrow_mut().extend(queued);
        self.bury();
        // The buried tasks' sockets asked for their reads to be cancelled;
        // cancel everything else on the ring too, and wait until the kernel
        // has let go of every buffer. A task elsewhere waiting for one of
        // these operations is woken (and submits again on its own core).
        self.take_requests();
        let mut woken = Vec::new();
        self.with_ring(|ring| ring.shutdown(RING_SHUTDOWN_LIMIT, &mut woken));
        wake_all(woken);
        self.bury();
        loop {
            // Partitions may still arrive (adoptions sent before shutdown):
            // their tasks go to the graveyard.
            while let Ok(msg) = self.control.try_recv() {
                self.handle_contained(msg);
            }
            self.drain_pending();
            let owned: Vec<_> = self
                .runtime
                .partitions()
                .into_iter()
                .filter(|p| p.owner() == self.index)
                .collect();
            for p in &owned {
                while let Some(injector) = p.injected() {
                    match injector.steal() {
                        Steal::Success(t) => self.graveyard.borrow_mut().push(t),
                        Steal::Empty => break,
                        Steal::Retry => continue,
                    }
                }
                let wakers: Vec<_> = {
                    let mut set = p.tasks.lock();
                    set.closed = true;
                    set.wakers.iter().map(|(_, w)| w.clone()).collect()
                };
                wake_all(wakers);
            }
            self.bury();
            let live: usize = owned.iter().map(|p| p.tasks.lock().wakers.len()).sum();
            drop(owned);
            if live == 0 {
                // Exit only if no adoption slipped in since the last look:
                // under the lock adoptions are sent with, so a core that
                // migrates a partition here either gets its adoption seen
                // or gets it back and keeps the partition.
                let mut exited = self.remote().exited.lock();
                if self.control.is_empty() {
                    *exited = true;
                    break;
                }
            }
            std::thread::yield_now();
        }
        self.timers.borrow_mut().clear();
        let attached = std::mem::take(&mut *self.attached.borrow_mut());
        for p in attached.iter().flatten() {
            p.slot.store(NOT_ATTACHED, Ordering::Relaxed);
        }
    }

    /// Ends the graveyard's tasks one at a time (dropping their futures);
    /// ending one may add more.
    pub(super) fn bury(&self) {
        loop {
            let task = self.graveyard.borrow_mut().pop();
            match task {
                Some(t) => {
                    let _ = catch_unwind(AssertUnwindSafe(move || cancel_now(t)));
                }
                None => break,
            }
        }
    }
}
