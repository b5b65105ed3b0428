//! How other threads reach a core's driver: the [`Door`].
//!
//! A ring is touched only by its core's thread ([`super::uring`]), but a
//! stream can be dropped anywhere: on another core, on a blocking thread,
//! after its task moved. Such a drop records what it needs (an operation
//! to cancel, a timeout to arm) in the core's [`RequestQueue`] and unparks
//! the core ([`crate::park`]); the core takes the requests between turns
//! and looks once more after it has announced that it is about to park, so
//! a request is never left waiting while the core sleeps (the `loom` model
//! below checks exactly that).
//!
//! Every ring operation holds an `Arc` of its core's door, so whoever has
//! the operation can ask that core for something without knowing the
//! runtime above it.

use super::uring::RingRequest;
use crate::loom::{AtomicBool, Mutex, Ordering};
use crate::park::Unparker;

/// A core's door: the requests other threads have for its ring, and the
/// means to wake it.
///
/// Aligned to its own cache lines: producers swap the park token in it on
/// every announcement, and it must not share a line with whatever the
/// allocator puts next (such as the core's counters, which the core writes
/// every turn).
#[repr(align(128))]
pub(crate) struct Door {
    requests: RequestQueue<RingRequest>,
    unparker: Unparker,
}

impl Door {
    pub(crate) fn new(unparker: Unparker) -> Self {
        Door {
            requests: RequestQueue::new(),
            unparker,
        }
    }

    /// Asks the core for something on its ring (cancel an operation, call
    /// a target), from a thread that cannot touch the ring.
    pub(crate) fn request(&self, request: RingRequest) {
        self.requests.push(request);
        self.unparker.unpark();
    }

    /// Whether ring requests wait (the core checks before it parks).
    #[inline]
    pub(crate) fn has_requests(&self) -> bool {
        self.requests.is_pending()
    }

    /// The ring requests made since the last call.
    pub(crate) fn take_requests(&self) -> Vec<RingRequest> {
        self.requests.take()
    }

    /// How producers wake the core.
    #[inline]
    pub(crate) fn unparker(&self) -> &Unparker {
        &self.unparker
    }
}

/// Requests (cancellations, calls) other threads have for a core's ring.
pub(crate) struct RequestQueue<T> {
    requests: Mutex<Vec<T>>,
    /// Set after a push: the core's cheap "anything to do?" check.
    pending: AtomicBool,
}

impl<T> RequestQueue<T> {
    pub(crate) fn new() -> Self {
        RequestQueue {
            requests: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        }
    }

    /// Producer side: records the request. The caller unparks the core
    /// afterwards.
    pub(crate) fn push(&self, request: T) {
        let mut requests = lock(&self.requests);
        requests.push(request);
        // Under the lock: the flag's order of writes is then the lock's,
        // so a core that sees the flag cleared has seen every request
        // pushed before it was set. (Set after unlocking, two producers'
        // flags could land in the other order than their pushes, and a
        // core clearing the later flag could miss the earlier push: the
        // loom model below found that.)
        self.pending.store(true, Ordering::Release);
        drop(requests);
    }

    /// Core side: whether requests may be waiting.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Core side: the requests made since the last call.
    pub(crate) fn take(&self) -> Vec<T> {
        if !self.is_pending() {
            return Vec::new();
        }
        let mut requests = lock(&self.requests);
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut *requests)
    }
}

fn lock<T>(m: &Mutex<T>) -> crate::loom::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the list inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    use super::RequestQueue;
    use crate::park::loom_tests::EventFd;
    use crate::park::ParkFlag;
    use loom::sync::Arc;
    use loom::thread;

    /// Two threads drop streams (each asks for a cancellation and unparks
    /// the core as `Door::request` does) while the core takes requests
    /// between turns and parks the way `Reactor::park` does
    /// (prepare, look at the queue once more, block). Every request must
    /// reach the core; a lost one would leave it blocked, which loom
    /// reports as a deadlock.
    #[test]
    fn cancel_request_vs_park_is_never_lost() {
        crate::loom::model(|| {
            let queue = Arc::new(RequestQueue::<u64>::new());
            let flag = Arc::new(ParkFlag::new());
            let eventfd = Arc::new(EventFd::new());
            let droppers: Vec<_> = (0..2u64)
                .map(|i| {
                    let (queue, flag, eventfd) = (queue.clone(), flag.clone(), eventfd.clone());
                    thread::spawn(move || {
                        queue.push(i);
                        if flag.should_wake() {
                            eventfd.wake();
                        }
                    })
                })
                .collect();

            let mut seen = Vec::new();
            while seen.len() < 2 {
                seen.extend(queue.take());
                if seen.len() == 2 {
                    break;
                }
                if !flag.prepare_park() {
                    continue;
                }
                if queue.is_pending() {
                    flag.unpark_self();
                    continue;
                }
                eventfd.wait();
                flag.unpark_self();
            }
            for d in droppers {
                d.join().unwrap();
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1]);
        });
    }
}
