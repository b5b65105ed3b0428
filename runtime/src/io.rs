//! IO on the per-core drivers: the building blocks of `fairloop::net`.
//!
//! * [`StreamSource`] serves byte streams (TCP, Unix): reads and writes go
//!   through the io_uring of the core whose task calls them, with readiness
//!   IO where there is none (its module docs say what that means for
//!   buffering and flushing).
//! * [`IoSource`] serves everything else (listeners, datagram sockets,
//!   `connect`, `peek`) by readiness: an edge-triggered epoll registration
//!   on the core whose task uses it, and a wake of *that task*, in its own
//!   partition, when the socket becomes ready.
//!
//! Both spend the running task's cooperative [`BUDGET`]: past it, an
//! operation that could go ahead yields instead, so an always-ready socket
//! cannot keep its partition's turn, or the core, to itself.

mod source;
mod stream;

pub use crate::driver::readiness::Direction;
pub use crate::reactor::BUDGET;
pub use source::IoSource;
pub use stream::{StreamSource, MAX_RECV, MAX_SEND};

/// Whether the caller runs on a core thread of a fairloop runtime (a task,
/// or code between polls), where a blocking call such as a name lookup
/// stalls every partition of that core, latency partitions too. `false` on
/// any other thread, a `spawn_blocking` closure's included.
pub fn on_core_thread() -> bool {
    crate::context::with_core(|core| core.is_some())
}
