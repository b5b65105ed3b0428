//! Waiting for SIGINT (Ctrl-C) and SIGTERM: [`ctrl_c`], [`terminate`], and
//! [`Signal`] for a listener that outlives one delivery.
//!
//! ## The model
//!
//! Signals belong to the process, not to a runtime, a core or a task. The
//! first time fairloop is asked to wait for a signal (the first poll of
//! [`ctrl_c()`] or [`terminate()`], or [`Signal::new`]), it installs a
//! handler for that signal, through `signal-hook-registry` (so handlers
//! that other libraries install through it keep working), and, once per
//! process, starts a thread named `fairloop-signal`.
//!
//! * **The signal no longer ends the process**, from that first wait until
//!   the process exits, even when nobody waits any more: a delivery that
//!   finds no waiter is ignored. Before the first wait, the signal has its
//!   default effect (SIGINT and SIGTERM end the process).
//! * **The handler only counts.** It adds one to the signal's delivery
//!   count (an atomic) and writes a byte to a socket pair; both are
//!   async-signal-safe. The `fairloop-signal` thread sleeps in `read` on
//!   the other end (no polling), and on each byte wakes every waiter of
//!   each signal whose count changed.
//! * **Any thread, any executor.** Wakers work from any thread, so a waiter
//!   may be a task on any core of any runtime, a future in a
//!   `spawn_blocking` closure, or a future driven by another executor on a
//!   thread fairloop does not run (`futures_lite::future::block_on` in
//!   `main`, say). Nothing here needs a runtime.
//!
//! ## Which deliveries a waiter sees
//!
//! A [`Signal`] sees the deliveries whose handler runs after it was
//! created: [`Signal::recv`] resolves once for each change of the count
//! since the last `recv` that resolved (or since `new`), so several
//! deliveries in between resolve one `recv`, and none is seen twice.
//! [`ctrl_c()`] and [`terminate()`] create a `Signal` when first polled and
//! resolve with its first `recv`: they see the first delivery after their
//! first poll, and none before it. So every waiter that is pending when a
//! signal is delivered sees that delivery; one that starts waiting after it
//! does not. The kernel keeps at most one pending instance of a standard
//! signal, so deliveries close together may reach the process as one: a
//! resolved `recv` means "at least one delivery".
//!
//! To make sure a signal cannot end the process before the program is
//! ready for it (a server announcing its address, say), create the
//! [`Signal`] first: its handler is installed when `new` returns.
//!
//! ```no_run
//! use fairloop_runtime::signal::{Signal, SignalKind};
//!
//! # fn main() -> std::io::Result<()> {
//! let rt = fairloop_runtime::Runtime::builder().build()?;
//! let mut term = Signal::new(SignalKind::Terminate)?; // SIGTERM is ours now
//! println!("ready");
//! rt.block_on(async move { term.recv().await });
//! let report = rt.shutdown_graceful(std::time::Duration::from_secs(10));
//! println!("{} tasks finished, {} cancelled", report.completed, report.cancelled);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

mod dispatch;

/// The signals fairloop can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignalKind {
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
    /// `SIGTERM`: the polite request to stop (`kill`, systemd, Kubernetes,
    /// Docker).
    Terminate,
}

impl fmt::Display for SignalKind {
    /// `SIGINT` or `SIGTERM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignalKind::Interrupt => "SIGINT",
            SignalKind::Terminate => "SIGTERM",
        })
    }
}

impl SignalKind {
    /// The signal's number (`libc::SIGINT`, `libc::SIGTERM`).
    pub fn number(self) -> i32 {
        match self {
            SignalKind::Interrupt => libc::SIGINT,
            SignalKind::Terminate => libc::SIGTERM,
        }
    }

    /// Index into the per-signal tables of `dispatch`.
    fn index(self) -> usize {
        match self {
            SignalKind::Interrupt => 0,
            SignalKind::Terminate => 1,
        }
    }
}

/// Resolves on the first SIGINT (Ctrl-C) delivered after its first poll.
///
/// From its first poll on, SIGINT no longer ends the process (see the
/// [module docs](self) for the model and for which deliveries it sees).
/// Works in any task on any core, in `spawn_blocking` closures, and
/// outside a runtime under any executor.
///
/// # Errors
/// When the handler cannot be installed or the `fairloop-signal` thread
/// cannot start (out of file descriptors or threads); the error says which.
pub async fn ctrl_c() -> io::Result<()> {
    Signal::new(SignalKind::Interrupt)?.recv().await;
    Ok(())
}

/// Resolves on the first SIGTERM delivered after its first poll.
///
/// From its first poll on, SIGTERM no longer ends the process (see the
/// [module docs](self) for the model and for which deliveries it sees).
/// Works in any task on any core, in `spawn_blocking` closures, and
/// outside a runtime under any executor.
///
/// # Errors
/// When the handler cannot be installed or the `fairloop-signal` thread
/// cannot start (out of file descriptors or threads); the error says which.
pub async fn terminate() -> io::Result<()> {
    Signal::new(SignalKind::Terminate)?.recv().await;
    Ok(())
}

/// A listener for one signal, which sees every delivery after its
/// creation (see the [module docs](self)).
pub struct Signal {
    kind: SignalKind,
    /// The signal's delivery count when this listener last resolved a
    /// `recv` (or was created).
    seen: usize,
}

impl Signal {
    /// Starts listening for `kind`: when this returns, the signal's handler
    /// is installed (the signal no longer ends the process), and every
    /// later delivery is seen by [`recv`](Signal::recv).
    ///
    /// # Errors
    /// When the handler cannot be installed or the `fairloop-signal` thread
    /// cannot start (out of file descriptors or threads); the error says
    /// which.
    pub fn new(kind: SignalKind) -> io::Result<Signal> {
        dispatch::listen(kind)?;
        Ok(Signal {
            kind,
            seen: dispatch::count(kind),
        })
    }

    /// The signal this listens for.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Waits for a delivery this listener has not seen: resolves at once if
    /// the signal was delivered since the last `recv` resolved (or since
    /// [`new`](Signal::new)), otherwise at the next delivery.
    pub fn recv(&mut self) -> Recv<'_> {
        Recv {
            signal: self,
            key: None,
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal").field("kind", &self.kind).finish()
    }
}

/// The future of [`Signal::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a> {
    signal: &'a mut Signal,
    /// This future's place among the signal's waiters.
    key: Option<usize>,
}

impl Recv<'_> {
    /// Whether the signal was delivered since the listener last saw it;
    /// if so, it has seen it now.
    fn take_delivery(&mut self) -> bool {
        let now = dispatch::count(self.signal.kind);
        if now == self.signal.seen {
            return false;
        }
        self.signal.seen = now;
        true
    }
}

impl Future for Recv<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let waiters = dispatch::waiters(this.signal.kind);
        if !this.take_delivery() {
            waiters.register(&mut this.key, cx.waker());
            if !this.take_delivery() {
                return Poll::Pending;
            }
        }
        waiters.remove(&mut this.key);
        Poll::Ready(())
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        dispatch::waiters(self.signal.kind).remove(&mut self.key);
    }
}

/// Listeners for the two signals that ask a service to stop, SIGTERM (an
/// orchestrator's rolling update) and SIGINT (Ctrl-C), as one: what a
/// service's `main` waits on before [`Runtime::shutdown_graceful`].
///
/// Made early (before the service says it is ready), so that from then on
/// neither signal ends the process; [`recv`](StopSignals::recv) then
/// resolves on the next delivery of either and says which.
///
/// [`Runtime::shutdown_graceful`]: crate::Runtime::shutdown_graceful
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use fairloop_runtime::signal::StopSignals;
///
/// let mut stop = StopSignals::new()?;
/// // ... start serving ...
/// let which = futures_lite::future::block_on(stop.recv());
/// println!("{which:?}: draining");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Starts listening for SIGTERM and SIGINT (see [`Signal::new`]).
    ///
    /// # Errors
    /// As [`Signal::new`].
    pub fn new() -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: Signal::new(SignalKind::Terminate)?,
            int: Signal::new(SignalKind::Interrupt)?,
        })
    }

    /// Resolves on the next delivery of SIGTERM or SIGINT and says which
    /// (SIGTERM when both came).
    pub async fn recv(&mut self) -> SignalKind {
        let StopSignals { term, int } = self;
        futures_lite::future::or(
            async {
                term.recv().await;
                SignalKind::Terminate
            },
            async {
                int.recv().await;
                SignalKind::Interrupt
            },
        )
        .await
    }
}

impl fmt::Debug for Recv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("kind", &self.signal.kind)
            .finish()
    }
}
