//! hyper 1.x on fairloop: an [executor](FairloopExecutor) and a
//! [timer](FairloopTimer) for hyper's `rt` traits (feature `hyper`).
//!
//! With this feature [`TcpStream`](crate::TcpStream) and
//! [`UnixStream`](crate::UnixStream) implement `hyper::rt::Read` and
//! `hyper::rt::Write` themselves, so a connection goes to hyper as it is
//! (no `TokioIo` adapter, though that works too with the `tokio` feature).
//!
//! ```ignore
//! // (hyper with its `server` and `http1` features; the repository's
//! // examples/hyper_server.rs is a whole server)
//! use fairloop::net::hyper::FairloopTimer;
//! let (stream, _) = listener.accept().await?;
//! hyper::server::conn::http1::Builder::new()
//!     .timer(FairloopTimer::new())
//!     .serve_connection(stream, service_fn(hello))
//!     .await?;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fairloop_runtime::partition::Partition;
use fairloop_runtime::time::{sleep, sleep_until, Sleep};

/// Runs the futures hyper spawns (HTTP/2 streams, connection tasks of
/// hyper-util's servers) as fairloop tasks, detached.
///
/// [`new`](FairloopExecutor::new) spawns into the partition of the task
/// that calls `execute` (hyper calls it from the connection's task, so a
/// connection's streams stay in its partition);
/// [`in_partition`](FairloopExecutor::in_partition) into a given one.
///
/// # Panics
/// `execute` from [`new`](FairloopExecutor::new) panics when called from a
/// thread that no fairloop runtime runs, as `fairloop::spawn` does (hyper
/// calls it only while a connection is polled, that is from a task).
#[derive(Clone, Default)]
pub struct FairloopExecutor {
    partition: Option<Partition>,
}

impl FairloopExecutor {
    /// An executor that spawns into the caller's partition.
    pub fn new() -> Self {
        FairloopExecutor { partition: None }
    }

    /// An executor that spawns into `partition`, wherever it is called
    /// from.
    pub fn in_partition(partition: Partition) -> Self {
        FairloopExecutor {
            partition: Some(partition),
        }
    }
}

impl<Fut> hyper::rt::Executor<Fut> for FairloopExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        match &self.partition {
            Some(p) => p.spawn(fut).detach(),
            None => fairloop_runtime::spawn(fut).detach(),
        }
    }
}

impl fmt::Debug for FairloopExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairloopExecutor")
            .field("partition", &self.partition.as_ref().map(Partition::id))
            .finish()
    }
}

/// hyper's timer (header-read and keep-alive timeouts) on fairloop's
/// per-core timers: a sleep is a [`fairloop::time::Sleep`](Sleep), so it
/// wakes its task in the task's own partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct FairloopTimer {
    _private: (),
}

impl FairloopTimer {
    /// The timer.
    pub fn new() -> Self {
        FairloopTimer { _private: () }
    }
}

impl hyper::rt::Timer for FairloopTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut s) => s.0.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A fairloop [`Sleep`] as a `hyper::rt::Sleep` (fairloop's `Sleep` is
/// `Send + Sync + Unpin`).
struct HyperSleep(Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}
