//! Name resolution (`fairloop::net::lookup_host`, and the host names every
//! `connect`, `bind` and `send_to` takes) stays off the core.
//!
//! IP literals resolve inline (also outside any runtime, where the blocking
//! pool is out of reach); a synchronous `bind` refuses a host name on a
//! core thread rather than stall it.
//!
//! The two tests that look names up run this test binary again in new
//! user, mount and network namespaces (`unshare -Urnm`), where the system
//! resolver is configured by the test: `/etc/hosts` names
//! `echo.fairloop.test`, `/etc/nsswitch.conf` says `hosts: files dns`, and
//! `/etc/resolv.conf` names 127.0.0.1 as the only name server, where the
//! test holds UDP and TCP sockets on port 53 that never answer. A lookup of
//! any other name then goes through the real `getaddrinfo` and hangs for
//! the resolver's timeout, with no network outside the namespace involved.
//! While three such lookups hang (`lookup_host`, `TcpStream::connect`,
//! `UdpSocket::send_to`), a latency partition on the same core ticks every
//! 10 ms and must stay on time.

mod common;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{panic_message, rt, with_timeout};
use fairloop::net::{lookup_host, TcpListener, TcpStream, UdpSocket};
use fairloop::partition::Partition;
use fairloop::time::{sleep_until, timeout};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const T: u64 = 30;

/// Set (to the test's name) in the child process that runs a test inside
/// the namespaces.
const CHILD: &str = "FAIRLOOP_DNS_TEST_CHILD";

/// The name `/etc/hosts` maps to 127.0.0.1 inside the namespaces.
const HOSTS_NAME: &str = "echo.fairloop.test";

/// A name in no hosts file: inside the namespaces, its lookup asks the
/// silent name server and hangs until the resolver gives up.
const SILENT_NAME: &str = "some.name.invalid";

/// The resolver's timeout per query inside the namespaces
/// (`options timeout:2 attempts:1`): a lookup of [`SILENT_NAME`] hangs at
/// least this long.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);

// ---- IP literals: inline, no pool, no runtime ------------------------------

/// Every form of socket address resolves at once, outside any runtime:
/// with no runtime there is no blocking pool (`spawn_blocking` would
/// panic), so these never went near it.
#[test]
fn ip_literals_resolve_inline_without_a_runtime() {
    use futures_lite::future::block_on;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

    let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    fn all(r: std::io::Result<impl Iterator<Item = SocketAddr>>) -> Vec<SocketAddr> {
        r.expect("an IP literal").collect()
    }
    assert_eq!(all(block_on(lookup_host("127.0.0.1:80"))), [v4]);
    assert_eq!(all(block_on(lookup_host("[::1]:80"))), [v6]);
    assert_eq!(all(block_on(lookup_host(String::from("[::1]:80")))), [v6]);
    assert_eq!(all(block_on(lookup_host(&&"127.0.0.1:80"))), [v4]);
    // as std reads it: an unbracketed IPv6 host before the last colon
    assert_eq!(all(block_on(lookup_host("::1:80"))), [v6]);
    assert_eq!(all(block_on(lookup_host(("127.0.0.1", 80)))), [v4]);
    assert_eq!(all(block_on(lookup_host((String::from("::1"), 80)))), [v6]);
    assert_eq!(
        all(block_on(lookup_host((IpAddr::V4(Ipv4Addr::LOCALHOST), 80)))),
        [v4]
    );
    assert_eq!(all(block_on(lookup_host((Ipv6Addr::LOCALHOST, 80)))), [v6]);
    assert_eq!(
        all(block_on(lookup_host(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            80
        )))),
        [v4]
    );
    assert_eq!(all(block_on(lookup_host(v6))), [v6]);
    assert_eq!(all(block_on(lookup_host(&[v4, v6][..]))), [v4, v6]);
    assert_eq!(all(block_on(lookup_host(&[][..]))), []);
}

/// A string that is neither an IP socket address nor "host:port" is an
/// `InvalidInput` error that quotes it and says what is accepted; no
/// lookup is tried (there is no runtime to try one on).
#[test]
fn malformed_addresses_are_refused_with_a_message_that_says_what_to_write() {
    use futures_lite::future::block_on;

    for (input, says) in [
        ("example.com", "write \"host:port\""),
        ("127.0.0.1", "write \"host:port\""),
        ("example.com:http", "the port \"http\" is not a number"),
        ("example.com:70000", "the port \"70000\" is not a number"),
    ] {
        let err = block_on(lookup_host(input)).expect_err(input);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{input}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(input) && msg.contains(says), "{input}: {msg}");
    }
}

/// Looking a host name up needs a runtime's blocking pool: outside one,
/// `lookup_host` panics with a message that says where to call it from,
/// before any lookup starts.
#[test]
fn a_host_name_lookup_outside_a_runtime_panics_with_a_clear_message() {
    let payload = std::panic::catch_unwind(|| {
        futures_lite::future::block_on(lookup_host("fairloop.invalid:80"))
    })
    .expect_err("no blocking pool outside a runtime");
    let msg = panic_message(&*payload);
    assert!(msg.contains("outside a fairloop runtime"), "{msg}");
}

/// A synchronous `bind` or `UdpSocket::connect` cannot wait for a lookup
/// without blocking its thread: on a core thread a host name is refused
/// (before any lookup), with a message pointing at `lookup_host`; IP
/// addresses bind as before. The async calls given an empty list say so.
#[test]
fn sync_calls_refuse_a_host_name_on_a_core_thread() {
    with_timeout(T, || {
        rt(1).block_on(async {
            let name = "fairloop.invalid";
            let check = |what: &str, err: std::io::Error| {
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
                let msg = err.to_string();
                assert!(
                    msg.contains(what) && msg.contains(name) && msg.contains("lookup_host"),
                    "{what}: {msg}"
                );
            };
            let addr = format!("{name}:0");
            check(
                "TcpListener::bind",
                TcpListener::bind(addr.as_str()).unwrap_err(),
            );
            check(
                "TcpListener::bind_reuseport",
                TcpListener::bind_reuseport((name, 0)).unwrap_err(),
            );
            check("UdpSocket::bind", UdpSocket::bind(&addr).unwrap_err());
            let udp = UdpSocket::bind("127.0.0.1:0").expect("an IP address binds");
            check(
                "UdpSocket::connect",
                udp.connect((name.to_owned(), 9)).unwrap_err(),
            );
            let l = TcpListener::bind("127.0.0.1:0").expect("an IP address binds");
            assert!(l.local_addr().unwrap().ip().is_loopback());

            let none: &[SocketAddr] = &[];
            let err = TcpStream::connect(none).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains("TcpStream::connect"), "{err}");
            let err = udp.send_to(b"x", none).await.unwrap_err();
            assert!(err.to_string().contains("UdpSocket::send_to"), "{err}");
        })
    });
}

// ---- host names, through the real resolver, inside namespaces ---------------

/// `lookup_host`, `connect`, `send_to` and a `bind` off the core find a
/// name in `/etc/hosts` (through `getaddrinfo`, on the blocking pool), and
/// reach the sockets behind it.
#[test]
fn host_names_resolve_through_the_system_resolver() {
    if in_child("host_names_resolve_through_the_system_resolver") {
        let _resolver = Resolver::configure();
        hosts_file_names_resolve();
    } else {
        run_in_namespaces("host_names_resolve_through_the_system_resolver");
    }
}

fn hosts_file_names_resolve() {
    // off the core, a synchronous bind looks the name up on its own thread
    let listener = TcpListener::bind((HOSTS_NAME, 0)).expect("bind a name from /etc/hosts");
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        listener.local_addr().unwrap(),
        SocketAddr::from(([127, 0, 0, 1], port))
    );
    rt(1).block_on(async move {
        let found: Vec<SocketAddr> = lookup_host(format!("{HOSTS_NAME}:{port}"))
            .await
            .expect("look up a name from /etc/hosts")
            .collect();
        assert!(
            found.contains(&SocketAddr::from(([127, 0, 0, 1], port))),
            "{found:?}"
        );

        let server = fairloop::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0; 5];
            s.read_exact(&mut buf).await.expect("read");
            s.write_all(&buf).await.expect("write");
            s.flush().await.expect("flush");
        });
        let mut c = TcpStream::connect((HOSTS_NAME, port))
            .await
            .expect("connect to a name from /etc/hosts");
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        server.await.unwrap();

        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = format!("{HOSTS_NAME}:{}", b.local_addr().unwrap().port());
        assert_eq!(a.send_to(b"ping", to.as_str()).await.expect("send_to"), 4);
        let mut buf = [0; 8];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr().unwrap()));
    });
}

/// The test the issue asks for: a `healthcheck` partition with a 10 ms
/// latency bound keeps ticking on time, on the same (only) core, while a
/// `lookup_host`, a `TcpStream::connect` and a `UdpSocket::send_to` given a
/// host name hang for the resolver's timeout on a name server that never
/// answers. Had the lookups run on the core thread, the core would have
/// stood still for the whole timeout and the ticks behind it would be late
/// by up to that much.
#[test]
fn a_latency_partition_keeps_its_bound_while_lookups_hang() {
    if in_child("a_latency_partition_keeps_its_bound_while_lookups_hang") {
        let resolver = Resolver::configure();
        latency_bound_holds_while_lookups_hang(&resolver);
    } else {
        run_in_namespaces("a_latency_partition_keeps_its_bound_while_lookups_hang");
    }
}

fn latency_bound_holds_while_lookups_hang(resolver: &Resolver) {
    const PERIOD: Duration = Duration::from_millis(10);
    let rt = rt(1);
    let (lateness, lookups) = rt.block_on(async {
        let hc = Partition::builder()
            .name("healthcheck")
            .latency(PERIOD)
            .build()
            .expect("a healthcheck partition");
        assert_eq!(hc.core(), fairloop::core_id(), "one core: the same core");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // Ticks on a fixed grid, late ones not skipped: a stalled core
        // shows up as a run of late ticks, not one.
        let ticks = hc.spawn(async move {
            let mut lateness = Vec::new();
            let mut next = Instant::now() + PERIOD;
            while !stopped.load(Ordering::SeqCst) {
                sleep_until(next).await;
                lateness.push(Instant::now().saturating_duration_since(next));
                next += PERIOD;
            }
            lateness
        });
        // Let the ticks start before the lookups do.
        fairloop::time::sleep(3 * PERIOD).await;

        let silent = format!("{SILENT_NAME}:80");
        let lookups = [
            fairloop::spawn(timed("lookup_host", {
                let silent = silent.clone();
                async move { lookup_host(silent).await.map(drop) }
            })),
            fairloop::spawn(timed("TcpStream::connect", {
                let silent = silent.clone();
                async move { TcpStream::connect(silent).await.map(drop) }
            })),
            fairloop::spawn(timed("UdpSocket::send_to", async move {
                let udp = UdpSocket::bind("127.0.0.1:0")?;
                udp.send_to(b"x", silent.as_str()).await.map(drop)
            })),
        ];
        let mut results = Vec::new();
        for l in lookups {
            let r = timeout(Duration::from_secs(T), l)
                .await
                .expect("the lookups end with the resolver's timeout (watchdog)")
                .expect("no panic");
            results.push(r);
        }
        stop.store(true, Ordering::SeqCst);
        (ticks.await.expect("no panic"), results)
    });

    for (what, result, took) in &lookups {
        let err = result.as_ref().expect_err("no name server answers");
        eprintln!("{what}: failed after {took:?}: {err}");
        assert!(
            err.to_string().contains(SILENT_NAME),
            "{what}: the error names the host: {err}"
        );
        assert!(
            *took >= RESOLVER_TIMEOUT / 2,
            "{what} ended after {took:?}: the lookup did not hang (did it reach the silent \
             name server? {err})"
        );
    }
    let queries = resolver.queries_received();
    assert!(
        queries >= 3,
        "the silent name server got {queries} queries: the lookups did not go through DNS"
    );

    let mut sorted = lateness.clone();
    sorted.sort();
    let p99 = sorted[sorted.len() * 99 / 100];
    let max = *sorted.last().unwrap();
    eprintln!(
        "healthcheck: {} ticks, lateness p50 {:?} p99 {p99:?} max {max:?}; {queries} DNS queries",
        sorted.len(),
        sorted[sorted.len() / 2],
    );
    assert!(
        sorted.len() >= 50,
        "only {} ticks over the lookups",
        sorted.len()
    );
    assert!(
        p99 < Duration::from_millis(50),
        "the healthcheck partition's ticks were late (p99 {p99:?}, max {max:?}) while the \
         lookups hung: the core was blocked"
    );
}

/// Runs `f`: what it returned, and how long it took.
async fn timed<F>(what: &'static str, f: F) -> (&'static str, std::io::Result<()>, Duration)
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    let start = Instant::now();
    let r = f.await;
    (what, r, start.elapsed())
}

// ---- the namespaces ----------------------------------------------------------

/// Whether this process is the child that runs `test` inside the
/// namespaces.
fn in_child(test: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|t| t == test)
}

/// Runs `test` of this binary in new user, mount and network namespaces
/// (`unshare -Urnm`), and fails with its output if it fails, does not run,
/// or does not finish within 60 s (then it is killed).
fn run_in_namespaces(test: &str) {
    let probe = Command::new("unshare").args(["-Urnm", "true"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "this test needs user, mount and network namespaces: `unshare -Urnm true` (util-linux) \
             failed: {}. Run it as root, or allow unprivileged user namespaces \
             (`sysctl kernel.unprivileged_userns_clone=1`, or on Ubuntu \
             `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)",
            match other {
                Ok(out) => format!("{}, {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
                Err(e) => e.to_string(),
            }
        ),
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new("unshare")
        .arg("-Urnm")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        // resolver settings from the environment would override the files
        .env_remove("RES_OPTIONS")
        .env_remove("LOCALDOMAIN")
        .env_remove("HOSTALIASES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary under unshare");
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    let output = format!("--- stdout\n{out}\n--- stderr\n{err}");
    let Some(status) = status else {
        panic!(
            "TIMEOUT: `{test}` in the namespaces did not finish within {limit:?}; killed\n{output}"
        );
    };
    assert!(
        status.success(),
        "`{test}` failed in the namespaces ({status})\n{output}"
    );
    // A filter that matched nothing would pass too: insist the test ran.
    assert!(
        out.contains(&format!("test {test} ... ok")) && out.contains("1 passed"),
        "`{test}` did not run in the namespaces\n{output}"
    );
    eprintln!("{err}");
}

/// The system resolver of the namespaces, set up by the child: the files
/// it reads bind-mounted over `/etc`, the loopback interface up, and a
/// name server on 127.0.0.1:53 (UDP and TCP) that never answers.
struct Resolver {
    dns_udp: std::net::UdpSocket,
    _dns_tcp: std::net::TcpListener,
    dir: PathBuf,
}

impl Resolver {
    fn configure() -> Resolver {
        loopback_up();
        let dir = std::env::temp_dir().join(format!("fairloop-dns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the resolver files' directory");
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a resolver file");
            path
        };
        let resolv = file(
            "resolv.conf",
            &format!(
                "nameserver 127.0.0.1\noptions timeout:{} attempts:1\n",
                RESOLVER_TIMEOUT.as_secs()
            ),
        );
        let hosts = file(
            "hosts",
            &format!("127.0.0.1 localhost {HOSTS_NAME}\n::1 localhost\n"),
        );
        let nsswitch = file("nsswitch.conf", "hosts: files dns\n");
        mount_over(&resolv, Path::new("/etc/resolv.conf"));
        mount_over(&hosts, Path::new("/etc/hosts"));
        if Path::new("/etc/nsswitch.conf").exists() {
            mount_over(&nsswitch, Path::new("/etc/nsswitch.conf"));
        }
        // A running nscd would answer for the host's resolver: hide its
        // socket behind an empty directory.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).expect("create an empty directory");
        for nscd in ["/var/run/nscd", "/run/nscd"] {
            if Path::new(nscd).is_dir() {
                mount_over(&empty, Path::new(nscd));
            }
        }
        let dns_udp = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind UDP port 53");
        dns_udp.set_nonblocking(true).unwrap();
        let dns_tcp = std::net::TcpListener::bind("127.0.0.1:53").expect("bind TCP port 53");
        Resolver {
            dns_udp,
            _dns_tcp: dns_tcp,
            dir,
        }
    }

    /// How many queries reached the silent name server (over UDP).
    fn queries_received(&self) -> usize {
        let mut buf = [0; 512];
        let mut n = 0;
        loop {
            match self.dns_udp.recv_from(&mut buf) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("read the silent name server's queue: {e}"),
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // The mounts go with the namespace; the files are ours to remove.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bind-mounts `file` over `target` (in the child's own mount namespace).
fn mount_over(file: &Path, target: &Path) {
    rustix::mount::mount_bind(file, target).unwrap_or_else(|e| {
        panic!(
            "bind-mount {} over {}: {e}",
            file.display(),
            target.display()
        )
    });
}

/// Sets the loopback interface of the new network namespace up (it starts
/// down, so 127.0.0.1 would be unreachable), with an rtnetlink
/// `RTM_NEWLINK` request: `ifinfomsg { index: 1 (lo), flags: IFF_UP }`.
fn loopback_up() {
    use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const LOOPBACK_INDEX: i32 = 1;
    const IFF_UP: u32 = 1;

    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    msg.extend_from_slice(&[0, 0]); // ifi_family (AF_UNSPEC), padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&LOOPBACK_INDEX.to_ne_bytes()); // ifi_index
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    assert_eq!(msg.len(), 32);

    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None).expect("a netlink socket");
    send(&fd, &msg, SendFlags::empty()).expect("send RTM_NEWLINK");
    let mut ack = [0u8; 256];
    let (n, _) = recv(&fd, &mut ack, RecvFlags::empty()).expect("read the netlink ack");
    assert!(n >= 20, "a short netlink reply ({n} bytes)");
    let kind = u16::from_ne_bytes([ack[4], ack[5]]);
    let error = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    assert!(
        kind == NLMSG_ERROR && error == 0,
        "setting lo up failed: netlink reply type {kind}, error {error} (-errno)"
    );
}
