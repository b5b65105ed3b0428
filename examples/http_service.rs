//! The 2017 proposal's story as a service: a tiny HTTP/1.1 server whose
//! `/health` keeps answering while `/work` is flooded.
//!
//! Routes (`GET` only; keep-alive; every response has a `Content-Length`):
//!
//! * `/work` fans out into [`SUBTASKS`] CPU-heavy sub-tasks (each burns
//!   [`SUBTASK_CPU`]) with `fairloop::spawn`, in an `api` partition, and
//!   answers when all are done;
//! * `/health` answers `ok`, from a `healthcheck` partition;
//! * `/metrics` serves per-core and per-partition metrics in the Prometheus
//!   text exposition format (also from the `healthcheck` partition).
//!
//! The server is sharded: every unreserved core `k` runs an `api-k`
//! partition (and, with `--health-core same`, a `healthcheck-k` partition
//! beside it with a 1 ms latency bound, so it is switched to within about a
//! millisecond however busy `api-k` is). With `--health-core reserved` the
//! runtime reserves its highest core (`Builder::reserve_core`) for a single
//! `healthcheck` partition placed there with `Placement::Reserved`, and
//! nothing else runs on that core.
//!
//! Two ways to listen:
//!
//! * separate ports (default): the api port (one `SO_REUSEPORT` listener
//!   per `api-k`) and the health port (one listener per `healthcheck-k`, or
//!   one on the reserved core). Each listener is owned by its partition, so
//!   its readiness wakes that partition and no other;
//! * `--shared-port`: one port for everything. A small `acceptor` partition
//!   (one per core, or one on the reserved core) accepts each connection,
//!   *peeks* at its request line with `TcpStream::peek` (`MSG_PEEK`) and
//!   hands the connection to the `healthcheck` or the `api` partition
//!   before any byte is consumed. A keep-alive connection is re-routed the
//!   same way whenever its next request belongs elsewhere. This is the
//!   answer to the proposal's "black hole", where a healthcheck partition
//!   waited for bytes that a callback of the flooded partition had to read.
//!
//! ```text
//! cargo run --release --example http_service -- [--health-core same|reserved]
//!     [--shared-port] [--cores N] [--no-pin] [--api ADDR] [--health ADDR]
//!     [--selftest [SECONDS]]
//! curl -s localhost:8080/work; curl -s localhost:8081/health; curl -s localhost:8081/metrics
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
//! throughput and the partitions' metrics, and exits with status 0 (1 if a
//! probe failed).

use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/http_client.rs"]
mod http_client;

use fairloop::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use fairloop::net::{TcpListener, TcpStream};
use fairloop::partition::{Partition, Placement};
use fairloop::{time, Handle, Runtime};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// Sub-tasks one `/work` request fans out into.
pub const SUBTASKS: usize = 8;
/// CPU each sub-task burns.
pub const SUBTASK_CPU: Duration = Duration::from_micros(200);
/// The reservation (and partition name) of the reserved healthcheck core.
const HEALTHCHECK: &str = "healthcheck";
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

// ---- configuration ---------------------------------------------------------

/// Where `/health` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCore {
    /// A `healthcheck-k` partition with a 1 ms latency bound on every core
    /// `k` that runs `api-k`.
    Same,
    /// One `healthcheck` partition on a core reserved for it.
    Reserved,
}

/// How the service listens.
#[derive(Clone, Debug)]
pub enum Ports {
    /// An api port and a health port, each served by its own partitions.
    Separate {
        /// The api port (`/work`).
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

/// A running service; dropping it shuts the runtime down.
pub struct Service {
    /// Where `/work` requests go.
    pub api_addr: SocketAddr,
    /// Where `/health` requests go (the same as `api_addr` with a shared
    /// port).
    pub health_addr: SocketAddr,
    rt: Runtime,
}

impl Service {
    /// A snapshot of the runtime's metrics.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.rt.metrics()
    }
}

/// What a request is for, and so which partition should serve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `/work` and anything unknown: the `api` partition.
    Api,
    /// `/health` and `/metrics`: the `healthcheck` partition.
    Health,
    /// A connection not yet routed (shared port only).
    Acceptor,
}

/// The partitions that serve one unreserved core.
struct Shard {
    api: Partition,
    health: Partition,
}

/// What every connection task shares.
struct Svc {
    handle: Handle,
    shards: Vec<Shard>,
    /// Whether connections are routed by peeking (shared port).
    route: bool,
    /// Requests served, by route: `/work`, `/health`, `/metrics`, others.
    served: [AtomicU64; 4],
    /// Round robin over the shards, for connections accepted on the
    /// reserved core.
    next_shard: AtomicUsize,
}

/// One connection and what has been read from it but not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The shard whose partitions serve it.
    shard: usize,
    svc: Arc<Svc>,
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
    let shard_cores: Vec<usize> = rt
        .metrics()
        .cores
        .iter()
        .filter(|c| c.reserved_for.is_none())
        .map(|c| c.core)
        .collect();
    let ports = cfg.ports.clone();
    let (api_addr, health_addr) = rt.block_on(async move {
        // The partitions: one api (and healthcheck) partition per core.
        let reserved_hc = if reserved {
            Some(
                Partition::builder()
                    .name(HEALTHCHECK)
                    .placement(Placement::Reserved(HEALTHCHECK.into()))
                    .build()?,
            )
        } else {
            None
        };
        let mut shards = Vec::new();
        for &core in &shard_cores {
            let api = Partition::builder()
                .name(&format!("api-{core}"))
                .placement(Placement::Core(core))
                .build()?;
            let health = match &reserved_hc {
                Some(hc) => hc.clone(),
                None => Partition::builder()
                    .name(&format!("healthcheck-{core}"))
                    .latency(Duration::from_millis(1))
                    .placement(Placement::Core(core))
                    .build()?,
            };
            shards.push(Shard { api, health });
        }
        let svc = Arc::new(Svc {
            handle,
            shards,
            route: matches!(ports, Ports::Shared(_)),
            served: Default::default(),
            next_shard: AtomicUsize::new(0),
        });

        match ports {
            Ports::Separate { api, health } => {
                // Each listener is owned by (first polled from) the
                // partition that serves it.
                let api = listen_sharded(api, svc.shards.len())?;
                let api_addr = api[0].local_addr()?;
                for (shard, l) in api.into_iter().enumerate() {
                    let p = &svc.shards[shard].api;
                    p.spawn(accept_loop(l, Role::Api, Some(shard), svc.clone()))
                        .detach();
                }
                let health_addr = if let Some(hc) = &reserved_hc {
                    let l = TcpListener::bind(health)?;
                    let addr = l.local_addr()?;
                    hc.spawn(accept_loop(l, Role::Health, Some(0), svc.clone()))
                        .detach();
                    addr
                } else {
                    let health = listen_sharded(health, svc.shards.len())?;
                    let addr = health[0].local_addr()?;
                    for (shard, l) in health.into_iter().enumerate() {
                        let p = &svc.shards[shard].health;
                        p.spawn(accept_loop(l, Role::Health, Some(shard), svc.clone()))
                            .detach();
                    }
                    addr
                };
                Ok::<_, io::Error>((api_addr, health_addr))
            }
            Ports::Shared(addr) => {
                if reserved {
                    // One acceptor, on the reserved core: a /health
                    // connection never touches a flooded core; /work
                    // connections are dealt out over the shards.
                    let acceptor = Partition::builder()
                        .name("acceptor")
                        .placement(Placement::Reserved(HEALTHCHECK.into()))
                        .build()?;
                    let l = TcpListener::bind(addr)?;
                    let addr = l.local_addr()?;
                    acceptor
                        .spawn(accept_loop(l, Role::Acceptor, None, svc.clone()))
                        .detach();
                    Ok((addr, addr))
                } else {
                    // One acceptor per core, beside that core's partitions.
                    let ls = listen_sharded(addr, svc.shards.len())?;
                    let addr = ls[0].local_addr()?;
                    for (shard, l) in ls.into_iter().enumerate() {
                        let acceptor = Partition::builder()
                            .name(&format!("acceptor-{}", shard_cores[shard]))
                            .latency(Duration::from_millis(1))
                            .placement(Placement::Core(shard_cores[shard]))
                            .build()?;
                        acceptor
                            .spawn(accept_loop(l, Role::Acceptor, Some(shard), svc.clone()))
                            .detach();
                    }
                    Ok((addr, addr))
                }
            }
        }
    })?;
    Ok(Service {
        api_addr,
        health_addr,
        rt,
    })
}

/// `n` `SO_REUSEPORT` listeners on one port (a port of 0 becomes the port
/// the first one got).
fn listen_sharded(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let first = TcpListener::bind_reuseport(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(TcpListener::bind_reuseport(addr)?);
    }
    Ok(all)
}

/// Accepts connections forever; each is served by a task of the calling
/// partition. `shard` is the shard whose partitions serve them (`None`:
/// deal them out round robin).
async fn accept_loop(listener: TcpListener, role: Role, shard: Option<usize>, svc: Arc<Svc>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let shard = shard.unwrap_or_else(|| {
                    svc.next_shard.fetch_add(1, Ordering::Relaxed) % svc.shards.len()
                });
                let conn = Conn {
                    stream,
                    buf: Vec::new(),
                    shard,
                    svc: svc.clone(),
                };
                fairloop::spawn(serve(conn, role)).detach();
            }
            Err(e) => {
                // Out of file descriptors and the like: back off.
                eprintln!("http_service: accept failed: {e}");
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// [`serve_conn`], boxed: a connection task may spawn the next one.
fn serve(conn: Conn, role: Role) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_conn(conn, role))
}

/// Serves a connection's requests until it closes, in the calling
/// partition. With a shared port, a request for another partition hands
/// the connection over to it before the request is read.
async fn serve_conn(mut c: Conn, role: Role) {
    let _ = c.stream.set_nodelay(true);
    loop {
        if c.svc.route {
            let target = match next_target(&mut c).await {
                Ok(Some(t)) => t,
                Ok(None) | Err(_) => return,
            };
            if target != role {
                let shard = &c.svc.shards[c.shard];
                let partition = match target {
                    Role::Health => shard.health.clone(),
                    _ => shard.api.clone(),
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
                return;
            }
        };
        let resp = handle(&c.svc, &req).await;
        if c.stream.write_all(&resp).await.is_err() || !req.keep_alive {
            let _ = c.stream.close().await;
            return;
        }
    }
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

/// Answers one request, in the calling partition.
async fn handle(svc: &Svc, req: &Request) -> Vec<u8> {
    let path = req.path.split('?').next().unwrap_or("");
    let route = match path {
        "/work" => 0,
        "/health" => 1,
        "/metrics" => 2,
        _ => 3,
    };
    svc.served[route].fetch_add(1, Ordering::Relaxed);
    if req.method != "GET" {
        return response(
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            req.keep_alive,
        );
    }
    let here = || {
        format!(
            "partition {} on core {}",
            fairloop::partition::current()
                .name()
                .unwrap_or_else(|| "root".into()),
            fairloop::core_id()
        )
    };
    match path {
        "/work" => {
            // Fan out: the sub-tasks stay in this (the api) partition.
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
            response("200 OK", "text/plain", body.as_bytes(), req.keep_alive)
        }
        "/health" => {
            let body = format!("ok ({})\n", here());
            response("200 OK", "text/plain", body.as_bytes(), req.keep_alive)
        }
        "/metrics" => {
            // The busiest partitions and an "other" row rather than every
            // partition: a service with thousands of tenant partitions
            // must not flood its scraper (nor pay O(partitions) per scrape).
            let cores = svc.handle.core_metrics();
            let top = svc.handle.top_partitions(METRICS_TOP_PARTITIONS);
            let mut body = prometheus(&cores, &top);
            let names = ["/work", "/health", "/metrics", "other"];
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
            response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                req.keep_alive,
            )
        }
        _ => response(
            "404 Not Found",
            "text/plain",
            b"try /work, /health or /metrics\n",
            req.keep_alive,
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

// ---- /metrics: the Prometheus text exposition format -----------------------

/// Partitions `/metrics` lists by name: the busiest; the rest are summed in
/// a `partition="other"` row.
pub const METRICS_TOP_PARTITIONS: usize = 20;

/// Renders metrics in the Prometheus text exposition format (version
/// 0.0.4): per-core series labelled `core="i"`, per-partition series of
/// `partitions` labelled `partition="name"` (`root` for a core's root
/// partition) and `core="i"` (the core that owns it now), and a
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
    let mut health_core = HealthCore::Same;
    let mut shared_port = false;
    let mut cores = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let mut pin_cores = true;
    let mut api = None;
    let mut health = None;
    let mut selftest = None;
    let mut args = std::env::args().skip(1).peekable();
    let usage = "usage: http_service [--health-core same|reserved] [--shared-port] [--cores N] \
                 [--no-pin] [--api ADDR] [--health ADDR] [--selftest [SECONDS]]";
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs {what}\n{usage}")))
        };
        match arg.as_str() {
            "--health-core" => {
                health_core = match value("same or reserved").as_str() {
                    "same" => HealthCore::Same,
                    "reserved" => HealthCore::Reserved,
                    other => fail(&format!("--health-core {other}: say same or reserved")),
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

    let Some(run_for) = selftest else {
        loop {
            thread::park();
        }
    };
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
    for p in m.partitions.iter().filter(|p| p.polls > 0) {
        println!(
            "  {:<16} core {}  busy {:>8.3} s  polls {:>9}  sched delay p99 {:>9}  max {:>9}",
            p.name.as_deref().unwrap_or("root"),
            p.core,
            p.busy.as_secs_f64(),
            p.polls,
            ms(p.sched_delay_p99),
            ms(p.sched_delay_max),
        );
    }
    let ok = r.health_failures.is_empty() && !r.health.is_empty() && r.work_done > 0;
    for f in r.health_failures.iter().take(5) {
        println!("  failed probe: {f}");
    }
    drop(svc);
    if !ok {
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
