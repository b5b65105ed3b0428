//! The park/unpark protocol between a core and the threads that hand it work.
//!
//! A core that runs out of work *parks*: it blocks in `epoll_wait` until IO,
//! a timer or a wakeup arrives. Another thread that gives it work (a foreign
//! wake, a spawn, a control message) must wake it, but a wake costs a
//! syscall (a write to the core's `mio::Waker` eventfd), and a busy core
//! needs none. The protocol, a Dekker-style handshake on one flag:
//!
//! * the core publishes `parked = true`, issues a `SeqCst` fence, then looks
//!   at its queues once more; only if they are all empty does it block;
//! * a producer first makes its work visible (pushes it), issues a `SeqCst`
//!   fence, then `swap`s `parked` to `false`; if it was `true`, the producer
//!   performs the syscall.
//!
//! The two fences guarantee that at least one side sees the other: either
//! the core finds the work in its final check, or the producer finds
//! `parked == true` and wakes it. The `swap` means a burst of foreign wakes
//! to a parked core costs one syscall, not one per wake. The model in
//! `loom_tests` checks this with every interleaving.

use crate::loom::{fence, AtomicBool, Ordering};

/// The "this core may be asleep" flag, shared by a core and its producers.
#[derive(Debug, Default)]
pub(crate) struct ParkFlag {
    parked: AtomicBool,
}

impl ParkFlag {
    /// Creates a flag for a core that is running.
    pub(crate) fn new() -> Self {
        Self {
            parked: AtomicBool::new(false),
        }
    }

    /// Core side, before the final check of its queues: announce the
    /// intention to sleep. The caller must re-check every work source after
    /// this and call [`ParkFlag::unpark_self`] if it found any.
    pub(crate) fn prepare_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Core side, after waking up or after deciding not to sleep.
    pub(crate) fn unpark_self(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Producer side, after its work is visible to the core. Returns `true`
    /// when the core may be asleep and the caller must wake it (exactly one
    /// producer of a burst gets `true`).
    #[must_use]
    pub(crate) fn should_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        // A cheap load first: a busy core costs producers no read-modify-write.
        self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    use super::ParkFlag;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// Stands in for the eventfd behind `mio::Waker`: a sticky signal that
    /// `epoll_wait` consumes.
    struct EventFd {
        signalled: Mutex<bool>,
        cv: Condvar,
    }

    impl EventFd {
        fn wake(&self) {
            *self.signalled.lock().unwrap() = true;
            self.cv.notify_one();
        }
        fn wait(&self) {
            let mut s = self.signalled.lock().unwrap();
            while !*s {
                s = self.cv.wait(s).unwrap();
            }
            *s = false;
        }
    }

    struct Core {
        flag: ParkFlag,
        queue: AtomicUsize,
        eventfd: EventFd,
        done: AtomicBool,
    }

    /// A producer pushes work (an item in the queue) and wakes the core the
    /// way `inject` does; the core parks the way the reactor does. If a
    /// wakeup were lost, the core would block forever and loom reports a
    /// deadlock.
    #[test]
    fn foreign_wake_vs_park_never_loses_a_wakeup() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let core = Arc::new(Core {
                flag: ParkFlag::new(),
                queue: AtomicUsize::new(0),
                eventfd: EventFd {
                    signalled: Mutex::new(false),
                    cv: Condvar::new(),
                },
                done: AtomicBool::new(false),
            });
            const ITEMS: usize = 2;
            let producers: Vec<_> = (0..ITEMS)
                .map(|_| {
                    let core = core.clone();
                    thread::spawn(move || {
                        core.queue.fetch_add(1, Ordering::Release);
                        if core.flag.should_wake() {
                            core.eventfd.wake();
                        }
                    })
                })
                .collect();

            let mut taken = 0;
            while taken < ITEMS {
                let n = core.queue.swap(0, Ordering::Acquire);
                if n > 0 {
                    taken += n;
                    continue;
                }
                core.flag.prepare_park();
                if core.queue.load(Ordering::Acquire) > 0 {
                    core.flag.unpark_self();
                    continue;
                }
                core.eventfd.wait();
                core.flag.unpark_self();
            }
            core.done.store(true, Ordering::Relaxed);
            for p in producers {
                p.join().unwrap();
            }
            assert_eq!(taken, ITEMS);
        });
    }
}
