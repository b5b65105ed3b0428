//! `fairloop::signal`: SIGINT and SIGTERM as futures.
//!
//! Signals belong to the process, so these tests live in a binary of their
//! own and take one lock each (`SIGNALS`): a delivery meant for one test
//! can never be seen by another. They send signals to this very process,
//! which survives them because a waiter has installed the handler first;
//! the tests that need a signal's default action (the process dying) run a
//! child process: this binary again, running only `child`.

mod common;

use std::io::{BufRead, BufReader};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use common::{rt, wait_until, with_timeout};
use fairloop::signal::{self, Signal, SignalKind, StopSignals};
use futures_lite::future::{block_on, poll_once};
use rustix::process::{getpid, kill_process, Pid, Signal as Sig};

const T: u64 = 30;

/// Held by every test that sends or waits for a signal.
static SIGNALS: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SIGNALS.lock().unwrap_or_else(|e| e.into_inner())
}

fn raise(sig: Sig) {
    kill_process(getpid(), sig).expect("kill(getpid())");
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn get(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

/// A task body: registers with `terminate()` (its first poll), says so,
/// waits for the delivery, says so.
async fn wait_for_term(registered: Arc<AtomicUsize>, seen: Arc<AtomicUsize>) {
    let mut term = pin!(signal::terminate());
    assert!(poll_once(&mut term).await.is_none(), "no SIGTERM yet");
    registered.fetch_add(1, Ordering::SeqCst);
    term.await.expect("terminate()");
    seen.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn sigterm_wakes_every_waiter_on_every_core_and_outside_runtimes() {
    with_timeout(T, || {
        let _one = exclusive();
        let rt = rt(2);
        let (registered, seen) = (counter(), counter());
        for core in 0..2 {
            for _ in 0..3 {
                rt.spawn_on(core, wait_for_term(registered.clone(), seen.clone()))
                    .detach();
            }
        }
        // In a spawn_blocking closure, under another executor.
        let (r, s) = (registered.clone(), seen.clone());
        rt.block_on(async move {
            fairloop::task::spawn_blocking(move || block_on(wait_for_term(r, s))).detach();
        });
        // On a thread no runtime runs.
        let (r, s) = (registered.clone(), seen.clone());
        let plain = thread::spawn(move || block_on(wait_for_term(r, s)));
        wait_until(Duration::from_secs(10), "8 waiters registered", || {
            get(&registered) == 8
        });
        raise(Sig::TERM);
        wait_until(Duration::from_secs(10), "8 waiters saw SIGTERM", || {
            get(&seen) == 8
        });
        plain.join().expect("the plain thread's waiter");
    })
}

#[test]
fn sigint_resolves_ctrl_c_and_not_terminate() {
    with_timeout(T, || {
        let _one = exclusive();
        let rt = rt(2);
        let (int_seen, term_seen) = (counter(), counter());
        let (registered, i, t) = (counter(), int_seen.clone(), term_seen.clone());
        let r = registered.clone();
        rt.spawn_on(1, async move {
            let mut int = pin!(signal::ctrl_c());
            let mut term = pin!(signal::terminate());
            assert!(poll_once(&mut int).await.is_none());
            assert!(poll_once(&mut term).await.is_none());
            r.fetch_add(1, Ordering::SeqCst);
            int.await.expect("ctrl_c()");
            i.fetch_add(1, Ordering::SeqCst);
            // The SIGINT has been dispatched: a SIGTERM waiter saw nothing.
            assert!(
                poll_once(&mut term).await.is_none(),
                "SIGINT woke terminate()"
            );
            t.fetch_add(1, Ordering::SeqCst);
        })
        .detach();
        wait_until(Duration::from_secs(10), "registered", || {
            get(&registered) == 1
        });
        raise(Sig::INT);
        wait_until(Duration::from_secs(10), "ctrl_c() resolved", || {
            get(&term_seen) == 1
        });
        assert_eq!(get(&int_seen), 1);
    })
}

#[test]
fn a_waiter_sees_the_deliveries_after_its_first_poll_and_only_those() {
    with_timeout(T, || {
        let _one = exclusive();
        let mut listener = Signal::new(SignalKind::Terminate).expect("Signal::new");
        assert_eq!(listener.kind(), SignalKind::Terminate);
        // Created before the delivery: sees it, once.
        let early = terminate_polled_once();
        raise(Sig::TERM);
        block_on(listener.recv());
        assert!(
            block_on(poll_once(listener.recv())).is_none(),
            "one delivery, seen twice"
        );
        // `early` was pending at the delivery: it sees it.
        early.join().expect("the early waiter");
        // Created after the delivery (which has been dispatched, as
        // `listener` saw it): does not see it.
        let mut late = pin!(signal::terminate());
        assert!(
            block_on(poll_once(&mut late)).is_none(),
            "a delivery before the first poll"
        );
        raise(Sig::TERM);
        block_on(late).expect("the next delivery");
        block_on(listener.recv());
    })
}

#[test]
fn stop_signals_say_which_of_sigterm_and_sigint_came() {
    with_timeout(T, || {
        let _one = exclusive();
        let mut stop = StopSignals::new().expect("StopSignals::new");
        for (sig, kind) in [
            (Sig::INT, SignalKind::Interrupt),
            (Sig::TERM, SignalKind::Terminate),
            (Sig::INT, SignalKind::Interrupt),
        ] {
            let mut recv = pin!(stop.recv());
            assert!(
                block_on(poll_once(&mut recv)).is_none(),
                "nothing delivered yet"
            );
            raise(sig);
            assert_eq!(block_on(recv), kind);
        }
        assert_eq!(SignalKind::Terminate.to_string(), "SIGTERM");
        assert_eq!(SignalKind::Interrupt.to_string(), "SIGINT");
    });
}

/// A thread whose `terminate()` has been polled once (the handler is
/// installed) when this returns, and which ends when it resolves.
fn terminate_polled_once() -> thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = thread::spawn(move || {
        block_on(async move {
            let mut term = pin!(signal::terminate());
            assert!(poll_once(&mut term).await.is_none());
            tx.send(()).expect("the test waits");
            term.await.expect("terminate()");
        })
    });
    rx.recv().expect("the waiter registered");
    t
}

/// What `child` does, chosen by the parent through this variable.
const CHILD_MODE: &str = "FAIRLOOP_SIGNAL_TEST_CHILD";

/// Runs this test binary again, running only `child` in `mode`; returns it
/// once it says it is ready.
fn spawn_child(mode: &str) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.trim_end().ends_with("child-ready") => break,
            Some(Ok(_)) => continue,
            other => panic!("the child ended before saying ready: {other:?}"),
        }
    }
    thread::spawn(move || lines.for_each(drop)); // drain the rest
    child
}

/// Waits for `child`, killing it after 20 s.
fn wait_child(mut child: std::process::Child) -> std::process::ExitStatus {
    for _ in 0..2000 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("TIMEOUT: the child did not exit within 20 s");
}

#[test]
fn the_default_action_holds_until_the_first_poll() {
    use std::os::unix::process::ExitStatusExt;
    with_timeout(T, || {
        // A created but never polled terminate(): SIGTERM ends the child.
        let child = spawn_child("unpolled");
        kill_process(Pid::from_child(&child), Sig::TERM).expect("kill");
        let status = wait_child(child);
        assert_eq!(status.signal(), Some(libc_sigterm()), "{status:?}");

        // Polled once: the child sees SIGTERM and exits 0.
        let child = spawn_child("polled");
        kill_process(Pid::from_child(&child), Sig::TERM).expect("kill");
        let status = wait_child(child);
        assert!(status.success(), "{status:?}");
    })
}

fn libc_sigterm() -> i32 {
    SignalKind::Terminate.number()
}

/// Not a test of its own: the child process of
/// `the_default_action_holds_until_the_first_poll`. Does nothing unless
/// started by it.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let mut term = pin!(signal::terminate());
    if mode == "polled" {
        assert!(block_on(poll_once(&mut term)).is_none());
    }
    // After the harness's "test child ... " on the same line.
    println!("child-ready");
    if mode == "polled" {
        block_on(term).expect("terminate()");
        return;
    }
    // Unpolled: SIGTERM should end the process while it sleeps here.
    thread::sleep(Duration::from_secs(20));
    panic!("the child was not ended by SIGTERM");
}
