//! The graceful stop the hyper examples share (`axum_app`, `hyper_server`):
//! waiting for SIGTERM or SIGINT, the runtime's graceful shutdown, an
//! accept loop that ends when that shutdown is requested, and a hyper
//! connection that, at that point, finishes the request in flight and
//! closes. The lines printed here are the ones `tests/axum_app.rs` and
//! `tests/hyper_graceful.rs` wait for.

use std::error::Error;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use fairloop::net::{TcpListener, TcpStream};
use fairloop::shutdown::{self, ShutdownReport};
use fairloop::signal::StopSignals;
use fairloop::Runtime;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;

/// Blocks until `signals` gets SIGTERM or SIGINT, then says (after `who`)
/// that the program shuts down gracefully within `deadline`.
pub fn wait_for_stop_signal(rt: &Runtime, mut signals: StopSignals, who: &str, deadline: Duration) {
    let why = rt.block_on(async move { signals.recv().await });
    println!("{who}: {why}: shutting down gracefully (deadline {deadline:?})");
}

/// Shuts `rt` down gracefully within `deadline` and says (after `who`) how
/// many tasks finished and how many were cancelled at the deadline.
pub fn shutdown_and_report(rt: Runtime, who: &str, deadline: Duration) -> ShutdownReport {
    let report = rt.shutdown_graceful(deadline);
    println!(
        "{who}: stopped: {} task(s) finished, {} cancelled at the deadline",
        report.completed, report.cancelled
    );
    report
}

/// Accepts on `listener` until the runtime's shutdown is requested, handing
/// each connection and its peer to `on_conn`. An accept error (out of file
/// descriptors and the like) is printed after `who` and retried after
/// 10 ms. Returns at shutdown; the caller then drops the listener, so that
/// new connections are refused.
pub async fn accept_until_shutdown(
    listener: &TcpListener,
    who: &str,
    mut on_conn: impl FnMut(TcpStream, SocketAddr),
) {
    let mut stop = pin!(shutdown::requested());
    loop {
        let mut accept = pin!(listener.accept());
        let accepted = poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            accept.as_mut().poll(cx).map(Some)
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => on_conn(stream, peer),
            Some(Err(e)) => {
                eprintln!("{who}: accept failed: {e}");
                fairloop::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves the hyper connection `conn` to its end. If the runtime's
/// shutdown is requested first, asks hyper to finish: the request in
/// flight, if any, is answered, then the connection closes (an idle one at
/// once).
pub async fn serve_until_shutdown<I, S>(
    mut conn: Pin<&mut http1::Connection<I, S>>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let mut stop = pin!(shutdown::requested());
    let finished = poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await;
    match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
