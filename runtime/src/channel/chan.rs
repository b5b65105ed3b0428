//! The shared state of one channel and its protocol: the state word,
//! reservations and claims, parking, close.
//!
//! **The state word** is one `AtomicUsize`: the number of messages in the
//! channel (`len`, in units of [`ONE`]) and three flags: [`CLOSED`],
//! [`RX_WAIT`] (a receiver is parked) and [`TX_WAIT`] (a sender is parked
//! on a full channel). Every send and every receive changes it with one
//! compare-and-swap, so they all fall into one total order, the order the
//! protocol's arguments rest on (as the park token's, `crate::park`):
//!
//! * **send** = *reserve* (`len + 1`, refused when closed or at capacity),
//!   then push into a lane ([`super::lanes`]), then, if the reservation saw
//!   `RX_WAIT`, notify one parked receiver;
//! * **receive** = *claim* (`len - 1`, refused when `len` is 0), then pop
//!   from the lanes (the message is there, or its sender pushes it right
//!   after its reservation: the receiver waits those few instructions),
//!   then, if the claim saw `TX_WAIT`, notify one parked sender;
//! * **park**: a future refused for want of a message (or of room) joins
//!   its side's wait list and sets that side's bit with a compare-and-swap
//!   that succeeds only while it would still be refused
//!   ([`super::waiters`]). A reservation or claim ordered before it is
//!   seen by it (it retries instead of parking); one ordered after it sees
//!   the bit (and notifies). No wakeup is lost;
//! * **close** sets `CLOSED` with one read-modify-write: reservations after
//!   it are refused, so the messages in the channel are exactly those
//!   reserved before, and receivers drain them, then are refused for good.
//!   Every parked future is notified and finds the channel closed.
//!
//! With no future parked, neither side takes a lock: a send is a
//! compare-and-swap and a lane push, a receive a compare-and-swap and a
//! lane pop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::task::{Context, Poll, Waker};

use super::lanes::Lanes;
use super::waiters::{Wait, WaitList};
use crate::context::defer_wake;
use crate::loom::{AtomicUsize, Ordering};

/// The channel is closed: no reservation succeeds any more.
pub(super) const CLOSED: usize = 1;
/// A receiver is parked, waiting for a message.
pub(super) const RX_WAIT: usize = 2;
/// A sender is parked, waiting for room.
pub(super) const TX_WAIT: usize = 4;
/// One message in the state word's count.
pub(super) const ONE: usize = 8;
/// The largest count the state word holds: the capacity of an unbounded
/// channel, and the most a bounded one is given.
pub(super) const MAX_CAP: usize = usize::MAX / ONE;

#[inline]
fn len(s: usize) -> usize {
    s / ONE
}

/// Why a reservation or a claim was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// No room (a reservation) or no message (a claim), for now.
    Busy,
    /// Closed (and, for a claim, empty): for good.
    Closed,
}

/// What a send future's poll came to.
pub(super) enum SendPoll<T> {
    /// The message is in the channel.
    Sent,
    /// The channel is closed: the message is given back.
    Closed(T),
    /// The channel is full and the future parked: it keeps the message.
    Parked(T),
}

/// The state word on a cache line of its own: both sides write it for
/// every message, and the read-mostly fields must not pay for it.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// The shared state of one channel.
pub(super) struct Chan<T> {
    state: Padded,
    /// The capacity; [`MAX_CAP`] for an unbounded channel.
    cap: usize,
    bounded: bool,
    lanes: Lanes<T>,
    /// Parked receivers; their bit is [`RX_WAIT`].
    rx: WaitList,
    /// Parked senders; their bit is [`TX_WAIT`].
    tx: WaitList,
    /// Handles, not futures: the channel closes when either count drops
    /// to zero. Not part of the protocol above.
    pub(super) senders: StdAtomicUsize,
    pub(super) receivers: StdAtomicUsize,
}

impl<T> Chan<T> {
    /// A channel of capacity `cap` (`None`: unbounded; 1 at least,
    /// capped at [`MAX_CAP`]) with lanes for `core_lanes` cores.
    pub(super) fn new(cap: Option<usize>, core_lanes: usize) -> Self {
        Chan {
            state: Padded(AtomicUsize::new(0)),
            cap: cap.map_or(MAX_CAP, |c| c.clamp(1, MAX_CAP)),
            bounded: cap.is_some(),
            lanes: Lanes::new(core_lanes),
            rx: WaitList::new(RX_WAIT),
            tx: WaitList::new(TX_WAIT),
            senders: StdAtomicUsize::new(1),
            receivers: StdAtomicUsize::new(1),
        }
    }

    #[inline]
    fn state(&self) -> &AtomicUsize {
        &self.state.0
    }

    /// Messages in the channel (reserved ones included).
    pub(super) fn len(&self) -> usize {
        len(self.state().load(Ordering::Acquire))
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state().load(Ordering::Acquire) & CLOSED != 0
    }

    pub(super) fn capacity(&self) -> Option<usize> {
        self.bounded.then_some(self.cap)
    }

    /// The lane table (for the sender's choice of lane).
    pub(super) fn lanes(&self) -> &Lanes<T> {
        &self.lanes
    }

    /// Whether a sender that saw state `s` must wait for room.
    #[inline]
    fn full(&self, s: usize) -> bool {
        s & CLOSED == 0 && len(s) >= self.cap
    }

    /// Whether a receiver that saw state `s` must wait for a message.
    #[inline]
    fn empty(s: usize) -> bool {
        s & CLOSED == 0 && len(s) == 0
    }

    /// Sender side: room for one message. Returns the state it replaced.
    #[inline]
    fn reserve(&self) -> Result<usize, Refused> {
        let state = self.state();
        let mut s = state.load(Ordering::Acquire);
        loop {
            if s & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if len(s) >= self.cap {
                return Err(Refused::Busy);
            }
            match state.compare_exchange_weak(s, s + ONE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(old) => return Ok(old),
                Err(now) => s = now,
            }
        }
    }

    /// Receiver side: one message to take. Returns the state it replaced.
    #[inline]
    fn claim(&self) -> Result<usize, Refused> {
        let state = self.state();
        let mut s = state.load(Ordering::Acquire);
        loop {
            if len(s) == 0 {
                return Err(if s & CLOSED != 0 {
                    Refused::Closed
                } else {
                    Refused::Busy
                });
            }
            match state.compare_exchange_weak(s, s - ONE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(old) => return Ok(old),
                Err(now) => s = now,
            }
        }
    }

    /// Sends `msg` now if there is room, writing lane `here` or the
    /// sender's `sticky` lane; gives it back with the reason otherwise.
    #[inline]
    pub(super) fn try_send(
        &self,
        sticky: &StdAtomicUsize,
        here: usize,
        msg: T,
    ) -> Result<(), (Refused, T)> {
        match self.reserve() {
            Ok(old) => {
                self.lanes.push(sticky, here, msg);
                if old & RX_WAIT != 0 {
                    wake(self.rx.notify_one(self.state()));
                }
                Ok(())
            }
            Err(why) => Err((why, msg)),
        }
    }

    /// Takes a message now if there is one, looking from the receiver's
    /// `cursor`.
    #[inline]
    pub(super) fn try_recv(&self, cursor: &StdAtomicUsize) -> Result<T, Refused> {
        let old = self.claim()?;
        let msg = self.lanes.pop_claimed(cursor);
        if old & TX_WAIT != 0 {
            wake(self.tx.notify_one(self.state()));
        }
        Ok(msg)
    }

    /// The body of a send future's poll: sends `msg`, or parks the future
    /// under `key` while the channel is full.
    pub(super) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        sticky: &StdAtomicUsize,
        here: usize,
        msg: T,
        key: &mut Option<usize>,
    ) -> SendPoll<T> {
        let mut msg = msg;
        loop {
            match self.try_send(sticky, here, msg) {
                Ok(()) => {
                    self.tx.done(key, self.state());
                    return SendPoll::Sent;
                }
                Err((Refused::Closed, back)) => {
                    self.tx.done(key, self.state());
                    return SendPoll::Closed(back);
                }
                Err((Refused::Busy, back)) => {
                    msg = back;
                    match self
                        .tx
                        .wait(key, cx.waker(), self.state(), |s| self.full(s))
                    {
                        Wait::Parked => return SendPoll::Parked(msg),
                        Wait::Retry => {}
                    }
                }
            }
        }
    }

    /// The body of a receive future's poll, parked under `key` while the
    /// channel is empty. `Err(())`: closed and empty.
    pub(super) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        cursor: &StdAtomicUsize,
        key: &mut Option<usize>,
    ) -> Poll<Result<T, ()>> {
        loop {
            match self.try_recv(cursor) {
                Ok(msg) => {
                    self.rx.done(key, self.state());
                    return Poll::Ready(Ok(msg));
                }
                Err(Refused::Closed) => {
                    self.rx.done(key, self.state());
                    return Poll::Ready(Err(()));
                }
                Err(Refused::Busy) => {
                    match self.rx.wait(key, cx.waker(), self.state(), Self::empty) {
                        Wait::Parked => return Poll::Pending,
                        Wait::Retry => {}
                    }
                }
            }
        }
    }

    /// A send future parked under `key` is dropped: a notification it had
    /// goes to the next parked sender if there is room.
    pub(super) fn cancel_send(&self, key: &mut Option<usize>) {
        if key.is_some() {
            wake(
                self.tx
                    .cancel(key, self.state(), |s| s & CLOSED == 0 && !self.full(s)),
            );
        }
    }

    /// A receive future parked under `key` is dropped: a notification it
    /// had goes to the next parked receiver if a message is there.
    pub(super) fn cancel_recv(&self, key: &mut Option<usize>) {
        if key.is_some() {
            wake(self.rx.cancel(key, self.state(), |s| len(s) > 0));
        }
    }

    /// Closes the channel; `true` if this call closed it. Every parked
    /// future is woken and finds it closed (receivers: once it is empty).
    pub(super) fn close(&self) -> bool {
        let old = self.state().fetch_or(CLOSED, Ordering::AcqRel);
        if old & CLOSED != 0 {
            return false;
        }
        // A future that parks after the swap sees `CLOSED` and does not
        // (its compare-and-swap fails); one parked before set its bit.
        if old & RX_WAIT != 0 {
            self.rx
                .notify_all(self.state())
                .into_iter()
                .for_each(|w| wake(Some(w)));
        }
        if old & TX_WAIT != 0 {
            self.tx
                .notify_all(self.state())
                .into_iter()
                .for_each(|w| wake(Some(w)));
        }
        true
    }

    /// The last receiver is gone: closes the channel and drops the
    /// messages still in it (and those whose push is under way), so that
    /// they do not live as long as the senders.
    pub(super) fn discard(&self, cursor: &StdAtomicUsize) {
        self.close();
        while let Ok(msg) = self.try_recv(cursor) {
            drop(msg);
        }
    }

    /// Parked futures of each side (for tests).
    #[cfg(all(test, not(loom)))]
    pub(super) fn parked(&self) -> (usize, usize) {
        (self.tx.waiting(), self.rx.waiting())
    }
}

/// Wakes `waker` if there is one: when the running task poll returns if
/// this is a core thread inside one (so that a burst of operations in one
/// poll costs one wake and the woken side finds the whole burst), at once
/// anywhere else.
#[inline]
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        if let Err(w) = defer_wake(w) {
            wake_one(w);
        }
    }
}

/// Wakes `w`. A waker is user code (a combinator may bring its own): a
/// panicking one is contained, so that it cannot leave the other parked
/// futures of a close unwoken or unwind through a send.
fn wake_one(w: Waker) {
    let _ = catch_unwind(AssertUnwindSafe(|| w.wake()));
}
