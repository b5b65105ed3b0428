//! Unix domain sockets: stream listeners and connections, and datagram
//! sockets.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;

use fairloop_runtime::io::{Direction, IoSource};
use futures_lite::future::poll_fn;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::listener::Listener;
use crate::stream::Stream;

/// A Unix domain socket listening for connections.
///
/// Binding creates the socket file; it is not removed when the listener is
/// dropped (remove it yourself, as with std's `UnixListener`).
pub struct UnixListener {
    io: Listener<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to the socket file `path`. An existing file there is
    /// `ErrorKind::AddrInUse`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        Ok(UnixListener {
            io: Listener::bind(socket, &SockAddr::unix(path)?)?,
        })
    }

    /// Wraps a std listener; it is switched to non-blocking mode here.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        Ok(UnixListener {
            io: Listener::from_std(listener)?,
        })
    }

    /// Waits for a connection: the stream and the client's address (usually
    /// unnamed).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (io, addr) = self.io.accept().await?;
        Ok((UnixStream { io }, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.fmt_as("UnixListener", f)
    }
}

/// A Unix domain stream connection.
///
/// It implements `futures_io::AsyncRead` and `AsyncWrite` (vectored reads
/// and writes included), and so does `&UnixStream`: share it (for example
/// in an `Arc`) to read in one task and write in another. With the `tokio`
/// feature it implements `tokio::io::AsyncRead`/`AsyncWrite` too, and with
/// the `hyper` feature `hyper::rt::Read`/`Write`.
pub struct UnixStream {
    io: Stream<mio::net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket file `path`. No listener there is
    /// `ErrorKind::ConnectionRefused` (or `NotFound` if there is no file);
    /// a listener whose backlog is full is `ErrorKind::WouldBlock`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        let io = Stream::connect(mio::net::UnixStream::connect(path)?).await?;
        Ok(UnixStream { io })
    }

    /// A pair of connected streams (`socketpair`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((
            UnixStream { io: Stream::new(a) },
            UnixStream { io: Stream::new(b) },
        ))
    }

    /// Wraps a connected std stream; it is switched to non-blocking mode
    /// here.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<Self> {
        Ok(UnixStream {
            io: Stream::from_std(stream)?,
        })
    }

    /// The address of the other end (unnamed for a client or a pair).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// The local address (unnamed for a client or a pair).
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

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }
}

crate::stream::impl_stream_io!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.fmt_as("UnixStream", f)
    }
}

/// A Unix domain datagram socket.
///
/// Like [`UdpSocket`](crate::UdpSocket): unconnected it sends to and
/// receives from any socket file, after [`connect`](UnixDatagram::connect)
/// it talks to one peer. Every method takes `&self`.
pub struct UnixDatagram {
    io: IoSource<mio::net::UnixDatagram>,
}

impl UnixDatagram {
    fn from_mio(socket: mio::net::UnixDatagram) -> Self {
        UnixDatagram {
            io: IoSource::new(socket),
        }
    }

    /// Binds to the socket file `path`. An existing file there is
    /// `ErrorKind::AddrInUse`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        mio::net::UnixDatagram::bind(path).map(UnixDatagram::from_mio)
    }

    /// A socket bound to no address (it can send, and receive replies only
    /// once connected).
    pub fn unbound() -> io::Result<Self> {
        mio::net::UnixDatagram::unbound().map(UnixDatagram::from_mio)
    }

    /// A pair of connected sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = mio::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_mio(a), UnixDatagram::from_mio(b)))
    }

    /// Wraps a std socket; it is switched to non-blocking mode here.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram::from_mio(mio::net::UnixDatagram::from_std(
            socket,
        )))
    }

    /// Sets the peer: [`send`](UnixDatagram::send) goes to it, and only its
    /// datagrams are received.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.io.get_ref().connect(path)
    }

    /// Sends `buf` as one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Write, |s| s.send(buf))).await
    }

    /// Receives one datagram from the connected peer into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |s| s.recv(buf))).await
    }

    /// Sends `buf` as one datagram to the socket file `path`.
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        poll_fn(|cx| {
            self.io
                .poll_io(cx, Direction::Write, |s| s.send_to(buf, path))
        })
        .await
    }

    /// Receives one datagram into `buf`: its length and its sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |s| s.recv_from(buf))).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Shuts down reading, writing, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

impl_fd!(UnixListener, UnixStream, UnixDatagram);
