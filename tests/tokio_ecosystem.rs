//! The tokio ecosystem on fairloop (feature `tokio-compat`,
//! `Builder::tokio_compat(true)`): libraries written for tokio, used as
//! they are inside fairloop tasks, over fairloop's own sockets where they
//! take any `AsyncRead + AsyncWrite`, and over tokio's where they insist on
//! them.
//!
//! * tokio's own APIs in a fairloop task, on each core: `tokio::spawn` and
//!   `Handle::current().spawn` run on the caller's core thread (in the
//!   `tokio` partition), `tokio::time::{sleep, timeout}`,
//!   `tokio::task::yield_now`, and `spawn_blocking` off the core threads;
//! * an axum 0.8 `Router` served by hyper's HTTP/1 server on fairloop
//!   sockets, with handlers that sleep on tokio's timer, `tokio::spawn`
//!   (and check where the spawned task ran), `spawn_blocking`, take a
//!   query and a JSON body, and a route behind tower's `TimeoutLayer`
//!   (one request in time, one cut off with a 408);
//! * reqwest (no default features) in a fairloop partition: 200 requests
//!   to a fairloop HTTP server over keep-alive (at most 2 connections);
//! * `tokio::net::TcpStream` to a fairloop `TcpListener`, and a fairloop
//!   `TcpStream` to a `tokio::net::TcpListener`: exact bytes echoed;
//! * tokio-util's `LinesCodec` (`Framed`) over fairloop streams;
//! * TLS 1.2 and 1.3 with tokio-rustls (on *ring*) over fairloop streams,
//!   with a self-signed certificate for `localhost` made by rcgen;
//! * hyper's HTTP/2 server and client over fairloop streams, on
//!   `FairloopExecutor` and `FairloopTimer`: concurrent requests on one
//!   connection.
//!
//! Servers and clients sit in partitions on different cores, so every
//! exchange also crosses cores. Every test is bounded by `with_timeout`.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use common::with_timeout;
use fairloop::net::hyper::{FairloopExecutor, FairloopTimer};
use fairloop::net::{TcpListener, TcpStream};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{JoinHandle, Runtime};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_util::codec::{Framed, LinesCodec};
use tower::ServiceBuilder;

/// The bound on each test, in seconds.
const T: u64 = 60;

/// How long a request behind the timeout layer may take.
const ROUTE_TIMEOUT: Duration = Duration::from_millis(300);

/// The prefix of every fairloop core thread's name.
const CORE_THREAD: &str = "fairloop-core-";

/// A 2-core runtime with tokio's APIs on (unpinned: CI has 2 CPUs and runs
/// tests in parallel).
fn rt() -> Runtime {
    Runtime::builder()
        .cores(2)
        .pin_cores(false)
        .tokio_compat(true)
        .build()
        .expect("build a runtime with tokio_compat(true)")
}

/// The calling thread's name.
fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

/// Spawns `f` into a new partition `name` pinned to `core`.
fn spawn_on<F>(name: &str, core: usize, f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Partition::builder()
        .name(name)
        .placement(Placement::Core(core))
        .build()
        .unwrap_or_else(|e| panic!("partition {name} on core {core}: {e}"))
        .spawn(f)
}

/// The bytes of a test stream: a pattern that does not repeat every 256
/// bytes.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ seed.wrapping_mul(97)) as u8)
        .collect()
}

/// A fairloop listener on a free loopback port.
fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a fairloop listener");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

/// Serves HTTP/1.1 with hyper on every connection `listener` accepts (each
/// in its own fairloop task, in the caller's partition), counting them in
/// `accepts`. Runs until the runtime stops.
async fn serve_http1<S, B>(listener: TcpListener, service: S, accepts: Arc<AtomicUsize>)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        accepts.fetch_add(1, Ordering::SeqCst);
        let service = service.clone();
        fairloop::spawn(async move {
            stream.set_nodelay(true).expect("nodelay");
            // The fairloop stream goes to hyper as it is: it implements
            // `hyper::rt::{Read, Write}` (feature `hyper`).
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(FairloopTimer::new())
                .serve_connection(stream, service);
            if let Err(e) = conn.await {
                if !e.is_incomplete_message() {
                    eprintln!("http1 connection: {e}");
                }
            }
        })
        .detach();
    }
}

/// One HTTP/1.1 request on a fresh connection with hyper's client (which
/// needs no tokio runtime): the status and the body.
async fn http1_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(stream)
        .await
        .expect("HTTP/1 handshake");
    fairloop::spawn(async move {
        let _ = conn.await;
    })
    .detach();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if json.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(json.unwrap_or("").to_owned())))
        .expect("a request");
    let resp = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the response body")
        .to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    )
}

// ---- tokio's own APIs --------------------------------------------------------

/// What `tokio_apis_inside_fairloop_tasks` saw on one core.
#[derive(Debug)]
struct TokioApis {
    caller: String,
    spawned: String,
    spawned_partition: Option<String>,
    via_handle: String,
    blocking: String,
    slept: Duration,
    timed_out: bool,
    after: String,
    partition_after: Option<String>,
}

#[test]
fn tokio_apis_inside_fairloop_tasks() {
    with_timeout(T, || {
        let rt = rt();
        let seen = rt.block_on(async {
            let tasks: Vec<_> = (0..2)
                .map(|core| {
                    spawn_on(&format!("user-{core}"), core, async {
                        let caller = thread_name();
                        let (spawned, spawned_partition) = tokio::spawn(async {
                            tokio::task::yield_now().await;
                            (thread_name(), partition::current().name())
                        })
                        .await
                        .expect("a tokio::spawn'ed task");
                        let via_handle = tokio::runtime::Handle::current()
                            .spawn(async { thread_name() })
                            .await
                            .expect("a task spawned on Handle::current()");
                        let blocking = tokio::task::spawn_blocking(|| {
                            std::thread::sleep(Duration::from_millis(5));
                            thread_name()
                        })
                        .await
                        .expect("a spawn_blocking closure");
                        tokio::task::yield_now().await;
                        let t0 = Instant::now();
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        let slept = t0.elapsed();
                        let timed_out = tokio::time::timeout(
                            Duration::from_millis(10),
                            std::future::pending::<()>(),
                        )
                        .await
                        .is_err();
                        TokioApis {
                            caller,
                            spawned,
                            spawned_partition,
                            via_handle,
                            blocking,
                            slept,
                            timed_out,
                            after: thread_name(),
                            partition_after: partition::current().name(),
                        }
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.expect("the user task"));
            }
            seen
        });
        for (core, s) in seen.iter().enumerate() {
            println!("core {core}: {s:?}");
            assert_eq!(s.caller, format!("{CORE_THREAD}{core}"), "{s:?}");
            assert_eq!(
                s.spawned, s.caller,
                "tokio::spawn ran on another thread: {s:?}"
            );
            assert_eq!(s.spawned_partition.as_deref(), Some("tokio"), "{s:?}");
            assert_eq!(s.via_handle, s.caller, "Handle::current().spawn: {s:?}");
            assert!(
                !s.blocking.starts_with(CORE_THREAD),
                "spawn_blocking ran on a core thread: {s:?}"
            );
            assert!(s.slept >= Duration::from_millis(30), "{s:?}");
            assert!(s.timed_out, "tokio::time::timeout did not fire: {s:?}");
            assert_eq!(s.after, s.caller, "the task left its core: {s:?}");
            assert_eq!(
                s.partition_after.as_deref(),
                Some(format!("user-{core}").as_str()),
                "the task left its partition: {s:?}"
            );
        }
    });
}

// ---- axum ----------------------------------------------------------------------

#[derive(Deserialize)]
struct SleepQuery {
    ms: u64,
}

#[derive(Deserialize)]
struct Order {
    item: String,
    qty: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Receipt {
    item: String,
    qty: u32,
    total_cents: u64,
}

/// What `GET /spawn` answers.
#[derive(Serialize, Deserialize, Debug)]
struct Spawned {
    handler_thread: String,
    spawned_thread: String,
    value: u64,
}

/// What `GET /blocking` answers.
#[derive(Serialize, Deserialize, Debug)]
struct Blocking {
    handler_thread: String,
    blocking_thread: String,
    sum: u64,
}

/// The app: handlers that use tokio's timer, `tokio::spawn` and
/// `spawn_blocking`, extractors, and two routes behind tower's
/// `TimeoutLayer`.
fn axum_app() -> Router {
    // tower's timeout sleeps on tokio's timer; its `Elapsed` error becomes
    // a response in `HandleErrorLayer` (axum's routes must not fail).
    let behind_timeout = Router::new()
        .route(
            "/timeout/fast",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                "fast enough"
            }),
        )
        .route(
            "/timeout/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        (
                            StatusCode::REQUEST_TIMEOUT,
                            format!("timed out after {ROUTE_TIMEOUT:?}"),
                        )
                    } else {
                        (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}"))
                    }
                }))
                .timeout(ROUTE_TIMEOUT),
        );
    Router::new()
        .route(
            "/sleep",
            get(|Query(q): Query<SleepQuery>| async move {
                let t0 = Instant::now();
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                t0.elapsed().as_millis().to_string()
            }),
        )
        .route(
            "/spawn",
            get(|| async {
                let handler_thread = thread_name();
                let (spawned_thread, value) = tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    (thread_name(), 6 * 7)
                })
                .await
                .expect("the tokio::spawn'ed task");
                Json(Spawned {
                    handler_thread,
                    spawned_thread,
                    value,
                })
            }),
        )
        .route(
            "/blocking",
            get(|| async {
                let handler_thread = thread_name();
                let (blocking_thread, sum) = tokio::task::spawn_blocking(|| {
                    // Blocking for real: on a core thread this would stall
                    // the core.
                    std::thread::sleep(Duration::from_millis(20));
                    (thread_name(), (1..=1000u64).sum())
                })
                .await
                .expect("the spawn_blocking closure");
                Json(Blocking {
                    handler_thread,
                    blocking_thread,
                    sum,
                })
            }),
        )
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("hello, {name}") }),
        )
        .route(
            "/order",
            post(|Json(o): Json<Order>| async move {
                Json(Receipt {
                    total_cents: 250 * u64::from(o.qty),
                    item: o.item,
                    qty: o.qty,
                })
            }),
        )
        .merge(behind_timeout)
}

#[test]
fn axum_router_on_fairloop() {
    with_timeout(T, || {
        let rt = rt();
        rt.block_on(async {
            let (listener, addr) = listener();
            let accepts = Arc::new(AtomicUsize::new(0));
            // The Router is a tower service; hyper-util turns it into a
            // hyper one.
            spawn_on(
                "axum",
                0,
                serve_http1(
                    listener,
                    TowerToHyperService::new(axum_app()),
                    accepts.clone(),
                ),
            )
            .detach();
            spawn_on("client", 1, async move {
                let (status, body) = http1_request(addr, "GET", "/hello/fairloop", None).await;
                assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, fairloop"));

                let (status, body) = http1_request(addr, "GET", "/sleep?ms=50", None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let slept: u64 = body.parse().expect("milliseconds");
                assert!(slept >= 50, "tokio::time::sleep(50 ms) took {slept} ms");
                assert!(slept < 5_000, "tokio::time::sleep(50 ms) took {slept} ms");

                let (status, body) = http1_request(addr, "GET", "/spawn", None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let s: Spawned = serde_json::from_str(&body).expect("JSON from /spawn");
                assert_eq!(s.value, 42);
                assert!(
                    s.handler_thread.starts_with(CORE_THREAD),
                    "the handler ran on {s:?}"
                );
                assert!(
                    s.spawned_thread.starts_with(CORE_THREAD),
                    "the tokio::spawn'ed task ran off the cores: {s:?}"
                );
                assert_eq!(
                    s.spawned_thread, s.handler_thread,
                    "the tokio::spawn'ed task ran on another core: {s:?}"
                );

                let (status, body) = http1_request(addr, "GET", "/blocking", None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let b: Blocking = serde_json::from_str(&body).expect("JSON from /blocking");
                assert_eq!(b.sum, 500_500);
                assert!(
                    !b.blocking_thread.starts_with(CORE_THREAD),
                    "spawn_blocking ran on a core thread: {b:?}"
                );

                let (status, body) =
                    http1_request(addr, "POST", "/order", Some(r#"{"item":"tea","qty":3}"#)).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let r: Receipt = serde_json::from_str(&body).expect("JSON from /order");
                assert_eq!(
                    r,
                    Receipt {
                        item: "tea".into(),
                        qty: 3,
                        total_cents: 750
                    }
                );
                // A body axum cannot parse is the client's fault.
                let (status, _) =
                    http1_request(addr, "POST", "/order", Some(r#"{"item":"tea"}"#)).await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

                let (status, body) = http1_request(addr, "GET", "/timeout/fast", None).await;
                assert_eq!((status, body.as_str()), (StatusCode::OK, "fast enough"));
                let t0 = Instant::now();
                let (status, body) = http1_request(addr, "GET", "/timeout/slow", None).await;
                let took = t0.elapsed();
                assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
                assert_eq!(body, format!("timed out after {ROUTE_TIMEOUT:?}"));
                assert!(
                    took >= ROUTE_TIMEOUT && took < Duration::from_secs(10),
                    "the timeout took {took:?}"
                );

                let (status, _) = http1_request(addr, "GET", "/missing", None).await;
                assert_eq!(status, StatusCode::NOT_FOUND);
            })
            .await
            .expect("the client task");
        });
    });
}

// ---- reqwest ---------------------------------------------------------------------

#[test]
fn reqwest_keeps_alive_200_requests() {
    const REQUESTS: usize = 200;
    with_timeout(T, || {
        let rt = rt();
        rt.block_on(async {
            let (listener, addr) = listener();
            let accepts = Arc::new(AtomicUsize::new(0));
            // A plain hyper server on fairloop: the client is the subject.
            let service = service_fn(|req: Request<Incoming>| async move {
                let body = format!("reply to {}", req.uri().path());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            });
            spawn_on("server", 0, serve_http1(listener, service, accepts.clone())).detach();
            let answered = spawn_on("client", 1, async move {
                // reqwest's connections are tokio `TcpStream`s, its pool
                // tasks `tokio::spawn`ed and its timeouts on tokio's timer.
                let client = reqwest::Client::new();
                let mut answered = 0;
                for i in 0..REQUESTS {
                    let resp = client
                        .get(format!("http://{addr}/n/{i}"))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("request {i}: {e}"));
                    assert_eq!(resp.status(), reqwest::StatusCode::OK, "request {i}");
                    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
                    let body = resp.text().await.expect("the body");
                    assert_eq!(body, format!("reply to /n/{i}"));
                    answered += 1;
                }
                assert_eq!(thread_name(), format!("{CORE_THREAD}1"));
                answered
            })
            .await
            .expect("the client task");
            assert_eq!(answered, REQUESTS);
            let accepts = accepts.load(Ordering::SeqCst);
            println!("{REQUESTS} requests over {accepts} connection(s)");
            assert!(
                (1..=2).contains(&accepts),
                "keep-alive: {REQUESTS} requests took {accepts} connections"
            );
        });
    });
}

// ---- tokio::net ------------------------------------------------------------------

#[test]
fn tokio_net_and_fairloop_sockets_talk() {
    const LEN: usize = 256 * 1024;
    with_timeout(T, || {
        let rt = rt();
        rt.block_on(async {
            // tokio's TcpStream to a fairloop listener that echoes.
            let (listener, addr) = listener();
            spawn_on("fairloop-echo", 0, async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("write");
                }
                // (`shutdown` alone is `TcpStream::shutdown(how)`.)
                AsyncWriteExt::shutdown(&mut s).await.expect("shutdown");
            })
            .detach();
            let echoed = spawn_on("tokio-client", 1, async move {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("tokio connect");
                let (mut rd, mut wr) = s.into_split();
                let sent = pattern(1, LEN);
                let writer = tokio::spawn(async move {
                    wr.write_all(&sent).await.expect("tokio write");
                    wr.shutdown().await.expect("tokio shutdown");
                });
                let mut got = Vec::new();
                rd.read_to_end(&mut got).await.expect("tokio read");
                writer.await.expect("the writer");
                got
            })
            .await
            .expect("the tokio client");
            assert_eq!(echoed.len(), LEN);
            assert!(echoed == pattern(1, LEN), "the echo differs");

            // A fairloop TcpStream to tokio's listener.
            let tl = spawn_on("tokio-server", 1, async {
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("tokio bind")
            })
            .await
            .expect("bind");
            let taddr = tl.local_addr().expect("local_addr");
            spawn_on("tokio-echo", 1, async move {
                let (mut s, _) = tl.accept().await.expect("tokio accept");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("tokio read");
                got.reverse();
                s.write_all(&got).await.expect("tokio write");
            })
            .detach();
            let back = spawn_on("fairloop-client", 0, async move {
                let mut s = TcpStream::connect(taddr).await.expect("connect");
                s.write_all(&pattern(2, LEN)).await.expect("write");
                AsyncWriteExt::shutdown(&mut s).await.expect("shutdown");
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.expect("read");
                back
            })
            .await
            .expect("the fairloop client");
            let mut want = pattern(2, LEN);
            want.reverse();
            assert!(
                back == want,
                "{} bytes back, not the reversed stream",
                back.len()
            );
        });
    });
}

// ---- tokio-util ------------------------------------------------------------------

#[test]
fn tokio_util_lines_codec_over_fairloop_streams() {
    const LINES: usize = 500;
    with_timeout(T, || {
        let rt = rt();
        rt.block_on(async {
            let (listener, addr) = listener();
            spawn_on("lines-server", 0, async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut lines = Framed::new(stream, LinesCodec::new());
                while let Some(line) = lines.next().await {
                    let line = line.expect("a line");
                    let reply = format!("{} {}", line.len(), line.to_uppercase());
                    lines.send(reply).await.expect("send a line");
                }
            })
            .detach();
            spawn_on("lines-client", 1, async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (mut tx, mut rx) = Framed::new(stream, LinesCodec::new()).split();
                // Lines of every length up to ~20 KB, split over reads.
                let line = |i: usize| format!("line {i} {}", "ab".repeat(i * 20));
                let writer = fairloop::spawn(async move {
                    for i in 0..LINES {
                        tx.send(line(i)).await.expect("send");
                    }
                    tx.close().await.expect("close");
                });
                for i in 0..LINES {
                    let got = rx
                        .next()
                        .await
                        .unwrap_or_else(|| panic!("the server closed before line {i}"))
                        .expect("a reply");
                    let l = line(i);
                    assert_eq!(got, format!("{} {}", l.len(), l.to_uppercase()));
                }
                writer.await.expect("the writer");
            })
            .await
            .expect("the client");
        });
    });
}

// ---- TLS -------------------------------------------------------------------------

/// A self-signed certificate for `localhost` and its key.
fn self_signed() -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    (ck.cert.der().clone(), key.into())
}

/// Server and client configurations for `version`, both on *ring*.
fn tls_configs(
    version: &'static rustls::SupportedProtocolVersion,
) -> (rustls::ServerConfig, rustls::ClientConfig) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = self_signed();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the server's certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the certificate");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

#[test]
fn tls_with_tokio_rustls_over_fairloop_streams() {
    const LEN: usize = 300 * 1024;
    with_timeout(T, || {
        let rt = rt();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (server, client) = tls_configs(version);
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            // Named partitions outlive their tasks: one pair per version.
            let (server_name, client_name) = (
                format!("tls-server-{:?}", version.version),
                format!("tls-client-{:?}", version.version),
            );
            rt.block_on(async move {
                let (listener, addr) = listener();
                // The server reads a length-prefixed message and answers
                // with its bytes reversed, then closes (close_notify).
                spawn_on(&server_name, 0, async move {
                    let (stream, _) = listener.accept().await.expect("accept");
                    let mut tls = acceptor.accept(stream).await.expect("TLS accept");
                    let len = tls.read_u32().await.expect("the length") as usize;
                    let mut msg = vec![0u8; len];
                    tls.read_exact(&mut msg).await.expect("the message");
                    msg.reverse();
                    tls.write_all(&msg).await.expect("the answer");
                    tls.shutdown().await.expect("close_notify");
                })
                .detach();
                let (negotiated, back) = spawn_on(&client_name, 1, async move {
                    let stream = TcpStream::connect(addr).await.expect("connect");
                    let name = rustls::pki_types::ServerName::try_from("localhost")
                        .expect("a server name");
                    let mut tls = connector
                        .connect(name, stream)
                        .await
                        .expect("TLS handshake");
                    let negotiated = tls.get_ref().1.protocol_version();
                    tls.write_u32(LEN as u32).await.expect("the length");
                    tls.write_all(&pattern(3, LEN)).await.expect("the message");
                    tls.flush().await.expect("flush");
                    let mut back = Vec::new();
                    tls.read_to_end(&mut back).await.expect("the answer");
                    (negotiated, back)
                })
                .await
                .expect("the TLS client");
                assert_eq!(negotiated, Some(version.version));
                let mut want = pattern(3, LEN);
                want.reverse();
                assert_eq!(back.len(), LEN);
                assert!(back == want, "{:?}: the answer differs", version.version);
                println!("{:?}: {LEN} bytes each way", version.version);
            });
        }
    });
}

// ---- HTTP/2 --------------------------------------------------------------------

#[test]
fn hyper_http2_concurrent_streams_on_one_connection() {
    const REQUESTS: usize = 16;
    /// How long the server takes over each request: in sequence they
    /// would take REQUESTS times this.
    const WORK: Duration = Duration::from_millis(300);
    with_timeout(T, || {
        let rt = rt();
        rt.block_on(async {
            let (listener, addr) = listener();
            let accepts = Arc::new(AtomicUsize::new(0));
            let acc = accepts.clone();
            spawn_on("h2-server", 0, async move {
                loop {
                    let (stream, _) = listener.accept().await.expect("accept");
                    acc.fetch_add(1, Ordering::SeqCst);
                    fairloop::spawn(async move {
                        let service = service_fn(|req: Request<Incoming>| async move {
                            assert_eq!(req.version(), Version::HTTP_2);
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            fairloop::time::sleep(WORK).await;
                            let answer = format!("{path}: {} bytes", body.len());
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(answer))))
                        });
                        // hyper spawns each stream's handler with the
                        // executor, into this partition.
                        hyper::server::conn::http2::Builder::new(FairloopExecutor::new())
                            .timer(FairloopTimer::new())
                            .serve_connection(stream, service)
                            .await
                            .expect("the HTTP/2 connection");
                    })
                    .detach();
                }
            })
            .detach();
            let (answers, took) = spawn_on("h2-client", 1, async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (sender, conn) =
                    hyper::client::conn::http2::Builder::new(FairloopExecutor::new())
                        .timer(FairloopTimer::new())
                        .handshake(stream)
                        .await
                        .expect("HTTP/2 handshake");
                fairloop::spawn(async move {
                    let _ = conn.await;
                })
                .detach();
                let t0 = Instant::now();
                let requests: Vec<_> = (0..REQUESTS)
                    .map(|i| {
                        let mut sender = sender.clone();
                        fairloop::spawn(async move {
                            let req = Request::post(format!("http://localhost/r/{i}"))
                                .body(Full::new(Bytes::from(vec![b'x'; i * 1000])))
                                .expect("a request");
                            let resp = sender.send_request(req).await.expect("a response");
                            assert_eq!(resp.status(), StatusCode::OK);
                            assert_eq!(resp.version(), Version::HTTP_2);
                            let body = resp.into_body().collect().await.expect("the body");
                            String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
                        })
                    })
                    .collect();
                let mut answers = Vec::new();
                for r in requests {
                    answers.push(r.await.expect("a request task"));
                }
                (answers, t0.elapsed())
            })
            .await
            .expect("the client");
            for (i, a) in answers.iter().enumerate() {
                assert_eq!(a, &format!("/r/{i}: {} bytes", i * 1000));
            }
            assert_eq!(accepts.load(Ordering::SeqCst), 1, "one connection");
            println!("{REQUESTS} concurrent HTTP/2 requests in {took:?}");
            assert!(
                took < WORK * (REQUESTS as u32) / 2,
                "{REQUESTS} requests of {WORK:?} took {took:?}: not concurrent"
            );
        });
    });
}
