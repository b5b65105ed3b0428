//! UDP sockets.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use fairloop_runtime::io::{Direction, IoSource};
use futures_lite::future::poll_fn;

use crate::lookup::Pending;
use crate::{try_each, ToSocketAddrs};

/// A UDP socket.
///
/// Unconnected, it sends to and receives from anyone
/// ([`send_to`](UdpSocket::send_to), [`recv_from`](UdpSocket::recv_from));
/// after [`connect`](UdpSocket::connect) it talks to one peer
/// ([`send`](UdpSocket::send), [`recv`](UdpSocket::recv)). Every method
/// takes `&self`: share the socket (for example in an `Arc`) to receive in
/// one task and send in another.
///
/// It registers with the core of the task that first uses it, like every
/// fairloop socket (see the crate docs).
pub struct UdpSocket {
    io: IoSource<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr` (the first address it names that can be bound;
    /// port 0 picks a free port). "Address in use" comes back as
    /// `ErrorKind::AddrInUse`.
    ///
    /// Binding is synchronous, so a host name is looked up on the calling
    /// thread, and is refused (`InvalidInput`) on a fairloop core thread,
    /// where the lookup would stall the core's partitions: there, look it
    /// up first with [`lookup_host`](crate::lookup_host). IP addresses need
    /// no lookup.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let addrs = Pending::new(&addr)?.finish_now("UdpSocket::bind")?;
        try_each(addrs, |addr| {
            Ok(UdpSocket {
                io: IoSource::new(mio::net::UdpSocket::bind(addr)?),
            })
        })
    }

    /// Wraps a std socket (switched to non-blocking mode here).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: IoSource::new(mio::net::UdpSocket::from_std(socket)),
        })
    }

    /// Sets the peer: [`send`](UdpSocket::send) goes to it, and only its
    /// datagrams are received. Connecting does not send anything, so it
    /// succeeds also when no one listens there; the refusal shows up as
    /// `ErrorKind::ConnectionRefused` on a later send or receive.
    ///
    /// A host name is treated as by [`bind`](UdpSocket::bind): refused on
    /// a core thread, where [`lookup_host`](crate::lookup_host) resolves it
    /// without stalling the core.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let addrs = Pending::new(&addr)?.finish_now("UdpSocket::connect")?;
        try_each(addrs, |addr| self.io.get_ref().connect(addr))
    }

    /// Sends `buf` as one datagram to the connected peer; the number of
    /// bytes sent. Errors if the socket is not connected.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Write, |s| s.send(buf))).await
    }

    /// Receives one datagram from the connected peer into `buf`; its length
    /// (the rest of a datagram longer than `buf` is discarded).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |s| s.recv(buf))).await
    }

    /// Sends `buf` as one datagram to `addr` (the first address it names);
    /// the number of bytes sent. A host name is looked up on the blocking
    /// pool, as by [`lookup_host`](crate::lookup_host), so a slow resolver
    /// delays only this task; to send many datagrams to one host, look it
    /// up once and send to the address.
    pub async fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let pending = Pending::new(&addr)?;
        let mut addrs = pending.finish_some("UdpSocket::send_to").await?;
        let target = addrs
            .next()
            .expect("finish_some returns at least one address");
        poll_fn(|cx| {
            self.io
                .poll_io(cx, Direction::Write, |s| s.send_to(buf, target))
        })
        .await
    }

    /// Receives one datagram into `buf`: its length and its sender (the
    /// rest of a datagram longer than `buf` is discarded).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |s| s.recv_from(buf))).await
    }

    /// Like [`recv_from`](UdpSocket::recv_from), but leaves the datagram in
    /// the queue (`MSG_PEEK`).
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |s| s.peek_from(buf))).await
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer; `ErrorKind::NotConnected` before
    /// [`connect`](UdpSocket::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Sets `SO_BROADCAST` (allow sending to a broadcast address).
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.get_ref().broadcast()
    }

    /// Sets the IP time-to-live of sent datagrams.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_ttl(ttl)
    }

    /// The IP time-to-live of sent datagrams.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get_ref().ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

impl_fd!(UdpSocket);
