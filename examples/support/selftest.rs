//! The small pieces the `--selftest` clients of `axum_app` and
//! `hyper_server` share.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `Ok` if `ok`, else an error saying `what()` was unexpected.
pub fn check(ok: bool, what: impl FnOnce() -> String) -> io::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!("unexpected answer: {}", what())))
    }
}

/// A blocking client connection with a read timeout.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.set_nodelay(true)?;
    Ok(c)
}
