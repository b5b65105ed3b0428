//! Automatic rebalancing (`Builder::rebalance(Some(interval))`): CPU-bound
//! partitions born on one core are spread over the unreserved cores and
//! then stay put (hysteresis, no ping-pong); pinned partitions and
//! partitions on reserved cores never move; without rebalancing nothing
//! moves on its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, with_timeout};
use fairloop::partition::{Partition, Placement};
use fairloop::{yield_now, Runtime};

const T: u64 = 30;
const EVERY: Duration = Duration::from_millis(50);
/// How long the balancer gets to reach the expected spread.
const SETTLE: Duration = Duration::from_secs(5);

fn balanced_rt(cores: usize, reserve: Option<&str>) -> Runtime {
    let mut b = Runtime::builder()
        .cores(cores)
        .pin_cores(false)
        .rebalance(Some(EVERY));
    if let Some(r) = reserve {
        b = b.reserve_core(r);
    }
    b.build()
        .expect("build a runtime with rebalance(Some(50 ms))")
}

/// Spawns a CPU-bound task into `p`: spin ~100 µs, yield, until `stop`.
fn hog(p: &Partition, stop: &Arc<AtomicBool>) {
    let stop = stop.clone();
    p.spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(100) {
                std::hint::spin_loop();
            }
            yield_now().await;
        }
    })
    .detach();
}

/// Builds a partition named `name` from inside the runtime.
fn make(rt: &Runtime, name: &str, placement: Placement, pinned: Option<bool>) -> Partition {
    let name = name.to_owned();
    rt.block_on(async move {
        let b = Partition::builder().name(&name).placement(placement);
        let b = match pinned {
            Some(yes) => b.pinned(yes),
            None => b,
        };
        b.build()
            .unwrap_or_else(|e| panic!("build partition {name}: {e}"))
    })
}

fn total_migrations(rt: &Runtime) -> u64 {
    rt.metrics().partitions.iter().map(|p| p.migrations).sum()
}

fn spread(parts: &[Partition]) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for p in parts {
        *m.entry(p.core()).or_insert(0) += 1;
    }
    m
}

/// Waits until no migration happens during a `window`; tries at most
/// `tries` windows (a move that was already decided may land late).
fn wait_for_quiet(rt: &Runtime, window: Duration, tries: usize) -> bool {
    for _ in 0..tries {
        let before = total_migrations(rt);
        thread::sleep(window);
        if total_migrations(rt) == before {
            return true;
        }
    }
    false
}

/// Records, from a plain thread, every core each partition is seen on.
fn watch(parts: Vec<Partition>) -> (Arc<AtomicBool>, thread::JoinHandle<Vec<BTreeSet<usize>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let seen = Arc::new(Mutex::new(vec![BTreeSet::new(); parts.len()]));
    let t = thread::spawn(move || {
        let mut seen = seen.lock().unwrap().clone();
        while !stop2.load(Ordering::SeqCst) {
            for (i, p) in parts.iter().enumerate() {
                seen[i].insert(p.core());
            }
            thread::sleep(Duration::from_millis(1));
        }
        seen
    });
    (stop, t)
}

/// Four CPU-bound partitions born on core 0 of two: the balancer moves two
/// of them to core 1, then nothing moves any more.
#[test]
fn four_hogs_on_one_core_end_two_and_two() {
    with_timeout(T, || {
        let rt = balanced_rt(2, None);
        let stop = Arc::new(AtomicBool::new(false));
        let parts: Vec<Partition> = (0..4)
            .map(|i| make(&rt, &format!("p{i}"), Placement::Core(0), Some(false)))
            .collect();
        for p in &parts {
            assert_eq!(p.core(), 0);
            hog(p, &stop);
        }
        wait_until(SETTLE, "the balancer to spread p0..p3 two and two", || {
            spread(&parts) == BTreeMap::from([(0, 2), (1, 2)])
        });
        // Let the moves be counted, then check that the spread holds.
        wait_until(SETTLE, "the moves to be counted", || {
            total_migrations(&rt) >= 2
        });
        let quiet = wait_for_quiet(&rt, Duration::from_millis(600), 2);
        let placed = spread(&parts);
        let moves = total_migrations(&rt);
        stop.store(true, Ordering::Relaxed);
        assert!(
            quiet,
            "the balancer kept moving partitions after 2:2 ({moves} migrations, {placed:?})"
        );
        assert_eq!(
            placed,
            BTreeMap::from([(0, 2), (1, 2)]),
            "the spread did not hold"
        );
        assert!(
            moves <= 4,
            "{moves} migrations to turn 4:0 into 2:2 (ping-pong?)"
        );
        // Roots never move.
        for pm in rt.metrics().partitions.iter().filter(|p| p.name.is_none()) {
            assert_eq!(pm.migrations, 0, "root partition {} moved", pm.id);
        }
    })
}

/// Three CPU-bound partitions on core 0 of two: one moves, and 2:1 then
/// stays put (moving another would only give 1:2).
#[test]
fn three_hogs_end_two_and_one_and_stay() {
    with_timeout(T, || {
        let rt = balanced_rt(2, None);
        let stop = Arc::new(AtomicBool::new(false));
        let parts: Vec<Partition> = (0..3)
            .map(|i| make(&rt, &format!("q{i}"), Placement::Core(0), Some(false)))
            .collect();
        for p in &parts {
            hog(p, &stop);
        }
        wait_until(SETTLE, "the balancer to move one of three hogs", || {
            spread(&parts) == BTreeMap::from([(0, 2), (1, 1)])
        });
        wait_until(SETTLE, "the move to be counted", || {
            total_migrations(&rt) >= 1
        });
        let quiet = wait_for_quiet(&rt, Duration::from_millis(600), 2);
        let placed = spread(&parts);
        let moves = total_migrations(&rt);
        stop.store(true, Ordering::Relaxed);
        assert!(
            quiet,
            "the balancer kept moving at 2:1 ({moves} migrations, {placed:?})"
        );
        assert_eq!(placed, BTreeMap::from([(0, 2), (1, 1)]), "2:1 did not hold");
        assert_eq!(moves, 1, "3:0 to 2:1 takes one move");
    })
}

/// With rebalancing on, pinned partitions (`Core` placement, `pinned(true)`)
/// and partitions on a reserved core never move, and nothing is moved onto
/// the reserved core; a migratable partition beside them is moved away.
#[test]
fn pinned_and_reserved_partitions_never_move() {
    with_timeout(T, || {
        let rt = balanced_rt(3, Some("r")); // core 2 is reserved
        assert_eq!(rt.metrics().cores[2].reserved_for.as_deref(), Some("r"));
        let stop = Arc::new(AtomicBool::new(false));
        let pinned = vec![
            make(&rt, "core-placed-a", Placement::Core(0), None),
            make(&rt, "core-placed-b", Placement::Core(0), None),
            make(&rt, "pinned-true", Placement::Local, Some(true)),
            make(&rt, "pinned-core", Placement::Core(0), Some(true)),
        ];
        let reserved = vec![
            make(&rt, "res-a", Placement::Reserved("r".into()), None),
            make(&rt, "res-b", Placement::Reserved("r".into()), None),
            make(&rt, "res-c", Placement::Reserved("r".into()), None),
        ];
        let free = make(&rt, "free", Placement::Core(0), Some(false));
        for p in pinned.iter().chain(&reserved).chain([&free]) {
            hog(p, &stop);
        }
        let mut all = pinned.clone();
        all.extend(reserved.iter().cloned());
        all.push(free.clone());
        let (stop_watch, watcher) = watch(all);

        // The balancer works here: the only migratable hog leaves core 0.
        wait_until(SETTLE, "the balancer to move `free` off core 0", || {
            free.core() == 1
        });
        thread::sleep(Duration::from_millis(500));
        stop_watch.store(true, Ordering::SeqCst);
        let seen = watcher.join().expect("watcher");
        stop.store(true, Ordering::Relaxed);

        for (i, p) in pinned.iter().enumerate() {
            assert_eq!(seen[i], BTreeSet::from([0]), "{:?} moved", p.name());
            assert_eq!(p.metrics().migrations, 0, "{:?} counted a move", p.name());
        }
        for (j, p) in reserved.iter().enumerate() {
            let i = pinned.len() + j;
            assert_eq!(
                seen[i],
                BTreeSet::from([2]),
                "{:?} left the reserved core",
                p.name()
            );
            assert_eq!(p.metrics().migrations, 0, "{:?} counted a move", p.name());
        }
        let free_seen = &seen[seen.len() - 1];
        assert!(
            !free_seen.contains(&2),
            "`free` was moved onto the reserved core: {free_seen:?}"
        );
        assert_eq!(free.core(), 1);
        // Nothing but the reservation's partitions (and the root) is on
        // the reserved core.
        let reserved_ids: BTreeSet<u64> = reserved.iter().map(|p| p.id()).chain([2]).collect();
        let on_reserved: BTreeSet<u64> = rt
            .metrics()
            .partitions
            .iter()
            .filter(|p| p.core == 2)
            .map(|p| p.id)
            .collect();
        assert_eq!(on_reserved, reserved_ids);
    })
}

/// Without rebalancing (the default, or `rebalance(None)`), four hogs on
/// core 0 stay there.
#[test]
fn without_rebalance_nothing_moves() {
    with_timeout(T, || {
        for explicit in [false, true] {
            let mut b = Runtime::builder().cores(2).pin_cores(false);
            if explicit {
                b = b.rebalance(None);
            }
            let rt = b.build().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let parts: Vec<Partition> = (0..4)
                .map(|i| make(&rt, &format!("n{i}"), Placement::Core(0), Some(false)))
                .collect();
            for p in &parts {
                hog(p, &stop);
            }
            let (stop_watch, watcher) = watch(parts.clone());
            thread::sleep(Duration::from_millis(400));
            stop_watch.store(true, Ordering::SeqCst);
            let seen = watcher.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            for (p, seen) in parts.iter().zip(seen) {
                assert_eq!(
                    seen,
                    BTreeSet::from([0]),
                    "{:?} moved (explicit None: {explicit})",
                    p.name()
                );
            }
            assert_eq!(total_migrations(&rt), 0);
        }
    })
}

/// A zero interval is refused; a positive one builds.
#[test]
fn rebalance_interval_must_be_positive() {
    with_timeout(T, || {
        let e = Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .rebalance(Some(Duration::ZERO))
            .build()
            .expect_err("rebalance(Some(0))");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!e.to_string().is_empty());
        let rt = balanced_rt(1, None);
        // One core: nothing to balance, and the runtime works.
        assert_eq!(rt.block_on(async { 3 }), 3);
        drop(rt);
    })
}
