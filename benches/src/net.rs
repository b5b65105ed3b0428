//! Helpers of the networking benches: the server child process, its CPU
//! time and RSS from `/proc`, file-descriptor limits, and the minimal
//! HTTP/1.1 parsing that both HTTP servers and the client share.
//!
//! Each networking bench is the *client* process; the server runs in a
//! child process (`net_server`, a binary of this crate), so `/proc/<pid>`
//! of the child counts the server's CPU time and memory and nothing else.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// A server child process. It serves until its stdin closes, so it dies
/// with the bench even if the bench is killed; dropping this kills it.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The addresses the server printed on its `ready` line.
    pub addrs: Vec<SocketAddr>,
}

impl Server {
    /// Starts `exe args..` and waits for its `ready ADDR [ADDR..]` line.
    pub fn start(exe: &str, args: &[&str]) -> io::Result<Server> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let Some(rest) = line.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{exe} {args:?} did not start: {:?}",
                line.trim()
            )));
        };
        let addrs = rest
            .split_whitespace()
            .map(|a| a.parse().map_err(io::Error::other))
            .collect::<io::Result<_>>()?;
        Ok(Server {
            child,
            stdin,
            addrs,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's CPU time so far (user + system, all its threads).
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid()).unwrap_or_default()
    }

    /// The server's resident set size now, in bytes.
    pub fn rss(&self) -> u64 {
        rss_bytes(self.pid()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; kill it in case it does not.
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the server: exit the process once stdin reaches end of file (the
/// bench that started it closed it or died).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::Read::read_to_end(&mut io::stdin(), &mut sink);
        std::process::exit(0);
    });
}

/// utime + stime of process `pid` (every thread, live or gone), from
/// `/proc/<pid>/stat`, in clock ticks converted to time.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

/// utime + stime of the live thread of this process named `name` (the
/// first one found), as [`cpu_time`] reads a process's.
pub fn thread_cpu_time(name: &str) -> io::Result<Duration> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let dir = task?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name) {
            return stat_cpu_time(&dir.join("stat").to_string_lossy());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no thread named {name:?} in this process"),
    ))
}

/// utime + stime from a `/proc/.../stat` file.
fn stat_cpu_time(path: &str) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/<pid>/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let parse = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("malformed /proc/<pid>/stat"))
    };
    // `rest` starts at field 3, so field n is at index n - 3.
    let ticks = parse(14 - 3)? + parse(15 - 3)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// `VmRSS` of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/<pid>/status"))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns
/// the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// The machine's 1-minute load average (for the reports).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A measurement length from the environment variable `var` (seconds,
/// fractional allowed), or `default`.
pub fn secs_from_env(var: &str, default: f64) -> Duration {
    let s = std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(s)
}

/// Whether the bench's command-line filters (the arguments that are not
/// flags, as with `cargo bench -- NAME`) select the row `name`: a filter
/// selects a row when each of its words is a word of the name (`mio`
/// selects `mio 64B` but not `glommio 64B`). No filter selects every row.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let words: Vec<&str> = name.split_whitespace().collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.split_whitespace().all(|w| words.contains(&w)))
}

/// Minimal HTTP/1.1: just enough for `GET` with keep-alive and a
/// `Content-Length` on every response. The same code serves both HTTP
/// servers (fairloop and tokio) and the client, so the parsing is never
/// the difference.
pub mod http {
    /// The largest request head accepted.
    pub const MAX_HEAD: usize = 16 * 1024;

    /// A parsed request head.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Request {
        /// The path, without the query.
        pub path: String,
        /// Whether the connection stays open after the response.
        pub keep_alive: bool,
        /// Bytes of head plus body to drop from the buffer.
        pub len: usize,
    }

    /// The end of the head (after `\r\n\r\n`) in `buf`, if complete.
    pub fn head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    /// Parses the request at the start of `buf`: `Ok(None)` if its head or
    /// body is incomplete, `Err` if it is malformed.
    pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, &'static str> {
        let Some(end) = head_end(buf) else {
            return if buf.len() > MAX_HEAD {
                Err("request head too large")
            } else {
                Ok(None)
            };
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| "request head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let mut parts = lines.next().unwrap_or("").split(' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed request line");
        };
        if method != "GET" || !version.starts_with("HTTP/1.") {
            return Err("only GET over HTTP/1.x is served");
        }
        let mut keep_alive = version == "HTTP/1.1";
        let mut body = 0usize;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or("malformed header")?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                body = value.parse().map_err(|_| "bad Content-Length")?;
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.eq_ignore_ascii_case("close");
            }
        }
        if buf.len() < end + body {
            return Ok(None);
        }
        let path = target.split('?').next().unwrap_or("").to_owned();
        Ok(Some(Request {
            path,
            keep_alive,
            len: end + body,
        }))
    }

    /// A complete response with a `Content-Length`.
    pub fn response(status: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
            body.len(),
            if keep_alive {
                ""
            } else {
                "connection: close\r\n"
            }
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// Client side: the status code and total length of the response at
    /// the start of `buf`, once it is complete.
    pub fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, &'static str> {
        let Some(end) = head_end(buf) else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("malformed status line")?;
        let mut body = 0usize;
        for line in lines {
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    body = v.trim().parse().map_err(|_| "bad Content-Length")?;
                }
            }
        }
        Ok((buf.len() >= end + body).then_some((status, end + body)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_requests_and_responses() {
            let req = b"GET /work?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET";
            let r = parse_request(req).unwrap().unwrap();
            assert_eq!(r.path, "/work");
            assert!(r.keep_alive);
            assert_eq!(r.len, req.len() - 3);
            assert_eq!(parse_request(b"GET / HTTP/1.1\r\n").unwrap(), None);
            assert!(parse_request(b"POST / HTTP/1.1\r\n\r\n").is_err());
            let resp = response("200 OK", b"ok\n", true);
            assert_eq!(parse_response(&resp).unwrap(), Some((200, resp.len())));
            assert_eq!(parse_response(&resp[..resp.len() - 1]).unwrap(), None);
        }
    }
}
