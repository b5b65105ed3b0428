//! Placement and reservations: a reserved core runs nothing but its
//! reservation (whatever the placement policy, through `run_on_shards`,
//! root spawns and migrations); `RoundRobin` and `LeastLoaded` spread
//! partitions over the unreserved cores; bad reservations are refused.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, with_timeout};
use fairloop::partition::{self, Partition, Placement};
use fairloop::{core_id, spawn, yield_now, Runtime};

const T: u64 = 30;
/// The reserved core of [`reserved_rt`].
const HC: usize = 3;

/// 4 unpinned cores, core 3 reserved for "hc".
fn reserved_rt() -> Runtime {
    Runtime::builder()
        .cores(4)
        .pin_cores(false)
        .reserve_core("hc")
        .build()
        .expect("build a runtime with a reservation")
}

/// Inside a task: the cores it runs on across yields, a timer and a child
/// task (which belongs to the same partition).
async fn observe() -> Vec<usize> {
    let mut seen = vec![core_id()];
    yield_now().await;
    seen.push(core_id());
    fairloop::time::sleep(Duration::from_micros(100)).await;
    seen.push(core_id());
    seen.push(spawn(async { core_id() }).await.expect("child task"));
    yield_now().await;
    seen.push(core_id());
    seen
}

fn label(p: &Placement) -> String {
    match p {
        Placement::Local => "local".into(),
        Placement::Core(i) => format!("core{i}"),
        Placement::Reserved(r) => format!("reserved-{r}"),
        Placement::RoundRobin => "rr".into(),
        Placement::LeastLoaded => "ll".into(),
        Placement::EveryCore => "every".into(),
    }
}

/// Samples the runtime's metrics from a plain thread until stopped and
/// returns every partition id it ever saw on `core`.
fn watch_core(rt: &Runtime, core: usize) -> (Arc<AtomicBool>, thread::JoinHandle<BTreeSet<u64>>) {
    let handle = rt.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while !stop2.load(Ordering::SeqCst) {
            for p in handle.metrics().partitions {
                if p.core == core {
                    seen.insert(p.id);
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
        seen
    });
    (stop, watcher)
}

/// 100 partitions of each placement policy (plus `Local` partitions made
/// on every unreserved core): none of their tasks ever runs on the reserved
/// core, `Core(i)` partitions run on core i, and the reservation's own
/// partition runs only there.
#[test]
fn reserved_core_runs_only_its_reservation() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let m = rt.metrics();
        assert_eq!(m.cores.len(), 4);
        assert_eq!(m.cores[HC].reserved_for.as_deref(), Some("hc"));
        for c in 0..HC {
            assert_eq!(m.cores[c].reserved_for, None, "core {c} is not reserved");
        }
        let (stop, watcher) = watch_core(&rt, HC);

        let hc_id = rt.block_on(async {
            let hc = Partition::builder()
                .name("healthcheck")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .expect("reserved partition");
            assert_eq!(hc.core(), HC);
            // The reservation's own tasks run on the reserved core.
            let mut hc_tasks = Vec::new();
            for _ in 0..10 {
                hc_tasks.push(hc.spawn(observe()));
            }

            let mut policies = vec![
                Placement::Local,
                Placement::RoundRobin,
                Placement::LeastLoaded,
            ];
            policies.push(Placement::Core(0)); // stands for Core(k % 3), see below
            let mut checks = Vec::new();
            for policy in &policies {
                for k in 0..100usize {
                    let placement = match policy {
                        Placement::Core(_) => Placement::Core(k % HC),
                        other => other.clone(),
                    };
                    let name = format!("{}-{k}", label(&placement));
                    let p = Partition::builder()
                        .name(&name)
                        .placement(placement.clone())
                        .build()
                        .unwrap_or_else(|e| panic!("build {name}: {e}"));
                    assert_ne!(p.core(), HC, "{name} was placed on the reserved core");
                    if let Placement::Core(i) = placement {
                        assert_eq!(p.core(), i, "{name}");
                    }
                    if placement == Placement::Local {
                        assert_eq!(p.core(), 0, "{name}: Local from core 0");
                    }
                    let h = p.spawn(observe());
                    checks.push((name, placement, h));
                }
            }
            // Local partitions created from tasks on cores 1 and 2.
            for c in 1..HC {
                let h = fairloop::partition::spawn(
                    fairloop::partition::Partition::builder()
                        .name(&format!("maker-{c}"))
                        .placement(Placement::Core(c)),
                    async move {
                        let mut out = Vec::new();
                        for k in 0..20 {
                            let p = Partition::builder()
                                .name(&format!("local-on-{c}-{k}"))
                                .build()
                                .expect("local partition");
                            assert_eq!(p.core(), c, "Local from core {c}");
                            out.push(p.spawn(observe()).await.expect("observe"));
                        }
                        out
                    },
                );
                for seen in h.await.expect("maker task") {
                    assert!(
                        seen.iter().all(|&s| s == c),
                        "a Local partition made on core {c} ran on {seen:?}"
                    );
                }
            }

            for (name, placement, h) in checks {
                let seen = h.await.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    !seen.contains(&HC),
                    "{name} ({placement:?}) ran a task on the reserved core: {seen:?}"
                );
                let first = seen[0];
                assert!(
                    seen.iter().all(|&c| c == first),
                    "{name} ({placement:?}) changed cores without a migration: {seen:?}"
                );
                if let Placement::Core(i) = placement {
                    assert_eq!(first, i, "{name}");
                }
            }
            for h in hc_tasks {
                let seen = h.await.expect("hc task");
                assert!(
                    seen.iter().all(|&c| c == HC),
                    "a reserved partition's task left the reserved core: {seen:?}"
                );
            }
            hc.id()
        });

        // The shards run on the unreserved cores only, in core order.
        let shards = rt.run_on_shards(|core| async move {
            let mut seen = vec![core_id()];
            for _ in 0..3 {
                yield_now().await;
                fairloop::time::sleep(Duration::from_micros(50)).await;
                seen.push(core_id());
            }
            (core, seen)
        });
        assert_eq!(shards.len(), HC, "one copy per unreserved core");
        for (i, (core, seen)) in shards.into_iter().enumerate() {
            assert_eq!(core, i, "results come in core order");
            assert!(seen.iter().all(|&c| c == i), "shard {i} ran on {seen:?}");
        }

        stop.store(true, Ordering::SeqCst);
        let seen_on_hc = watcher.join().expect("watcher thread");
        let allowed: BTreeSet<u64> = [HC as u64, hc_id].into_iter().collect();
        assert!(
            seen_on_hc.is_subset(&allowed),
            "partitions other than the reservation's were seen on the reserved core: {:?} \
             (allowed: root {HC} and healthcheck {hc_id})",
            seen_on_hc.difference(&allowed).collect::<Vec<_>>()
        );
        let m = rt.metrics();
        let on_hc: BTreeSet<u64> = m
            .partitions
            .iter()
            .filter(|p| p.core == HC)
            .map(|p| p.id)
            .collect();
        assert_eq!(on_hc, allowed, "partitions owned by the reserved core");
        // Every poll the reserved core made was one of the reservation's.
        let hc_polls = |rt: &Runtime| {
            let m = rt.metrics();
            let parts: u64 = m
                .partitions
                .iter()
                .filter(|p| p.core == HC)
                .map(|p| p.polls)
                .sum();
            (m.cores[HC].polls, parts)
        };
        wait_until(
            Duration::from_secs(5),
            "the reserved core's polls to equal its partitions' polls",
            || {
                let (core, parts) = hc_polls(&rt);
                core == parts
            },
        );
        let root_polls = m
            .partitions
            .iter()
            .find(|p| p.id == HC as u64)
            .unwrap()
            .polls;
        assert_eq!(
            root_polls, 0,
            "the reserved core's root partition ran a task"
        );
    })
}

/// Migrating a partition to every unreserved core works and its tasks
/// follow it; migrating onto the reserved core is refused.
#[test]
fn migrations_never_reach_the_reserved_core() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let (stop, watcher) = watch_core(&rt, HC);
        let (p, hc_id) = rt.block_on(async {
            let hc = Partition::builder()
                .name("healthcheck")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap();
            let p = Partition::builder()
                .name("wanderer")
                .placement(Placement::RoundRobin)
                .build()
                .unwrap();
            (p, hc.id())
        });
        let stop_spin = Arc::new(AtomicBool::new(false));
        // A task that keeps running (so there is queued work to move) and
        // records every core it runs on.
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let spinner = {
            let stop_spin = stop_spin.clone();
            let seen = seen.clone();
            p.spawn(async move {
                while !stop_spin.load(Ordering::Relaxed) {
                    seen.lock().unwrap().insert(core_id());
                    yield_now().await;
                }
            })
        };
        let mut moves = 0;
        for round in 0..3 {
            for target in 0..HC {
                let e = p
                    .migrate_to(HC)
                    .expect_err("migrate_to(reserved core) must fail");
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                assert!(e.to_string().contains("reserved"), "message: {e}");
                let before = p.core();
                p.migrate_to(target)
                    .unwrap_or_else(|e| panic!("migrate_to({target}): {e}"));
                if before != target {
                    moves += 1;
                }
                wait_until(
                    Duration::from_secs(5),
                    &format!("round {round}: wanderer to reach core {target}"),
                    || p.core() == target,
                );
                wait_until(
                    Duration::from_secs(5),
                    &format!("round {round}: the move to {target} to be counted"),
                    || p.metrics().migrations == moves,
                );
                let h = p.spawn(async { core_id() });
                let got = futures_lite::future::block_on(h).expect("probe task");
                assert_eq!(got, target, "a new task of the moved partition");
            }
        }
        stop_spin.store(true, Ordering::Relaxed);
        futures_lite::future::block_on(spinner).expect("spinner");
        let seen = seen.lock().unwrap().clone();
        assert!(
            !seen.contains(&HC),
            "the wanderer ran on the reserved core: {seen:?}"
        );
        assert_eq!(
            seen,
            (0..HC).collect::<BTreeSet<_>>(),
            "the running task followed its partition to every unreserved core"
        );
        stop.store(true, Ordering::SeqCst);
        let on_hc = watcher.join().unwrap();
        let allowed: BTreeSet<u64> = [HC as u64, hc_id].into_iter().collect();
        assert!(
            on_hc.is_subset(&allowed),
            "seen on the reserved core: {on_hc:?}"
        );
        // Still usable afterwards.
        assert_eq!(rt.block_on(async { 7 }), 7);
    })
}

/// `Placement::Local` (stated or by default) from a task on the reserved
/// core goes to an unreserved core, and so does `partition::spawn` by name.
#[test]
fn local_placement_from_the_reserved_core_goes_elsewhere() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let cores = rt.block_on(async {
            let hc = Partition::builder()
                .name("healthcheck")
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap();
            hc.spawn(async {
                assert_eq!(core_id(), HC);
                let mut out = Vec::new();
                for k in 0..12 {
                    let b = Partition::builder().name(&format!("from-hc-{k}"));
                    let b = if k % 2 == 0 {
                        b.placement(Placement::Local)
                    } else {
                        b
                    };
                    let p = b.build().expect("partition from the reserved core");
                    let ran = p.spawn(observe()).await.expect("observe");
                    out.push((p.core(), ran));
                }
                // A named partition created on demand from the reserved core.
                let ran = partition::spawn("made-by-name", observe())
                    .await
                    .expect("spawn by name");
                let by_name = partition::get("made-by-name").unwrap().core();
                out.push((by_name, ran));
                // Children of the reservation's tasks stay in it (and on it).
                let child = spawn(async { core_id() }).await.unwrap();
                assert_eq!(child, HC);
                out
            })
            .await
            .expect("task on the reserved core")
        });
        let mut used = BTreeSet::new();
        for (core, ran) in cores {
            assert_ne!(core, HC, "Local from the reserved core placed on it");
            assert!(
                ran.iter().all(|&c| c == core),
                "ran on {ran:?}, placed on {core}"
            );
            used.insert(core);
        }
        assert!(!used.is_empty());
    })
}

/// `Runtime::spawn` and `Handle::spawn` go round robin over the unreserved
/// cores; `spawn_on` the reserved core is refused with a message.
#[test]
fn root_spawns_skip_the_reserved_core() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let handles: Vec<_> = (0..30).map(|_| rt.spawn(observe())).collect();
        let mut per_core = BTreeMap::new();
        for h in handles {
            let seen = futures_lite::future::block_on(h).expect("root task");
            let c = seen[0];
            assert!(seen.iter().all(|&s| s == c), "{seen:?}");
            *per_core.entry(c).or_insert(0) += 1;
        }
        assert_eq!(
            per_core,
            BTreeMap::from([(0, 10), (1, 10), (2, 10)]),
            "Runtime::spawn is round robin over the unreserved cores"
        );

        // From another thread through a Handle.
        let handle = rt.handle();
        let per_core = thread::spawn(move || {
            let mut per_core = BTreeMap::new();
            for _ in 0..9 {
                let c = futures_lite::future::block_on(handle.spawn(async { core_id() })).unwrap();
                *per_core.entry(c).or_insert(0) += 1;
            }
            per_core
        })
        .join()
        .unwrap();
        assert_eq!(per_core, BTreeMap::from([(0, 3), (1, 3), (2, 3)]));

        // spawn_on every unreserved core runs there.
        for c in 0..HC {
            let got = futures_lite::future::block_on(rt.spawn_on(c, async { core_id() })).unwrap();
            assert_eq!(got, c);
        }
        // spawn_on the reserved core is refused, with a message.
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let err = futures_lite::future::block_on(rt.spawn_on(HC, async move {
            ran2.store(true, Ordering::SeqCst);
        }))
        .expect_err("spawn_on(reserved core) must be refused");
        assert!(err.is_cancelled(), "{err}");
        assert!(!err.is_panic());
        let msg = err.to_string();
        assert!(msg.contains("reserved"), "message: {msg}");
        assert!(!ran.load(Ordering::SeqCst), "the refused task ran");
        let e = rt
            .handle()
            .try_spawn_on(HC, async {})
            .expect_err("try_spawn_on(reserved core)");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("reserved"), "message: {e}");
        // A core that does not exist.
        let err = futures_lite::future::block_on(rt.spawn_on(4, async {}))
            .expect_err("spawn_on(4) on 4 cores");
        assert!(err.is_cancelled());
        assert!(err.to_string().contains('4'), "message: {err}");
        // Nothing reached the reserved core's root partition.
        let m = rt.metrics();
        assert_eq!(
            m.partitions
                .iter()
                .find(|p| p.id == HC as u64)
                .unwrap()
                .polls,
            0
        );
        assert_eq!(m.cores[HC].polls, 0, "the reserved core polled a task");
    })
}

/// `RoundRobin` spreads partitions evenly over all unreserved cores.
#[test]
fn round_robin_spreads_over_unreserved_cores() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let placed = rt.block_on(async {
            let mut placed = BTreeMap::new();
            for k in 0..30 {
                let p = Partition::builder()
                    .name(&format!("rr-{k}"))
                    .placement(Placement::RoundRobin)
                    .build()
                    .unwrap();
                let ran = p.spawn(async { core_id() }).await.unwrap();
                assert_eq!(ran, p.core());
                *placed.entry(p.core()).or_insert(0) += 1;
            }
            placed
        });
        assert_eq!(placed, BTreeMap::from([(0, 10), (1, 10), (2, 10)]));

        // The builder's default placement, too.
        let rt = Runtime::builder()
            .cores(3)
            .pin_cores(false)
            .reserve_core("x")
            .placement(Placement::RoundRobin)
            .build()
            .unwrap();
        let placed = rt.block_on(async {
            let mut placed = BTreeMap::new();
            for k in 0..10 {
                let p = Partition::builder()
                    .name(&format!("d-{k}"))
                    .build()
                    .unwrap();
                *placed.entry(p.core()).or_insert(0) += 1;
            }
            placed
        });
        assert_eq!(placed, BTreeMap::from([(0, 5), (1, 5)]));
    })
}

/// `LeastLoaded` avoids a core saturated with CPU work (and never picks
/// the reserved core).
#[test]
fn least_loaded_avoids_a_saturated_core() {
    with_timeout(T, || {
        let rt = reserved_rt();
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = Arc::new(AtomicUsize::new(0));
        {
            let stop = stop.clone();
            let spinning = spinning.clone();
            rt.block_on(async move {
                let hog = Partition::builder()
                    .name("hog")
                    .placement(Placement::Core(0))
                    .build()
                    .unwrap();
                for _ in 0..2 {
                    let stop = stop.clone();
                    let spinning = spinning.clone();
                    hog.spawn(async move {
                        spinning.fetch_add(1, Ordering::SeqCst);
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            while t.elapsed() < Duration::from_micros(200) {}
                            yield_now().await;
                        }
                    })
                    .detach();
                }
            });
        }
        wait_until(Duration::from_secs(5), "the hog to spin", || {
            spinning.load(Ordering::SeqCst) == 2
        });
        // Let core 0's load figure catch up with its saturation.
        thread::sleep(Duration::from_millis(150));
        // Place from a task on core 1: LeastLoaded does not depend on where
        // the creator runs.
        let placed = futures_lite::future::block_on(rt.spawn_on(1, async {
            let mut placed = Vec::new();
            for k in 0..20 {
                let p = Partition::builder()
                    .name(&format!("ll-{k}"))
                    .placement(Placement::LeastLoaded)
                    .build()
                    .unwrap();
                let ran = p.spawn(async { core_id() }).await.unwrap();
                assert_eq!(ran, p.core(), "ll-{k} ran where it was placed");
                placed.push(p.core());
            }
            placed
        }))
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        assert!(
            !placed.contains(&HC),
            "LeastLoaded picked the reserved core: {placed:?}"
        );
        let on_busy = placed.iter().filter(|&&c| c == 0).count();
        assert!(
            on_busy * 4 <= placed.len(),
            "LeastLoaded put {on_busy} of {} partitions on the saturated core 0: {placed:?}",
            placed.len()
        );
    })
}

/// Bad reservations are refused with `InvalidInput` and a message.
#[test]
fn bad_reservations_are_refused() {
    with_timeout(T, || {
        let invalid = |what: &str, r: std::io::Result<Runtime>| {
            let e = r.err().unwrap_or_else(|| panic!("{what}: accepted"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
            assert!(!e.to_string().is_empty(), "{what}: no message");
            e.to_string()
        };
        let b = || Runtime::builder().pin_cores(false);
        invalid(
            "every core reserved (1)",
            b().cores(1).reserve_core("a").build(),
        );
        invalid(
            "every core reserved (4)",
            b().cores(4)
                .reserve_core("a")
                .reserve_core("b")
                .reserve_core("c")
                .reserve_core("d")
                .build(),
        );
        invalid(
            "more reservations than cores",
            b().cores(2)
                .reserve_core("a")
                .reserve_core("b")
                .reserve_core("c")
                .build(),
        );
        let msg = invalid(
            "duplicate reservation",
            b().cores(4).reserve_core("hc").reserve_core("hc").build(),
        );
        assert!(msg.contains("hc"), "message: {msg}");
        invalid(
            "empty reservation name",
            b().cores(4).reserve_core("").build(),
        );

        // Valid: several reservations take the highest cores.
        let rt = b()
            .cores(4)
            .reserve_core("a")
            .reserve_core("b")
            .build()
            .unwrap();
        let m = rt.metrics();
        assert_eq!(m.cores[3].reserved_for.as_deref(), Some("a"));
        assert_eq!(m.cores[2].reserved_for.as_deref(), Some("b"));
        assert_eq!(m.cores[1].reserved_for, None);
        rt.block_on(async {
            let e = Partition::builder()
                .placement(Placement::Reserved("nope".into()))
                .build()
                .expect_err("unknown reservation");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("nope"), "{e}");
            let e = Partition::builder()
                .placement(Placement::Core(2))
                .build()
                .expect_err("Core(reserved core)");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let e = Partition::builder()
                .placement(Placement::Reserved("a".into()))
                .pinned(false)
                .build()
                .expect_err("an unpinned reserved partition");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            for (name, core) in [("a", 3), ("b", 2)] {
                let p = Partition::builder()
                    .placement(Placement::Reserved(name.into()))
                    .build()
                    .unwrap();
                assert_eq!(p.core(), core);
                assert_eq!(p.spawn(async { core_id() }).await.unwrap(), core);
            }
        });
    })
}
