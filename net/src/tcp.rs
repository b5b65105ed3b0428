//! TCP: listeners (also `SO_REUSEPORT` ones, one per core) and streams.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};

use futures_lite::future::poll_fn;
use socket2::{Domain, Protocol, Socket, Type};

use crate::listener::Listener;
use crate::lookup::Pending;
use crate::stream::Stream;
use crate::{try_each, ToSocketAddrs};

/// A TCP socket listening for connections.
///
/// Accepting registers the listener with the core of the task that
/// accepts; each accepted [`TcpStream`] registers with the core of the task
/// that first uses it.
pub struct TcpListener {
    io: Listener<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (the first address it names that can be bound).
    /// Errors such as "address in use" come back as they are.
    ///
    /// Binding is synchronous, so a host name (`"localhost:8080"`) is looked
    /// up on the calling thread, and is refused (`InvalidInput`) on a
    /// fairloop core thread, where the lookup would stall the core's
    /// partitions: there, look it up first with
    /// [`lookup_host`](crate::lookup_host) and bind the addresses it
    /// returns. IP addresses (`"0.0.0.0:8080"`, `"[::1]:0"`) need no lookup.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, false, "TcpListener::bind")
    }

    /// Binds with `SO_REUSEPORT`, so several listeners (one per core, for
    /// example in [`Runtime::run_on_shards`](fairloop_runtime::Runtime::run_on_shards))
    /// share one port and the kernel spreads connections between them.
    /// A host name is treated as by [`bind`](TcpListener::bind).
    pub fn bind_reuseport(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, true, "TcpListener::bind_reuseport")
    }

    fn bind_with(addr: impl ToSocketAddrs, reuseport: bool, what: &str) -> io::Result<Self> {
        let addrs = Pending::new(&addr)?.finish_now(what)?;
        try_each(addrs, |addr| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            if reuseport {
                socket.set_reuse_port(true)?;
            }
            Ok(TcpListener {
                io: Listener::bind(socket, &addr.into())?,
            })
        })
    }

    /// Wraps a std listener (for one configured by hand, e.g. with
    /// `socket2`); it is switched to non-blocking mode here.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        Ok(TcpListener {
            io: Listener::from_std(listener)?,
        })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (io, addr) = self.io.accept().await?;
        Ok((TcpStream { io }, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.fmt_as("TcpListener", f)
    }
}

/// A TCP connection.
///
/// It implements `futures_io::AsyncRead` and `AsyncWrite` (vectored reads
/// and writes included), and so does `&TcpStream`: share it (for example in
/// an `Arc`) to read in one task and write in another. With the `tokio`
/// feature it implements `tokio::io::AsyncRead`/`AsyncWrite` too, and with
/// the `hyper` feature `hyper::rt::Read`/`Write` (no adapter needed).
pub struct TcpStream {
    io: Stream<mio::net::TcpStream>,
}

impl TcpStream {
    /// Wraps a connected std stream (for one configured by hand, e.g. with
    /// `socket2`); it is switched to non-blocking mode here.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        Ok(TcpStream {
            io: Stream::from_std(stream)?,
        })
    }

    /// Connects to `addr` (trying each address it names in turn). A host
    /// name is looked up on the blocking pool, as by
    /// [`lookup_host`](crate::lookup_host), so a slow resolver delays only
    /// this task; an IP address is used at once. A refused connection is
    /// `ErrorKind::ConnectionRefused`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let pending = Pending::new(&addr)?;
        let addrs = pending.finish_some("TcpStream::connect").await?;
        let mut last = None;
        for addr in addrs {
            match Self::connect_one(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<Self> {
        let io = Stream::connect(mio::net::TcpStream::connect(addr)?).await?;
        Ok(TcpStream { io })
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get_ref().nodelay()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Shuts down the read half, the write half (the peer reads end of
    /// stream), or both. Bytes written earlier that are still on their way
    /// to the kernel (see the crate docs on io_uring) go first: the write
    /// half shuts right after them. Writes afterwards fail with
    /// `BrokenPipe`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.source.shutdown(how)
    }

    /// Reads what the peer sent without consuming it (`MSG_PEEK`): for
    /// routing a connection by its first bytes before anyone reads them.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        // Bytes the runtime already received (and no read took) come
        // first, and a receive still in flight is waited for.
        poll_fn(|cx| self.io.source.poll_peek(cx, buf)).await
    }
}

crate::stream::impl_stream_io!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.fmt_as("TcpStream", f)
    }
}

impl_fd!(TcpListener, TcpStream);
