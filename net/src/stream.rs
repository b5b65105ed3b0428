//! What every byte stream (TCP, Unix) shares: waiting for `connect`, and
//! the IO trait impls (`futures_io`, and with the features `tokio`'s and
//! `hyper`'s) over the runtime's [`StreamSource`], which reads and writes
//! through the core's io_uring where there is one and with readiness IO
//! otherwise.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use fairloop_runtime::io::{Direction, IoSource, StreamSource};

/// Waits until a non-blocking `connect` on `io` has finished: writable
/// means the handshake ended one way or the other, and the socket's
/// pending error (`SO_ERROR`) says which.
pub(crate) async fn connected<S: AsRawFd + AsFd + Send + Sync + 'static>(
    io: &StreamSource<S>,
) -> io::Result<()> {
    let io: &IoSource<S> = io.readiness();
    futures_lite::future::poll_fn(|cx| {
        io.poll_io(cx, Direction::Write, |s| {
            let sock = socket2::SockRef::from(s);
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

/// The write methods the three write traits share, name for name, for a
/// type with a field `io: StreamSource<S>`: `futures_io::AsyncWrite` takes
/// the plain form; tokio's `AsyncWrite` and hyper's `rt::Write` also name
/// their vectored support and their shutdown alike (`with_shutdown`).
macro_rules! write_methods {
    () => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_write_vectored(cx, bufs)
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.io.poll_flush(cx)
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
            self.io.poll_shutdown(cx)
        }
    };
}

pub(crate) use write_methods;

/// Implements the IO traits for a stream type `$t` with a field
/// `io: IoSource<S>` (`$t` may be a reference to such a type).
macro_rules! impl_stream_io {
    ($t:ty) => {
        impl futures_io::AsyncRead for $t {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.poll_read(cx, buf)
            }

            fn poll_read_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.poll_read_vectored(cx, bufs)
            }
        }

        impl futures_io::AsyncWrite for $t {
            crate::stream::write_methods!();

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.io.poll_shutdown(cx)
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
                let n = std::task::ready!(self.io.poll_read_uninit(cx, unfilled))?;
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
                let n = std::task::ready!(self.io.poll_read_uninit(cx, unfilled))?;
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
}

pub(crate) use impl_stream_io;
