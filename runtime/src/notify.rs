//! [`Waiters`]: the wakers of the futures waiting for one event, woken all
//! at once when it happens.
//!
//! Used for events that happen to a whole runtime (a shutdown request,
//! [`crate::shutdown`]) or to the whole process (a signal,
//! [`crate::signal`]), whose waiters may be tasks on any core, or futures
//! driven by another executor on any thread.
//!
//! The protocol, which loses no wake: the side that makes the event happen
//! first makes it visible (an atomic the waiters read), then calls
//! [`Waiters::wake_all`]. A waiting future checks the event, registers its
//! waker under its key ([`Waiters::register`]), and checks again; it removes
//! its key once it completes or is dropped ([`Waiters::remove`]). Both
//! sides take the same lock, so a waiter that registered after `wake_all`
//! read the list sees the event at its second check.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use slab::Slab;

use crate::driver::wake_all;

/// The wakers of the futures waiting for one event.
pub(crate) struct Waiters {
    list: Mutex<Slab<Waker>>,
}

impl Waiters {
    /// An empty list (`const`, so a process-wide event can keep its
    /// waiters in a `static`).
    pub(crate) const fn new() -> Self {
        Waiters {
            list: Mutex::new(Slab::new()),
        }
    }

    /// The list. Nothing panics while holding the lock, but a waker's
    /// `clone` is user code: a poisoned lock is taken over rather than
    /// passed on as a panic to every later waiter.
    fn lock(&self) -> MutexGuard<'_, Slab<Waker>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `waker` under `key`, taking a new key if `key` is `None`,
    /// replacing the waker if it would wake another task.
    pub(crate) fn register(&self, key: &mut Option<usize>, waker: &Waker) {
        let mut list = self.lock();
        match key.and_then(|k| list.get_mut(k)) {
            Some(w) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
            }
            None => *key = Some(list.insert(waker.clone())),
        }
    }

    /// Forgets the waker registered under `key`, if any.
    pub(crate) fn remove(&self, key: &mut Option<usize>) {
        if let Some(k) = key.take() {
            self.lock().try_remove(k);
        }
    }

    /// Wakes every registered waker, outside the lock. The wakers stay
    /// registered until their futures remove them.
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self.lock().iter().map(|(_, w)| w.clone()).collect();
        wake_all(wakers);
    }

    /// How many futures are registered.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::Waiters;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_registered_waker_is_woken_and_removed_keys_are_not() {
        let waiters = Waiters::new();
        let counts: Vec<_> = (0..3)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let mut keys = [None, None, None];
        for (key, count) in keys.iter_mut().zip(&counts) {
            waiters.register(key, &Waker::from(count.clone()));
        }
        // Registering again under the same key replaces, not adds.
        waiters.register(&mut keys[0], &Waker::from(counts[0].clone()));
        assert_eq!(waiters.len(), 3);
        waiters.remove(&mut keys[1]);
        assert_eq!(keys[1], None);
        waiters.wake_all();
        let woken: Vec<_> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [1, 0, 1]);
        // Still registered until removed: a second event wakes them again.
        waiters.wake_all();
        assert_eq!(counts[2].0.load(Ordering::SeqCst), 2);
        waiters.remove(&mut keys[0]);
        waiters.remove(&mut keys[2]);
        assert_eq!(waiters.len(), 0);
    }
}
