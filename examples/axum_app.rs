//! An axum app on fairloop that calls another service with reqwest,
//! stopping gracefully on SIGTERM or Ctrl-C. It runs on
//! `Builder::tokio_compat(true)`; its cargo feature `tokio-ecosystem` is
//! `tokio-compat` plus axum and reqwest.
//!
//! axum, tower and reqwest are tokio libraries: reqwest's connections are
//! `tokio::net::TcpStream`s, its pool runs `tokio::spawn`ed tasks and its
//! timeouts sleep on tokio's timer. With `Builder::tokio_compat(true)`
//! every fairloop core drives a tokio runtime of its own, so they work
//! unchanged inside fairloop tasks, and what they start stays on the core
//! that started it.
//!
//! Two services run in one process:
//!
//! * **upstream**, a tiny translation service in a plain `upstream`
//!   partition on core 0: `GET /translate/hello?lang=fr` answers
//!   `{"word":"hello","lang":"fr","text":"bonjour"}` after a 2 ms "lookup"
//!   (`tokio::time::sleep`); an unknown language is a 404, and Klingon
//!   (`tlh`) takes two seconds, to show the app's timeout;
//! * **app**, the axum app itself, on a *sharded* partition
//!   (`Placement::EveryCore`): each shard owns a `SO_REUSEPORT` listener on
//!   the shared port, so the kernel spreads connections over the cores,
//!   and each builds its own `reqwest::Client`, so that the connections
//!   to upstream and the tokio tasks that drive them belong to that core
//!   (the thread-per-core way: no core shares a connection pool).
//!   `GET /greet/NAME?lang=fr,de` asks upstream for each language
//!   concurrently (one `tokio::spawn`ed call each, with a 500 ms reqwest
//!   timeout) and answers `{"greetings":{"de":"hallo, NAME","fr":"bonjour,
//!   NAME"},"served_by":{...}}`; upstream's 404 becomes a 404, its timeout
//!   a 504 and any other failure a 502.
//!
//! Both serve their axum `Router` with hyper's HTTP/1 server over
//! fairloop's own sockets (hyper-util's `TowerToHyperService` makes the
//! tower service a hyper one), one fairloop task per connection in the
//! acceptor's partition: fairloop accepts and schedules, tokio's APIs are
//! there for the libraries that need them.
//!
//! **Stopping.** SIGTERM or Ctrl-C (`fairloop::signal`, listened for before
//! the address is announced) makes the program call
//! `Runtime::shutdown_graceful`: every accept loop drops its listener, each
//! connection finishes its request in flight and closes, and the program
//! exits with status 0 once they have (at most 10 s).
//!
//! ```text
//! cargo run --release --features tokio-ecosystem --example axum_app -- [ADDR]
//!     [--upstream ADDR] [--cores N] [--no-pin] [--selftest]
//! curl -s 'localhost:3000/greet/ada?lang=fr,de,es'
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:3000`, upstream's to `127.0.0.1:3001`
//! (with `--selftest`, free ports); `--cores` to the machine's CPUs.
//! `--selftest` starts both, checks the answers with plain blocking
//! clients on std threads (one language, several, an unknown one, the slow
//! one cut off with a 504, then 16 keep-alive clients at once), prints a
//! summary, stops gracefully and exits with status 0, or 1 if an answer was
//! wrong or the stop had to cancel a task. `tests/axum_app.rs` runs it,
//! and the SIGTERM stop, in a child process.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

// Public for `tests/axum_app.rs`, which includes this file.
#[path = "support/http_client.rs"]
pub mod http_client;
// The graceful stop (signals, shutdown, the accept loop and connection),
// shared with `hyper_server`.
#[path = "support/graceful.rs"]
mod graceful;
// `check` and `connect` for the selftest, shared with `hyper_server`;
// `connect` public for `tests/axum_app.rs`.
#[path = "support/selftest.rs"]
mod selftest;
use selftest::check;
pub use selftest::connect;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fairloop::net::hyper::FairloopTimer;
use fairloop::net::{TcpListener, TcpStream};
use fairloop::partition::{self, Partition, Placement};
use fairloop::signal::StopSignals;
use fairloop::Runtime;
use hyper::server::conn::http1;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};

/// How long the app waits for upstream's answer to one call.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(500);

/// How long upstream takes for Klingon: longer than the app waits.
const SLOW_LOOKUP: Duration = Duration::from_secs(2);

/// Upstream's "lookup" time for every other language.
const LOOKUP: Duration = Duration::from_millis(2);

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the requests in flight get to finish once the program is asked
/// to stop.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The most languages one `/greet` asks for.
const MAX_LANGS: usize = 8;

/// Listeners still open, over both services (for the shutdown's message).
static LISTENING: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let selftest = std::env::args().any(|a| a == "--selftest");
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        if selftest {
            eprintln!("selftest FAILED: {e}");
        } else {
            eprintln!("axum_app: {e}");
        }
        std::process::exit(1);
    }
}

/// The program, given its arguments (`tests/axum_app.rs` runs it in a child
/// process). With `--selftest`, a failed check is an `Err`.
pub fn run(args: Vec<String>) -> io::Result<()> {
    let mut selftest = false;
    let mut pin_cores = true;
    let mut cores = None;
    let mut addr = None;
    let mut upstream = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--selftest" => selftest = true,
            "--no-pin" => pin_cores = false,
            "--cores" => cores = Some(number(args.next(), "--cores")?),
            "--upstream" => upstream = Some(args.next().ok_or_else(|| usage("--upstream"))?),
            "-h" | "--help" => {
                println!(
                    "usage: axum_app [ADDR] [--upstream ADDR] [--cores N] [--no-pin] [--selftest]"
                );
                return Ok(());
            }
            a if !a.starts_with('-') => addr = Some(a.to_owned()),
            a => return Err(usage(a)),
        }
    }
    let port = |given: Option<String>, default: &str| {
        let given = given.unwrap_or_else(|| if selftest { "127.0.0.1:0" } else { default }.into());
        given.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "an address resolves to nothing",
            )
        })
    };
    let addr = port(addr, "127.0.0.1:3000")?;
    let upstream = port(upstream, "127.0.0.1:3001")?;

    let mut builder = Runtime::builder().pin_cores(pin_cores).tokio_compat(true);
    if let Some(n) = cores {
        builder = builder.cores(n);
    }
    let rt = builder.build()?;
    let cores = rt.cores();
    let (addr, upstream) = rt.block_on(start(addr, upstream))?;
    // Serving until told to stop: from here on SIGTERM and SIGINT are ours
    // to handle, before anyone learns the address.
    let signals = if selftest {
        None
    } else {
        Some(StopSignals::new()?)
    };
    println!(
        "axum_app: listening on http://{addr}/ (a SO_REUSEPORT listener in each of the {cores} \
         shards of `app`); upstream on http://{upstream}/"
    );

    let checked = match signals {
        None => run_selftest(addr),
        Some(signals) => {
            graceful::wait_for_stop_signal(&rt, signals, "axum_app", SHUTDOWN_DEADLINE);
            Ok(())
        }
    };
    let report = graceful::shutdown_and_report(rt, "axum_app", SHUTDOWN_DEADLINE);
    checked?;
    if selftest {
        check(report.cancelled == 0, || {
            format!("the graceful shutdown cancelled tasks: {report:?}")
        })?;
        println!("selftest passed");
    }
    Ok(())
}

fn usage(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("bad argument {what:?}; try --help"),
    )
}

fn number(arg: Option<String>, what: &str) -> io::Result<usize> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(|| usage(what))
}

/// Starts upstream and the app's shards; returns their addresses (ports of
/// 0 become real ones).
async fn start(addr: SocketAddr, upstream: SocketAddr) -> io::Result<(SocketAddr, SocketAddr)> {
    // Upstream: one plain partition, one listener.
    let upstream_listener = TcpListener::bind(upstream)?;
    let upstream = upstream_listener.local_addr()?;
    let upstream_partition = Partition::builder()
        .name("upstream")
        .placement(Placement::Core(0))
        .build()?;
    LISTENING.fetch_add(1, Ordering::SeqCst);
    upstream_partition
        .spawn(accept_loop(upstream_listener, upstream_router()))
        .detach();

    // The app: a shard on every core, each with its own listener on the
    // same port. The first is bound here so that a port of 0 becomes one
    // port that the others share.
    let app = Partition::builder()
        .name("app")
        .placement(Placement::EveryCore)
        .build()?;
    let first = TcpListener::bind_reuseport(addr)?;
    let addr = first.local_addr()?;
    let mut first = Some(first);
    for core in app.cores() {
        let listener = match first.take() {
            Some(l) => l,
            None => TcpListener::bind_reuseport(addr)?,
        };
        let shard = app
            .shard(core)
            .expect("a sharded partition has a shard per core");
        LISTENING.fetch_add(1, Ordering::SeqCst);
        shard
            .spawn(async move {
                // Made on the shard's core: the client's pool, its
                // connections to upstream and the tokio tasks that drive
                // them are this core's own.
                let state = AppState {
                    client: reqwest::Client::new(),
                    upstream,
                };
                accept_loop(listener, app_router(state)).await;
            })
            .detach();
    }
    Ok((addr, upstream))
}

// ---- serving a Router on fairloop ----------------------------------------------

/// Accepts connections and serves `router` on each, in its own task in the
/// calling partition, until the runtime shuts down
/// ([`graceful::accept_until_shutdown`]); then drops the listener (new
/// connections are refused) and leaves the open connections to finish.
async fn accept_loop(listener: TcpListener, router: Router) {
    graceful::accept_until_shutdown(&listener, "axum_app", |stream, _peer| {
        fairloop::spawn(serve(stream, router.clone())).detach()
    })
    .await;
    drop(listener);
    if LISTENING.fetch_sub(1, Ordering::SeqCst) == 1 {
        println!("axum_app: stopped accepting on every listener");
    }
}

/// Serves one connection with hyper's HTTP/1 server. The fairloop stream
/// goes to hyper as it is (it implements `hyper::rt::{Read, Write}`); the
/// Router becomes a hyper service through hyper-util. Once the runtime
/// shuts down, asks hyper to finish: the request in flight, if any, is
/// answered, then the connection closes (an idle one at once;
/// [`graceful::serve_until_shutdown`]).
async fn serve(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let conn = pin!(http1::Builder::new()
        .timer(FairloopTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(stream, TowerToHyperService::new(router)));
    let result = graceful::serve_until_shutdown(conn).await;
    if let Err(e) = result {
        // Timeouts and peers that vanish mid-request are routine.
        if !e.is_timeout() && !e.is_incomplete_message() {
            eprintln!("axum_app: connection: {e}");
        }
    }
}

// ---- upstream --------------------------------------------------------------------

/// `?lang=` of both services.
#[derive(Deserialize)]
struct LangQuery {
    lang: String,
}

/// Upstream's answer.
#[derive(Serialize, Deserialize)]
struct Translation {
    word: String,
    lang: String,
    text: String,
}

fn upstream_router() -> Router {
    Router::new().route("/translate/{word}", get(translate))
}

/// Upstream's one route.
async fn translate(Path(word): Path<String>, Query(q): Query<LangQuery>) -> Response {
    let text = match (word.as_str(), q.lang.as_str()) {
        ("hello", "fr") => "bonjour",
        ("hello", "de") => "hallo",
        ("hello", "es") => "hola",
        ("hello", "it") => "ciao",
        ("hello", "nl") => "hallo",
        ("hello", "tlh") => {
            tokio::time::sleep(SLOW_LOOKUP).await;
            "nuqneH"
        }
        _ => {
            let error = format!("no {} for {word:?}", q.lang);
            return (StatusCode::NOT_FOUND, error).into_response();
        }
    };
    tokio::time::sleep(LOOKUP).await;
    Json(Translation {
        word,
        lang: q.lang,
        text: text.into(),
    })
    .into_response()
}

// ---- the app ---------------------------------------------------------------------

/// What each shard's handlers share: the shard's own client.
#[derive(Clone)]
struct AppState {
    client: reqwest::Client,
    upstream: SocketAddr,
}

/// Where a `/greet` was answered.
#[derive(Serialize, Deserialize, Debug)]
pub struct ServedBy {
    /// The partition of the handler (`app`).
    pub partition: String,
    /// The core of the handler.
    pub core: usize,
    /// Whether every upstream call (a `tokio::spawn`ed task) ran on the
    /// handler's core too.
    pub calls_on_same_core: bool,
}

/// The app's answer to `/greet`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Greeting {
    /// The greeting in each language asked for.
    pub greetings: BTreeMap<String, String>,
    /// Where it was answered.
    pub served_by: ServedBy,
}

fn app_router(state: AppState) -> Router {
    Router::new()
        .route("/greet/{name}", get(greet))
        .with_state(state)
}

/// Why an upstream call failed.
enum CallError {
    /// Upstream does not know the language.
    NotFound(String),
    /// Upstream took longer than [`UPSTREAM_TIMEOUT`].
    Timeout,
    /// Anything else.
    Other(String),
}

/// The app's one route: greets `name` in every language of `?lang=`,
/// asking upstream for each concurrently.
async fn greet(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let langs: Vec<String> = q
        .lang
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if langs.is_empty() || langs.len() > MAX_LANGS {
        let error = format!("ask for 1 to {MAX_LANGS} languages: ?lang=fr,de");
        return (StatusCode::BAD_REQUEST, error).into_response();
    }
    let here = std::thread::current().id();
    // One tokio task per call: they run concurrently, on this core's
    // thread (tokio_compat), while this handler waits for them in turn.
    let calls: Vec<_> = langs
        .iter()
        .map(|lang| {
            let (app, lang) = (app.clone(), lang.clone());
            tokio::spawn(async move {
                let text = call_upstream(&app, &lang).await;
                (text, std::thread::current().id())
            })
        })
        .collect();
    let mut greetings = BTreeMap::new();
    let mut same_core = true;
    for (lang, call) in langs.into_iter().zip(calls) {
        let (text, ran_on) = match call.await {
            Ok(answer) => answer,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
        same_core &= ran_on == here;
        match text {
            Ok(text) => greetings.insert(lang, format!("{text}, {name}")),
            Err(CallError::NotFound(why)) => return (StatusCode::NOT_FOUND, why).into_response(),
            Err(CallError::Timeout) => {
                let error = format!("upstream did not answer {lang:?} within {UPSTREAM_TIMEOUT:?}");
                return (StatusCode::GATEWAY_TIMEOUT, error).into_response();
            }
            Err(CallError::Other(why)) => return (StatusCode::BAD_GATEWAY, why).into_response(),
        };
    }
    Json(Greeting {
        greetings,
        served_by: ServedBy {
            partition: partition::current().name().unwrap_or_default(),
            core: fairloop::core_id(),
            calls_on_same_core: same_core,
        },
    })
    .into_response()
}

/// Asks upstream for "hello" in `lang` with the shard's reqwest client
/// (keep-alive connections from its pool; the timeout on tokio's timer).
async fn call_upstream(app: &AppState, lang: &str) -> Result<String, CallError> {
    let other = |e: reqwest::Error| {
        if e.is_timeout() {
            CallError::Timeout
        } else {
            CallError::Other(format!("upstream: {e}"))
        }
    };
    let resp = app
        .client
        .get(format!("http://{}/translate/hello", app.upstream))
        .query(&[("lang", lang)])
        .timeout(UPSTREAM_TIMEOUT)
        .send()
        .await
        .map_err(other)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(other)?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(CallError::NotFound(
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    if !status.is_success() {
        return Err(CallError::Other(format!("upstream answered {status}")));
    }
    let t: Translation = serde_json::from_slice(&body)
        .map_err(|e| CallError::Other(format!("upstream's answer: {e}")))?;
    Ok(t.text)
}

// ---- the self-test: plain blocking clients ----------------------------------------

fn run_selftest(addr: SocketAddr) -> io::Result<()> {
    let mut c = connect(addr)?;
    let g = greeting(&mut c, "/greet/ada?lang=fr")?;
    check(
        g.greetings.get("fr").map(String::as_str) == Some("bonjour, ada"),
        || format!("{g:?}"),
    )?;
    println!("selftest: /greet/ada?lang=fr -> {:?}", g.greetings);

    let g = greeting(&mut c, "/greet/grace?lang=fr,de,es,it")?;
    let want = [
        ("de", "hallo"),
        ("es", "hola"),
        ("fr", "bonjour"),
        ("it", "ciao"),
    ]
    .map(|(l, t)| (l.to_owned(), format!("{t}, grace")));
    check(g.greetings == BTreeMap::from(want), || format!("{g:?}"))?;
    println!("selftest: four languages at once -> {:?}", g.greetings);

    let (code, body) = http_get(&mut c, "/greet/ada?lang=xx")?;
    check(code == 404 && body.contains("no xx"), || {
        format!("an unknown language: {code} {body:?}")
    })?;
    println!("selftest: an unknown language -> {code} {body:?}");

    let t0 = Instant::now();
    let (code, body) = http_get(&mut c, "/greet/ada?lang=fr,tlh")?;
    let took = t0.elapsed();
    check(
        code == 504 && took >= UPSTREAM_TIMEOUT && took < SLOW_LOOKUP,
        || format!("Klingon: {code} {body:?} after {took:?}"),
    )?;
    println!(
        "selftest: Klingon (upstream takes {SLOW_LOOKUP:?}) -> {code} after {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    drop(c);

    // Concurrent clients, each on its own keep-alive connection, spread
    // over the shards by SO_REUSEPORT.
    const CLIENTS: usize = 16;
    const EACH: usize = 25;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            thread::spawn(move || -> io::Result<Vec<usize>> {
                let mut c = connect(addr)?;
                let mut cores = Vec::new();
                for j in 0..EACH {
                    let (lang, word) = [("fr", "bonjour"), ("de", "hallo"), ("nl", "hallo")][j % 3];
                    let name = format!("client{i}-{j}");
                    let g = greeting(&mut c, &format!("/greet/{name}?lang={lang}"))?;
                    check(
                        g.greetings.get(lang) == Some(&format!("{word}, {name}")),
                        || format!("{g:?}"),
                    )?;
                    check(
                        g.served_by.partition == "app" && g.served_by.calls_on_same_core,
                        || format!("{g:?}"),
                    )?;
                    cores.push(g.served_by.core);
                }
                Ok(cores)
            })
        })
        .collect();
    let mut by_core = BTreeMap::<usize, usize>::new();
    for c in clients {
        for core in c.join().expect("a client thread panicked")? {
            *by_core.entry(core).or_default() += 1;
        }
    }
    println!(
        "selftest: {CLIENTS} clients x {EACH} greetings in {:.1} ms, answered by core: {by_core:?}",
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// `GET path` on a keep-alive connection: the status code and body.
pub fn http_get(c: &mut std::net::TcpStream, path: &str) -> io::Result<(u16, String)> {
    write!(c, "GET {path} HTTP/1.1\r\nHost: fairloop\r\n\r\n")?;
    http_client::read_response(c)
}

/// `GET path`, which must answer 200 with a [`Greeting`].
pub fn greeting(c: &mut std::net::TcpStream, path: &str) -> io::Result<Greeting> {
    let (code, body) = http_get(c, path)?;
    check(code == 200, || format!("GET {path}: {code} {body:?}"))?;
    serde_json::from_str(&body)
        .map_err(|e| io::Error::other(format!("GET {path}: {e} in {body:?}")))
}
