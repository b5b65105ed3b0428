//! Closed-loop load from this process: `conns` connections on a tokio
//! `multi_thread` runtime, each sending a request, reading the whole
//! answer, checking it and starting again at once. Used by `net_echo`
//! (echo), and by `net_http` and `scaling` as the HTTP client where `wrk`
//! is missing or `NET_HTTP_CLIENT=rust` asks for it.
//!
//! A request counts if it started and ended inside the measurement window;
//! the server's CPU time is read just before the window opens and just
//! after it closes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{http, Measured, Server, HELLO};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What each connection asks.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Sends `size` bytes (a pattern of its own) and reads them back.
    Echo {
        /// Message length in bytes.
        size: usize,
    },
    /// `GET /` with keep-alive; expects `200` with the body [`HELLO`].
    Get,
}

/// How much load, for how long.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Connections, each with one request in flight.
    pub conns: usize,
    /// tokio worker threads of the client.
    pub threads: usize,
    /// Load before the measurement window.
    pub warmup: Duration,
    /// The measurement window.
    pub secs: Duration,
    /// Whether to read the server's CPU time per thread too.
    pub per_thread: bool,
}

/// Runs `work` against `server` (listening on `addr`) as `spec` says.
pub fn run(server: &Server, addr: SocketAddr, work: Work, spec: &Spec) -> io::Result<Measured> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads)
        .enable_all()
        .build()?;
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(spec.conns);
        for c in 0..spec.conns {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let phase = phase.clone();
            clients.push(match work {
                Work::Echo { size } => tokio::spawn(echo_client(s, c, size, phase)),
                Work::Get => tokio::spawn(get_client(s, c, phase)),
            });
        }
        Ok::<_, io::Error>(clients)
    })?;
    std::thread::sleep(spec.warmup);
    let cpu0 = server.cpu_sample(spec.per_thread);
    let client0 = super::rusage_cpu(false);
    let t0 = Instant::now();
    phase.store(MEASURE, Ordering::Release);
    std::thread::sleep(spec.secs);
    phase.store(STOP, Ordering::Release);
    let elapsed = t0.elapsed();
    let client1 = super::rusage_cpu(false);
    let cpu1 = server.cpu_sample(spec.per_thread);
    let mut lat: Vec<Duration> = Vec::new();
    rt.block_on(async {
        for c in clients {
            match c.await {
                Ok(Ok(v)) => lat.extend(v.into_iter().map(|n| Duration::from_nanos(n as u64))),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        Ok(())
    })?;
    drop(rt);
    lat.sort_unstable();
    let (server_cpu, thread_cpu) = cpu1.since(&cpu0);
    Ok(Measured {
        requests: lat.len() as u64,
        elapsed,
        cpu_wall: elapsed,
        server_cpu,
        thread_cpu,
        client_cpu: client1.saturating_sub(client0),
        p50: crate::quantile(&lat, 0.50),
        p99: crate::quantile(&lat, 0.99),
        note: String::new(),
    })
}

/// Whether a request that started in `p` and just ended counts: it started
/// and ended inside the window (edge effects: at most one request per
/// connection at each end).
fn counts(p: u8, phase: &AtomicU8) -> bool {
    p == MEASURE && phase.load(Ordering::Acquire) == MEASURE
}

/// A client connection's loop, shared by [`echo_client`] and
/// [`get_client`]: runs `request` (one request, returning the time its I/O
/// took) until the phase is `STOP`; returns the latencies (ns) of the
/// requests that [`counts`]. The callers pass an `async move` closure
/// owning the connection's state: one that borrows it (and `&AtomicU8`
/// here) makes the spawned future fail rustc's higher-ranked `Send` check.
async fn drive(
    phase: Arc<AtomicU8>,
    mut request: impl AsyncFnMut() -> io::Result<Duration>,
) -> io::Result<Vec<u32>> {
    let mut lat = Vec::with_capacity(1 << 16);
    loop {
        let p = phase.load(Ordering::Acquire);
        if p == STOP {
            return Ok(lat);
        }
        let took = request().await?;
        if counts(p, &phase) {
            lat.push(took.as_nanos().min(u32::MAX as u128) as u32);
        }
    }
}

/// One echo connection: send, read the whole echo, check it, repeat;
/// returns the latencies (ns) of the requests completed while measuring.
async fn echo_client(
    mut s: tokio::net::TcpStream,
    conn: usize,
    size: usize,
    phase: Arc<AtomicU8>,
) -> io::Result<Vec<u32>> {
    let msg: Vec<u8> = (0..size).map(|i| (i * 31 + conn * 7) as u8).collect();
    let mut back = vec![0u8; size];
    drive(phase, async move || {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        let took = t.elapsed();
        if back != msg {
            return Err(io::Error::other(format!(
                "connection {conn}: echo differs from what was sent"
            )));
        }
        Ok(took)
    })
    .await
}

/// One HTTP connection: `GET /`, read the whole response, check it,
/// repeat; returns the latencies (ns) of the requests completed while
/// measuring.
async fn get_client(
    mut s: tokio::net::TcpStream,
    conn: usize,
    phase: Arc<AtomicU8>,
) -> io::Result<Vec<u32>> {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    drive(phase, async move || {
        let t = Instant::now();
        s.write_all(REQUEST).await?;
        let (status, len) = loop {
            if let Some(r) = http::parse_response(&buf).map_err(io::Error::other)? {
                break r;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection {conn}: closed by the server"),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let took = t.elapsed();
        if status != 200 || !buf[..len].ends_with(HELLO) {
            return Err(io::Error::other(format!(
                "connection {conn}: unexpected response {:?}",
                String::from_utf8_lossy(&buf[..len])
            )));
        }
        buf.drain(..len);
        Ok(took)
    })
    .await
}
