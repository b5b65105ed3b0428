//! Sockets for fairloop, served by the reactor of the core whose partition
//! uses them.
//!
//! **Streams** ([`TcpStream`], [`UnixStream`]) read and write through the
//! io_uring of the core whose task uses them (see
//! [`fairloop_runtime::io::StreamSource`]): a read submits a `recv` and the
//! completion wakes the waiting task in *its own* partition; a write copies
//! the bytes into the stream's send buffer and returns, and the core hands
//! the `send` to the kernel with the rest of its loop iteration's
//! operations, in one syscall. So:
//! * `flush` (`AsyncWriteExt::flush`) waits until every written byte has
//!   reached the kernel, and reports a `send` that failed; a failure is
//!   also reported by the next write. Dropping a stream without flushing
//!   loses nothing: its bytes are still sent before the socket closes.
//! * `shutdown(Write)` and `close` take effect after the written bytes, so
//!   the peer never sees end of stream before them.
//!
//! Where the kernel has no io_uring (or forbids it), or with
//! [`Builder::io_uring(false)`](fairloop_runtime::Builder::io_uring) or
//! `FAIRLOOP_IO_URING=0`, streams use readiness IO like the other sockets.
//!
//! **Listeners and datagram sockets** (and `connect`, `peek`) register with
//! the `mio::Poll` of the core whose task first uses them, and readiness
//! wakes the waiting task in its own partition. A socket carried by a
//! migrating partition, or handed to a task of another partition,
//! re-registers on its new core (a stream simply submits its next operation
//! on its new core's ring). Either way a partition that owns its sockets
//! never waits behind another partition's work. See
//! [`fairloop_runtime::io`] for the mechanics (edge-triggered draining, the
//! cooperative budget).
//!
//! Every stream ([`TcpStream`], [`UnixStream`]) implements
//! `futures_io::AsyncRead`/`AsyncWrite`, for itself and for a shared
//! reference. Datagram sockets ([`UdpSocket`], [`UnixDatagram`]) have async
//! `send`/`recv` methods on `&self`.
//!
//! **Names** are resolved off the core. Every `connect`, `bind` and
//! `send_to` takes a [`ToSocketAddrs`]: an IP socket address
//! (`"127.0.0.1:80"`, `"[::1]:80"`, a `SocketAddr`, `(ip, port)`) is parsed
//! inline, and a host name (`"example.com:443"`, `("example.com", 443)`) is
//! looked up with the system resolver on the blocking pool, as by
//! [`lookup_host`]. `getaddrinfo` blocks for as long as the resolver's
//! timeout when a name server does not answer; on a core thread that would
//! stall every partition of the core, latency partitions too, since a poll
//! is never interrupted. The synchronous calls (`TcpListener::bind`,
//! `UdpSocket::bind`, `UdpSocket::connect`) cannot wait without blocking,
//! so on a core thread they refuse a host name with an error that says to
//! use [`lookup_host`] first (elsewhere they look it up on the calling
//! thread, as std does).
//!
//! Features (none by default):
//! * `tokio`: the streams also implement `tokio::io::AsyncRead`/`AsyncWrite`
//!   (for tokio-util codecs, hyper-util's `TokioIo`, ...). No tokio runtime
//!   is involved.
//! * `hyper`: the streams implement `hyper::rt::Read`/`Write`, and the
//!   `hyper` module has an executor and a timer for hyper 1.x.
//!
//! Errors (address in use, connection refused or reset, a socket
//! used after its runtime is gone) are `io::Error`s, never panics.

#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;

#[cfg(feature = "hyper")]
pub mod hyper;
/// `AsRawFd` and `AsFd` for socket types that keep their source in an `io`
/// field with a `get_ref()` (an `IoSource`, a `Listener` or a `Stream`),
/// for `socket2::SockRef` and other fd users.
macro_rules! impl_fd {
    ($($t:ty),* $(,)?) => {$(
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.io.get_ref())
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.io.get_ref())
            }
        }
    )*};
}

mod listener;
mod lookup;
mod stream;
mod tcp;
mod udp;
mod unix;

/// The `Accept` and `StreamSocket` impls of a protocol's mio listener and
/// stream (their methods have the same names in every protocol), which is
/// all [`listener::Listener`] and [`stream::Stream`] need of them.
macro_rules! impl_sockets {
    ($listener:ty, $stream:ty, $addr:ty) => {
        impl listener::Accept for $listener {
            type Stream = $stream;
            type Addr = $addr;

            fn accept(&self) -> io::Result<($stream, $addr)> {
                <$listener>::accept(self)
            }

            fn local_addr(&self) -> io::Result<$addr> {
                <$listener>::local_addr(self)
            }
        }

        impl stream::StreamSocket for $stream {
            type Addr = $addr;

            fn local_addr(&self) -> io::Result<$addr> {
                <$stream>::local_addr(self)
            }

            fn peer_addr(&self) -> io::Result<$addr> {
                <$stream>::peer_addr(self)
            }
        }
    };
}

impl_sockets!(mio::net::TcpListener, mio::net::TcpStream, SocketAddr);
impl_sockets!(
    mio::net::UnixListener,
    mio::net::UnixStream,
    std::os::unix::net::SocketAddr
);

pub use lookup::{lookup_host, ToSocketAddrs};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

/// Tries `f` on each of `addrs` (not empty) in turn: its first success,
/// or the last error.
fn try_each<T>(
    addrs: lookup::Addrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addrs {
        match f(addr) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no socket address")))
}
