//! The seam between std's synchronisation primitives and `loom`'s
//! model-checked ones.
//!
//! Code whose correctness hinges on memory ordering (the park/unpark
//! protocol in [`crate::park`], a partition's wake routing in
//! [`crate::partition::route`], the ring's request queue in
//! [`crate::driver::requests`]) imports its atomics and locks from here. A normal
//! build gets `std`; a build with `RUSTFLAGS="--cfg loom"` gets `loom`, whose
//! `loom::model` explores every interleaving of the protocol's threads.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Explores every interleaving of `f`'s threads up to three preemptions,
/// the bound every model in the crate uses (enough for the protocols'
/// races, small enough for CI).
#[cfg(all(test, loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}
