//! `fairloop::channel` across cores: a storm with exact counts and
//! per-sender order (migrations included), close semantics, `len`, the
//! errors, wakeups of parked senders and receivers across cores and from
//! outside the runtime, dropped futures, the cooperative budget.
//!
//! Every test is bounded by a timeout that names it; none asserts a time.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{rt, with_timeout, DropGuard};
use fairloop::channel::{self, Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{core_id, yield_now};
use futures_lite::future::block_on;

const T: u64 = 60;

/// A message of the storm: who sent it, and its place in that sender's
/// sequence.
type Msg = (u32, u32);

/// Yields until the caller's partition runs on `core` (after a
/// `migrate_to`); panics after a few seconds.
async fn until_on(core: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while core_id() != core {
        assert!(
            Instant::now() < deadline,
            "the partition never reached core {core}"
        );
        yield_now().await;
    }
}

/// A partition on `core` that may move.
fn movable(core: usize) -> Partition {
    Partition::builder()
        .placement(Placement::Core(core))
        .pinned(false)
        .build()
        .expect("a movable partition")
}

/// Checks what the receivers got: every message of every sender exactly
/// once, and each receiver saw each sender's messages in increasing
/// order.
fn check_storm(received: Vec<Vec<Msg>>, senders: u32, per_sender: u32) {
    let mut seen: HashMap<u32, Vec<bool>> = HashMap::new();
    for (r, got) in received.iter().enumerate() {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for &(id, seq) in got {
            if let Some(&prev) = last.get(&id) {
                assert!(
                    seq > prev,
                    "receiver {r}: sender {id}'s message {seq} came after {prev}"
                );
            }
            last.insert(id, seq);
            let marks = seen
                .entry(id)
                .or_insert_with(|| vec![false; per_sender as usize]);
            assert!(
                !std::mem::replace(&mut marks[seq as usize], true),
                "sender {id}'s message {seq} received twice"
            );
        }
    }
    assert_eq!(
        seen.len(),
        senders as usize,
        "a sender's messages are missing"
    );
    for (id, marks) in seen {
        let lost = marks.iter().filter(|m| !**m).count();
        assert_eq!(lost, 0, "sender {id} lost {lost} messages");
    }
}

/// Many senders on every core (some in partitions that migrate to another
/// core half-way through their sends) and on plain threads, several
/// receivers on cores and on a plain thread: no message lost or doubled,
/// per-sender order kept.
fn storm(bounded: bool) {
    const CORES: usize = 4;
    const PER_CORE: u32 = 3; // two in the root partition, one that migrates
    const THREADS: u32 = 2;
    const PER_SENDER: u32 = 3_000;
    with_timeout(T, move || {
        let rt = rt(CORES);
        let (tx, rx): (Sender<Msg>, Receiver<Msg>) = if bounded {
            rt.block_on(async { channel::bounded(16) })
        } else {
            rt.block_on(async { channel::unbounded() })
        };
        let migrated = Arc::new(AtomicUsize::new(0));

        // Receivers: three tasks on three cores, and a plain thread.
        let mut receivers = Vec::new();
        for core in 1..CORES {
            let rx = rx.clone();
            receivers.push(rt.spawn_on(core, async move {
                let mut got = Vec::new();
                while let Ok(m) = rx.recv().await {
                    got.push(m);
                }
                got
            }));
        }
        let outside_rx = {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(m) = block_on(rx.recv()) {
                    got.push(m);
                }
                got
            })
        };
        drop(rx);

        let mut id = 0;
        let mut senders = Vec::new();
        for core in 0..CORES {
            for k in 0..PER_CORE {
                let tx = tx.clone();
                let me = id;
                id += 1;
                if k < PER_CORE - 1 {
                    senders.push(rt.spawn_on(core, async move {
                        for seq in 0..PER_SENDER {
                            tx.send((me, seq)).await.expect("receivers are there");
                            if seq % 64 == 0 {
                                yield_now().await;
                            }
                        }
                    }));
                } else {
                    let to = (core + 1) % CORES;
                    let migrated = migrated.clone();
                    let p = rt.block_on(async move { movable(core) });
                    senders.push(p.spawn(async move {
                        assert_eq!(core_id(), core);
                        for seq in 0..PER_SENDER {
                            if seq == PER_SENDER / 2 {
                                partition::current().migrate_to(to).expect("migrate_to");
                                until_on(to).await;
                                migrated.fetch_add(1, Ordering::SeqCst);
                            }
                            tx.send((me, seq)).await.expect("receivers are there");
                        }
                    }));
                }
            }
        }
        let threads: Vec<_> = (0..THREADS)
            .map(|k| {
                let tx = tx.clone();
                let me = id + k;
                thread::spawn(move || {
                    for seq in 0..PER_SENDER {
                        block_on(tx.send((me, seq))).expect("receivers are there");
                    }
                })
            })
            .collect();
        let senders_total = id + THREADS;
        drop(tx);

        for s in senders {
            rt.block_on(s).expect("a sender task failed");
        }
        for t in threads {
            t.join().expect("a sender thread failed");
        }
        // Every sender is gone: the channel is closed and the receivers
        // end once it is drained.
        let mut received: Vec<Vec<Msg>> = receivers
            .into_iter()
            .map(|r| rt.block_on(r).expect("a receiver task failed"))
            .collect();
        received.push(outside_rx.join().expect("the receiver thread failed"));
        assert_eq!(migrated.load(Ordering::SeqCst), CORES);
        let total: usize = received.iter().map(Vec::len).sum();
        assert_eq!(total, (senders_total * PER_SENDER) as usize);
        check_storm(received, senders_total, PER_SENDER);
    });
}

#[test]
fn storm_bounded_four_cores() {
    storm(true);
}

#[test]
fn storm_unbounded_four_cores() {
    storm(false);
}

/// A sender's messages stay in order when its partition migrates while
/// its first messages still wait in its first core's lane, and the
/// receiver would look at the new core's lane first.
#[test]
fn order_is_kept_across_a_migration() {
    with_timeout(T, || {
        let rt = rt(2);
        for bounded in [false, true] {
            // Made on a core, so it has a lane per core of the runtime.
            let (tx, rx) = rt.block_on(async move {
                if bounded {
                    channel::bounded(100)
                } else {
                    channel::unbounded()
                }
            });
            let p = rt.block_on(async { movable(1) });
            let sender = p.spawn(async move {
                assert_eq!(core_id(), 1);
                for v in 0..50u32 {
                    tx.send(v).await.unwrap();
                }
                partition::current().migrate_to(0).expect("migrate_to");
                until_on(0).await;
                for v in 50..100u32 {
                    tx.send(v).await.unwrap();
                }
            });
            rt.block_on(sender).unwrap();
            let got: Vec<u32> = rt.block_on(async move {
                let mut got = Vec::new();
                while let Ok(v) = rx.recv().await {
                    got.push(v);
                }
                got
            });
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "bounded: {bounded}");
        }
    });
}

/// Receivers that give up waiting (a timeout drops their `recv()`
/// future) and senders that give up on a full channel (their `send()`
/// future dropped with its message): every message whose send completed
/// is received exactly once.
#[test]
fn dropped_futures_lose_no_message() {
    const SENDERS: u32 = 4;
    const PER_SENDER: u32 = 2_000;
    with_timeout(T, || {
        let rt = rt(4);
        let (tx, rx) = channel::bounded::<Msg>(4);
        let sent = Arc::new(AtomicUsize::new(0));
        let gave_up = Arc::new(AtomicUsize::new(0));
        let mut receivers = Vec::new();
        for core in 0..4 {
            let rx = rx.clone();
            let gave_up = gave_up.clone();
            receivers.push(rt.spawn_on(core, async move {
                let mut got = Vec::new();
                loop {
                    // A short wait, often given up: the dropped future may
                    // have been woken just before.
                    match fairloop::time::timeout(Duration::from_micros(50), rx.recv()).await {
                        Ok(Ok(m)) => got.push(m),
                        Ok(Err(RecvError)) => return got,
                        Err(_) => {
                            gave_up.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        drop(rx);
        let mut senders = Vec::new();
        for id in 0..SENDERS {
            let tx = tx.clone();
            let sent = sent.clone();
            senders.push(rt.spawn_on(id as usize % 4, async move {
                let mut got_through = Vec::new();
                for seq in 0..PER_SENDER {
                    // A short wait for room, often given up: that message
                    // is then not sent.
                    let wait = Duration::from_micros(50);
                    if let Ok(r) = fairloop::time::timeout(wait, tx.send((id, seq))).await {
                        r.expect("receivers are there");
                        got_through.push(seq);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                got_through
            }));
        }
        drop(tx);
        let mut expected: HashMap<u32, Vec<u32>> = HashMap::new();
        for (id, s) in senders.into_iter().enumerate() {
            expected.insert(id as u32, rt.block_on(s).unwrap());
        }
        let mut received: HashMap<u32, Vec<u32>> = HashMap::new();
        for r in receivers {
            for (id, seq) in rt.block_on(r).unwrap() {
                received.entry(id).or_default().push(seq);
            }
        }
        let total: usize = received.values().map(Vec::len).sum();
        assert_eq!(total, sent.load(Ordering::Relaxed));
        for (id, mut seqs) in received {
            seqs.sort_unstable();
            assert_eq!(seqs, expected[&id], "sender {id}");
        }
        // Not asserted (it depends on timing), but the test is only
        // meaningful if some waits were given up; report it.
        eprintln!(
            "dropped_futures_lose_no_message: {} receives given up, {} of {} sends completed",
            gave_up.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
            SENDERS * PER_SENDER
        );
    });
}

/// A send future dropped while it waits for room sends nothing: its
/// message is dropped with it, and the channel is as before.
#[test]
fn a_send_given_up_drops_its_message() {
    with_timeout(T, || {
        let rt = rt(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        rt.block_on(async move {
            let (tx, rx) = channel::bounded(1);
            tx.send(DropGuard::new(&d)).await.unwrap();
            let r = fairloop::time::timeout(Duration::from_millis(20), tx.send(DropGuard::new(&d)))
                .await;
            assert!(r.is_err(), "the channel is full: the send waits");
            assert_eq!(
                d.load(Ordering::SeqCst),
                1,
                "the waiting message was dropped"
            );
            assert_eq!(rx.len(), 1);
            drop(rx.recv().await.unwrap());
            assert_eq!(d.load(Ordering::SeqCst), 2);
            assert!(rx.is_empty());
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    });
}

/// A receiver parked on one core is woken by a send from another core,
/// and by one from a plain thread; a plain thread parked in `recv` is
/// woken by a task's send.
#[test]
fn parked_receivers_are_woken_across_cores() {
    with_timeout(T, || {
        let rt = rt(2);
        let (tx, rx) = channel::unbounded::<u32>();
        let rx2 = rx.clone();
        let waiting = rt.spawn_on(1, async move {
            let a = rx2.recv().await.unwrap();
            let b = rx2.recv().await.unwrap();
            (a, b, core_id())
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!waiting.is_finished(), "nothing was sent yet");
        let tx2 = tx.clone();
        rt.block_on(async move { tx2.send(1).await.unwrap() }); // from core 0
        thread::sleep(Duration::from_millis(20));
        block_on(tx.send(2)).unwrap(); // from this thread
        assert_eq!(rt.block_on(waiting).unwrap(), (1, 2, 1));

        let outside = thread::spawn(move || block_on(rx.recv()));
        thread::sleep(Duration::from_millis(20));
        assert!(!outside.is_finished(), "nothing was sent yet");
        rt.spawn_on(1, async move { tx.send(3).await.unwrap() })
            .detach();
        assert_eq!(outside.join().unwrap(), Ok(3));
    });
}

/// A burst of sends in one poll reaches a receiver parked on another core
/// as one wake, and the receiver finds the whole burst.
#[test]
fn a_burst_in_one_poll_is_one_wake_and_one_batch() {
    const BURST: usize = 100;
    with_timeout(T, || {
        let rt = rt(2);
        let (tx, rx) = rt.block_on(async { channel::unbounded::<usize>() });
        let receiver = rt.spawn_on(1, async move {
            let first = rx.recv().await.unwrap();
            // Everything else of the burst is there already.
            let rest = rx.len();
            for _ in 0..rest {
                rx.recv().await.unwrap();
            }
            (first, rest)
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!receiver.is_finished(), "nothing was sent yet");
        let wakes = |rt: &fairloop::Runtime| rt.handle().core_metrics()[1].remote_wakes;
        let before = wakes(&rt);
        rt.spawn_on(0, async move {
            for v in 0..BURST {
                tx.send(v).await.unwrap();
            }
        })
        .detach();
        assert_eq!(rt.block_on(receiver).unwrap(), (0, BURST - 1));
        assert_eq!(wakes(&rt) - before, 1, "one wake for the burst");
    });
}

/// Inside a task, a channel's wake goes out when the poll returns, or
/// when the task calls `flush_wakes` (before blocking its thread on the
/// woken side, say).
#[test]
fn flush_wakes_delivers_a_wake_before_the_poll_ends() {
    with_timeout(T, || {
        let rt = rt(2);
        let (tx, rx) = channel::unbounded::<u32>();
        let got = Arc::new(AtomicBool::new(false));
        let g = got.clone();
        let outside = thread::spawn(move || {
            let v = block_on(rx.recv());
            g.store(true, Ordering::SeqCst);
            v
        });
        thread::sleep(Duration::from_millis(50)); // let it park
        let delivered_late = rt.block_on(async move {
            tx.try_send(7).unwrap();
            // Still in the poll that sent: the wake waits.
            let deadline = Instant::now() + Duration::from_millis(50);
            while Instant::now() < deadline {
                std::hint::spin_loop();
            }
            let before_flush = got.load(Ordering::SeqCst);
            channel::flush_wakes();
            // A synchronous wait inside the poll now ends.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !got.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "the flushed wake never arrived");
                thread::sleep(Duration::from_millis(1));
            }
            !before_flush
        });
        assert!(delivered_late, "the wake went out before the poll ended");
        assert_eq!(outside.join().unwrap(), Ok(7));
    });
}

/// A sender parked on a full channel on one core is woken by a receive on
/// another core; a close from a third core wakes a parked receiver and a
/// parked sender.
#[test]
fn parked_senders_are_woken_across_cores() {
    with_timeout(T, || {
        let rt = rt(3);
        let (tx, rx) = rt.block_on(async { channel::bounded::<u32>(2) });
        let sender = {
            let tx = tx.clone();
            rt.spawn_on(0, async move {
                for v in 0..5 {
                    tx.send(v).await.unwrap();
                }
            })
        };
        thread::sleep(Duration::from_millis(20));
        assert!(
            !sender.is_finished(),
            "the channel is full: the sender waits"
        );
        assert!(tx.is_full());
        let receiver = rt.spawn_on(1, async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(rx.recv().await.unwrap());
            }
            // Then park on the empty channel until the close.
            (got, rx.recv().await)
        });
        rt.block_on(sender).unwrap();
        thread::sleep(Duration::from_millis(20));
        assert!(
            !receiver.is_finished(),
            "the channel is empty: the receiver waits"
        );
        let closer = tx.clone();
        assert!(rt
            .block_on(rt.spawn_on(2, async move { closer.close() }))
            .unwrap());
        let (got, end) = rt.block_on(receiver).unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(end, Err(RecvError));

        // A sender parked on a full channel, and a close from core 2.
        let (tx, rx) = rt.block_on(async { channel::bounded::<u32>(1) });
        tx.try_send(0).unwrap();
        let parked = rt.spawn_on(0, async move { tx.send(1).await });
        thread::sleep(Duration::from_millis(20));
        assert!(
            !parked.is_finished(),
            "the channel is full: the sender waits"
        );
        let closer = rx.clone();
        assert!(rt
            .block_on(rt.spawn_on(2, async move { closer.close() }))
            .unwrap());
        match rt.block_on(parked).unwrap() {
            Err(SendError(v)) => assert_eq!(v, 1, "the message comes back"),
            Ok(()) => panic!("a send into a closed channel succeeded"),
        }
        assert_eq!(rx.try_recv(), Ok(0), "sent before the close");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    });
}

#[test]
fn close_semantics() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let (tx, rx) = channel::bounded::<u32>(4);
            tx.send(1).await.unwrap();
            tx.send(2).await.unwrap();
            assert!(!tx.is_closed() && !rx.is_closed());
            assert!(tx.close(), "this call closed it");
            assert!(!tx.close() && !rx.close(), "closed already");
            assert!(tx.is_closed() && rx.is_closed());
            // Sends fail and give the message back.
            assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
            assert_eq!(tx.send(4).await, Err(SendError(4)));
            // What was sent before is still received, then the end.
            assert_eq!(rx.len(), 2);
            assert_eq!(rx.recv().await, Ok(1));
            assert_eq!(rx.try_recv(), Ok(2));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            assert_eq!(rx.recv().await, Err(RecvError));

            // The last sender dropped closes it.
            let (tx, rx) = channel::unbounded::<u32>();
            let tx2 = tx.clone();
            assert_eq!((tx.sender_count(), tx.receiver_count()), (2, 1));
            tx.send(7).await.unwrap();
            drop(tx);
            assert!(!rx.is_closed());
            assert_eq!(rx.sender_count(), 1);
            drop(tx2);
            assert!(rx.is_closed());
            assert_eq!(rx.sender_count(), 0);
            assert_eq!(rx.recv().await, Ok(7));
            assert_eq!(rx.recv().await, Err(RecvError));

            // The last receiver dropped closes it and drops its messages.
            let dropped = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel::unbounded();
            let rx2 = rx.clone();
            assert_eq!(tx.receiver_count(), 2);
            for _ in 0..3 {
                tx.send(DropGuard::new(&dropped)).await.unwrap();
            }
            drop(rx);
            assert!(!tx.is_closed());
            drop(rx2);
            assert!(tx.is_closed());
            assert_eq!(tx.receiver_count(), 0);
            assert_eq!(dropped.load(Ordering::SeqCst), 3);
            assert!(tx.is_empty());
            let back = tx.try_send(DropGuard::new(&dropped)).unwrap_err();
            assert!(back.is_closed());
            drop(back.into_inner());
            assert_eq!(dropped.load(Ordering::SeqCst), 4);

            // A receiver closes too, and a parked receiver elsewhere wakes.
            let (tx, rx) = channel::unbounded::<u32>();
            let waiting = {
                let rx = rx.clone();
                fairloop::spawn(async move { rx.recv().await })
            };
            fairloop::time::sleep(Duration::from_millis(10)).await;
            assert!(rx.close());
            assert_eq!(waiting.await.unwrap(), Err(RecvError));
            assert!(tx.send(1).await.is_err());
        });
    });
}

#[test]
fn len_capacity_and_fullness() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let (tx, rx) = channel::bounded::<u32>(3);
            assert_eq!((tx.capacity(), rx.capacity()), (Some(3), Some(3)));
            assert!(tx.is_empty() && rx.is_empty() && !tx.is_full());
            for v in 0..3 {
                assert_eq!(tx.len(), v as usize);
                tx.try_send(v).unwrap();
            }
            assert_eq!((tx.len(), rx.len()), (3, 3));
            assert!(tx.is_full() && rx.is_full());
            assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
            assert_eq!(rx.recv().await, Ok(0));
            assert_eq!(rx.len(), 2);
            assert!(!rx.is_full());

            let (tx, rx) = channel::unbounded::<u32>();
            assert_eq!(tx.capacity(), None);
            for v in 0..1000 {
                tx.try_send(v).unwrap();
            }
            assert_eq!(rx.len(), 1000);
            assert!(!tx.is_full());
            assert_eq!(rx.try_recv(), Ok(0));
            assert_eq!(tx.len(), 999);
            assert!(tx.same_channel(&tx.clone()));
            assert!(rx.same_channel(&rx.clone()));
            assert!(!tx.same_channel(&channel::unbounded::<u32>().0));
        });
    });
}

#[test]
#[should_panic(expected = "the capacity must be at least 1")]
fn a_zero_capacity_is_refused_with_a_clear_message() {
    let _ = channel::bounded::<u32>(0);
}

/// A type without `Debug`: the errors carrying it still print.
struct Opaque(u32);

#[test]
fn errors() {
    use std::error::Error;
    let e = SendError(Opaque(1));
    assert_eq!(format!("{e:?}"), "SendError(..)");
    assert_eq!(e.to_string(), "sending into a closed channel");
    assert_eq!(e.into_inner().0, 1);

    let full = TrySendError::Full(Opaque(2));
    let closed = TrySendError::Closed(Opaque(3));
    assert!(full.is_full() && !full.is_closed());
    assert!(closed.is_closed() && !closed.is_full());
    assert_eq!(format!("{full:?} {closed:?}"), "Full(..) Closed(..)");
    assert_eq!(full.to_string(), "sending into a full channel");
    assert_eq!(closed.to_string(), "sending into a closed channel");
    assert_eq!(full.into_inner().0 + closed.into_inner().0, 5);

    assert_eq!(
        RecvError.to_string(),
        "receiving from an empty and closed channel"
    );
    assert!(TryRecvError::Empty.is_empty() && TryRecvError::Closed.is_closed());
    assert_eq!(
        TryRecvError::Empty.to_string(),
        "receiving from an empty channel"
    );
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Closed);

    // They are std errors, boxable with `?`.
    fn boxed() -> Result<(), Box<dyn Error + Send + Sync>> {
        let (tx, rx) = channel::unbounded::<String>();
        rx.close();
        tx.try_send("x".to_owned())?;
        Ok(())
    }
    let err = boxed().unwrap_err();
    assert_eq!(err.to_string(), "sending into a closed channel");
    let _: &dyn Error = &RecvError;
    let _: &dyn Error = &SendError(Opaque(0));
}

/// `send().await` and `recv().await` spend the task's cooperative budget:
/// a task that always finds messages (or room) still lets the other tasks
/// of its core run.
#[test]
fn channel_loops_yield_to_other_tasks() {
    with_timeout(T, || {
        let rt = rt(1);
        let ran = rt.block_on(async {
            let (tx, rx) = channel::unbounded::<u32>();
            let other = Arc::new(AtomicBool::new(false));
            let o = other.clone();
            fairloop::spawn(async move { o.store(true, Ordering::SeqCst) }).detach();
            for v in 0..10_000 {
                tx.send(v).await.unwrap();
            }
            let during_sends = other.load(Ordering::SeqCst);
            other.store(false, Ordering::SeqCst);
            let o = other.clone();
            fairloop::spawn(async move { o.store(true, Ordering::SeqCst) }).detach();
            for _ in 0..10_000 {
                rx.recv().await.unwrap();
            }
            (during_sends, other.load(Ordering::SeqCst))
        });
        assert_eq!(ran, (true, true), "the other task ran during the loop");
    });
}

#[test]
fn handles_and_futures_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    fn is_clone<T: Clone>() {}
    is::<Sender<Vec<u8>>>();
    is::<Receiver<Vec<u8>>>();
    is_clone::<Sender<Vec<u8>>>();
    is_clone::<Receiver<Vec<u8>>>();
    is::<channel::SendFuture<'static, Vec<u8>>>();
    is::<channel::RecvFuture<'static, Vec<u8>>>();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<SendError<u8>>();
    is_error::<TrySendError<u8>>();
    is_error::<RecvError>();
    is_error::<TryRecvError>();
}
