//! The futures parked on one side of a channel: receivers waiting for a
//! message, or senders waiting for room.
//!
//! A [`WaitList`] is a FIFO of wakers under a lock, taken only on the
//! rare paths (a future about to park, a notification, a close, a dropped
//! waiting future), never by a send or receive that goes ahead. Its one
//! link with the lock-free hot path is a *waiting bit* in the channel's
//! state word (`RX_WAIT` or `TX_WAIT`, see [`super::chan`]), kept equal to
//! "the list has a waiter not yet notified" and changed only under the
//! lock:
//!
//! * a future that found nothing to do inserts itself, then sets the bit
//!   with a compare-and-swap that succeeds only while there is still
//!   nothing to do for it (no message, or no room, and not closed). A
//!   sender's or receiver's own compare-and-swap on the state word comes
//!   before that (the future sees its effect and does not park) or after
//!   it (it sees the bit and notifies);
//! * a notifier that saw the bit takes the oldest waiter off the list,
//!   marks it notified, clears the bit if none is left, and wakes it
//!   outside the lock. So a burst of messages to one parked receiver costs
//!   one wake: the senders after the first find the bit clear;
//! * a notified future that is dropped before it could act passes the
//!   notification on to the next waiter if its reason still holds, so no
//!   wake is lost to a cancelled future.
//!
//! Nodes live in a slab and are linked by index; a node stays in the slab,
//! unlinked, between its notification and its future's next look at it,
//! so the future can tell that it was notified. Only the future frees its
//! node, so a key is never reused under a future that still holds it.

use std::task::Waker;

use slab::Slab;

use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering};

/// No node: the end of the list.
const NIL: usize = usize::MAX;

struct Node {
    waker: Option<Waker>,
    prev: usize,
    next: usize,
    /// Taken off the list by a notification its future has not seen yet.
    notified: bool,
}

struct List {
    nodes: Slab<Node>,
    /// The oldest waiting (not notified) node, or [`NIL`].
    head: usize,
    /// The newest waiting node, or [`NIL`].
    tail: usize,
}

impl List {
    fn new() -> Self {
        List {
            nodes: Slab::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn is_empty(&self) -> bool {
        self.head == NIL
    }

    fn push_back(&mut self, waker: Waker) -> usize {
        let key = self.nodes.insert(Node {
            waker: Some(waker),
            prev: self.tail,
            next: NIL,
            notified: false,
        });
        match self.tail {
            NIL => self.head = key,
            tail => self.nodes[tail].next = key,
        }
        self.tail = key;
        key
    }

    /// Takes waiting node `key` off the list (it stays in the slab).
    fn unlink(&mut self, key: usize) {
        let (prev, next) = {
            let n = &self.nodes[key];
            (n.prev, n.next)
        };
        self.splice(prev, next);
    }

    /// Joins `prev` and `next`, the neighbours of a node leaving the list.
    fn splice(&mut self, prev: usize, next: usize) {
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
    }

    /// Notifies the oldest waiting node: unlinks it, marks it, and gives
    /// its waker back to be woken outside the lock.
    fn notify_front(&mut self) -> Option<Waker> {
        let key = self.head;
        if key == NIL {
            return None;
        }
        self.unlink(key);
        let node = &mut self.nodes[key];
        node.notified = true;
        node.waker.take()
    }
}

/// What a future that found nothing to do should do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// It is registered and the waiting bit is set: return `Pending`.
    Parked,
    /// Something changed (or it was notified): try the operation again.
    Retry,
}

/// One side's waiters and the bit of the state word that mirrors them.
pub(super) struct WaitList {
    list: Mutex<List>,
    /// `RX_WAIT` or `TX_WAIT`.
    bit: usize,
}

impl WaitList {
    pub(super) fn new(bit: usize) -> Self {
        WaitList {
            list: Mutex::new(List::new()),
            bit,
        }
    }

    /// The list. Nothing in this module panics while holding the lock; a
    /// poisoned lock (a waker's `clone` is user code) is taken over.
    fn lock(&self) -> MutexGuard<'_, List> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Clears the waiting bit if no waiter is left. Under the lock.
    fn clear_if_empty(&self, list: &List, state: &AtomicUsize) {
        if list.is_empty() {
            state.fetch_and(!self.bit, Ordering::AcqRel);
        }
    }

    /// A future found nothing to do. With no `key` yet, it joins the list
    /// and sets the waiting bit, but only while `should_wait(state)` still
    /// holds; otherwise it leaves again and retries. With a `key`, it
    /// either learns that it was notified (and retries, its node freed) or
    /// refreshes its waker and stays parked.
    pub(super) fn wait(
        &self,
        key: &mut Option<usize>,
        waker: &Waker,
        state: &AtomicUsize,
        should_wait: impl Fn(usize) -> bool,
    ) -> Wait {
        let mut list = self.lock();
        if let Some(k) = *key {
            let node = &mut list.nodes[k];
            if node.notified {
                list.nodes.remove(k);
                *key = None;
                return Wait::Retry;
            }
            match &mut node.waker {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
            // Still on the list, so the bit is still set: whoever makes
            // progress possible for it sees the bit and notifies.
            return Wait::Parked;
        }
        let k = list.push_back(waker.clone());
        let mut s = state.load(Ordering::Acquire);
        loop {
            if !should_wait(s) {
                // The list was not empty before this node (then the bit
                // stays, for the others) or the bit was clear: nothing to
                // undo but the node.
                list.unlink(k);
                list.nodes.remove(k);
                return Wait::Retry;
            }
            match state.compare_exchange(s, s | self.bit, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        *key = Some(k);
        Wait::Parked
    }

    /// The future of `key` completed (it went ahead, or found the channel
    /// closed): its node goes, and the bit too if no waiter is left. A
    /// notification it had received is used up by its completion.
    pub(super) fn done(&self, key: &mut Option<usize>, state: &AtomicUsize) {
        let Some(k) = key.take() else { return };
        let mut list = self.lock();
        if !list.nodes[k].notified {
            list.unlink(k);
            self.clear_if_empty(&list, state);
        }
        list.nodes.remove(k);
    }

    /// The future of `key` is dropped before completing. If it had been
    /// notified and `pass_on(state)` says its reason still holds (a
    /// message it would have taken, room it would have used), the next
    /// waiter is notified instead: the caller wakes the waker returned.
    #[must_use]
    pub(super) fn cancel(
        &self,
        key: &mut Option<usize>,
        state: &AtomicUsize,
        pass_on: impl Fn(usize) -> bool,
    ) -> Option<Waker> {
        let k = key.take()?;
        let mut list = self.lock();
        let node = list.nodes.remove(k);
        if !node.notified {
            list.splice(node.prev, node.next);
            self.clear_if_empty(&list, state);
            return None;
        }
        if !pass_on(state.load(Ordering::Acquire)) {
            return None;
        }
        let waker = list.notify_front();
        self.clear_if_empty(&list, state);
        waker
    }

    /// Called by whoever saw the waiting bit in the state word it changed:
    /// notifies the oldest waiter; the caller wakes the waker returned.
    #[must_use]
    pub(super) fn notify_one(&self, state: &AtomicUsize) -> Option<Waker> {
        let mut list = self.lock();
        let waker = list.notify_front();
        self.clear_if_empty(&list, state);
        waker
    }

    /// Notifies every waiter (the channel closed); the caller wakes them.
    #[must_use]
    pub(super) fn notify_all(&self, state: &AtomicUsize) -> Vec<Waker> {
        let mut list = self.lock();
        let mut wakers = Vec::new();
        while !list.is_empty() {
            wakers.extend(list.notify_front());
        }
        self.clear_if_empty(&list, state);
        wakers
    }

    /// How many futures are parked (not yet notified).
    #[cfg(all(test, not(loom)))]
    pub(super) fn waiting(&self) -> usize {
        let list = self.lock();
        list.nodes.iter().filter(|(_, n)| !n.notified).count()
    }
}
