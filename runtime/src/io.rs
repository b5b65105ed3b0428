//! IO on the per-core reactors: the building blocks of `fairloop::net`.
//!
//! Byte streams use a [`StreamSource`]: reads and writes through the core's
//! io_uring, readiness IO where there is none (its module docs say what
//! that means for buffering and flushing). Everything else (listeners,
//! datagram sockets, `connect`) uses readiness, described here.
//!
//! An [`IoSource`] wraps a non-blocking file descriptor (a `mio` socket).
//! It registers with the `mio::Poll` of the core whose task first uses it,
//! edge-triggered, and keeps the readiness the reactor reports in a
//! `ScheduledIo`: a task that finds its socket not ready parks its waker
//! there, and the reactor's event wakes *that task*, in its own partition,
//! wherever the partition runs. So a partition that owns its sockets never
//! waits for another partition to read its bytes: the 2017 proposal's
//! "black hole" cannot happen.
//!
//! **Moving.** A socket's *home* is the partition that registered it. When
//! the home migrates, the next poll re-registers the socket on the new core
//! (instead of bouncing every event across cores). When a socket is handed
//! to a task of another partition (polled by it twice in a row, the home not
//! in between), that partition becomes its home. Two halves of one socket
//! used by two partitions do not make it flip back and forth: neither side
//! polls twice in a row without the other.
//!
//! **Edge-triggered draining.** Readiness is cleared only when an operation
//! returns `WouldBlock`, and only if no new event arrived since it was read
//! (an event counter travels with the readiness bits).
//!
//! **Cooperative budget.** Each task poll may perform a bounded number of
//! ready IO operations ([`BUDGET`]); past it, an operation yields (wakes
//! its task and returns `Pending`), so an always-ready socket cannot
//! monopolise its partition's turn — the core's turns, timers and IO harvest
//! go on.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::Mutex;
use slab::Slab;

use crate::context::with_core;
use crate::partition::PartitionInner;

pub use crate::stream::{StreamSource, MAX_RECV, MAX_SEND};

/// Ready IO operations one task poll may perform before it yields.
pub const BUDGET: u32 = 128;

/// Tokens below this are the reactor's own (waker, timer).
pub(crate) const FIRST_IO_TOKEN: usize = 2;

const READABLE: u64 = 1;
const WRITABLE: u64 = 2;
const READ_CLOSED: u64 = 4;
const WRITE_CLOSED: u64 = 8;
const ERROR: u64 = 16;
const READY_BITS: u64 = 0xffff;
const TICK_ONE: u64 = 1 << 16;

/// Which readiness an operation waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Reading, accepting, receiving.
    Read,
    /// Writing, connecting, sending.
    Write,
}

impl Direction {
    fn mask(self) -> u64 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }

    /// The bits an operation's `WouldBlock` proves stale: the direction
    /// is neither ready nor closed, and any pending socket error was
    /// consumed by that very call.
    fn stale_bits(self) -> u64 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// The readiness of one registered source and the tasks waiting for it.
#[derive(Default)]
pub(crate) struct ScheduledIo {
    /// Ready bits in the low 16 bits, an event counter above them.
    readiness: AtomicU64,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl ScheduledIo {
    /// Reactor side: records an event and returns the wakers to call.
    pub(crate) fn set(&self, event: &mio::event::Event, wake: &mut Vec<std::task::Waker>) {
        let mut bits = 0;
        if event.is_readable() {
            bits |= READABLE;
        }
        if event.is_writable() {
            bits |= WRITABLE;
        }
        if event.is_read_closed() {
            bits |= READ_CLOSED;
        }
        if event.is_write_closed() {
            bits |= WRITE_CLOSED;
        }
        if event.is_error() {
            bits |= ERROR;
        }
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some((cur | bits).wrapping_add(TICK_ONE))
            });
        if bits & Direction::Read.mask() != 0 {
            wake.extend(self.reader.take());
        }
        if bits & Direction::Write.mask() != 0 {
            wake.extend(self.writer.take());
        }
    }

    /// Marks both directions ready (after a move to another core, whose
    /// epoll reports the current state only on the next edge).
    fn set_all(&self) {
        self.readiness.fetch_add(TICK_ONE, Ordering::AcqRel);
        self.readiness
            .fetch_or(READABLE | WRITABLE, Ordering::AcqRel);
    }

    fn waker(&self, dir: Direction) -> &AtomicWaker {
        match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        }
    }

    /// After a `WouldBlock`: clears `dir`'s readiness unless an event
    /// arrived after `seen`. Sticky bits (closed, error) go too — an
    /// error-only event that a call already consumed must not keep the
    /// socket looking ready, or its task would spin.
    fn clear(&self, dir: Direction, seen: u64) {
        self.clear_bits(seen, dir.stale_bits());
    }

    /// After a short transfer: the buffer is drained (or full), but a
    /// close or an error that arrived with the data still has to be seen.
    fn clear_ready(&self, dir: Direction, seen: u64) {
        let ready = match dir {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        };
        self.clear_bits(seen, ready);
    }

    fn clear_bits(&self, seen: u64, bits: u64) {
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur & !READY_BITS == seen & !READY_BITS).then_some(cur & !bits)
            });
    }
}

/// A core's table of registered sources, shared with the threads that
/// register and deregister them.
pub(crate) struct IoDriver {
    registry: mio::Registry,
    sources: Mutex<Slab<Arc<ScheduledIo>>>,
    /// `sources.len()`, readable without the lock.
    count: AtomicUsize,
}

impl IoDriver {
    pub(crate) fn new(registry: mio::Registry) -> Self {
        IoDriver {
            registry,
            sources: Mutex::new(Slab::new()),
            count: AtomicUsize::new(0),
        }
    }

    /// Whether any source is registered (otherwise the core need not
    /// harvest IO between turns).
    pub(crate) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Reactor side: the wakers of every source an event is for.
    pub(crate) fn dispatch<'a>(
        &self,
        events: impl Iterator<Item = &'a mio::event::Event>,
        wake: &mut Vec<std::task::Waker>,
    ) {
        let sources = self.sources.lock();
        for event in events {
            let Some(index) = event.token().0.checked_sub(FIRST_IO_TOKEN) else {
                continue;
            };
            if let Some(io) = sources.get(index) {
                io.set(event, wake);
            }
        }
    }

    fn register(&self, fd: &impl AsRawFd, io: &Arc<ScheduledIo>) -> io::Result<usize> {
        let index = {
            let mut sources = self.sources.lock();
            let index = sources.insert(io.clone());
            self.count.store(sources.len(), Ordering::Relaxed);
            index
        };
        let token = Token(index + FIRST_IO_TOKEN);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .registry
            .register(&mut SourceFd(&fd.as_raw_fd()), token, interest)
        {
            self.remove(index);
            return Err(e);
        }
        Ok(index)
    }

    fn deregister(&self, fd: &impl AsRawFd, index: usize) {
        let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        self.remove(index);
    }

    fn remove(&self, index: usize) {
        let mut sources = self.sources.lock();
        sources.try_remove(index);
        self.count.store(sources.len(), Ordering::Relaxed);
    }
}

/// Where a source is registered now.
struct Registered {
    runtime: Arc<crate::runtime::Shared>,
    core: usize,
    index: usize,
    /// The partition whose tasks use the source; see the module docs.
    home: Arc<PartitionInner>,
}

/// `IoSource::core` before the first registration.
const UNREGISTERED: usize = usize::MAX;

/// A non-blocking file descriptor served by the fairloop reactors.
///
/// Registration is lazy: the first [`poll_io`](IoSource::poll_io) from a
/// task registers the source with that task's core. Dropping the
/// `IoSource` deregisters it.
pub struct IoSource<S: AsRawFd> {
    source: S,
    /// The readiness record, the same across re-registrations, so a poll
    /// may use it without the lock.
    io: Arc<ScheduledIo>,
    /// Copies of the registration for the lock-free fast path: the
    /// runtime's id, the core, the home partition's id. Written under
    /// `registered`'s lock; a stale read only sends a poll down the slow
    /// path, or uses `io`, which is valid wherever the source is registered.
    runtime_id: AtomicU64,
    core: AtomicUsize,
    home_id: AtomicU64,
    /// The partition that polled last, by id.
    last_user: AtomicU64,
    registered: Mutex<Option<Registered>>,
}

impl<S: AsRawFd> IoSource<S> {
    /// Wraps `source`, which must already be in non-blocking mode (every
    /// `mio` socket is).
    pub fn new(source: S) -> Self {
        IoSource {
            source,
            io: Arc::new(ScheduledIo::default()),
            runtime_id: AtomicU64::new(u64::MAX),
            core: AtomicUsize::new(UNREGISTERED),
            home_id: AtomicU64::new(u64::MAX),
            last_user: AtomicU64::new(u64::MAX),
            registered: Mutex::new(None),
        }
    }

    /// The wrapped source.
    pub fn get_ref(&self) -> &S {
        &self.source
    }

    /// Runs `op` on the source when it is ready in direction `dir`.
    ///
    /// `op` must perform one non-blocking operation and return its result;
    /// `WouldBlock` makes this wait for the next readiness event (the task is
    /// woken in its own partition). Errors if called outside a task of a
    /// fairloop runtime, or if the core's reactor cannot register the
    /// source.
    pub fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_op(cx, dir, op, |_| false)
    }

    /// [`poll_io`](IoSource::poll_io) for a byte stream's read or write of
    /// `len` bytes: a short transfer (fewer bytes than asked, but some)
    /// means the socket's buffer is drained (or full), so readiness is
    /// cleared at once instead of finding out with one more syscall that
    /// would block. Only for stream sockets: a datagram is short by nature.
    pub fn poll_stream(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        len: usize,
        op: impl FnMut(&S) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.poll_op(cx, dir, op, |r| matches!(r, Ok(n) if *n > 0 && *n < len))
    }

    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&S) -> io::Result<R>,
        drained: impl Fn(&io::Result<R>) -> bool,
    ) -> Poll<io::Result<R>> {
        if let Err(e) = self.ensure_registered() {
            return Poll::Ready(Err(e));
        }
        let io = &*self.io;
        loop {
            let mut seen = io.readiness.load(Ordering::Acquire);
            if seen & dir.mask() == 0 {
                io.waker(dir).register(cx.waker());
                seen = io.readiness.load(Ordering::Acquire);
                if seen & dir.mask() == 0 {
                    return Poll::Pending;
                }
            }
            if !consume_budget() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match op(&self.source) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.clear(dir, seen),
                result => {
                    if drained(&result) {
                        io.clear_ready(dir, seen);
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }

    /// Makes sure the source is registered where it should be, as the
    /// module docs say: without a lock when the caller is the home
    /// partition on the core the source is registered with.
    fn ensure_registered(&self) -> io::Result<()> {
        let here = with_core(|core| {
            core.and_then(|c| {
                c.current_partition_id()
                    .map(|id| (c.shared.id, c.index, id))
            })
        });
        let Some((runtime_id, core, user)) = here else {
            return Err(io::Error::other(
                "fairloop socket used outside a fairloop runtime (or after it shut down): \
                 use it from a task of the runtime",
            ));
        };
        if self.home_id.load(Ordering::Relaxed) == user
            && self.core.load(Ordering::Relaxed) == core
            && self.runtime_id.load(Ordering::Relaxed) == runtime_id
        {
            if self.last_user.load(Ordering::Relaxed) != user {
                self.last_user.store(user, Ordering::Relaxed);
            }
            return Ok(());
        }
        self.register_slow()
    }

    fn register_slow(&self) -> io::Result<()> {
        let (runtime, core, user) = with_core(|core| {
            core.and_then(|c| {
                c.current_partition()
                    .map(|p| (c.shared.clone(), c.index, p))
            })
        })
        .ok_or_else(|| io::Error::other("fairloop socket used outside a fairloop runtime"))?;
        let mut reg = self.registered.lock();
        let last_user = self.last_user.swap(user.id, Ordering::Relaxed);
        if let Some(r) = reg.as_mut() {
            let same_runtime = Arc::ptr_eq(&r.runtime, &runtime);
            if same_runtime && user.id != r.home.id && last_user == user.id {
                // Polled twice in a row by another partition: handed over.
                r.home = user.clone();
                self.home_id.store(user.id, Ordering::Relaxed);
            }
            let target = r.home.owner();
            if same_runtime && (target == r.core || target != core) {
                // Registered where its home runs (or the home is elsewhere
                // and this is a guest poll): events route to the waker.
                return Ok(());
            }
            // Its home moved here, or the socket moved to another runtime:
            // re-register on this core.
            let old = reg.take().expect("checked");
            old.runtime.cores[old.core]
                .io
                .deregister(&self.source, old.index);
            self.core.store(UNREGISTERED, Ordering::Relaxed);
        }
        if runtime.is_closed() {
            return Err(io::Error::other(
                "fairloop socket used while its runtime shuts down",
            ));
        }
        let index = runtime.cores[core].io.register(&self.source, &self.io)?;
        // The new epoll only reports the next edge: assume ready, and let a
        // `WouldBlock` clear it.
        self.io.set_all();
        self.runtime_id.store(runtime.id, Ordering::Relaxed);
        self.core.store(core, Ordering::Relaxed);
        self.home_id.store(user.id, Ordering::Relaxed);
        *reg = Some(Registered {
            runtime,
            core,
            index,
            home: user,
        });
        Ok(())
    }
}

impl<S: AsRawFd> IoSource<S> {
    /// Takes the source off its core's epoll, if it is registered: for a
    /// stream that moved to the ring after a readiness operation (`connect`,
    /// `peek`), whose epoll events would only cost harvests now. The next
    /// readiness operation registers it again.
    pub(crate) fn deregister(&self) {
        if self.core.load(Ordering::Relaxed) == UNREGISTERED {
            return;
        }
        let mut reg = self.registered.lock();
        if let Some(r) = reg.take() {
            r.runtime.cores[r.core].io.deregister(&self.source, r.index);
        }
        self.core.store(UNREGISTERED, Ordering::Relaxed);
        self.home_id.store(u64::MAX, Ordering::Relaxed);
    }
}

impl<S: AsRawFd> Drop for IoSource<S> {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<S: AsRawFd + fmt::Debug> fmt::Debug for IoSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoSource")
            .field("source", &self.source)
            .finish()
    }
}

/// Takes one unit of the running task's IO budget; `false` when it is
/// spent (the caller yields).
pub(crate) fn consume_budget() -> bool {
    with_core(|core| core.is_none_or(|c| c.consume_budget()))
}
