//! Readiness: what a core's epoll reports for the sources registered with
//! it, and the tasks waiting for it.
//!
//! Each registered source has a [`Readiness`]: ready bits (readable,
//! writable, closed, error) and an event counter in one atomic, plus a
//! waiting reader and a waiting writer. The driver sets bits and takes the
//! wakers when epoll reports an event ([`Registrations::dispatch`]); the
//! socket side (`crate::io::IoSource`) reads the bits without a lock, parks
//! its waker when its direction is not ready, and clears a direction only
//! when an operation returns `WouldBlock` *and* no event arrived since it
//! read the bits (the counter tells), so an edge that races the clear is
//! never lost.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use atomic_waker::AtomicWaker;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::Mutex;
use slab::Slab;

/// Tokens below this are the driver's own (waker, timer).
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
    /// The bits that let an operation in this direction go ahead, and
    /// also the bits its `WouldBlock` proves stale: the direction is
    /// neither ready nor closed, and any pending socket error was consumed
    /// by that very call.
    fn mask(self) -> u64 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// The readiness of one registered source and the tasks waiting for it.
#[derive(Default)]
pub(crate) struct Readiness {
    /// Ready bits in the low 16 bits, an event counter above them.
    bits: AtomicU64,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Readiness {
    /// Driver side: records an event and pushes the wakers to call.
    fn set(&self, event: &mio::event::Event, wake: &mut Vec<Waker>) {
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
            .bits
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
    pub(crate) fn set_all(&self) {
        self.bits.fetch_add(TICK_ONE, Ordering::AcqRel);
        self.bits.fetch_or(READABLE | WRITABLE, Ordering::AcqRel);
    }

    /// The current bits and event count, to pass back to
    /// [`Readiness::clear`] after the operation: `None` if `dir` is not
    /// ready.
    pub(crate) fn ready(&self, dir: Direction) -> Option<u64> {
        let seen = self.bits.load(Ordering::Acquire);
        (seen & dir.mask() != 0).then_some(seen)
    }

    /// Wakes whoever waits in either direction (the source stopped being
    /// watched: they must look again).
    pub(crate) fn wake_waiters(&self) {
        for waiter in [&self.reader, &self.writer] {
            if let Some(w) = waiter.take() {
                w.wake();
            }
        }
    }

    /// Parks `waker` as the one waiting for `dir`.
    pub(crate) fn register(&self, dir: Direction, waker: &Waker) {
        match dir {
            Direction::Read => self.reader.register(waker),
            Direction::Write => self.writer.register(waker),
        }
    }

    /// After a `WouldBlock`: clears `dir`'s readiness unless an event
    /// arrived after `seen`. Sticky bits (closed, error) go too — an
    /// error-only event that a call already consumed must not keep the
    /// socket looking ready, or its task would spin.
    pub(crate) fn clear(&self, dir: Direction, seen: u64) {
        self.clear_bits(seen, dir.mask());
    }

    /// After a short transfer: the buffer is drained (or full), but a
    /// close or an error that arrived with the data still has to be seen.
    pub(crate) fn clear_ready(&self, dir: Direction, seen: u64) {
        let ready = match dir {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        };
        self.clear_bits(seen, ready);
    }

    fn clear_bits(&self, seen: u64, bits: u64) {
        let _ = self
            .bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur & !READY_BITS == seen & !READY_BITS).then_some(cur & !bits)
            });
    }
}

/// A core's table of sources registered with its epoll, shared with the
/// threads that register and deregister them.
pub(crate) struct Registrations {
    registry: mio::Registry,
    sources: Mutex<Slab<Arc<Readiness>>>,
    /// `sources.len()`, readable without the lock.
    count: AtomicUsize,
}

impl Registrations {
    pub(crate) fn new(registry: mio::Registry) -> Self {
        Registrations {
            registry,
            sources: Mutex::new(Slab::new()),
            count: AtomicUsize::new(0),
        }
    }

    /// Whether any source is registered (otherwise the core need not
    /// harvest readiness between turns).
    pub(crate) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Driver side: records `events` and pushes the wakers of every source
    /// they are for.
    pub(crate) fn dispatch<'a>(
        &self,
        events: impl Iterator<Item = &'a mio::event::Event>,
        wake: &mut Vec<Waker>,
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

    /// Registers `fd` (edge-triggered, both directions), its events going
    /// to `io`; returns its index for [`Registrations::deregister`].
    pub(crate) fn register(&self, fd: &impl AsRawFd, io: &Arc<Readiness>) -> io::Result<usize> {
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

    pub(crate) fn deregister(&self, fd: &impl AsRawFd, index: usize) {
        let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        self.remove(index);
    }

    fn remove(&self, index: usize) {
        let mut sources = self.sources.lock();
        sources.try_remove(index);
        self.count.store(sources.len(), Ordering::Relaxed);
    }
}
