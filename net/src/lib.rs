//! Sockets for fairloop, registered with the reactor of the core whose
//! partition uses them.
//!
//! A socket registers with the `mio::Poll` of the core whose task first uses
//! it, and readiness wakes the waiting task in *its own* partition: a
//! partition that owns its sockets never waits behind another partition's
//! work. A socket carried by a migrating partition, or handed to a task of
//! another partition, re-registers on its new core. See
//! [`fairloop_runtime::io`] for the mechanics (edge-triggered draining, the
//! cooperative budget).
//!
//! Every socket implements `futures_io::AsyncRead`/`AsyncWrite` where that
//! applies. Errors (address in use, connection refused or reset, a socket
//! used after its runtime is gone) are `io::Error`s, never panics.

#![warn(missing_docs)]

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

mod tcp;

pub use tcp::{TcpListener, TcpStream};

/// Tries `f` on each address `addr` resolves to; the last error if none
/// works.
fn resolve<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        "the address resolved to nothing",
    );
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(t) => return Ok(t),
            Err(e) => last = e,
        }
    }
    Err(last)
}
