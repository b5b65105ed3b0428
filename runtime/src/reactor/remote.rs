//! [`Remote`]: what the rest of the runtime may touch of a core, from any
//! thread, and the [`Control`] messages it sends the core.
//!
//! Everything else of a core belongs to its thread ([`Reactor`]). Other
//! threads reach it only through here: they queue foreign work on
//! [`Remote::pending`] and control messages on its channel, ask its ring for
//! something through its driver's [`Door`], read its counters, and wake it
//! with [`Remote::unpark`] (one syscall per burst, none while it runs; see
//! [`crate::park`]).
//!
//! [`Reactor`]: super::Reactor

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_deque::Injector;
use parking_lot::Mutex;

use super::Adoption;
use crate::driver::readiness::Registrations;
use crate::driver::requests::Door;
use crate::driver::uring::{RingOwner, RingRequest};
use crate::driver::WAKER_TOKEN;
use crate::metrics::CoreStats;
use crate::park::{ParkFlag, Unparker};
use crate::partition::PartitionInner;

/// Messages for a core that are not task wakeups.
pub(crate) enum Control {
    /// A partition's shares changed.
    SetShares(Arc<PartitionInner>),
    /// Move this partition (owned here) to another core.
    Migrate(Arc<PartitionInner>, usize),
    /// Take over a partition another core gave up, with its queued tasks.
    Adopt(Box<Adoption>),
    /// Stop: drop every pending task of this core's partitions and exit.
    Shutdown,
}

/// What a core's peers may touch.
pub(crate) struct Remote {
    pub(crate) index: usize,
    /// The driver's door: ring requests, and the unparker.
    door: Arc<Door>,
    /// Partitions that received foreign work since the core last looked.
    pub(crate) pending: Injector<Arc<PartitionInner>>,
    control: Sender<Control>,
    /// A latency partition received foreign work: look between polls.
    pub(crate) latency_pending: AtomicBool,
    pub(crate) stats: Arc<CoreStats>,
    pub(crate) reserved_for: Option<String>,
    /// The sockets registered with this core's `mio::Poll`.
    pub(crate) registrations: Arc<Registrations>,
    /// Set, under the lock, when the core has finished shutting down; see
    /// [`Remote::send_adoption`].
    pub(crate) exited: Mutex<bool>,
    /// The core's busiest partitions, most busy first, as it last published
    /// them (every 10 ms).
    pub(crate) leaders: Mutex<Vec<Weak<PartitionInner>>>,
    /// With `Builder::tokio_compat`: the handle of the tokio runtime the
    /// core drives, entered by the `spawn_blocking` closures of its
    /// partitions (so tokio calls work there as in its tasks).
    #[cfg(feature = "tokio-compat")]
    pub(crate) tokio: std::sync::OnceLock<tokio::runtime::Handle>,
}

impl Remote {
    /// The remote side of core `index`, whose driver will run `poll`, and
    /// the receiving end of its control channel.
    pub(crate) fn new(
        index: usize,
        poll: &mio::Poll,
        reserved_for: Option<String>,
    ) -> io::Result<(Remote, Receiver<Control>)> {
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let remote = Remote {
            index,
            door: Arc::new(Door::new(Unparker::new(waker))),
            pending: Injector::new(),
            control: tx,
            latency_pending: AtomicBool::new(false),
            stats: Arc::new(CoreStats::default()),
            reserved_for,
            registrations: Arc::new(Registrations::new(poll.registry().try_clone()?)),
            exited: Mutex::new(false),
            leaders: Mutex::new(Vec::new()),
            #[cfg(feature = "tokio-compat")]
            tokio: std::sync::OnceLock::new(),
        };
        Ok((remote, rx))
    }

    /// What the core's ring is built with: the door its operations hold,
    /// the core's counters, and the streams' linger time.
    pub(crate) fn ring_owner(&self, stream_linger: Duration) -> RingOwner {
        RingOwner {
            door: self.door.clone(),
            stats: self.stats.clone(),
            stream_linger,
        }
    }

    /// Wakes the core if it is parked (see [`crate::park`]). Call after
    /// making work visible to it.
    #[inline]
    pub(crate) fn unpark(&self) {
        self.door.unparker().unpark();
    }

    /// Whether ring requests wait (the core checks before it parks).
    #[inline]
    pub(crate) fn has_requests(&self) -> bool {
        self.door.has_requests()
    }

    /// The ring requests made since the last call.
    pub(crate) fn take_requests(&self) -> Vec<RingRequest> {
        self.door.take_requests()
    }

    #[inline]
    pub(crate) fn park_flag(&self) -> &ParkFlag {
        self.door.unparker().flag()
    }

    /// Recent busy fraction, 0 while the core sleeps.
    pub(crate) fn load(&self) -> f64 {
        if self.park_flag().is_parked() {
            0.0
        } else {
            self.stats.load()
        }
    }

    /// Recent count of partitions wanting the CPU, 0 while the core sleeps.
    pub(crate) fn demand(&self) -> f64 {
        if self.park_flag().is_parked() {
            0.0
        } else {
            self.stats.demand()
        }
    }

    /// Sends a message that carries nothing the core must take care of
    /// (it is dropped if the core has exited).
    pub(crate) fn send(&self, msg: Control) {
        if self.control.send(msg).is_ok() {
            self.unpark();
        }
    }

    /// Sends an adoption, or gives it back if the core has finished its
    /// shutdown: a partition's tasks must never land in a channel nobody
    /// reads. The lock pairs with the exiting core's last look at its
    /// channel.
    pub(crate) fn send_adoption(&self, msg: Control) -> Result<(), Control> {
        let exited = self.exited.lock();
        if *exited {
            return Err(msg);
        }
        match self.control.send(msg) {
            Ok(()) => {
                drop(exited);
                self.unpark();
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
}
