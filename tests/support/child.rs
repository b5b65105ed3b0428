//! Watching a child process's output, for the tests that run an example
//! as a child (`tests/http_service.rs`, `tests/hyper_graceful.rs`).

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

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
