//! Channels between tasks on any cores, and threads outside the runtime.
//!
//! Shaped like [async-channel](https://docs.rs/async-channel)'s core:
//! [`bounded`] and [`unbounded`] make a ([`Sender`], [`Receiver`]) pair,
//! both `Clone + Send + Sync`; any number of tasks (or plain threads, with
//! any executor) send and receive; each message goes to exactly one
//! receiver.
//!
//! ```
//! # fairloop_runtime::Runtime::builder().cores(2).pin_cores(false).build().unwrap().block_on(async {
//! use fairloop_runtime::channel;
//!
//! let (tx, rx) = channel::bounded(16);
//! let consumer = fairloop_runtime::spawn(async move {
//!     let mut sum = 0;
//!     // Err once every sender is gone and the channel is drained.
//!     while let Ok(n) = rx.recv().await {
//!         sum += n;
//!     }
//!     sum
//! });
//! for n in 1..=10u64 {
//!     tx.send(n).await.expect("the consumer is there");
//! }
//! drop(tx); // the last sender: the channel closes
//! assert_eq!(consumer.await.unwrap(), 55);
//! # });
//! ```
//!
//! # The model
//!
//! **Lanes.** Messages wait in *lanes*, lock-free FIFO queues: one per
//! core of the runtime the channel was made in (at most 64; a core `i`
//! writes lane `i` modulo their number), and one *fallback lane* for every
//! thread that is not a core (a `spawn_blocking` closure, a plain thread).
//! A sender on core `i` writes lane `i`, so senders on different cores do
//! not contend for one queue's tail; receivers take from every lane. A
//! lane is made by its first message.
//!
//! **Order.** Messages sent through one [`Sender`] handle are received in
//! the order they were sent (with several receivers: taken in that order),
//! also when the sending task's partition migrates to another core between
//! two sends. A lane per core alone would reorder them (the second message
//! in the new core's lane could be taken before the first, still in the
//! old one), so each sender sticks to the lane it last wrote: on a new
//! core it keeps writing its old lane until that lane is empty, then moves
//! to the new core's lane. A clone starts with the lane of the handle it
//! was cloned from. Messages of *different* senders have no order between
//! them, beyond what the tasks' own synchronisation gives when they use
//! one lane.
//!
//! **Counting.** One atomic word holds the number of messages in the
//! channel and three flags: closed, a receiver parked, a sender parked. A
//! send reserves its place with one compare-and-swap on it (refused when
//! the channel is full or closed), then pushes into its lane; a receive
//! claims a message with one compare-and-swap, then pops it. With nobody
//! parked, neither takes a lock.
//!
//! **Wakes.** A receive that finds the channel empty (a send that finds it
//! full) parks its task: its waker goes into that side's wait list, under
//! a lock, and it sets the side's flag with a compare-and-swap that fails
//! if a message (room) arrived meanwhile, so no wakeup is lost. A send
//! that sees the receiver flag takes the oldest parked receiver off the
//! list and wakes it; the flag is cleared with the list's last waiter, so
//! the rest of a burst of messages to one parked receiver costs no wake at
//! all. Symmetrically, a receive that frees room in a full bounded channel
//! wakes the oldest parked sender.
//!
//! **Wakes wait for the end of the poll.** A wake made by a task (a send,
//! a receive, a close, a dropped future passing a wake on) is delivered
//! when that task's poll returns, together with the poll's other wakes:
//! the woken receiver then finds the whole burst, instead of waking for
//! the first message while the rest are still being sent (a cross-core
//! wake of a parked core is a syscall, slower than the sends it would
//! interrupt). This is what thread-per-core runtimes do with their
//! cross-core queues (Seastar flushes them once per loop iteration). A
//! wake from another core goes into the receiver's partition's injection
//! queue, which announces the partition to its core once per batch; one
//! on the receiver's own core is a local queue push. Wakes made outside a
//! task poll (a plain thread, a `spawn_blocking` closure) go out at once.
//! The cost: the woken side waits for the rest of the poll, which is
//! short unless the task blocks its thread; a task that must block after
//! a channel operation, on something that operation's wake should make
//! happen (a synchronous wait for the receiver's answer), calls
//! [`flush_wakes`] first. `send().await` and `recv().await` spend the
//! running task's cooperative budget (the IO budget,
//! [`crate::io::BUDGET`] per poll), so a task that always finds messages
//! (or room) still gives its partition's turn up, and its wakes go out.
//!
//! **Close.** [`Sender::close`] or [`Receiver::close`] closes the channel,
//! as does dropping the last sender or the last receiver. After a close,
//! sends fail and give the message back ([`SendError`],
//! [`TrySendError::Closed`]); receives still take the messages sent before
//! it, then fail ([`RecvError`], [`TryRecvError::Closed`]). Every parked
//! task is woken. When the last receiver is dropped, the messages still in
//! the channel are dropped with it.
//!
//! **Cancellation.** Dropping a [`RecvFuture`] loses no message (a message
//! is taken only in the poll that returns it), and dropping a
//! [`SendFuture`] sends nothing (its message is dropped with it). A future
//! that was woken and is dropped before it acted passes its wake on to the
//! next parked future of its side, if there is still a message (room) for
//! it.
//!
//! **Capacity.** `bounded(cap)` holds at most `cap` messages; `cap` must be
//! at least 1 (a rendezvous channel, capacity 0, is not offered: `bounded`
//! panics with a message saying so). `unbounded()` has no limit.
//!
//! The protocol is checked by loom models that run this code (the state
//! word, the wait lists, close; the lanes stood in for by locked queues):
//! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::context::{with_core, BLOCKING};

mod chan;
mod error;
mod lanes;
mod waiters;

use chan::{Chan, Refused, SendPoll};
pub use error::{RecvError, SendError, TryRecvError, TrySendError};
use lanes::NO_LANE;

/// Makes a channel that holds at most `cap` messages: a send waits while
/// it is full.
///
/// # Panics
/// If `cap` is 0: a rendezvous channel is not offered; `bounded(1)` is the
/// closest. (Capacities above 2<sup>61</sup> − 1 on 64-bit targets are
/// taken as that.)
#[track_caller]
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        cap > 0,
        "fairloop::channel::bounded: the capacity must be at least 1 \
         (a zero-capacity rendezvous channel is not supported; use bounded(1))"
    );
    pair(Chan::new(Some(cap), core_lanes()))
}

/// Makes a channel with no limit on the messages it holds: a send never
/// waits.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    pair(Chan::new(None, core_lanes()))
}

fn pair<T>(chan: Chan<T>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(chan);
    (
        Sender {
            chan: chan.clone(),
            lane: AtomicUsize::new(NO_LANE),
        },
        Receiver {
            chan,
            cursor: AtomicUsize::new(0),
        },
    )
}

/// Delivers now the wakes that channel operations of the running task's
/// poll have put off until the poll returns (see the module docs), so
/// that their parked receivers or senders can go on while this poll
/// continues.
///
/// Only needed before blocking the thread inside a task on something those
/// wakes make happen, such as a synchronous wait for an answer from a
/// thread that receives with `block_on` (blocking a core thread stalls
/// every partition of the core in any case). Outside a task poll, wakes
/// are never put off, and this does nothing.
pub fn flush_wakes() {
    crate::context::wake_deferred();
}

/// A channel with lanes for `core_lanes` cores (the models and unit
/// tests choose, instead of the runtime's core count).
#[cfg(test)]
pub(crate) fn with_lanes<T>(cap: Option<usize>, core_lanes: usize) -> (Sender<T>, Receiver<T>) {
    pair(Chan::new(cap, core_lanes))
}

/// Lanes for the cores of the runtime the caller runs in, or for the
/// machine's CPUs outside any.
fn core_lanes() -> usize {
    if let Some(n) = with_core(|c| c.map(|c| c.runtime.remotes().len())) {
        return n;
    }
    let blocking = BLOCKING
        .try_with(|b| b.borrow().as_ref().map(|p| p.runtime.remotes().len()))
        .ok()
        .flatten();
    blocking.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The calling thread's core (its lane), and whether the running task may
/// go on (its cooperative budget; always off the cores).
#[inline]
fn core_and_budget() -> (Option<usize>, bool) {
    with_core(|c| match c {
        Some(c) => (Some(c.index), c.consume_budget()),
        None => (None, true),
    })
}

#[inline]
fn current_core() -> Option<usize> {
    with_core(|c| c.map(|c| c.index))
}

/// The sending half of a channel. Cloning it makes another sender of the
/// same channel; the channel closes when the last one is dropped.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
    /// The lane this handle last wrote (see the module docs on order).
    lane: AtomicUsize,
}

/// The receiving half of a channel. Cloning it makes another receiver of
/// the same channel (each message goes to one of them); the channel closes
/// when the last one is dropped, and the messages left in it are dropped.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
    /// Where this handle looks first: a lane and how many messages in a
    /// row it took from it.
    cursor: AtomicUsize,
}

/// The read-only view of the channel's state, the same on both ends.
macro_rules! channel_state {
    () => {
        /// Whether the channel is closed.
        pub fn is_closed(&self) -> bool {
            self.chan.is_closed()
        }

        /// The number of messages in the channel.
        pub fn len(&self) -> usize {
            self.chan.len()
        }

        /// Whether the channel holds no message.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether a bounded channel is at its capacity (never for an
        /// unbounded one).
        pub fn is_full(&self) -> bool {
            self.chan.capacity().is_some_and(|c| self.len() >= c)
        }

        /// The capacity of a bounded channel; `None` for an unbounded one.
        pub fn capacity(&self) -> Option<usize> {
            self.chan.capacity()
        }

        /// The number of [`Sender`] handles of the channel.
        pub fn sender_count(&self) -> usize {
            self.chan.senders.load(Ordering::Acquire)
        }

        /// The number of [`Receiver`] handles of the channel.
        pub fn receiver_count(&self) -> usize {
            self.chan.receivers.load(Ordering::Acquire)
        }
    };
}

impl<T> Sender<T> {
    /// Sends `msg`, waiting for room while a bounded channel is full.
    ///
    /// Fails, giving the message back, if the channel is closed (also when
    /// it closes while this waits). Dropping the future before it
    /// completes sends nothing.
    pub fn send(&self, msg: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            msg: Some(msg),
            key: None,
        }
    }

    /// Sends `msg` if the channel has room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if a bounded channel is at its capacity,
    /// [`TrySendError::Closed`] if the channel is closed; both give the
    /// message back.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        let here = self.chan.lanes().here(current_core());
        self.chan
            .try_send(&self.lane, here, msg)
            .map_err(|(why, msg)| match why {
                Refused::Busy => TrySendError::Full(msg),
                Refused::Closed => TrySendError::Closed(msg),
            })
    }

    /// Closes the channel: see [`Receiver::close`]. `true` if this call
    /// closed it, `false` if it was closed already.
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    channel_state!();

    /// Whether `other` sends into the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives a message, waiting while the channel is empty.
    ///
    /// Fails once the channel is closed and empty: the messages sent
    /// before a close are still received. Dropping the future before it
    /// completes loses no message.
    pub fn recv(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            key: None,
        }
    }

    /// Receives a message if there is one now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if the channel is empty,
    /// [`TryRecvError::Closed`] if it is empty and closed.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.try_recv(&self.cursor).map_err(|why| match why {
            Refused::Busy => TryRecvError::Empty,
            Refused::Closed => TryRecvError::Closed,
        })
    }

    /// Closes the channel: sends fail from now on, receives take the
    /// messages already sent and then fail, and every parked task is
    /// woken. `true` if this call closed it, `false` if it was closed
    /// already.
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    channel_state!();

    /// Whether `other` receives from the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: self.chan.clone(),
            lane: AtomicUsize::new(self.lane.load(Ordering::Relaxed)),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            chan: self.chan.clone(),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.discard(&self.cursor);
        }
    }
}

/// What the `Debug` output of a handle shows: the channel's figures, not
/// its messages (so `T` need not be `Debug`).
fn debug_chan<T>(name: &str, chan: &Chan<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(name)
        .field("len", &chan.len())
        .field("capacity", &chan.capacity())
        .field("closed", &chan.is_closed())
        .field("senders", &chan.senders.load(Ordering::Relaxed))
        .field("receivers", &chan.receivers.load(Ordering::Relaxed))
        .field("lanes", &chan.lanes().count())
        .finish()
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("Sender", &self.chan, f)
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("Receiver", &self.chan, f)
    }
}

/// The future of [`Sender::send`].
///
/// # Panics
/// If polled again after it completed (as `async fn` futures do).
#[must_use = "futures do nothing unless polled: the message is not sent"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    /// The message, until it is sent or given back.
    msg: Option<T>,
    /// Its node in the parked senders' list while it waits for room.
    key: Option<usize>,
}

// The message is never pinned: the future moves it in and out by value.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (core, go_on) = core_and_budget();
        if !go_on {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let msg = this
            .msg
            .take()
            .expect("fairloop::channel::SendFuture polled after it completed");
        let chan = &this.sender.chan;
        let here = chan.lanes().here(core);
        match chan.poll_send(cx, &this.sender.lane, here, msg, &mut this.key) {
            SendPoll::Sent => Poll::Ready(Ok(())),
            SendPoll::Closed(msg) => Poll::Ready(Err(SendError(msg))),
            SendPoll::Parked(msg) => {
                this.msg = Some(msg);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        self.sender.chan.cancel_send(&mut self.key);
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("sent", &self.msg.is_none())
            .field("parked", &self.key.is_some())
            .finish()
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    receiver: &'a Receiver<T>,
    /// Its node in the parked receivers' list while it waits.
    key: Option<usize>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (_, go_on) = core_and_budget();
        if !go_on {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let r = this.receiver;
        r.chan
            .poll_recv(cx, &r.cursor, &mut this.key)
            .map(|r| r.map_err(|()| RecvError))
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        self.receiver.chan.cancel_recv(&mut self.key);
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("parked", &self.key.is_some())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The protocol's corners, driven by hand on one thread: wakes are
    //! counted, lanes chosen explicitly. Behaviour across cores is in the
    //! workspace's `tests/channel.rs`.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use super::{with_lanes, Receiver, RecvError, Sender, TryRecvError};

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn wakes(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    fn poll<F: std::future::Future + Unpin>(f: &mut F, w: &Waker) -> Poll<F::Output> {
        std::pin::Pin::new(f).poll(&mut Context::from_waker(w))
    }

    /// Sends `v` as if from the core whose lane is `lane`.
    fn send_from(tx: &Sender<u32>, lane: usize, v: u32) {
        let here = tx.chan.lanes().here(Some(lane));
        assert!(tx.chan.try_send(&tx.lane, here, v).is_ok());
    }

    #[test]
    fn a_burst_to_a_parked_receiver_costs_one_wake() {
        let (tx, rx) = with_lanes::<u32>(None, 2);
        let (count, waker) = counting();
        let mut f = rx.recv();
        assert!(poll(&mut f, &waker).is_pending());
        assert_eq!(rx.chan.parked(), (0, 1));
        for v in 0..100 {
            tx.try_send(v).unwrap();
        }
        assert_eq!(wakes(&count), 1, "one wake for the whole burst");
        assert_eq!(rx.chan.parked(), (0, 0));
        assert_eq!(poll(&mut f, &waker), Poll::Ready(Ok(0)));
        drop(f);
        for v in 1..100 {
            assert_eq!(rx.try_recv(), Ok(v));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn each_parked_receiver_gets_a_wake_of_its_own() {
        let (tx, rx) = with_lanes::<u32>(None, 1);
        let (c1, w1) = counting();
        let (c2, w2) = counting();
        let (mut f1, mut f2) = (rx.recv(), rx.recv());
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        tx.try_send(1).unwrap();
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 0), "the oldest first");
        tx.try_send(2).unwrap();
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 1));
        assert_eq!(poll(&mut f2, &w2), Poll::Ready(Ok(1)));
        assert_eq!(poll(&mut f1, &w1), Poll::Ready(Ok(2)));
    }

    #[test]
    fn a_woken_receive_dropped_unpolled_passes_its_wake_on() {
        let (tx, rx) = with_lanes::<u32>(None, 1);
        let (c1, w1) = counting();
        let (c2, w2) = counting();
        let mut f1 = rx.recv();
        let mut f2 = rx.recv();
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        tx.try_send(7).unwrap();
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 0));
        drop(f1);
        assert_eq!(wakes(&c2), 1, "the wake went on to the other receiver");
        assert_eq!(poll(&mut f2, &w2), Poll::Ready(Ok(7)));
    }

    #[test]
    fn a_parked_receive_dropped_unwoken_leaves_no_trace() {
        let (tx, rx) = with_lanes::<u32>(None, 1);
        let (c1, w1) = counting();
        let mut f1 = rx.recv();
        assert!(poll(&mut f1, &w1).is_pending());
        drop(f1);
        assert_eq!(rx.chan.parked(), (0, 0));
        tx.try_send(1).unwrap();
        assert_eq!(wakes(&c1), 0);
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn a_woken_send_dropped_unpolled_passes_the_room_on() {
        let (tx, rx) = with_lanes::<u32>(Some(1), 1);
        tx.try_send(0).unwrap();
        let (c1, w1) = counting();
        let (c2, w2) = counting();
        let mut f1 = tx.send(1);
        let mut f2 = tx.send(2);
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        assert_eq!(tx.chan.parked(), (2, 0));
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 0));
        drop(f1);
        assert_eq!(wakes(&c2), 1);
        assert_eq!(poll(&mut f2, &w2), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2), "the dropped send sent nothing");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn close_wakes_every_parked_future() {
        let (tx, rx) = with_lanes::<u32>(Some(1), 1);
        let rx2 = rx.clone();
        let (cr, wr) = counting();
        let mut r1 = rx.recv();
        let mut r2 = rx2.recv();
        assert!(poll(&mut r1, &wr).is_pending());
        assert!(poll(&mut r2, &wr).is_pending());
        assert!(tx.close());
        assert!(!rx.close(), "closed already");
        assert_eq!(wakes(&cr), 2);
        assert_eq!(poll(&mut r1, &wr), Poll::Ready(Err(RecvError)));
        assert_eq!(poll(&mut r2, &wr), Poll::Ready(Err(RecvError)));

        let (tx, rx) = with_lanes::<u32>(Some(1), 1);
        tx.try_send(1).unwrap();
        let (cs, ws) = counting();
        let mut s = tx.send(2);
        assert!(poll(&mut s, &ws).is_pending());
        assert!(rx.close());
        assert_eq!(wakes(&cs), 1);
        match poll(&mut s, &ws) {
            Poll::Ready(Err(e)) => assert_eq!(e.into_inner(), 2),
            other => panic!("expected the message back, got {other:?}"),
        }
        assert_eq!(rx.try_recv(), Ok(1), "sent before the close");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    /// The sticky lane: moved to another core, a sender keeps its old
    /// lane until that is empty, so a receiver that starts at the new
    /// lane still gets its messages in order.
    #[test]
    fn a_sender_keeps_its_lane_until_it_is_drained() {
        let (tx, rx) = with_lanes::<u32>(None, 2);
        send_from(&tx, 1, 1);
        send_from(&tx, 1, 2);
        // "Migrated" to core 0: lane 1 still holds its messages.
        send_from(&tx, 0, 3);
        assert_eq!(tx.lane.load(Ordering::Relaxed), 1);
        let got: Vec<u32> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
        // Lane 1 is empty now: the next send moves to core 0's lane.
        send_from(&tx, 0, 4);
        assert_eq!(tx.lane.load(Ordering::Relaxed), 0);
        assert_eq!(rx.try_recv(), Ok(4));
        // A clone starts where its original is.
        let tx2 = tx.clone();
        assert_eq!(tx2.lane.load(Ordering::Relaxed), 0);
    }

    /// A receiver moves on from a busy lane after a streak, so another
    /// lane's messages are not held back behind it for long.
    #[test]
    fn a_busy_lane_does_not_hold_the_others_back() {
        let (tx0, rx) = with_lanes::<u32>(None, 2);
        let tx1 = tx0.clone();
        for v in 0..1000 {
            send_from(&tx0, 0, v);
        }
        send_from(&tx1, 1, 5000);
        let pos = (0..1001)
            .position(|_| rx.try_recv().unwrap() == 5000)
            .unwrap();
        assert!(pos <= 2 * super::lanes::MAX_CORE_LANES, "taken at {pos}");
    }

    #[test]
    fn dropping_the_last_receiver_drops_the_messages() {
        let (tx, rx) = with_lanes::<Arc<()>>(None, 1);
        let token = Arc::new(());
        for _ in 0..10 {
            tx.try_send(token.clone()).unwrap();
        }
        let rx2 = rx.clone();
        drop(rx);
        assert_eq!(Arc::strong_count(&token), 11, "a receiver remains");
        drop(rx2);
        assert_eq!(Arc::strong_count(&token), 1);
        assert!(tx.is_closed());
        assert!(tx.try_send(token.clone()).unwrap_err().is_closed());
    }

    fn _handles_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Sender<u8>>();
        is::<Receiver<u8>>();
        is::<super::SendFuture<'static, u8>>();
        is::<super::RecvFuture<'static, u8>>();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    //!
    //! The real `Sender`/`Receiver` futures, state word, wait lists and
    //! close; the lanes are stood in for by locked queues (see
    //! `lanes.rs`). A lost wakeup leaves a `block_on` waiting for ever,
    //! which loom reports as a deadlock.
    use futures_lite::future::poll_once;
    use loom::future::block_on;
    use loom::thread;

    use super::with_lanes;

    /// Close against send against recv, the sender parking: a sender
    /// waits on a full channel (capacity 1) while a receiver takes the
    /// message there and another thread closes. The sender is woken (a
    /// lost wake would leave it parked for ever), and its message is in
    /// the channel exactly when its send succeeded.
    #[test]
    fn close_racing_a_send_into_a_full_channel_and_a_recv() {
        crate::loom::model(|| {
            let (tx, rx) = with_lanes::<u32>(Some(1), 1);
            tx.try_send(0).unwrap();
            let closer = tx.clone();
            let rx2 = rx.clone();
            let sender = thread::spawn(move || block_on(tx.send(1)).is_ok());
            let receiver = thread::spawn(move || block_on(rx2.recv()));
            closer.close();
            let sent = sender.join().unwrap();
            assert_eq!(receiver.join().unwrap(), Ok(0));
            let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
            assert_eq!(rest, if sent { vec![1] } else { vec![] });
            assert!(rx.try_recv().unwrap_err().is_closed());
        });
    }

    /// The plain race, with no close to mask a lost wake: a receiver
    /// parks on an empty channel while a message is sent; it gets it.
    #[test]
    fn a_send_wakes_a_receiver_parked_on_an_empty_channel() {
        crate::loom::model(|| {
            let (tx, rx) = with_lanes::<u32>(None, 1);
            let receiver = thread::spawn(move || block_on(rx.recv()));
            tx.try_send(1).unwrap();
            assert_eq!(receiver.join().unwrap(), Ok(1));
        });
    }

    /// With no receive to make room, only the close can wake a sender
    /// parked on a full channel: it must, whichever comes first.
    #[test]
    fn a_close_wakes_a_sender_parked_on_a_full_channel() {
        crate::loom::model(|| {
            let (tx, rx) = with_lanes::<u32>(Some(1), 1);
            tx.try_send(0).unwrap();
            let sender = thread::spawn(move || block_on(tx.send(1)));
            assert!(rx.close());
            assert_eq!(sender.join().unwrap().unwrap_err().into_inner(), 1);
            assert_eq!(rx.try_recv(), Ok(0));
        });
    }

    /// Close against send against recv, the receiver parking: a receiver
    /// waits on an empty channel while a sender sends one message and
    /// another thread closes. The receiver gets the message exactly when
    /// its send succeeded (a close does not lose what was sent before it),
    /// then learns of the close; a lost wake would leave it parked.
    #[test]
    fn close_racing_a_send_and_a_recv_on_an_empty_channel() {
        crate::loom::model(|| {
            let (tx, rx) = with_lanes::<u32>(None, 1);
            let closer = tx.clone();
            let sender = thread::spawn(move || tx.try_send(1).is_ok());
            let receiver = thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = block_on(rx.recv()) {
                    got.push(v);
                }
                got
            });
            closer.close();
            let sent = sender.join().unwrap();
            let got = receiver.join().unwrap();
            assert_eq!(got, if sent { vec![1] } else { vec![] });
        });
    }

    /// Two receivers parked, one message: if the receiver it woke is
    /// dropped before it polled again, the wake passes to the other.
    #[test]
    fn a_dropped_receive_passes_its_wake_on() {
        crate::loom::model(|| {
            let (tx, rx) = with_lanes::<u32>(None, 1);
            let rx2 = rx.clone();
            let first = thread::spawn(move || {
                let mut f = rx.recv();
                // One poll, then drop: parked (perhaps woken since) or done.
                block_on(poll_once(&mut f)).is_some()
            });
            let second = thread::spawn(move || block_on(rx2.recv()));
            tx.try_send(1).unwrap();
            if first.join().unwrap() {
                // The first took the message: give the second one.
                tx.try_send(2).unwrap();
            }
            assert!(second.join().unwrap().is_ok());
        });
    }
}
