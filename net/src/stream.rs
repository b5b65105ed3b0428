//! What every byte stream (TCP, Unix) shares: the non-blocking read, write
//! and close operations on an [`IoSource`], and the IO trait impls built on
//! them (`futures_io`, and with the features `tokio`'s and `hyper`'s).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::task::{Context, Poll};

use fairloop_runtime::io::{Direction, IoSource};

/// A `mio` stream socket.
pub(crate) trait Stream: AsRawFd + AsFd {
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Stream for mio::net::TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        mio::net::TcpStream::shutdown(self, how)
    }
}

impl Stream for mio::net::UnixStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        mio::net::UnixStream::shutdown(self, how)
    }
}

/// Waits until a non-blocking `connect` on `io` has finished: writable
/// means the handshake ended one way or the other, and the socket's
/// pending error (`SO_ERROR`) says which.
pub(crate) async fn connected<S: Stream>(io: &IoSource<S>) -> io::Result<()> {
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

pub(crate) fn poll_read<S: Stream>(
    io: &IoSource<S>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a S: Read,
{
    let len = buf.len();
    io.poll_stream(cx, Direction::Read, len, |mut s| s.read(buf))
}

pub(crate) fn poll_read_vectored<S: Stream>(
    io: &IoSource<S>,
    cx: &mut Context<'_>,
    bufs: &mut [IoSliceMut<'_>],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a S: Read,
{
    let len = bufs.iter().map(|b| b.len()).sum();
    io.poll_stream(cx, Direction::Read, len, |mut s| s.read_vectored(bufs))
}

/// Reads into uninitialised memory (`recv` through `socket2`, which never
/// reads the buffer): the `tokio` and `hyper` read traits hand out such
/// buffers, and zeroing them first would cost a `memset` per read.
#[cfg(any(feature = "tokio", feature = "hyper"))]
pub(crate) fn poll_read_uninit<S: Stream>(
    io: &IoSource<S>,
    cx: &mut Context<'_>,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    let len = buf.len();
    io.poll_stream(cx, Direction::Read, len, |s| {
        socket2::SockRef::from(s).recv(buf)
    })
}

pub(crate) fn poll_write<S: Stream>(
    io: &IoSource<S>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a S: Write,
{
    io.poll_stream(cx, Direction::Write, buf.len(), |mut s| s.write(buf))
}

pub(crate) fn poll_write_vectored<S: Stream>(
    io: &IoSource<S>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>>
where
    for<'a> &'a S: Write,
{
    let len = bufs.iter().map(|b| b.len()).sum();
    io.poll_stream(cx, Direction::Write, len, |mut s| s.write_vectored(bufs))
}

/// Shuts the write half (the peer reads end of stream).
pub(crate) fn poll_close<S: Stream>(io: &IoSource<S>) -> Poll<io::Result<()>> {
    Poll::Ready(match io.get_ref().shutdown(Shutdown::Write) {
        // Already closed by the peer: nothing left to shut.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    })
}

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
                crate::stream::poll_read(&self.io, cx, buf)
            }

            fn poll_read_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_read_vectored(&self.io, cx, bufs)
            }
        }

        impl futures_io::AsyncWrite for $t {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write(&self.io, cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write_vectored(&self.io, cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // Writes go straight to the kernel: nothing is buffered here.
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                crate::stream::poll_close(&self.io)
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
                let n = std::task::ready!(crate::stream::poll_read_uninit(&self.io, cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of it.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $t {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write(&self.io, cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write_vectored(&self.io, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                crate::stream::poll_close(&self.io)
            }
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
                let n = std::task::ready!(crate::stream::poll_read_uninit(&self.io, cx, unfilled))?;
                // SAFETY: `recv` initialised the first `n` bytes of it.
                unsafe { buf.advance(n) };
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Write for $t {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write(&self.io, cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::stream::poll_write_vectored(&self.io, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                crate::stream::poll_close(&self.io)
            }
        }
    };
}

pub(crate) use impl_stream_io;
