//! The server side of the networking benches, one process per run so that
//! its CPU time and memory can be read from `/proc/<pid>` alone.
//!
//! ```text
//! net_server echo RUNTIME [--buf BYTES] [--addr ADDR]
//! net_server echo fairloop|tokio --cores N [--buf BYTES] [--addr ADDR] [--pin]
//! net_server http RUNTIME [--addr ADDR]
//! net_server hyper RUNTIME [--cores N] [--addr ADDR] [--pin]
//! ```
//!
//! `echo`: a TCP echo server on one core (one thread). `RUNTIME` is one of
//! `fairloop` (`cores(1)`, unpinned; streams on its io_uring),
//! `fairloop-epoll` (the same with `io_uring(false)`: readiness IO),
//! `tokio` (`current_thread`),
//! `monoio-legacy` (its epoll driver), `monoio-uring` (its io_uring driver),
//! `glommio` (one `LocalExecutor`, io_uring), `mio` (a hand-written
//! single-thread epoll loop: no tasks, no wakers; the practical limit) or
//! `mio-eagain` (the same loop, but reading until `WouldBlock` after every
//! read, which costs one more `recv` per request).
//! Every connection reads into a `BYTES`-byte buffer (default 16 KiB) and
//! writes back what it read.
//!
//! `http`: `/work` (fans out into [`SUBTASKS`] sub-tasks of CPU work) on
//! one port and `/health` on another, one core. `fairloop` serves `/work`
//! in an `api` partition and `/health` in a `healthcheck` partition with
//! `.latency(1 ms)`; `tokio` (`current_thread`) runs the same handlers.
//!
//! `echo ... --cores N` (the `scaling` bench): the same echo on `N` cores.
//! `fairloop` is sharded, the thread-per-core way: `cores(N)`, one
//! `SO_REUSEPORT` listener per core (all bound before `ready`, so the
//! kernel spreads connections over every core from the first), each served
//! by `Runtime::run_on_shards` with a `spawn_local` task per connection, as
//! `examples/echo.rs` does. `tokio` is `multi_thread` with `N` workers and
//! one listener (its accept loop spawned on the workers). With `--cores 1`
//! these are still the multi-core servers (a curve of one kind); without
//! `--cores`, the one-core servers above.
//!
//! `hyper`: hyper 1.x serving HTTP/1.1 "hello" (`200 OK`, body
//! `Hello, World!`, keep-alive) the way a user writes it: per accepted
//! connection, `set_nodelay(true)`, then a task running
//! `http1::Builder::new().serve_connection(io, service_fn(hello))` (no
//! timer, no header timeout, hyper's defaults otherwise). `RUNTIME`:
//! `fairloop` (the `TcpStream` handed to hyper as it is: fairloop's `hyper`
//! feature implements `hyper::rt::{Read, Write}`), `fairloop-tokioio` (the
//! stream in hyper-util's `TokioIo`, over fairloop's tokio IO traits), or
//! `tokio` (`TcpStream` in `TokioIo`). Without `--cores`: one core,
//! `cores(1)` with `fairloop::spawn` per connection / `current_thread`;
//! with `--cores N`: sharded / `multi_thread(N)` as for `echo`.
//! Connection errors are ignored (wrk drops its connections mid-request at
//! the end of a run).
//!
//! fairloop's cores are unpinned (the bench machine is shared) unless
//! `--pin` is given. `--pin` on a one-core server of another runtime pins
//! its one thread to the same CPU as fairloop's core 0 (the first CPU the
//! process may use).
//!
//! The server prints `ready ADDR [ADDR]` on stdout once it listens (for
//! `http`: the `/work` address, then the `/health` address) and serves
//! until its stdin closes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use fairloop_benches::net::{exit_when_stdin_closes, http, raise_nofile, HELLO};

/// Sub-tasks one `/work` request fans out into.
const SUBTASKS: usize = 8;
/// xorshift rounds of CPU work per sub-task (about 200 µs on the bench
/// machine): fixed work, so throughput counts CPU actually obtained.
const SUBTASK_ROUNDS: u32 = 140_000;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: net_server echo|http|hyper RUNTIME [--buf BYTES] [--addr ADDR] \
                 [--cores N] [--pin]";
    let (Some(kind), Some(runtime)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut buf = 16 * 1024;
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let mut cores: Option<usize> = None;
    let mut pin = false;
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        if a == "--pin" {
            pin = true;
            continue;
        }
        let v = rest.next().unwrap_or_else(|| {
            eprintln!("{a} needs a value\n{usage}");
            std::process::exit(2)
        });
        match a.as_str() {
            "--buf" => buf = v.parse().expect("--buf BYTES"),
            "--addr" => addr = v.parse().expect("--addr ADDR"),
            "--cores" => cores = Some(v.parse::<usize>().expect("--cores N").max(1)),
            _ => {
                eprintln!("unknown argument {a}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    raise_nofile();
    exit_when_stdin_closes();
    if pin && cores.is_none() && !runtime.starts_with("fairloop") {
        // A one-core peer runs on this thread: pin it where fairloop's
        // core 0 goes with `--pin`, so that pinned rows compare like with
        // like.
        pin_to_first_cpu()?;
    }
    match (kind.as_str(), runtime.as_str(), cores) {
        ("echo", "fairloop", Some(n)) => echo_fairloop::run_sharded(addr, buf, n, pin),
        ("echo", "tokio", Some(n)) => echo_tokio::run_multi(addr, buf, n),
        ("echo", _, Some(_)) => {
            eprintln!("--cores: echo servers fairloop and tokio only\n{usage}");
            std::process::exit(2);
        }
        ("hyper", "fairloop", n) => hyper_fairloop::run(addr, n, pin, false),
        ("hyper", "fairloop-tokioio", n) => hyper_fairloop::run(addr, n, pin, true),
        ("hyper", "tokio", n) => hyper_tokio::run(addr, n),
        (_, _, Some(_)) => {
            eprintln!("--cores: echo and hyper servers only\n{usage}");
            std::process::exit(2);
        }
        ("echo", "fairloop", None) => echo_fairloop::run(addr, buf, true),
        ("echo", "fairloop-epoll", None) => echo_fairloop::run(addr, buf, false),
        ("echo", "fairloop-compat", None) => echo_fairloop::run_compat(addr, buf),
        ("echo", "tokio", None) => echo_tokio::run(addr, buf),
        ("echo", "monoio-legacy", None) => echo_monoio::run_legacy(addr, buf),
        ("echo", "monoio-uring", None) => echo_monoio::run_uring(addr, buf),
        ("echo", "glommio", None) => echo_glommio::run(addr, buf),
        ("echo", "mio", None) => echo_mio::run(addr, buf, false),
        ("echo", "mio-eagain", None) => echo_mio::run(addr, buf, true),
        ("http", "fairloop", None) => http_fairloop::run(addr),
        ("http", "tokio", None) => http_tokio::run(addr),
        _ => {
            eprintln!("unknown server {kind} {runtime}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// Tells the bench where to connect.
fn ready(addrs: &[SocketAddr]) {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "ready {}", list.join(" "));
    let _ = out.flush();
}

/// The single-listener accept loops every server below runs: accept
/// forever, each connection a spawned task running `conn(stream)`; an
/// accept error (out of fds, say) is logged and retried after 10 ms rather
/// than ending the server. (Sharded fairloop accepts in [`shards::fairloop`].)
mod accept {
    use super::*;
    use std::future::Future;

    /// Each connection a detached `fairloop::spawn`ed task, so in the
    /// partition of the task running this loop.
    pub async fn fairloop<F, Fut>(listener: fairloop::net::TcpListener, conn: F)
    where
        F: Fn(fairloop::net::TcpStream) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            match listener.accept().await {
                Ok((s, _)) => fairloop::spawn(conn(s)).detach(),
                Err(e) => {
                    eprintln!("net_server: accept: {e}");
                    fairloop::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Each connection a `tokio::spawn`ed task.
    pub async fn tokio<F, Fut>(listener: tokio::net::TcpListener, conn: F)
    where
        F: Fn(tokio::net::TcpStream) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(conn(s));
                }
                Err(e) => {
                    eprintln!("net_server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// One `/work` sub-task: fixed CPU work.
fn subtask(i: usize) -> u64 {
    fairloop_benches::cpu_work(SUBTASK_ROUNDS) ^ i as u64
}

/// The response to a parsed request, given the `/work` result.
fn respond(req: &http::Request, work: Option<u64>) -> Vec<u8> {
    match (req.path.as_str(), work) {
        ("/work", Some(sum)) => {
            http::response("200 OK", format!("{sum}\n").as_bytes(), req.keep_alive)
        }
        ("/health", _) => http::response("200 OK", b"ok\n", req.keep_alive),
        _ => http::response("404 Not Found", b"not found\n", req.keep_alive),
    }
}

mod echo_fairloop {
    use super::*;
    use fairloop::net::{TcpListener, TcpStream};
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    pub fn run(addr: SocketAddr, buf: usize, io_uring: bool) -> io::Result<()> {
        let rt = fairloop::Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .io_uring(io_uring)
            .build()?;
        serve(rt, addr, buf, io_uring)
    }

    /// The same server on a runtime with `tokio_compat` (each core drives
    /// tokio too): what the feature costs a server that does not use it.
    /// Fails to build the runtime without `--features tokio-compat`.
    pub fn run_compat(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let rt = fairloop::Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .tokio_compat(true)
            .build()?;
        serve(rt, addr, buf, true)
    }

    fn serve(
        rt: fairloop::Runtime,
        addr: SocketAddr,
        buf: usize,
        io_uring: bool,
    ) -> io::Result<()> {
        if io_uring && !rt.uses_io_uring() {
            eprintln!("net_server: io_uring unavailable here; fairloop runs on epoll");
        }
        let listener = TcpListener::bind(addr)?;
        ready(&[listener.local_addr()?]);
        rt.block_on(accept::fairloop(listener, move |s| async move {
            let _ = echo(s, buf).await;
        }));
        Ok(())
    }

    /// The same echo, sharded over `cores` cores ([`shards::fairloop`]).
    pub fn run_sharded(addr: SocketAddr, buf: usize, cores: usize, pin: bool) -> io::Result<()> {
        super::shards::fairloop(addr, cores, pin, move |s| async move {
            let _ = echo(s, buf).await;
        })
    }

    async fn echo(mut s: TcpStream, buf: usize) -> io::Result<()> {
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; buf];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        }
    }
}

/// The multi-core servers' accept side: fairloop sharded, tokio
/// `multi_thread` with one listener.
mod shards {
    use super::*;
    use std::future::Future;
    use std::sync::Mutex;

    /// `cores` fairloop cores, one `SO_REUSEPORT` listener each, every
    /// listener bound before `ready` (so connections spread over all of
    /// them from the first); each core accepts on its own and serves every
    /// connection in a `spawn_local` task running `conn(stream)`, as
    /// `examples/echo.rs` does.
    pub fn fairloop<F, Fut>(addr: SocketAddr, cores: usize, pin: bool, conn: F) -> io::Result<()>
    where
        F: Fn(fairloop::net::TcpStream) -> Fut + Send + Sync + Copy + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        use fairloop::net::TcpListener;
        let rt = fairloop::Runtime::builder()
            .cores(cores)
            .pin_cores(pin)
            .build()?;
        if !rt.uses_io_uring() {
            eprintln!("net_server: io_uring unavailable here; fairloop runs on epoll");
        }
        let first = TcpListener::bind_reuseport(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![Some(first)];
        for _ in 1..rt.cores() {
            listeners.push(Some(TcpListener::bind_reuseport(addr)?));
        }
        let listeners = Mutex::new(listeners);
        ready(&[addr]);
        rt.run_on_shards(move |core| {
            let listener = listeners
                .lock()
                .unwrap()
                .get_mut(core)
                .and_then(Option::take);
            async move {
                let Some(listener) = listener else {
                    eprintln!("net_server: no listener for core {core}");
                    return;
                };
                loop {
                    match listener.accept().await {
                        Ok((s, _)) => fairloop::spawn_local(conn(s)).detach(),
                        Err(e) => {
                            eprintln!("net_server: accept (core {core}): {e}");
                            fairloop::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// tokio `multi_thread` with `workers` workers and one listener, its
    /// accept loop a task on the workers; each connection a
    /// `tokio::spawn`ed `conn(stream)`.
    pub fn tokio<F, Fut>(addr: SocketAddr, workers: usize, conn: F) -> io::Result<()>
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Copy + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let rt = fairloop_benches::tokio_multi_rt(workers);
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            ready(&[listener.local_addr()?]);
            tokio::spawn(accept::tokio(listener, conn))
                .await
                .map_err(io::Error::other)
        })
    }
}

mod echo_tokio {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub fn run(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let rt = fairloop_benches::tokio_rt();
        rt.block_on(async move {
            let listener = TcpListener::bind(addr).await?;
            ready(&[listener.local_addr()?]);
            accept::tokio(listener, move |s| async move {
                let _ = echo(s, buf).await;
            })
            .await;
            Ok(())
        })
    }

    /// The same echo on `multi_thread(workers)` ([`shards::tokio`]).
    pub fn run_multi(addr: SocketAddr, buf: usize, workers: usize) -> io::Result<()> {
        super::shards::tokio(addr, workers, move |s| async move {
            let _ = echo(s, buf).await;
        })
    }

    async fn echo(mut s: TcpStream, buf: usize) -> io::Result<()> {
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; buf];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        }
    }
}

/// Pins the calling thread to the CPU that `pin_cores` gives fairloop's
/// core 0: the first of `core_affinity::get_core_ids()`, as the runtime's
/// builder picks it.
fn pin_to_first_cpu() -> io::Result<()> {
    let first = core_affinity::get_core_ids()
        .and_then(|ids| ids.first().copied())
        .ok_or_else(|| io::Error::other("no CPU in this thread's affinity mask"))?;
    if core_affinity::set_for_current(first) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "could not pin this thread to {first:?}"
        )))
    }
}

/// hyper's "hello": what both runtimes serve.
mod hello {
    use super::*;
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use std::convert::Infallible;

    async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
    }

    /// Serves one connection until it closes; errors (a client gone
    /// mid-request) end it quietly.
    pub async fn serve<I>(io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    {
        let _ = http1::Builder::new()
            .serve_connection(io, service_fn(hello))
            .await;
    }
}

mod hyper_fairloop {
    use super::*;
    use fairloop::net::{TcpListener, TcpStream};
    use hyper_util::rt::TokioIo;

    /// One core (`cores` `None`) or sharded; `tokioio`: the stream in
    /// `TokioIo` rather than handed to hyper directly.
    pub fn run(addr: SocketAddr, cores: Option<usize>, pin: bool, tokioio: bool) -> io::Result<()> {
        if let Some(n) = cores {
            return super::shards::fairloop(addr, n, pin, move |s| conn(s, tokioio));
        }
        let rt = fairloop::Runtime::builder()
            .cores(1)
            .pin_cores(pin)
            .build()?;
        if !rt.uses_io_uring() {
            eprintln!("net_server: io_uring unavailable here; fairloop runs on epoll");
        }
        let listener = TcpListener::bind(addr)?;
        ready(&[listener.local_addr()?]);
        rt.block_on(accept::fairloop(listener, move |s| conn(s, tokioio)));
        Ok(())
    }

    async fn conn(s: TcpStream, tokioio: bool) {
        let _ = s.set_nodelay(true);
        if tokioio {
            hello::serve(TokioIo::new(s)).await
        } else {
            hello::serve(s).await
        }
    }
}

mod hyper_tokio {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    /// `current_thread` (`workers` `None`) or `multi_thread(workers)`.
    pub fn run(addr: SocketAddr, workers: Option<usize>) -> io::Result<()> {
        if let Some(n) = workers {
            return super::shards::tokio(addr, n, conn);
        }
        let rt = fairloop_benches::tokio_rt();
        rt.block_on(async move {
            let listener = TcpListener::bind(addr).await?;
            ready(&[listener.local_addr()?]);
            accept::tokio(listener, conn).await;
            Ok(())
        })
    }

    async fn conn(s: TcpStream) {
        let _ = s.set_nodelay(true);
        hello::serve(TokioIo::new(s)).await
    }
}

mod echo_monoio {
    use super::*;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use monoio::net::{TcpListener, TcpStream};

    pub fn run_legacy(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?;
        rt.block_on(serve(addr, buf))
    }

    pub fn run_uring(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()?;
        rt.block_on(serve(addr, buf))
    }

    async fn serve(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let listener = TcpListener::bind(addr)?;
        ready(&[listener.local_addr()?]);
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    monoio::spawn(async move {
                        let _ = echo(s, buf).await;
                    });
                }
                Err(e) => {
                    eprintln!("net_server: accept: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn echo(mut s: TcpStream, buf: usize) -> io::Result<()> {
        s.set_nodelay(true)?;
        // monoio owns the buffer during the operation: read fills the
        // Vec's spare capacity and sets its length.
        let mut buf = Vec::with_capacity(buf);
        loop {
            let (r, b) = s.read(buf).await;
            if r? == 0 {
                return Ok(());
            }
            let (r, mut b) = s.write_all(b).await;
            r?;
            b.clear();
            buf = b;
        }
    }
}

mod echo_glommio {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::{TcpListener, TcpStream};

    pub fn run(addr: SocketAddr, buf: usize) -> io::Result<()> {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .map_err(|e| io::Error::other(format!("glommio executor: {e}")))?;
        ex.run(async move {
            let listener = TcpListener::bind(addr).map_err(|e| io::Error::other(e.to_string()))?;
            ready(&[listener
                .local_addr()
                .map_err(|e| io::Error::other(e.to_string()))?]);
            loop {
                match listener.accept().await {
                    Ok(s) => {
                        glommio::spawn_local(async move {
                            let _ = echo(s, buf).await;
                        })
                        .detach();
                    }
                    Err(e) => {
                        eprintln!("net_server: accept: {e}");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
    }

    async fn echo(mut s: TcpStream, buf: usize) -> io::Result<()> {
        s.set_nodelay(true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut buf = vec![0u8; buf];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        }
    }
}

/// The practical limit: one thread, one epoll, edge-triggered; every
/// connection is a slab entry with its buffer. No tasks, no wakers, no
/// queues: an event leads straight to the read and write syscalls.
mod echo_mio {
    use super::*;
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};
    use slab::Slab;

    const LISTENER: Token = Token(usize::MAX);

    struct Conn {
        stream: TcpStream,
        buf: Vec<u8>,
        /// Bytes of `buf` read and not yet written back: `pos..len`.
        pos: usize,
        len: usize,
        /// Whether the socket may have bytes to read (a readable edge came
        /// after the last short read or `WouldBlock`).
        readable: bool,
    }

    /// `to_eagain`: read until `WouldBlock` even after a short read (one
    /// more `recv` per request), as fairloop's `IoSource` does today.
    pub fn run(addr: SocketAddr, buf: usize, to_eagain: bool) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        ready(&[listener.local_addr()?]);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut conns: Slab<Conn> = Slab::new();
        let mut events = Events::with_capacity(1024);
        loop {
            match poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    loop {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let _ = stream.set_nodelay(true);
                                let entry = conns.vacant_entry();
                                poll.registry().register(
                                    &mut stream,
                                    Token(entry.key()),
                                    Interest::READABLE | Interest::WRITABLE,
                                )?;
                                entry.insert(Conn {
                                    stream,
                                    buf: vec![0u8; buf],
                                    pos: 0,
                                    len: 0,
                                    readable: true,
                                });
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                eprintln!("net_server: accept: {e}");
                                break;
                            }
                        }
                    }
                    continue;
                }
                let key = ev.token().0;
                let done = match conns.get_mut(key) {
                    Some(c) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        drive(c, to_eagain).unwrap_or(true)
                    }
                    None => false,
                };
                if done {
                    let mut c = conns.remove(key);
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }

    /// Echoes until the socket would block; `true` when the peer closed.
    /// A short read (fewer bytes than the buffer holds) means the receive
    /// queue was empty at that moment, and the next byte to arrive brings a
    /// new edge: so, as tokio does, no second `read` just to see
    /// `WouldBlock`.
    fn drive(c: &mut Conn, to_eagain: bool) -> io::Result<bool> {
        loop {
            while c.pos < c.len {
                match c.stream.write(&c.buf[c.pos..c.len]) {
                    Ok(n) => c.pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            c.pos = 0;
            c.len = 0;
            if !c.readable {
                return Ok(false);
            }
            match c.stream.read(&mut c.buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    c.len = n;
                    c.readable = to_eagain || n == c.buf.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads requests off a connection and answers them; generic over how to
/// read, write and do the `/work` fan-out, so both runtimes run the same
/// handler code.
macro_rules! serve_http {
    ($stream:expr, $work:expr) => {{
        let mut s = $stream;
        let _ = s.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let req = loop {
                match http::parse_request(&buf) {
                    Ok(Some(req)) => break req,
                    Ok(None) => {}
                    Err(msg) => {
                        let resp = http::response("400 Bad Request", msg.as_bytes(), false);
                        let _ = s.write_all(&resp).await;
                        return;
                    }
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            buf.drain(..req.len);
            let work = if req.path == "/work" {
                Some($work.await)
            } else {
                None
            };
            let resp = respond(&req, work);
            if s.write_all(&resp).await.is_err() || !req.keep_alive {
                return;
            }
        }
    }};
}

mod http_fairloop {
    use super::*;
    use fairloop::net::{TcpListener, TcpStream};
    use fairloop::partition::Partition;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    pub fn run(addr: SocketAddr) -> io::Result<()> {
        let rt = fairloop_benches::fairloop_rt();
        let api_l = TcpListener::bind(addr)?;
        let health_l = TcpListener::bind(addr)?;
        ready(&[api_l.local_addr()?, health_l.local_addr()?]);
        rt.block_on(async move {
            // Both partitions live on the one core; the listener (and so
            // every connection it accepts) belongs to the partition whose
            // task first polls it.
            let api = Partition::builder().name("api").build()?;
            let health = Partition::builder()
                .name("healthcheck")
                .latency(Duration::from_millis(1))
                .build()?;
            // `fairloop::spawn` from a partition's task: each connection
            // task (and its sub-tasks) stays in that partition.
            let a = api.spawn(accept::fairloop(api_l, conn));
            let h = health.spawn(accept::fairloop(health_l, conn));
            let _ = futures_lite::future::zip(a, h).await;
            Ok(())
        })
    }

    async fn conn(s: TcpStream) {
        serve_http!(s, work())
    }

    async fn work() -> u64 {
        let parts: Vec<_> = (0..SUBTASKS)
            .map(|i| fairloop::spawn(async move { subtask(i) }))
            .collect();
        let mut sum = 0u64;
        for p in parts {
            sum = sum.wrapping_add(p.await.unwrap_or(0));
        }
        sum
    }
}

mod http_tokio {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub fn run(addr: SocketAddr) -> io::Result<()> {
        let rt = fairloop_benches::tokio_rt();
        rt.block_on(async move {
            let api_l = TcpListener::bind(addr).await?;
            let health_l = TcpListener::bind(addr).await?;
            ready(&[api_l.local_addr()?, health_l.local_addr()?]);
            let a = tokio::spawn(accept::tokio(api_l, conn));
            let h = tokio::spawn(accept::tokio(health_l, conn));
            let _ = tokio::join!(a, h);
            Ok(())
        })
    }

    async fn conn(s: TcpStream) {
        serve_http!(s, work())
    }

    async fn work() -> u64 {
        let parts: Vec<_> = (0..SUBTASKS)
            .map(|i| tokio::spawn(async move { subtask(i) }))
            .collect();
        let mut sum = 0u64;
        for p in parts {
            sum = sum.wrapping_add(p.await.unwrap_or(0));
        }
        sum
    }
}
