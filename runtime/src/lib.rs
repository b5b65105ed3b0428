//! The engine of [fairloop](https://docs.rs/fairloop): tasks, per-core
//! fair-partition reactors, timers and the [`Runtime`].
//!
//! Users depend on the `fairloop` facade, which re-exports this crate; the
//! model is explained there. In short: a runtime runs one thread per core;
//! each core runs the tasks of the *partitions* it owns, sharing its CPU
//! between them by weighted CPU time (the scheduler in
//! `fairloop-partitions`), and blocks in `epoll_wait` (or `io_uring_enter`)
//! when it has nothing to run. A task woken on its own core is queued locally; one woken from
//! any other thread goes through its partition's lock-free injection queue
//! and wakes the owning core only if that core is parked.
//!
//! Modules, one concept each:
//! `runtime` (builder, runtime, handles), `core` (the per-core loop),
//! `reactor` (poll, eventfd, timerfd), `uring` (the per-core io_uring),
//! `bufpool` (the receive buffers it lends),
//! `cancel` (cancelling ring operations from other threads), [`io`]
//! (sockets on the reactors), `stream` (byte streams on the ring), `park`
//! (the park/unpark protocol), `waker` (where a woken task goes), `task`
//! (spawn, join, abort), `partition` (partitions), `placement` (where they
//! start), `core/migrate` (moving a partition between cores), `balance`
//! (automatic rebalancing), `timer` and [`time`], `spawn` (the free
//! functions), [`metrics`].

#![warn(missing_docs)]

mod balance;
mod bufpool;
mod cancel;
mod context;
mod core;
pub mod io;
mod loom;
pub mod metrics;
mod park;
pub mod partition;
mod placement;
mod reactor;
mod runtime;
mod spawn;
mod stream;
mod task;
pub mod time;
mod timer;
mod uring;
mod waker;

pub use fairloop_partitions::Fairness;
pub use runtime::{Builder, Handle, Runtime, MAX_CORES};
pub use spawn::{core_id, spawn, spawn_blocking, spawn_local, yield_now, YieldNow};
pub use task::{JoinError, JoinHandle};
