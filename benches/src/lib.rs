//! Shared helpers of the fairloop benchmarks: the two runtimes built the
//! same way in every bench, a CPU burner, and percentile/report helpers.
//!
//! Every bench runs fairloop and tokio on the same work in the same
//! process and reports `ratio = tokio / fairloop` for times (so a ratio
//! above 1.0 means fairloop is faster).

use std::time::{Duration, Instant};

pub mod flood;
pub mod mem;
pub mod net;

/// A one-core fairloop runtime, unpinned (the bench machine is shared).
pub fn fairloop_rt() -> fairloop::Runtime {
    fairloop::Runtime::builder()
        .cores(1)
        .pin_cores(false)
        .build()
        .expect("build a one-core fairloop runtime")
}

/// tokio's single-threaded runtime with its timer driver.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a current_thread tokio runtime")
}

/// tokio's work-stealing runtime with `workers` worker threads and its
/// timer driver (the reference for the multi-core benches).
pub fn tokio_multi_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("build a multi_thread tokio runtime")
}

/// A fixed amount of CPU work that does not read the clock: `rounds`
/// rounds of xorshift64. Unlike [`burn`], a thread that the OS preempts
/// mid-way gets no credit for the time it waited, so counting completed
/// calls measures CPU actually obtained.
#[inline(never)]
pub fn cpu_work(rounds: u32) -> u64 {
    let mut x = std::hint::black_box(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// Spins on the clock for `d` (CPU work that no optimiser removes).
#[inline(never)]
pub fn burn(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The `q`-quantile (0.0..=1.0) of `sorted` by nearest rank; zero if empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A duration in milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// A duration in microseconds with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Runs this bench's executable again with `env=value` (a measurement in
/// a fresh process, so it inherits no other measurement's memory) and
/// returns the whitespace-separated numbers it prints.
///
/// # Panics
/// If the child fails, or prints something that is not a number.
pub fn child_numbers(env: &str, value: &str) -> Vec<f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .env(env, value)
        .output()
        .expect("run the measuring child");
    assert!(
        out.status.success(),
        "the {value} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.parse().expect("the child prints numbers"))
        .collect()
}

/// The machine, for the reports: CPU count and model.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{n} CPUs, {model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_by_nearest_rank() {
        let v: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
