//! Metrics that do not cost O(partitions): the busiest partitions from the
//! cores' leaderboards, one partition by id, the cores alone.

mod common;

use std::time::{Duration, Instant};

use common::{rt, wait_until, with_timeout};
use fairloop::partition::{self, PartitionSpec};

/// 200 tenant partitions on two cores, partition `i` burning `i` units of
/// CPU: `top_partitions(5)` names the same five, in the same order, as
/// sorting every partition's metrics by busy time (the whole list, which
/// costs O(partitions)).
#[test]
fn top_partitions_are_the_busiest_by_busy_time() {
    with_timeout(60, || {
        let rt = rt(2);
        let handle = rt.handle();
        rt.block_on(async {
            let mut done = Vec::new();
            for i in 0..200u32 {
                let core = i as usize % 2;
                let spec = partition::Partition::builder()
                    .name(&format!("tenant-{i}"))
                    .placement(fairloop::partition::Placement::Core(core));
                done.push(partition::spawn(spec, async move {
                    let until = Instant::now() + Duration::from_micros(20 * u64::from(i));
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }));
            }
            for d in done {
                d.await.expect("tenant");
            }
        });
        // Every tenant has finished; the boards catch up within 10 ms of a
        // core's last turn (at once when it goes idle). The full list is
        // read again each time: the root partition's last poll may still
        // be charged after `block_on` returned.
        let busiest = || -> Vec<u64> {
            let mut all = rt.metrics().partitions;
            all.sort_by(|a, b| b.busy.cmp(&a.busy).then(a.id.cmp(&b.id)));
            all.iter().take(5).map(|m| m.id).collect()
        };
        let top = || -> Vec<u64> { handle.top_partitions(5).iter().map(|m| m.id).collect() };
        wait_until(
            Duration::from_secs(10),
            "the top 5 to be the 5 busiest",
            || top() == busiest(),
        );
    });
}

/// A partition can be found by id while it lives, and not after; the cores'
/// metrics come without the partitions'.
#[test]
fn partition_by_id_and_core_metrics() {
    with_timeout(30, || {
        let rt = rt(2);
        let handle = rt.handle();
        let (id, named_id) = rt.block_on(async {
            let named = partition::Partition::builder()
                .name("kept")
                .build()
                .unwrap();
            let id = partition::spawn(PartitionSpec::anonymous(), async {
                partition::current().id()
            })
            .await
            .unwrap();
            (id, named.id())
        });
        assert_eq!(
            handle.partition(named_id).and_then(|p| p.name()),
            Some("kept".into())
        );
        wait_until(
            Duration::from_secs(10),
            "the anonymous partition to go",
            || handle.partition(id).is_none(),
        );
        let cores = handle.core_metrics();
        assert_eq!(cores.len(), 2);
        assert_eq!(cores.iter().map(|c| c.core).collect::<Vec<_>>(), [0, 1]);
    });
}
