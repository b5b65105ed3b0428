//! The per-core fair scheduler of fairloop, as a pure, deterministic data
//! structure.
//!
//! A [`Scheduler`] decides which task a core runs next. It has no threads,
//! no IO and no clock: the caller passes the time in ([`Nanos`], nanoseconds
//! on any monotonic epoch it likes) and reports how long each poll took. So
//! the same sequence of calls always yields the same decisions, and the
//! tests drive it with a fake clock and assert exact ratios and bounds. It
//! is generic over the task type `T`; the runtime uses
//! `async_task::Runnable`.
//!
//! # Partitions
//!
//! A *partition* is a group of tasks that shares one CPU budget. Each has a
//! FIFO queue of runnable tasks, a weight ([`PartitionParams::shares`],
//! `1..=10_000`, default 100), an optional latency bound
//! ([`PartitionParams::latency`]) and a [`PartitionStats`] shared with the
//! runtime, which reads it from other threads. A partition is *idle* (empty
//! queue), *runnable* (waiting for a turn) or *current* (its turn is open).
//!
//! # Turns
//!
//! The core runs one partition at a time, in *turns*:
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use fairloop_partitions::{Nanos, PartitionParams, PartitionStats, Scheduler, SchedulerConfig};
//!
//! let mut sched = Scheduler::new(SchedulerConfig::default());
//! let api = sched.add_partition(PartitionParams::with_shares(200), Arc::new(PartitionStats::new()));
//! let health = sched.add_partition(
//!     PartitionParams::default().latency(Duration::from_millis(1)),
//!     Arc::new(PartitionStats::new()),
//! );
//! let mut now: Nanos = 0; // a fake clock; the runtime reads a real one
//! for i in 0..100 {
//!     sched.push(api, format!("request {i}"), now);
//! }
//! sched.push(health, "healthcheck".to_string(), now);
//!
//! let mut order = Vec::new();
//! while let Some(_partition) = sched.begin_turn(now) {
//!     while let Some(task) = sched.next_in_turn(now) {
//!         now += 100_000; // "poll" the task: 100 µs
//!         sched.poll_done(now);
//!         order.push(task);
//!     }
//!     // The runtime harvests IO readiness and expired timers here.
//! }
//! assert_eq!(order[0], "healthcheck"); // latency partitions go first
//! assert_eq!(order[1..6], ["request 0", "request 1", "request 2", "request 3", "request 4"]);
//! assert_eq!(order.len(), 101); // every task exactly once
//! ```
//!
//! A turn hands out tasks of its partition until one of these holds:
//!
//! - it handed out as many tasks as were queued when it began (in
//!   [`Fairness::RoundRobin`] mode: one task). Tasks pushed into the
//!   partition during its turn wait for a later turn — the 2017 proposal's
//!   backpressure rule: a partition that keeps waking its own tasks cannot
//!   keep the core, and the reactor gets to poll IO between turns;
//! - the partition's queue is empty;
//! - a latency partition requested preemption (see below);
//! - in [`Fairness::Shares`] mode, the turn's accumulated poll time reached
//!   its quota: [`SchedulerConfig::task_quota`] (default 500 µs), or less
//!   when many partitions wait (see *Rounds* below). A poll is never
//!   interrupted, so a turn overruns its quota by at most one poll.
//!
//! # Shares and virtual runtime
//!
//! In the default [`Fairness::Shares`] mode every partition has a *virtual
//! runtime* (vruntime). When a turn ends its partition is charged
//! `turn_time × 100 / shares`, so at the default 100 shares vruntime grows
//! like real CPU time, at 200 shares half as fast. The runnable partition
//! with the lowest vruntime runs next (ties: one that just woke before one
//! that just ended its turn, then the lowest key). Over time,
//! partitions that stay runnable therefore receive CPU time in proportion
//! to their shares, whatever their tasks cost; the error is bounded by
//! about one turn per partition. Vruntime is kept in `u128` fixed point so
//! that even 10 000 shares and nanosecond turns accrue exactly.
//!
//! # Waking from idle: no banked credit
//!
//! An idle partition is not charged while it sleeps, so left alone its
//! vruntime would fall far behind, and on waking it would monopolise the
//! core until it caught up. Instead, a partition that wakes starts at
//! `max(own vruntime, floor)`, where the floor is the lowest vruntime among
//! runnable partitions, or the scheduler's monotonic `min_vruntime` when
//! none is runnable. It keeps any debt (a vruntime above the floor) but
//! cannot bank credit (Seastar's rule, not Glommio's forgiveness). The
//! monotonic `min_vruntime` never decreases; it advances at the end of each
//! turn to the lowest runnable vruntime (or the ended partition's, when
//! nothing else is runnable). A partition woken at the floor goes ahead of
//! those at the same vruntime that merely ended their turn, so one that
//! slept and uses less than its share runs within one turn of waking.
//!
//! # Sleep credit: debt forgiven while asleep
//!
//! A poll cannot be interrupted, so one long poll (a cold cache, a page
//! fault, the OS or the hypervisor taking the CPU away) is debt, and among
//! thousands of runnable partitions a partition repays debt at its tiny
//! share of the core: 158 µs among 10,000 tenants is a 1.6 s wait. So a
//! waking partition is first forgiven up to
//! [`SchedulerConfig::sleep_credit`] (default 1/64) of the time it slept,
//! in CPU time at its shares: it wakes at
//! `max(own vruntime − credit, floor)`. Never below the floor, so no credit
//! is banked; and a partition that alternates bursts and sleeps can take at
//! most its share plus that fraction of the core (a property test checks
//! both, and that strict shares, `Duration::ZERO`, keep the old rule).
//!
//! # New partitions
//!
//! A new partition joins at the fair point, as an equal: at `min_vruntime`,
//! and its first task then applies the floor above. One created *while a
//! poll is in progress* (by the task being polled: a service creating a
//! partition per tenant) joins level with the partition of that poll once
//! the poll is charged. Otherwise the creator would owe every partition it
//! created the CPU time it spent before they existed: a task that creates
//! 3,000 partitions in a 15 ms poll would then wait for each of them to
//! catch up 15 ms, some 45 s.
//!
//! # Rounds
//!
//! With `n` runnable partitions a turn's quota is
//! `clamp(round / n, min_slice, task_quota)`
//! ([`SchedulerConfig::round`], default 500 ms; [`SchedulerConfig::min_slice`],
//! default 20 µs): a few partitions get the full quota, while 10,000
//! CPU-bound ones get 50 µs each, so every one still gets a turn about every
//! half second instead of every 5 s. Latency partitions are unaffected:
//! their eligibility cap stays `2 × task_quota`.
//!
//! # Latency bounds and preemption
//!
//! A partition with a latency bound `d` should start running within `d` of
//! becoming runnable. Such a partition is chosen before any other when it is
//! *eligible*: its vruntime is at most `2 × task_quota` (in vruntime at
//! default shares) above the lowest runnable vruntime — that is, it has not
//! used far more than its share. Among eligible latency partitions the
//! earliest deadline (`became_runnable + d`) goes first. The cap is what
//! keeps a flooding latency partition from starving the others: once it
//! runs too far ahead it is scheduled like any other partition until they
//! catch up.
//!
//! When a task is pushed into an eligible latency partition that is not the
//! current one, the scheduler requests preemption
//! ([`Scheduler::preempt_requested`]): the open turn ends at the next task
//! boundary ([`Scheduler::next_in_turn`] returns `None`) and the following
//! [`Scheduler::begin_turn`] picks the latency partition. Its scheduling
//! delay is therefore at most one task poll of whatever was running.
//!
//! # Round-robin mode
//!
//! [`Fairness::RoundRobin`] is the proposal's original algorithm: runnable
//! partitions form a ring; a partition that becomes runnable joins the back,
//! each turn runs exactly one task of the partition at the front, and a
//! partition that still has tasks afterwards goes to the back. Fairness is
//! by task count, not CPU time, and there is no quota. Vruntime is still
//! accounted, so latency eligibility works the same in both modes.
//!
//! # Migration
//!
//! [`Scheduler::remove_partition`] takes a partition out with its queued
//! tasks and its *lag* (how far its vruntime is ahead of the scheduler's
//! `min_vruntime`, never negative); [`Scheduler::insert_detached`] puts it
//! into another core's scheduler at that core's `min_vruntime` plus the lag,
//! so it keeps its debt but gains nothing by moving.
//!
//! # Guarantees
//!
//! Every task pushed leaves the scheduler exactly once — handed out by
//! [`Scheduler::next_in_turn`], carried out by
//! [`Scheduler::remove_partition`], or returned by [`Scheduler::drain_all`]
//! — and tasks of one partition leave in push order. Property tests check
//! this for random call sequences in both modes.

mod config;
mod prefetch;
pub use prefetch::prefetch;
mod scheduler;
mod stats;

pub use config::{
    check_shares, clamp_shares, Fairness, PartitionParams, SchedulerConfig, DEFAULT_SHARES,
    MAX_SHARES, MIN_SHARES,
};
pub use scheduler::{DetachedPartition, PartitionKey, Scheduler};
pub use stats::{PartitionStats, StatsSnapshot};

/// Nanoseconds on a caller-defined monotonic epoch: every time the
/// scheduler sees is one of these, passed in by the caller.
pub type Nanos = u64;
