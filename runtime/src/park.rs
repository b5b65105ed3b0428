//! The park/unpark protocol between a core and the threads that hand it work.
//!
//! A core that runs out of work *parks*: it blocks in `epoll_wait` until IO,
//! a timer or a wakeup arrives. Another thread that gives it work (a foreign
//! wake, a spawn, a control message) must wake it, but a wake costs a
//! syscall (a write to the core's `mio::Waker` eventfd), and a busy core
//! needs none. The protocol is a three-state token on one atomic, every
//! transition a read-modify-write, so all of them fall into one total order
//! and each RMW synchronises with the one before it:
//!
//! * a producer first makes its work visible (pushes it), then swaps the
//!   state to `NOTIFIED`. Only if it replaced `PARKED` does it perform the
//!   syscall; a burst of producers to a parked core costs one syscall, and a
//!   running core costs them none.
//! * the core, before blocking, tries `RUNNING -> PARKED`. If a producer got
//!   there first (`NOTIFIED`), the core consumes the token and looks at its
//!   queues again instead of sleeping: the producer's push happened before
//!   its swap, which the core's RMW read, so the drain sees it. After any
//!   wakeup the core swaps back to `RUNNING`, consuming the token likewise.
//!
//! Either the producer's swap precedes the core's `RUNNING -> PARKED` (the
//! core then does not sleep), or it follows it (the producer then sees
//! `PARKED` and wakes the core): a wakeup cannot be lost. The model in
//! `loom_tests` checks this with every interleaving.

use crate::loom::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// The "this core may be asleep" token, shared by a core and its producers.
#[derive(Debug)]
pub(crate) struct ParkFlag {
    state: AtomicU8,
}

impl ParkFlag {
    /// Creates the token of a core that is running.
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(RUNNING),
        }
    }

    /// Core side, before blocking. Returns `true` if the core may block: it
    /// must then block (or call [`ParkFlag::unpark_self`] if it finds local
    /// work after all). `false` means work arrived since the core last
    /// looked: it must drain its queues before trying again.
    #[must_use]
    pub(crate) fn prepare_park(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.state.swap(RUNNING, Ordering::AcqRel);
                false
            }
        }
    }

    /// Core side, after waking up (or deciding not to block): back to
    /// running, consuming any notification; the caller drains its queues
    /// next.
    pub(crate) fn unpark_self(&self) {
        self.state.swap(RUNNING, Ordering::AcqRel);
    }

    /// Whether the core is (about to be) blocked with nothing to do: a hint
    /// for load figures, not part of the protocol.
    pub(crate) fn is_parked(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PARKED
    }

    /// Producer side, after its work is visible to the core. Returns `true`
    /// when the core is parked and the caller must wake it (exactly one
    /// producer of a burst gets `true`).
    #[must_use]
    pub(crate) fn should_wake(&self) -> bool {
        self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED
    }
}

/// What a producer needs to wake one core: its park token and the
/// `mio::Waker` (an eventfd) that ends its `epoll_wait` or, through the
/// ring's watch on the epoll fd, its `io_uring_enter`.
#[derive(Debug)]
pub(crate) struct Unparker {
    flag: ParkFlag,
    waker: mio::Waker,
}

impl Unparker {
    pub(crate) fn new(waker: mio::Waker) -> Self {
        Unparker {
            flag: ParkFlag::new(),
            waker,
        }
    }

    /// The core's park token (the core side of the protocol uses it).
    #[inline]
    pub(crate) fn flag(&self) -> &ParkFlag {
        &self.flag
    }

    /// Wakes the core if it is parked. Call after making work visible to
    /// it; a running core costs no syscall.
    #[inline]
    pub(crate) fn unpark(&self) {
        if self.flag.should_wake() {
            // An error here means the eventfd is gone with its Poll: the
            // core has exited and there is nobody to wake.
            let _ = self.waker.wake();
        }
    }
}

#[cfg(all(test, loom))]
pub(crate) mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    use super::ParkFlag;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// Stands in for the eventfd behind `mio::Waker`: a sticky signal that
    /// `epoll_wait` consumes. (The ring's cancellation model uses it too.)
    pub(crate) struct EventFd {
        signalled: Mutex<bool>,
        cv: Condvar,
    }

    impl EventFd {
        pub(crate) fn new() -> Self {
            EventFd {
                signalled: Mutex::new(false),
                cv: Condvar::new(),
            }
        }

        pub(crate) fn wake(&self) {
            *self.signalled.lock().unwrap() = true;
            self.cv.notify_one();
        }
        pub(crate) fn wait(&self) {
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
    }

    /// A producer pushes work (an item in the queue) and wakes the core the
    /// way `inject` does; the core parks the way the reactor does. If a
    /// wakeup were lost, the core would block forever and loom reports a
    /// deadlock.
    #[test]
    fn foreign_wake_vs_park_never_loses_a_wakeup() {
        crate::loom::model(|| {
            let core = Arc::new(Core {
                flag: ParkFlag::new(),
                queue: AtomicUsize::new(0),
                eventfd: EventFd {
                    signalled: Mutex::new(false),
                    cv: Condvar::new(),
                },
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
                if !core.flag.prepare_park() {
                    continue;
                }
                core.eventfd.wait();
                core.flag.unpark_self();
            }
            for p in producers {
                p.join().unwrap();
            }
            assert_eq!(taken, ITEMS);
        });
    }

    /// The whole foreign-wake path: a producer pushes a task onto its
    /// partition's injection queue, announces the partition once per batch
    /// (the real `Route::announce`, as `PartitionInner::notify_owner` does)
    /// on the core's pending queue, and wakes the core through the park
    /// token; the core takes announcements (`Route::take_announcement`,
    /// which clears the flag *before* the drain), drains the injection
    /// queue, and parks. Every task must reach the core, with no wakeup
    /// lost.
    #[test]
    fn batched_announcements_lose_no_task() {
        use crate::partition::route::{Holder, Route};
        crate::loom::model(|| {
            struct Partition {
                injector: AtomicUsize,
                route: Route,
            }
            let core = Arc::new(Core {
                flag: ParkFlag::new(),
                queue: AtomicUsize::new(0), // the pending queue: announcements
                eventfd: EventFd {
                    signalled: Mutex::new(false),
                    cv: Condvar::new(),
                },
            });
            let part = Arc::new(Partition {
                injector: AtomicUsize::new(0),
                route: Route::new(0),
            });
            const TASKS: usize = 2;
            let producers: Vec<_> = (0..TASKS)
                .map(|_| {
                    let (core, part) = (core.clone(), part.clone());
                    thread::spawn(move || {
                        part.injector.fetch_add(1, Ordering::Release);
                        if part.route.announce().is_some() {
                            core.queue.fetch_add(1, Ordering::Release);
                            if core.flag.should_wake() {
                                core.eventfd.wake();
                            }
                        }
                    })
                })
                .collect();

            let mut taken = 0;
            while taken < TASKS {
                if core.queue.swap(0, Ordering::Acquire) > 0 {
                    let what = part.route.take_announcement(0);
                    assert_eq!(what, Holder::Here);
                    taken += part.injector.swap(0, Ordering::Acquire);
                    continue;
                }
                if !core.flag.prepare_park() {
                    continue;
                }
                core.eventfd.wait();
                core.flag.unpark_self();
            }
            for p in producers {
                p.join().unwrap();
            }
            assert_eq!(taken, TASKS);
        });
    }
}
