//! A core's completion ring (Linux `io_uring`): stream reads and writes
//! handed to the kernel in batches.
//!
//! With readiness IO, each request of a request/response protocol costs a
//! `recv` and a `send` syscall on top of the shared `epoll_wait`. On the
//! ring, a read or a write is an entry in the submission queue; the entries
//! of a whole loop iteration go to the kernel with the one `io_uring_enter`
//! that also parks the core (or, when the core stays busy, harvests
//! completions between turns, on the same cadence as epoll readiness). The
//! kernel does the same socket work; the syscall crossings are what is
//! saved (measured in `BENCHMARKS.md`, the TCP echo section).
//!
//! The ring does not replace epoll: listeners, datagram sockets, `connect`
//! and the core's own eventfd and timerfd stay on the `mio::Poll`, whose
//! epoll fd is watched by a multishot poll on the ring. A core parks in
//! `io_uring_enter` only while ring operations are in flight; otherwise it
//! parks in `epoll_wait` as it always did.
//!
//! **Ownership.** An operation in flight holds an `Arc` of its target (the
//! stream's state, which owns the buffer and the file descriptor), so the
//! kernel can never write into freed memory or act on a reused fd number.
//! A target whose user is gone asks for its operations to be cancelled; the
//! last completion drops the last `Arc`. When the core exits it cancels
//! everything still in flight and waits for the completions before it
//! frees anything.
//!
//! The ring is single-issuer: only its core's thread touches it. Other
//! threads send a [`RingRequest`] through the core's [`Door`] (a queue the
//! core empties between turns and before it parks); every operation holds
//! an `Arc` of that door, so a stream needs nothing of the runtime above
//! the driver to cancel its operations from anywhere.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::bufpool::BufPool;
use super::requests::Door;
use super::wake_all;
use crate::metrics::CoreStats;

/// Submission queue entries; the completion queue gets four times as many.
/// In-flight operations are not limited by either (the kernel keeps
/// overflowing completions until they are reaped).
const ENTRIES: u32 = 512;

/// The `user_data` of the multishot poll on the epoll fd.
const EPOLL_TAG: u64 = u64::MAX;
/// The `user_data` of cancellation requests (their completions are noise).
const CANCEL_TAG: u64 = u64::MAX - 1;

/// `IORING_ENTER_GETEVENTS` (the crate keeps its `sys` module private).
const ENTER_GETEVENTS: u32 = 1;

/// What an operation in flight was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// A `recv` into the target's receive buffer.
    Recv,
    /// A multishot `recv` into pool buffers: one entry that completes
    /// every time bytes arrive, until it ends (end of stream, an error,
    /// the pool empty, a cancellation). Its completions but the last come
    /// with `more` set.
    RecvMulti,
    /// A `send` from the target's send buffer.
    Send,
    /// A timeout the target armed (see `Builder::stream_linger`).
    Linger,
}

/// An operation in flight: the door of the core whose ring runs it, and
/// its `user_data` there.
pub(crate) struct OpRef {
    door: Arc<Door>,
    user_data: u64,
}

impl OpRef {
    /// Asks for the operation to be cancelled, from a thread that holds
    /// `ring` (its own core's): directly if `ring` runs the operation, else
    /// through the door of the core that does.
    pub(crate) fn cancel_on(&self, ring: &mut Ring) {
        if ring.runs(self) {
            ring.cancel(self.user_data);
        } else {
            self.cancel_elsewhere();
        }
    }

    /// Asks for the operation to be cancelled from a thread that holds no
    /// ring: through the door of the core that runs it.
    pub(crate) fn cancel_elsewhere(&self) {
        self.door.request(RingRequest::Cancel(self.user_data));
    }

    /// The door of the core whose ring runs the operation.
    pub(crate) fn door(&self) -> &Door {
        &self.door
    }
}

/// What a ring is given by the core that builds it.
pub(crate) struct RingOwner {
    /// The core's door, which its operations hold.
    pub(crate) door: Arc<Door>,
    /// The core's counters (completions, pool misses).
    pub(crate) stats: Arc<CoreStats>,
    /// How long a dropped stream may go on sending (`Builder::stream_linger`).
    pub(crate) stream_linger: Duration,
}

/// What another thread may ask of a core's ring.
pub(crate) enum RingRequest {
    /// Cancel this operation.
    Cancel(u64),
    /// Call [`RingTarget::on_core`] for this target.
    Call(Arc<dyn RingTarget>),
}

/// Something with operations on the ring: told about each completion on
/// the core whose ring ran the operation.
pub(crate) trait RingTarget: Send + Sync {
    /// `result` is the kernel's: a byte count, or a negated errno.
    /// `buffer` names the pool buffer a pooled `recv` received into (read
    /// it with [`Ring::pooled`]; the ring takes it back afterwards).
    /// `more`: the operation stays in flight (a multishot's completion
    /// with more to follow); otherwise this is its last. The target may
    /// submit follow-up operations on `ring`; it pushes the wakers to call
    /// into `wake` (called after the ring is released).
    fn complete(
        self: Arc<Self>,
        kind: OpKind,
        result: i32,
        buffer: Option<u16>,
        more: bool,
        ring: &mut Ring,
        wake: &mut Vec<Waker>,
    );

    /// Called on the core for a [`RingRequest::Call`] made elsewhere.
    fn on_core(self: Arc<Self>, ring: &mut Ring);
}

struct Op {
    generation: u32,
    kind: OpKind,
    target: Arc<dyn RingTarget>,
}

/// A core's ring and the operations in flight on it.
pub(crate) struct Ring {
    uring: IoUring,
    /// Receive buffers lent to `recv`s as data arrives; `None` if the
    /// kernel refused to register them (then every `recv` brings its own).
    pool: Option<BufPool>,
    /// The core this ring belongs to.
    owner: RingOwner,
    ops: Slab<Op>,
    /// Tells apart two operations that used the same slab slot, so a late
    /// cancellation cannot hit an unrelated operation.
    generation: u32,
    epoll_fd: RawFd,
    /// Whether the multishot poll on the epoll fd is in the kernel.
    epoll_armed: bool,
    /// The epoll fd signalled since the last harvest.
    epoll_ready: bool,
    /// Completions copied out of the queue before they are handled (a
    /// handler may submit, which needs the ring).
    scratch: Vec<(u64, i32, u32)>,
}

impl Ring {
    /// A ring for the current thread (its only submitter) that also
    /// watches `epoll_fd`, so that [`Ring::wait`] ends on IO readiness too.
    /// Fails where the kernel has no io_uring or forbids it (seccomp,
    /// `kernel.io_uring_disabled`).
    ///
    /// With `signal: Some(eventfd)` the watch is the other way round: the
    /// ring never watches `epoll_fd`, and instead signals `eventfd` (which
    /// the caller registers with that epoll) whenever completions wait to
    /// be reaped. That is for a core that blocks in another poller, which
    /// watches only the epoll fd (`Builder::tokio_compat`); such a core
    /// never calls [`Ring::wait`].
    pub(crate) fn new(
        epoll_fd: RawFd,
        owner: RingOwner,
        signal: Option<BorrowedFd<'_>>,
    ) -> io::Result<Ring> {
        // Deferred task running completes operations only when this thread
        // enters the ring: no interrupts of a busy core. It needs Linux 6.1,
        // which also has everything else used here (multishot poll above
        // all, which older kernels reject, and a core would then spin in
        // its park); on older kernels the runtime stays on epoll.
        let uring = IoUring::builder()
            .setup_cqsize(ENTRIES * 4)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(ENTRIES)?;
        let pool = BufPool::new(&uring).ok();
        let mut ring = Ring {
            uring,
            pool,
            owner,
            ops: Slab::new(),
            generation: 0,
            epoll_fd,
            epoll_armed: false,
            epoll_ready: false,
            scratch: Vec::new(),
        };
        match signal {
            // With deferred task running the kernel signals the eventfd as
            // soon as completion work is queued for this thread (before
            // the completions are posted, which takes our next enter).
            Some(fd) => ring.uring.submitter().register_eventfd(fd.as_raw_fd())?,
            None => ring.arm_epoll()?,
        }
        ring.uring.submit()?;
        Ok(ring)
    }

    /// Whether `recv`s can take their buffer from the ring's pool.
    pub(crate) fn has_pool(&self) -> bool {
        self.pool.is_some()
    }

    /// Counts a `recv` that found the pool empty.
    pub(crate) fn note_pool_miss(&self) {
        self.owner.stats.add_pool_miss();
    }

    /// How long a dropped stream may go on sending its written bytes.
    pub(crate) fn stream_linger(&self) -> Duration {
        self.owner.stream_linger
    }

    /// The `len` bytes a pooled `recv` received into `buffer`.
    pub(crate) fn pooled(&self, buffer: u16, len: usize) -> &[u8] {
        match &self.pool {
            Some(pool) => pool.data(buffer, len),
            None => &[],
        }
    }

    /// Whether `op` runs on this ring.
    pub(crate) fn runs(&self, op: &OpRef) -> bool {
        Arc::ptr_eq(&self.owner.door, &op.door)
    }

    /// Queues `entry` (its `user_data` is set here) for `target`; the
    /// entry reaches the kernel at the next submission. Returns where the
    /// operation runs, for [`OpRef::cancel`].
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid, and its buffer untouched
    /// by anyone but the kernel, until the operation's completion reaches
    /// `target` (which this ring keeps alive until then).
    pub(crate) unsafe fn push(
        &mut self,
        entry: squeue::Entry,
        kind: OpKind,
        target: Arc<dyn RingTarget>,
    ) -> io::Result<OpRef> {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let index = self.ops.insert(Op {
            generation,
            kind,
            target,
        });
        let user_data = (u64::from(generation) << 32) | index as u64;
        // SAFETY: the caller vouches for the entry's pointers.
        if let Err(e) = unsafe { self.push_entry(entry.user_data(user_data)) } {
            self.ops.remove(index);
            return Err(e);
        }
        Ok(OpRef {
            door: self.owner.door.clone(),
            user_data,
        })
    }

    /// Asks the kernel to cancel the operation `user_data` (which completes
    /// with `ECANCELED`, or normally if it was already done). Harmless for
    /// an operation that has completed.
    pub(crate) fn cancel(&mut self, user_data: u64) {
        let entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: a cancellation carries no pointers.
        let _ = unsafe { self.push_entry(entry) };
    }

    /// Whether the core must wait on the ring rather than on epoll:
    /// operations are in flight or entries wait for submission.
    pub(crate) fn is_active(&self) -> bool {
        !self.ops.is_empty() || self.unsubmitted() > 0
    }

    /// Entries queued but not yet handed to the kernel.
    pub(crate) fn unsubmitted(&self) -> usize {
        // SAFETY: a shared view of the submission queue that is only read
        // here; this thread is the only one that pushes.
        unsafe { self.uring.submission_shared().len() }
    }

    /// Submits what is queued and handles the completions that are ready,
    /// without blocking. Returns whether the epoll fd signalled.
    pub(crate) fn poll_now(&mut self, wake: &mut Vec<Waker>) -> bool {
        self.enter(false);
        self.reap(wake);
        std::mem::take(&mut self.epoll_ready)
    }

    /// Submits what is queued and blocks until a completion arrives (an
    /// operation's, or the epoll fd's: IO readiness, the timerfd, a wakeup
    /// from another thread). Returns whether the epoll fd signalled.
    pub(crate) fn wait(&mut self, wake: &mut Vec<Waker>) -> bool {
        if !self.epoll_armed {
            // Without the epoll watch nothing would end the wait but this
            // ring's own operations; rather not block at all.
            let _ = self.arm_epoll();
        }
        self.enter(self.epoll_armed);
        self.reap(wake);
        std::mem::take(&mut self.epoll_ready)
    }

    fn enter(&mut self, wait: bool) {
        let submitter = self.uring.submitter();
        let result = if wait {
            submitter.submit_and_wait(1)
        } else {
            let to_submit = self.unsubmitted() as u32;
            // SAFETY: no argument pointer; GETEVENTS with zero to wait for
            // runs the deferred completions without blocking.
            unsafe { submitter.enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None) }
        };
        // EINTR: a signal; EBUSY: the completion queue is over its limit
        // and must be reaped first. Either way the entries stay queued and
        // the next call hands them over; anything else would repeat too,
        // and the queued operations' users would wait for their wakeups.
        if let Err(e) = result {
            debug_assert!(
                matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ),
                "io_uring_enter failed: {e}"
            );
        }
    }

    fn reap(&mut self, wake: &mut Vec<Waker>) {
        loop {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.extend(
                self.uring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if scratch.is_empty() {
                self.scratch = scratch;
                return;
            }
            for (user_data, result, flags) in scratch.drain(..) {
                self.handle(user_data, result, flags, wake);
            }
            self.scratch = scratch;
        }
    }

    fn handle(&mut self, user_data: u64, result: i32, flags: u32, wake: &mut Vec<Waker>) {
        match user_data {
            EPOLL_TAG => {
                self.epoll_ready = true;
                if !cqueue::more(flags) {
                    // The kernel ended the multishot poll (it may, e.g. on
                    // completion-queue overflow): arm it again.
                    self.epoll_armed = false;
                    let _ = self.arm_epoll();
                }
            }
            CANCEL_TAG => {}
            _ => {
                let index = (user_data & u64::from(u32::MAX)) as usize;
                let generation = (user_data >> 32) as u32;
                if self
                    .ops
                    .get(index)
                    .is_some_and(|op| op.generation == generation)
                {
                    // A multishot stays in flight until its last completion.
                    let more = cqueue::more(flags);
                    let (kind, target) = if more {
                        let op = &self.ops[index];
                        (op.kind, op.target.clone())
                    } else {
                        let op = self.ops.remove(index);
                        (op.kind, op.target)
                    };
                    self.owner.stats.add_ring_completion();
                    let buffer = cqueue::buffer_select(flags);
                    // The handler is the target's code; a panic in it must
                    // not skip giving the buffer back, nor unwind into the
                    // core's loop.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        target.complete(kind, result, buffer, more, self, wake)
                    }));
                    if let (Some(bid), Some(pool)) = (buffer, self.pool.as_mut()) {
                        pool.recycle(bid);
                    }
                }
            }
        }
    }

    fn arm_epoll(&mut self) -> io::Result<()> {
        if self.epoll_armed {
            return Ok(());
        }
        let entry = opcode::PollAdd::new(types::Fd(self.epoll_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(EPOLL_TAG);
        // SAFETY: a poll carries no pointers; the epoll fd outlives the
        // ring (both belong to the core's reactor, the ring dropped first).
        unsafe { self.push_entry(entry)? };
        self.epoll_armed = true;
        Ok(())
    }

    /// # Safety
    ///
    /// As [`Ring::push`].
    unsafe fn push_entry(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded from the caller.
        if unsafe { self.uring.submission().push(&entry) }.is_ok() {
            return Ok(());
        }
        // The queue is full: hand it to the kernel and try again.
        let _ = self.uring.submit();
        // SAFETY: forwarded from the caller.
        unsafe { self.uring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Cancels every operation in flight and waits (at most `limit`) for
    /// their completions, which are handled as usual. Called by the core
    /// when it exits, after its tasks (and with them most sockets) are
    /// gone.
    pub(crate) fn shutdown(&mut self, limit: Duration, wake: &mut Vec<Waker>) {
        let deadline = Instant::now() + limit;
        let mut cancelled = 0;
        while !self.ops.is_empty() && Instant::now() < deadline {
            if cancelled == 0 {
                let targets: Vec<u64> = self
                    .ops
                    .iter()
                    .map(|(i, op)| (u64::from(op.generation) << 32) | i as u64)
                    .collect();
                cancelled = targets.len();
                for user_data in targets {
                    self.cancel(user_data);
                }
            }
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.uring.submitter().submit_with_args(1, &args);
            let before = self.ops.len();
            self.reap(wake);
            if self.ops.len() == before {
                // Nothing came back in 10 ms: ask again (an operation
                // submitted by a completion handler meanwhile, say).
                cancelled = 0;
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.ops.is_empty() {
            let mut wake = Vec::new();
            self.shutdown(Duration::from_secs(1), &mut wake);
            // Tasks waiting for these operations (on other cores, say) must
            // hear that they ended: a dropped waker would leave them
            // waiting forever.
            wake_all(wake);
        }
        if !self.ops.is_empty() {
            // The kernel did not give these back: their buffers (and the
            // pool's) may still be written to, so they must never be freed.
            for op in std::mem::take(&mut self.ops).into_iter() {
                std::mem::forget(op);
            }
            std::mem::forget(self.pool.take());
        } else if let Some(pool) = &self.pool {
            pool.unregister(&self.uring);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use io_uring::{opcode, types};

    use super::{OpKind, Ring, RingOwner, RingTarget};
    use crate::driver::requests::Door;
    use crate::metrics::CoreStats;
    use crate::park::Unparker;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A `recv` target that hands back the waker of its waiting task, as
    /// a stream does.
    struct Reader {
        buf: Mutex<[u8; 16]>,
        waiter: Waker,
    }

    impl RingTarget for Reader {
        fn complete(
            self: Arc<Self>,
            _: OpKind,
            _: i32,
            _: Option<u16>,
            _: bool,
            _: &mut Ring,
            wake: &mut Vec<Waker>,
        ) {
            wake.push(self.waiter.clone());
        }

        fn on_core(self: Arc<Self>, _: &mut Ring) {}
    }

    /// A ring dropped with an operation still in flight cancels it, and the
    /// task waiting for it is woken (its waker used to be dropped, leaving
    /// the task waiting forever).
    #[test]
    fn dropping_a_ring_wakes_the_waiters_of_its_last_operations() {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        let owner = RingOwner {
            door: Arc::new(Door::new(Unparker::new(waker))),
            stats: Arc::new(CoreStats::default()),
            stream_linger: Duration::from_secs(1),
        };
        let mut ring = match Ring::new(poll.as_raw_fd(), owner, None) {
            Ok(ring) => ring,
            Err(e) => {
                eprintln!("no io_uring here ({e}): nothing to check");
                return;
            }
        };
        let (ours, _peer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let target = Arc::new(Reader {
            buf: Mutex::new([0; 16]),
            waiter: Waker::from(count.clone()),
        });
        let ptr = target.buf.lock().unwrap().as_mut_ptr();
        let entry = opcode::Recv::new(types::Fd(ours.as_raw_fd()), ptr, 16).build();
        // SAFETY: the buffer lives in `target`, which the ring keeps alive
        // until the operation completes; nothing else touches it.
        unsafe { ring.push(entry, OpKind::Recv, target) }.expect("push");
        let mut woken = Vec::new();
        ring.poll_now(&mut woken); // the recv reaches the kernel and waits
        assert!(woken.is_empty(), "nothing was sent");
        drop(ring);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the waiter was woken");
    }
}
