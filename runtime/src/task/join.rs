//! The user's side of a task: [`JoinHandle`] and the [`JoinError`] a join
//! reports.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use super::TaskMeta;

/// An owned permission to await a task's output.
///
/// `JoinHandle<T>` is a `Future<Output = Result<T, JoinError>>`. Dropping it
/// *detaches* the task (it keeps running); [`abort`](JoinHandle::abort)
/// cancels it at its next poll. If the runtime shuts down first, or the
/// task was spawned after shutdown began, the join reports a [`JoinError`]
/// that [`is_cancelled`](JoinError::is_cancelled).
#[must_use = "a JoinHandle detaches its task when dropped; call .detach() to say so"]
pub struct JoinHandle<T> {
    task: Option<async_task::Task<Result<T, JoinError>, TaskMeta>>,
    /// Set instead of `task` when spawning was refused outright.
    refused: Option<JoinError>,
}

impl<T> JoinHandle<T> {
    pub(super) fn from_task(task: async_task::Task<Result<T, JoinError>, TaskMeta>) -> Self {
        JoinHandle {
            task: Some(task),
            refused: None,
        }
    }

    /// A handle whose join fails at once with `error`.
    pub(crate) fn refused(error: JoinError) -> Self {
        JoinHandle {
            task: None,
            refused: Some(error),
        }
    }

    /// Cancels the task: its future is dropped at its next poll, and a join
    /// reports [`JoinError::is_cancelled`]. Does nothing if the task already
    /// finished. Safe to call from any thread, any number of times.
    pub fn abort(&self) {
        if let Some(task) = &self.task {
            task.metadata().abort();
        }
    }

    /// Whether the task has finished (completed, panicked or been
    /// cancelled); awaiting the handle then does not wait.
    pub fn is_finished(&self) -> bool {
        match &self.task {
            Some(t) => t.is_finished(),
            None => true,
        }
    }

    /// Lets the task run to completion with nobody waiting for it (the same
    /// as dropping the handle, but says so).
    pub fn detach(mut self) {
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.task {
            // Every task completes with an output: cancellation goes through
            // `cancel_now`, never through dropping a `Runnable`.
            Some(task) => match Pin::new(task).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    this.task = None;
                    Poll::Ready(result)
                }
            },
            None => match this.refused.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => panic!("JoinHandle polled after it returned Ready"),
            },
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a task was cancelled.
#[derive(Debug, Clone)]
pub(crate) enum Cancelled {
    Aborted,
    Shutdown,
    Refused(String),
}

enum Repr {
    Cancelled(Cancelled),
    // A Mutex makes the `Send` payload `Sync`, so `JoinError` can travel in
    // `io::Error` and across threads.
    Panic(Mutex<Box<dyn Any + Send + 'static>>),
}

/// Why awaiting a [`JoinHandle`] gave no value: the task panicked, or it was
/// cancelled (aborted, or dropped by a runtime shutdown).
pub struct JoinError {
    repr: Repr,
}

impl JoinError {
    pub(crate) fn cancelled(why: Cancelled) -> Self {
        JoinError {
            repr: Repr::Cancelled(why),
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        JoinError {
            repr: Repr::Panic(Mutex::new(payload)),
        }
    }

    /// The task panicked; [`into_panic`](JoinError::into_panic) returns the
    /// payload.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The task was aborted, dropped by runtime shutdown, or never started
    /// because spawning was refused.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled(_))
    }

    /// The panic payload, for `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the error is not a panic ([`is_panic`](JoinError::is_panic) is false).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .unwrap_or_else(|e| panic!("JoinError::into_panic on a non-panic error: {e}"))
    }

    /// The panic payload, or the error back if it is not a panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p.into_inner()),
            repr => Err(JoinError { repr }),
        }
    }

    fn panic_message(&self) -> Option<String> {
        match &self.repr {
            Repr::Panic(p) => {
                let p = p.lock();
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
            }
            Repr::Cancelled(_) => None,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled(Cancelled::Aborted) => f.write_str("task was aborted"),
            Repr::Cancelled(Cancelled::Shutdown) => {
                f.write_str("task was cancelled: its runtime shut down before it completed")
            }
            Repr::Cancelled(Cancelled::Refused(why)) => write!(f, "task was not started: {why}"),
            Repr::Panic(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled(why) => f.debug_tuple("JoinError::Cancelled").field(why).finish(),
            Repr::Panic(_) => f
                .debug_tuple("JoinError::Panic")
                .field(&self.panic_message())
                .finish(),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> Self {
        std::io::Error::other(e)
    }
}
