//! Where a channel's messages wait: one lane per producing core, and a
//! fallback lane for every thread that is not a core.
//!
//! A lane is a lock-free FIFO (`crossbeam_queue::SegQueue`), made by its
//! first push, so a channel costs 16 bytes per lane it never uses. A
//! sender on core `i` writes lane `i` (modulo the lane count), so senders
//! on different cores do not contend on one tail; receivers pop from any
//! lane. Lanes are many-producer, many-consumer queues all the same: a
//! sender may keep writing a lane after its task moved away (below), and
//! two runtimes' core `i` share lane `i`.
//!
//! **Order.** A lane keeps its pushes in order, so a sender's messages
//! stay in order as long as they go into one lane. A [`Sender`] therefore
//! remembers the lane it last wrote (its *sticky lane*). Found on another
//! core (its partition migrated, or the handle was moved to a task
//! elsewhere), it switches to that core's lane only once its sticky lane
//! is empty: every message it put there has then been taken, so none of
//! them can be overtaken by the next one. Until then it keeps writing the
//! old lane, from the new core. Nothing else is needed for order: the
//! receivers' bookkeeping (the state word, [`super::chan`]) counts
//! messages, not lanes.
//!
//! **Receivers** keep a cursor: they pop from the lane where they last
//! found a message, and move on to the next lane after [`STREAK`]
//! messages from one lane or when it is empty, so a busy lane cannot keep
//! the others waiting for long.
//!
//! [`Sender`]: super::Sender

use std::sync::atomic::{AtomicUsize, Ordering};

/// Messages taken from one lane before a receiver looks at the next one.
const STREAK: usize = 32;
/// The most lanes a channel has for cores; cores beyond share them.
pub(super) const MAX_CORE_LANES: usize = 64;
/// A sticky lane of a sender that has not sent yet.
pub(super) const NO_LANE: usize = usize::MAX;
/// Bits of a receiver's cursor that hold the lane (the rest: the streak).
const CURSOR_LANE_BITS: u32 = 8;
const CURSOR_LANE_MASK: usize = (1 << CURSOR_LANE_BITS) - 1;

#[cfg(not(loom))]
mod lane {
    use std::sync::OnceLock;

    use crossbeam_queue::SegQueue;

    /// One lane: a lock-free FIFO, made by the first push.
    pub(in crate::channel) struct Lane<T>(OnceLock<Box<SegQueue<T>>>);

    impl<T> Lane<T> {
        pub(in crate::channel) fn new() -> Self {
            Lane(OnceLock::new())
        }

        #[inline]
        pub(in crate::channel) fn push(&self, msg: T) {
            self.0.get_or_init(|| Box::new(SegQueue::new())).push(msg);
        }

        #[inline]
        pub(in crate::channel) fn pop(&self) -> Option<T> {
            self.0.get()?.pop()
        }

        /// Whether every message pushed before this call has been popped.
        #[inline]
        pub(in crate::channel) fn is_empty(&self) -> bool {
            self.0.get().is_none_or(|q| q.is_empty())
        }
    }

    /// Waits a little for a push that a sender has reserved room for but
    /// not made yet: spins, then gives the CPU away (the sender's thread
    /// may have been preempted between the two steps).
    pub(in crate::channel) fn snooze(step: &mut u32) {
        if *step < 7 {
            for _ in 0..1u32 << *step {
                std::hint::spin_loop();
            }
            *step += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(loom)]
mod lane {
    //! Under loom, a lane is a `VecDeque` behind a *std* mutex: loom
    //! cannot run crossbeam's queue, and the protocol under test (the
    //! state word, the wait lists, close) relies on a lane only being a
    //! linearizable FIFO that a reserved push eventually reaches. Loom
    //! switches threads only at its own operations, so this lock never
    //! blocks and adds no interleavings; a yield before each push lets
    //! loom run other threads between a reservation and its push (a
    //! receiver that claimed the message then waits for it).
    use std::collections::VecDeque;
    use std::sync::Mutex;

    pub(in crate::channel) struct Lane<T>(Mutex<VecDeque<T>>);

    impl<T> Lane<T> {
        pub(in crate::channel) fn new() -> Self {
            Lane(Mutex::new(VecDeque::new()))
        }

        pub(in crate::channel) fn push(&self, msg: T) {
            loom::thread::yield_now();
            self.0.lock().unwrap().push_back(msg);
        }

        pub(in crate::channel) fn pop(&self) -> Option<T> {
            self.0.lock().unwrap().pop_front()
        }

        pub(in crate::channel) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
    }

    /// Lets loom run the sender whose push is awaited.
    pub(in crate::channel) fn snooze(_step: &mut u32) {
        loom::thread::yield_now();
    }
}

use lane::{snooze, Lane};

/// A channel's lanes: `core_lanes` for cores, then the fallback lane.
pub(super) struct Lanes<T> {
    lanes: Box<[Lane<T>]>,
}

impl<T> Lanes<T> {
    /// Lanes for `core_lanes` cores (1 to [`MAX_CORE_LANES`]) and the
    /// fallback lane.
    pub(super) fn new(core_lanes: usize) -> Self {
        let n = core_lanes.clamp(1, MAX_CORE_LANES);
        Lanes {
            lanes: (0..=n).map(|_| Lane::new()).collect(),
        }
    }

    /// How many lanes, the fallback lane included.
    pub(super) fn count(&self) -> usize {
        self.lanes.len()
    }

    /// The lane of a sender on core `core`, or of one on no core.
    #[inline]
    pub(super) fn here(&self, core: Option<usize>) -> usize {
        let fallback = self.lanes.len() - 1;
        core.map_or(fallback, |c| c % fallback)
    }

    /// Pushes `msg` for a sender whose sticky lane is `sticky` and who
    /// runs where lane `here` is written (see the module docs on order).
    #[inline]
    pub(super) fn push(&self, sticky: &AtomicUsize, here: usize, msg: T) {
        // Relaxed: the sticky lane is the sender's own; a handle used in
        // turn by tasks on several threads is handed over with a
        // happens-before edge (a spawn, a channel), which carries it.
        let last = sticky.load(Ordering::Relaxed);
        let lane = if last == here || last == NO_LANE || self.lanes[last].is_empty() {
            here
        } else {
            last
        };
        if lane != last {
            sticky.store(lane, Ordering::Relaxed);
        }
        self.lanes[lane].push(msg);
    }

    /// Pops a message the caller has claimed (so one is in a lane, or about
    /// to be: its sender reserved room and pushes next), starting at the
    /// receiver's `cursor`.
    pub(super) fn pop_claimed(&self, cursor: &AtomicUsize) -> T {
        let n = self.lanes.len();
        let c = cursor.load(Ordering::Relaxed);
        let (mut lane, streak) = (c & CURSOR_LANE_MASK, c >> CURSOR_LANE_BITS);
        if lane >= n || streak >= STREAK {
            lane = (lane + 1) % n;
        }
        let start = lane;
        let mut step = 0;
        loop {
            for i in 0..n {
                let l = (start + i) % n;
                if let Some(msg) = self.lanes[l].pop() {
                    let streak = if l == c & CURSOR_LANE_MASK && streak < STREAK {
                        streak + 1
                    } else {
                        1
                    };
                    cursor.store(streak << CURSOR_LANE_BITS | l, Ordering::Relaxed);
                    return msg;
                }
            }
            // Claimed but not pushed yet: the sender is between its
            // reservation and its push.
            snooze(&mut step);
        }
    }
}
