//! hyper 1.x serving HTTP/1.1 on fairloop (feature `hyper`).
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
//! `POST /echo` answers with the request body; anything else is a 404.
//!
//! ```text
//! cargo run --release --features hyper --example hyper_server [-- ADDR] [--direct]
//! curl -s localhost:3000/; curl -s -d hi localhost:3000/echo
//! cargo run --release --features hyper --example hyper_server -- --selftest
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:3000` (with `--selftest`, a free port).
//! `--selftest` starts the server, then checks with a raw blocking
//! `std::net::TcpStream` client: a few keep-alive requests on one
//! connection, an echoed body, a 404, concurrent clients, and that a client
//! that never finishes its request headers is disconnected by the timer;
//! it exits with status 0 if every answer was right.

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/http_client.rs"]
mod http_client;

use fairloop::net::hyper::FairloopTimer;
use fairloop::net::TcpListener;
use fairloop::partition::{Partition, Placement};
use fairloop::{time, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> io::Result<()> {
    let mut selftest = false;
    let mut direct = false;
    let mut addr = None;
    for arg in std::env::args().skip(1) {
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
            http.spawn(accept_loop(listener, direct)).detach();
        }
        Ok::<_, io::Error>(addr)
    })?;
    println!(
        "hyper_server: listening on http://{addr}/ with a listener in each of {cores} partitions \
         (one per core){}",
        if direct {
            ", streams passed to hyper directly"
        } else {
            ", streams in TokioIo"
        }
    );

    if !selftest {
        loop {
            thread::park();
        }
    }
    match run_selftest(addr) {
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

/// Accepts connections forever and serves each in its own task, in the
/// calling partition.
async fn accept_loop(listener: TcpListener, direct: bool) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("hyper_server: accept failed: {e}");
                time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
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
        })
        .detach();
    }
}

/// Serves one connection with hyper's HTTP/1 server on fairloop's timer.
async fn serve<I>(io: I) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    http1::Builder::new()
        .timer(FairloopTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service_fn(route))
        .await
}

/// The request handler.
async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
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
        _ => status(StatusCode::NOT_FOUND, "try GET / or POST /echo\n".into()),
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

fn check(ok: bool, what: impl FnOnce() -> String) -> io::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!("unexpected answer: {}", what())))
    }
}

fn connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let c = std::net::TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.set_nodelay(true)?;
    Ok(c)
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
