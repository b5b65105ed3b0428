//! The public API contract of `../shared/API.md`, spelled out: this file
//! compiles only while every name and signature there exists, and checks
//! the auto traits users rely on.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::with_timeout;
use fairloop::metrics::{CoreMetrics, PartitionMetrics, RuntimeMetrics};
use fairloop::partition::{self, Partition, PartitionBuilder, PartitionSpec, Placement};
use fairloop::time::{Elapsed, Interval, Sleep};
use fairloop::{Builder, Fairness, Handle, JoinError, JoinHandle, Runtime};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_clone<T: Clone>() {}

#[test]
fn auto_traits() {
    assert_send_sync::<Handle>();
    assert_clone::<Handle>();
    assert_send_sync::<Partition>();
    assert_clone::<Partition>();
    assert_send_sync::<JoinHandle<u32>>();
    assert_send_sync::<JoinError>();
    assert_send_sync::<Sleep>();
    assert_send_sync::<Runtime>();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<JoinError>();
    is_error::<Elapsed>();
}

/// Every builder method of the contract, with its types.
#[allow(dead_code)]
fn builder_signatures() -> io::Result<Runtime> {
    let b: Builder = Runtime::builder();
    let b: Builder = b.cores(2);
    let b: Builder = b.pin_cores(false);
    let b: Builder = b.reserve_core("healthcheck");
    let b: Builder = b.placement(Placement::Local);
    let b: Builder = b.fairness(Fairness::Shares).fairness(Fairness::RoundRobin);
    let b: Builder = b.task_quota(Duration::from_micros(500));
    let b: Builder = b.rebalance(None::<Duration>);
    b.build()
}

#[test]
fn the_contract_compiles_and_runs() {
    with_timeout(30, || {
        let rt: Runtime = Runtime::builder()
            .cores(2)
            .pin_cores(false)
            .build()
            .expect("runtime");
        let cores: usize = rt.cores();
        assert_eq!(cores, 2);
        let h: Handle = rt.handle();
        let j: JoinHandle<u8> = h.spawn(async { 1u8 });
        let j2: JoinHandle<u8> = h.spawn_on(1, async { 2u8 });
        let j3: JoinHandle<u8> = rt.spawn(async { 3u8 });
        let j4: JoinHandle<u8> = rt.spawn_on(0, async { 4u8 });
        let shards: Vec<usize> = rt.run_on_shards(|core| async move { core });
        assert_eq!(shards, vec![0, 1]);
        let sum: u8 = rt.block_on(async move {
            let mut s = 0;
            for j in [j, j2, j3, j4] {
                let r: Result<u8, JoinError> = j.await;
                s += r.expect("no panic");
            }
            // tasks
            let t: JoinHandle<()> = fairloop::spawn(async {});
            assert!(!t.is_finished() || t.is_finished());
            t.abort();
            // A !Send future; its output is Send, so the handle may travel.
            let local: JoinHandle<u8> = fairloop::spawn_local(async {
                let rc = std::rc::Rc::new(5u8);
                fairloop::yield_now().await;
                *rc
            });
            s += local.await.expect("local");
            let () = fairloop::yield_now().await;
            let _core: usize = fairloop::core_id();
            let b: JoinHandle<u8> = fairloop::task::spawn_blocking(|| 6u8);
            s += b.await.expect("blocking");
            fairloop::spawn(async {}).detach();
            let e = fairloop::spawn(async { panic!("on purpose") })
                .await
                .expect_err("panicked");
            let (_p, _c): (bool, bool) = (e.is_panic(), e.is_cancelled());

            // partitions
            let pb: PartitionBuilder = Partition::builder()
                .name("api-contract")
                .shares(200)
                .latency(Duration::from_millis(1))
                .placement(Placement::Core(1))
                .pinned(true);
            let p: Partition = pb.build().expect("partition");
            let (_id, _name, _core, _shares): (u64, Option<String>, usize, u32) =
                (p.id(), p.name(), p.core(), p.shares());
            let _: io::Result<()> = p.set_shares(300);
            let _: io::Result<()> = p.migrate_to(0);
            let _: PartitionMetrics = p.metrics();
            s += p.spawn(async { 7u8 }).await.expect("in partition");
            let _: Partition = partition::current();
            let _: Option<Partition> = partition::get("api-contract");
            let by_name: JoinHandle<u8> = partition::spawn("named-contract", async { 8u8 });
            let by_string: JoinHandle<u8> =
                partition::spawn(String::from("named-contract"), async { 0u8 });
            let by_builder: JoinHandle<u8> =
                partition::spawn(Partition::builder().name("built-contract"), async { 0u8 });
            let by_handle: JoinHandle<u8> = partition::spawn(p.clone(), async { 0u8 });
            let anon: JoinHandle<u8> = partition::spawn(PartitionSpec::anonymous(), async { 0u8 });
            for j in [by_name, by_string, by_builder, by_handle, anon] {
                s += j.await.expect("spawned");
            }
            for placement in [
                Placement::Local,
                Placement::Core(0),
                Placement::RoundRobin,
                Placement::LeastLoaded,
                Placement::EveryCore,
            ] {
                let _ = Partition::builder().placement(placement).build();
            }
            let _ = Placement::Reserved("nope".into());

            // sharded partitions
            let sharded: Partition = Partition::builder()
                .name("sharded-contract")
                .placement(Placement::EveryCore)
                .build()
                .expect("sharded partition");
            let cores: Vec<usize> = sharded.cores();
            assert_eq!(cores, vec![0, 1]);
            let shard: Option<Partition> = sharded.shard(1);
            assert_eq!(shard.map(|s| s.core()), Some(1));
            s += sharded.spawn(async { 0u8 }).await.expect("in a shard");
            assert!(sharded.migrate_to(1).is_err());
            let _: PartitionMetrics = sharded.metrics();

            // time
            let sl: Sleep = fairloop::time::sleep(Duration::from_millis(1));
            sl.await;
            fairloop::time::sleep_until(Instant::now()).await;
            let t: Result<u8, Elapsed> =
                fairloop::time::timeout(Duration::from_secs(5), async { 9u8 }).await;
            s += t.expect("in time");
            let mut iv: Interval = fairloop::time::interval(Duration::from_millis(1));
            let _: Instant = iv.tick().await;
            s
        });
        assert_eq!(sum, 45);
        let m: RuntimeMetrics = rt.metrics();
        let c: &CoreMetrics = &m.cores[0];
        let _ = (
            c.core,
            c.pinned,
            c.busy,
            c.polls,
            c.parks,
            c.remote_wakes,
            &c.reserved_for,
        );
        let p: &PartitionMetrics = &m.partitions[0];
        let _ = (
            p.id,
            &p.name,
            p.core,
            p.shares,
            p.tasks,
            p.queued,
            p.polls,
            p.busy,
            p.sched_delay_p50,
            p.sched_delay_p99,
            p.sched_delay_max,
            p.long_polls,
            p.migrations,
        );
        rt.shutdown_timeout(Duration::from_secs(5));
    })
}

/// The net names of the contract.
#[allow(dead_code)]
async fn net_signatures() -> io::Result<()> {
    use fairloop::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
    let l: TcpListener = TcpListener::bind("127.0.0.1:0")?;
    let _: TcpListener = TcpListener::bind_reuseport("127.0.0.1:0")?;
    let addr: std::net::SocketAddr = l.local_addr()?;
    let s: TcpStream = TcpStream::connect(addr).await?;
    let (_s2, _peer): (TcpStream, std::net::SocketAddr) = l.accept().await?;
    s.set_nodelay(true)?;
    let _ = (s.peer_addr()?, s.local_addr()?);
    let u: UdpSocket = UdpSocket::bind("127.0.0.1:0")?;
    let _: usize = u.send_to(b"x", addr).await?;
    let mut buf = [0u8; 4];
    let (_n, _from): (usize, std::net::SocketAddr) = u.recv_from(&mut buf).await?;
    let _ = u.local_addr()?;
    let _: Option<UnixListener> = None;
    let _: Option<UnixStream> = None;
    Ok(())
}

/// The channel names of the contract.
#[allow(dead_code)]
async fn channel_signatures() {
    use fairloop::channel::{
        self, Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError,
    };
    let (tx, rx): (Sender<u32>, Receiver<u32>) = channel::bounded(4);
    let (_tx2, _rx2): (Sender<u32>, Receiver<u32>) = channel::unbounded();
    let _: Result<(), SendError<u32>> = tx.send(1).await;
    let _: Result<(), TrySendError<u32>> = tx.try_send(2);
    let _: Result<u32, RecvError> = rx.recv().await;
    let _: Result<u32, TryRecvError> = rx.try_recv();
    let _: (bool, bool) = (tx.close(), rx.close());
    let _: (usize, usize) = (tx.len(), rx.len());
    let _: (bool, bool) = (tx.is_closed(), rx.is_closed());
    assert_send_sync::<Sender<u32>>();
    assert_send_sync::<Receiver<u32>>();
    assert_clone::<Sender<u32>>();
    assert_clone::<Receiver<u32>>();
}
