//! Bad input gets `ErrorKind::InvalidInput` with a message naming the
//! problem — never a panic or a hang — and the runtime stays usable.

mod common;

use std::fmt::Debug;
use std::io::{self, ErrorKind};
use std::time::Duration;

use common::{rt, with_timeout};
use fairloop::partition::{self, Partition, PartitionSpec, Placement};
use fairloop::{core_id, spawn, Runtime};

const T: u64 = 20;

/// Asserts `r` is an InvalidInput error with a non-empty message that
/// contains every string in `mentions`; returns the message.
#[track_caller]
fn invalid<V: Debug>(what: &str, r: io::Result<V>, mentions: &[&str]) -> String {
    let e = match r {
        Ok(v) => panic!("{what}: expected InvalidInput, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
    let msg = e.to_string();
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    for m in mentions {
        assert!(
            msg.contains(m),
            "{what}: message {msg:?} does not mention {m:?}"
        );
    }
    msg
}

/// The runtime still spawns and joins on every core, and inside partitions.
#[track_caller]
fn still_usable(rt: &Runtime) {
    for core in 0..rt.cores() {
        let h = rt.spawn_on(core, async { core_id() });
        let r = futures_lite::future::block_on(h);
        // A reserved core refuses root tasks; every other one runs them.
        let reserved = rt.metrics().cores[core].reserved_for.is_some();
        if !reserved {
            assert_eq!(r.expect("task on a healthy core"), core);
        }
    }
    let v = rt.block_on(async {
        let a = spawn(async { 20 }).await.unwrap();
        let b = partition::spawn(PartitionSpec::anonymous(), async { 22 })
            .await
            .unwrap();
        a + b
    });
    assert_eq!(v, 42);
}

fn builder() -> fairloop::Builder {
    Runtime::builder().pin_cores(false)
}

#[test]
fn bad_core_counts() {
    with_timeout(T, || {
        invalid("cores(0)", builder().cores(0).build(), &["0"]);
        invalid("cores(1025)", builder().cores(1025).build(), &["1025"]);
        invalid(
            "cores(usize::MAX)",
            builder().cores(usize::MAX).build(),
            &[],
        );
        // The limits themselves are fine.
        let rt = builder().cores(1).build().unwrap();
        still_usable(&rt);
        assert_eq!(fairloop::MAX_CORES, 1024);
    })
}

#[test]
fn bad_reservations() {
    with_timeout(T, || {
        invalid(
            "reserving every core",
            builder()
                .cores(2)
                .reserve_core("a")
                .reserve_core("b")
                .build(),
            &[],
        );
        invalid(
            "reserving more cores than exist",
            builder()
                .cores(2)
                .reserve_core("a")
                .reserve_core("b")
                .reserve_core("c")
                .build(),
            &[],
        );
        invalid(
            "reserving the only core",
            builder().cores(1).reserve_core("a").build(),
            &[],
        );
        invalid(
            "duplicate reservation",
            builder()
                .cores(4)
                .reserve_core("dup")
                .reserve_core("dup")
                .build(),
            &["dup"],
        );
        invalid(
            "default placement on an unknown reservation",
            builder()
                .cores(2)
                .placement(Placement::Reserved("nope".into()))
                .build(),
            &["nope"],
        );
        invalid(
            "default placement on a missing core",
            builder().cores(2).placement(Placement::Core(99)).build(),
            &["99"],
        );
        // One reservation on two cores is fine.
        let rt = builder().cores(2).reserve_core("a").build().unwrap();
        still_usable(&rt);
    })
}

#[test]
fn duplicate_partition_name() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let first = Partition::builder().name("dup").build().unwrap();
            invalid(
                "duplicate partition name",
                Partition::builder().name("dup").build(),
                &["dup"],
            );
            // Also when the clash is with a partition created by name.
            drop(partition::spawn("by-name", async {}));
            invalid(
                "duplicate of a partition made by partition::spawn",
                Partition::builder().name("by-name").build(),
                &["by-name"],
            );
            // partition::spawn with a builder reports it through the handle.
            let err = partition::spawn(Partition::builder().name("dup"), async { 1 })
                .await
                .unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
            assert!(err.to_string().contains("dup"), "{err}");
            // The original is intact.
            assert_eq!(partition::get("dup").unwrap().id(), first.id());
            assert_eq!(
                partition::spawn("dup", async { partition::current().id() })
                    .await
                    .unwrap(),
                first.id()
            );
        });
        still_usable(&rt);
    })
}

#[test]
fn bad_shares() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            invalid("shares(0)", Partition::builder().shares(0).build(), &[]);
            invalid(
                "shares(10_001)",
                Partition::builder().shares(10_001).build(),
                &[],
            );
            // The bounds themselves are fine.
            assert_eq!(Partition::builder().shares(1).build().unwrap().shares(), 1);
            let p = Partition::builder().shares(10_000).build().unwrap();
            assert_eq!(p.shares(), 10_000);

            invalid("set_shares(0)", p.set_shares(0), &[]);
            invalid("set_shares(10_001)", p.set_shares(10_001), &[]);
            invalid("set_shares(u32::MAX)", p.set_shares(u32::MAX), &[]);
            assert_eq!(p.shares(), 10_000, "a rejected set_shares changed shares");
            assert_eq!(p.spawn(async { 5 }).await.unwrap(), 5);
            // A builder error through partition::spawn fails the handle.
            let err = partition::spawn(Partition::builder().shares(0), async {})
                .await
                .unwrap_err();
            assert!(err.is_cancelled());
            assert!(!err.to_string().is_empty());
        });
        still_usable(&rt);
    })
}

#[test]
fn bad_placements() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            invalid(
                "Placement::Core(99) on 2 cores",
                Partition::builder().placement(Placement::Core(99)).build(),
                &["99"],
            );
            invalid(
                "Placement::Core(2) on 2 cores",
                Partition::builder().placement(Placement::Core(2)).build(),
                &["2"],
            );
            invalid(
                "Placement::Reserved(\"nope\")",
                Partition::builder()
                    .placement(Placement::Reserved("nope".into()))
                    .build(),
                &["nope"],
            );
            // A failed build leaves the name free.
            invalid(
                "named partition on a missing core",
                Partition::builder()
                    .name("misplaced")
                    .placement(Placement::Core(99))
                    .build(),
                &[],
            );
            assert!(partition::get("misplaced").is_none());
            let ok = Partition::builder().name("misplaced").build().unwrap();
            assert_eq!(ok.spawn(async { 1 }).await.unwrap(), 1);
        });
        still_usable(&rt);

        // Core(i) where i is reserved.
        let rt = builder().cores(3).reserve_core("hc").build().unwrap();
        let reserved = rt
            .metrics()
            .cores
            .iter()
            .position(|c| c.reserved_for.as_deref() == Some("hc"))
            .expect("a core is reserved for hc");
        assert_eq!(reserved, 2, "reserve_core takes the highest free core");
        rt.block_on(async move {
            invalid(
                "Placement::Core(reserved)",
                Partition::builder()
                    .placement(Placement::Core(reserved))
                    .build(),
                &[],
            );
            let hc = Partition::builder()
                .placement(Placement::Reserved("hc".into()))
                .build()
                .unwrap();
            assert_eq!(hc.spawn(async { core_id() }).await.unwrap(), reserved);
        });
        still_usable(&rt);
    })
}

#[test]
fn bad_migrations() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let root = partition::current();
            invalid("migrate the root partition", root.migrate_to(1), &[]);
            let pinned = Partition::builder()
                .placement(Placement::Core(0))
                .build()
                .unwrap();
            invalid("migrate a Core-placed partition", pinned.migrate_to(1), &[]);
            let explicitly = Partition::builder().pinned(true).build().unwrap();
            invalid(
                "migrate a pinned(true) partition",
                explicitly.migrate_to(1),
                &[],
            );
            let free = Partition::builder().name("free").build().unwrap();
            invalid("migrate_to(99)", free.migrate_to(99), &["99"]);
            invalid("migrate_to(2) on 2 cores", free.migrate_to(2), &[]);
            // A valid request is not InvalidInput (it may be under way, or
            // unsupported in this release).
            if let Err(e) = free.migrate_to(1) {
                assert_ne!(
                    e.kind(),
                    ErrorKind::InvalidInput,
                    "valid migration refused: {e}"
                );
            }
            // Every partition still runs.
            for p in [&root, &pinned, &explicitly, &free] {
                assert_eq!(p.spawn(async { 1 }).await.unwrap(), 1);
            }
        });
        still_usable(&rt);

        let rt = builder().cores(2).reserve_core("r").build().unwrap();
        rt.block_on(async {
            let free = Partition::builder().build().unwrap();
            invalid("migrate onto a reserved core", free.migrate_to(1), &[]);
            let r = Partition::builder()
                .placement(Placement::Reserved("r".into()))
                .build()
                .unwrap();
            invalid("migrate a reserved partition", r.migrate_to(0), &[]);
        });
        still_usable(&rt);
    })
}

#[test]
fn partition_build_outside_a_runtime() {
    with_timeout(T, || {
        // Not a panic: an error.
        let r = std::panic::catch_unwind(|| Partition::builder().name("x").build())
            .expect("Partition::builder().build() outside a runtime must not panic");
        invalid("build outside a runtime", r, &[]);
        // Also beside a live runtime, from a thread it does not run.
        let rt = rt(1);
        invalid("build beside a runtime", Partition::builder().build(), &[]);
        still_usable(&rt);
    })
}

#[test]
fn other_builder_settings() {
    with_timeout(T, || {
        invalid(
            "task_quota(0)",
            builder().cores(1).task_quota(Duration::ZERO).build(),
            &[],
        );
        invalid(
            "rebalance(Some(0))",
            builder().cores(2).rebalance(Some(Duration::ZERO)).build(),
            &[],
        );
        let rt = builder()
            .cores(2)
            .rebalance(Some(Duration::from_millis(50)))
            .build()
            .expect("a runtime with a balancer");
        still_usable(&rt);
        let rt = builder()
            .cores(2)
            .fairness(fairloop::Fairness::RoundRobin)
            .task_quota(Duration::from_micros(100))
            .placement(Placement::RoundRobin)
            .build()
            .unwrap();
        still_usable(&rt);
    })
}
