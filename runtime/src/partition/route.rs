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
//! The models (in `reactor/migrate.rs`, `park.rs` and below) check that
//! no wake is lost and no task is queued on two cores, with a racing
//! foreign wake and with a racing shutdown, and that a share change racing
//! a migration reaches the partition's new owner.

use crate::loom::{AtomicBool, AtomicUsize, Ordering};

/// Where a partition is, as seen by one core: what that core does with an
/// announcement of it, or with a change to it, that reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// This core owns it: drain its injected work, apply the change.
    Here,
    /// It moved on since the message was sent: pass the message on to its
    /// owner now.
    Elsewhere(usize),
    /// It is on its way to this core: the adoption drains its work and
    /// reads its settings.
    Arriving,
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
    /// queue: clears the flag (before any drain), then says where the
    /// partition is.
    #[inline]
    pub(crate) fn take_announcement(&self, me: usize) -> Holder {
        self.announced.swap(false, Ordering::AcqRel);
        self.holder(me)
    }

    /// Where the partition is, as seen by core `me`.
    #[inline]
    pub(crate) fn holder(&self, me: usize) -> Holder {
        match self.owner() {
            owner if owner != me => Holder::Elsewhere(owner),
            _ if self.in_transit() => Holder::Arriving,
            _ => Holder::Here,
        }
    }

    /// What core `me` does with a change to the partition's settings (its
    /// shares) that reached it: `apply` it if it holds the partition,
    /// `forward` it to the owner if the partition moved on since the
    /// change was sent (dropping it there would lose it: the new owner may
    /// have read the settings before the change was made), and nothing if
    /// the partition is on its way here (its adoption reads the settings
    /// after the change).
    pub(crate) fn route_change(
        &self,
        me: usize,
        apply: impl FnOnce(),
        forward: impl FnOnce(usize),
    ) {
        match self.holder(me) {
            Holder::Here => apply(),
            Holder::Elsewhere(owner) => forward(owner),
            Holder::Arriving => {}
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

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairloop-runtime --lib --release loom`
    use loom::sync::atomic::{AtomicU32, Ordering};
    use loom::sync::mpsc::{channel, Sender};
    use loom::sync::Arc;
    use loom::thread;

    use super::Route;

    const A: usize = 0;
    const B: usize = 1;

    enum Msg {
        Adopt,
        SetShares,
        Done,
    }

    /// Sends `msg` to core `core`'s mailbox.
    fn send(core: usize, to_a: &Sender<Msg>, to_b: &Sender<Msg>, msg: Msg) {
        match core {
            A => to_a.send(msg).unwrap(),
            _ => to_b.send(msg).unwrap(),
        }
    }

    /// `Partition::set_shares` racing a migration from core A to core B: a
    /// setter stores the new shares and sends the change to the owner it
    /// reads (A or B); A gives the partition to B (`Reactor::migrate`); each
    /// core handles the change with the real `Route::route_change`, as
    /// `Reactor::apply_shares` does, and B reads the shares when it adopts.
    /// B's scheduler must end with the new shares. (Dropping the change at
    /// A, once it no longer owned the partition, lost it whenever B's
    /// adoption read the shares before the store reached it.)
    #[test]
    fn a_share_change_racing_a_migration_reaches_the_new_owner() {
        crate::loom::model(|| {
            let route = Arc::new(Route::new(A));
            let shares = Arc::new(AtomicU32::new(100));
            let (to_a, at_a) = channel::<Msg>();
            let (to_b, at_b) = channel::<Msg>();

            let setter = {
                let (route, shares) = (route.clone(), shares.clone());
                let (to_a, to_b) = (to_a.clone(), to_b.clone());
                thread::spawn(move || {
                    shares.store(300, Ordering::Release);
                    send(route.owner(), &to_a, &to_b, Msg::SetShares);
                })
            };
            let core_b = {
                let (route, shares) = (route.clone(), shares.clone());
                let (to_a, to_b) = (to_a.clone(), to_b.clone());
                thread::spawn(move || {
                    let mut applied = None;
                    loop {
                        match at_b.recv().unwrap() {
                            Msg::Adopt => {
                                route.end_transit();
                                applied = Some(shares.load(Ordering::Acquire));
                            }
                            Msg::SetShares => route.route_change(
                                B,
                                || applied = Some(shares.load(Ordering::Acquire)),
                                |owner| send(owner, &to_a, &to_b, Msg::SetShares),
                            ),
                            Msg::Done => return applied,
                        }
                    }
                })
            };
            let core_a = {
                let route = route.clone();
                let (to_a, to_b) = (to_a.clone(), to_b.clone());
                thread::spawn(move || {
                    route.begin_transit(B);
                    to_b.send(Msg::Adopt).unwrap();
                    loop {
                        match at_a.recv().unwrap() {
                            Msg::SetShares => route.route_change(
                                A,
                                || unreachable!("A gave the partition away first"),
                                |owner| send(owner, &to_a, &to_b, Msg::SetShares),
                            ),
                            Msg::Done => {
                                to_b.send(Msg::Done).unwrap();
                                return;
                            }
                            Msg::Adopt => unreachable!("nothing moves to A"),
                        }
                    }
                })
            };
            setter.join().unwrap();
            to_a.send(Msg::Done).unwrap();
            core_a.join().unwrap();
            let applied = core_b.join().unwrap();
            assert_eq!(applied, Some(300), "B's scheduler must have the new shares");
        });
    }
}
