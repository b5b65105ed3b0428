//! Name resolution off the core: [`lookup_host`], and the [`ToSocketAddrs`]
//! trait every `connect`, `bind` and `send_to` takes.
//!
//! Looking up a host name means `getaddrinfo`, a blocking call that can
//! take as long as the resolver's timeout (seconds, times its retries) when
//! a name server does not answer. On a core thread that would stall every
//! partition of the core, latency partitions too: a poll is never
//! interrupted. So a host name is looked up on the blocking pool
//! ([`fairloop_runtime::spawn_blocking`]) while the core runs its other
//! work, and the waiting task is woken, in its own partition, when the
//! answer comes. An IP socket address (`"127.0.0.1:80"`, `"[::1]:80"`,
//! `(ip, port)`, a `SocketAddr`) needs no lookup: it is parsed inline,
//! without the pool and without allocating.
//!
//! The synchronous calls (`TcpListener::bind`, `bind_reuseport`,
//! `UdpSocket::bind`, `UdpSocket::connect`) cannot wait without blocking
//! their thread: off a core thread they look a host name up on the calling
//! thread, as std does; on a core thread they refuse it with an error that
//! says to look it up first with [`lookup_host`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::vec;

use fairloop_runtime::io::on_core_thread;

/// Looks up the socket addresses `host` names, off the core.
///
/// `host` is anything [`ToSocketAddrs`] takes: `"example.com:443"`,
/// `("example.com", 443)`, or socket addresses (`"127.0.0.1:80"`,
/// `"[::1]:80"`, a [`SocketAddr`], `(IpAddr, u16)`, `&[SocketAddr]`). An IP
/// address is returned at once, without the blocking pool; a host name is
/// looked up with the system resolver (`getaddrinfo`: `/etc/hosts`, DNS,
/// as `/etc/nsswitch.conf` says) on the blocking pool, so a slow or silent
/// name server delays only the awaiting task, never the other tasks and
/// partitions of its core.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use fairloop_net::{lookup_host, TcpListener};
///
/// // resolve once, off the core, then bind (or connect to) the addresses
/// let addrs: Vec<_> = lookup_host("localhost:8080").await?.collect();
/// let listener = TcpListener::bind(&addrs[..])?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// `InvalidInput` for a string that is neither a socket address nor
/// `"host:port"`, or whose port is not a number in 0..=65535; the
/// resolver's error for a name it cannot look up (a name that does not
/// exist, a name server that does not answer in time), with the host name
/// in the message; `NotFound`, naming the host, if the resolver returns no
/// address for it.
///
/// # Panics
/// When `host` is a host name and the caller is not in a fairloop runtime
/// (a task, or a `spawn_blocking` closure), as
/// [`spawn_blocking`](fairloop_runtime::spawn_blocking) does. Socket
/// addresses need no runtime.
pub async fn lookup_host(
    host: impl ToSocketAddrs,
) -> io::Result<impl Iterator<Item = SocketAddr> + fmt::Debug + Send + 'static> {
    let pending = Pending::new(&host)?;
    pending.finish().await
}

/// What names socket addresses, for [`lookup_host`] and every `connect`,
/// `bind` and `send_to` of this crate: the types std's
/// [`std::net::ToSocketAddrs`] takes, with the same meaning.
///
/// * Socket addresses, used as they are (no lookup, and for one address
///   no allocation): [`SocketAddr`], [`SocketAddrV4`], [`SocketAddrV6`],
///   `(IpAddr, u16)`, `(Ipv4Addr, u16)`, `(Ipv6Addr, u16)`, `&[SocketAddr]`
///   (tried in turn where one address is needed).
/// * Strings: `"127.0.0.1:80"` and `"[::1]:80"` are parsed inline;
///   `"host:port"` is looked up on the blocking pool (see [`lookup_host`]).
///   `str`, `String`, `(&str, u16)` and `(String, u16)`; in a tuple, an IP
///   address as the host is parsed inline too.
/// * A reference to any of these.
///
/// The trait is sealed: it cannot be implemented outside this crate, so
/// that every way to name an address keeps name lookups off the core.
pub trait ToSocketAddrs: sealed::ToSocketAddrsPriv {}

pub(crate) mod sealed {
    use std::io;

    use super::Addrs;

    /// What a [`ToSocketAddrs`](super::ToSocketAddrs) value names.
    #[derive(Debug)]
    pub enum Target<'a> {
        /// Socket addresses, known without a lookup.
        Addrs(Addrs),
        /// A host name (not an IP address) to look up, and the port.
        Host(&'a str, u16),
    }

    /// The method behind [`ToSocketAddrs`](super::ToSocketAddrs), in a
    /// module users cannot name.
    pub trait ToSocketAddrsPriv {
        /// What `self` names; `InvalidInput` for a malformed string.
        fn target(&self) -> io::Result<Target<'_>>;
    }
}

use sealed::{Target, ToSocketAddrsPriv};

/// Socket addresses, as [`lookup_host`] returns them: one inline address
/// (no allocation), or a list.
#[derive(Debug, Clone)]
pub struct Addrs(AddrsInner);

#[derive(Debug, Clone)]
enum AddrsInner {
    One(Option<SocketAddr>),
    Many(vec::IntoIter<SocketAddr>),
}

impl Addrs {
    fn one(addr: SocketAddr) -> Self {
        Addrs(AddrsInner::One(Some(addr)))
    }

    fn many(addrs: vec::IntoIter<SocketAddr>) -> Self {
        Addrs(AddrsInner::Many(addrs))
    }

    fn list(addrs: Vec<SocketAddr>) -> Self {
        Self::many(addrs.into_iter())
    }
}

impl Iterator for Addrs {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match &mut self.0 {
            AddrsInner::One(addr) => addr.take(),
            AddrsInner::Many(addrs) => addrs.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            AddrsInner::One(addr) => {
                let n = usize::from(addr.is_some());
                (n, Some(n))
            }
            AddrsInner::Many(addrs) => addrs.size_hint(),
        }
    }
}

/// Socket addresses, and IP literals in strings or tuples: no lookup.
macro_rules! socket_addrs {
    ($($t:ty => |$s:ident| $addr:expr;)*) => {$(
        impl ToSocketAddrs for $t {}

        impl ToSocketAddrsPriv for $t {
            fn target(&self) -> io::Result<Target<'_>> {
                let $s = self;
                Ok(Target::Addrs(Addrs::one($addr)))
            }
        }
    )*};
}

socket_addrs! {
    SocketAddr => |a| *a;
    SocketAddrV4 => |a| SocketAddr::V4(*a);
    SocketAddrV6 => |a| SocketAddr::V6(*a);
    (IpAddr, u16) => |a| SocketAddr::new(a.0, a.1);
    (Ipv4Addr, u16) => |a| SocketAddr::new(IpAddr::V4(a.0), a.1);
    (Ipv6Addr, u16) => |a| SocketAddr::new(IpAddr::V6(a.0), a.1);
}

impl ToSocketAddrs for &[SocketAddr] {}

impl ToSocketAddrsPriv for &[SocketAddr] {
    fn target(&self) -> io::Result<Target<'_>> {
        Ok(Target::Addrs(Addrs::list(self.to_vec())))
    }
}

impl ToSocketAddrs for str {}

impl ToSocketAddrsPriv for str {
    fn target(&self) -> io::Result<Target<'_>> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(Target::Addrs(Addrs::one(addr)));
        }
        let Some((host, port)) = self.rsplit_once(':') else {
            return Err(invalid(format!(
                "{self:?} is not a socket address: write \"host:port\" (\"example.com:80\") \
                 or an IP socket address (\"127.0.0.1:80\", \"[::1]:80\")"
            )));
        };
        let port = port.parse::<u16>().map_err(|_| {
            invalid(format!(
                "{self:?} is not a socket address: the port {port:?} is not a number in \
                 0..=65535"
            ))
        })?;
        Ok(host_target(host, port))
    }
}

impl ToSocketAddrs for String {}

impl ToSocketAddrsPriv for String {
    fn target(&self) -> io::Result<Target<'_>> {
        self.as_str().target()
    }
}

impl ToSocketAddrs for (&str, u16) {}

impl ToSocketAddrsPriv for (&str, u16) {
    fn target(&self) -> io::Result<Target<'_>> {
        Ok(host_target(self.0, self.1))
    }
}

impl ToSocketAddrs for (String, u16) {}

impl ToSocketAddrsPriv for (String, u16) {
    fn target(&self) -> io::Result<Target<'_>> {
        Ok(host_target(&self.0, self.1))
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}

impl<T: ToSocketAddrsPriv + ?Sized> ToSocketAddrsPriv for &T {
    fn target(&self) -> io::Result<Target<'_>> {
        (**self).target()
    }
}

/// `host` and `port` as std reads them: an IP address as the host needs no
/// lookup (also an IPv6 one without brackets, as in "::1:80").
fn host_target(host: &str, port: u16) -> Target<'_> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Target::Addrs(Addrs::one(SocketAddr::new(ip, port))),
        Err(_) => Target::Host(host, port),
    }
}

/// An `InvalidInput` error with `msg`.
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A [`ToSocketAddrs`] value on its way to addresses: the addresses, or the
/// host name to look up (owned, so the lookup can run on another thread
/// and the caller's future keeps no borrow across the wait).
pub(crate) enum Pending {
    Ready(Addrs),
    Lookup(String, u16),
}

impl Pending {
    /// What `addr` names, parsed inline.
    pub(crate) fn new(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Self> {
        Ok(match addr.target()? {
            Target::Addrs(addrs) => Pending::Ready(addrs),
            Target::Host(host, port) => Pending::Lookup(host.to_owned(), port),
        })
    }

    /// The addresses: at once, or looked up on the blocking pool.
    pub(crate) async fn finish(self) -> io::Result<Addrs> {
        match self {
            Pending::Ready(addrs) => Ok(addrs),
            Pending::Lookup(host, port) => {
                let name = host.clone();
                fairloop_runtime::spawn_blocking(move || lookup_now(&host, port))
                    .await
                    .unwrap_or_else(|e| {
                        Err(io::Error::other(format!(
                            "the lookup of the host name {name:?} did not finish: {e}"
                        )))
                    })
            }
        }
    }

    /// The addresses, not empty (`what`, the caller, is named in the
    /// error): at once, or looked up on the blocking pool.
    pub(crate) async fn finish_some(self, what: &str) -> io::Result<Addrs> {
        non_empty(self.finish().await?, what)
    }

    /// The addresses, not empty, for a synchronous caller (`what`): a host
    /// name is looked up on the calling thread, which is refused on a core
    /// thread (it would stall the core's partitions).
    pub(crate) fn finish_now(self, what: &str) -> io::Result<Addrs> {
        match self {
            Pending::Ready(addrs) => non_empty(addrs, what),
            Pending::Lookup(host, port) if on_core_thread() => Err(invalid(format!(
                "{what}(\"{host}:{port}\") on a fairloop core thread: looking up the host name \
                 {host:?} here would stall every partition of this core until the resolver \
                 answers; look it up first with \
                 `fairloop::net::lookup_host((\"{host}\", {port})).await` (it runs on the \
                 blocking pool) and pass the addresses it returns, or pass an IP address"
            ))),
            Pending::Lookup(host, port) => lookup_now(&host, port),
        }
    }
}

/// Looks `host` up with the system resolver, on the calling thread: its
/// addresses, at least one; an error naming `host` otherwise.
fn lookup_now(host: &str, port: u16) -> io::Result<Addrs> {
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "could not look up the host name {host:?}: {e} (check the name, and the \
                 resolver's configuration: /etc/hosts, /etc/resolv.conf)"
            ),
        )
    })?;
    if addrs.as_slice().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the host name {host:?} has no address (the resolver returned none)"),
        ));
    }
    Ok(Addrs::many(addrs))
}

/// `addrs` if it has an address; else an error that names `what`.
fn non_empty(addrs: Addrs, what: &str) -> io::Result<Addrs> {
    if addrs.size_hint().1 == Some(0) {
        return Err(invalid(format!(
            "{what}: no socket address given (an empty list); pass at least one"
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IP socket addresses, in every form, are one inline address: no
    /// lookup, no list allocated.
    #[test]
    fn ip_addresses_need_no_lookup_and_no_list() {
        let inline = |t: io::Result<Target<'_>>| match t.expect("valid") {
            Target::Addrs(Addrs(AddrsInner::One(Some(addr)))) => addr,
            other => panic!("not one inline address: {other:?}"),
        };
        let v4 = SocketAddr::from(([127, 0, 0, 1], 80));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 80));
        assert_eq!(inline("127.0.0.1:80".target()), v4);
        assert_eq!(inline("[::1]:80".target()), v6);
        assert_eq!(inline("::1:80".target()), v6);
        assert_eq!(inline(String::from("127.0.0.1:80").target()), v4);
        assert_eq!(inline(("127.0.0.1", 80).target()), v4);
        assert_eq!(inline((String::from("::1"), 80).target()), v6);
        assert_eq!(inline((Ipv4Addr::LOCALHOST, 80).target()), v4);
        assert_eq!(inline(v6.target()), v6);
        assert_eq!(inline((&&v4).target()), v4);
    }

    /// Host names are handed on for a lookup, as host and port.
    #[test]
    fn host_names_are_looked_up() {
        let host = |t: io::Result<Target<'_>>| match t.expect("valid") {
            Target::Host(host, port) => (host.to_owned(), port),
            other => panic!("not a host name: {other:?}"),
        };
        assert_eq!(
            host("example.com:443".target()),
            ("example.com".into(), 443)
        );
        assert_eq!(host(("localhost", 0).target()), ("localhost".into(), 0));
        assert_eq!(host((String::from("a.b"), 1).target()), ("a.b".into(), 1));
        // std's reading: the last colon splits host and port
        assert_eq!(host("a:b:1".target()), ("a:b".into(), 1));
    }
}
