//! `#[fairloop::main]` and `#[fairloop::test]` on real functions: the
//! runtime they build (cores, reservations), results and `?` through the
//! body, panics, and the graceful shutdown after the body returns.
//!
//! The bodies of `#[fairloop::test]` functions run inside the runtime the
//! macro builds, out of `with_timeout`'s reach, so each starts the
//! process-wide `watchdog` instead.

mod common;

use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use common::with_timeout;
use fairloop::partition::{Partition, Placement};

/// Ends the process, loudly, if this binary's tests take over 60 s.
fn watchdog() {
    static START: Once = Once::new();
    START.call_once(|| {
        thread::spawn(|| {
            thread::sleep(Duration::from_secs(60));
            eprintln!("TIMEOUT: tests/macros.rs did not finish within 60 s (hang?)");
            std::process::exit(1);
        });
    });
}

#[fairloop::test(cores = 2)]
async fn test_runs_the_body_on_core_0_of_a_runtime_with_the_given_cores() {
    watchdog();
    assert_eq!(fairloop::core_id(), 0, "block_on runs on core 0");
    let on_1 = Partition::builder()
        .placement(Placement::Core(1))
        .build()
        .expect("core 1 exists")
        .spawn(async { fairloop::core_id() });
    assert_eq!(on_1.await.expect("no panic"), 1);
    let err = Partition::builder()
        .placement(Placement::Core(2))
        .build()
        .expect_err("only 2 cores");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[fairloop::test(reserve_core = "hc", cores = 3)]
async fn reserve_core_reserves_the_highest_core() {
    watchdog();
    let hc = Partition::builder()
        .placement(Placement::Reserved("hc".into()))
        .build()
        .expect("the reservation exists");
    assert_eq!(hc.core(), 2);
}

#[fairloop::test]
async fn a_test_may_return_a_result_and_use_question_marks(
) -> Result<(), Box<dyn Error + Send + Sync>> {
    watchdog();
    let n: u32 = "41".parse()?;
    fairloop::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(n + 1, 42);
    Ok(())
}

#[fairloop::test(cores = 1)]
#[should_panic(expected = "a failing assertion in the body")]
async fn a_panic_in_the_body_fails_the_test() {
    watchdog();
    fairloop::yield_now().await;
    panic!("a failing assertion in the body");
}

static SAW_REQUEST: AtomicBool = AtomicBool::new(false);
static BODIES: AtomicUsize = AtomicUsize::new(0);

/// A `main` in all but name (the macro does not care about the name).
#[fairloop::main(cores = 2)]
async fn app() -> io::Result<u32> {
    BODIES.fetch_add(1, Ordering::SeqCst);
    // A background task that finishes its work only once asked to stop:
    // the graceful shutdown after the body must wait for it.
    fairloop::spawn(async {
        fairloop::shutdown::requested().await;
        fairloop::time::sleep(Duration::from_millis(20)).await;
        SAW_REQUEST.store(true, Ordering::SeqCst);
    })
    .detach();
    let n: u32 = "41".parse().map_err(io::Error::other)?;
    Ok(n + 1)
}

#[fairloop::main(cores = 1)]
async fn failing_app() -> io::Result<()> {
    Err(io::Error::other("the body's error"))
}

#[test]
fn main_runs_the_body_then_shuts_down_gracefully() {
    with_timeout(30, || {
        assert_eq!(app().expect("the body's value"), 42);
        assert_eq!(BODIES.load(Ordering::SeqCst), 1);
        assert!(
            SAW_REQUEST.load(Ordering::SeqCst),
            "the background task did not finish before main returned"
        );
        let err = failing_app().expect_err("the body's error comes back");
        assert_eq!(err.to_string(), "the body's error");
    })
}
