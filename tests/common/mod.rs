//! Helpers shared by the integration tests: a time bound for every test,
//! runtime construction, drop counters and small synchronisation futures.
#![allow(dead_code)]

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use fairloop::Runtime;

/// Runs `f` on its own thread and waits at most `secs` seconds for it.
///
/// A panic in `f` is resumed on the caller. If `f` does not finish in time,
/// panics with the test's name (the name of the calling thread, which the
/// test harness sets to the test's path), leaving the stuck thread behind.
#[track_caller]
pub fn with_timeout<F, R>(secs: u64, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let name = thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("{name} (body)"))
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(result);
        })
        .expect("spawn the test body's thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => resume_unwind(payload),
        Err(RecvTimeoutError::Timeout) => {
            panic!("TIMEOUT: test `{name}` did not finish within {secs} s (hang?)")
        }
        Err(RecvTimeoutError::Disconnected) => {
            panic!("test `{name}`: its body's thread died without reporting")
        }
    }
}

/// A runtime with `cores` unpinned cores (CI machines have 2 CPUs and run
/// tests in parallel).
pub fn rt(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .pin_cores(false)
        .build()
        .expect("build a runtime")
}

/// Counts its own destruction.
pub struct DropGuard(Arc<AtomicUsize>);

impl DropGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> Self {
        DropGuard(counter.clone())
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Spins (sleeping 1 ms between looks) until `cond` holds; panics with
/// `what` after `limit`.
#[track_caller]
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            panic!("gave up after {limit:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Inside a task: sleeps 1 ms at a time until `cond` holds; panics with
/// `what` after `limit`.
pub async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            panic!("gave up after {limit:?} waiting for: {what}");
        }
        fairloop::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A one-shot, many-waiter signal usable from any thread: `wait()` is a
/// future that completes once `set()` was called.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Arc<SignalInner>,
}

#[derive(Default)]
struct SignalInner {
    set: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Signal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self) {
        self.inner.set.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.inner.wakers.lock().unwrap());
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.load(Ordering::SeqCst)
    }

    pub fn wait(&self) -> SignalWait {
        SignalWait {
            inner: self.inner.clone(),
        }
    }
}

pub struct SignalWait {
    inner: Arc<SignalInner>,
}

impl Future for SignalWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.set.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        self.inner.wakers.lock().unwrap().push(cx.waker().clone());
        if self.inner.set.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The message of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}
