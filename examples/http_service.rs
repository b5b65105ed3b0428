//! The 2017 proposal's story as a service: a tiny HTTP/1.1 server whose
//! `/health` keeps answering while `/work` is flooded, and which stops
//! gracefully on SIGTERM or Ctrl-C.
//!
//! Routes (`GET` only; keep-alive; every response has a `Content-Length`):
//!
//! * `/work` fans out into [`SUBTASKS`] CPU-heavy sub-tasks (each burns
//!   [`SUBTASK_CPU`]) with `fairloop::spawn`, in the `api` partition, and
//!   answers when all are done;
//! * `/slow/MS` answers after `MS` milliseconds (at most a minute), in
//!   `api`: a request in flight to watch a graceful stop finish;
//! * `/health` answers `ok`, from the `healthcheck` partition;
//! * `/metrics` serves per-core and per-partition metrics in the Prometheus
//!   text exposition format (also from `healthcheck`).
//!
//! **Partitions.** `api` is one *sharded* partition
//! (`Placement::EveryCore`): a shard on every unreserved core, each
//! competing for its own core with `api`'s shares, all under one name, set
//! with one `set_shares` and measured by one `metrics()`. By default
//! (`--health-core reserved`) the runtime reserves its highest core for
//! `healthcheck` (`Builder::reserve_core`), a partition placed there with
//! `Placement::Reserved`: nothing else runs on that core. With
//! `--health-core same`, `healthcheck` is sharded too, with a 1 ms latency
//! bound, so on every core it is switched to within about a millisecond
//! however busy that core's `api` shard is.
//!
//! **Listening.** Two ways:
//!
//! * separate ports (default): the api port, with one `SO_REUSEPORT`
//!   listener in each `api` shard, and the health port, with a listener in
//!   `healthcheck` (in each of its shards with `--health-core same`). Each
//!   listener is owned by the partition that polls it, so its readiness
//!   wakes that partition and no other, and the connections it accepts are
//!   served by tasks of that partition, on that core;
//! * `--shared-port`: one port for everything. An `acceptor` partition (on
//!   the reserved core, or sharded with a 1 ms bound) accepts each
//!   connection, *peeks* at its request line with `TcpStream::peek`
//!   (`MSG_PEEK`) and hands the connection to `healthcheck` or `api` before
//!   any byte is consumed: `api.spawn(..)` goes to the `api` shard of the
//!   acceptor's core, or, from the reserved core (which has no shard), to
//!   the shards in turn. A keep-alive connection is re-routed the same way
//!   whenever its next request belongs elsewhere. This is the answer to the
//!   proposal's "black hole", where a healthcheck partition waited for
//!   bytes that a callback of the flooded partition had to read.
//!
//! **Stopping.** SIGTERM or Ctrl-C (`fairloop::signal`, listened for before
//! the addresses are announced) makes the program call
//! `Runtime::shutdown_graceful`, which wakes `fairloop::shutdown::requested()`
//! in every task: each accept loop drops its listener (new connections are
//! refused); a connection with a request in flight answers it with
//! `Connection: close` and closes; an idle keep-alive connection closes at
//! once. The runtime gives them up to 10 s, and the program exits with
//! status 0. `tests/http_service.rs` runs this program in a child process
//! and stops it with SIGTERM during a slow request.
//!
//! ```text
//! cargo run --release --example http_service -- [--health-core reserved|same]
//!     [--shared-port] [--cores N] [--no-pin] [--api ADDR] [--health ADDR]
//!     [--selftest [SECONDS]]
//! curl -s localhost:8080/work; curl -s localhost:8081/health; curl -s localhost:8081/metrics
//! curl -s localhost:8080/slow/3000 & sleep 1; kill -TERM <pid>   # still answered
//! ```
//!
//! The api port defaults to `127.0.0.1:8080`, the health port to
//! `127.0.0.1:8081` (with `--shared-port`, `--api` names the one port);
//! `--cores` defaults to the machine's CPUs (at least 2).
//!
//! `--selftest` (optionally with a duration, default 2 s) starts the service
//! on free ports, saturates `/work` with 64 keep-alive client connections
//! from plain threads while a prober asks `/health` every 10 ms on a fresh
//! connection, then prints the `/health` latency (p50/p99/max), the `/work`
//! throughput and the partitions' metrics, shuts the service down
//! gracefully, and exits with status 0 (1 if a probe failed or the
//! shutdown had to cancel a task).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// Public for `tests/http_service.rs`, which includes this file.
#[path = "support/http_client.rs"]
pub mod http_client;

use fairloop::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use fairloop::net::{TcpListener, TcpStream};
use fairloop::partition::{Partition, Placement};
use fairloop::shutdown::{self, ShutdownReport};
use fairloop::signal::StopSignals;
use fairloop::{time, Handle, Runtime};
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// Sub-tasks one `/work` request fans out into.
pub const SUBTASKS: usize = 8;
/// CPU each sub-task burns.
pub const SUBTASK_CPU: Duration = Duration::from_micros(200);
/// The reservation (and partition name) of the healthcheck.
const HEALTHCHECK: &str = "healthcheck";
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest `/slow/MS`.
const SLOW_MAX: Duration = Duration::from_secs(60);
/// How long the requests in flight get to finish once the program is
/// asked to stop.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

// ---- configuration ---------------------------------------------------------

/// Where `/health` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCore {
    /// One `healthcheck` partition on a core reserved for it (the
    /// default).
    Reserved,
    /// A sharded `healthcheck` partition with a 1 ms latency bound: a
    /// shard beside the `api` shard on every core.
    Same,
}

/// How the service listens.
#[derive(Clone, Debug)]
pub enum Ports {
    /// An api port and a health port, each served by its own partitions.
    Separate {
        /// The api port (`/work`, `/slow/MS`).
        api: SocketAddr,
        /// The health port (`/health`, `/metrics`).
        health: SocketAddr,
    },
    /// One port; an acceptor partition routes each connection by peeking.
    Shared(SocketAddr),
}

/// How to run the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Reactor cores (at least 2 with [`HealthCore::Reserved`]).
    pub cores: usize,
    /// Whether to pin the cores to CPUs.
    pub pin_cores: bool,
    /// Where `/health` runs.
    pub health_core: HealthCore,
    /// How it listens.
    pub ports: Ports,
}

// ---- the service -----------------------------------------------------------

/// A running service; dropping it stops the runtime at once (see
/// [`Service::shutdown`] for a graceful stop).
pub struct Service {
    /// Where `/work` requests go.
    pub api_addr: SocketAddr,
    /// Where `/health` requests go (the same as `api_addr` with a shared
    /// port).
    pub health_addr: SocketAddr,
    /// The sharded `api` partition.
    pub api: Partition,
    /// The `healthcheck` partition (sharded with [`HealthCore::Same`]).
    pub health: Partition,
    rt: Runtime,
}

impl Service {
    /// A snapshot of the runtime's metrics (every shard on its own).
    pub fn metrics(&self) -> RuntimeMetrics {
        self.rt.metrics()
    }

    /// Stops gracefully: every listener closes, the requests in flight are
    /// answered (with `Connection: close`), idle connections close, and
    /// whatever is left after `deadline` is cancelled.
    pub fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.rt.shutdown_graceful(deadline)
    }
}

/// What a request is for, and so which partition should serve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `/work`, `/slow/MS` and anything unknown: the `api` partition.
    Api,
    /// `/health` and `/metrics`: the `healthcheck` partition.
    Health,
    /// A connection not yet routed (shared port only).
    Acceptor,
}

/// What every connection task shares.
struct Svc {
    handle: Handle,
    api: Partition,
    health: Partition,
    /// Whether connections are routed by peeking (shared port).
    route: bool,
    /// Requests served, by route: `/work`, `/slow/MS`, `/health`,
    /// `/metrics`, others.
    served: [AtomicU64; 5],
    /// Listeners still accepting; the last to close says so.
    listening: AtomicUsize,
    /// Connections open.
    open: AtomicUsize,
}

/// One connection and what has been read from it but not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    svc: Arc<Svc>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.svc.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the service: builds the runtime, creates the partitions, binds
/// the listeners and spawns their accept loops, and returns once it is
/// listening.
pub fn start(cfg: &Config) -> io::Result<Service> {
    let reserved = cfg.health_core == HealthCore::Reserved;
    let mut builder = Runtime::builder().cores(cfg.cores).pin_cores(cfg.pin_cores);
    if reserved {
        builder = builder.reserve_core(HEALTHCHECK);
    }
    let rt = builder.build()?;
    let handle = rt.handle();
    let ports = cfg.ports.clone();
    let (api_addr, health_addr, svc) = rt.block_on(async move {
        // `api` on every unreserved core, one shard each.
        let api = Partition::builder()
            .name("api")
            .placement(Placement::EveryCore)
            .build()?;
        // Where the healthcheck (and, with a shared port, the acceptor)
        // runs: the reserved core, or every core with a latency bound.
        let beside = |name: &str| {
            let b = Partition::builder().name(name);
            if reserved {
                b.placement(Placement::Reserved(HEALTHCHECK.into()))
            } else {
                b.latency(Duration::from_millis(1))
                    .placement(Placement::EveryCore)
            }
            .build()
        };
        let svc = Arc::new(Svc {
            handle,
            api,
            health: beside(HEALTHCHECK)?,
            route: matches!(ports, Ports::Shared(_)),
            served: Default::default(),
            listening: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let (api_addr, health_addr) = match ports {
            Ports::Separate { api, health } => (
                listen(&svc.api, api, Role::Api, &svc)?,
                listen(&svc.health, health, Role::Health, &svc)?,
            ),
            Ports::Shared(addr) => {
                let addr = listen(&beside("acceptor")?, addr, Role::Acceptor, &svc)?;
                (addr, addr)
            }
        };
        Ok::<_, io::Error>((api_addr, health_addr, svc))
    })?;
    Ok(Service {
        api_addr,
        health_addr,
        api: svc.api.clone(),
        health: svc.health.clone(),
        rt,
    })
}

/// Serves `addr` from every core of `p`: in each shard of a sharded
/// partition, an accept loop on a `SO_REUSEPORT` listener of its own (the
/// kernel spreads the connections over them); in a partition of one core,
/// one accept loop on a plain listener. Returns the address (a port of 0
/// becomes the one the first listener got).
fn listen(p: &Partition, addr: SocketAddr, role: Role, svc: &Arc<Svc>) -> io::Result<SocketAddr> {
    let cores = p.cores();
    let mut addr = addr;
    for (k, &core) in cores.iter().enumerate() {
        let listener = if cores.len() == 1 {
            TcpListener::bind(addr)?
        } else {
            TcpListener::bind_reuseport(addr)?
        };
        if k == 0 {
            addr = listener.local_addr()?;
        }
        let shard = p
            .shard(core)
            .ok_or_else(|| io::Error::other(format!("{p:?} has nothing on core {core}")))?;
        svc.listening.fetch_add(1, Ordering::SeqCst);
        // The loop is the listener's first poll: the shard owns it.
        shard
            .spawn(accept_loop(listener, role, svc.clone()))
            .detach();
    }
    Ok(addr)
}

/// Accepts connections, each served by a task of the calling partition,
/// until the service is asked to stop; then drops the listener (new
/// connections are refused) and leaves the open ones to finish.
async fn accept_loop(listener: TcpListener, role: Role, svc: Arc<Svc>) {
    loop {
        // The stop first: a flood of connections cannot keep it waiting.
        let accepted = future::or(
            async {
                shutdown::requested().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        match accepted {
            None => break,
            Some(Ok((stream, _peer))) => {
                svc.open.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    stream,
                    buf: Vec::new(),
                    svc: svc.clone(),
                };
                fairloop::spawn(serve(conn, role)).detach();
            }
            Some(Err(e)) => {
                // Out of file descriptors and the like: back off.
                eprintln!("http_service: accept failed: {e}");
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    if svc.listening.fetch_sub(1, Ordering::SeqCst) == 1 {
        println!(
            "http_service: stopped accepting on every listener; finishing {} open connection(s)",
            svc.open.load(Ordering::SeqCst)
        );
    }
}

/// [`serve_conn`], boxed: a connection task may spawn the next one.
fn serve(conn: Conn, role: Role) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_conn(conn, role))
}

/// Serves a connection's requests until it closes, in the calling
/// partition. With a shared port, a request for another partition hands
/// the connection over to it before the request is read. Once the service
/// is asked to stop, the request in flight is the last: it is answered
/// with `Connection: close`, and a connection between requests closes.
async fn serve_conn(mut c: Conn, role: Role) {
    let _ = c.stream.set_nodelay(true);
    loop {
        match next_request_arrives(&mut c).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = c.stream.close().await;
                return;
            }
        }
        if c.svc.route {
            let target = match next_target(&mut c).await {
                Ok(Some(t)) => t,
                Ok(None) | Err(_) => return,
            };
            if target != role {
                // Into the target's shard on this core, or (from the
                // reserved core) into its shards in turn.
                let partition = match target {
                    Role::Health => c.svc.health.clone(),
                    _ => c.svc.api.clone(),
                };
                partition.spawn(serve(c, target)).detach();
                return;
            }
        }
        let req = match read_request(&mut c).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                let body = format!("{e}\n");
                let resp = response("400 Bad Request", "text/plain", body.as_bytes(), false);
                let _ = c.stream.write_all(&resp).await;
                let _ = c.stream.close().await;
                return;
            }
        };
        let reply = handle(&c.svc, &req).await;
        let keep_alive = req.keep_alive && !shutdown::is_requested();
        let resp = response(reply.status, reply.content_type, &reply.body, keep_alive);
        if c.stream.write_all(&resp).await.is_err() || !keep_alive {
            let _ = c.stream.close().await;
            return;
        }
    }
}

/// Waits for the next request to begin: `true` once a byte of it is there
/// (read into the buffer, or, when routing, peeked at so that the partition
/// it is for reads it); `false` if the peer closed, or if the service is
/// asked to stop first. What has arrived already wins over the stop, so a
/// request sent before the stop is served.
async fn next_request_arrives(c: &mut Conn) -> io::Result<bool> {
    if !c.buf.is_empty() {
        return Ok(true);
    }
    if c.svc.route {
        let mut byte = [0u8; 1];
        return Ok(unless_stopping(c.stream.peek(&mut byte))
            .await
            .transpose()?
            .is_some_and(|n| n > 0));
    }
    let mut chunk = [0u8; 4096];
    let n = unless_stopping(c.stream.read(&mut chunk))
        .await
        .transpose()?;
    match n {
        Some(n) if n > 0 => {
            c.buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `f`'s output, or `None` if the service is asked to stop first (`f` is
/// polled first, so an `f` that is ready wins).
async fn unless_stopping<F: Future>(f: F) -> Option<F::Output> {
    future::or(async { Some(f.await) }, async {
        shutdown::requested().await;
        None
    })
    .await
}

/// What the next request on the connection is for, decided from its
/// request line without consuming it; `None` when the peer closed.
async fn next_target(c: &mut Conn) -> io::Result<Option<Role>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = request_line(&c.buf) {
            return Ok(Some(classify(line)));
        }
        if !c.buf.is_empty() {
            // Part of the request was read already (pipelined after the
            // previous one): read on, the buffer travels with a hand-over.
            if !read_more(c).await? {
                return Ok(None);
            }
            continue;
        }
        let mut head = [0u8; 512];
        let n = c.stream.peek(&mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(line) = request_line(&head[..n]) {
            return Ok(Some(classify(line)));
        }
        if n == head.len() {
            // No request line in 512 bytes: let the api reject it.
            return Ok(Some(Role::Api));
        }
        // Only part of the line has arrived. MSG_PEEK keeps returning those
        // bytes (it never reports "would block" while any are there), so
        // look again shortly instead of spinning.
        if Instant::now() > deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        time::sleep(Duration::from_millis(1)).await;
    }
}

/// The request line at the start of `buf`, if it is complete.
fn request_line(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some(&buf[..end])
}

/// Which partition a request line is for.
fn classify(line: &[u8]) -> Role {
    let path = line.split(|&b| b == b' ').nth(1).unwrap_or(b"");
    let path = path.split(|&b| b == b'?').next().unwrap_or(b"");
    match path {
        b"/health" | b"/metrics" => Role::Health,
        _ => Role::Api,
    }
}

/// Reads more bytes into the connection's buffer; `false` at end of stream.
async fn read_more(c: &mut Conn) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    let n = c.stream.read(&mut chunk).await?;
    c.buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
}

/// Reads one request (head and body) off the connection; `None` if the
/// peer closed before sending one. The body, if any, is read and dropped.
async fn read_request(c: &mut Conn) -> io::Result<Option<Request>> {
    let head_len = loop {
        if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if c.buf.len() > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        if !read_more(c).await? {
            return if c.buf.is_empty() {
                Ok(None)
            } else {
                Err(bad("connection closed in the middle of a request"))
            };
        }
    };
    let head =
        std::str::from_utf8(&c.buf[..head_len]).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x is spoken here"));
    }
    // HTTP/1.1 keeps the connection open unless told otherwise; 1.0 the
    // reverse.
    let mut keep_alive = version == "HTTP/1.1";
    let mut body_len = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("malformed header"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().map_err(|_| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked request bodies are not supported"));
        }
    }
    let req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        keep_alive,
    };
    while c.buf.len() < head_len + body_len {
        if !read_more(c).await? {
            return Err(bad("connection closed in the middle of a request body"));
        }
    }
    c.buf.drain(..head_len + body_len);
    Ok(Some(req))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A response before it is written: status, type and body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Answers one request, in the calling partition.
async fn handle(svc: &Svc, req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let route = match path {
        "/work" => 0,
        _ if path.starts_with("/slow/") => 1,
        "/health" => 2,
        "/metrics" => 3,
        _ => 4,
    };
    svc.served[route].fetch_add(1, Ordering::Relaxed);
    if req.method != "GET" {
        return Reply::text("405 Method Not Allowed", "GET only\n");
    }
    // A shard bears its sharded partition's name: "api on core 2".
    let here = || {
        format!(
            "partition {} on core {}",
            fairloop::partition::current()
                .name()
                .unwrap_or_else(|| "root".into()),
            fairloop::core_id()
        )
    };
    match route {
        0 => {
            // Fan out: the sub-tasks stay in this partition (this core's
            // shard of `api`).
            let start = Instant::now();
            let parts: Vec<_> = (0..SUBTASKS)
                .map(|i| fairloop::spawn(async move { burn(SUBTASK_CPU) ^ i as u64 }))
                .collect();
            let mut sum = 0u64;
            for p in parts {
                sum = sum.wrapping_add(p.await.unwrap_or(0));
            }
            let body = format!(
                "did {SUBTASKS} x {SUBTASK_CPU:?} of work in {:?} ({}, checksum {})\n",
                start.elapsed(),
                here(),
                sum % 1000
            );
            Reply::text("200 OK", body)
        }
        1 => match path["/slow/".len()..].parse::<u64>() {
            Ok(ms) if Duration::from_millis(ms) <= SLOW_MAX => {
                println!("http_service: GET /slow/{ms} started ({})", here());
                time::sleep(Duration::from_millis(ms)).await;
                Reply::text("200 OK", format!("slept {ms} ms\n"))
            }
            _ => Reply::text(
                "400 Bad Request",
                format!("try /slow/MS with MS at most {}\n", SLOW_MAX.as_millis()),
            ),
        },
        2 => Reply::text("200 OK", format!("ok ({})\n", here())),
        3 => {
            // The busiest partitions and an "other" row rather than every
            // partition: a service with thousands of tenant partitions
            // must not flood its scraper (nor pay O(partitions) per scrape).
            let cores = svc.handle.core_metrics();
            let rows = metrics_rows(&svc.handle, METRICS_TOP_PARTITIONS);
            let mut body = prometheus(&cores, &rows);
            let names = ["/work", "/slow", "/health", "/metrics", "other"];
            body.push_str(
                "# HELP http_service_requests_total HTTP requests served, by route.\n\
                 # TYPE http_service_requests_total counter\n",
            );
            for (name, n) in names.iter().zip(&svc.served) {
                let _ = writeln!(
                    body,
                    "http_service_requests_total{{route=\"{name}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
            Reply {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: body.into_bytes(),
            }
        }
        _ => Reply::text(
            "404 Not Found",
            "try /work, /slow/MS, /health or /metrics\n",
        ),
    }
}

/// A complete response with a `Content-Length`.
fn response(status: &str, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Keeps the CPU busy for `d`, as a request handler doing real work would;
/// returns a number that depends on the work done.
fn burn(d: Duration) -> u64 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < d {
        std::hint::spin_loop();
        spins += 1;
    }
    spins
}

/// The partitions `/metrics` lists: the `n` busiest, where a sharded
/// partition counts as one (by the busy time of all its shards) and is
/// listed shard by shard, each shard with its core, so that
/// `sum by (partition)` adds up to the whole and no figure is counted
/// twice.
///
/// It reads the cores' leaderboards (`Handle::top_partitions`, the 64
/// busiest partitions of each core: O(cores), whatever the number of
/// partitions) and completes each sharded partition found there with the
/// shards that were not on a board (O(its cores)).
pub fn metrics_rows(handle: &Handle, n: usize) -> Vec<PartitionMetrics> {
    // Rows by the partition they count for: a shard's sharded partition,
    // or the partition itself.
    let mut units: BTreeMap<u64, Vec<PartitionMetrics>> = BTreeMap::new();
    for row in handle.top_partitions(usize::MAX) {
        units
            .entry(row.shard_of.unwrap_or(row.id))
            .or_default()
            .push(row);
    }
    for (id, rows) in units.iter_mut() {
        let Some(whole) = handle.partition(*id).filter(|p| p.is_sharded()) else {
            continue;
        };
        *rows = whole
            .cores()
            .into_iter()
            .filter_map(|core| whole.shard(core))
            .map(|shard| shard.metrics())
            .collect();
    }
    let mut units: Vec<Vec<PartitionMetrics>> = units.into_values().collect();
    // Busiest first; ties keep the order of ids (the sort is stable).
    units.sort_by_key(|rows| std::cmp::Reverse(rows.iter().map(|r| r.busy).sum::<Duration>()));
    units.into_iter().take(n).flatten().collect()
}

// ---- /metrics: the Prometheus text exposition format -----------------------

/// Partitions `/metrics` lists by name: the busiest (a sharded partition
/// counting once, listed shard by shard); the rest are summed in a
/// `partition="other"` row.
pub const METRICS_TOP_PARTITIONS: usize = 20;

/// Renders metrics in the Prometheus text exposition format (version
/// 0.0.4): per-core series labelled `core="i"`, per-partition series of
/// `partitions` labelled `partition="name"` (`root` for a core's root
/// partition) and `core="i"` (the core that owns it now; a sharded
/// partition's shards bear its name and differ by core), and a
/// `partition="other"` row with the polls and busy time of every
/// partition not listed (the cores' totals less the listed ones').
pub fn prometheus(core_metrics: &[CoreMetrics], partitions: &[PartitionMetrics]) -> String {
    let mut out = String::new();
    let cores = core_metrics.len() as u64;
    let core_label = |c: usize| format!("core=\"{c}\"");

    type CoreSeries = fn(&fairloop::metrics::CoreMetrics) -> String;
    let core_series: [(&str, &str, &str, CoreSeries); 8] = [
        (
            "fairloop_core_busy_seconds_total",
            "counter",
            "Time the core spent running scheduling turns.",
            |c| secs(c.busy),
        ),
        (
            "fairloop_core_polls_total",
            "counter",
            "Task polls on the core.",
            |c| c.polls.to_string(),
        ),
        (
            "fairloop_core_parks_total",
            "counter",
            "Times the core blocked (epoll_wait or io_uring_enter) for lack of work.",
            |c| c.parks.to_string(),
        ),
        (
            "fairloop_core_remote_wakes_total",
            "counter",
            "Tasks that reached the core from another thread.",
            |c| c.remote_wakes.to_string(),
        ),
        (
            "fairloop_core_pinned",
            "gauge",
            "1 if the core's thread is pinned to its CPU.",
            |c| u8::from(c.pinned).to_string(),
        ),
        (
            "fairloop_core_io_uring",
            "gauge",
            "1 if the core serves stream sockets through its own io_uring.",
            |c| u8::from(c.io_uring).to_string(),
        ),
        (
            "fairloop_core_ring_completions_total",
            "counter",
            "Stream reads and writes completed on the core's io_uring.",
            |c| c.ring_completions.to_string(),
        ),
        (
            "fairloop_core_pool_misses_total",
            "counter",
            "Stream reads that found the receive-buffer pool empty.",
            |c| c.pool_misses.to_string(),
        ),
    ];
    for (name, kind, help, value) in core_series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for c in core_metrics {
            let _ = writeln!(out, "{name}{{{}}} {}", core_label(c.core), value(c));
        }
    }

    let labels = |p: &fairloop::metrics::PartitionMetrics| {
        let name = match &p.name {
            Some(n) => escape(n),
            None if p.id < cores => "root".to_owned(),
            None => format!("anonymous-{}", p.id),
        };
        format!("partition=\"{name}\",{}", core_label(p.core))
    };
    type PartSeries = fn(&fairloop::metrics::PartitionMetrics) -> String;
    let part_series: [(&str, &str, &str, PartSeries); 8] = [
        (
            "fairloop_partition_polls_total",
            "counter",
            "Task polls in the partition.",
            |p| p.polls.to_string(),
        ),
        (
            "fairloop_partition_busy_seconds_total",
            "counter",
            "CPU time the partition's polls took.",
            |p| secs(p.busy),
        ),
        (
            "fairloop_partition_long_polls_total",
            "counter",
            "Polls that ran longer than the stall threshold.",
            |p| p.long_polls.to_string(),
        ),
        (
            "fairloop_partition_migrations_total",
            "counter",
            "Times the partition moved to another core.",
            |p| p.migrations.to_string(),
        ),
        (
            "fairloop_partition_sched_delay_max_seconds",
            "gauge",
            "Largest time from runnable to polled.",
            |p| secs(p.sched_delay_max),
        ),
        (
            "fairloop_partition_tasks",
            "gauge",
            "Live tasks in the partition.",
            |p| p.tasks.to_string(),
        ),
        (
            "fairloop_partition_queued",
            "gauge",
            "Tasks waiting to run.",
            |p| p.queued.to_string(),
        ),
        (
            "fairloop_partition_shares",
            "gauge",
            "The partition's CPU shares.",
            |p| p.shares.to_string(),
        ),
    ];
    let polls: u64 = core_metrics.iter().map(|c| c.polls).sum();
    let busy: Duration = core_metrics.iter().map(|c| c.busy).sum();
    let other = fairloop::metrics::PartitionMetrics {
        polls: polls.saturating_sub(partitions.iter().map(|p| p.polls).sum()),
        busy: busy.saturating_sub(partitions.iter().map(|p| p.busy).sum()),
        ..Default::default()
    };
    for (name, kind, help, value) in part_series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in partitions {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(p), value(p));
        }
        if name.ends_with("_polls_total") || name.ends_with("_busy_seconds_total") {
            let _ = writeln!(out, "{name}{{partition=\"other\"}} {}", value(&other));
        }
    }
    let name = "fairloop_partition_sched_delay_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from becoming runnable to being polled, by quantile.\n# TYPE {name} gauge"
    );
    for p in partitions {
        for (q, d) in [("0.5", p.sched_delay_p50), ("0.99", p.sched_delay_p99)] {
            let _ = writeln!(out, "{name}{{{},quantile=\"{q}\"}} {}", labels(p), secs(d));
        }
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.9}", d.as_secs_f64())
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// ---- a blocking client, for the self-test ----------------------------------

/// Sends `GET path` on a keep-alive connection and reads the response:
/// its status code and body.
pub fn get(stream: &mut std::net::TcpStream, path: &str) -> io::Result<(u16, String)> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: fairloop\r\n\r\n")?;
    http_client::read_response(stream)
}

/// Connects with read and write timeouts of `limit`.
pub fn connect(addr: SocketAddr, limit: Duration) -> io::Result<std::net::TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// What a load run saw.
pub struct LoadReport {
    /// `/work` requests answered with 200.
    pub work_done: u64,
    /// `/work` requests that failed (the client then reconnects).
    pub work_errors: u64,
    /// How long the load ran.
    pub elapsed: Duration,
    /// The latency of every `/health` probe that succeeded.
    pub health: Vec<Duration>,
    /// Why the others failed.
    pub health_failures: Vec<String>,
}

/// Saturates `/work` at `api` with `clients` keep-alive connections (one
/// thread each) for `run_for`, while probing `/health` at `health` every
/// `probe_every`, each probe on a fresh connection and allowed
/// `probe_limit`.
pub fn load(
    api: SocketAddr,
    health: SocketAddr,
    clients: usize,
    run_for: Duration,
    probe_every: Duration,
    probe_limit: Duration,
) -> LoadReport {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut done, mut errors) = (0u64, 0u64);
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    let s = match &mut conn {
                        Some(s) => s,
                        None => match connect(api, Duration::from_secs(30)) {
                            Ok(s) => conn.insert(s),
                            Err(_) => {
                                errors += 1;
                                thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        },
                    };
                    match get(s, "/work") {
                        Ok((200, _)) => done += 1,
                        _ => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (done, errors)
            })
        })
        .collect();

    // Let the flood build up, then probe.
    thread::sleep(Duration::from_millis(100).min(run_for / 4));
    let mut health_ok = Vec::new();
    let mut health_failures = Vec::new();
    let mut next = Instant::now();
    while start.elapsed() < run_for {
        let t0 = Instant::now();
        let result = connect(health, probe_limit).and_then(|mut s| get(&mut s, "/health"));
        let took = t0.elapsed();
        match result {
            Ok((200, body)) if body.starts_with("ok") => health_ok.push(took),
            Ok((status, body)) => {
                health_failures.push(format!("status {status}, body {body:?}, after {took:?}"))
            }
            Err(e) => health_failures.push(format!("{e} after {took:?}")),
        }
        next += probe_every;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let (mut work_done, mut work_errors) = (0, 0);
    for w in workers {
        let (d, e) = w.join().expect("client thread panicked");
        work_done += d;
        work_errors += e;
    }
    LoadReport {
        work_done,
        work_errors,
        elapsed,
        health: health_ok,
        health_failures,
    }
}

/// The `q`-quantile of `samples` by nearest rank; zero if empty.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ---- main ------------------------------------------------------------------

fn main() -> io::Result<()> {
    run(std::env::args().skip(1).collect())
}

/// The program, given its arguments (`tests/http_service.rs` runs it in a
/// child process).
pub fn run(args: Vec<String>) -> io::Result<()> {
    let mut health_core = HealthCore::Reserved;
    let mut shared_port = false;
    let mut cores = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let mut pin_cores = true;
    let mut api = None;
    let mut health = None;
    let mut selftest = None;
    let mut args = args.into_iter().peekable();
    let usage = "usage: http_service [--health-core reserved|same] [--shared-port] [--cores N] \
                 [--no-pin] [--api ADDR] [--health ADDR] [--selftest [SECONDS]]";
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs {what}\n{usage}")))
        };
        match arg.as_str() {
            "--health-core" => {
                health_core = match value("reserved or same").as_str() {
                    "reserved" => HealthCore::Reserved,
                    "same" => HealthCore::Same,
                    other => fail(&format!("--health-core {other}: say reserved or same")),
                }
            }
            "--shared-port" => shared_port = true,
            "--cores" => {
                cores = value("a number")
                    .parse()
                    .unwrap_or_else(|_| fail("--cores needs a whole number"))
            }
            "--no-pin" => pin_cores = false,
            "--api" => api = Some(addr(&value("an address"))),
            "--health" => health = Some(addr(&value("an address"))),
            "--selftest" => {
                let secs = match args.peek().and_then(|s| s.parse::<f64>().ok()) {
                    Some(s) => {
                        args.next();
                        s
                    }
                    None => 2.0,
                };
                selftest = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            other => fail(&format!("unknown argument {other}\n{usage}")),
        }
    }
    let default = |port: u16| {
        let port = if selftest.is_some() { 0 } else { port };
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let api = api.unwrap_or_else(|| default(8080));
    let ports = if shared_port {
        Ports::Shared(api)
    } else {
        Ports::Separate {
            api,
            health: health.unwrap_or_else(|| default(8081)),
        }
    };
    let cfg = Config {
        cores,
        pin_cores,
        health_core,
        ports,
    };
    let svc = start(&cfg)?;
    // Serving until told to stop: from here on SIGTERM and SIGINT are ours
    // to handle, before anyone learns the addresses.
    let mode = match selftest {
        None => Mode::Serve(StopSignals::new()?),
        Some(run_for) => Mode::Selftest(run_for),
    };
    println!(
        "http_service: {cores} cores, health core: {health_core:?}; /work on {}, /health and \
         /metrics on {}{}",
        svc.api_addr,
        svc.health_addr,
        if shared_port {
            " (one port, routed by peeking at the request line)"
        } else {
            ""
        }
    );
    match mode {
        Mode::Serve(signals) => {
            serve_until_signal(svc, signals);
            Ok(())
        }
        Mode::Selftest(run_for) => run_selftest(svc, run_for),
    }
}

/// What the program does once the service is up.
enum Mode {
    /// Serve until SIGTERM or SIGINT.
    Serve(StopSignals),
    /// Load the service for this long, then stop it.
    Selftest(Duration),
}

/// Waits for SIGTERM or SIGINT, then stops the service gracefully.
fn serve_until_signal(svc: Service, mut signals: StopSignals) {
    let why = future::block_on(signals.recv());
    println!("http_service: {why}: shutting down gracefully (deadline {SHUTDOWN_DEADLINE:?})");
    let report = svc.shutdown(SHUTDOWN_DEADLINE);
    println!(
        "http_service: stopped: {} task(s) finished, {} cancelled at the deadline",
        report.completed, report.cancelled
    );
}

/// The self-test: floods `/work` while probing `/health`, prints what it
/// saw, stops the service gracefully; exits with status 1 if a probe
/// failed or a task had to be cancelled.
fn run_selftest(svc: Service, run_for: Duration) -> io::Result<()> {
    let clients = 64;
    println!(
        "selftest: {clients} clients flood /work ({SUBTASKS} x {SUBTASK_CPU:?} of CPU each) for \
         {run_for:?}; /health probed every 10 ms on a fresh connection"
    );
    let r = load(
        svc.api_addr,
        svc.health_addr,
        clients,
        run_for,
        Duration::from_millis(10),
        Duration::from_secs(5),
    );
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!(
        "/health: {} probes answered, latency p50 {}  p99 {}  max {}; {} failed",
        r.health.len(),
        ms(quantile(&r.health, 0.50)),
        ms(quantile(&r.health, 0.99)),
        ms(quantile(&r.health, 1.0)),
        r.health_failures.len(),
    );
    println!(
        "/work: {} requests in {:.2} s = {:.0} requests/s ({} errors)",
        r.work_done,
        r.elapsed.as_secs_f64(),
        r.work_done as f64 / r.elapsed.as_secs_f64(),
        r.work_errors
    );

    // /metrics, fetched over HTTP like a scraper would.
    let metrics = connect(svc.health_addr, Duration::from_secs(5))
        .and_then(|mut s| get(&mut s, "/metrics"))
        .map(|(_, body)| body)?;
    println!(
        "/metrics: {} lines; per partition (busy, polls, sched delay p99 / max):",
        metrics.lines().count()
    );
    let m = svc.metrics();
    let row = |label: &str, p: &PartitionMetrics| {
        println!(
            "  {label:<22} busy {:>8.3} s  polls {:>9}  sched delay p99 {:>9}  max {:>9}",
            p.busy.as_secs_f64(),
            p.polls,
            ms(p.sched_delay_p99),
            ms(p.sched_delay_max),
        )
    };
    for p in m.partitions.iter().filter(|p| p.polls > 0) {
        let name = p.name.as_deref().unwrap_or("root");
        row(&format!("{name} (core {})", p.core), p);
    }
    for whole in [&svc.api, &svc.health]
        .into_iter()
        .filter(|p| p.is_sharded())
    {
        let name = whole.name().unwrap_or_default();
        row(
            &format!("{name} (all {} shards)", whole.cores().len()),
            &whole.metrics(),
        );
    }
    let ok = r.health_failures.is_empty() && !r.health.is_empty() && r.work_done > 0;
    for f in r.health_failures.iter().take(5) {
        println!("  failed probe: {f}");
    }
    // The load's connections are closed; what is left ends on the request.
    let report = svc.shutdown(SHUTDOWN_DEADLINE);
    println!(
        "http_service: stopped: {} task(s) finished, {} cancelled at the deadline",
        report.completed, report.cancelled
    );
    if !ok || !report.drained || report.cancelled > 0 {
        eprintln!("selftest FAILED");
        std::process::exit(1);
    }
    println!("selftest passed");
    Ok(())
}

fn addr(s: &str) -> SocketAddr {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| fail(&format!("{s}: not an address")))
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2);
}
