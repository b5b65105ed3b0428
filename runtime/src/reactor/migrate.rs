//! Moving a partition from one core to another.
//!
//! Only the owning core changes a partition's owner, and only between two
//! turns, so no task of the partition is running anywhere while it moves:
//!
//! 1. the owner takes the partition out of its scheduler with its queued
//!    tasks and its fairness lag ([`DetachedPartition`]), marks it *in
//!    transit* and makes the target its owner ([`Route::begin_transit`]),
//!    and sends it over the target's `crossbeam-channel` (which wakes the
//!    target's `mio::Waker` if it is parked);
//! 2. from the owner switch on, every wake goes to the target: a wake on
//!    the old core's thread (a timer firing there) is a foreign wake now. The
//!    target does not attach a partition in transit: it leaves the tasks in
//!    the partition's injection queue;
//! 3. the target *adopts* the partition: inserts it with its tasks (its
//!    vruntime re-based on the target's scale, debt kept, credit not), ends
//!    the transit ([`Route::end_transit`]), and drains the injection queue.
//!
//! A wake that read the old owner before the switch announces the partition
//! to the old core, which passes the announcement on. So every wake reaches
//! the core that owns the partition once the move is done, none is lost,
//! and no task is queued on two cores: `async-task` schedules a task at
//! most once until it runs. The loom models below check the protocol
//! against a racing foreign wake and against shutdown, running the real
//! [`Route`] transitions.
//!
//! [`Route`]: crate::partition::route::Route
//! [`Route::begin_transit`]: crate::partition::route::Route::begin_transit
//! [`Route::end_transit`]: crate::partition::route::Route::end_transit

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fairloop_partitions::{DetachedPartition, PartitionKey};

use super::{Control, Reactor};
use crate::partition::{PartitionInner, NOT_ATTACHED};
use crate::task::Task;

/// A partition on its way between two cores.
pub(crate) struct Adoption {
    partition: Arc<PartitionInner>,
    /// `None` when the partition was in no scheduler (idle, never attached).
    detached: Option<DetachedPartition<Task>>,
}

impl Reactor {
    /// Gives partition `p` to core `to`: takes it out of this scheduler with
    /// its queued tasks, makes `to` its owner (so wakes from now on go
    /// there), and sends it over. Between the two, the partition is *in
    /// transit*: the target queues its wakes in the partition's injection
    /// queue and drains them on adoption, so none is lost and no task runs
    /// on two cores.
    pub(super) fn migrate(&self, p: Arc<PartitionInner>, to: usize) {
        if self.shutting_down.get() || self.runtime.is_closed() {
            return;
        }
        if p.owner() != self.index {
            // It moved since the request was sent: ask its owner now.
            self.runtime.remote(p.owner()).send(Control::Migrate(p, to));
            return;
        }
        if p.route.in_transit() {
            // On its way here: move it on once it has arrived.
            self.deferred.borrow_mut().push((p, to));
            return;
        }
        // Pinned since the request (a task of it ran spawn_local): stay.
        if to == self.index || p.pinned.load(Ordering::Acquire) {
            return;
        }
        let slot = p.slot.load(Ordering::Relaxed);
        let detached = if slot == NOT_ATTACHED {
            None
        } else {
            let detached = self
                .sched
                .borrow_mut()
                .remove_partition(PartitionKey::from_index(slot));
            self.detach(&p, slot);
            detached
        };
        p.route.begin_transit(to);
        let adoption = Box::new(Adoption {
            partition: p,
            detached,
        });
        // The target may have exited (the runtime is shutting down): then
        // keep the partition; this core's own shutdown drops its tasks.
        if let Err(Control::Adopt(adoption)) = self
            .runtime
            .remote(to)
            .send_adoption(Control::Adopt(adoption))
        {
            let Adoption {
                partition,
                detached,
            } = *adoption;
            partition.route.cancel_transit(self.index);
            if let Some(d) = detached {
                let key = self.sched.borrow_mut().insert_detached(d, self.now.get());
                self.attach(&partition, key);
            }
        }
    }

    /// Takes over a partition from another core.
    pub(super) fn adopt(&self, adoption: Adoption) {
        let Adoption {
            partition: p,
            detached,
        } = adoption;
        if self.shutting_down.get() {
            if let Some(d) = detached {
                self.graveyard.borrow_mut().extend(d.into_tasks());
            }
            p.route.end_transit();
            self.take_injected(&p);
            return;
        }
        if let Some(d) = detached {
            let mut sched = self.sched.borrow_mut();
            let key = sched.insert_detached(d, self.now.get());
            // Shares set while in transit reached this core before the
            // partition did (see `Route::route_change`).
            sched.set_shares(key, p.shares.load(Ordering::Acquire));
            drop(sched);
            self.attach(&p, key);
        }
        p.stats.add_migration();
        p.route.end_transit();
        // Wakes that arrived while in transit.
        self.take_injected(&p);
        // An anonymous partition whose last task ended while the move was
        // queued (`migrate_to` from its last poll, or the balancer): its old
        // core could not retire it, having given it away, so this one does.
        if p.anonymous && p.tasks.lock().wakers.is_empty() {
            self.retire_later(p);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Models of the migration protocol with two cores and a foreign
    //! thread. The partition's routing state is the real [`Route`], driven
    //! through the same transitions `Reactor::{migrate, adopt,
    //! drain_pending}` and `PartitionInner::notify_owner` make; what loom
    //! cannot run (the scheduler, crossbeam's queues and channel, async-task)
    //! is stood in for: the injection queue by a locked deque, a core's
    //! control channel and pending queue by a mailbox, the `mio::Waker` by a
    //! condvar, async-task's SCHEDULED bit by a flag per task. A core that
    //! has nothing to do blocks on its mailbox instead of spinning.
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    use std::collections::VecDeque;

    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    use crate::partition::route::{Holder, Route};

    const A: usize = 0;
    const B: usize = 1;

    #[derive(Default)]
    struct Mailbox {
        /// Announcements of the partition (`Remote::pending`).
        announced: usize,
        /// An adoption in the control channel.
        adoption: Option<Vec<u32>>,
        /// The core has exited: sends fail.
        closed: bool,
        /// Something changed that the core should look at again.
        poked: bool,
    }

    struct Core {
        mailbox: Mutex<Mailbox>,
        wake: Condvar,
    }

    struct World {
        route: Route,
        injector: Mutex<VecDeque<u32>>,
        cores: [Core; 2],
        /// Per task: async-task's SCHEDULED bit (set while a Runnable exists).
        scheduled: [AtomicBool; 2],
        polls: [AtomicUsize; 2],
        ran_on: [AtomicUsize; 2],
        drops: [AtomicUsize; 2],
    }

    impl World {
        fn new() -> Self {
            let core = || Core {
                mailbox: Mutex::new(Mailbox::default()),
                wake: Condvar::new(),
            };
            World {
                route: Route::new(A),
                injector: Mutex::new(VecDeque::new()),
                cores: [core(), core()],
                // Task 0 sits in A's run queue; task 1 waits for a wake.
                scheduled: [AtomicBool::new(true), AtomicBool::new(false)],
                polls: [AtomicUsize::new(0), AtomicUsize::new(0)],
                ran_on: [AtomicUsize::new(9), AtomicUsize::new(9)],
                drops: [AtomicUsize::new(0), AtomicUsize::new(0)],
            }
        }

        fn poke(&self, core: usize, f: impl FnOnce(&mut Mailbox)) {
            let mut m = self.cores[core].mailbox.lock().unwrap();
            f(&mut m);
            m.poked = true;
            self.cores[core].wake.notify_one();
        }

        /// Blocks until the core has been poked; returns what arrived.
        fn wait(&self, core: usize) -> (usize, Option<Vec<u32>>) {
            let mut m = self.cores[core].mailbox.lock().unwrap();
            while !m.poked {
                m = self.cores[core].wake.wait(m).unwrap();
            }
            m.poked = false;
            (std::mem::take(&mut m.announced), m.adoption.take())
        }

        /// A waker called on a foreign thread: `waker::inject` and
        /// `PartitionInner::notify_owner`.
        fn foreign_wake(&self, task: u32) {
            if self.scheduled[task as usize].swap(true, Ordering::AcqRel) {
                return;
            }
            self.injector.lock().unwrap().push_back(task);
            self.notify_owner();
        }

        fn notify_owner(&self) {
            if let Some(owner) = self.route.announce() {
                self.poke(owner, |m| m.announced += 1);
            }
        }

        fn take_injected(&self) -> Vec<u32> {
            self.injector.lock().unwrap().drain(..).collect()
        }

        /// `Reactor::drain_pending`, given the announcements that arrived.
        fn drain_pending(&self, core: usize, announced: usize) -> Vec<u32> {
            if announced == 0 {
                return Vec::new();
            }
            match self.route.take_announcement(core) {
                Holder::Here => self.take_injected(),
                Holder::Elsewhere(_) => {
                    self.notify_owner();
                    Vec::new()
                }
                Holder::Arriving => Vec::new(),
            }
        }

        /// `Reactor::migrate` on A (task 0 queued there). Returns the
        /// tasks A keeps because B has exited.
        fn migrate(&self) -> Vec<u32> {
            self.route.begin_transit(B);
            let mut m = self.cores[B].mailbox.lock().unwrap();
            if m.closed {
                self.route.cancel_transit(A);
                return vec![0];
            }
            m.adoption = Some(vec![0]);
            m.poked = true;
            self.cores[B].wake.notify_one();
            Vec::new()
        }

        /// `Reactor::adopt` on B.
        fn adopt(&self, mut tasks: Vec<u32>) -> Vec<u32> {
            self.route.end_transit();
            tasks.extend(self.take_injected());
            tasks
        }

        fn run(&self, core: usize, task: u32) {
            self.scheduled[task as usize].store(false, Ordering::Release);
            self.polls[task as usize].fetch_add(1, Ordering::SeqCst);
            self.ran_on[task as usize].store(core, Ordering::SeqCst);
            if self
                .polls
                .iter()
                .map(|p| p.load(Ordering::SeqCst))
                .sum::<usize>()
                == 2
            {
                for c in [A, B] {
                    self.poke(c, |m| m.closed = true);
                }
            }
        }

        fn end(&self, task: u32) {
            self.drops[task as usize].fetch_add(1, Ordering::SeqCst);
        }

        fn live(&self) -> usize {
            2 - self
                .drops
                .iter()
                .map(|d| d.load(Ordering::SeqCst))
                .sum::<usize>()
        }

        fn closed(&self, core: usize) -> bool {
            self.cores[core].mailbox.lock().unwrap().closed
        }
    }

    /// Starts the foreign thread that wakes task 1 (parked, waiting for a
    /// wake) in both models.
    fn wake_task_1_elsewhere(w: &Arc<World>) -> thread::JoinHandle<()> {
        let w = w.clone();
        thread::spawn(move || w.foreign_wake(1))
    }

    /// A migration racing a foreign wake: task 0 moves with the partition,
    /// task 1 is woken from a foreign thread mid-move. Each is polled
    /// exactly once, on the new owner.
    #[test]
    fn migration_racing_a_foreign_wake() {
        crate::loom::model(|| {
            let w = Arc::new(World::new());
            let waker = wake_task_1_elsewhere(&w);
            let b = {
                let w = w.clone();
                thread::spawn(move || {
                    while !w.closed(B) {
                        let (announced, adoption) = w.wait(B);
                        let mut ready = adoption.map(|t| w.adopt(t)).unwrap_or_default();
                        ready.extend(w.drain_pending(B, announced));
                        for t in ready {
                            w.run(B, t);
                        }
                    }
                })
            };
            assert!(w.migrate().is_empty());
            // A keeps serving its mailbox: announcements that raced the
            // owner switch must be passed on.
            while !w.closed(A) {
                let (announced, _) = w.wait(A);
                for t in w.drain_pending(A, announced) {
                    w.run(A, t);
                }
            }
            waker.join().unwrap();
            b.join().unwrap();
            for t in 0..2 {
                assert_eq!(w.polls[t].load(Ordering::SeqCst), 1, "task {t} polled once");
                assert_eq!(w.ran_on[t].load(Ordering::SeqCst), B, "task {t} ran on B");
            }
        });
    }

    /// Shutdown racing a migration: B shuts down while A migrates the
    /// partition to it and a foreign thread wakes task 1. B ends every task
    /// of the partitions it owns (waking the parked ones itself, taking
    /// adoptions and injected work); A ends what it keeps if B has exited
    /// first. Every future is dropped exactly once and none is polled.
    #[test]
    fn shutdown_racing_a_migration() {
        crate::loom::model(|| {
            let w = Arc::new(World::new());
            let waker = wake_task_1_elsewhere(&w);
            let b = {
                let w = w.clone();
                thread::spawn(move || {
                    // B's shutdown loop (`Reactor::shutdown`).
                    let mut first = true;
                    loop {
                        let (announced, adoption) = if first {
                            first = false;
                            (0, None)
                        } else {
                            w.wait(B)
                        };
                        // An adoption during shutdown ends the transit and
                        // sends its tasks to the graveyard (`Reactor::adopt`).
                        let mut dead = adoption.map(|t| w.adopt(t)).unwrap_or_default();
                        dead.extend(w.drain_pending(B, announced));
                        let mut m = w.cores[B].mailbox.lock().unwrap();
                        if let Some(t) = m.adoption.take() {
                            dead.extend(w.adopt(t));
                        }
                        let owns = w.route.owner() == B;
                        if owns && !w.route.in_transit() {
                            dead.extend(w.take_injected());
                            // Wake the task set: a parked task 1 is ended
                            // here; a scheduled one arrives by a queue.
                            if !w.scheduled[1].swap(true, Ordering::AcqRel) {
                                dead.push(1);
                            }
                        }
                        for t in dead.drain(..) {
                            w.end(t);
                        }
                        if !owns || w.live() == 0 {
                            m.closed = true;
                            drop(m);
                            w.poke(A, |_| {});
                            break;
                        }
                        // B spins in the runtime; here it waits to be
                        // poked by whoever changes the partition's state.
                        drop(m);
                    }
                })
            };
            // A: migrates, then runs its own shutdown loop for the
            // partitions it still owns.
            let mut dead = w.migrate();
            if w.route.owner() == A {
                dead.extend(w.take_injected());
                if !w.scheduled[1].swap(true, Ordering::AcqRel) {
                    dead.push(1);
                }
            }
            for t in dead {
                w.end(t);
            }
            waker.join().unwrap();
            // The wake may have been announced to A after the switch; A
            // passes announcements on until B has exited (B pokes A then).
            while !w.closed(B) {
                let (announced, _) = w.wait(A);
                for t in w.drain_pending(A, announced) {
                    w.end(t);
                }
            }
            b.join().unwrap();
            // Whatever owner remains drains last.
            for t in w.take_injected() {
                w.end(t);
            }
            for t in 0..2 {
                assert_eq!(w.polls[t].load(Ordering::SeqCst), 0);
                assert_eq!(
                    w.drops[t].load(Ordering::SeqCst),
                    1,
                    "task {t} dropped once"
                );
            }
        });
    }
}
