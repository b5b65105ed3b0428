//! Starting this test binary again as a child process that runs an example,
//! watching its output and checking how it stops, for the tests that run
//! an example as a child (`tests/axum_app.rs`, `tests/http_service.rs`,
//! `tests/hyper_graceful.rs`).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// Starts this binary again with `args` and `envs` (stdin and stdout piped
/// to us, stderr ours) and runs `drive` on it ([`drive_or_kill`]).
pub fn drive_self(
    args: &[&str],
    envs: &[(&str, &str)],
    drive: impl FnOnce(&mut Child, &Receiver<String>),
) {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    drive_or_kill(&mut child, drive);
}

/// [`drive_self`] for a libtest binary: the child runs only the ignored
/// test `test`, with `env` set (how `test` knows it is the child).
pub fn drive_ignored_test(
    test: &str,
    env: (&str, &str),
    drive: impl FnOnce(&mut Child, &Receiver<String>),
) {
    let args = [
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    drive_self(&args, &[env], drive);
}

/// In the child: exits (status 2) when the parent's end of our stdin
/// closes, so that the child never outlives the test, however it ends.
/// `who` names the child in the message.
pub fn exit_with_parent(who: &'static str) {
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        eprintln!("{who} child: the test is gone; exiting");
        std::process::exit(2);
    });
}

/// The address that follows `marker` in `line` (up to a `/`, `,`, space or
/// the end): `addr_after("listening on http://127.0.0.1:80/", "http://")`.
pub fn addr_after(line: &str, marker: &str) -> SocketAddr {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split(['/', ',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}

/// Sends SIGTERM to `child` and waits until it says it is shutting down
/// and has stopped accepting on every listener.
pub fn sigterm_until_stopped_accepting(child: &Child, lines: &Receiver<String>) {
    kill_process(Pid::from_child(child), Signal::TERM).expect("send SIGTERM");
    wait_for(lines, "SIGTERM: shutting down gracefully");
    wait_for(lines, "stopped accepting on every listener");
}

/// Checks that a new connection to `addr` is refused.
pub fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect(addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("a new connection to {addr} after SIGTERM: {other:?}"),
    }
}

/// Checks that the server closed the idle connection `idle` without a
/// response (a clean end, or a reset).
pub fn assert_idle_closed(idle: &mut TcpStream) {
    let mut rest = Vec::new();
    match idle.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "bytes on the idle connection: {rest:?}"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the idle connection was not closed: {e}"),
    }
}

/// The child's stdout, line by line, echoed to ours.
pub fn read_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("child: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The child's next line containing `what`, waiting at most 20 s.
pub fn wait_for(lines: &Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => continue,
            Err(e) => panic!("waiting for the child to say {what:?}: {e}"),
        }
    }
}

/// Runs `drive` on `child` and the lines it prints; if `drive` panics (a
/// failed check), kills the child before passing the panic on, so that a
/// failing test leaves no process behind.
pub fn drive_or_kill(child: &mut Child, drive: impl FnOnce(&mut Child, &Receiver<String>)) {
    let lines = read_lines(child);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(child, &lines)));
    if let Err(panic) = result {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(panic);
    }
}

/// Waits at most `limit` for `child` to exit, and checks it exited 0.
pub fn exits_0_within(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the child exited with {status:?}");
}
