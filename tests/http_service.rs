//! The `http_service` example as a test: `/health` keeps answering while
//! `/work` is saturated by concurrent clients, with separate ports and with
//! one shared port (connections routed by peeking at the request line), the
//! healthcheck on a reserved core or sharded beside `api`; `/metrics` lists
//! every `api` shard; and the program stops gracefully on SIGTERM.
//!
//! The service is the example's own code, included with `#[path]`. Bounds
//! are for correctness only: every probe must get `200 ok` within 5 s (the
//! latencies are printed, not asserted), and each test is bounded by
//! `with_timeout`.

#[path = "support/child.rs"]
mod child;
mod common;

#[path = "../examples/http_service.rs"]
#[allow(dead_code)]
mod http_service;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use child::{
    addr_after, assert_idle_closed, assert_refused, drive_ignored_test, exit_with_parent,
    exits_0_within, sigterm_until_stopped_accepting, wait_for,
};
use common::with_timeout;
use http_service::{
    connect, get, http_client, load, quantile, start, Config, HealthCore, Ports, SHUTDOWN_DEADLINE,
};

const T: u64 = 60;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts the service, floods `/work` while probing `/health`, and checks
/// that every probe was answered and that `/metrics` speaks Prometheus.
fn health_survives_flood(health_core: HealthCore, ports: Ports) {
    let svc = start(&Config {
        cores: 2,
        pin_cores: false,
        health_core,
        ports,
    })
    .expect("start the service");

    // Before the flood: each route answers.
    let mut c = connect(svc.api_addr, Duration::from_secs(5)).expect("connect to the api port");
    let (status, body) = get(&mut c, "/work").expect("GET /work");
    assert_eq!(status, 200, "/work: {body}");
    assert!(
        body.contains("partition api on core"),
        "/work ran outside api: {body}"
    );
    let mut c = connect(svc.health_addr, Duration::from_secs(5)).expect("connect for /health");
    let (status, body) = get(&mut c, "/health").expect("GET /health");
    assert_eq!(status, 200);
    assert!(
        body.contains("partition healthcheck"),
        "/health ran outside healthcheck: {body}"
    );

    let r = load(
        svc.api_addr,
        svc.health_addr,
        16,
        Duration::from_millis(1500),
        Duration::from_millis(10),
        Duration::from_secs(5),
    );
    println!(
        "{health_core:?}: /health {} probes, p50 {:?} p99 {:?} max {:?}; /work {} done, {} errors",
        r.health.len(),
        quantile(&r.health, 0.5),
        quantile(&r.health, 0.99),
        quantile(&r.health, 1.0),
        r.work_done,
        r.work_errors
    );
    assert!(
        r.health_failures.is_empty(),
        "{} /health probe(s) failed under the flood, e.g. {:?}",
        r.health_failures.len(),
        r.health_failures.first()
    );
    assert!(r.health.len() >= 10, "only {} probes ran", r.health.len());
    assert!(r.work_done > 0, "no /work request completed");

    let mut c = connect(svc.health_addr, Duration::from_secs(5)).expect("connect for /metrics");
    let (status, text) = get(&mut c, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE fairloop_core_busy_seconds_total counter"));
    assert!(text.contains("fairloop_core_polls_total{core=\"0\"}"));
    assert!(text.contains("# TYPE fairloop_core_ring_completions_total counter"));
    assert!(text.contains("fairloop_core_io_uring{core=\"0\"}"));
    // One row per shard of `api` (every unreserved core), and the
    // healthcheck's.
    for core in svc.api.cores() {
        let series = format!("fairloop_partition_polls_total{{partition=\"api\",core=\"{core}\"}}");
        assert!(
            text.lines().any(|l| l.starts_with(&series)),
            "no {series} in /metrics"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("fairloop_partition_polls_total{partition=\"healthcheck\"")),
        "no polls series for the healthcheck in /metrics"
    );
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line:?}");
    }
    // Every /health answered while flooded really ran in a healthcheck
    // partition: its polls grew.
    let hc_polls = svc.health.metrics().polls;
    assert!(
        hc_polls as usize >= r.health.len(),
        "healthcheck polls {hc_polls}"
    );
    // The sharded api's figures are the sums of its shards'.
    let m = svc.metrics();
    let api = svc.api.metrics();
    let shards = m.shards(svc.api.id());
    assert_eq!(shards.len(), svc.api.cores().len());
    assert!(api.polls >= shards.iter().map(|s| s.polls).sum::<u64>());
    assert!(api.polls > 0);
    // A graceful stop with no client left: nothing to cancel.
    let report = svc.shutdown(Duration::from_secs(10));
    assert!(report.drained && report.cancelled == 0, "{report:?}");
}

#[test]
fn separate_ports_health_on_same_cores() {
    with_timeout(T, || {
        health_survives_flood(
            HealthCore::Same,
            Ports::Separate {
                api: any_port(),
                health: any_port(),
            },
        )
    });
}

#[test]
fn separate_ports_health_on_reserved_core() {
    with_timeout(T, || {
        health_survives_flood(
            HealthCore::Reserved,
            Ports::Separate {
                api: any_port(),
                health: any_port(),
            },
        )
    });
}

#[test]
fn shared_port_health_on_same_cores() {
    with_timeout(T, || {
        health_survives_flood(HealthCore::Same, Ports::Shared(any_port()))
    });
}

#[test]
fn shared_port_health_on_reserved_core() {
    with_timeout(T, || {
        health_survives_flood(HealthCore::Reserved, Ports::Shared(any_port()))
    });
}

/// With a shared port, a keep-alive connection is re-routed per request:
/// `/health`, `/work`, `/health` on one connection run in the healthcheck,
/// api and healthcheck partitions in turn; a request line split across two
/// segments is routed once it is complete.
#[test]
fn shared_port_routes_each_request() {
    with_timeout(T, || {
        use std::io::{Read, Write};
        let svc = start(&Config {
            cores: 2,
            pin_cores: false,
            health_core: HealthCore::Same,
            ports: Ports::Shared(any_port()),
        })
        .expect("start the service");
        let mut c = connect(svc.api_addr, Duration::from_secs(5)).expect("connect");
        for (path, partition) in [
            ("/health", "partition healthcheck on core"),
            ("/work", "partition api on core"),
            ("/health", "partition healthcheck on core"),
            ("/nope", "404"),
        ] {
            let (status, body) = get(&mut c, path).expect(path);
            if partition == "404" {
                assert_eq!(status, 404);
            } else {
                assert_eq!(status, 200, "{path}: {body}");
                assert!(body.contains(partition), "{path} answered by {body:?}");
            }
        }

        let mut c = connect(svc.api_addr, Duration::from_secs(5)).expect("connect");
        c.write_all(b"GET /hea").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(b"lth HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut head = String::new();
        c.read_to_string(&mut head).expect("read the response");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("partition healthcheck on core"), "{head}");
    });
}

/// Set in the environment of the child process that
/// [`sigterm_finishes_the_request_in_flight_then_exits_0`] starts.
const CHILD: &str = "FAIRLOOP_HTTP_SERVICE_SIGTERM_CHILD";

/// The slow request in flight at the SIGTERM: long enough to still be in
/// flight when the parent has checked that new connections are refused.
const SLOW_MS: u64 = 1500;

/// Not a test of its own: the child process of
/// [`sigterm_finishes_the_request_in_flight_then_exits_0`], which runs this
/// binary again with only this test and `CHILD` set. It runs the example's
/// program on free ports until SIGTERM.
#[test]
#[ignore = "the child process of sigterm_finishes_the_request_in_flight_then_exits_0"]
fn sigterm_child() {
    if std::env::var_os(CHILD).is_none() {
        println!("sigterm_child runs only as the child of sigterm_finishes_the_request_in_flight");
        return;
    }
    exit_with_parent("http_service");
    let args = [
        "--cores",
        "3",
        "--no-pin",
        "--api",
        "127.0.0.1:0",
        "--health",
        "127.0.0.1:0",
    ];
    http_service::run(args.iter().map(|a| a.to_string()).collect()).expect("the example's run");
}

/// SIGTERM: the service stops accepting (new connections are refused),
/// answers the request in flight in full, closes an idle keep-alive
/// connection, and the program exits with status 0.
#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    with_timeout(T, || {
        drive_ignored_test("sigterm_child", (CHILD, "1"), drive);
    });
}

fn drive(child: &mut Child, lines: &Receiver<String>) {
    let listening = wait_for(lines, "/work on ");
    let (api, health) = (
        addr_after(&listening, "/work on "),
        addr_after(&listening, "/metrics on "),
    );

    // An idle keep-alive connection, and a slow request in flight.
    let mut idle = connect(api, Duration::from_secs(30)).expect("connect");
    let (status, body) = get(&mut idle, "/work").expect("GET /work");
    assert_eq!(status, 200, "{body}");
    let mut slow = connect(api, Duration::from_secs(30)).expect("connect");
    write!(
        slow,
        "GET /slow/{SLOW_MS} HTTP/1.1\r\nHost: fairloop\r\n\r\n"
    )
    .expect("send the slow request");
    wait_for(lines, &format!("GET /slow/{SLOW_MS} started"));

    sigterm_until_stopped_accepting(child, lines);
    assert_refused(api);
    assert_refused(health);
    // The idle connection is closed without a response.
    assert_idle_closed(&mut idle);
    // The request in flight is answered in full, then the connection ends.
    let (code, body) = http_client::read_response(&mut slow).expect("the slow response");
    assert_eq!(code, 200, "{body:?}");
    assert_eq!(body, format!("slept {SLOW_MS} ms\n"));
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");

    exits_0_within(child, SHUTDOWN_DEADLINE + Duration::from_secs(20));
    let stopped = wait_for(lines, "stopped: ");
    assert!(stopped.contains(" 0 cancelled"), "{stopped}");
}

/// `/metrics` with many tenants: 20 busy partitions and 200 idle ones. The
/// export names the 20 busiest (as sorting every partition's metrics by
/// busy time says), each once, and one `partition="other"` row whose polls
/// and busy time are the cores' totals less the listed ones': a scrape
/// grows with the cap, not with the number of partitions.
#[test]
fn metrics_list_the_busiest_partitions_and_sum_the_rest() {
    use fairloop::partition::{self, Partition};
    use http_service::{metrics_rows, prometheus, METRICS_TOP_PARTITIONS};
    use std::time::Instant;

    with_timeout(T, || {
        let rt = common::rt(1);
        let handle = rt.handle();
        rt.block_on(async {
            let mut done = Vec::new();
            for i in 0..220 {
                let busy = i < 20;
                let name = if busy {
                    format!("busy-{i}")
                } else {
                    format!("idle-{i}")
                };
                done.push(partition::spawn(
                    Partition::builder().name(&name),
                    async move {
                        // A busy tenant: 4 ms of CPU in 40 polls; an idle
                        // one: a single poll that does nothing.
                        for _ in 0..if busy { 40 } else { 0 } {
                            let until = Instant::now() + Duration::from_micros(100);
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                            fairloop::yield_now().await;
                        }
                    },
                ));
            }
            for d in done {
                d.await.expect("tenant");
            }
        });
        // The busiest by the whole list, which costs O(partitions). Busy
        // time is the polls' wall-clock time: on a loaded machine a poll
        // the OS preempts counts long, and an idle tenant may rank among
        // the busy ones. The boards catch up within 10 ms of the core's
        // last turn.
        let busiest = || -> Vec<u64> {
            let mut all = rt.metrics().partitions;
            all.sort_by(|a, b| b.busy.cmp(&a.busy).then(a.id.cmp(&b.id)));
            all.iter()
                .take(METRICS_TOP_PARTITIONS)
                .map(|m| m.id)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let (cores, rows) = loop {
            let rows = metrics_rows(&handle, METRICS_TOP_PARTITIONS);
            let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
            if ids == busiest() {
                break (handle.core_metrics(), rows);
            }
            assert!(
                Instant::now() < deadline,
                "the rows are not the 20 busiest: {:?}",
                rows.iter()
                    .map(|r| (r.name.clone(), r.busy))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(rows.len(), METRICS_TOP_PARTITIONS);
        let text = prometheus(&cores, &rows);
        let series = |name: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .collect()
        };
        let polls = series("fairloop_partition_polls_total");
        assert_eq!(polls.len(), METRICS_TOP_PARTITIONS + 1, "{polls:#?}");
        let mut names: Vec<&str> = polls
            .iter()
            .filter_map(|l| l.split("partition=\"").nth(1)?.split('"').next())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            polls.len(),
            "a partition listed twice: {polls:#?}"
        );
        let value =
            |line: &str| -> f64 { line.rsplit(' ').next().unwrap().parse().expect("a number") };
        let other = |name: &str| -> f64 {
            let lines = series(name);
            let others: Vec<&&str> = lines
                .iter()
                .filter(|l| l.contains("partition=\"other\""))
                .collect();
            assert_eq!(others.len(), 1, "{name}: {lines:#?}");
            value(others[0])
        };
        let core_polls: u64 = cores.iter().map(|c| c.polls).sum();
        let listed_polls: u64 = rows.iter().map(|r| r.polls).sum();
        let other_polls = other("fairloop_partition_polls_total");
        assert_eq!(other_polls as u64, core_polls - listed_polls);
        // The 200 idle tenants polled once each: at least 180 in "other".
        assert!(other_polls >= 180.0, "{other_polls} polls in other");
        let core_busy: Duration = cores.iter().map(|c| c.busy).sum();
        let listed_busy: Duration = rows.iter().map(|r| r.busy).sum();
        let other_busy = other("fairloop_partition_busy_seconds_total");
        assert!(
            (other_busy - (core_busy - listed_busy).as_secs_f64()).abs() < 1e-6,
            "{other_busy} s in other"
        );
        for name in [
            "fairloop_partition_busy_seconds_total",
            "fairloop_partition_shares",
            "fairloop_partition_sched_delay_max_seconds",
        ] {
            let n = series(name).len();
            assert!(n <= METRICS_TOP_PARTITIONS + 1, "{name}: {n} series");
        }
    });
}
