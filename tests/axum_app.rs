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

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::Duration;

use child::{drive_or_kill, exits_0_within, wait_for};
use common::with_timeout;
use rustix::process::{kill_process, Pid, Signal};

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
    // Never outlive the parent: its end of our stdin closes when it exits,
    // however it exits.
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        eprintln!("axum_app child: the test is gone; exiting");
        std::process::exit(2);
    });
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
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "axum_app_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    drive_or_kill(&mut child, drive);
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
            let listening = wait_for(lines, "listening on http://");
            let addr: SocketAddr = listening
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {listening:?}"));

            // Served, through upstream, and then left idle.
            let mut idle = axum_app::connect(addr).expect("connect");
            let g = axum_app::greeting(&mut idle, "/greet/ada?lang=fr,de").expect("a greeting");
            assert_eq!(g.greetings["fr"], "bonjour, ada", "{g:?}");
            assert_eq!(g.greetings["de"], "hallo, ada", "{g:?}");
            assert_eq!(g.served_by.partition, "app", "{g:?}");
            assert!(g.served_by.calls_on_same_core, "{g:?}");

            kill_process(Pid::from_child(child), Signal::TERM).expect("send SIGTERM");
            wait_for(lines, "SIGTERM: shutting down gracefully");
            wait_for(lines, "stopped accepting on every listener");
            match TcpStream::connect(addr) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                other => panic!("a new connection after SIGTERM: {other:?}"),
            }
            // The idle connection is closed without a response.
            let mut rest = Vec::new();
            match idle.read_to_end(&mut rest) {
                Ok(_) => assert!(rest.is_empty(), "bytes on the idle connection: {rest:?}"),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("the idle connection was not closed: {e}"),
            }
            exits_0_within(child, axum_app::SHUTDOWN_DEADLINE + Duration::from_secs(20));
            let stopped = wait_for(lines, "stopped: ");
            assert!(stopped.contains(" 0 cancelled"), "{stopped}");
        });
    });
}
