//! hyper 1.x serving HTTP/1.1 on fairloop (feature `hyper`), stopping
//! gracefully on SIGTERM or Ctrl-C.
//!
//! Every unreserved core `k` gets an `http-k` partition that owns a
//! `SO_REUSEPORT` [`TcpListener`] on the shared port. Each accepted
//! connection is wrapped in hyper-util's `TokioIo` (fairloop's `TcpStream`
//! implements tokio's IO traits with the `tokio` feature, which `hyper`
//! turns on) and served by `hyper::server::conn::http1` in its own task,
//! spawned with `fairloop::spawn` into the acceptor's partition. hyper's
//! timeouts (here a 1 s header-read timeout) run on fairloop's timers
//! through `fairloop::net::hyper::FairloopTimer`. No tokio runtime exists.
//! (With the `hyper` feature `TcpStream` also implements `hyper::rt::Read`
//! and `Write` itself, so `--direct` hands it to hyper without `TokioIo`.)
//!
//! Routes: `GET /` says hello (and which partition and core answered);
//! `POST /echo` answers with the request body; `GET /slow/MS` answers after
//! `MS` milliseconds (at most a minute), to watch a graceful shutdown;
//! anything else is a 404.
//!
//! **Stopping.** SIGTERM or Ctrl-C (`fairloop::signal`, listened for before
//! the address is announced) makes `main` call
//! `Runtime::shutdown_graceful`, which wakes `fairloop::shutdown::requested()`
//! in every task: each acceptor drops its listener (new connections are
//! refused), and each connection asks hyper for a graceful shutdown, which
//! finishes the request in flight, if any, and closes the connection. The
//! runtime waits up to 10 s for those tasks, and the program exits with
//! status 0.
//!
//! ```text
//! cargo run --release --features hyper --example hyper_server [-- ADDR] [--direct]
//! curl -s localhost:3000/; curl -s -d hi localhost:3000/echo
//! curl -s localhost:3000/slow/3000 & sleep 1; kill -TERM <pid>   # still answered
//! cargo run --release --features hyper --example hyper_server -- --selftest
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:3000` (with `--selftest`, a free port).
//! `--selftest` starts the server, then checks with a raw blocking
//! `std::net::TcpStream` client: a few keep-alive requests on one
//! connection, an echoed body, a 404, concurrent clients, and that a client
//! that never finishes its request headers is disconnected by the timer;
//! then it shuts down gracefully and exits with status 0 if every answer
//! was right and no task had to be cancelled. `tests/hyper_graceful.rs`
//! runs this program in a child process and stops it with SIGTERM during a
//! slow request.

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// Public for `tests/hyper_graceful.rs`, which includes this file.
#[path = "support/http_client.rs"]
pub mod http_client;
// The graceful stop (signals, shutdown, the accept loop and connection),
// shared with `axum_app`.
#[path = "support/graceful.rs"]
mod graceful;
// `check` and `connect` for the selftest, shared with `axum_app`.
#[path = "support/selftest.rs"]
mod selftest;
use selftest::{check, connect};

use fairloop::net::hyper::FairloopTimer;
use fairloop::net::TcpListener;
use fairloop::partition::{Partition, Placement};
use fairloop::signal::StopSignals;
use fairloop::{time, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the requests in flight get to finish once the program is asked
/// to stop.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The longest `GET /slow/MS`.
const SLOW_MAX: Duration = Duration::from_secs(60);

/// Connections being served, over all cores (for the shutdown's messages).
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

fn main() -> io::Result<()> {
    run(std::env::args().skip(1).collect())
}

/// The program, given its arguments (`tests/hyper_graceful.rs` runs it in a
/// child process).
pub fn run(args: Vec<String>) -> io::Result<()> {
    let mut selftest = false;
    let mut direct = false;
    let mut addr = None;
    for arg in args {
        match arg.as_str() {
            "--selftest" => selftest = true,
            "--direct" => direct = true,
            "-h" | "--help" => {
                println!("usage: hyper_server [ADDR] [--direct] [--selftest]");
                return Ok(());
            }
            a => addr = Some(a.to_owned()),
        }
    }
    let addr = addr.unwrap_or_else(|| {
        if selftest {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3000"
        }
        .to_owned()
    });
    let addr: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ADDR resolves to nothing"))?;

    let rt = Runtime::builder().build()?;
    let cores = rt.cores();
    // Listeners still open, over all acceptors; the last to close says so.
    let listening = Arc::new(AtomicUsize::new(cores));
    let addr = rt.block_on(async move {
        let first = TcpListener::bind_reuseport(addr)?;
        let addr = first.local_addr()?;
        let mut first = Some(first);
        for core in 0..cores {
            let listener = match first.take() {
                Some(l) => l,
                None => TcpListener::bind_reuseport(addr)?,
            };
            let http = Partition::builder()
                .name(&format!("http-{core}"))
                .placement(Placement::Core(core))
                .build()?;
            http.spawn(accept_loop(listener, direct, listening.clone()))
                .detach();
        }
        Ok::<_, io::Error>(addr)
    })?;
    // From here on SIGTERM and SIGINT no longer kill the process: they are
    // ours to handle, before anyone learns the address.
    let signals = StopSignals::new()?;
    println!(
        "hyper_server: listening on http://{addr}/ with a listener in each of {cores} partitions \
         (one per core){}",
        if direct {
            ", streams passed to hyper directly"
        } else {
            ", streams in TokioIo"
        }
    );

    let selftest_result = if selftest {
        run_selftest(addr)
    } else {
        graceful::wait_for_stop_signal(&rt, signals, "hyper_server", SHUTDOWN_DEADLINE);
        Ok(())
    };
    let report = graceful::shutdown_and_report(rt, "hyper_server", SHUTDOWN_DEADLINE);
    let selftest_result = selftest_result.and_then(|()| {
        check(report.drained && report.cancelled == 0, || {
            format!("the graceful shutdown left tasks to cancel: {report:?}")
        })
    });
    if !selftest {
        return Ok(());
    }
    match selftest_result {
        Ok(()) => {
            println!("selftest passed");
            Ok(())
        }
        Err(e) => {
            eprintln!("selftest FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// Accepts connections and serves each in its own task, in the calling
/// partition, until the runtime shuts down; then drops the listener (new
/// connections are refused) and leaves the open connections to finish
/// ([`graceful::accept_until_shutdown`]).
async fn accept_loop(listener: TcpListener, direct: bool, listening: Arc<AtomicUsize>) {
    graceful::accept_until_shutdown(&listener, "hyper_server", |stream, peer| {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::SeqCst);
        fairloop::spawn(async move {
            let _ = stream.set_nodelay(true);
            let result = if direct {
                serve(stream).await
            } else {
                serve(TokioIo::new(stream)).await
            };
            if let Err(e) = result {
                // Timeouts and peers that vanish mid-request are routine.
                if !e.is_timeout() && !e.is_incomplete_message() {
                    eprintln!("hyper_server: connection from {peer}: {e}");
                }
            }
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
        })
        .detach();
    })
    .await;
    drop(listener);
    if listening.fetch_sub(1, Ordering::SeqCst) == 1 {
        println!(
            "hyper_server: stopped accepting on every listener; finishing {} open connection(s)",
            OPEN_CONNECTIONS.load(Ordering::SeqCst)
        );
    }
}

/// Serves one connection with hyper's HTTP/1 server on fairloop's timer.
/// Once the runtime shuts down, asks hyper to finish: the request in
/// flight, if any, is answered, then the connection closes (an idle one at
/// once; [`graceful::serve_until_shutdown`]).
async fn serve<I>(io: I) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let conn = pin!(http1::Builder::new()
        .timer(FairloopTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service_fn(route)));
    graceful::serve_until_shutdown(conn).await
}

/// The request handler.
async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let response = match (req.method(), path) {
        (&Method::GET, "/") => {
            let body = format!(
                "hello from fairloop: partition {} on core {}\n",
                fairloop::partition::current()
                    .name()
                    .unwrap_or_else(|| "root".into()),
                fairloop::core_id()
            );
            Response::new(Full::new(Bytes::from(body)))
        }
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(e) => status(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
        },
        (&Method::GET, _) if path.starts_with("/slow/") => {
            match path["/slow/".len()..].parse::<u64>() {
                Ok(ms) if Duration::from_millis(ms) <= SLOW_MAX => {
                    println!("hyper_server: GET /slow/{ms} started");
                    time::sleep(Duration::from_millis(ms)).await;
                    Response::new(Full::new(Bytes::from(format!("slept {ms} ms\n"))))
                }
                _ => status(
                    StatusCode::BAD_REQUEST,
                    format!("try /slow/MS with MS at most {}\n", SLOW_MAX.as_millis()),
                ),
            }
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "try GET /, POST /echo or GET /slow/MS\n".into(),
        ),
    };
    Ok(response)
}

fn status(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}

// ---- the self-test: a raw blocking client ----------------------------------

fn run_selftest(addr: SocketAddr) -> io::Result<()> {
    // Keep-alive: several requests on one connection (which also makes
    // hyper reset its header-read timer between requests).
    let mut c = connect(addr)?;
    for i in 0..3 {
        let (code, body) = request(&mut c, "GET", "/", b"")?;
        check(
            code == 200 && body.starts_with("hello from fairloop"),
            || format!("GET / #{i}: {code} {body:?}"),
        )?;
        println!("selftest: GET / -> {code} {}", body.trim_end());
    }
    let payload = "fairloop ".repeat(1000);
    let (code, body) = request(&mut c, "POST", "/echo", payload.as_bytes())?;
    check(code == 200 && body == payload, || {
        format!(
            "POST /echo: {code}, {} bytes back of {}",
            body.len(),
            payload.len()
        )
    })?;
    println!(
        "selftest: POST /echo with {} bytes -> {code}, the same bytes",
        payload.len()
    );
    let (code, _) = request(&mut c, "GET", "/missing", b"")?;
    check(code == 404, || format!("GET /missing: {code}"))?;
    println!("selftest: GET /missing -> {code}");
    drop(c);

    // Concurrent clients, each on its own keep-alive connection.
    let start = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            thread::spawn(move || -> io::Result<()> {
                let mut c = connect(addr)?;
                for j in 0..50 {
                    let msg = format!("client {i} request {j}");
                    let (code, body) = request(&mut c, "POST", "/echo", msg.as_bytes())?;
                    check(code == 200 && body == msg, || {
                        format!("{msg}: {code} {body:?}")
                    })?;
                }
                Ok(())
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client panicked")?;
    }
    println!(
        "selftest: 16 concurrent clients x 50 echoes in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    // A client that never finishes its headers is cut off by hyper's
    // header-read timeout, which runs on FairloopTimer.
    let mut c = connect(addr)?;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")?;
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let closed = match c.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => true,
        Err(e) => return Err(e),
    };
    let waited = t0.elapsed();
    check(closed && waited >= HEADER_TIMEOUT / 2, || {
        format!("slow client: cut off after {waited:?}")
    })?;
    println!(
        "selftest: a client stuck in its headers was disconnected after {:.0} ms \
         (header_read_timeout {HEADER_TIMEOUT:?})",
        waited.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Sends one request and reads the response (which hyper gives a
/// `Content-Length`, as the bodies are `Full`): the status code and body.
fn request(
    c: &mut std::net::TcpStream,
    method: &str,
    path: &str,
    body: &[u8],
) -> io::Result<(u16, String)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: fairloop\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.write_all(&req)?;

    http_client::read_response(c)
}
