//! The errors and panics every layer reports the same way.
//!
//! Bad input is an `io::Error` of kind `InvalidInput` whose message names
//! the setting and says what is accepted; calling a runtime function where
//! no runtime runs is a panic whose message says where to call it from.

use std::io;

/// An `InvalidInput` error with `msg`, which should name the bad value and
/// say what is accepted.
pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// Panics for `what`, called on a thread that no fairloop runtime runs.
#[cold]
#[track_caller]
pub(crate) fn outside_runtime(what: &str) -> ! {
    panic!(
        "{what} called outside a fairloop runtime: call it from a task (inside Runtime::block_on, \
         Runtime::spawn, ...) or from a spawn_blocking closure"
    )
}

/// Panics for a future (`what`) polled off a core thread.
#[cold]
#[track_caller]
pub(crate) fn outside_core(what: &str) -> ! {
    panic!(
        "{what} polled outside a fairloop runtime's core threads: it must be awaited by a task \
         of a fairloop runtime (not outside a runtime, nor inside a spawn_blocking closure)"
    )
}
