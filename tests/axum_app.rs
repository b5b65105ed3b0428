//! The `axum_app` example (feature `tokio-ecosystem`) in a child process: its
//! `--selftest` passes and exits 0, and served without it, SIGTERM stops it
//! gracefully: listeners close, an idle keep-alive connection is closed,
//! nothing is cancelled and the exit status is 0.
//!
//! The child is this binary again, running the example's own code
//! (`examples/axum_app.rs`, included below) from the ignored test
//! `axum_app_child`, with `CHILD` naming what to run. Each test is bounded
//! by `with_timeout`.

#[path = "support/child.rs"]
mod child;
mod common;

#[path = "../examples/axum_app.rs"]
#[allow(dead_code)]
mod axum_app;

use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use child::{
    addr_after, assert_idle_closed, assert_refused, drive_ignored_test, exit_with_parent,
    exits_0_within, sigterm_until_stopped_accepting, wait_for,
};
use common::with_timeout;

const T: u64 = 90;

/// Set in the environment of the child process: `selftest` or `serve`.
const CHILD: &str = "FAIRLOOP_AXUM_APP_CHILD";

/// Not a test of its own: the child process of the tests below, which run
/// this binary again with only this test and `CHILD` set.
#[test]
#[ignore = "the child process of the axum_app tests"]
fn axum_app_child() {
    let Some(mode) = std::env::var_os(CHILD) else {
        println!("axum_app_child runs only as the child of the axum_app tests");
        return;
    };
    exit_with_parent("axum_app");
    let mut args = vec!["--cores", "2", "--no-pin"];
    if mode == "selftest" {
        args.push("--selftest");
    } else {
        args.extend(["127.0.0.1:0", "--upstream", "127.0.0.1:0"]);
    }
    axum_app::run(args.iter().map(|a| a.to_string()).collect()).expect("the example's run");
}

/// Starts the child in `mode` and hands it to `drive`.
fn with_child(mode: &str, drive: impl FnOnce(&mut Child, &Receiver<String>)) {
    drive_ignored_test("axum_app_child", (CHILD, mode), drive);
}

#[test]
fn selftest_passes_and_exits_0() {
    with_timeout(T, || {
        with_child("selftest", |child, lines| {
            wait_for(lines, "listening on http://");
            let summary = wait_for(lines, "clients x");
            assert!(summary.contains("answered by core"), "{summary}");
            wait_for(lines, "selftest passed");
            exits_0_within(child, Duration::from_secs(30));
        });
    });
}

#[test]
fn sigterm_stops_gracefully_and_exits_0() {
    with_timeout(T, || {
        with_child("serve", |child, lines| {
            let addr = addr_after(&wait_for(lines, "listening on http://"), "http://");

            // Served, through upstream, and then left idle.
            let mut idle = axum_app::connect(addr).expect("connect");
            let g = axum_app::greeting(&mut idle, "/greet/ada?lang=fr,de").expect("a greeting");
            assert_eq!(g.greetings["fr"], "bonjour, ada", "{g:?}");
            assert_eq!(g.greetings["de"], "hallo, ada", "{g:?}");
            assert_eq!(g.served_by.partition, "app", "{g:?}");
            assert!(g.served_by.calls_on_same_core, "{g:?}");

            sigterm_until_stopped_accepting(child, lines);
            assert_refused(addr);
            assert_idle_closed(&mut idle);
            exits_0_within(child, axum_app::SHUTDOWN_DEADLINE + Duration::from_secs(20));
            let stopped = wait_for(lines, "stopped: ");
            assert!(stopped.contains(" 0 cancelled"), "{stopped}");
        });
    });
}
