//! Sockets for fairloop, registered with the reactor of the core whose
//! partition uses them.
//!
//! This crate is the home of `fairloop::net` (TCP, UDP and Unix sockets,
//! `SO_REUSEPORT` sharded listeners). It re-exports nothing yet: the socket
//! types arrive with the networking work, and until then the facade's
//! `fairloop::net` module is empty rather than offering sockets that do not
//! work.

#![warn(missing_docs)]

pub use fairloop_runtime as runtime;
