//! The IO driver of one core: its `mio::Poll`, its wakeup eventfd, its
//! timer fd, and its completion ring ([`uring`]) where the kernel allows
//! one. It is the lowest layer of the runtime: it knows sockets, wakers and
//! deadlines, nothing of partitions, tasks or the runtime above it, and
//! imports nothing from the crate but [`crate::park`], [`crate::metrics`]
//! and [`crate::loom`].
//!
//! * [`readiness`]: the sources registered with the core's epoll and the
//!   tasks waiting for them.
//! * [`uring`]: the completion ring, which stream reads and writes go
//!   through; [`bufpool`]: the receive buffers it lends the kernel.
//! * [`requests`]: the [`Door`](requests::Door) other threads use to ask
//!   the core's ring for something and to wake the core.
//!
//! A core parks in `io_uring_enter` while operations are in flight on its
//! ring (the ring watches the epoll fd, so readiness, the timerfd and
//! wakeups from other threads end that wait too), and in `epoll_wait`
//! otherwise.
//!
//! A core can also block in another poller instead (tokio's, with
//! `Builder::tokio_compat`): then that poller watches the epoll fd alone
//! ([`Driver::epoll_fd`]), and the ring, instead of watching the epoll fd,
//! signals an eventfd registered with it ([`Driver::new`] with `external`).
//! Such a core prepares with [`Driver::prepare_external_park`], lets the
//! other poller block, and harvests with [`Driver::poll_now`].
//!
//! `epoll_wait` takes its timeout in whole milliseconds, which would make
//! every timer up to a millisecond late. So a core that parks with a timer
//! pending arms a `timerfd` (nanosecond resolution, `CLOCK_MONOTONIC`, the
//! clock behind `std::time::Instant`) for the earliest deadline and blocks
//! with no timeout; the timerfd's readiness ends the wait on time.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::task::Waker;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

pub(crate) mod bufpool;
pub(crate) mod readiness;
pub(crate) mod requests;
pub(crate) mod uring;

use readiness::Registrations;
use uring::{Ring, RingOwner};

/// The token of each core's `mio::Waker`.
pub(crate) const WAKER_TOKEN: Token = Token(0);
const TIMER_TOKEN: Token = Token(1);
/// The ring's completion eventfd, in external mode.
const RING_TOKEN: Token = Token(2);
/// The longest the timer fd is armed for in one go.
const MAX_ARM: Duration = Duration::from_secs(86_400);

/// One core's IO driver: see the module docs.
pub(crate) struct Driver {
    /// Declared first so it is dropped first: it watches `poll`'s fd, and
    /// its drop waits for the kernel to give back every buffer.
    ring: Option<Ring>,
    poll: Poll,
    /// The sources registered with `poll` (shared with the threads that
    /// register them).
    registrations: Arc<Registrations>,
    events: Events,
    timerfd: OwnedFd,
    /// The deadline the timerfd is armed for.
    armed: Option<Instant>,
    /// External mode (see the module docs): the eventfd the ring signals
    /// completions on. Never read: each signal is a new edge for epoll
    /// (mio registers edge-triggered), and the count saturates rather than
    /// blocking the kernel.
    ring_signal: Option<OwnedFd>,
}

impl Driver {
    /// A driver around `poll` and the table of its registrations, with a
    /// ring for `ring`'s owner if there is one and the kernel allows it.
    /// `external`: the core blocks in another poller that watches only the
    /// epoll fd (see the module docs).
    pub(crate) fn new(
        poll: Poll,
        registrations: Arc<Registrations>,
        ring: Option<RingOwner>,
        external: bool,
    ) -> io::Result<Self> {
        let timerfd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        poll.registry().register(
            &mut SourceFd(&timerfd.as_raw_fd()),
            TIMER_TOKEN,
            Interest::READABLE,
        )?;
        let mut ring_signal = None;
        let ring = match (ring, external) {
            (None, _) => None,
            (Some(owner), false) => Ring::new(poll.as_raw_fd(), owner, None).ok(),
            (Some(owner), true) => {
                let fd = rustix::event::eventfd(
                    0,
                    rustix::event::EventfdFlags::NONBLOCK | rustix::event::EventfdFlags::CLOEXEC,
                )?;
                let ring = Ring::new(poll.as_raw_fd(), owner, Some(fd.as_fd())).ok();
                if ring.is_some() {
                    poll.registry().register(
                        &mut SourceFd(&fd.as_raw_fd()),
                        RING_TOKEN,
                        Interest::READABLE,
                    )?;
                    ring_signal = Some(fd);
                }
                ring
            }
        };
        Ok(Driver {
            ring,
            poll,
            registrations,
            events: Events::with_capacity(256),
            timerfd,
            armed: None,
            ring_signal,
        })
    }

    /// The epoll fd: in external mode, the one fd the other poller
    /// watches (IO readiness, the timerfd, wakeups from other threads and
    /// the ring's completions all make it readable).
    #[cfg(feature = "tokio-compat")]
    pub(crate) fn epoll_fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }

    /// External mode: everything [`Driver::park`] does before it blocks,
    /// without blocking: arms the timerfd for `deadline` and hands queued
    /// ring entries to the kernel. Returns the wakers of what completed
    /// meanwhile; if there are any, the core has work and must not block.
    /// An error means the timerfd could not be armed: nothing would end
    /// the other poller's wait on time, so it must not block at all.
    #[cfg(feature = "tokio-compat")]
    pub(crate) fn prepare_external_park(
        &mut self,
        deadline: Option<Instant>,
    ) -> io::Result<Vec<Waker>> {
        if let Err(e) = self.arm(deadline) {
            debug_assert!(false, "timerfd_settime failed: {e}");
            return Err(e);
        }
        let mut ready = Vec::new();
        if let Some(ring) = self.ring.as_mut().filter(|r| r.unsubmitted() > 0) {
            ring.poll_now(&mut ready);
        }
        Ok(ready)
    }

    /// Blocks until a wakeup, IO readiness, or `deadline` if there is one;
    /// returns the wakers of the tasks whose sockets became ready.
    pub(crate) fn park(&mut self, deadline: Option<Instant>) -> Vec<Waker> {
        if let Err(e) = self.arm(deadline) {
            // Without the timerfd, fall back to epoll's own (millisecond)
            // timeout rather than sleeping past the deadline.
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            debug_assert!(false, "timerfd_settime failed: {e}");
            return self.wait(timeout);
        }
        if let Some(ring) = self.ring.as_mut().filter(|r| r.is_active()) {
            let mut ready = Vec::new();
            if ring.wait(&mut ready) {
                ready.extend(self.harvest());
            }
            return ready;
        }
        self.wait(None)
    }

    /// Whether the core has IO to look at between turns: registered
    /// sockets, or operations on its ring.
    pub(crate) fn has_io(&self) -> bool {
        !self.registrations.is_empty() || self.ring.as_ref().is_some_and(Ring::is_active)
    }

    /// Ring entries waiting to be handed to the kernel.
    pub(crate) fn unsubmitted(&self) -> usize {
        self.ring.as_ref().map_or(0, Ring::unsubmitted)
    }

    /// Submits queued ring entries and harvests completions and IO
    /// readiness, without blocking.
    pub(crate) fn poll_now(&mut self) -> Vec<Waker> {
        if self.ring_signal.is_some() {
            // External mode: epoll first, which consumes the ring's edge,
            // then the ring, which reaps every completion signalled up to
            // then. (The other order could consume the edge of a completion
            // that arrived after the reap, and nothing would signal again.)
            let mut ready = self.harvest();
            if let Some(ring) = self.ring.as_mut() {
                ring.poll_now(&mut ready);
            }
            return ready;
        }
        match self.ring.as_mut() {
            Some(ring) => {
                let mut ready = Vec::new();
                if ring.poll_now(&mut ready) {
                    ready.extend(self.harvest());
                }
                ready
            }
            // All of it: an event left behind in a full batch would raise
            // no new edge for an outside poller watching the epoll fd.
            None => self.harvest(),
        }
    }

    /// The core's ring, if it has one.
    pub(crate) fn ring(&mut self) -> Option<&mut Ring> {
        self.ring.as_mut()
    }

    /// Whether the core got a ring (io_uring allowed and working).
    pub(crate) fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Epoll readiness, after the ring said the epoll fd signalled.
    fn harvest(&mut self) -> Vec<Waker> {
        let mut ready = Vec::new();
        loop {
            let more = self.wait(Some(Duration::ZERO));
            ready.extend(more);
            // A full batch may have left events behind; they raise no new
            // signal on the ring, so look again.
            if self.events.iter().count() < self.events.capacity() {
                return ready;
            }
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Vec<Waker> {
        let mut ready = Vec::new();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal, or a transient failure: the core looks at its queues
            // and parks again.
            Err(_) => return ready,
        }
        for event in self.events.iter() {
            if event.token() == TIMER_TOKEN {
                // Consume the expiration count so the fd can signal again.
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&self.timerfd, &mut buf);
                self.armed = None;
            }
        }
        self.registrations.dispatch(self.events.iter(), &mut ready);
        ready
    }

    fn arm(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if deadline == self.armed {
            return Ok(());
        }
        let value = match deadline {
            // A zero it_value disarms the timer, so an already-due deadline
            // becomes one nanosecond. A deadline centuries away is armed
            // for a day at most (the core then finds nothing due and arms
            // again), so no value near the limits of `time_t` reaches the
            // kernel.
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_nanos(1), MAX_ARM),
            None => Duration::ZERO,
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: value.as_secs() as _,
                tv_nsec: value.subsec_nanos() as _,
            },
        };
        timerfd_settime(&self.timerfd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed = deadline;
        Ok(())
    }
}

/// Calls every waker in `wakers`. A waker is user code (a combinator may
/// make its own): one that panics is contained here, so it cannot unwind
/// out of the core's loop and take the core, and every task on it, down.
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
    }
}
