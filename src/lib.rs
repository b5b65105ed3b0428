//! # fairloop
//!
//! A thread-per-core async runtime whose every core runs a *fair-partition
//! reactor*.
//!
//! A **partition** is a group of tasks — and the timers they wait on — that
//! shares one CPU budget. Partitions on a core share it by weighted CPU
//! time, so a flood of work in one partition cannot starve another: a
//! `healthcheck` partition keeps answering in well under a millisecond
//! while the `api` partition beside it is drowning. Every core runs its own
//! reactor on its own thread; a task woken on its own core is queued with no
//! synchronisation at all, and a task woken from another thread goes through
//! its partition's lock-free injection queue and wakes the owning core only
//! if that core is asleep.
//!
//! The idea comes from a 2017 proposal for a fair scheduling reactor for
//! asyncio: split the loop's work into partitions, go round them in turn,
//! and let each keep asyncio's natural backpressure (tasks woken during a
//! partition's turn wait for its next turn). fairloop counts fairness in CPU
//! time instead of callbacks, bounds every turn, and runs on many cores.
//!
//! ```
//! use fairloop::{partition::{self, Partition}, Runtime};
//! use std::time::Duration;
//!
//! fn main() -> std::io::Result<()> {
//!     let rt = Runtime::builder()
//!         .cores(2)          // 2 reactor threads, one pinned per CPU
//!         .build()?;
//!     rt.block_on(async {
//!         let hc = Partition::builder()
//!             .name("healthcheck")
//!             .latency(Duration::from_millis(1))
//!             .build()?;
//!         let health = hc.spawn(async { "ok" });
//!         // the proposal's asyncio.spawn(coro, partition=...): everything
//!         // spawned from inside `api` stays in `api`
//!         let api = partition::spawn("api", async {
//!             let parts: Vec<_> = (0..4u64).map(|i| fairloop::spawn(async move { i * i })).collect();
//!             let mut sum = 0;
//!             for p in parts {
//!                 sum += p.await.expect("no panic");
//!             }
//!             sum
//!         });
//!         assert_eq!(health.await.expect("no panic"), "ok");
//!         assert_eq!(api.await.expect("no panic"), 14);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! ## The model in brief
//!
//! * **Cores** are numbered `0..cores`; each is a thread (pinned to its CPU
//!   where the machine has it) with its own scheduler, timers and
//!   `mio::Poll`.
//! * **Partitions** have an id, an optional unique name, `shares`
//!   (1..=10,000, default 100), an optional latency bound, and a placement.
//!   Every core has a root partition where work starts when nothing else is
//!   said. A task belongs to one partition for life, and so does everything
//!   it spawns and every timer it waits on.
//! * **Fairness**: the runnable partition with the lowest virtual runtime
//!   (CPU time × 100 / shares) runs next, for at most `task_quota` (500 µs)
//!   or until the tasks queued when its turn began are done. A partition
//!   waking from idle cannot bank credit. [`Fairness::RoundRobin`] is the
//!   proposal's original one-task-per-partition round robin.
//! * **Latency**: a partition built with `.latency(d)` is switched to at the
//!   next task boundary once runnable, as long as it does not use far more
//!   than its share.
//! * **Tasks**: [`spawn`], [`spawn_local`], [`task::spawn_blocking`];
//!   [`JoinHandle`] is a future of `Result<T, JoinError>`; dropping it
//!   detaches, `abort()` cancels; a panic never takes a core down.
//! * **Shutdown**: dropping the [`Runtime`] drops every pending task's
//!   future before `drop` returns.
//!
//! See the repository's `docs/DESIGN.md` for the model, the module layout
//! and the protocols, and `BENCHMARKS.md` for the measured figures.

#![warn(missing_docs)]

pub use fairloop_runtime::{
    core_id, spawn, spawn_local, yield_now, Builder, Fairness, Handle, JoinError, JoinHandle,
    Runtime, YieldNow, MAX_CORES,
};

/// Partitions: create, find, spawn into, and measure them.
pub mod partition {
    pub use fairloop_runtime::partition::*;
}

/// Spawning and joining tasks.
pub mod task {
    pub use fairloop_runtime::{
        spawn, spawn_blocking, spawn_local, yield_now, JoinError, JoinHandle,
    };
}

/// Timers: sleep, timeouts, intervals.
pub mod time {
    pub use fairloop_runtime::time::*;
}

/// Plain-data snapshots of per-core and per-partition metrics.
pub mod metrics {
    pub use fairloop_runtime::metrics::*;
}

/// Sockets (TCP, UDP, Unix) on the per-core reactors.
pub mod net {
    pub use fairloop_net::*;
}

/// Graceful shutdown: the request tasks wait for ([`requested`](shutdown::requested),
/// [`is_requested`](shutdown::is_requested)) and what
/// [`Runtime::shutdown_graceful`] reports.
pub mod shutdown {
    pub use fairloop_runtime::shutdown::*;
}

/// SIGINT (Ctrl-C) and SIGTERM as futures, for any task on any core.
pub mod signal {
    pub use fairloop_runtime::signal::*;
}
