//! The semantics of stream sockets on the per-core io_uring
//! (`runtime/src/stream.rs`), each scenario run twice: on a runtime built
//! with `io_uring(true)` (the ring, where the kernel allows one; where it
//! does not, the same test runs the epoll fallback and says so on stderr)
//! and on one built with `io_uring(false)` (epoll readiness). Both must
//! behave the same to a user:
//!
//! * a stream dropped while a read is pending closes the connection, also
//!   when the drop happens on another thread or core than the read's;
//! * bytes written and then dropped (no flush, no close) all arrive, then
//!   end of stream; so do bytes written right before `shutdown(Write)`,
//!   and a write after it is `BrokenPipe`;
//! * `flush` returns once the bytes reached the kernel, and a failed send
//!   is reported by a later write or flush;
//! * reads with a tiny buffer see every byte in order, and `peek` sees the
//!   bytes the runtime already received first;
//! * shutting the runtime down with reads (and sends) pending closes every
//!   socket;
//! * one stream read on core 0 and written on core 1 keeps its bytes;
//! * Unix stream pairs move megabytes both ways with vectored IO;
//! * a dropped stream whose peer never reads does not hold its socket
//!   past `Builder::stream_linger`, and bytes cut off by the linger or by
//!   a runtime shutdown show as a reset, never as a clean end of stream.

mod common;

use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, Signal};
use fairloop::net::{TcpStream, UnixStream};
use fairloop::time::{sleep, timeout};
use fairloop::{core_id, spawn, yield_now, Runtime};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The bound on every test.
const T: u64 = 30;
/// How long a peer waits for bytes or for end of stream.
const WAIT: Duration = Duration::from_secs(5);

/// `in_both_modes!(f)` makes `f::io_uring` and `f::epoll`, two tests that
/// run `f(true)` and `f(false)` inside `with_timeout`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                crate::common::with_timeout(crate::T, || super::$name(true));
            }

            #[test]
            fn epoll() {
                crate::common::with_timeout(crate::T, || super::$name(false));
            }
        }
    )*};
}

in_both_modes!(
    drop_during_pending_read_on_the_same_core,
    drop_during_pending_read_on_another_thread,
    write_then_drop_without_flush,
    write_all_then_shutdown_write,
    flush_and_failed_sends,
    small_buffer_reads_and_peek,
    runtime_shutdown_with_pending_operations,
    one_stream_read_on_core_0_written_on_core_1,
    unix_pair_both_ways_vectored,
    a_dropped_stream_whose_peer_never_reads_is_bounded,
    runtime_shutdown_never_truncates_silently,
    more_reads_complete_at_once_than_the_pool_has_buffers,
    peek_after_an_abandoned_read,
    a_reader_that_falls_behind_holds_a_bounded_backlog,
    a_stream_read_on_another_core_reads_through_that_core,
);

/// Whether a runtime that asks for io_uring gets it on this machine
/// (asked once, with a probe runtime).
fn ring_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let probe = Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .io_uring(true)
            .build()
            .expect("build the probe runtime");
        let yes = probe.uses_io_uring();
        eprintln!(
            "net_ring: io_uring {}",
            if yes {
                "works here: the `io_uring` tests run on the ring"
            } else {
                "is not available here: the `io_uring` tests run the epoll fallback"
            }
        );
        yes
    })
}

/// A runtime of `cores` unpinned cores with io_uring on or off; checks it
/// got what it asked for (the ring only where the probe got one).
fn rt_mode(cores: usize, io_uring: bool) -> Runtime {
    let rt = Runtime::builder()
        .cores(cores)
        .pin_cores(false)
        .io_uring(io_uring)
        .build()
        .expect("build a runtime");
    if io_uring {
        assert_eq!(
            rt.uses_io_uring(),
            ring_available(),
            "io_uring(true) should get the ring exactly where the probe got it"
        );
    } else {
        assert!(!rt.uses_io_uring(), "io_uring(false) got a ring anyway");
    }
    eprintln!(
        "net_ring: {} runs on {}",
        thread::current().name().unwrap_or("?"),
        if rt.uses_io_uring() {
            "io_uring"
        } else {
            "epoll"
        }
    );
    rt
}

/// A connected pair of std TCP sockets on loopback: (ours, the peer). The
/// peer's reads and writes give up after [`WAIT`].
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (ours, _) = l.accept().expect("accept");
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.set_write_timeout(Some(WAIT)).unwrap();
    (ours, peer)
}

/// The bytes stream `id` sends: a pattern no other stream sends.
fn payload(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ id.wrapping_mul(7919) ^ (i >> 8)) as u8)
        .collect()
}

#[track_caller]
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, want {}; first difference at {at:?}",
        got.len(),
        want.len()
    );
}

/// A plain thread that waits (at most [`WAIT`]) for one read on `peer`.
fn peer_awaits_eof(peer: std::net::TcpStream) -> thread::JoinHandle<io::Result<usize>> {
    thread::spawn(move || {
        let mut peer = peer;
        let mut buf = [0u8; 64];
        peer.read(&mut buf)
    })
}

#[track_caller]
fn assert_eof(r: io::Result<usize>, what: &str) {
    match r {
        Ok(0) => {}
        Ok(n) => panic!("{what}: the peer read {n} bytes where it expected end of stream"),
        Err(e) => panic!(
            "{what}: the peer saw no end of stream within {WAIT:?} ({e}, {:?}): \
             the socket was never closed",
            e.kind()
        ),
    }
}

/// A plain thread that sleeps `delay`, then reads `peer` to end of stream.
fn peer_reads_all(
    peer: std::net::TcpStream,
    delay: Duration,
) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        thread::sleep(delay);
        let mut peer = peer;
        let mut out = Vec::new();
        peer.read_to_end(&mut out)?;
        Ok(out)
    })
}

/// Reads until end of stream.
async fn read_to_end(s: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

/// After a cancellation the runtime still serves streams on `core`: a
/// round trip with a std peer.
fn round_trip_still_works(rt: &Runtime, core: usize) {
    let (ours, mut peer) = tcp_pair();
    let task = rt.spawn_on(core, async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read ping");
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").await.expect("write pong");
        s.flush().await.expect("flush pong");
        s
    });
    peer.write_all(b"ping").expect("peer writes ping");
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).expect("peer reads pong");
    assert_eq!(&buf, b"pong");
    let s = futures_lite::future::block_on(task).expect("round trip task");
    drop(s);
    assert_eof(peer.read(&mut buf), "round trip stream dropped");
}

/// A read blocked on an idle connection is dropped on the core that
/// submitted it: by aborting its task, and by dropping the read future
/// and then the stream. Either way the socket is closed (the ring cancels
/// the `recv`, whose completion releases the fd): the peer reads end of
/// stream.
fn drop_during_pending_read_on_the_same_core(io_uring: bool) {
    let rt = rt_mode(1, io_uring);

    // The task blocked in `read` is aborted.
    let (ours, peer) = tcp_pair();
    let eof = peer_awaits_eof(peer);
    rt.block_on(async move {
        let reading = Signal::new();
        let r = reading.clone();
        let reader = spawn(async move {
            let mut s = TcpStream::from_std(ours).expect("from_std");
            let mut buf = [0u8; 64];
            // One core: the waiter runs after this task has polled the
            // read below (and, on the ring, submitted its `recv`).
            r.set();
            s.read(&mut buf).await
        });
        reading.wait().await;
        yield_now().await;
        assert!(
            !reader.is_finished(),
            "nothing was sent: the read must wait"
        );
        reader.abort();
        let err = reader.await.expect_err("the reader was aborted");
        assert!(err.is_cancelled(), "{err}");
    });
    assert_eof(eof.join().expect("peer thread"), "aborted reader");

    // The read future is dropped (a timeout), then the stream, on core 0.
    let (ours, peer) = tcp_pair();
    let eof = peer_awaits_eof(peer);
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut buf = [0u8; 64];
        let r = timeout(Duration::from_millis(20), s.read(&mut buf)).await;
        assert!(r.is_err(), "nothing was sent, yet the read gave {r:?}");
        drop(s);
    });
    assert_eof(
        eof.join().expect("peer thread"),
        "dropped after a timed-out read",
    );

    round_trip_still_works(&rt, 0);
}

/// The read is submitted on core 0 and left pending; the stream is then
/// dropped elsewhere: on a plain thread while core 0 sleeps, in a task on
/// core 1, and on a plain thread while core 0 is busy (never parks). On
/// the ring that cancellation travels through core 0's cross-thread
/// queue; if it were lost the `recv` would keep the fd open forever.
fn drop_during_pending_read_on_another_thread(io_uring: bool) {
    let rt = rt_mode(2, io_uring);

    /// On core 0: a stream whose read is pending (the read future gone).
    async fn pending_read(ours: std::net::TcpStream) -> TcpStream {
        assert_eq!(core_id(), 0);
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut buf = [0u8; 64];
        let r = timeout(Duration::from_millis(20), s.read(&mut buf)).await;
        assert!(r.is_err(), "nothing was sent, yet the read gave {r:?}");
        s
    }

    for round in 0..3 {
        // Out of the runtime, dropped on a plain thread; core 0 is idle.
        let (ours, peer) = tcp_pair();
        let eof = peer_awaits_eof(peer);
        let s = rt.block_on(pending_read(ours));
        thread::sleep(Duration::from_millis(5));
        thread::spawn(move || drop(s))
            .join()
            .expect("drop on a plain thread");
        assert_eof(
            eof.join().expect("peer thread"),
            &format!("round {round}: dropped on a plain thread"),
        );

        // Handed to a task on core 1, which drops it.
        let (ours, peer) = tcp_pair();
        let eof = peer_awaits_eof(peer);
        let h = rt.handle();
        rt.block_on(async move {
            let s = pending_read(ours).await;
            h.spawn_on(1, async move {
                assert_eq!(core_id(), 1);
                drop(s);
            })
            .await
            .expect("the dropping task on core 1");
        });
        assert_eof(
            eof.join().expect("peer thread"),
            &format!("round {round}: dropped on core 1"),
        );

        // Dropped on a plain thread while core 0 keeps running tasks.
        let (ours, peer) = tcp_pair();
        let saw_eof = Arc::new(AtomicBool::new(false));
        let saw = saw_eof.clone();
        let eof = thread::spawn(move || {
            let mut peer = peer;
            let mut buf = [0u8; 64];
            let r = peer.read(&mut buf);
            saw.store(true, Ordering::SeqCst);
            r
        });
        rt.block_on(async move {
            let s = pending_read(ours).await;
            let dropper = thread::spawn(move || drop(s));
            let deadline = Instant::now() + WAIT;
            while !saw_eof.load(Ordering::SeqCst) && Instant::now() < deadline {
                yield_now().await;
            }
            dropper.join().expect("drop on a plain thread");
        });
        assert_eof(
            eof.join().expect("peer thread"),
            &format!("round {round}: dropped while core 0 was busy"),
        );
    }

    round_trip_still_works(&rt, 0);
    round_trip_still_works(&rt, 1);
}

/// `write_all` of 1 MiB, then the stream is dropped at once (no flush, no
/// close), on its core or on a plain thread. The peer starts reading late
/// and the stream's send buffer is small, so on the ring sends are still
/// in flight at the drop: every byte must still arrive, in order, and
/// then end of stream.
fn write_then_drop_without_flush(io_uring: bool) {
    const LEN: usize = 1 << 20;
    let rt = rt_mode(2, io_uring);
    for (round, on_plain_thread) in [false, true].into_iter().enumerate() {
        let (ours, peer) = tcp_pair();
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(16 << 10)
            .expect("SO_SNDBUF");
        let reader = peer_reads_all(peer, Duration::from_millis(50));
        let data = Arc::new(payload(round, LEN));
        let d = data.clone();
        let kept = rt.block_on(async move {
            let mut s = TcpStream::from_std(ours).expect("from_std");
            s.write_all(&d).await.expect("write_all");
            if on_plain_thread {
                Some(s)
            } else {
                drop(s);
                None
            }
        });
        drop(kept);
        let got = reader
            .join()
            .expect("peer thread")
            .unwrap_or_else(|e| panic!("round {round}: the peer never saw end of stream: {e}"));
        let what = format!("round {round} (dropped on a plain thread: {on_plain_thread})");
        assert_same_bytes(&got, &data, &what);
    }
}

/// `write_all` of 3 MiB, then the synchronous `shutdown(Write)` right
/// away (on the ring: while sends are in flight, so the shutdown waits for
/// them). The peer gets every byte, then end of stream; a write after the
/// shutdown is `BrokenPipe`; flush and close still succeed, and the read
/// half stays open (the peer's reply arrives).
fn write_all_then_shutdown_write(io_uring: bool) {
    const LEN: usize = 3 << 20;
    let rt = rt_mode(2, io_uring);
    let (ours, peer) = tcp_pair();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(16 << 10)
        .expect("SO_SNDBUF");
    let peer_thread = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        let mut peer = peer;
        let mut got = Vec::new();
        let r = peer.read_to_end(&mut got);
        if r.is_ok() {
            peer.write_all(b"bye").expect("peer replies");
        }
        r.map(|_| got)
    });
    let data = Arc::new(payload(3, LEN));
    let d = data.clone();
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        s.write_all(&d).await.expect("write_all");
        s.shutdown(Shutdown::Write).expect("shutdown(Write)");
        let err = s.write(b"late").await.expect_err("a write after shutdown");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        let err = s
            .write_vectored(&[IoSlice::new(b"late")])
            .await
            .expect_err("a vectored write after shutdown");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        s.flush().await.expect("flush after shutdown");
        s.close().await.expect("close after shutdown");
        let reply = read_to_end(&mut s).await.expect("read the reply");
        assert_eq!(reply, b"bye", "the read half stays open");
    });
    let got = peer_thread
        .join()
        .expect("peer thread")
        .unwrap_or_else(|e| panic!("the peer never saw end of stream: {e}"));
    assert_same_bytes(&got, &data, "bytes written before shutdown(Write)");
}

/// `flush` returns once the bytes reached the kernel: right after it, a
/// blocking read of the peer *on the same core* (so the core cannot
/// submit anything meanwhile) finds them. A send that fails (the peer
/// reset the connection) is reported by a later flush or write, never
/// lost and never a panic.
fn flush_and_failed_sends(io_uring: bool) {
    let rt = rt_mode(1, io_uring);
    let ring = rt.uses_io_uring();

    // Flushed bytes are readable while the core is blocked.
    let (ours, peer) = tcp_pair();
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        s.set_nodelay(true).expect("nodelay");
        let mut peer = peer;
        for i in 0..20 {
            let msg = payload(40 + i, 1 + i * 397);
            s.write_all(&msg).await.expect("write_all");
            s.flush().await.expect("flush");
            let mut back = vec![0u8; msg.len()];
            peer.read_exact(&mut back).unwrap_or_else(|e| {
                panic!("message {i}: flushed bytes are not in the kernel: {e}")
            });
            assert_same_bytes(&back, &msg, &format!("message {i}"));
        }
    });

    // The peer resets after a successful exchange: write, then flush,
    // until one of them fails.
    let (ours, peer) = tcp_pair();
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        s.write_all(b"before")
            .await
            .expect("write before the reset");
        s.flush().await.expect("flush before the reset");
        let mut peer = peer;
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).expect("peer reads");
        assert_eq!(&got, b"before");
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
        drop(peer);
        sleep(Duration::from_millis(20)).await;
        let chunk = [7u8; 1024];
        let mut writes = 0usize;
        let (err, via) = loop {
            match s.write(&chunk).await {
                Ok(_) => writes += 1,
                Err(e) => break (e, "write"),
            }
            if let Err(e) = s.flush().await {
                break (e, "flush");
            }
            assert!(
                writes < 1000,
                "writes and flushes to a reset peer kept succeeding"
            );
        };
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "{via}: {err} ({:?})",
            err.kind()
        );
        if ring {
            // A write on the ring only copies; the send it starts fails,
            // and the flush that waits for it says so.
            assert_eq!(
                (via, writes),
                ("flush", 1),
                "on the ring the failed send surfaces on the first flush"
            );
        }
        // Not forgotten after being reported once: the stream keeps failing.
        let again = match s.write(b"more").await {
            Ok(_) => s.flush().await,
            Err(e) => Err(e),
        };
        assert!(again.is_err(), "a write+flush after the failure succeeded");
    });

    // The peer resets before anything is written: writes alone (no flush)
    // run into the error before long.
    let (ours, peer) = tcp_pair();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(peer);
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut wrote = 0usize;
        let err = loop {
            match s.write(&[9u8; 4096]).await {
                Ok(n) => wrote += n,
                Err(e) => break e,
            }
            assert!(wrote < 64 << 20, "writes to a reset peer kept succeeding");
        };
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "{err} ({:?})",
            err.kind()
        );
    });
}

/// The peer sends 10 KiB in one write; reads of 7 bytes at a time get all
/// of it in order (on the ring, most of them from the stream's receive
/// buffer). Then `peek` after a partial read sees the bytes from where the
/// read stopped, leaves them there, and the next read gets them.
fn small_buffer_reads_and_peek(io_uring: bool) {
    let rt = rt_mode(1, io_uring);
    let (ours, mut peer) = tcp_pair();
    let data = payload(5, 10 * 1024);
    peer.write_all(&data).expect("peer sends 10 KiB");
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut got = Vec::with_capacity(data.len());
        let mut buf = [0u8; 7];
        while got.len() < data.len() {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0 && n <= buf.len(), "read gave {n}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_same_bytes(&got, &data, "7-byte reads");

        let msg = payload(6, 100);
        peer.write_all(&msg).expect("peer sends 100 bytes");
        let mut head = [0u8; 3];
        s.read_exact(&mut head).await.expect("read 3");
        assert_eq!(head, msg[..3]);
        for round in 0..2 {
            let mut pk = [0u8; 200];
            let n = s.peek(&mut pk).await.expect("peek");
            assert!((1..=97).contains(&n), "peek gave {n}");
            assert_same_bytes(&pk[..n], &msg[3..3 + n], &format!("peek {round}"));
        }
        let mut small = [0u8; 2];
        assert_eq!(s.peek(&mut small).await.expect("small peek"), 2);
        assert_eq!(small, msg[3..5]);
        let mut rest = vec![0u8; 97];
        s.read_exact(&mut rest).await.expect("read the rest");
        assert_same_bytes(&rest, &msg[3..], "the bytes after the peeks");

        drop(peer);
        assert_eq!(s.read(&mut buf).await.expect("read at the end"), 0);
    });
}

/// A read abandoned by a timeout leaves its `recv` in flight on the ring;
/// a `peek` that then waits for bytes must see the ones that recv takes in,
/// and the reads after it get every byte, in order. The bytes arrive while
/// the core is busy with another task, so the recv takes them before the
/// peek looks again: the peek used to wait on epoll for bytes that were no
/// longer in the socket, and hung.
fn peek_after_an_abandoned_read(io_uring: bool) {
    let rt = rt_mode(1, io_uring);
    let (ours, mut peer) = tcp_pair();
    let msg = payload(9, 50);
    let more = payload(10, 30);
    let (msg2, more2) = (msg.clone(), more.clone());
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut buf = [0u8; 64];
        let abandoned = timeout(Duration::from_millis(20), s.read(&mut buf)).await;
        assert!(abandoned.is_err(), "nothing was sent yet: {abandoned:?}");
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            peer.write_all(&msg2).expect("peer sends");
            peer
        });
        // Runs once this task waits in `peek`, and keeps the core busy
        // while the bytes arrive.
        spawn(async { thread::sleep(Duration::from_millis(200)) }).detach();
        let mut pk = [0u8; 64];
        let n = timeout(WAIT, s.peek(&mut pk))
            .await
            .expect("the peek sees the bytes sent after it began")
            .expect("peek");
        assert!(n > 0, "peek gave 0 bytes");
        assert_same_bytes(&pk[..n], &msg[..n], "peek");
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.expect("read after the peek");
        assert_same_bytes(&got, &msg, "the bytes after the peek");
        let mut peer = writer.join().expect("writer thread");
        peer.write_all(&more2).expect("peer sends more");
        let mut got = vec![0u8; more.len()];
        s.read_exact(&mut got).await.expect("read the rest");
        assert_same_bytes(&got, &more, "the next bytes, in order");
    });
}

/// Ring completions on `core` so far.
fn ring_completions(rt: &Runtime, core: usize) -> u64 {
    rt.metrics().cores[core].ring_completions
}

/// A reader that stops reading while its peer sends 32 MiB: the stream's
/// multishot `recv` stops once `RX_LIMIT` (256 KiB) waits unread, plus
/// what the kernel received before the stop reached it (at most the pool:
/// 256 buffers), instead of moving the whole stream into memory (a
/// completion per 16 KiB pool buffer: some 2,050 of them). Read
/// afterwards, every byte is there, in order.
fn a_reader_that_falls_behind_holds_a_bounded_backlog(io_uring: bool) {
    const TOTAL: usize = 32 << 20;
    let rt = rt_mode(1, io_uring);
    let (ours, mut peer) = tcp_pair();
    let data = payload(11, TOTAL);
    let sent = data.clone();
    let writer = thread::spawn(move || {
        peer.set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        peer.write_all(&sent).expect("the peer sends");
        peer
    });
    let c0 = ring_completions(&rt, 0);
    let (s, first) = rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await.expect("the first byte");
        sleep(Duration::from_millis(500)).await;
        (s, first)
    });
    let idle = ring_completions(&rt, 0) - c0;
    // 256 KiB in 16 KiB buffers, and at most a pool's worth more.
    assert!(
        idle <= 16 + 256 + 16,
        "{idle} recv completions while nobody read: the backlog is not bounded"
    );
    let rest = rt.block_on(async move {
        let mut s = s;
        let mut rest = vec![0u8; TOTAL - 1];
        timeout(Duration::from_secs(20), s.read_exact(&mut rest))
            .await
            .expect("the rest within 20 s")
            .expect("read the rest");
        rest
    });
    assert_eq!(first[0], data[0]);
    assert_same_bytes(&rest, &data[1..], "32 MiB read after falling behind");
    drop(writer.join().expect("writer thread"));
}

/// A stream read on core 0, then handed to a task on core 1: its reads go
/// through core 1's ring from then on (the multishot `recv` armed on core
/// 0 is stopped there by core 1's first read), and every byte arrives in
/// order.
fn a_stream_read_on_another_core_reads_through_that_core(io_uring: bool) {
    const FIRST: usize = 64 * 1024;
    const NEXT: usize = 4096;
    const REST: usize = 1 << 20;
    let rt = rt_mode(2, io_uring);
    let (ours, mut peer) = tcp_pair();
    let data = payload(12, FIRST + NEXT + REST);
    let head = data[..FIRST].to_vec();
    let next = data[FIRST..FIRST + NEXT].to_vec();
    let tail = data[FIRST + NEXT..].to_vec();
    peer.write_all(&head).expect("the peer sends the head");
    let s = rt
        .block_on(rt.spawn_on(0, async move {
            let mut s = TcpStream::from_std(ours).expect("from_std");
            let mut got = vec![0u8; FIRST];
            s.read_exact(&mut got)
                .await
                .expect("read the head on core 0");
            assert_same_bytes(&got, &head, "the head, on core 0");
            s
        }))
        .expect("reader on core 0");
    peer.write_all(&next)
        .expect("the peer sends the next bytes");
    // A read on core 1 that waits asks core 0 to stop its recv (the bytes
    // that came before are read either way); one that times out does
    // that too. Then the tail.
    let (s, got) = rt
        .block_on(rt.spawn_on(1, async move {
            let mut s = s;
            let mut got = vec![0u8; NEXT];
            s.read_exact(&mut got).await.expect("read on core 1");
            let mut one = [0u8; 1];
            let waited = timeout(Duration::from_millis(20), s.read(&mut one)).await;
            assert!(waited.is_err(), "nothing more was sent: {waited:?}");
            sleep(Duration::from_millis(50)).await;
            (s, got)
        }))
        .expect("first reads on core 1");
    assert_same_bytes(
        &got,
        &data[FIRST..FIRST + NEXT],
        "the next bytes, on core 1",
    );
    let (c0, c1) = (ring_completions(&rt, 0), ring_completions(&rt, 1));
    let writer = thread::spawn(move || {
        for chunk in tail.chunks(4096) {
            peer.write_all(chunk).expect("the peer sends the tail");
        }
        peer
    });
    let got = rt
        .block_on(rt.spawn_on(1, async move {
            let mut s = s;
            let mut got = vec![0u8; REST];
            s.read_exact(&mut got)
                .await
                .expect("read the tail on core 1");
            got
        }))
        .expect("reader on core 1");
    assert_same_bytes(&got, &data[FIRST + NEXT..], "the tail, on core 1");
    let (on0, on1) = (ring_completions(&rt, 0) - c0, ring_completions(&rt, 1) - c1);
    if rt.uses_io_uring() {
        assert!(
            on0 * 4 <= on1 && on1 > 0,
            "core 0 completed {on0} recvs after the stream moved, core 1 {on1}"
        );
    }
    drop(writer.join().expect("writer thread"));
}

/// Lifts the soft limit on open files to the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The runtime shuts down (with `shutdown_timeout`, then a second one
/// dropped) while connections each have a read pending, and a few have a
/// send blocked on a peer that does not read. The shutdown is quick, and
/// afterwards every peer sees end of stream or a reset: no socket is left
/// open.
fn runtime_shutdown_with_pending_operations(io_uring: bool) {
    raise_fd_limit();
    let big = Arc::new(payload(11, 8 << 20));
    for (readers, writers, by_drop) in [(100, 6, false), (20, 2, true)] {
        let rt = rt_mode(2, io_uring);
        let h = rt.handle();
        let started = Arc::new(AtomicUsize::new(0));
        let finished_early = Arc::new(AtomicUsize::new(0));
        let mut read_peers = Vec::new();
        for i in 0..readers {
            let (ours, peer) = tcp_pair();
            read_peers.push(peer);
            let (started, early) = (started.clone(), finished_early.clone());
            h.spawn_on(i % 2, async move {
                let mut s = TcpStream::from_std(ours).expect("from_std");
                let mut buf = [0u8; 16];
                started.fetch_add(1, Ordering::SeqCst);
                let _ = s.read(&mut buf).await;
                early.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        }
        let mut write_peers = Vec::new();
        for i in 0..writers {
            let (ours, peer) = tcp_pair();
            socket2::SockRef::from(&ours)
                .set_send_buffer_size(16 << 10)
                .expect("SO_SNDBUF");
            write_peers.push(peer);
            let (started, early, big) = (started.clone(), finished_early.clone(), big.clone());
            h.spawn_on(i % 2, async move {
                let mut s = TcpStream::from_std(ours).expect("from_std");
                started.fetch_add(1, Ordering::SeqCst);
                // The peer never reads: this cannot finish.
                let _ = s.write_all(&big).await;
                early.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        }
        wait_until(WAIT, "every task blocked in its read or write", || {
            started.load(Ordering::SeqCst) == readers + writers
        });
        thread::sleep(Duration::from_millis(30));
        assert_eq!(
            finished_early.load(Ordering::SeqCst),
            0,
            "a read or write that cannot finish finished"
        );

        let began = Instant::now();
        if by_drop {
            drop(rt);
        } else {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
        let took = began.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "shutting down with {readers} reads and {writers} sends pending took {took:?}"
        );

        for (i, mut peer) in read_peers.into_iter().enumerate() {
            let mut buf = [0u8; 16];
            match peer.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!(
                    "reader {i} (drop: {by_drop}): the peer saw {other:?}, not end of stream \
                     or a reset: the socket is still open"
                ),
            }
        }
        for (i, mut peer) in write_peers.into_iter().enumerate() {
            let mut got = Vec::new();
            match peer.read_to_end(&mut got) {
                Ok(_) => assert_same_bytes(&got, &big[..got.len()], "what the writer sent"),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                Err(e) => panic!(
                    "writer {i} (drop: {by_drop}): the peer saw {e} ({:?}), not end of \
                     stream or a reset: the socket is still open",
                    e.kind()
                ),
            }
        }
    }
}

/// One TCP stream, shared through an `Arc`: a task on core 0 reads it, a
/// task on core 1 writes it, 1,000 numbered messages of varied sizes
/// echoed by a std peer. Every byte comes back in order; the write half's
/// shutdown (from core 1, while core 0's read is pending) ends the echo.
fn one_stream_read_on_core_0_written_on_core_1(io_uring: bool) {
    const MESSAGES: usize = 1000;
    let rt = rt_mode(2, io_uring);
    let (ours, peer) = tcp_pair();
    ours.set_nodelay(true).unwrap();
    let echo = thread::spawn(move || -> io::Result<usize> {
        let mut peer = peer;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            let n = peer.read(&mut buf)?;
            if n == 0 {
                peer.shutdown(Shutdown::Write)?;
                return Ok(total);
            }
            peer.write_all(&buf[..n])?;
            total += n;
        }
    });
    let messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            let mut m = (i as u32).to_le_bytes().to_vec();
            m.extend(payload(i, 1 + i * 37 % 300));
            m
        })
        .collect();
    let expected: Vec<u8> = messages.concat();
    let total = expected.len();
    let h = rt.handle();
    let got = rt.block_on(async move {
        let s = Arc::new(TcpStream::from_std(ours).expect("from_std"));
        let w = s.clone();
        let writer = h.spawn_on(1, async move {
            assert_eq!(core_id(), 1);
            let mut w: &TcpStream = &w;
            for (i, m) in messages.iter().enumerate() {
                w.write_all(m)
                    .await
                    .unwrap_or_else(|e| panic!("write message {i}: {e}"));
                if i % 50 == 0 {
                    yield_now().await;
                }
            }
            w.flush().await.expect("flush");
            w.shutdown(Shutdown::Write).expect("shutdown(Write)");
        });
        let r = s.clone();
        let reader = h.spawn_on(0, async move {
            assert_eq!(core_id(), 0);
            let mut r: &TcpStream = &r;
            let mut got = Vec::with_capacity(total);
            let mut buf = [0u8; 1000];
            loop {
                let n = r.read(&mut buf).await.expect("read the echo");
                if n == 0 {
                    return got;
                }
                assert_eq!(core_id(), 0);
                got.extend_from_slice(&buf[..n]);
            }
        });
        writer.await.expect("writer on core 1");
        reader.await.expect("reader on core 0")
    });
    assert_same_bytes(&got, &expected, "the echo of 1,000 messages");
    let echoed = echo.join().expect("echo thread").expect("echo");
    assert_eq!(echoed, total);
}

/// Writes all of `data` with vectored writes of three slices each, of
/// changing sizes.
async fn write_all_vectored(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> io::Result<()> {
    let mut at = 0;
    let mut k = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let a = (1 + k * 131 % 997).min(rest.len());
        let b = (a + 1 + k * 4099 % 50_000).min(rest.len());
        let c = (b + 30_000).min(rest.len());
        let bufs = [
            IoSlice::new(&rest[..a]),
            IoSlice::new(&rest[a..b]),
            IoSlice::new(&rest[b..c]),
        ];
        let n = w.write_vectored(&bufs).await?;
        if n == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        at += n;
        k += 1;
    }
    Ok(())
}

/// Reads to end of stream with vectored reads into three buffers.
async fn read_to_end_vectored(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut x, mut y, mut z) = ([0u8; 5], [0u8; 3000], [0u8; 50_000]);
    loop {
        let n = r
            .read_vectored(&mut [
                IoSliceMut::new(&mut x),
                IoSliceMut::new(&mut y),
                IoSliceMut::new(&mut z),
            ])
            .await?;
        if n == 0 {
            return Ok(out);
        }
        let mut left = n;
        for b in [&x[..], &y[..], &z[..]] {
            let k = left.min(b.len());
            out.extend_from_slice(&b[..k]);
            left -= k;
        }
    }
}

/// A Unix stream pair moves 2 MiB each way at once, with vectored writes
/// and reads; each end is written from one core and read from the other.
/// One end closes with `close()`, the other with `shutdown(Write)`.
fn unix_pair_both_ways_vectored(io_uring: bool) {
    const LEN: usize = 2 << 20;
    let rt = rt_mode(2, io_uring);
    let h = rt.handle();
    rt.block_on(async move {
        let (a, b) = UnixStream::pair().expect("pair");
        let (a, b) = (Arc::new(a), Arc::new(b));
        let (to_b, to_a) = (Arc::new(payload(21, LEN)), Arc::new(payload(22, LEN)));

        let (s, data) = (a.clone(), to_b.clone());
        let a_writer = h.spawn_on(0, async move {
            let mut w: &UnixStream = &s;
            write_all_vectored(&mut w, &data).await.expect("a writes");
            w.close().await.expect("a closes its write half");
        });
        let (s, data) = (b.clone(), to_a.clone());
        let b_writer = h.spawn_on(1, async move {
            let mut w: &UnixStream = &s;
            write_all_vectored(&mut w, &data).await.expect("b writes");
            s.shutdown(Shutdown::Write).expect("b shuts its write half");
        });
        let s = a.clone();
        let a_reader = h.spawn_on(1, async move {
            let mut r: &UnixStream = &s;
            read_to_end_vectored(&mut r).await.expect("a reads")
        });
        let s = b.clone();
        let b_reader = h.spawn_on(0, async move {
            let mut r: &UnixStream = &s;
            read_to_end_vectored(&mut r).await.expect("b reads")
        });
        a_writer.await.expect("a's writer");
        b_writer.await.expect("b's writer");
        let at_a = a_reader.await.expect("a's reader");
        let at_b = b_reader.await.expect("b's reader");
        assert_same_bytes(&at_b, &to_b, "a to b");
        assert_same_bytes(&at_a, &to_a, "b to a");
    });
}

/// `Runtime::builder()` without `io_uring(..)` follows the operator's
/// switch `FAIRLOOP_IO_URING` (`0`, `off` or `false`: epoll), while an
/// explicit `io_uring(true)` wins over it (the tests above).
#[test]
fn the_default_follows_fairloop_io_uring() {
    common::with_timeout(T, || {
        let off = matches!(
            std::env::var("FAIRLOOP_IO_URING").as_deref(),
            Ok("0" | "off" | "false")
        );
        let rt = Runtime::builder()
            .cores(1)
            .pin_cores(false)
            .build()
            .expect("build a runtime");
        assert_eq!(
            rt.uses_io_uring(),
            !off && ring_available(),
            "FAIRLOOP_IO_URING off: {off}"
        );
        eprintln!(
            "net_ring: FAIRLOOP_IO_URING off: {off}; the default runtime uses {}",
            if rt.uses_io_uring() {
                "io_uring"
            } else {
                "epoll"
            }
        );
    });
}

/// A stream dropped with bytes still on their way to a peer that reads
/// nothing: on io_uring the linger (here 200 ms) ends the wait with a
/// reset, so the socket does not stay open for as long as the runtime
/// lives; the peer, reading a second later, sees the reset, never a clean
/// end of stream after a cut. With epoll the kernel holds what `write`
/// accepted and ends the stream cleanly after it.
fn a_dropped_stream_whose_peer_never_reads_is_bounded(io_uring: bool) {
    let rt = Runtime::builder()
        .cores(1)
        .pin_cores(false)
        .io_uring(io_uring)
        .stream_linger(Duration::from_millis(200))
        .build()
        .expect("build a runtime");
    let ring = rt.uses_io_uring();
    let (ours, peer) = tcp_pair();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(16 << 10)
        .unwrap();
    let accepted = rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        let data = payload(9, 8 << 20);
        let mut accepted = 0;
        // Write until a write waits for the peer (which reads nothing),
        // then drop the stream.
        while accepted < data.len() {
            match timeout(Duration::from_millis(100), s.write(&data[accepted..])).await {
                Ok(n) => accepted += n.expect("write"),
                Err(_) => break,
            }
        }
        assert!(accepted < data.len(), "the peer took 8 MiB without reading");
        drop(s);
        accepted
    });
    thread::sleep(Duration::from_millis(1000));
    let mut peer = peer;
    let mut got = Vec::new();
    let r = peer.read_to_end(&mut got);
    if ring {
        let e = r.expect_err("the linger should have reset the connection");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert!(got.len() < accepted, "a reset, yet every byte arrived");
    } else {
        r.expect("epoll: the kernel sends what write accepted, then ends the stream");
        assert_eq!(got.len(), accepted);
    }
    assert_same_bytes(&got, &payload(9, 8 << 20)[..got.len()], "the prefix");
    drop(rt);
}

/// Bytes written (and the stream dropped) right before the runtime shuts
/// down, to a peer that starts reading later: either every byte arrives
/// (epoll: the kernel took them), or the peer sees a reset (io_uring: the
/// exiting core could not hand the rest to the kernel). Never fewer bytes
/// followed by a clean end of stream.
fn runtime_shutdown_never_truncates_silently(io_uring: bool) {
    let rt = rt_mode(1, io_uring);
    let (ours, peer) = tcp_pair();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(16 << 10)
        .unwrap();
    let data = payload(10, 100 << 10);
    let reader = peer_reads_all(peer, Duration::from_millis(200));
    let sent = data.clone();
    rt.block_on(async move {
        let mut s = TcpStream::from_std(ours).expect("from_std");
        s.write_all(&sent).await.expect("write_all");
    });
    drop(rt);
    match reader.join().expect("the reader") {
        Ok(got) => assert_same_bytes(&got, &data, "a clean end of stream after"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}

/// 300 reads submitted in one batch to sockets whose bytes are already
/// there: the kernel completes all of them inside the one submission, more
/// than the ring's pool of receive buffers (256) can serve. The reads that
/// find the pool empty must retry with a buffer of their own (counted in
/// `CoreMetrics::pool_misses`), and every byte must arrive.
fn more_reads_complete_at_once_than_the_pool_has_buffers(io_uring: bool) {
    const CONNS: usize = 300;
    raise_fd_limit();
    // A long quota, so that one turn polls all 300 tasks and their reads
    // go to the kernel together.
    let rt = Runtime::builder()
        .cores(1)
        .pin_cores(false)
        .io_uring(io_uring)
        .task_quota(Duration::from_millis(200))
        .build()
        .expect("build a runtime");
    assert_eq!(rt.uses_io_uring(), io_uring && ring_available());
    let mut peers = Vec::new();
    let mut ours = Vec::new();
    for i in 0..CONNS {
        let (o, mut peer) = tcp_pair();
        peer.write_all(&payload(i, 100)).expect("peer write");
        peers.push(peer);
        ours.push(o);
    }
    // Block the core while the 300 tasks are spawned, so that it finds
    // them all queued at once.
    let blocked = Signal::default();
    let blocker = {
        let blocked = blocked.clone();
        rt.spawn(async move {
            blocked.set();
            thread::sleep(Duration::from_millis(200));
        })
    };
    wait_until(Duration::from_secs(5), "the core to block", || {
        blocked.is_set()
    });
    let tasks: Vec<_> = ours
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            rt.spawn(async move {
                let mut s = TcpStream::from_std(o).expect("from_std");
                let mut buf = vec![0u8; 100];
                s.read_exact(&mut buf).await.expect("read");
                assert_same_bytes(&buf, &payload(i, 100), "what the peer sent");
                s.write_all(&buf).await.expect("write back");
                s.flush().await.expect("flush");
            })
        })
        .collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut back = vec![0u8; 100];
        peer.read_exact(&mut back).expect("the echo");
        assert_same_bytes(&back, &payload(i, 100), "the echo");
    }
    rt.block_on(async move {
        blocker.await.expect("blocker");
        for t in tasks {
            t.await.expect("connection task");
        }
    });
    let core = &rt.metrics().cores[0];
    if rt.uses_io_uring() {
        assert!(
            core.pool_misses > 0,
            "300 reads completed at once, yet none found the pool empty"
        );
        assert!(core.ring_completions >= CONNS as u64);
    } else {
        assert_eq!((core.pool_misses, core.ring_completions), (0, 0));
    }
}
