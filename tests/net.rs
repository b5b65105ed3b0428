//! Networking through the facade (`fairloop::net`): TCP echo with a
//! thousand concurrent connections over two cores (each client in its own
//! anonymous partition); UDP and Unix round trips; a connection handed from
//! core 0 to a partition on core 1 (and then served by core 1's reactor);
//! sockets that keep serving while their partition migrates; half-close;
//! the errors a user meets (address in use, refused, reset, peer closed, a
//! socket outliving its runtime) as `io::Error`s, never panics; and the
//! cooperative IO budget (an always-ready socket does not starve its
//! partition's other tasks). With the `tokio` and `hyper` features: tokio's
//! IO traits and hyper 1.x on fairloop streams.

mod common;

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{rt, until, with_timeout};
use fairloop::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use fairloop::partition::{self, Partition, PartitionSpec, Placement};
use fairloop::{core_id, spawn, yield_now, Runtime};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const T: u64 = 30;
const WAIT: Duration = Duration::from_secs(10);

fn rt_with(cores: usize, placement: Placement) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .pin_cores(false)
        .placement(placement)
        .build()
        .expect("build a runtime")
}

/// Lifts the soft limit on open files to the hard one (a thousand
/// connections need over 2,000 descriptors; some systems start at 1,024).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The bytes client `id` sends: a pattern no other client sends.
fn payload(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ id.wrapping_mul(7919) ^ (i >> 8)) as u8)
        .collect()
}

/// Reads until end of stream.
async fn read_to_end(s: &mut (impl futures_lite::AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

/// Echoes until end of stream, then closes.
async fn echo(mut s: TcpStream) -> std::io::Result<u64> {
    let mut buf = [0u8; 1500];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            s.close().await?;
            return Ok(total);
        }
        s.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// A socket file path no other test (or run) uses; removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TempPath(std::env::temp_dir().join(format!(
            "fairloop-net-{tag}-{}-{}-{nanos}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn echo_a_thousand_connections_over_two_cores() {
    with_timeout(T, || {
        raise_fd_limit();
        const CONNS: usize = 1000;
        const LEN: usize = 6000;
        let rt = rt_with(2, Placement::RoundRobin);
        let client_cores = Arc::new(Mutex::new([0usize; 2]));
        let cores = client_cores.clone();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            // The acceptor hands every connection to a fresh partition
            // (placed round robin, so both cores serve).
            let acceptor = spawn(async move {
                for _ in 0..CONNS {
                    let (s, _) = listener.accept().await.expect("accept");
                    partition::spawn(PartitionSpec::anonymous(), echo(s)).detach();
                }
            });
            let clients: Vec<_> = (0..CONNS)
                .map(|id| {
                    let cores = cores.clone();
                    partition::spawn(PartitionSpec::anonymous(), async move {
                        cores.lock().unwrap()[core_id()] += 1;
                        let mut s = TcpStream::connect(addr).await.expect("connect");
                        let data = payload(id, LEN);
                        // Uneven chunks, so the echo sees many boundaries.
                        let mut at = 0;
                        let mut step = 1 + id % 700;
                        while at < LEN {
                            let end = (at + step).min(LEN);
                            s.write_all(&data[at..end]).await.expect("write");
                            at = end;
                            step = step * 3 % 1021 + 1;
                        }
                        s.close().await.expect("shutdown(Write)");
                        let back = read_to_end(&mut s).await.expect("read back");
                        assert!(back == data, "client {id}: echo differs");
                    })
                })
                .collect();
            for (id, c) in clients.into_iter().enumerate() {
                c.await.unwrap_or_else(|e| panic!("client {id}: {e}"));
            }
            acceptor.await.expect("acceptor");
        });
        let cores = *client_cores.lock().unwrap();
        assert!(
            cores[0] > 0 && cores[1] > 0,
            "clients ran on both cores: {cores:?}"
        );
    });
}

#[test]
fn udp_round_trips() {
    with_timeout(T, || {
        rt(1).block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            assert_eq!(
                a.peer_addr().expect_err("not connected").kind(),
                ErrorKind::NotConnected
            );

            // send_to / recv_from, both ways; B receives in its own task.
            let b = Arc::new(b);
            let b2 = b.clone();
            let server = spawn(async move {
                let mut buf = [0u8; 64];
                for _ in 0..10 {
                    let (n, from) = b2.recv_from(&mut buf).await.expect("recv_from");
                    b2.send_to(&buf[..n], from).await.expect("send_to");
                }
            });
            let mut buf = [0u8; 64];
            for i in 0..10u8 {
                let msg = [i; 17];
                assert_eq!(a.send_to(&msg, b_addr).await.expect("send_to"), 17);
                let (n, from) = a.recv_from(&mut buf).await.expect("recv_from");
                assert_eq!((n, from), (17, b_addr));
                assert_eq!(buf[..n], msg);
            }
            server.await.expect("server");

            // connect / send / recv.
            a.connect(b_addr).expect("connect a");
            b.connect(a_addr).expect("connect b");
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            assert_eq!(a.send(b"ping").await.unwrap(), 4);
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ping");
            b.send(b"pong").await.unwrap();
            let n = a.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"pong");

            // peek_from leaves the datagram queued.
            a.send(b"again").await.unwrap();
            let (n, from) = b.peek_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"again"[..], a_addr));
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"again");
        });
    });
}

#[test]
fn unix_stream_round_trip_and_pair() {
    with_timeout(T, || {
        let path = TempPath::new("stream");
        let p = path.0.clone();
        rt(2).block_on(async move {
            let listener = UnixListener::bind(&p).expect("bind");
            assert_eq!(
                listener.local_addr().unwrap().as_pathname(),
                Some(p.as_path())
            );
            // A second bind to the same file: address in use.
            let err = UnixListener::bind(&p).expect_err("bound twice");
            assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

            let server = spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let got = read_to_end(&mut s).await.expect("read");
                s.write_all(&got).await.expect("write");
                s.write_all(b"!").await.expect("write");
                s.close().await.expect("close");
            });
            let mut c = UnixStream::connect(&p).await.expect("connect");
            assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
            let data = payload(1, 100_000);
            c.write_all(&data).await.expect("write");
            c.shutdown(Shutdown::Write).expect("shutdown");
            let back = read_to_end(&mut c).await.expect("read");
            assert_eq!(back.len(), data.len() + 1);
            assert!(back[..data.len()] == data[..] && back[data.len()] == b'!');
            server.await.expect("server");

            // pair(): vectored writes, shared references, end of stream.
            let (a, mut b) = UnixStream::pair().expect("pair");
            let writer = spawn(async move {
                let mut w = &a;
                let bufs = [
                    std::io::IoSlice::new(b"hello "),
                    std::io::IoSlice::new(b"unix"),
                ];
                let n = w.write_vectored(&bufs).await.expect("write_vectored");
                assert_eq!(n, 10);
                drop(a);
            });
            let got = read_to_end(&mut b).await.expect("read");
            assert_eq!(got, b"hello unix");
            writer.await.expect("writer");
        });
        assert!(path.0.exists(), "the socket file stays until removed");
        drop(path);
    });
}

#[test]
fn unix_datagram_round_trip() {
    with_timeout(T, || {
        let (pa, pb) = (TempPath::new("dgram-a"), TempPath::new("dgram-b"));
        let (a_path, b_path) = (pa.0.clone(), pb.0.clone());
        rt(1).block_on(async move {
            let a = UnixDatagram::bind(&a_path).expect("bind a");
            let b = UnixDatagram::bind(&b_path).expect("bind b");
            a.send_to(b"one", &b_path).await.expect("send_to");
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await.expect("recv_from");
            assert_eq!(&buf[..n], b"one");
            assert_eq!(from.as_pathname(), Some(a_path.as_path()));
            b.connect(&a_path).expect("connect");
            b.send(b"two").await.expect("send");
            let n = a.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], b"two");

            let (x, y) = UnixDatagram::pair().expect("pair");
            x.send(b"three").await.expect("send");
            let n = y.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], b"three");
        });
    });
}

/// A blocking client on a plain thread: sends `rounds` numbered 8-byte
/// messages and checks each echo, counting round trips in `done`.
fn blocking_client(
    addr: std::net::SocketAddr,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("client connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            s.write_all(&i.to_le_bytes()).expect("client write");
            let mut back = [0u8; 8];
            s.read_exact(&mut back).expect("client read (echo lost?)");
            assert_eq!(u64::from_le_bytes(back), i, "echo out of order");
            i += 1;
            done.store(i, Ordering::SeqCst);
        }
        i
    })
}

#[test]
fn connection_handed_from_core_0_to_a_partition_on_core_1() {
    with_timeout(T, || {
        const ROUNDS: u64 = 400;
        let rt = rt(2);
        let handle = rt.handle();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap();
            let done = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let client = blocking_client(addr, done.clone(), stop.clone());

            // Core 0 accepts and serves the first message itself, so the
            // socket is registered with core 0's reactor.
            assert_eq!(core_id(), 0);
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).unwrap();
            let mut first = [0u8; 8];
            s.read_exact(&mut first).await.expect("read on core 0");
            s.write_all(&first).await.expect("write on core 0");

            let p1 = Partition::builder()
                .placement(Placement::Core(1))
                .build()
                .expect("partition on core 1");
            let server = p1.spawn(async move {
                let remote_wakes = || handle.metrics().cores[1].remote_wakes;
                let mut buf = [0u8; 8];
                // A few round trips to settle the hand-over.
                for _ in 0..10 {
                    s.read_exact(&mut buf).await.expect("read on core 1");
                    s.write_all(&buf).await.expect("write on core 1");
                }
                let (remote_before, mut rounds) = (remote_wakes(), 0u64);
                loop {
                    assert_eq!(core_id(), 1);
                    match s.read_exact(&mut buf).await {
                        Ok(()) => s.write_all(&buf).await.expect("write on core 1"),
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                        Err(e) => panic!("read on core 1: {e}"),
                    }
                    rounds += 1;
                }
                (rounds, remote_wakes() - remote_before)
            });
            until(WAIT, "round trips on core 1", || {
                done.load(Ordering::SeqCst) > ROUNDS
            })
            .await;
            stop.store(true, Ordering::SeqCst);
            let total = join_thread(client).await;
            assert!(total > ROUNDS);
            let (rounds, remote) = server.await.expect("server on core 1");
            // Served by core 1's own reactor: its readiness wakes the task
            // locally. Were the socket still registered with core 0, every
            // round trip would be a foreign wake of core 1.
            assert!(
                remote < rounds / 4,
                "{remote} foreign wakes of core 1 in {rounds} round trips: \
                 the socket is still served from core 0"
            );
        });
    });
}

/// Joins a plain thread without blocking the core.
async fn join_thread<T: Send + 'static>(h: thread::JoinHandle<T>) -> T {
    fairloop::task::spawn_blocking(move || h.join().expect("thread"))
        .await
        .expect("spawn_blocking")
}

#[test]
fn a_migrating_partition_keeps_serving_its_sockets() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap();
            let done = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let client = blocking_client(addr, done.clone(), stop.clone());

            let mover = Partition::builder()
                .name("mover")
                .pinned(false)
                .build()
                .expect("partition");
            let seen = Arc::new(Mutex::new([0u64; 2]));
            let seen2 = seen.clone();
            // The listener, too, moves with the partition.
            let server = mover.spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 8];
                loop {
                    match s.read_exact(&mut buf).await {
                        Ok(()) => s.write_all(&buf).await.expect("write"),
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return,
                        Err(e) => panic!("read: {e}"),
                    }
                    seen2.lock().unwrap()[core_id()] += 1;
                }
            });
            for round in 0..6 {
                let target = (mover.core() + 1) % 2;
                mover.migrate_to(target).expect("migrate");
                until(WAIT, "the move", || mover.core() == target).await;
                let at = done.load(Ordering::SeqCst);
                until(WAIT, &format!("round trips after move {round}"), || {
                    done.load(Ordering::SeqCst) > at + 30
                })
                .await;
            }
            stop.store(true, Ordering::SeqCst);
            join_thread(client).await;
            server.await.expect("server");
            let seen = *seen.lock().unwrap();
            assert!(seen[0] > 0 && seen[1] > 0, "served on both cores: {seen:?}");
            assert!(mover.metrics().migrations >= 6);
        });
    });
}

#[test]
fn half_close_then_reply() {
    with_timeout(T, || {
        rt(2).block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap();
            let server = spawn(async move {
                let (mut s, peer) = listener.accept().await.expect("accept");
                assert_eq!(s.peer_addr().unwrap(), peer);
                let mut got = Vec::new();
                let mut buf = [0u8; 3];
                loop {
                    match s.read(&mut buf).await.expect("read") {
                        0 => break,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
                // End of stream again, and the write half still works.
                assert_eq!(s.read(&mut buf).await.expect("read at EOF"), 0);
                s.write_all(b"got ").await.expect("reply");
                s.write_all(&got).await.expect("reply");
            });
            let mut c = TcpStream::connect(addr).await.expect("connect");
            assert_eq!(c.peer_addr().unwrap(), addr);
            c.write_all(b"question").await.expect("write");
            c.shutdown(Shutdown::Write).expect("shutdown(Write)");
            let reply = read_to_end(&mut c).await.expect("read reply");
            assert_eq!(reply, b"got question");
            server.await.expect("server");
        });
    });
}

#[test]
fn bind_in_use_and_connect_refused_are_errors() {
    with_timeout(T, || {
        rt(1).block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().unwrap();
            let err = TcpListener::bind(addr).expect_err("bound twice");
            assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

            let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let err = UdpSocket::bind(u.local_addr().unwrap()).expect_err("bound twice");
            assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

            // A port nobody listens on any more.
            drop(l);
            let err = TcpStream::connect(addr).await.expect_err("nobody listens");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

            let gone = TempPath::new("refused");
            let l = UnixListener::bind(&gone.0).expect("bind unix");
            drop(l);
            let err = UnixStream::connect(&gone.0)
                .await
                .expect_err("nobody listens");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
            drop(gone);
            let err = UnixStream::connect(TempPath::new("missing").0.as_path())
                .await
                .expect_err("no file");
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        });
    });
}

#[test]
fn reset_and_peer_close_are_reported_not_panics() {
    with_timeout(T, || {
        rt(2).block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap();

            // Peer closes gracefully: reads give Ok(0), again and again.
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = listener.accept().await.expect("accept");
            drop(s);
            let mut buf = [0u8; 16];
            assert_eq!(c.read(&mut buf).await.expect("read"), 0);
            assert_eq!(c.read(&mut buf).await.expect("read"), 0);

            // Peer resets (SO_LINGER 0): a read fails with the reset, and
            // writing fails too before long.
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = listener.accept().await.expect("accept");
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            drop(s);
            let err = c.read(&mut buf).await.expect_err("reset");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
            let mut wrote = 0usize;
            let err = loop {
                match c.write(&[7u8; 1024]).await {
                    Ok(n) => wrote += n,
                    Err(e) => break e,
                }
                assert!(
                    wrote < 64 << 20,
                    "writes to a reset connection kept succeeding"
                );
            };
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
                ),
                "{err}"
            );

            // A reset while the reader is parked wakes it with the error.
            let c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = listener.accept().await.expect("accept");
            let reader = spawn(async move {
                let mut c = c;
                let mut buf = [0u8; 16];
                c.read(&mut buf).await
            });
            fairloop::time::sleep(Duration::from_millis(20)).await;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            let err = reader.await.expect("reader").expect_err("reset");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        });
    });
}

#[test]
fn a_socket_that_outlives_its_runtime() {
    with_timeout(T, || {
        let a = rt(1);
        let (stream, peer, listener) = a.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut c = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .expect("connect");
            let (mut s, _) = listener.accept().await.expect("accept");
            // Registered with runtime A's core.
            s.write_all(b"before").await.unwrap();
            let mut buf = [0u8; 6];
            c.read_exact(&mut buf).await.unwrap();
            (c, s, listener)
        });
        drop(a);

        // Outside any runtime: an io::Error, not a panic.
        let mut stream = stream;
        let mut buf = [0u8; 16];
        let err = futures_lite::future::block_on(stream.read(&mut buf))
            .expect_err("used outside a runtime");
        assert_eq!(err.kind(), ErrorKind::Other, "{err}");
        let err = futures_lite::future::block_on(stream.write(b"x")).expect_err("outside");
        assert_eq!(err.kind(), ErrorKind::Other, "{err}");
        let err = futures_lite::future::block_on(listener.accept()).expect_err("outside");
        assert_eq!(err.kind(), ErrorKind::Other, "{err}");

        // In another runtime, the socket moves there and works again.
        let b = rt(1);
        let mut peer = peer;
        b.block_on(async move {
            peer.write_all(b"after").await.expect("write in runtime B");
            let mut buf = [0u8; 5];
            stream
                .read_exact(&mut buf)
                .await
                .expect("read in runtime B");
            assert_eq!(&buf, b"after");
            drop(listener);
        });
        drop(b);
    });
}

#[test]
fn an_always_ready_socket_does_not_starve_its_partition() {
    with_timeout(T, || {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        // Fill the socket before anyone reads, then close the other end:
        // every read finds bytes (or the end of stream) ready, none waits,
        // so only the budget can make the reader yield.
        let sock = socket2::SockRef::from(&theirs);
        let _ = sock.set_send_buffer_size(2 << 20);
        theirs.set_nonblocking(true).unwrap();
        let data = payload(9, 2 << 20);
        let mut total = 0usize;
        let mut theirs = theirs;
        loop {
            match theirs.write(&data[total..(total + (64 << 10)).min(data.len())]) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("prefill: {e}"),
            }
            if total == data.len() {
                break;
            }
        }
        drop(theirs);
        assert!(total >= 64 << 10, "prefilled only {total} bytes");
        rt(1).block_on(async move {
            let mut ours = UnixStream::from_std(ours).expect("from_std");
            let ticks = Arc::new(AtomicU64::new(0));
            let t = ticks.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            // The other task of the same partition.
            let ticker = spawn(async move {
                while !s.load(Ordering::SeqCst) {
                    t.fetch_add(1, Ordering::SeqCst);
                    yield_now().await;
                }
            });
            yield_now().await;
            let ticks_before = ticks.load(Ordering::SeqCst);
            // Tiny reads in a tight loop: thousands of ready operations.
            let mut got = 0usize;
            let mut buf = [0u8; 32];
            loop {
                let n = ours.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                assert!(buf[..n] == data[got..got + n], "bytes out of order");
                got += n;
            }
            let ticks_during = ticks.load(Ordering::SeqCst) - ticks_before;
            stop.store(true, Ordering::SeqCst);
            ticker.await.expect("ticker");
            assert_eq!(got, total);
            let reads = total / buf.len();
            assert!(
                ticks_during >= 10,
                "the other task ran {ticks_during} times during {reads} ready reads"
            );
        });
    });
}

/// A connected UDP socket whose peer is gone: the ICMP refusal wakes a
/// parked receive with `ConnectionRefused`; then the socket is idle again
/// and a receive must wait without busy-polling.
#[test]
fn udp_refused_peer_is_an_error_and_does_not_spin() {
    with_timeout(T, || {
        let rt = rt(1);
        rt.block_on(async {
            let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
            let gone_addr = gone.local_addr().unwrap();
            drop(gone);
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.connect(gone_addr).unwrap();
            let u = Arc::new(u);
            // A receive parked before the refusal arrives is woken by it.
            let u2 = u.clone();
            let parked = spawn(async move {
                let mut buf = [0u8; 16];
                u2.recv(&mut buf).await
            });
            fairloop::time::sleep(Duration::from_millis(10)).await;
            u.send(b"anyone?").await.expect("send");
            let mut buf = [0u8; 16];
            // The ICMP "port unreachable" comes back as ConnectionRefused.
            let err = fairloop::time::timeout(WAIT, parked)
                .await
                .expect("the refusal arrives")
                .expect("task")
                .expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
            // Then the socket is idle: a receive waits without busy-polling.
            let count = AtomicU64::new(0);
            let mut fut = std::pin::pin!(u.recv(&mut buf));
            let counted = std::future::poll_fn(|cx| {
                count.fetch_add(1, Ordering::Relaxed);
                fut.as_mut().poll(cx)
            });
            let idle = fairloop::time::timeout(Duration::from_millis(50), counted).await;
            assert!(idle.is_err(), "nothing to receive: {idle:?}");
            let polls = count.load(Ordering::Relaxed);
            assert!(
                polls < 20,
                "the receive was polled {polls} times in 50 ms on an idle socket: it spins"
            );
        });
    });
}

/// tokio's IO traits on fairloop streams (`--features tokio`).
#[cfg(feature = "tokio")]
mod tokio_traits {
    use super::{payload, rt, spawn, with_timeout, TcpListener, TcpStream, UnixStream, T};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn tokio_read_write_round_trip() {
        with_timeout(T, || {
            rt(2).block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().unwrap();
                let server = spawn(async move {
                    let (mut s, _) = listener.accept().await.expect("accept");
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.expect("read_to_end");
                    s.write_all(&got).await.expect("write_all");
                    // (`TcpStream::shutdown(how)`, like std's, hides the trait method)
                    AsyncWriteExt::shutdown(&mut s).await.expect("shutdown");
                });
                let mut c = TcpStream::connect(addr).await.expect("connect");
                let data = payload(3, 300_000);
                c.write_all(&data).await.expect("write_all");
                AsyncWriteExt::shutdown(&mut c).await.expect("shutdown");
                let mut back = Vec::with_capacity(data.len());
                c.read_to_end(&mut back).await.expect("read_to_end");
                assert!(back == data, "the echo differs");
                server.await.expect("server");

                // And on a Unix pair, through shared references.
                let (a, b) = UnixStream::pair().expect("pair");
                (&a).write_all(b"tokio").await.expect("write");
                drop(a);
                let mut s = String::new();
                (&b).read_to_string(&mut s).await.expect("read");
                assert_eq!(s, "tokio");
            });
        });
    }
}

/// hyper 1.x on fairloop (`--features hyper`): streams as `hyper::rt`
/// IO (directly and through hyper-util's `TokioIo`), the timer and the
/// executor.
#[cfg(feature = "hyper")]
mod hyper_rt {
    use std::convert::Infallible;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{join_thread, rt, spawn, with_timeout, TcpListener, T, WAIT};
    use fairloop::net::hyper::{FairloopExecutor, FairloopTimer};
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::rt::{Executor, Timer};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};

    async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let body = format!(
            "hello {} from core {}",
            req.uri().path(),
            fairloop::core_id()
        );
        Ok(Response::new(Full::new(Bytes::from(body))))
    }

    fn get(addr: std::net::SocketAddr, path: &str) -> std::thread::JoinHandle<String> {
        let path = path.to_owned();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(WAIT)).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).expect("read the reply");
            reply
        })
    }

    #[test]
    fn hyper_serves_http1_on_fairloop_streams() {
        with_timeout(T, || {
            rt(1).block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().unwrap();

                // The stream itself is hyper IO.
                let client = get(addr, "/direct");
                let (stream, _) = listener.accept().await.expect("accept");
                http1::Builder::new()
                    .timer(FairloopTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(stream, service_fn(hello))
                    .await
                    .expect("serve");
                let reply = join_thread(client).await;
                assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
                assert!(reply.ends_with("hello /direct from core 0"), "{reply}");

                // Through hyper-util's TokioIo (the `tokio` traits).
                let client = get(addr, "/tokio-io");
                let (stream, _) = listener.accept().await.expect("accept");
                http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service_fn(hello))
                    .await
                    .expect("serve");
                let reply = join_thread(client).await;
                assert!(reply.ends_with("hello /tokio-io from core 0"), "{reply}");

                // The timer: a client that never sends its headers is cut
                // off by the header-read timeout.
                let silent = std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).expect("connect");
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    let mut reply = Vec::new();
                    s.read_to_end(&mut reply).map(|_| reply)
                });
                let (stream, _) = listener.accept().await.expect("accept");
                let started = Instant::now();
                let served = http1::Builder::new()
                    .timer(FairloopTimer::new())
                    .header_read_timeout(Duration::from_millis(100))
                    .serve_connection(stream, service_fn(hello))
                    .await;
                assert!(served.is_err(), "the silent client timed out");
                assert!(started.elapsed() < WAIT);
                join_thread(silent).await.expect("closed, not stuck");
            });
        });
    }

    #[test]
    fn timer_reset_and_executor() {
        with_timeout(T, || {
            rt(1).block_on(async {
                let timer = FairloopTimer::new();
                let started = Instant::now();
                let mut sleep = timer.sleep(Duration::from_secs(60));
                timer.reset(&mut sleep, Instant::now() + Duration::from_millis(10));
                sleep.await;
                assert!(started.elapsed() < Duration::from_secs(5), "reset moved it");
                timer.sleep_until(Instant::now()).await;

                let ran = Arc::new(AtomicBool::new(false));
                let r = ran.clone();
                let me = fairloop::partition::current().id();
                FairloopExecutor::new().execute(async move {
                    assert_eq!(fairloop::partition::current().id(), me);
                    r.store(true, Ordering::SeqCst);
                });
                let p = fairloop::partition::Partition::builder()
                    .build()
                    .expect("partition");
                let pid = p.id();
                let r2 = Arc::new(AtomicBool::new(false));
                let r3 = r2.clone();
                FairloopExecutor::in_partition(p).execute(async move {
                    assert_eq!(fairloop::partition::current().id(), pid);
                    r3.store(true, Ordering::SeqCst);
                });
                super::until(WAIT, "the executed futures", || {
                    ran.load(Ordering::SeqCst) && r2.load(Ordering::SeqCst)
                })
                .await;
                let _ = spawn(async {}).await;
            });
        });
    }
}
