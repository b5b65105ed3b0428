//! What every byte stream (TCP, Unix) shares, written once over the mio
//! stream type: wrapping, waiting for `connect`, the addresses and the
//! `Debug` form, and the IO trait impls (`futures_io`, and with the
//! features `tokio`'s and `hyper`'s) over the runtime's [`StreamSource`],
//! which reads and writes through the core's io_uring where there is one
//! and with readiness IO otherwise.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use fairloop_runtime::io::{Direction, IoSource, StreamSource};
use socket2::SockRef;

/// A mio stream, as [`Stream`] uses it: the type of its addresses (the
/// same methods under the same names in every protocol; see
/// `impl_sockets!`).
pub(crate) trait StreamSocket:
    AsRawFd + AsFd + From<OwnedFd> + Send + Sync + 'static
{
    /// The socket address of the protocol.
    type Addr: fmt::Debug;

    /// The local address.
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// The address of the other end.
    fn peer_addr(&self) -> io::Result<Self::Addr>;
}

/// The inside of a public stream type (`TcpStream`, `UnixStream`): the
/// mio stream `S`, read and written through the runtime's
/// [`StreamSource`].
pub(crate) struct Stream<S: StreamSocket> {
    pub(crate) source: StreamSource<S>,
}

impl<S: StreamSocket> Stream<S> {
    /// Wraps a connected (or connecting) non-blocking stream.
    pub(crate) fn new(stream: S) -> Self {
        Stream {
            source: StreamSource::new(stream),
        }
    }

    /// Wraps a connected std stream, switched to non-blocking mode here.
    pub(crate) fn from_std(stream: impl AsFd + Into<OwnedFd>) -> io::Result<Self> {
        SockRef::from(&stream).set_nonblocking(true)?;
        Ok(Self::new(S::from(stream.into())))
    }

    /// Wraps `stream`, whose non-blocking `connect` has started, once the
    /// connection is made.
    pub(crate) async fn connect(stream: S) -> io::Result<Self> {
        let stream = Self::new(stream);
        stream.connected().await?;
        Ok(stream)
    }

    /// Waits until a non-blocking `connect` has finished: writable means
    /// the handshake ended one way or the other, and the socket's pending
    /// error (`SO_ERROR`) says which.
    async fn connected(&self) -> io::Result<()> {
        let io: &IoSource<S> = self.source.readiness();
        futures_lite::future::poll_fn(|cx| {
            io.poll_io(cx, Direction::Write, |s| {
                let sock = SockRef::from(s);
                if let Some(e) = sock.take_error()? {
                    return Err(e);
                }
                match sock.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })
        })
        .await
    }

    /// The mio stream.
    pub(crate) fn get_ref(&self) -> &S {
        self.source.get_ref()
    }

    /// The remote address.
    pub(crate) fn peer_addr(&self) -> io::Result<S::Addr> {
        self.get_ref().peer_addr()
    }

    /// The local address.
    pub(crate) fn local_addr(&self) -> io::Result<S::Addr> {
        self.get_ref().local_addr()
    }

    /// The `Debug` form of the public type `name`: its addresses.
    pub(crate) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// The write methods the three write traits share, name for name, for a
/// type with a field `io: Stream<S>`: `futures_io::AsyncWrite` takes the
/// plain form; tokio's `AsyncWrite` and hyper's `rt::Write` also name their
/// vectored support and their shutdown alike (`with_shutdown`).
macro_rules! write_methods {
    () => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.source.poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.source.poll_write_vectored(cx, bufs)
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.io.source.poll_flush(cx)
        }
    };
    (with_shutdown) => {
        crate::stream::write_methods!();

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.io.source.poll_shutdown(cx)
        }
    };
}

pub(crate) use write_methods;

/// Implements the IO traits for a public stream type `$t` with a field
/// `io: Stream<S>`, and for `&$t`, over the [`StreamSource`] inside.
macro_rules! impl_stream_io {
    (@one $t:ty) => {
        impl futures_io::AsyncRead for $t {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.source.poll_read(cx, buf)
            }

            fn poll_read_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.source.poll_read_vectored(cx, bufs)
            }
        }

        impl futures_io::AsyncWrite for $t {
            crate::stream::write_methods!();

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.io.source.poll_shutdown(cx)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // SAFETY: `poll_read_uninit` only writes into the slice
                // (never de-initialises it: `recv` writes bytes).
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = std::task::ready!(self.io.source.poll_read_uninit(cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of it.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $t {
            crate::stream::write_methods!(with_shutdown);
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Read for $t {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // SAFETY: `poll_read_uninit` only writes into the slice.
                let unfilled = unsafe { buf.as_mut() };
                let n = std::task::ready!(self.io.source.poll_read_uninit(cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of it.
                unsafe { buf.advance(n) };
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Write for $t {
            crate::stream::write_methods!(with_shutdown);
        }
    };
    ($t:ty) => {
        crate::stream::impl_stream_io!(@one $t);
        crate::stream::impl_stream_io!(@one &$t);
    };
}

pub(crate) use impl_stream_io;
