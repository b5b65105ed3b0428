//! The seam between std's synchronisation primitives and `loom`'s
//! model-checked ones.
//!
//! Code whose correctness hinges on memory ordering (the park/unpark
//! protocol in [`crate::park`]) imports its atomics from here. A normal build
//! gets `std`; a build with `RUSTFLAGS="--cfg loom"` gets `loom`, whose
//! `loom::model` explores every interleaving of the protocol's threads.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};
