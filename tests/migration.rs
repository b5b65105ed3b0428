//! Migration: a moved partition's tasks (queued, parked on timers, parked on
//! foreign wakes, and new ones) run on the target core; a storm of
//! migrations under thousands of waking, sleeping and yielding tasks loses
//! no step and never polls a task on two cores at once; pinned partitions
//! and bad cores are refused; shutdown during migrations drops every
//! future once; a migrated partition keeps its fair share.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{rt, wait_until, with_timeout, DropGuard, Signal};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{core_id, spawn, spawn_local, yield_now, Runtime};

const T: u64 = 30;
const WAIT: Duration = Duration::from_secs(5);

/// A counting mailbox: `send` adds a message and wakes the receiver (from
/// any thread); `recv` completes once a message is there and takes it.
#[derive(Default)]
struct Mailbox {
    inner: Mutex<(u64, Option<Waker>)>,
}

impl Mailbox {
    fn send(&self) {
        let waker = {
            let mut g = self.inner.lock().unwrap();
            g.0 += 1;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn recv(self: &Arc<Self>) -> Recv {
        Recv { mb: self.clone() }
    }
}

struct Recv {
    mb: Arc<Mailbox>,
}

impl Future for Recv {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.mb.inner.lock().unwrap();
        if g.0 > 0 {
            g.0 -= 1;
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A small deterministic generator for sleep lengths.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// 0..=300 µs.
    fn sleep(&mut self) -> Duration {
        Duration::from_micros(self.next() % 301)
    }
}

/// What the poll checker found, over all tasks.
#[derive(Default)]
struct Audit {
    /// A poll started while another poll of the same task was running.
    overlaps: AtomicU64,
    /// A poll ran on a core that did not own the task's partition.
    not_owner: AtomicU64,
    /// A poll saw `core_id()` change under it.
    core_changed: AtomicU64,
    /// Bit i: some poll ran on core i.
    cores_seen: AtomicU64,
    polls: AtomicU64,
}

/// Wraps a task's future: every poll (one segment between two awaits)
/// claims the task's in-flight flag, checks that it was free, and checks
/// that the core running it owns the task's partition.
struct Checked {
    fut: Pin<Box<dyn Future<Output = u64> + Send>>,
    in_flight: Arc<AtomicBool>,
    audit: Arc<Audit>,
}

impl Checked {
    fn new(fut: impl Future<Output = u64> + Send + 'static, audit: &Arc<Audit>) -> Self {
        Checked {
            fut: Box::pin(fut),
            in_flight: Arc::new(AtomicBool::new(false)),
            audit: audit.clone(),
        }
    }
}

impl Future for Checked {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let a = self.audit.clone();
        if self.in_flight.swap(true, Ordering::SeqCst) {
            a.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        a.polls.fetch_add(1, Ordering::Relaxed);
        let core = core_id();
        a.cores_seen.fetch_or(1 << core, Ordering::Relaxed);
        if partition::current().core() != core {
            a.not_owner.fetch_add(1, Ordering::SeqCst);
        }
        let r = self.fut.as_mut().poll(cx);
        if core_id() != core || partition::current().core() != core {
            a.core_changed.fetch_add(1, Ordering::SeqCst);
        }
        self.in_flight.store(false, Ordering::SeqCst);
        r
    }
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// A partition moved twice: `core()` reports the target once it owns it;
/// queued (yielding) tasks, tasks parked on timers and on foreign wakes, and
/// new tasks all run on the target afterwards; `migrations` counts both
/// moves. An idle partition moves too.
#[test]
fn basic_migration_moves_every_kind_of_task() {
    with_timeout(T, || {
        let rt = rt(3);
        let p = rt.block_on(async {
            Partition::builder()
                .name("mover")
                .placement(Placement::Local)
                .build()
                .unwrap()
        });
        assert_eq!(p.core(), 0, "Local from block_on is core 0");
        assert_eq!(p.metrics().migrations, 0);

        let stop = Arc::new(AtomicBool::new(false));
        // Always-runnable tasks: queued when the move happens. Each
        // records the cores it ran on, in order.
        let yielders: Vec<_> = (0..20)
            .map(|_| {
                let stop = stop.clone();
                p.spawn(async move {
                    let mut trail = vec![core_id()];
                    while !stop.load(Ordering::Relaxed) {
                        yield_now().await;
                        if *trail.last().unwrap() != core_id() {
                            trail.push(core_id());
                        }
                    }
                    trail
                })
            })
            .collect();
        // Tasks parked on a gate that a plain thread opens after the move.
        let gate = Signal::new();
        let started = Arc::new(AtomicUsize::new(0));
        let gated: Vec<_> = (0..20)
            .map(|_| {
                let gate = gate.clone();
                let started = started.clone();
                p.spawn(async move {
                    let before = core_id();
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.wait().await;
                    (before, core_id())
                })
            })
            .collect();
        // Tasks parked on timers registered on the old core.
        let sleepers: Vec<_> = (0..20)
            .map(|_| {
                let started = started.clone();
                p.spawn(async move {
                    let before = core_id();
                    started.fetch_add(1, Ordering::SeqCst);
                    fairloop::time::sleep(Duration::from_millis(150)).await;
                    (before, core_id())
                })
            })
            .collect();
        wait_until(WAIT, "the parked tasks to start", || {
            started.load(Ordering::SeqCst) == 40
        });

        p.migrate_to(2).expect("migrate_to(2)");
        wait_until(WAIT, "core() to report 2", || p.core() == 2);
        wait_until(WAIT, "the move to be counted", || {
            p.metrics().migrations == 1
        });
        assert_eq!(
            rt.metrics().partition("mover").unwrap().migrations,
            1,
            "runtime metrics agree"
        );
        assert_eq!(rt.metrics().partition("mover").unwrap().core, 2);
        // New tasks, from a plain thread and from a task of the partition.
        assert_eq!(block_on(p.spawn(async { core_id() })).unwrap(), 2);
        let nested = block_on(p.spawn(async { spawn(async { core_id() }).await.unwrap() }));
        assert_eq!(nested.unwrap(), 2);
        // From a task on another core.
        let p2 = p.clone();
        let from_core1 =
            block_on(rt.spawn_on(1, async move { p2.spawn(async { core_id() }).await }));
        assert_eq!(from_core1.unwrap().unwrap(), 2);

        // Parked tasks wake on the new owner.
        gate.set();
        for h in gated {
            let (before, after) = block_on(h).unwrap();
            assert_eq!(
                (before, after),
                (0, 2),
                "a gated task: before / after the move"
            );
        }
        for h in sleepers {
            let (before, after) = block_on(h).unwrap();
            assert_eq!(
                (before, after),
                (0, 2),
                "a sleeping task: before / after the move"
            );
        }

        // Move again, with the yielders still running.
        p.migrate_to(1).expect("migrate_to(1)");
        wait_until(WAIT, "core() to report 1", || p.core() == 1);
        wait_until(WAIT, "the second move to be counted", || {
            p.metrics().migrations == 2
        });
        assert_eq!(block_on(p.spawn(async { core_id() })).unwrap(), 1);
        // Let the yielders run a while on core 1, then stop them.
        let polls = p.metrics().polls;
        wait_until(WAIT, "the yielders to run on core 1", || {
            p.metrics().polls > polls + 100
        });
        stop.store(true, Ordering::Relaxed);
        for h in yielders {
            let trail = block_on(h).unwrap();
            assert_eq!(trail, [0, 2, 1], "a queued task's cores, in order");
        }

        // Migrating to the core it is on is accepted and moves nothing.
        p.migrate_to(1).expect("migrate_to(current core)");
        assert_eq!(block_on(p.spawn(async { core_id() })).unwrap(), 1);
        assert_eq!(p.core(), 1);

        // An idle partition that never ran a task.
        let idle = rt.block_on(async {
            Partition::builder()
                .name("idle")
                .placement(Placement::RoundRobin)
                .build()
                .unwrap()
        });
        let target = (idle.core() + 1) % 3;
        idle.migrate_to(target).unwrap();
        wait_until(WAIT, "the idle partition to move", || idle.core() == target);
        wait_until(WAIT, "the idle move to be counted", || {
            idle.metrics().migrations == 1
        });
        assert_eq!(block_on(idle.spawn(async { core_id() })).unwrap(), target);
        // The runtime's other partitions did not move.
        let m = rt.metrics();
        for pm in &m.partitions {
            if pm.name.is_none() {
                assert_eq!(pm.migrations, 0, "root partition {} moved", pm.id);
                assert_eq!(
                    pm.core as u64, pm.id,
                    "root partition {} left its core",
                    pm.id
                );
            }
        }
    })
}

/// 2,000 tasks in two partitions — pairs that ping-pong messages across
/// the two partitions, tasks fed by a foreign thread, and sleepers — while
/// a plain thread migrates both partitions round robin every 200 µs until
/// all tasks are done. Every task completes exactly its steps, no task is
/// polled twice at once or on a core that does not own its partition.
#[test]
fn migration_storm_loses_nothing() {
    with_timeout(T, || {
        const CORES: usize = 3;
        const PAIRS: usize = 600;
        const FED: usize = 400;
        const SLEEPERS: usize = 400;
        const STEPS: u64 = 20;
        let rt = rt(CORES);
        let (a, b) = rt.block_on(async {
            let a = Partition::builder()
                .name("storm-a")
                .placement(Placement::Core(0))
                .pinned(false)
                .build()
                .unwrap();
            let b = Partition::builder()
                .name("storm-b")
                .placement(Placement::Core(1))
                .pinned(false)
                .build()
                .unwrap();
            (a, b)
        });
        let audit = Arc::new(Audit::default());
        let steps = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));

        // The migrator starts first: tasks are spawned while partitions move.
        let migrator = {
            let (a, b, done) = (a.clone(), b.clone(), done.clone());
            thread::spawn(move || {
                let mut requests = 0u64;
                let mut i = 0usize;
                while !done.load(Ordering::SeqCst) {
                    a.migrate_to(i % CORES).expect("migrate storm-a");
                    b.migrate_to((i + 1) % CORES).expect("migrate storm-b");
                    requests += 2;
                    i += 1;
                    thread::sleep(Duration::from_micros(200));
                }
                requests
            })
        };

        let mut handles = Vec::new();
        for k in 0..PAIRS {
            let to_b = Arc::new(Mailbox::default());
            let to_a = Arc::new(Mailbox::default());
            let (ta, tb) = (to_a.clone(), to_b.clone());
            let st = steps.clone();
            let ping = async move {
                let mut rng = Lcg(k as u64);
                let mut n = 0;
                for _ in 0..STEPS {
                    tb.send();
                    ta.recv().await;
                    n += 1;
                    st.fetch_add(1, Ordering::Relaxed);
                    if rng.next() % 2 == 0 {
                        fairloop::time::sleep(rng.sleep()).await;
                    }
                    yield_now().await;
                }
                n
            };
            let st = steps.clone();
            let pong = async move {
                let mut rng = Lcg(!(k as u64));
                let mut n = 0;
                for _ in 0..STEPS {
                    to_b.recv().await;
                    n += 1;
                    st.fetch_add(1, Ordering::Relaxed);
                    if rng.next() % 2 == 0 {
                        fairloop::time::sleep(rng.sleep()).await;
                    }
                    yield_now().await;
                    to_a.send();
                }
                n
            };
            handles.push(a.spawn(Checked::new(ping, &audit)));
            handles.push(b.spawn(Checked::new(pong, &audit)));
        }
        // Tasks woken only by a plain thread.
        let boxes: Vec<Arc<Mailbox>> = (0..FED).map(|_| Arc::new(Mailbox::default())).collect();
        for (k, mb) in boxes.iter().enumerate() {
            let mb = mb.clone();
            let st = steps.clone();
            let fed = async move {
                let mut n = 0;
                for i in 0..STEPS {
                    mb.recv().await;
                    n += 1;
                    st.fetch_add(1, Ordering::Relaxed);
                    if i % 3 == 0 {
                        yield_now().await;
                    }
                }
                n
            };
            let p = if k % 2 == 0 { &a } else { &b };
            handles.push(p.spawn(Checked::new(fed, &audit)));
        }
        let feeder = thread::spawn(move || {
            for _ in 0..STEPS {
                for mb in &boxes {
                    mb.send();
                }
                thread::sleep(Duration::from_micros(300));
            }
        });
        for k in 0..SLEEPERS {
            let st = steps.clone();
            let sleeper = async move {
                let mut rng = Lcg(1_000_003 * k as u64);
                let mut n = 0;
                for _ in 0..STEPS {
                    fairloop::time::sleep(rng.sleep()).await;
                    yield_now().await;
                    n += 1;
                    st.fetch_add(1, Ordering::Relaxed);
                }
                n
            };
            let p = if k % 2 == 0 { &a } else { &b };
            handles.push(p.spawn(Checked::new(sleeper, &audit)));
        }
        let tasks = handles.len();
        assert_eq!(tasks, 2 * PAIRS + FED + SLEEPERS);

        let mut incomplete = 0;
        for h in handles {
            let n = block_on(h).expect("storm task");
            if n != STEPS {
                incomplete += 1;
            }
        }
        done.store(true, Ordering::SeqCst);
        let requests = migrator.join().expect("migrator thread");
        feeder.join().expect("feeder thread");

        assert_eq!(incomplete, 0, "tasks that did not do exactly {STEPS} steps");
        assert_eq!(
            steps.load(Ordering::SeqCst),
            tasks as u64 * STEPS,
            "total steps"
        );
        assert_eq!(
            audit.overlaps.load(Ordering::SeqCst),
            0,
            "polls that overlapped another poll of the same task"
        );
        assert_eq!(
            audit.not_owner.load(Ordering::SeqCst),
            0,
            "polls on a core that did not own the task's partition"
        );
        assert_eq!(audit.core_changed.load(Ordering::SeqCst), 0);
        let seen = audit.cores_seen.load(Ordering::SeqCst);
        assert_eq!(seen, 0b111, "tasks ran on every core (bitmask {seen:b})");
        let migrations = a.metrics().migrations + b.metrics().migrations;
        println!(
            "storm: {tasks} tasks, {} polls, {requests} migrate_to calls, {migrations} migrations",
            audit.polls.load(Ordering::SeqCst)
        );
        assert!(migrations > 0, "no migration happened");
        assert!(migrations <= requests, "more migrations than requests");
        assert!(requests >= 20, "the storm was too short to mean much");
        // The runtime is still fine.
        assert_eq!(rt.block_on(async { 1 + 1 }), 2);
        assert_eq!(
            block_on(a.spawn(async { core_id() })).unwrap(),
            a.core(),
            "storm-a runs where it is"
        );
    })
}

fn assert_invalid(what: &str, r: std::io::Result<()>, needles: &[&str]) {
    let e = r.err().unwrap_or_else(|| panic!("{what}: accepted"));
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
    let msg = e.to_string();
    assert!(!msg.is_empty(), "{what}: no message");
    for n in needles {
        assert!(msg.contains(n), "{what}: message {msg:?} lacks {n:?}");
    }
}

/// Refused migrations: root, `Core`-placed, `pinned(true)`, `spawn_local`
/// pinned, reserved partitions; cores that do not exist or are reserved.
/// Nothing moves and the runtime stays usable.
#[test]
fn bad_migrations_are_refused() {
    with_timeout(T, || {
        let rt = Runtime::builder()
            .cores(3)
            .pin_cores(false)
            .reserve_core("hc")
            .build()
            .unwrap();
        let root1 = rt.handle().root_partition(1).expect("core 1's root");
        assert_invalid("root partition of core 1", root1.migrate_to(0), &["pinned"]);
        let parts = rt.block_on(async {
            assert_invalid(
                "the current (root) partition",
                partition::current().migrate_to(1),
                &["pinned"],
            );
            let core_placed = Partition::builder()
                .name("core-placed")
                .placement(Placement::Core(1))
                .build()
                .unwrap();
            let pinned = Partition::builder()
                .name("pinned")
                .placement(Placement::RoundRobin)
                .pinned(true)
                .build()
                .unwrap();
            let local = Partition::builder()
                .name("went-local")
                .placement(Placement::Local)
                .build()
                .unwrap();
            let local_out = local
                .spawn(async {
                    let inner = spawn_local(async {
                        let rc = std::rc::Rc::new(5);
                        yield_now().await;
                        *rc
                    });
                    inner.await.unwrap()
                })
                .await
                .unwrap();
            assert_eq!(local_out, 5);
            let reserved = Partition::builder()
                .name("reserved")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap();
            let free = Partition::builder()
                .name("free")
                .placement(Placement::Core(0))
                .pinned(false)
                .build()
                .unwrap();
            (core_placed, pinned, local, reserved, free)
        });
        let (core_placed, pinned, local, reserved, free) = parts;
        assert_invalid(
            "Core-placed partition",
            core_placed.migrate_to(0),
            &["pinned"],
        );
        assert_invalid("pinned(true) partition", pinned.migrate_to(1), &["pinned"]);
        assert_invalid(
            "partition that ran spawn_local",
            local.migrate_to(1),
            &["pinned"],
        );
        assert_invalid("reserved partition", reserved.migrate_to(0), &[]);
        assert_invalid("core 99", free.migrate_to(99), &["99"]);
        assert_invalid("core == cores", free.migrate_to(3), &["3"]);
        assert_invalid("the reserved core", free.migrate_to(2), &["reserved"]);
        // From a plain thread, too.
        let f2 = free.clone();
        let r = thread::spawn(move || f2.migrate_to(usize::MAX))
            .join()
            .unwrap();
        assert_invalid("core usize::MAX", r, &[]);

        // Nothing moved.
        thread::sleep(Duration::from_millis(20));
        for (p, core) in [
            (&core_placed, 1),
            (&local, 0),
            (&reserved, 2),
            (&free, 0),
            (&root1, 1),
        ] {
            assert_eq!(p.core(), core, "{:?} moved", p.name());
            assert_eq!(p.metrics().migrations, 0, "{:?} counted a move", p.name());
            assert_eq!(block_on(p.spawn(async { core_id() })).unwrap(), core);
        }
        // The runtime is usable and a valid migration still works.
        free.migrate_to(1).expect("a valid migration");
        wait_until(WAIT, "free to reach core 1", || free.core() == 1);
        assert_eq!(block_on(free.spawn(async { core_id() })).unwrap(), 1);
        assert_eq!(rt.block_on(async { 40 + 2 }), 42);
    })
}

/// A partition whose task runs `spawn_local` while migrations are being
/// requested ends pinned where it is: its local task always runs on the
/// core it was spawned on, and later requests are refused.
#[test]
fn spawn_local_pins_a_partition_during_migrations() {
    with_timeout(T, || {
        let rt = rt(3);
        let p = rt.block_on(async {
            Partition::builder()
                .name("soon-local")
                .placement(Placement::RoundRobin)
                .build()
                .unwrap()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mover = {
            let (p, stop) = (p.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    if p.migrate_to(i % 3).is_err() {
                        return i; // pinned now
                    }
                    i += 1;
                    thread::sleep(Duration::from_micros(100));
                }
                i
            })
        };
        thread::sleep(Duration::from_millis(10));
        let (spawned_on, local_cores) = block_on(p.spawn(async {
            let here = core_id();
            let local = spawn_local(async {
                let mut cores = vec![core_id()];
                for _ in 0..50 {
                    yield_now().await;
                    fairloop::time::sleep(Duration::from_micros(100)).await;
                    cores.push(core_id());
                }
                cores
            });
            (here, local.await.unwrap())
        }))
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        mover.join().unwrap();
        assert!(
            local_cores.iter().all(|&c| c == spawned_on),
            "a !Send task moved: spawned on {spawned_on}, ran on {local_cores:?}"
        );
        assert_eq!(p.core(), spawned_on);
        assert_invalid(
            "after spawn_local",
            p.migrate_to((spawned_on + 1) % 3),
            &["pinned"],
        );
    })
}

/// Dropping the runtime while a thread keeps migrating partitions and
/// another keeps waking their tasks: every pending future is dropped
/// exactly once, drop returns, and later `migrate_to` calls fail cleanly.
#[test]
fn shutdown_during_migrations_drops_every_future_once() {
    with_timeout(T, || {
        for round in 0..4 {
            let rt = rt(3);
            let dropped = Arc::new(AtomicUsize::new(0));
            let never = Signal::new();
            let parts: Vec<Partition> = rt.block_on(async {
                (0..3)
                    .map(|k| {
                        Partition::builder()
                            .name(&format!("m{k}"))
                            .placement(Placement::RoundRobin)
                            .build()
                            .unwrap()
                    })
                    .collect()
            });
            let boxes: Vec<Arc<Mailbox>> = (0..150).map(|_| Arc::new(Mailbox::default())).collect();
            let mut spawned = 0;
            let mut kept = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                for i in 0..200 {
                    let guard = DropGuard::new(&dropped);
                    match i % 4 {
                        0 => {
                            let never = never.clone();
                            p.spawn(async move {
                                let _g = guard;
                                never.wait().await;
                            })
                            .detach();
                        }
                        1 => p
                            .spawn(async move {
                                let _g = guard;
                                loop {
                                    yield_now().await;
                                }
                            })
                            .detach(),
                        2 => {
                            let mut rng = Lcg((k * 1000 + i) as u64);
                            p.spawn(async move {
                                let _g = guard;
                                loop {
                                    fairloop::time::sleep(rng.sleep()).await;
                                }
                            })
                            .detach();
                        }
                        _ => {
                            let mb = boxes[(k * 50 + i / 4) % boxes.len()].clone();
                            // Keep this JoinHandle alive past the runtime.
                            kept.push(p.spawn(async move {
                                let _g = guard;
                                loop {
                                    mb.recv().await;
                                }
                            }));
                        }
                    }
                    spawned += 1;
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let migrator = {
                let (parts, stop) = (parts.clone(), stop.clone());
                thread::spawn(move || {
                    let mut i = 0usize;
                    let mut errors_after_close = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        for (k, p) in parts.iter().enumerate() {
                            if p.migrate_to((i + k) % 3).is_err() {
                                errors_after_close += 1;
                            }
                        }
                        i += 1;
                        thread::sleep(Duration::from_micros(50));
                    }
                    errors_after_close
                })
            };
            let waker = {
                let (boxes, stop) = (boxes.clone(), stop.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        for mb in &boxes {
                            mb.send();
                        }
                        thread::yield_now();
                    }
                })
            };
            wait_until(WAIT, "the partitions to run", || {
                parts.iter().all(|p| p.metrics().polls > 100)
            });
            thread::sleep(Duration::from_millis(20 + 10 * round));
            let t = Instant::now();
            drop(rt);
            let took = t.elapsed();
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                spawned,
                "round {round}: futures dropped by shutdown (took {took:?})"
            );
            // Handles outlive the runtime: requests fail, wakes are no-ops.
            for p in &parts {
                assert!(p.migrate_to(0).is_err(), "migrate_to after shutdown");
            }
            thread::sleep(Duration::from_millis(5));
            stop.store(true, Ordering::SeqCst);
            migrator.join().expect("migrator thread");
            waker.join().expect("waker thread");
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                spawned,
                "round {round}: dropped twice?"
            );
            for h in kept {
                let e = block_on(h).expect_err("a task of a runtime that shut down");
                assert!(e.is_cancelled(), "{e}");
            }
        }
    })
}

/// Two CPU-bound partitions, "a" on core 0 and "b" moved there from core 1:
/// after the move both keep making progress on core 0.
#[test]
fn migrated_partition_keeps_its_fair_share() {
    with_timeout(T, || {
        let rt = rt(2);
        let (pa, pb) = rt.block_on(async {
            let a = Partition::builder()
                .name("a")
                .placement(Placement::Core(0))
                .build()
                .unwrap();
            let b = Partition::builder()
                .name("b")
                .placement(Placement::Core(1))
                .pinned(false)
                .build()
                .unwrap();
            (a, b)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let counters = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let mut handles = Vec::new();
        for (p, count) in [(&pa, &counters[0]), (&pb, &counters[1])] {
            let (stop, count) = (stop.clone(), count.clone());
            handles.push(p.spawn(async move {
                let mut cores = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    spin(Duration::from_micros(50));
                    cores.insert(core_id());
                    count.fetch_add(1, Ordering::Relaxed);
                    yield_now().await;
                }
                cores
            }));
        }
        wait_until(WAIT, "both partitions to run", || {
            counters.iter().all(|c| c.load(Ordering::Relaxed) > 100)
        });
        thread::sleep(Duration::from_millis(50));
        pb.migrate_to(0).expect("migrate b to core 0");
        wait_until(WAIT, "b to reach core 0", || pb.core() == 0);
        wait_until(WAIT, "b's move to be counted", || {
            pb.metrics().migrations == 1
        });
        // Let b's first polls on core 0 happen, then measure.
        thread::sleep(Duration::from_millis(20));
        let (a0, b0) = (
            counters[0].load(Ordering::SeqCst),
            counters[1].load(Ordering::SeqCst),
        );
        thread::sleep(Duration::from_millis(300));
        let (a1, b1) = (
            counters[0].load(Ordering::SeqCst),
            counters[1].load(Ordering::SeqCst),
        );
        stop.store(true, Ordering::Relaxed);
        let cores: Vec<_> = handles.into_iter().map(|h| block_on(h).unwrap()).collect();
        let (da, db) = (a1 - a0, b1 - b0);
        println!("after the move: a {da} polls, b {db} polls in ~300 ms");
        assert!(da > 0 && db > 0, "a partition starved: a {da}, b {db}");
        assert!(
            da * 10 > db && db * 10 > da,
            "unfair after the move: a {da} polls, b {db} polls"
        );
        assert_eq!(cores[0], BTreeSet::from([0]), "a stayed on core 0");
        assert_eq!(
            cores[1],
            BTreeSet::from([0, 1]),
            "b ran on core 1, then on core 0"
        );
        assert_eq!(pa.metrics().core, 0);
        assert_eq!(pb.metrics().core, 0);
    })
}
