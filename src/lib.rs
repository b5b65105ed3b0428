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
//! use fairloop::partition::{Partition, Placement};
//! use fairloop::Runtime;
//! use std::time::Duration;
//!
//! fn main() -> std::io::Result<()> {
//!     let rt = Runtime::builder()
//!         .cores(3)                      // 3 reactor threads, one pinned per CPU
//!         .reserve_core("healthcheck")   // core 2 runs `healthcheck` only
//!         .build()?;
//!     rt.block_on(async {
//!         let hc = Partition::builder()
//!             .name("healthcheck")
//!             .placement(Placement::Reserved("healthcheck".into()))
//!             .latency(Duration::from_millis(1))
//!             .build()?;
//!         let health = hc.spawn(async { "ok" });
//!         // `api` on every other core: one shard per core, one name
//!         let api = Partition::builder()
//!             .name("api")
//!             .placement(Placement::EveryCore)
//!             .build()?;
//!         assert_eq!(api.cores(), vec![0, 1]);
//!         let mut sums = Vec::new();
//!         for core in api.cores() {
//!             let shard = api.shard(core).expect("a shard on every unreserved core");
//!             // the proposal's asyncio.spawn(coro, partition=...): everything
//!             // spawned from inside a shard stays in it, on its core
//!             sums.push(shard.spawn(async move {
//!                 let parts: Vec<_> =
//!                     (0..4u64).map(|i| fairloop::spawn(async move { i * i })).collect();
//!                 let mut sum = 0;
//!                 for p in parts {
//!                     sum += p.await.expect("no panic");
//!                 }
//!                 assert_eq!(fairloop::core_id(), core);
//!                 sum
//!             }));
//!         }
//!         assert_eq!(health.await.expect("no panic"), "ok");
//!         for sum in sums {
//!             assert_eq!(sum.await.expect("no panic"), 14);
//!         }
//!         // One figure for all of `api`: the sum over its shards.
//!         assert!(api.metrics().polls >= 2 * 5);
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
//!   waking from idle cannot bank credit, and is forgiven a little debt
//!   (1/64 of the time it slept) so that one long poll does not cost a
//!   light sleeper seconds among thousands of tenants.
//!   [`Fairness::RoundRobin`] is the
//!   proposal's original one-task-per-partition round robin.
//! * **Latency**: a partition built with `.latency(d)` is switched to at the
//!   next task boundary once runnable, as long as it does not use far more
//!   than its share.
//! * **Sharded partitions**: [`Placement::EveryCore`](partition::Placement)
//!   makes one partition per unreserved core (a *shard*) under one name, as
//!   Seastar's scheduling groups exist on every shard. Spawning through it
//!   goes to the shard of the caller's core (from a core without one, or a
//!   plain thread, to the shards in turn); tasks stay in their shard;
//!   shares and latency hold per shard, against the other partitions of
//!   its core; `set_shares` sets every shard, `metrics()` sums them, and
//!   shards never move. [`partition::current`] inside a shard is the shard;
//!   [`partition::get`] by name is the whole. See
//!   [`Partition`](partition::Partition#sharded-partitions).
//! * **Tasks**: [`spawn`], [`spawn_local`], [`task::spawn_blocking`];
//!   [`JoinHandle`] is a future of `Result<T, JoinError>`; dropping it
//!   detaches, `abort()` cancels; a panic never takes a core down.
//! * **Channels**: [`channel::bounded`] and [`channel::unbounded`] connect
//!   tasks on any cores (and plain threads): a lane per producing core, one
//!   wake per burst to a parked receiver, no lock while nobody waits, each
//!   sender's order kept across migrations.
//! * **Shutdown**: dropping the [`Runtime`] drops every pending task's
//!   future before `drop` returns; [`Runtime::shutdown_graceful`] first
//!   wakes every task waiting in [`shutdown::requested`] and gives them
//!   until a deadline to finish. [`signal`] turns SIGINT and SIGTERM into
//!   futures, and [`main`] and [`test`] run an `async fn` on a runtime and
//!   shut it down gracefully when it returns.
//!
//! ## tokio's ecosystem (feature `tokio-compat`)
//!
//! Most crates a network service calls (reqwest, tonic, sqlx, tower's
//! timeouts, tokio-util) call tokio inside: `tokio::spawn`, `tokio::time`,
//! `tokio::net`. In a fairloop task they panic with tokio's own message
//! ("there is no reactor running, must be called from the context of a
//! Tokio 1.x runtime"), unless the runtime is built with
//! [`Builder::tokio_compat(true)`](Builder::tokio_compat) in a build with
//! the cargo feature `tokio-compat`:
//!
//! ```toml
//! fairloop = { version = "0.1", features = ["tokio-compat"] }
//! ```
//!
//! Then every core thread also drives a tokio `current_thread` runtime of
//! its own, on that thread, and inside every fairloop task
//! `tokio::spawn`, `tokio::time`, `tokio::net`,
//! `tokio::task::spawn_blocking`, `tokio::task::yield_now` and
//! `tokio::runtime::Handle::current()` work:
//!
//! * what `tokio::spawn` starts runs on the spawning task's core; tokio's
//!   timers and socket readiness wake fairloop tasks as local wakes; the
//!   core parks once for both (tokio's `epoll_wait` watches the core's
//!   epoll), so nothing polls and no thread is added;
//! * tokio's work runs under the sharded partition `"tokio"` (a shard on
//!   every core, reserved cores included; the name is taken): while a core
//!   is busy, tokio gets the thread in that shard's turns, at most 8 tokio
//!   polls at a time, so it shares the core by the shard's shares
//!   (`partition::get("tokio")` and `set_shares`), shows in the metrics,
//!   and cannot starve a latency partition. A busy core lets tokio look at
//!   its timers and sockets at least every millisecond;
//! * fairloop's own timers keep their precision, and fairloop's sockets,
//!   timers and spawns work from inside tokio's tasks too;
//! * what tokio starts is not part of [`Runtime::shutdown_graceful`]'s
//!   drain: tasks a fairloop task awaits keep running while it drains; the
//!   rest are dropped when the cores stop. tokio's own cooperative budget
//!   does not apply inside fairloop tasks (fairloop's does).
//!
//! The cost, and the design, are in `BENCHMARKS.md` and `docs/DESIGN.md`.
//!
//! See the repository's `docs/DESIGN.md` for the model, the module layout
//! and the protocols, and `BENCHMARKS.md` for the measured figures.

#![warn(missing_docs)]

pub use fairloop_runtime::{
    core_id, spawn, spawn_local, yield_now, Builder, Fairness, Handle, JoinError, JoinHandle,
    Runtime, YieldNow, MAX_CORES,
};

/// Partitions: create, find, spawn into, and measure them; sharded
/// partitions ([`Placement::EveryCore`](partition::Placement::EveryCore))
/// put one on every unreserved core under one name.
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

/// Sockets (TCP, UDP, Unix) on the per-core reactors, and
/// [`lookup_host`](net::lookup_host): host names are resolved on the
/// blocking pool, never on a core thread, where a slow resolver would
/// stall every partition of the core.
pub mod net {
    pub use fairloop_net::*;
}

// Re-exported whole, so that their docs, which explain the model, show
// here too.
pub use fairloop_runtime::channel;
pub use fairloop_runtime::shutdown;
pub use fairloop_runtime::signal;

/// Runs an `async fn` (usually `main`) on a new fairloop runtime.
///
/// The function becomes a plain `fn` that builds a runtime with
/// [`Runtime::builder()`] and the attribute's arguments, runs the body with
/// [`Runtime::block_on`] (in the root partition of core 0), then shuts the
/// runtime down with [`Runtime::shutdown_graceful`] and a **5 s deadline**:
/// every task waiting in [`shutdown::requested`] is woken, tasks still
/// running get up to 5 s to end, and the rest are cancelled. Then it
/// returns the body's value, so `async fn main() -> Result<..>` works as
/// for a plain `main`.
///
/// Arguments, both optional, comma-separated, in any order:
///
/// * `cores = N`: [`Builder::cores`] (default: one per CPU); an integer
///   literal, 1 to [`MAX_CORES`].
/// * `reserve_core = "name"`: [`Builder::reserve_core`]; may be repeated,
///   with different names.
///
/// The body runs as a task on core 0 and its value comes back to the
/// calling thread, so both must be `Send` (as for `block_on`): return
/// `Box<dyn Error + Send + Sync>` rather than `Box<dyn Error>`. If the
/// runtime cannot be built (say, more reservations than the machine's
/// cores allow), the function panics with the builder's message. For
/// another deadline, or to read the [`ShutdownReport`](shutdown::ShutdownReport),
/// build the runtime by hand: the expansion is those four lines.
///
/// ```
/// use std::time::Duration;
///
/// #[fairloop::main(cores = 2)]
/// async fn main() -> std::io::Result<()> {
///     // A background task that stops when the runtime shuts down.
///     fairloop::spawn(async {
///         fairloop::shutdown::requested().await;
///         println!("flushing before the runtime stops");
///     })
///     .detach();
///     fairloop::time::sleep(Duration::from_millis(1)).await;
///     Ok(())
/// }
/// ```
///
/// # Compile errors
///
/// Each of these is refused with a message at the offending tokens that
/// says what is accepted:
///
/// ```compile_fail
/// #[fairloop::main(threads = 4)] // unknown argument `threads`: ... accepts `cores = <integer>` and ...
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[fairloop::main(cores = "4")] // `cores` takes an integer literal, e.g. `cores = 4`
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[fairloop::main(cores = 4096)] // `cores` is above fairloop::MAX_CORES (1024)
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[fairloop::main(reserve_core = healthcheck)] // `reserve_core` takes a string literal ...
/// async fn main() {}
/// ```
/// ```compile_fail
/// #[fairloop::main] // #[fairloop::main] goes on an `async fn`: write `async fn main`
/// fn main() {}
/// ```
/// ```compile_fail
/// #[fairloop::main] // `main` must take no arguments (the runtime calls it with none); ...
/// async fn main(cores: usize) {}
/// ```
/// ```compile_fail
/// #[fairloop::main] // `dyn Error` cannot be sent between threads safely (at the return type)
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     Ok(())
/// }
/// ```
pub use fairloop_macros::main;

/// Makes an `async fn` a `#[test]` that runs on a new fairloop runtime.
///
/// The same as [`main`](macro@main), with the same arguments (`cores = N`,
/// `reserve_core = "name"`), except that the function gets `#[test]`, the
/// cores are not pinned to CPUs (tests run in parallel; see
/// [`Builder::pin_cores`]), and the graceful shutdown after the body has a
/// **1 s deadline**, so a test that leaves a task running costs at most a
/// second. A panic in the body fails the test; `#[should_panic]`,
/// `#[ignore]` and `-> Result<..>` work as on any test.
///
/// ```
/// #[fairloop::test(cores = 2)]
/// async fn spawns_on_a_second_core() {
///     let h = fairloop::partition::Partition::builder()
///         .placement(fairloop::partition::Placement::Core(1))
///         .build()
///         .unwrap()
///         .spawn(async { fairloop::core_id() });
///     assert_eq!(h.await.unwrap(), 1);
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[fairloop::test] // #[fairloop::test] makes the fn a #[test] already: remove this `#[test]`
/// #[test]
/// async fn twice() {}
/// # fn main() {}
/// ```
pub use fairloop_macros::test;
