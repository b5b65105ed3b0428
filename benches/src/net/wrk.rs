//! The HTTP load generator `wrk` (Debian's package `wrk`, 4.x) as a child
//! process: `wrk -tT -cC -dDs --latency http://ADDR/`, and the parsing of
//! its report.
//!
//! wrk is a closed loop like [`load`](super::load): each connection has
//! one request in flight. It is written in C on epoll and costs far less
//! CPU per request than a tokio client, so one wrk thread can saturate a
//! one-core HTTP server on a small machine.

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Measured, Server};

/// What wrk reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Responses received (`N requests in T`).
    pub requests: u64,
    /// wrk's own run time (`N requests in T`).
    pub duration: Duration,
    /// `Requests/sec`.
    pub rps: f64,
    /// The latency distribution's 50 % line.
    pub p50: Duration,
    /// Its 99 % line.
    pub p99: Duration,
    /// wrk's error lines (`Socket errors: ...`, `Non-2xx or 3xx
    /// responses: ...`), joined; empty when there were none.
    pub errors: String,
}

/// Whether an executable `wrk` is on `PATH`.
pub fn available() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join("wrk")).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// Runs wrk against `http://addr/` for `secs` whole seconds (wrk takes no
/// fractions) and parses its report.
pub fn run(addr: SocketAddr, threads: usize, conns: usize, secs: u64) -> io::Result<Report> {
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg(format!("http://{addr}/"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&stdout).map_err(|e| io::Error::other(format!("{e} in wrk's output:\n{stdout}")))
}

/// Whole seconds for wrk's `-d`: `d` rounded up, at least 1.
pub fn whole_secs(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

/// One measurement with wrk: a warm-up run of `warmup` (rounded up to
/// whole seconds; none if zero), then a run of `secs` (rounded up), with
/// the server's CPU time read just before wrk starts and just after it
/// exits.
pub fn measure(
    server: &Server,
    addr: SocketAddr,
    threads: usize,
    conns: usize,
    warmup: Duration,
    secs: Duration,
    per_thread: bool,
) -> io::Result<Measured> {
    if !warmup.is_zero() {
        run(addr, threads, conns, whole_secs(warmup))?;
    }
    let cpu0 = server.cpu_sample(per_thread);
    // wrk's CPU: the waited-for children's, which grows by wrk's alone (the
    // server is not waited for until it is dropped).
    let client0 = super::rusage_cpu(true);
    let t0 = Instant::now();
    let r = run(addr, threads, conns, whole_secs(secs))?;
    let cpu_wall = t0.elapsed();
    let client1 = super::rusage_cpu(true);
    let cpu1 = server.cpu_sample(per_thread);
    let (server_cpu, thread_cpu) = cpu1.since(&cpu0);
    Ok(Measured {
        requests: r.requests,
        // `Requests/sec` has more digits than the run time wrk prints.
        elapsed: if r.rps > 0.0 {
            Duration::from_secs_f64(r.requests as f64 / r.rps)
        } else {
            r.duration
        },
        cpu_wall,
        server_cpu,
        thread_cpu,
        client_cpu: client1.saturating_sub(client0),
        p50: r.p50,
        p99: r.p99,
        note: r.errors,
    })
}

/// A wrk time: a number and one of its units `us`, `ms`, `s`, `m`, `h`.
fn parse_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(v * scale))
}

/// Parses wrk's report (run with `--latency`).
pub fn parse(out: &str) -> Result<Report, String> {
    let mut requests = None;
    let mut duration = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = Vec::new();
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_time(v);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_time(v);
        } else if line.starts_with("Socket errors:") || line.starts_with("Non-2xx or 3xx") {
            errors.push(line.to_owned());
        } else if let Some((n, rest)) = line.split_once(" requests in ") {
            // `350000 requests in 5.00s, 40.00MB read`
            requests = n.trim().parse::<u64>().ok();
            duration = rest.split(',').next().and_then(parse_time);
        }
    }
    Ok(Report {
        requests: requests.ok_or("no `N requests in T` line")?,
        duration: duration.ok_or("no run time on the `requests in` line")?,
        rps: rps.ok_or("no `Requests/sec` line")?,
        p50: p50.ok_or("no 50% latency line (was --latency given?)")?,
        p99: p99.ok_or("no 99% latency line (was --latency given?)")?,
        errors: errors.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://127.0.0.1:39999/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   452.12us  100.00us   3.00ms   90.00%
    Req/Sec    70.00k     2.00k   75.00k    80.00%
  Latency Distribution
     50%  440.00us
     75%  480.00us
     90%  520.00us
     99%    1.20ms
  350123 requests in 5.00s, 40.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 0
Requests/sec:  70024.60
Transfer/sec:      8.00MB
";

    #[test]
    fn parses_a_report() {
        let r = parse(OUT).unwrap();
        assert_eq!(r.requests, 350_123);
        assert_eq!(r.duration, Duration::from_secs(5));
        assert!((r.rps - 70_024.6).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(440));
        assert_eq!(r.p99, Duration::from_micros(1200));
        assert_eq!(
            r.errors,
            "Socket errors: connect 0, read 1, write 0, timeout 0"
        );
        assert!(parse("Requests/sec: 1.0").is_err());
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("12.50us"), Some(Duration::from_nanos(12_500)));
        assert_eq!(parse_time(" 3.00ms"), Some(Duration::from_millis(3)));
        assert_eq!(parse_time("1.50s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_time("2.00m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_time("5.00x"), None);
        assert_eq!(whole_secs(Duration::from_millis(500)), 1);
        assert_eq!(whole_secs(Duration::from_secs(5)), 5);
    }
}
