//! A core's timers: a binary heap of deadlines with lazy cancellation.
//!
//! The heap belongs to one core's [`Reactor`](crate::reactor::Reactor),
//! which fires the due timers between polls and arms the driver's timerfd
//! for the earliest deadline when it parks.
//!
//! A [`Sleep`](crate::time::Sleep) registers on the core that first polls
//! it and wakes its task through the task's waker, so the wake lands in the
//! task's own partition wherever that partition runs. Cancelling (dropping
//! a pending `Sleep`) is O(1): it sets a flag, and the heap discards the
//! entry when it reaches the top, or in a sweep once the heap has doubled
//! since the last one (so cancelled long timeouts cannot pile up). Due
//! timers fire in one batch, looked for after every poll and between turns.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use atomic_waker::AtomicWaker;

/// One registered timer: the state its `Sleep` shares with the heap.
#[derive(Default)]
pub(crate) struct Timer {
    pub(crate) waker: AtomicWaker,
    pub(crate) fired: AtomicBool,
    pub(crate) cancelled: AtomicBool,
}

struct Entry {
    deadline: Instant,
    seq: u64,
    timer: Arc<Timer>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest
        // deadline (then the earliest registration) on top.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// The timers registered on one core, earliest first.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    sweep_at: usize,
}

impl TimerHeap {
    pub(crate) fn insert(&mut self, deadline: Instant, timer: Arc<Timer>) {
        if self.heap.len() >= self.sweep_at {
            self.heap
                .retain(|e| !e.timer.cancelled.load(Ordering::Relaxed));
            self.sweep_at = (self.heap.len() * 2).max(1024);
        }
        self.seq += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.seq,
            timer,
        });
    }

    /// The earliest deadline of a timer that is still wanted.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if top.timer.cancelled.load(Ordering::Relaxed) {
                self.heap.pop();
            } else {
                return Some(top.deadline);
            }
        }
        None
    }

    /// Marks every timer due at `now` as fired and returns the wakers to
    /// call (outside any borrow of the core's state).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Some(top) = self.heap.peek() {
            if top.deadline > now {
                break;
            }
            let e = self.heap.pop().expect("peeked");
            if e.timer.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            e.timer.fired.store(true, Ordering::Release);
            if let Some(w) = e.timer.waker.take() {
                wakers.push(w);
            }
        }
        wakers
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
