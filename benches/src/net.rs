//! Helpers of the networking benches: the server child process, its CPU
//! time and RSS from `/proc`, file-descriptor limits, the minimal
//! HTTP/1.1 parsing that both HTTP servers and the client share, the
//! closed-loop load generators ([`load`]: echo and HTTP `GET`, on tokio)
//! and the `wrk` driver ([`wrk`]).
//!
//! Each networking bench is the *client* process; the server runs in a
//! child process (`net_server`, a binary of this crate), so `/proc/<pid>`
//! of the child counts the server's CPU time and memory and nothing else.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

pub mod load;
pub mod wrk;

/// The body of the hyper servers' answer to `GET /` (`net_server hyper`).
pub const HELLO: &[u8] = b"Hello, World!";

/// One measurement of a server under load: what the client counted in its
/// window, and the server's CPU time over it.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Requests completed in the client's window.
    pub requests: u64,
    /// The client's measurement window.
    pub elapsed: Duration,
    /// Wall time between the two readings of the server's CPU time (the
    /// window, or for wrk the whole wrk process).
    pub cpu_wall: Duration,
    /// Server CPU time (user + system, all threads) over `cpu_wall`.
    pub server_cpu: Duration,
    /// Per server thread, largest first (empty unless asked for).
    pub thread_cpu: Vec<Duration>,
    /// The client's own CPU time over `cpu_wall` (this process for the
    /// Rust client, the wrk child for wrk): whether the *client* was the
    /// bottleneck.
    pub client_cpu: Duration,
    /// Latency percentiles of one request.
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
    /// Anything the client reported as wrong (wrk's error lines).
    pub note: String,
}

impl Measured {
    /// A server's cells in the benches' tables of medians over rounds:
    /// `req/s | req per server CPU-s | server CPU (s/s) | p50 µs | p99 µs`,
    /// each the median [range] of `runs`.
    pub fn median_cells(runs: &[&Measured]) -> String {
        let col = |f: &dyn Fn(&Measured) -> f64, digits: usize| {
            let v: Vec<f64> = runs.iter().map(|m| f(m)).collect();
            spread(&v, digits)
        };
        format!(
            "{} | {} | {} | {} | {}",
            col(&|m| m.rps(), 0),
            col(&|m| m.per_cpu(), 0),
            col(&|m| m.cpu_share(), 2),
            col(&|m| m.p50.as_secs_f64() * 1e6, 1),
            col(&|m| m.p99.as_secs_f64() * 1e6, 1),
        )
    }

    /// Requests per second of the client's window.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Requests per second of server CPU time.
    pub fn per_cpu(&self) -> f64 {
        self.requests as f64 / self.server_cpu.as_secs_f64().max(1e-9)
    }
    /// Server CPU seconds per second (1.0 = one core busy).
    pub fn cpu_share(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.cpu_wall.as_secs_f64().max(1e-9)
    }
    /// Client CPU seconds per second.
    pub fn client_share(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.cpu_wall.as_secs_f64().max(1e-9)
    }
    /// Each server thread's CPU seconds per second, largest first, those
    /// above 0.01 only: `0.98 0.41`.
    pub fn threads_share(&self) -> String {
        let wall = self.cpu_wall.as_secs_f64().max(1e-9);
        let v: Vec<String> = self
            .thread_cpu
            .iter()
            .map(|t| t.as_secs_f64() / wall)
            .filter(|s| *s >= 0.01)
            .map(|s| format!("{s:.2}"))
            .collect();
        v.join(" ")
    }
}

/// The client of the HTTP benches (`net_http`, `scaling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpClient {
    /// `wrk` with this many threads.
    Wrk {
        /// `wrk -t`.
        threads: usize,
    },
    /// [`load`] with [`load::Work::Get`] on this many tokio workers.
    Rust {
        /// tokio worker threads.
        threads: usize,
    },
}

impl HttpClient {
    /// wrk if it is on `PATH` and `NET_HTTP_CLIENT` is not `rust`, else the
    /// Rust client (`NET_HTTP_CLIENT=wrk` without wrk is an error).
    pub fn choose(wrk_threads: usize, rust_threads: usize) -> io::Result<HttpClient> {
        let want = std::env::var("NET_HTTP_CLIENT").unwrap_or_default();
        match want.as_str() {
            "rust" => Ok(HttpClient::Rust {
                threads: rust_threads,
            }),
            "wrk" if !wrk::available() => Err(io::Error::other(
                "NET_HTTP_CLIENT=wrk but no wrk on PATH (apt-get install wrk)",
            )),
            "" | "wrk" if wrk::available() => Ok(HttpClient::Wrk {
                threads: wrk_threads,
            }),
            "" => Ok(HttpClient::Rust {
                threads: rust_threads,
            }),
            other => Err(io::Error::other(format!(
                "NET_HTTP_CLIENT={other}: expected wrk or rust"
            ))),
        }
    }

    /// For the reports.
    pub fn describe(&self, conns: usize) -> String {
        match self {
            HttpClient::Wrk { threads } => format!(
                "wrk -t{threads} -c{conns} --latency (closed loop, one request in flight per connection)"
            ),
            HttpClient::Rust { threads } => format!(
                "Rust client: tokio multi_thread with {threads} workers, {conns} keep-alive connections, GET / back to back"
            ),
        }
    }

    /// Loads `server` (listening on `addr`) with `GET /` on `conns`
    /// connections: `warmup`, then the measured `secs` (wrk rounds both up
    /// to whole seconds).
    pub fn measure(
        &self,
        server: &Server,
        addr: SocketAddr,
        conns: usize,
        warmup: Duration,
        secs: Duration,
        per_thread: bool,
    ) -> io::Result<Measured> {
        match *self {
            HttpClient::Wrk { threads } => {
                wrk::measure(server, addr, threads, conns, warmup, secs, per_thread)
            }
            HttpClient::Rust { threads } => load::run(
                server,
                addr,
                load::Work::Get,
                &load::Spec {
                    conns,
                    threads,
                    warmup,
                    secs,
                    per_thread,
                },
            ),
        }
    }
}

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

    /// The server's CPU time so far, in all and (when `per_thread`) per
    /// live thread.
    pub fn cpu_sample(&self, per_thread: bool) -> CpuSample {
        CpuSample {
            total: self.cpu_time(),
            threads: if per_thread {
                thread_cpu_times(self.pid()).unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }
}

/// A server's CPU time at one moment: [`Server::cpu_sample`].
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    /// utime + stime of the whole process.
    pub total: Duration,
    /// (thread id, utime + stime) of each live thread, if asked for.
    pub threads: Vec<(u32, Duration)>,
}

impl CpuSample {
    /// The CPU time spent since `earlier`: in all, and per thread (threads
    /// present in both samples), largest first.
    pub fn since(&self, earlier: &CpuSample) -> (Duration, Vec<Duration>) {
        let mut threads: Vec<Duration> = self
            .threads
            .iter()
            .filter_map(|(tid, t)| {
                let (_, t0) = earlier.threads.iter().find(|(e, _)| e == tid)?;
                Some(t.saturating_sub(*t0))
            })
            .collect();
        threads.sort_unstable_by(|a, b| b.cmp(a));
        (self.total.saturating_sub(earlier.total), threads)
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

/// Runs `measure`, a window of load on `measured` (one of `servers`), and
/// returns its result with the CPU the other servers spent meanwhile, in
/// CPU seconds per second of the window: what servers waiting their turn
/// cost (nothing, when they are parked in their poller). The benches whose
/// servers take turns (`net_http`, `net_echo`) print it per window.
pub fn measure_in_turn(
    servers: &[(&str, Server)],
    measured: &Server,
    measure: impl FnOnce() -> io::Result<Measured>,
) -> io::Result<(Measured, f64)> {
    let others = || -> Duration {
        servers
            .iter()
            .filter(|(_, s)| s.pid() != measured.pid())
            .map(|(_, s)| s.cpu_time())
            .sum()
    };
    let before = others();
    let m = measure()?;
    let idle = others().saturating_sub(before).as_secs_f64() / m.cpu_wall.as_secs_f64().max(1e-9);
    Ok((m, idle))
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

/// CPU time of the live thread of this process named `name` (the first
/// one found): in nanoseconds from `/proc/self/task/<tid>/schedstat` where
/// the kernel keeps it, else utime + stime in clock ticks as [`cpu_time`]
/// reads a process's. A tick is 10 ms on most kernels, 0.5 % of a 2 s
/// span: too coarse for the phases of the `tenants` bench.
pub fn thread_cpu_time(name: &str) -> io::Result<Duration> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let dir = task?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name) {
            // schedstat: time on the CPU (ns), time waiting, timeslices.
            let on_cpu = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            return match on_cpu {
                Some(ns) => Ok(Duration::from_nanos(ns)),
                None => stat_cpu_time(&dir.join("stat").to_string_lossy()),
            };
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no thread named {name:?} in this process"),
    ))
}

/// utime + stime of this process (`children: false`) or of its children
/// that have exited and been waited for (`children: true`), from
/// `getrusage`.
pub fn rusage_cpu(children: bool) -> Duration {
    // SAFETY: getrusage fills the struct; all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: a valid `who` and a valid pointer.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (thread id, utime + stime) of every live thread of process `pid`.
pub fn thread_cpu_times(pid: u32) -> io::Result<Vec<(u32, Duration)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let Some(tid) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        // A thread that exits between the listing and the read is skipped.
        if let Ok(t) = stat_cpu_time(&dir.join("stat").to_string_lossy()) {
            out.push((tid, t));
        }
    }
    Ok(out)
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

/// A count from the environment variable `var`, or `default`.
pub fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the mean of the middle two for an even count; NaN
/// if empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The per-round ratios of fairloop's figures to a peer's, one pair of
/// rows per round: requests/s and requests per server CPU-s as fairloop /
/// peer, p99 as peer / fairloop, so that above 1.0 fairloop is better.
/// Displayed as `req/s M [min-max]  req/CPU-s ..  p99 ..`.
pub struct Ratios {
    /// Requests per second, fairloop / peer.
    pub rps: Vec<f64>,
    /// Requests per server CPU-second, fairloop / peer.
    pub per_cpu: Vec<f64>,
    /// p99 latency, peer / fairloop.
    pub p99: Vec<f64>,
}

impl Ratios {
    /// The `(fairloop, peer)` pairs of each of `rounds` rounds in which
    /// both ran: `find(server, round)` looks a run up.
    pub fn pairs<'a>(
        rounds: usize,
        peer: &str,
        find: impl Fn(&str, usize) -> Option<&'a Measured>,
    ) -> Vec<(&'a Measured, &'a Measured)> {
        (0..rounds)
            .filter_map(|round| Some((find("fairloop", round)?, find(peer, round)?)))
            .collect()
    }

    /// The ratios of each `(fairloop, peer)` pair.
    pub fn of(pairs: &[(&Measured, &Measured)]) -> Ratios {
        let each = |f: &dyn Fn(&Measured, &Measured) -> f64| -> Vec<f64> {
            pairs.iter().map(|(a, b)| f(a, b)).collect()
        };
        Ratios {
            rps: each(&|f, p| f.rps() / p.rps()),
            per_cpu: each(&|f, p| f.per_cpu() / p.per_cpu()),
            p99: each(&|f, p| p.p99.as_secs_f64() / f.p99.as_secs_f64().max(1e-12)),
        }
    }
}

impl std::fmt::Display for Ratios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "req/s {}  req/CPU-s {}  p99 {}",
            spread(&self.rps, 3),
            spread(&self.per_cpu, 3),
            spread(&self.p99, 3)
        )
    }
}

/// The median of `v` with `digits` decimals, and its range `[min-max]`
/// when there is more than one value (the networking benches' cells).
pub fn spread(v: &[f64], digits: usize) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "-".into();
    }
    let med = median(&v);
    if v.len() == 1 {
        format!("{med:.digits$}")
    } else {
        format!(
            "{med:.digits$} [{:.digits$}-{:.digits$}]",
            v[0],
            v[v.len() - 1]
        )
    }
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

/// The rounds `0..rounds` split into `NET_INSTANCES` runs of consecutive
/// rounds (default 3, at most one per round): the benches whose servers
/// take turns start every server afresh for each run.
///
/// Why: a server process has a speed of its own. The same `net_server`
/// build, started twice and measured against itself in 40 alternating
/// rounds, gave 1.017 in requests per CPU-second, and over 8 fresh pairs
/// its ratio spread with a standard deviation of 1.6 % (where its pages
/// and buffers landed, on the 2-CPU VM). One process per server therefore
/// biases a whole run by about that much however many rounds it has;
/// fresh processes turn that bias into noise that the rounds average out.
pub fn instance_runs(rounds: usize) -> Vec<std::ops::Range<usize>> {
    let runs = env_usize("NET_INSTANCES", 3).clamp(1, rounds.max(1));
    (0..runs)
        .map(|i| (i * rounds / runs)..((i + 1) * rounds / runs))
        .collect()
}

/// The servers a bench whose servers take turns compares: its rows, and
/// [`BASELINE`] when `NET_BASELINE` names another build.
pub struct Lineup {
    names: Vec<&'static str>,
    baseline: Option<String>,
}

impl Lineup {
    /// The `runtimes` that `keep` selects, and [`BASELINE`] (if
    /// `NET_BASELINE` is set and `keep` selects it too).
    pub fn new(runtimes: &[&'static str], keep: impl Fn(&str) -> bool) -> Lineup {
        let baseline = baseline_server();
        let mut names = runtimes.to_vec();
        if baseline.is_some() {
            names.push(BASELINE);
        }
        names.retain(|name| keep(name));
        Lineup { names, baseline }
    }

    /// The rows, in order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Starts every server afresh for run `run` (see [`instance_runs`]),
    /// the order rotated by `run`: `exe` with `args(runtime)` for a row,
    /// the baseline build with `args("fairloop")` for [`BASELINE`]. One
    /// that fails to start is reported and left out of the run.
    pub fn start(
        &self,
        run: usize,
        exe: &str,
        args: impl Fn(&str) -> Vec<String>,
    ) -> Vec<(&'static str, Server)> {
        let mut servers = Vec::new();
        for k in 0..self.names.len() {
            let name = self.names[(k + run) % self.names.len()];
            let (exe, runtime) = match &self.baseline {
                Some(baseline) if name == BASELINE => (baseline.as_str(), "fairloop"),
                _ => (exe, name),
            };
            let args = args(runtime);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match Server::start(exe, &args) {
                Ok(server) => servers.push((name, server)),
                Err(e) => println!("  {name:<20} SKIPPED: {e}"),
            }
        }
        servers
    }
}

/// The row name of the baseline server: see [`baseline_server`].
pub const BASELINE: &str = "baseline";

/// `NET_BASELINE=PATH`: another build of `net_server` (say, of the commit
/// before a change, built with `cargo build --release -p fairloop-benches
/// --bin net_server` and copied aside), whose `fairloop` server the
/// networking benches run as one more row, [`BASELINE`], taking turns with
/// the others. The ratio `fairloop / baseline` is then a change's effect
/// measured in the same spell of the machine as the comparison with the
/// peers, instead of across two runs that the VM's drift apart.
pub fn baseline_server() -> Option<String> {
    std::env::var("NET_BASELINE").ok().filter(|p| !p.is_empty())
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
