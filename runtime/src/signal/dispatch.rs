//! The process-wide half of [`crate::signal`]: the handlers, the delivery
//! counts, the socket pair, and the `fairloop-signal` thread that wakes the
//! waiters.
//!
//! Nothing here knows of runtimes: a waiter is a waker.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use super::SignalKind;
use crate::notify::Waiters;

/// The signals, in the order of [`SignalKind::index`].
const KINDS: [SignalKind; 2] = [SignalKind::Interrupt, SignalKind::Terminate];

/// Per signal, how many times its handler has run. Only the handler writes
/// it; wrapping after 2^64 deliveries is harmless (waiters compare for
/// equality).
static COUNTS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Per signal, the futures waiting for its next delivery.
static WAITERS: [Waiters; 2] = [Waiters::new(), Waiters::new()];

/// What has been set up so far, under a lock (only `listen` takes it).
static SETUP: Mutex<Setup> = Mutex::new(Setup {
    writer: None,
    installed: [false; 2],
});

struct Setup {
    /// The socket the handlers write to, once the thread runs. Leaked: the
    /// handlers may run at any time until the process exits.
    writer: Option<&'static UnixStream>,
    /// Per signal, whether its handler is installed.
    installed: [bool; 2],
}

/// How many times `kind` has been delivered since its handler was
/// installed.
pub(super) fn count(kind: SignalKind) -> usize {
    COUNTS[kind.index()].load(Ordering::SeqCst)
}

/// The waiters of `kind`.
pub(super) fn waiters(kind: SignalKind) -> &'static Waiters {
    &WAITERS[kind.index()]
}

/// Makes sure `kind`'s handler is installed and the `fairloop-signal`
/// thread runs. Cheap after the first call for `kind`.
pub(super) fn listen(kind: SignalKind) -> io::Result<()> {
    let mut setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
    let i = kind.index();
    if setup.installed[i] {
        return Ok(());
    }
    let writer = match setup.writer {
        Some(w) => w,
        None => {
            let w = start_thread()?;
            setup.writer = Some(w);
            w
        }
    };
    let handler = move || {
        COUNTS[i].fetch_add(1, Ordering::SeqCst);
        // The socket is non-blocking: when it is full, the thread has
        // bytes to read already and will see the new count.
        let _ = rustix::io::write(writer, &[i as u8]);
    };
    // SAFETY: `register` requires the action to be async-signal-safe.
    // `handler` does an atomic add on a static (lock-free: `AtomicUsize`
    // exists only where the target has native atomics of that size) and one
    // `write(2)` through rustix on a socket that is never closed (leaked
    // above): no allocation, no lock, no panic path. `signal-hook-registry`
    // saves and restores `errno` around its actions.
    unsafe { signal_hook_registry::register(kind.number(), handler) }.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "fairloop::signal: installing the handler for {} failed: {e}",
                name(kind)
            ),
        )
    })?;
    setup.installed[i] = true;
    Ok(())
}

/// Starts the `fairloop-signal` thread; returns the socket the handlers
/// write to.
fn start_thread() -> io::Result<&'static UnixStream> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("fairloop::signal: {what} failed: {e}; free some file descriptors or threads and wait again"),
        )
    };
    let (writer, reader) =
        UnixStream::pair().map_err(|e| context("creating the signal socket pair", e))?;
    writer
        .set_nonblocking(true)
        .map_err(|e| context("making the signal socket non-blocking", e))?;
    thread::Builder::new()
        .name("fairloop-signal".into())
        .spawn(move || dispatch(reader))
        .map_err(|e| context("starting the fairloop-signal thread", e))?;
    Ok(Box::leak(Box::new(writer)))
}

/// The body of the `fairloop-signal` thread: sleeps until a handler writes,
/// then wakes the waiters of every signal whose count changed.
fn dispatch(mut reader: UnixStream) {
    // The counts when the thread was started: zero, as no handler is
    // installed before the thread is (the first `listen` starts it).
    let mut last = [0usize; 2];
    let mut buf = [0u8; 64];
    loop {
        match reader.read(&mut buf) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // End of file or an error: not expected of a socket pair whose
            // writing end is never closed. Never spin on it; the waiters are
            // still woken below, as they would be after a byte.
            _ => thread::sleep(Duration::from_millis(10)),
        }
        for (l, kind) in last.iter_mut().zip(KINDS) {
            let now = count(kind);
            if now != *l {
                *l = now;
                waiters(kind).wake_all();
            }
        }
    }
}

fn name(kind: SignalKind) -> &'static str {
    match kind {
        SignalKind::Interrupt => "SIGINT",
        SignalKind::Terminate => "SIGTERM",
    }
}
