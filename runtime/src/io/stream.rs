//! Byte-stream sockets (TCP, Unix): reads and writes through the core's
//! completion ring, with readiness IO as the fallback.
//!
//! A [`StreamSource`] reads and writes through the ring of the core whose
//! task calls it (`driver/uring.rs`), when that core has one:
//!
//! * **Reads.** The first read that finds no received bytes submits a
//!   *multishot* `recv` and waits. It names the ring's buffer pool (the
//!   kernel picks a 16 KiB buffer only when bytes arrive, so an idle
//!   stream holds none) and stays armed: each time bytes arrive the kernel
//!   completes it once more, and the completion appends them to the
//!   stream's received bytes and wakes the task, in its own partition; the
//!   read copies the bytes out. So a request/response connection costs
//!   one ring entry in all, not a submission and an armed poll per
//!   request (which made the kernel's share of a saturated hyper server
//!   larger than with tokio's `recv` syscalls). The recv is stopped (and
//!   armed again by the read that empties the stream) when more than
//!   [`RX_LIMIT`] bytes wait unread, and when the task waits for bytes on
//!   another core (it moved). Where there is no pool, or it ran dry, a
//!   one-shot `recv` goes into the stream's own buffer (as large as the
//!   caller's, at most [`MAX_RECV`]).
//! * **Writes** copy the bytes into the stream's send buffer, submit a
//!   `send`, and return at once; while one is in flight, further writes
//!   gather behind it (up to [`MAX_SEND`] bytes, then a write waits) and go
//!   out together when it completes. A failed `send` is reported by the
//!   next write or flush. `poll_flush` waits until everything written has
//!   reached the kernel; shutting the write half (`poll_shutdown`, or
//!   [`StreamSource::shutdown`]) happens after that, so the peer sees every
//!   byte before end of stream.
//! * **Dropping** the stream cancels its `recv`; bytes already written are
//!   still sent, and the file descriptor is closed when the last operation
//!   has completed (the operations own the stream's state).
//!
//! **Moving.** Each operation goes to the ring of the core whose task asks
//! for it, so a stream carried by a migrating partition, or handed to a task
//! on another core, simply submits its next operation there; one still in
//! flight on the old core completes there and wakes the task wherever it
//! now runs.
//!
//! A core without a ring (io_uring disabled, or refused by the kernel) uses
//! readiness IO through the stream's [`IoSource`]: an edge-triggered epoll
//! registration and one syscall per read or write. A stream moving between
//! the two kinds of cores first finishes what is buffered or in flight, so
//! its bytes stay in order either way.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, types};
use parking_lot::Mutex;

use super::IoSource;
use crate::context::with_core;
use crate::driver::bufpool::GROUP;
use crate::driver::readiness::Direction;
use crate::driver::uring::{OpKind, OpRef, Ring, RingRequest, RingTarget};
use crate::reactor::consume_budget;

/// The largest `recv` one read submits.
pub const MAX_RECV: usize = 64 * 1024;
/// Received bytes that may wait unread before the stream's multishot
/// `recv` is stopped: a reader slower than its peer holds this much, plus
/// what the kernel received before the stop reached it (at most the
/// pool's 4 MiB, and only while the peer outruns the core); the socket's
/// own buffer then pushes back on the peer.
pub const RX_LIMIT: usize = 256 * 1024;
/// The smallest receive buffer: a read with a tiny buffer still takes what
/// a typical small message needs in one `recv`.
const MIN_RECV: usize = 64;
/// A drained receive buffer larger than this is freed rather than kept:
/// an idle stream holds at most this much.
const KEEP_RX: usize = 4096;
/// Written bytes that may wait behind a `send` in flight before a write
/// waits for it.
pub const MAX_SEND: usize = 64 * 1024;

/// A stream socket served by the fairloop cores: see the module docs.
pub struct StreamSource<S: AsRawFd + AsFd + Send + Sync + 'static> {
    inner: Arc<StreamInner<S>>,
}

/// What a stream's user and its operations in flight share: the ring keeps
/// it alive (through each operation's target) until the last completion.
struct StreamInner<S: AsRawFd> {
    io: IoSource<S>,
    state: Mutex<StreamState>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteHalf {
    Open,
    /// Shut down once what is written has been sent.
    ShutAfterFlush,
    Shut,
}

/// A stream's buffers, operations in flight and waiting tasks.
struct StreamState {
    /// Received bytes not yet read: `rx[rx_pos..]`.
    rx: Vec<u8>,
    rx_pos: usize,
    recv: Option<RecvInFlight>,
    /// The peer closed its write half: reads return 0 from now on.
    eof: bool,
    /// A `recv` failed; the next read returns the error.
    rx_error: Option<io::Error>,
    /// The ring's buffer pool was empty: the next `recv` brings its own.
    pool_miss: bool,
    reader: Option<Waker>,
    /// The bytes of the `send` in flight, sent up to `tx_pos`.
    tx: Vec<u8>,
    tx_pos: usize,
    /// The `send` in flight, if one is.
    send_op: Option<OpRef>,
    /// Bytes written while a `send` was in flight.
    staged: Vec<u8>,
    tx_error: Option<io::Error>,
    writer: Option<Waker>,
    write_half: WriteHalf,
    /// The `StreamSource` is gone; only operations in flight remain.
    dropped: bool,
    /// The timeout bounding how long a dropped stream may go on sending
    /// (`Builder::stream_linger`), and the duration the kernel reads when
    /// it is submitted.
    linger: Option<OpRef>,
    linger_ts: types::Timespec,
    /// The linger ran out: what is not sent yet is given up.
    abandoned: bool,
}

impl StreamState {
    /// Whether a `send` is in flight (writes gather in `staged` meanwhile).
    fn sending(&self) -> bool {
        self.send_op.is_some()
    }

    /// A `recv` completion that brought no bytes: end of stream (0), a
    /// cancellation (the stream dropped, the core exiting: a later read
    /// asks again), or an error for the next read.
    fn no_bytes(&mut self, result: i32) {
        match result {
            0 => self.eof = true,
            e if -e == libc::ECANCELED => {}
            e => self.rx_error = Some(io::Error::from_raw_os_error(-e)),
        }
    }

    /// The end of every `recv` completion: a dropped stream keeps no
    /// bytes, and the reader wakes.
    fn recv_done(&mut self, wake: &mut Vec<Waker>) {
        if self.dropped {
            self.rx = Vec::new();
        }
        wake.extend(self.reader.take());
    }
}

/// A stream's `recv` on the ring.
struct RecvInFlight {
    op: OpRef,
    /// A multishot into pool buffers, armed until it is stopped; else a
    /// one-shot into `rx`.
    multishot: bool,
    /// The multishot was asked to stop; its last completion is to come.
    stopping: bool,
}

/// What the ring-side read decided.
enum Read {
    Done(Poll<io::Result<usize>>),
    /// No ring here and nothing buffered or in flight: use readiness IO.
    Readiness,
}

impl<S: AsRawFd + AsFd + Send + Sync + 'static> StreamSource<S> {
    /// Wraps a connected stream socket, which must be in non-blocking mode
    /// (every `mio` socket is).
    pub fn new(source: S) -> Self {
        StreamSource {
            inner: Arc::new(StreamInner {
                io: IoSource::new(source),
                state: Mutex::new(StreamState {
                    rx: Vec::new(),
                    rx_pos: 0,
                    recv: None,
                    eof: false,
                    rx_error: None,
                    pool_miss: false,
                    reader: None,
                    tx: Vec::new(),
                    tx_pos: 0,
                    send_op: None,
                    staged: Vec::new(),
                    tx_error: None,
                    writer: None,
                    write_half: WriteHalf::Open,
                    dropped: false,
                    linger: None,
                    linger_ts: types::Timespec::new(),
                    abandoned: false,
                }),
            }),
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        self.inner.io.get_ref()
    }

    /// The readiness side, for operations that are not reads or writes of
    /// the byte stream (`connect`, `peek`).
    pub fn readiness(&self) -> &IoSource<S> {
        &self.inner.io
    }

    /// Reads into `buf`; `Ok(0)` is end of stream (or an empty `buf`).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        match self.ring_read(cx, len, &mut |src| copy_to(buf, src)) {
            Read::Done(p) => p,
            Read::Readiness => self
                .inner
                .io
                .poll_stream(cx, Direction::Read, len, |s| read_fd(s, buf)),
        }
    }

    /// Reads into several buffers, in order.
    pub fn poll_read_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        let read = self.ring_read(cx, len, &mut |mut src| {
            let mut n = 0;
            for b in bufs.iter_mut() {
                let k = copy_to(b, src);
                n += k;
                src = &src[k..];
                if src.is_empty() {
                    break;
                }
            }
            n
        });
        match read {
            Read::Done(p) => p,
            Read::Readiness => match bufs.iter_mut().find(|b| !b.is_empty()) {
                Some(b) => self
                    .inner
                    .io
                    .poll_stream(cx, Direction::Read, b.len(), |s| read_fd(s, b)),
                None => Poll::Ready(Ok(0)),
            },
        }
    }

    /// Reads into uninitialised memory; the first `n` bytes are initialised
    /// when it returns `Ok(n)` (for `tokio`'s and `hyper`'s read traits).
    pub fn poll_read_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        let read = self.ring_read(cx, len, &mut |src| {
            let n = src.len().min(buf.len());
            for (d, s) in buf[..n].iter_mut().zip(src) {
                d.write(*s);
            }
            n
        });
        match read {
            Read::Done(p) => p,
            Read::Readiness => self.inner.io.poll_stream(cx, Direction::Read, len, |s| {
                rustix::net::recv(s, &mut *buf, rustix::net::RecvFlags::empty())
                    .map(|((init, _), _)| init.len())
                    .map_err(io::Error::from)
            }),
        }
    }

    /// Writes (a prefix of) `buf`; see the module docs for when the bytes
    /// reach the kernel.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Writes (a prefix of) the buffers, in order.
    pub fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let mut st = self.inner.state.lock();
        if let Some(e) = st.tx_error.take() {
            return Poll::Ready(Err(e));
        }
        if st.write_half != WriteHalf::Open {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the stream's write half was shut down",
            )));
        }
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        if st.sending() {
            let room = MAX_SEND.saturating_sub(st.staged.len());
            if room == 0 {
                set_waker(&mut st.writer, cx);
                return Poll::Pending;
            }
            if !consume_budget() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(Ok(gather(&mut st.staged, bufs, MAX_SEND)));
        }
        let submitted = with_ring(|ring| {
            if !consume_budget() {
                return None;
            }
            st.tx.clear();
            st.tx_pos = 0;
            let n = gather(&mut st.tx, bufs, MAX_SEND);
            match self.inner.submit_send(&mut st, ring) {
                Ok(()) => Some(Ok(n)),
                Err(e) => Some(Err(e)),
            }
        });
        match submitted {
            Some(Some(r)) => Poll::Ready(r),
            Some(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => {
                drop(st);
                self.inner.io.poll_stream(cx, Direction::Write, len, |s| {
                    rustix::net::sendmsg(
                        s,
                        bufs,
                        &mut rustix::net::SendAncillaryBuffer::default(),
                        rustix::net::SendFlags::NOSIGNAL,
                    )
                    .map_err(io::Error::from)
                })
            }
        }
    }

    /// Waits until every byte written has been handed to the kernel, and
    /// reports a failed `send`.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.inner.state.lock();
        if let Some(e) = st.tx_error.take() {
            return Poll::Ready(Err(e));
        }
        if st.sending() {
            set_waker(&mut st.writer, cx);
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes, then shuts the write half (the peer reads end of stream).
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush(cx))?;
        let mut st = self.inner.state.lock();
        if st.write_half == WriteHalf::Shut {
            return Poll::Ready(Ok(()));
        }
        st.write_half = WriteHalf::Shut;
        Poll::Ready(shutdown_fd(self.get_ref(), Shutdown::Write))
    }

    /// Shuts down the read half, the write half, or both, at once. Shutting
    /// the write half while written bytes are still on their way happens
    /// as soon as they are sent, so none is lost or overtaken by the end
    /// of stream; writes after this fail with `BrokenPipe`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how == Shutdown::Read {
            return shutdown_fd(self.get_ref(), Shutdown::Read);
        }
        let mut st = self.inner.state.lock();
        if st.sending() {
            if how == Shutdown::Both {
                shutdown_fd(self.get_ref(), Shutdown::Read)?;
            }
            if st.write_half == WriteHalf::Open {
                st.write_half = WriteHalf::ShutAfterFlush;
            }
            return Ok(());
        }
        st.write_half = WriteHalf::Shut;
        shutdown_fd(self.get_ref(), how)
    }

    /// Copies received bytes that no read has taken yet into `buf`
    /// without consuming them; `None` if there are none (then the socket
    /// itself has the next bytes: `MSG_PEEK` it).
    pub fn peek_buffered(&self, buf: &mut [u8]) -> Option<usize> {
        let st = self.inner.state.lock();
        (st.rx_pos < st.rx.len()).then(|| copy_to(buf, &st.rx[st.rx_pos..]))
    }

    /// Copies the next bytes into `buf` without consuming them, like
    /// `recv` with `MSG_PEEK`: the received bytes no read has taken yet
    /// come first, then what the socket has. With a `recv` in flight on the
    /// ring (a read that was given up, by a timeout say), it waits for that
    /// recv's bytes rather than looking past them into the socket. `Ok(0)`
    /// is end of stream (or an empty `buf`).
    pub fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut st = self.inner.state.lock();
        if st.rx_pos < st.rx.len() {
            // Without a recv in flight the socket's bytes come right after
            // the received ones: take those in too, as `MSG_PEEK` would see
            // them. (An armed multishot brings them in itself.)
            let waiting = st.rx.len() - st.rx_pos;
            if waiting < buf.len() && !st.eof && st.rx_error.is_none() && st.recv.is_none() {
                self.inner.top_up(&mut st, buf.len() - waiting);
            }
            return Poll::Ready(Ok(copy_to(buf, &st.rx[st.rx_pos..])));
        }
        if let Some(e) = &st.rx_error {
            // Left for the read that follows, as the socket leaves it.
            return Poll::Ready(Err(io::Error::new(e.kind(), e.to_string())));
        }
        if st.eof || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if st.recv.is_some() {
            set_waker(&mut st.reader, cx);
            return Poll::Pending;
        }
        drop(st);
        self.inner.io.poll_io(cx, Direction::Read, |s| {
            recv_fd(s, buf, rustix::net::RecvFlags::PEEK)
        })
    }

    fn ring_read(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        fill: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Read {
        let mut st = self.inner.state.lock();
        if st.rx_pos < st.rx.len() {
            if !consume_budget() {
                cx.waker().wake_by_ref();
                return Read::Done(Poll::Pending);
            }
            let start = st.rx_pos;
            let n = fill(&st.rx[start..]);
            st.rx_pos += n;
            if st.rx_pos == st.rx.len() {
                if st.rx.capacity() > KEEP_RX {
                    st.rx = Vec::new();
                } else {
                    st.rx.clear();
                }
                st.rx_pos = 0;
            }
            return Read::Done(Poll::Ready(Ok(n)));
        }
        if let Some(e) = st.rx_error.take() {
            return Read::Done(Poll::Ready(Err(e)));
        }
        if st.eof || len == 0 {
            return Read::Done(Poll::Ready(Ok(0)));
        }
        if let Some(recv) = &mut st.recv {
            if recv.multishot && !recv.stopping {
                // Read from another core now (the task moved): stop the
                // recv there; its last completion wakes this read, which
                // then arms one on this core.
                let op = &recv.op;
                let moved = with_ring(|ring| {
                    let moved = !ring.runs(op);
                    if moved {
                        op.cancel_on(ring);
                    }
                    moved
                });
                recv.stopping = moved == Some(true);
            }
            set_waker(&mut st.reader, cx);
            return Read::Done(Poll::Pending);
        }
        let submitted = with_ring(|ring| {
            let fd = types::Fd(self.get_ref().as_raw_fd());
            st.rx.clear();
            st.rx_pos = 0;
            let multishot = ring.has_pool() && !st.pool_miss;
            let (entry, kind) = if multishot {
                // The kernel picks a pool buffer each time bytes arrive.
                let entry = opcode::RecvMulti::new(fd, GROUP).build();
                (entry, OpKind::RecvMulti)
            } else {
                let want = len.clamp(MIN_RECV, MAX_RECV);
                st.rx.reserve(want);
                let room = st.rx.capacity().min(MAX_RECV);
                let entry = opcode::Recv::new(fd, st.rx.as_mut_ptr(), room as u32).build();
                (entry, OpKind::Recv)
            };
            // SAFETY: a pooled recv carries no pointer of ours. Otherwise
            // `rx`'s allocation lives in the `StreamInner` the ring keeps
            // alive until the completion; while a one-shot `recv` is set
            // nothing reads, resizes or frees `rx` (every use checks
            // `recv` first, and `Drop` leaves it alone). The fd is owned
            // by the same `StreamInner`.
            let op = unsafe { ring.push(entry, kind, self.inner.clone()) }?;
            Ok(RecvInFlight {
                op,
                multishot,
                stopping: false,
            })
        });
        match submitted {
            Some(Ok(recv)) => {
                st.recv = Some(recv);
                // Readiness is no longer how this stream is served.
                self.inner.io.deregister();
                set_waker(&mut st.reader, cx);
                Read::Done(Poll::Pending)
            }
            Some(Err(e)) => Read::Done(Poll::Ready(Err(e))),
            None => Read::Readiness,
        }
    }
}

impl<S: AsRawFd + AsFd + Send + Sync + 'static> StreamInner<S> {
    /// Appends to the received bytes up to `more` bytes the socket has now,
    /// without waiting (only while no recv is in flight: those bytes would
    /// be that recv's). End of stream and errors are kept for the reads.
    fn top_up(&self, st: &mut StreamState, more: usize) {
        debug_assert!(st.recv.is_none());
        let mut chunk = vec![0u8; more.min(MAX_RECV)];
        match recv_fd(
            self.io.get_ref(),
            &mut chunk,
            rustix::net::RecvFlags::DONTWAIT,
        ) {
            Ok(0) => st.eof = true,
            Ok(n) => st.rx.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => st.rx_error = Some(e),
        }
    }

    /// Sends `tx[tx_pos..]` on `ring`.
    fn submit_send(self: &Arc<Self>, st: &mut StreamState, ring: &mut Ring) -> io::Result<()> {
        let pending = &st.tx[st.tx_pos..];
        let entry = opcode::Send::new(
            types::Fd(self.io.get_ref().as_raw_fd()),
            pending.as_ptr(),
            pending.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        // SAFETY: `tx` lives in the `StreamInner` the ring keeps alive
        // until the completion, and nothing touches it while the send is in
        // flight (writes go to `staged`); the fd is owned by the same value.
        let pushed = unsafe { ring.push(entry, OpKind::Send, self.clone()) };
        match pushed {
            Ok(op) => {
                st.send_op = Some(op);
                Ok(())
            }
            Err(e) => {
                st.send_op = None;
                st.tx.clear();
                st.tx_pos = 0;
                Err(e)
            }
        }
    }

    /// A dropped stream still sending: bound how long it may (see
    /// `Builder::stream_linger`) with a timeout on `ring`.
    fn arm_linger(self: &Arc<Self>, st: &mut StreamState, ring: &mut Ring) {
        if !st.dropped || !st.sending() || st.linger.is_some() || st.abandoned {
            return;
        }
        let limit = ring.stream_linger();
        if limit.is_zero() {
            self.abandon(st, ring);
            return;
        }
        st.linger_ts = types::Timespec::new()
            .sec(limit.as_secs())
            .nsec(limit.subsec_nanos());
        let entry = opcode::Timeout::new(&st.linger_ts).build();
        // SAFETY: `linger_ts` lives in the `StreamInner` the ring keeps
        // alive until the completion, and is not written again while the
        // timeout is armed.
        match unsafe { ring.push(entry, OpKind::Linger, self.clone()) } {
            Ok(op) => st.linger = Some(op),
            // No timeout: give up now rather than hold the socket forever.
            Err(_) => self.abandon(st, ring),
        }
    }

    /// Stops waiting for the peer: cancels the `send` in flight, whose
    /// completion gives up what is left (`give_up`).
    fn abandon(&self, st: &mut StreamState, ring: &mut Ring) {
        st.abandoned = true;
        if let Some(op) = &st.send_op {
            op.cancel_on(ring);
        }
    }

    /// A `send` was cancelled (linger over, or the core exiting): hands the
    /// kernel what it takes without waiting, and if bytes remain, arms a
    /// reset for the close, so the peer sees the stream cut, not ended.
    fn give_up(&self, st: &mut StreamState, why: &str) {
        let fd = self.io.get_ref();
        let mut complete = true;
        let start = st.tx_pos.min(st.tx.len());
        for chunk in [&st.tx[start..], &st.staged[..]] {
            let mut off = 0;
            while off < chunk.len() {
                let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
                match rustix::net::send(fd, &chunk[off..], flags) {
                    Ok(n) if n > 0 => off += n,
                    _ => break,
                }
            }
            if off < chunk.len() {
                complete = false;
                break;
            }
        }
        if complete {
            st.tx.clear();
            st.tx_pos = 0;
            st.staged.clear();
        } else {
            let _ = rustix::net::sockopt::set_socket_linger(fd, Some(std::time::Duration::ZERO));
            fail_send(st, io::Error::new(io::ErrorKind::TimedOut, why));
        }
    }
}

impl<S: AsRawFd + AsFd + Send + Sync + 'static> RingTarget for StreamInner<S> {
    fn complete(
        self: Arc<Self>,
        kind: OpKind,
        result: i32,
        buffer: Option<u16>,
        more: bool,
        ring: &mut Ring,
        wake: &mut Vec<Waker>,
    ) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        match kind {
            OpKind::RecvMulti => {
                if !more {
                    st.recv = None;
                }
                match result {
                    n if n > 0 => {
                        debug_assert!(buffer.is_some(), "a multishot recv without a buffer");
                        if let Some(bid) = buffer {
                            if st.rx_pos == st.rx.len() {
                                st.rx.clear();
                            } else {
                                st.rx.drain(..st.rx_pos);
                            }
                            st.rx_pos = 0;
                            st.rx.extend_from_slice(ring.pooled(bid, n as usize));
                        }
                        if let Some(recv) = st.recv.as_mut().filter(|r| !r.stopping) {
                            if st.rx.len() >= RX_LIMIT {
                                // Nobody reads this fast: stop until they do.
                                recv.op.cancel_on(ring);
                                recv.stopping = true;
                            }
                        }
                    }
                    // The pool ran dry: the next read brings its own buffer.
                    e if -e == libc::ENOBUFS => {
                        st.pool_miss = true;
                        ring.note_pool_miss();
                    }
                    // Stopped by a backlog or a move, or as below.
                    other => st.no_bytes(other),
                }
                st.recv_done(wake);
            }
            OpKind::Recv => {
                // A one-shot into `rx` (no pool, or it ran dry): pooled
                // reads are multishot.
                st.recv = None;
                match result {
                    n if n > 0 => {
                        debug_assert!(
                            buffer.is_none() && st.rx.is_empty() && n as usize <= st.rx.capacity()
                        );
                        // SAFETY: the kernel initialised the first `n`
                        // bytes of `rx`'s allocation (it was empty, with at
                        // least that much capacity, when the recv began).
                        unsafe { st.rx.set_len(n as usize) };
                    }
                    other => st.no_bytes(other),
                }
                // The read with its own buffer is done: back to the pool.
                st.pool_miss = false;
                st.recv_done(wake);
            }
            OpKind::Send => {
                st.send_op = None;
                match result {
                    n if n > 0 && st.abandoned => {
                        st.tx_pos += n as usize;
                        self.give_up(st, "a dropped stream's peer took too long to read");
                    }
                    n if n > 0 => {
                        st.tx_pos += n as usize;
                        if st.tx_pos < st.tx.len() {
                            if let Err(e) = self.submit_send(st, ring) {
                                fail_send(st, e);
                            }
                        } else if !st.staged.is_empty() {
                            std::mem::swap(&mut st.tx, &mut st.staged);
                            st.staged.clear();
                            st.tx_pos = 0;
                            if let Err(e) = self.submit_send(st, ring) {
                                fail_send(st, e);
                            }
                        } else {
                            st.tx.clear();
                            st.tx_pos = 0;
                        }
                    }
                    0 => fail_send(st, io::ErrorKind::WriteZero.into()),
                    e if -e == libc::ECANCELED => {
                        let why = if st.abandoned {
                            "a dropped stream's peer took too long to read"
                        } else {
                            "the runtime shut down before the bytes were sent"
                        };
                        self.give_up(st, why);
                    }
                    e => fail_send(st, io::Error::from_raw_os_error(-e)),
                }
                if !st.sending() && st.write_half == WriteHalf::ShutAfterFlush {
                    st.write_half = WriteHalf::Shut;
                    let _ = shutdown_fd(self.io.get_ref(), Shutdown::Write);
                }
                if st.dropped && !st.sending() {
                    st.tx = Vec::new();
                    st.staged = Vec::new();
                    // Everything went out: the linger is moot, and the
                    // socket closes as soon as no operation holds it.
                    if let Some(linger) = st.linger.take() {
                        linger.cancel_on(ring);
                    }
                }
                wake.extend(st.writer.take());
            }
            OpKind::Linger => {
                st.linger = None;
                if -result == libc::ETIME && st.sending() && !st.abandoned {
                    self.abandon(st, ring);
                }
            }
        }
    }

    fn on_core(self: Arc<Self>, ring: &mut Ring) {
        let mut st = self.state.lock();
        self.arm_linger(&mut st, ring);
    }
}

/// A failed `send`: what was written and not sent is lost; the next write
/// or flush reports it.
fn fail_send(st: &mut StreamState, e: io::Error) {
    st.send_op = None;
    st.tx.clear();
    st.tx_pos = 0;
    st.staged.clear();
    st.tx_error = Some(e);
}

impl<S: AsRawFd + AsFd + Send + Sync + 'static> Drop for StreamSource<S> {
    fn drop(&mut self) {
        let mut st = self.inner.state.lock();
        st.dropped = true;
        st.reader = None;
        st.writer = None;
        if !st.sending() {
            st.tx = Vec::new();
            st.staged = Vec::new();
        }
        match &st.recv {
            None => st.rx = Vec::new(),
            Some(recv) => cancel(&recv.op),
        }
        if st.sending() {
            // Bound how long the unsent bytes may keep the socket open:
            // armed here if this thread is a core, else by the core that
            // runs the send.
            let st = &mut *st;
            let armed = with_ring(|ring| self.inner.arm_linger(st, ring));
            if armed.is_none() {
                if let Some(op) = &st.send_op {
                    op.door().request(RingRequest::Call(self.inner.clone()));
                }
            }
        }
    }
}

/// Runs `f` with the calling core's ring; `None` when the caller is not on
/// a running core with a ring.
fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> Option<R> {
    with_core(|c| {
        let c = c?;
        if c.is_shutting_down() {
            return None;
        }
        c.with_ring(f)
    })
}

/// Cancels `op`: straight onto the ring when the caller is the core that
/// runs it (also while that core shuts down), else through that core's
/// door.
fn cancel(op: &OpRef) {
    let on_core = with_core(|c| c.and_then(|c| c.with_ring(|ring| op.cancel_on(ring))));
    if on_core.is_none() {
        op.cancel_elsewhere();
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Appends up to `limit - out.len()` bytes of `bufs` to `out`.
fn gather(out: &mut Vec<u8>, bufs: &[IoSlice<'_>], limit: usize) -> usize {
    let mut room = limit.saturating_sub(out.len());
    let mut n = 0;
    for b in bufs {
        if room == 0 {
            break;
        }
        let k = b.len().min(room);
        out.extend_from_slice(&b[..k]);
        room -= k;
        n += k;
    }
    n
}

fn copy_to(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

/// One `recv` into `buf` with `flags`: the byte count.
fn recv_fd(fd: impl AsFd, buf: &mut [u8], flags: rustix::net::RecvFlags) -> io::Result<usize> {
    rustix::net::recv(fd, buf, flags)
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

fn read_fd(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_fd(fd, buf, rustix::net::RecvFlags::empty())
}

fn shutdown_fd(fd: impl AsFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => rustix::net::Shutdown::Read,
        Shutdown::Write => rustix::net::Shutdown::Write,
        Shutdown::Both => rustix::net::Shutdown::Both,
    };
    match rustix::net::shutdown(fd, how) {
        // Already closed by the peer: nothing left to shut.
        Err(rustix::io::Errno::NOTCONN) => Ok(()),
        r => r.map_err(io::Error::from),
    }
}

impl<S: AsRawFd + AsFd + Send + Sync + fmt::Debug + 'static> fmt::Debug for StreamSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSource")
            .field("source", self.get_ref())
            .finish()
    }
}
