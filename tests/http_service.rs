//! The `http_service` example as a test: `/health` keeps answering while
//! `/work` is saturated by concurrent clients, with separate ports and with
//! one shared port (connections routed by peeking at the request line), the
//! healthcheck on the api cores or on a reserved core.
//!
//! The service is the example's own code, included with `#[path]`. Bounds
//! are for correctness only: every probe must get `200 ok` within 5 s (the
//! latencies are printed, not asserted), and each test is bounded by
//! `with_timeout`.

mod common;

#[path = "../examples/http_service.rs"]
#[allow(dead_code)]
mod http_service;

use std::net::SocketAddr;
use std::time::Duration;

use common::with_timeout;
use http_service::{connect, get, load, quantile, start, Config, HealthCore, Ports};

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
        body.contains("partition api-"),
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
    for name in ["api-0", "healthcheck"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("fairloop_partition_polls_total{")
                    && l.contains(&format!("partition=\"{name}"))),
            "no polls series for {name} in /metrics"
        );
    }
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line:?}");
    }
    // Every /health answered while flooded really ran in a healthcheck
    // partition: its polls grew.
    let m = svc.metrics();
    let hc_polls: u64 = m
        .partitions
        .iter()
        .filter(|p| {
            p.name
                .as_deref()
                .is_some_and(|n| n.starts_with("healthcheck"))
        })
        .map(|p| p.polls)
        .sum();
    assert!(
        hc_polls as usize >= r.health.len(),
        "healthcheck polls {hc_polls}"
    );
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
            ("/health", "healthcheck-"),
            ("/work", "api-"),
            ("/health", "healthcheck-"),
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
        assert!(head.contains("partition healthcheck-"), "{head}");
    });
}
