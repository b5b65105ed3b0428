//! What every listener (TCP, Unix) shares, written once over the mio
//! listener type: binding, wrapping a std listener, accepting, its address
//! and its `Debug` form.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use fairloop_runtime::io::{Direction, IoSource};
use futures_lite::future::poll_fn;
use socket2::{SockAddr, SockRef, Socket};

use crate::stream::{Stream, StreamSocket};

/// A mio listener, as [`Listener`] uses it: how it accepts, and the type
/// of its streams and addresses (the same methods under the same names in
/// every protocol; see `impl_sockets!`).
pub(crate) trait Accept: AsRawFd + AsFd + From<OwnedFd> {
    /// The accepted streams.
    type Stream: StreamSocket<Addr = Self::Addr>;
    /// The socket address of the protocol.
    type Addr: fmt::Debug;

    /// Accepts one connection, or `WouldBlock`.
    fn accept(&self) -> io::Result<(Self::Stream, Self::Addr)>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<Self::Addr>;
}

/// The inside of a public listener type (`TcpListener`, `UnixListener`):
/// the mio listener `L`, registered with the core of the task that accepts.
pub(crate) struct Listener<L: Accept> {
    io: IoSource<L>,
}

impl<L: Accept> Listener<L> {
    /// Binds `socket` (configured by the caller) to `addr` and listens, in
    /// non-blocking mode.
    pub(crate) fn bind(socket: Socket, addr: &SockAddr) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        socket.bind(addr)?;
        socket.listen(1024)?;
        Ok(Self::from_fd(socket.into()))
    }

    /// Wraps a std listener, switched to non-blocking mode here.
    pub(crate) fn from_std(listener: impl AsFd + Into<OwnedFd>) -> io::Result<Self> {
        SockRef::from(&listener).set_nonblocking(true)?;
        Ok(Self::from_fd(listener.into()))
    }

    /// Wraps a non-blocking listening socket.
    fn from_fd(fd: OwnedFd) -> Self {
        Listener {
            io: IoSource::new(L::from(fd)),
        }
    }

    /// The mio listener.
    pub(crate) fn get_ref(&self) -> &L {
        self.io.get_ref()
    }

    /// Waits for a connection: the stream and the client's address.
    pub(crate) async fn accept(&self) -> io::Result<(Stream<L::Stream>, L::Addr)> {
        let (stream, addr) =
            poll_fn(|cx| self.io.poll_io(cx, Direction::Read, |l| l.accept())).await?;
        Ok((Stream::new(stream), addr))
    }

    /// The address the listener is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<L::Addr> {
        self.get_ref().local_addr()
    }

    /// The `Debug` form of the public type `name`: its local address.
    pub(crate) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
