//! The engine of [fairloop](https://docs.rs/fairloop): tasks, per-core
//! fair-partition reactors, timers, IO and the [`Runtime`].
//!
//! Users depend on the `fairloop` facade, which re-exports this crate; the
//! model is explained there and in the repository's `docs/DESIGN.md`. In
//! short: a runtime runs one thread per core; each core runs the tasks of
//! the *partitions* it owns, sharing its CPU between them by weighted CPU
//! time (the scheduler in `fairloop-partitions`), and blocks in
//! `epoll_wait` (or `io_uring_enter`) when it has nothing to run. A task
//! woken on its own core is queued locally; one woken from any other thread
//! goes through its partition's lock-free injection queue and wakes the
//! owning core only if that core is parked.
//!
//! The modules, from the bottom up (a layer imports only the ones below
//! it, except where a type must name its owner):
//!
//! | module | concept |
//! |---|---|
//! | `loom`, `park`, `metrics`, `error` | the std/loom seam; the park/unpark token; counters and snapshots; error messages |
//! | `notify` | the wakers of the futures waiting for one event (a shutdown request, a signal) |
//! | [`signal`] | SIGINT and SIGTERM as futures: process-wide handlers and one thread that wakes the waiters; knows no runtime |
//! | `driver` | one core's IO: `mio::Poll`, timerfd, io_uring ring, receive buffers, the door other threads knock on. Imports only `park`, `metrics`, `loom` |
//! | `reactor` | one core's thread: the loop of turns, wakes, migration, shutdown; `Remote`, what other threads may touch of it |
//! | `partition` | partitions: handles, shared state, wake routing, placement, sharded partitions, the balancer |
//! | `task` | tasks: spawning, joining, aborting, the free functions |
//! | [`time`] | sleeps, timeouts, intervals, and each core's timer heap |
//! | [`io`] | sockets on the drivers: readiness (`IoSource`) and streams on the ring (`StreamSource`) |
//! | `runtime` | `Builder`, `Runtime`, `Handle`, and what they share |
//! | [`shutdown`] | graceful shutdown: the request tasks wait for, the drain, the report |
//! | [`channel`] | channels between tasks on any cores: a lane per producing core, wakes batched |
//! | `context` | the thread-locals that say which core and partition the caller is in |

#![warn(missing_docs)]

pub mod channel;
mod context;
mod driver;
mod error;
pub mod io;
mod loom;
pub mod metrics;
mod notify;
mod park;
pub mod partition;
mod reactor;
mod runtime;
pub mod shutdown;
pub mod signal;
mod task;
pub mod time;

pub use fairloop_partitions::Fairness;
pub use runtime::{Builder, Handle, Runtime, MAX_CORES};
pub use task::{
    core_id, spawn, spawn_blocking, spawn_local, yield_now, JoinError, JoinHandle, YieldNow,
};
