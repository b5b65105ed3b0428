//! `Builder::tokio_compat`: tokio's APIs inside fairloop tasks, driven by
//! each core on its own thread.
//!
//! What is checked: `tokio::spawn`, `tokio::time`, `tokio::net`,
//! `spawn_blocking`, `yield_now` and `Handle::current()` work in any task
//! on any core; what tokio starts runs on the spawning core's thread;
//! fairloop's own timers, sockets and wakes keep working when they are
//! touched from tokio's tasks while the core is idle (each such case once
//! hung the core before the loop was woken for it); tokio's work shows in
//! the `tokio` partition's metrics and cannot starve a latency partition;
//! a graceful shutdown is not held up by the partition's pump; without the
//! setting, tokio's own error.
//!
//! Every test is bounded by `with_timeout`. The one bound on time (the
//! healthcheck under a tokio flood) is loose by an order of magnitude: it
//! tells "tokio's work was interleaved" from "tokio ran all of it first".

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{panic_message, with_timeout};
use fairloop::net::{TcpListener, TcpStream};
use fairloop::partition::{Partition, PartitionSpec};
use fairloop::{core_id, Runtime};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const T: u64 = 60;

fn compat_rt(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .pin_cores(false)
        .tokio_compat(true)
        .build()
        .expect("runtime with tokio_compat")
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

#[test]
fn tokio_spawn_runs_on_the_spawning_core() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        for core in 0..2 {
            let (name, inner_core) = rt
                .block_on(rt.spawn_on(core, async {
                    let h = tokio::spawn(async { (thread_name(), core_id()) });
                    h.await.expect("tokio task")
                }))
                .expect("fairloop task");
            assert_eq!(name, format!("fairloop-core-{core}"));
            assert_eq!(inner_core, core);
        }
    });
}

#[test]
fn handle_current_time_yield_and_spawn_blocking() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        let out = rt
            .block_on(rt.spawn_on(1, async {
                let handle = tokio::runtime::Handle::current();
                let spawned = handle.spawn(async { 7 }).await.unwrap();
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(20)).await;
                let slept = start.elapsed();
                tokio::task::yield_now().await;
                let blocking = tokio::task::spawn_blocking(|| (thread_name(), 5))
                    .await
                    .unwrap();
                let timed_out =
                    tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>())
                        .await
                        .is_err();
                (spawned, slept, blocking, timed_out, thread_name())
            }))
            .unwrap();
        let (spawned, slept, (blocking_thread, five), timed_out, here) = out;
        assert_eq!(spawned, 7);
        assert!(slept >= Duration::from_millis(20), "slept only {slept:?}");
        assert_eq!(five, 5);
        assert!(
            !blocking_thread.starts_with("fairloop-core"),
            "spawn_blocking ran on a core: {blocking_thread}"
        );
        assert!(timed_out);
        assert_eq!(here, "fairloop-core-1");
    });
}

#[test]
fn tokio_sleep_fires_on_a_busy_core() {
    // The core never parks: a spinning partition keeps it busy, so only
    // the pump's trips to tokio can fire tokio's timer.
    with_timeout(T, || {
        let rt = compat_rt(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let spinner = rt.spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(200) {}
                fairloop::yield_now().await;
            }
        });
        let waited = rt
            .block_on(rt.spawn(async {
                let start = Instant::now();
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                start.elapsed()
            }))
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        rt.block_on(spinner).unwrap();
        assert!(waited >= Duration::from_millis(20));
    });
}

#[test]
fn tokio_net_talks_to_a_fairloop_listener() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        let listener = rt
            .block_on(rt.spawn_on(0, async { TcpListener::bind("127.0.0.1:0") }))
            .unwrap()
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = rt.spawn_on(0, async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut total = 0;
            loop {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    return total;
                }
                total += n;
                s.write_all(&buf[..n]).await.expect("write");
            }
        });
        let got = rt
            .block_on(rt.spawn_on(1, async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                let (mut r, mut w) = c.split();
                let write = async {
                    w.write_all(&msg).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let mut back = Vec::new();
                let read = r.read_to_end(&mut back);
                let (_, n) = futures_lite::future::zip(write, read).await;
                n.unwrap();
                (back == msg, back.len())
            }))
            .unwrap();
        assert_eq!(got, (true, 100_000));
        assert_eq!(rt.block_on(server).unwrap(), 100_000);
    });
}

#[test]
fn fairloop_timers_sockets_and_wakes_from_tokio_tasks_while_idle() {
    // The core is parked in tokio when these tokio tasks run: a fairloop
    // timer, a fairloop socket (its ring entries) and a fairloop spawn
    // made there must reach the core's loop.
    with_timeout(T, || {
        let rt = compat_rt(1);
        let listener = rt
            .block_on(rt.spawn(async { TcpListener::bind("127.0.0.1:0") }))
            .unwrap()
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let out = rt
            .block_on(rt.spawn(async move {
                let server = tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.expect("accept");
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await.expect("read");
                    s.write_all(&buf).await.expect("write");
                    s.flush().await.expect("flush");
                });
                let client = tokio::spawn(async move {
                    fairloop::time::sleep(Duration::from_millis(10)).await;
                    let mut c = TcpStream::connect(addr).await.expect("connect");
                    c.write_all(b"hello").await.unwrap();
                    c.flush().await.unwrap();
                    let mut buf = [0u8; 5];
                    c.read_exact(&mut buf).await.unwrap();
                    let inner = fairloop::spawn(async { 3 }).await.unwrap();
                    (buf, inner)
                });
                server.await.unwrap();
                client.await.unwrap()
            }))
            .unwrap();
        assert_eq!(out, (*b"hello", 3));
    });
}

fn tokio_rows(rt: &Runtime) -> Vec<fairloop::metrics::PartitionMetrics> {
    rt.metrics()
        .partitions
        .into_iter()
        .filter(|p| p.name.as_deref() == Some("tokio"))
        .collect()
}

#[test]
fn tokio_work_shows_in_the_tokio_partition() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        let rows = tokio_rows(&rt);
        assert_eq!(rows.len(), 2, "a tokio shard per core: {rows:?}");
        assert_eq!(rows.iter().map(|r| r.core).collect::<Vec<_>>(), [0, 1]);
        let before = rows[1].busy;
        rt.block_on(rt.spawn_on(1, async {
            let jobs: Vec<_> = (0..50)
                .map(|_| {
                    tokio::spawn(async {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_micros(200) {}
                    })
                })
                .collect();
            for j in jobs {
                j.await.unwrap();
            }
        }))
        .unwrap();
        let after = tokio_rows(&rt)[1].busy;
        // 50 × 200 µs of spinning, charged to core 1's tokio shard.
        assert!(
            after - before >= Duration::from_millis(8),
            "tokio shard busy went from {before:?} to {after:?}"
        );
    });
}

#[test]
fn a_latency_partition_keeps_its_timer_under_a_tokio_flood() {
    with_timeout(T, || {
        let rt = compat_rt(1);
        let (done, lateness) = rt
            .block_on(rt.spawn(async {
                let hc = Partition::builder()
                    .name("healthcheck")
                    .latency(Duration::from_millis(1))
                    .build()
                    .expect("healthcheck partition");
                let done = Arc::new(AtomicUsize::new(0));
                let d = done.clone();
                // 2,000 tokio jobs of 50 µs each: 100 ms of work, queued at
                // once from the `api` partition.
                let flood = fairloop::partition::spawn(PartitionSpec::from("api"), async move {
                    let jobs: Vec<_> = (0..2000)
                        .map(|_| {
                            let d = d.clone();
                            tokio::spawn(async move {
                                let t = Instant::now();
                                while t.elapsed() < Duration::from_micros(50) {}
                                d.fetch_add(1, Ordering::Relaxed);
                            })
                        })
                        .collect();
                    for j in jobs {
                        j.await.unwrap();
                    }
                });
                let d = done.clone();
                let lateness = hc
                    .spawn(async move {
                        let mut late = Vec::new();
                        let mut next = Instant::now() + Duration::from_millis(10);
                        while d.load(Ordering::Relaxed) < 2000 && late.len() < 200 {
                            fairloop::time::sleep_until(next).await;
                            late.push(next.elapsed());
                            next += Duration::from_millis(10);
                        }
                        late
                    })
                    .await
                    .unwrap();
                flood.await.unwrap();
                (done.load(Ordering::Relaxed), lateness)
            }))
            .unwrap();
        assert_eq!(done, 2000);
        let mut sorted = lateness.clone();
        sorted.sort();
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        // Tokio running the whole flood first would make a tick 100 ms late.
        assert!(
            sorted.len() >= 5 && p99 < Duration::from_millis(25),
            "healthcheck lateness under the flood: p99 {p99:?} over {} ticks",
            sorted.len()
        );
    });
}

#[test]
fn graceful_shutdown_is_not_held_up_by_the_pump() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        rt.block_on(rt.spawn(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }))
        .unwrap();
        let start = Instant::now();
        let report = rt.shutdown_graceful(Duration::from_secs(20));
        assert!(report.drained, "{report:?}");
        // The pumps are the runtime's own: neither waited for nor counted.
        assert_eq!((report.completed, report.cancelled), (0, 0), "{report:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "{report:?}");
    });
}

#[test]
fn a_stop_counts_the_tokio_tasks_it_drops() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        let finished = Arc::new(AtomicUsize::new(0));
        let f = finished.clone();
        rt.block_on(rt.spawn_on(1, async move {
            // One detached tokio task that outlives the drain, and one
            // that a fairloop task awaits (which the drain waits for).
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
            let awaited = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.fetch_add(1, Ordering::SeqCst);
            });
            fairloop::spawn(async move { awaited.await.unwrap() }).detach();
        }))
        .unwrap();
        let report = rt.shutdown_graceful(Duration::from_secs(20));
        assert!(report.drained, "{report:?}");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "{report:?}");
        assert_eq!((report.completed, report.cancelled), (1, 0), "{report:?}");
        assert_eq!(report.tokio_dropped, 1, "{report:?}");
    });
}

#[test]
fn spawn_blocking_closures_run_in_their_cores_tokio_context() {
    with_timeout(T, || {
        let rt = compat_rt(2);
        let out = rt
            .block_on(rt.spawn_on(1, async {
                fairloop::task::spawn_blocking(|| {
                    let handle = tokio::runtime::Handle::try_current().expect("tokio context");
                    handle.block_on(handle.spawn(async { (thread_name(), core_id()) }))
                })
                .await
                .unwrap()
            }))
            .unwrap()
            .expect("the tokio task");
        assert_eq!(out, ("fairloop-core-1".to_owned(), 1));
    });
}

#[test]
fn without_compat_tokio_panics_with_its_own_message() {
    with_timeout(T, || {
        let rt = Runtime::builder()
            .cores(1)
            .tokio_compat(false)
            .build()
            .unwrap();
        let err = rt
            .block_on(rt.spawn(async {
                tokio::spawn(async {});
            }))
            .expect_err("tokio::spawn outside tokio must panic");
        assert!(err.is_panic(), "{err:?}");
        let msg = panic_message(&*err.into_panic());
        assert!(
            msg.contains("must be called from the context of a Tokio 1.x runtime"),
            "{msg}"
        );
    });
}
