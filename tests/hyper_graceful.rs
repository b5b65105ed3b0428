//! The `hyper_server` example stops gracefully on SIGTERM: it stops
//! accepting, answers the request in flight, and exits with status 0.
//!
//! The test runs the example's own code (`examples/hyper_server.rs`,
//! included below) in a child process: this binary again, with `--child`.
//! The parent opens a slow request, waits until the server says it has
//! started it, sends SIGTERM, checks that new connections are refused once
//! the server says it stopped accepting, that the slow request is answered
//! in full, and that the child exits with status 0. A watchdog ends the
//! test, loudly, after 60 s. `harness = false`: the binary's `main` is
//! below, not libtest's.

#[path = "support/child.rs"]
mod child;
#[path = "../examples/hyper_server.rs"]
#[allow(dead_code)]
mod hyper_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use child::{
    addr_after, assert_refused, drive_self, exit_with_parent, exits_0_within,
    sigterm_until_stopped_accepting, wait_for,
};
use hyper_server::http_client;

/// How long the slow request takes: long enough to still be in flight when
/// the parent has checked that new connections are refused.
const SLOW_MS: u64 = 1500;

/// How long the whole test may take.
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    if std::env::args().any(|a| a == "--child") {
        exit_with_parent("hyper_server");
        // The example's `main`, on a free port.
        match hyper_server::run(vec!["127.0.0.1:0".into()]) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("hyper_server child: {e}");
                std::process::exit(1);
            }
        }
    }
    let watchdog_start = Instant::now();
    thread::spawn(move || {
        thread::sleep(LIMIT);
        eprintln!(
            "TIMEOUT: tests/hyper_graceful.rs did not finish within {:?} (hang?)",
            watchdog_start.elapsed()
        );
        std::process::exit(1);
    });
    println!("running 1 test");
    sigterm_finishes_the_request_in_flight_then_exits_0();
    println!("test sigterm_finishes_the_request_in_flight_then_exits_0 ... ok");
}

fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    drive_self(&["--child"], &[], drive);
}

fn drive(child: &mut Child, lines: &Receiver<String>) {
    let addr = addr_after(&wait_for(lines, "listening on http://"), "http://");

    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        slow,
        "GET /slow/{SLOW_MS} HTTP/1.1\r\nHost: fairloop\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send the slow request");
    wait_for(lines, &format!("GET /slow/{SLOW_MS} started"));

    sigterm_until_stopped_accepting(child, lines);
    assert_refused(addr);

    let (code, body) = http_client::read_response(&mut slow).expect("the slow response");
    assert_eq!(code, 200, "{body:?}");
    assert_eq!(body, format!("slept {SLOW_MS} ms\n"));
    // hyper closes the connection after the last response.
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");

    exits_0_within(child, Duration::from_secs(30));
    wait_for(lines, "stopped: ");
}
