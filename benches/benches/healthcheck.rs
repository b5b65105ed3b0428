//! Healthcheck lateness under a CPU flood on ONE core.
//!
//! The flood: batches of 2,000 tasks, each burning ~50 µs of CPU, spawned
//! all at once and joined, batch after batch for ~2 s. Beside it a
//! healthcheck sleeps until its next 10 ms tick, over and over, and records
//! its lateness (the instant it runs − the tick it asked for).
//!
//! * fairloop, one core: the flood in partition `api`, the healthcheck in
//!   partition `healthcheck`, once with `.latency(1 ms)` and once as a plain
//!   partition with equal shares.
//! * tokio `current_thread`: the same two tasks in the one runtime (tokio
//!   has no partitions), so a woken healthcheck queues behind the batch.
//!
//! Prints p50/p99/max lateness, the p99 ratio (tokio / fairloop: above 1.0
//! means fairloop's healthcheck is more punctual) and the flood's
//! throughput, so the cost of fairness is visible.
//!
//! * with `--features tokio-compat`, two more rows: fairloop with
//!   `tokio_compat`, the flood made of `tokio::spawn`ed jobs (as a crate
//!   calling tokio inside would make it), the healthcheck in a
//!   `.latency(1 ms)` partition on fairloop's timer, then on tokio's.
//!
//! Run: `cargo bench -p fairloop-benches --bench healthcheck`
//! (`--features tokio-compat` for the tokio rows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairloop::partition::{self, Partition};
use fairloop_benches::flood::{
    fl_flood, fl_healthcheck, run_on_tokio, BATCH, FLOOD_FOR, TICK, WORK,
};
use fairloop_benches::{fairloop_rt, machine, ms, quantile, tokio_rt};

struct Outcome {
    name: String,
    /// Lateness of every healthcheck tick that fell inside the flood, sorted.
    lateness: Vec<Duration>,
    completed: u64,
    flood_time: Duration,
    /// fairloop's own view: the healthcheck partition's scheduling delay p99.
    sched_delay_p99: Option<Duration>,
}

impl Outcome {
    fn p(&self, q: f64) -> Duration {
        quantile(&self.lateness, q)
    }

    fn throughput(&self) -> f64 {
        self.completed as f64 / self.flood_time.as_secs_f64()
    }
}

// ---- fairloop ---------------------------------------------------------------

fn run_fairloop(latency: Option<Duration>) -> Outcome {
    let name = match latency {
        Some(l) => format!("fairloop, healthcheck .latency({} ms)", l.as_millis()),
        None => "fairloop, equal shares, no latency".to_string(),
    };
    measure(&fairloop_rt(), name, latency, fl_healthcheck, fl_flood())
}

/// The scenario on a fairloop runtime: `check` in partition `healthcheck`
/// (with `latency`, if any) beside `flood` in partition `api`, the check
/// stopped when the flood ends.
fn measure<H, HF, F>(
    rt: &fairloop::Runtime,
    name: String,
    latency: Option<Duration>,
    check: H,
    flood: F,
) -> Outcome
where
    H: FnOnce(Arc<AtomicBool>) -> HF + Send + 'static,
    HF: std::future::Future<Output = Vec<Duration>> + Send + 'static,
    F: std::future::Future<Output = (u64, Duration)> + Send + 'static,
{
    let (lateness, completed, flood_time, p99) = rt.block_on(async move {
        let mut b = Partition::builder().name("healthcheck");
        if let Some(l) = latency {
            b = b.latency(l);
        }
        let hc = b.build().expect("healthcheck partition");
        let stop = Arc::new(AtomicBool::new(false));
        let check = hc.spawn(check(stop.clone()));
        let (completed, flood_time) = partition::spawn("api", flood).await.expect("flood ok");
        stop.store(true, Ordering::Release);
        let lateness = check.await.expect("healthcheck ok");
        (
            lateness,
            completed,
            flood_time,
            hc.metrics().sched_delay_p99,
        )
    });
    let mut lateness = lateness;
    lateness.sort();
    Outcome {
        name,
        lateness,
        completed,
        flood_time,
        sched_delay_p99: Some(p99),
    }
}

// ---- fairloop running tokio's work (`--features tokio-compat`) -------------

/// The flood as `tokio::spawn`ed jobs (what a crate calling tokio inside
/// does), started from partition `api` of a one-core fairloop runtime with
/// `tokio_compat`; the healthcheck in a `.latency(1 ms)` partition, on
/// fairloop's timer or on tokio's (`tokio_timer`).
#[cfg(feature = "tokio-compat")]
fn run_fairloop_compat(tokio_timer: bool) -> Outcome {
    use fairloop_benches::flood::{tk_flood, tk_healthcheck};
    let rt = fairloop::Runtime::builder()
        .cores(1)
        .pin_cores(false)
        .tokio_compat(true)
        .build()
        .expect("build a one-core fairloop runtime with tokio_compat");
    let timer = if tokio_timer { "tokio" } else { "fairloop" };
    let name = format!("fairloop+compat, tokio flood, hc {timer} timer");
    let latency = Some(Duration::from_millis(1));
    if tokio_timer {
        measure(&rt, name, latency, tk_healthcheck, tk_flood())
    } else {
        measure(&rt, name, latency, fl_healthcheck, tk_flood())
    }
}

// ---- tokio ------------------------------------------------------------------

fn run_tokio() -> Outcome {
    let m = run_on_tokio(&tokio_rt());
    Outcome {
        name: "tokio current_thread, one runtime".to_string(),
        lateness: m.lateness,
        completed: m.completed,
        flood_time: m.flood_time,
        sched_delay_p99: None,
    }
}

/// Lateness of `n` sequential 1 ms sleeps on an idle core, sorted.
fn idle_timer_lateness(n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let one_ms = Duration::from_millis(1);
    let fl = fairloop_rt().block_on(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let deadline = Instant::now() + one_ms;
            fairloop::time::sleep_until(deadline).await;
            v.push(deadline.elapsed());
        }
        v
    });
    let tk = tokio_rt().block_on(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let deadline = Instant::now() + one_ms;
            tokio::time::sleep_until(deadline.into()).await;
            v.push(deadline.elapsed());
        }
        v
    });
    let sorted = |mut v: Vec<Duration>| {
        v.sort();
        v
    };
    (sorted(fl), sorted(tk))
}

fn main() {
    let (fl, tk) = idle_timer_lateness(500);
    println!("timer lateness on an idle core, 500 sequential 1 ms sleeps:");
    for (name, v) in [("fairloop (timerfd)", &fl), ("tokio current_thread", &tk)] {
        println!(
            "  {name:<22} p50 {:>9} ms  p99 {:>9} ms  max {:>9} ms",
            ms(quantile(v, 0.50)),
            ms(quantile(v, 0.99)),
            ms(quantile(v, 1.0))
        );
    }
    println!(
        "  p99 ratio tokio/fairloop = {:.1}x (above 1.0: fairloop more punctual)\n",
        quantile(&tk, 0.99).as_secs_f64() / quantile(&fl, 0.99).as_secs_f64().max(1e-9)
    );
    println!(
        "healthcheck lateness under a flood on one core: {BATCH} tasks × {} µs per batch, \
         {} s of flood, a tick every {} ms; {}",
        WORK.as_micros(),
        FLOOD_FOR.as_secs(),
        TICK.as_millis(),
        machine()
    );
    #[allow(unused_mut)]
    let mut runs = vec![
        run_tokio(),
        run_fairloop(Some(Duration::from_millis(1))),
        run_fairloop(None),
    ];
    #[cfg(feature = "tokio-compat")]
    {
        runs.push(run_fairloop_compat(false));
        runs.push(run_fairloop_compat(true));
    }
    println!();
    println!(
        "{:<40} {:>6} {:>9} {:>9} {:>9} {:>13} {:>12}",
        "runtime", "ticks", "p50 ms", "p99 ms", "max ms", "flood tasks/s", "hc sched p99"
    );
    for r in &runs {
        println!(
            "{:<40} {:>6} {:>9} {:>9} {:>9} {:>13.0} {:>12}",
            r.name,
            r.lateness.len(),
            ms(r.p(0.50)),
            ms(r.p(0.99)),
            ms(r.p(1.0)),
            r.throughput(),
            r.sched_delay_p99
                .map_or("-".to_string(), |d| format!("{} ms", ms(d))),
        )
    }
    let tokio = &runs[0];
    println!();
    for r in &runs[1..] {
        let p99 = r.p(0.99).as_secs_f64().max(1e-9);
        println!(
            "{}: p99 ratio tokio/fairloop = {:.1}x (above 1.0: fairloop more punctual); \
             flood throughput fairloop/tokio = {:.3}",
            r.name,
            tokio.p(0.99).as_secs_f64() / p99,
            r.throughput() / tokio.throughput()
        );
    }
}
