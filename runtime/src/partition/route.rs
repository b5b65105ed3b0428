//! Where a partition's wakes go: its owner, whether it is moving, and
//! whether its owner has been told about foreign work.
//!
//! A [`Route`] is the part of a partition that every thread reads and the
//! migration protocol changes, kept apart so that the `loom` models run
//! these very methods:
//!
//! * **Announcing** (producer side, [`Route::announce`]): after pushing a
//!   task onto the partition's injection queue, a producer swaps the
//!   `announced` flag; only the first of a batch announces the partition
//!   to its owner (pushes it onto the owner's pending queue and unparks
//!   it). The swap is `AcqRel`, so the push is visible to whoever clears
//!   the flag.
//! * **Taking an announcement** (owner side, [`Route::take_announcement`]):
//!   the core clears the flag *before* it drains the injection queue, so a
//!   push racing the drain announces the partition again, and decides by
//!   the route what to do: drain, pass the announcement on to the new
//!   owner, or leave the work for the adoption of a partition in transit.
//! * **Moving** ([`Route::begin_transit`], [`Route::end_transit`],
//!   [`Route::cancel_transit`]): only the owning core moves a partition,
//!   between turns. It marks the partition in transit, then makes the
//!   target its owner, so from then on every wake goes to the target, which
//!   leaves the work queued until it adopts the partition and ends the
//!   transit.
//!
//! The models (in `reactor/migrate.rs` and `park.rs`) check that no wake is
//! lost and no task is queued on two cores, with a racing foreign wake and
//! with a racing shutdown.

use crate::loom::{AtomicBool, AtomicUsize, Ordering};

/// What an owner does with a partition's announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Announcement {
    /// It owns the partition: move its injected work into the scheduler.
    Drain,
    /// The partition moved on after the announcement: announce it to its
    /// new owner.
    PassOn,
    /// The partition is on its way to this core: its adoption drains it.
    InTransit,
}

/// A partition's routing state: see the module docs.
#[derive(Debug)]
pub(crate) struct Route {
    /// The core whose scheduler runs the partition's tasks.
    owner: AtomicUsize,
    /// Set between a core giving the partition up and its new owner
    /// adopting it.
    transit: AtomicBool,
    /// Whether the partition sits in its owner's pending queue.
    announced: AtomicBool,
}

impl Route {
    /// The route of a partition owned by `core`.
    pub(crate) fn new(core: usize) -> Self {
        Route {
            owner: AtomicUsize::new(core),
            transit: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        }
    }

    /// The core that owns the partition now (or will, once in transit).
    #[inline]
    pub(crate) fn owner(&self) -> usize {
        self.owner.load(Ordering::Acquire)
    }

    /// Whether the partition is between two cores.
    #[inline]
    pub(crate) fn in_transit(&self) -> bool {
        self.transit.load(Ordering::Acquire)
    }

    /// Producer side, after a push onto the injection queue: the core to
    /// announce the partition to, or `None` if an announcement is already
    /// pending (the owner will drain this push with it).
    #[inline]
    pub(crate) fn announce(&self) -> Option<usize> {
        if self.announced.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(self.owner())
    }

    /// Owner side, for an announcement core `me` took from its pending
    /// queue: clears the flag (before any drain), then says what to do.
    #[inline]
    pub(crate) fn take_announcement(&self, me: usize) -> Announcement {
        self.announced.swap(false, Ordering::AcqRel);
        if self.owner() != me {
            Announcement::PassOn
        } else if self.in_transit() {
            Announcement::InTransit
        } else {
            Announcement::Drain
        }
    }

    /// The owner gives the partition to core `to`: in transit first, then
    /// `to` becomes the owner, so every wake from now on goes there.
    pub(crate) fn begin_transit(&self, to: usize) {
        self.transit.store(true, Ordering::Release);
        self.owner.store(to, Ordering::Release);
    }

    /// The target could not take the partition (it has exited): it stays
    /// with `back`, its previous owner.
    pub(crate) fn cancel_transit(&self, back: usize) {
        self.owner.store(back, Ordering::Release);
        self.transit.store(false, Ordering::Release);
    }

    /// The new owner has adopted the partition; it drains the injection
    /// queue next.
    pub(crate) fn end_transit(&self) {
        self.transit.store(false, Ordering::Release);
    }
}
