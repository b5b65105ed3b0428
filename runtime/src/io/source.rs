//! [`IoSource`]: a socket served by readiness (epoll) on the core whose
//! task uses it.
//!
//! An `IoSource` wraps a non-blocking file descriptor (a `mio` socket).
//! It registers with the epoll of the core whose task first uses it,
//! edge-triggered, and keeps the readiness the driver reports in a
//! [`Readiness`]: a task that finds its socket not ready parks its waker
//! there, and the driver's event wakes *that task*, in its own partition,
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
//! ready IO operations ([`BUDGET`](crate::io::BUDGET)); past it, an
//! operation yields (wakes its task and returns `Pending`), so an
//! always-ready socket cannot monopolise its partition's turn — the core's
//! turns, timers and IO harvest go on.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use crate::context::with_core;
use crate::driver::readiness::{Direction, Readiness, Registrations};
use crate::partition::PartitionInner;
use crate::reactor::consume_budget;
use crate::runtime::RuntimeInner;

/// Where a source is registered now.
struct Registered {
    runtime: Arc<RuntimeInner>,
    core: usize,
    /// The core's table, and the source's index in it.
    table: Arc<Registrations>,
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
    io: Arc<Readiness>,
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
            io: Arc::new(Readiness::default()),
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
        let io = &*self.io;
        'registered: loop {
            if let Err(e) = self.ensure_registered() {
                return Poll::Ready(Err(e));
            }
            loop {
                let seen = match io.ready(dir) {
                    Some(seen) => seen,
                    None => {
                        io.register(dir, cx.waker());
                        // An event may have arrived before the waker was in
                        // place.
                        if let Some(seen) = io.ready(dir) {
                            seen
                        } else if self.core.load(Ordering::Acquire) == UNREGISTERED {
                            // Deregistered since the (lock-free) check above:
                            // no epoll watches the socket now. Register again
                            // rather than wait for an event that cannot come.
                            // (A deregistration after this load wakes the
                            // waker just registered: see `deregister`.)
                            continue 'registered;
                        } else {
                            return Poll::Pending;
                        }
                    }
                };
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
    }

    /// Makes sure the source is registered where it should be, as the
    /// module docs say: without a lock when the caller is the home
    /// partition on the core the source is registered with.
    fn ensure_registered(&self) -> io::Result<()> {
        let here = with_core(|core| {
            core.and_then(|c| {
                c.current_partition_id()
                    .map(|id| (c.runtime.id, c.index, id))
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
        let (runtime, core, table, user) = with_core(|core| {
            core.and_then(|c| {
                c.current_partition()
                    .map(|p| (c.runtime.clone(), c.index, c.registrations().clone(), p))
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
            old.table.deregister(&self.source, old.index);
            self.core.store(UNREGISTERED, Ordering::Relaxed);
        }
        if runtime.is_closed() {
            return Err(io::Error::other(
                "fairloop socket used while its runtime shuts down",
            ));
        }
        let index = table.register(&self.source, &self.io)?;
        // The new epoll only reports the next edge: assume ready, and let a
        // `WouldBlock` clear it.
        self.io.set_all();
        self.runtime_id.store(runtime.id, Ordering::Relaxed);
        self.core.store(core, Ordering::Relaxed);
        self.home_id.store(user.id, Ordering::Relaxed);
        *reg = Some(Registered {
            runtime,
            core,
            table,
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
            r.table.deregister(&self.source, r.index);
        }
        self.core.store(UNREGISTERED, Ordering::Release);
        self.home_id.store(u64::MAX, Ordering::Relaxed);
        drop(reg);
        // A task that took the lock-free path just before this, and parked
        // its waker, waits for an event no epoll will report any more: wake
        // it, so that it registers again. (One that parks after this sees
        // `UNREGISTERED` in `poll_op`; the wakers' own atomic orders the
        // two.)
        self.io.wake_waiters();
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

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use super::{IoSource, UNREGISTERED};
    use crate::io::Direction;
    use crate::Runtime;

    /// A task waits for a datagram on a registered source; another thread
    /// then deregisters the source (as a stream's ring read does from
    /// another core). The waiter must still get the datagram: it is woken
    /// and registers again. It used to wait for an event that no epoll
    /// would report, forever.
    #[test]
    fn a_waiter_survives_its_source_being_deregistered() {
        let rt = Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .build()
            .expect("runtime");
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_nonblocking(true).expect("nonblocking");
        let addr = receiver.local_addr().expect("addr");
        let source = Arc::new(IoSource::new(mio::net::UdpSocket::from_std(receiver)));
        let waiting = source.clone();
        let task = rt.spawn(async move {
            let mut buf = [0u8; 8];
            futures_lite::future::poll_fn(|cx| {
                waiting.poll_io(cx, Direction::Read, |s| s.recv(&mut buf))
            })
            .await
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while source.core.load(Ordering::Acquire) == UNREGISTERED {
            assert!(Instant::now() < deadline, "the task never registered");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50)); // let it park
        source.deregister();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        sender.send_to(b"hi", addr).expect("send");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(futures_lite::future::block_on(task));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter was never woken after the deregistration");
        assert_eq!(got.expect("task").expect("recv"), 2);
    }
}
