//! Timers: sleep, sleep_until, timeout, interval; many timers at once;
//! cancelled timers. Timing assertions are correctness bounds only (never
//! early, eventually done); lateness is printed, not asserted.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{panic_message, rt, with_timeout};
use fairloop::time::{interval, sleep, sleep_until, timeout, Elapsed};
use fairloop::{core_id, spawn, yield_now};

const T: u64 = 20;

#[test]
fn sleep_is_never_early() {
    with_timeout(T, || {
        let rt = rt(2);
        for core in 0..2 {
            let h = rt.spawn_on(core, async {
                for ms in [0u64, 1, 2, 10, 25] {
                    let d = Duration::from_millis(ms);
                    let t0 = Instant::now();
                    let s = sleep(d);
                    let deadline = s.deadline();
                    assert!(deadline >= t0 + d);
                    s.await;
                    let el = t0.elapsed();
                    assert!(el >= d, "sleep({d:?}) completed after {el:?}");
                    assert!(Instant::now() >= deadline);
                }
                core_id()
            });
            assert_eq!(futures_lite::future::block_on(h).unwrap(), core);
        }
        // A huge duration does not panic (it just never fires here).
        rt.block_on(async {
            let r = timeout(Duration::from_millis(2), sleep(Duration::MAX)).await;
            assert!(r.is_err());
        });
    })
}

#[test]
fn timeout_elapses_for_slow_futures_and_not_for_fast_ones() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let t0 = Instant::now();
            let r = timeout(Duration::from_millis(10), std::future::pending::<u8>()).await;
            let err: Elapsed = r.expect_err("pending never completes");
            assert!(t0.elapsed() >= Duration::from_millis(10));
            assert!(!err.to_string().is_empty());
            let io: std::io::Error = err.into();
            assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);

            let r = timeout(Duration::from_millis(5), sleep(Duration::from_secs(10))).await;
            assert!(r.is_err());

            assert_eq!(timeout(Duration::from_secs(10), async { 5 }).await, Ok(5));
            let r = timeout(Duration::from_secs(10), async {
                sleep(Duration::from_millis(2)).await;
                yield_now().await;
                "fast"
            })
            .await;
            assert_eq!(r, Ok("fast"));
            // A timeout around a task join.
            let h = spawn(async {
                sleep(Duration::from_millis(1)).await;
                9
            });
            assert_eq!(
                timeout(Duration::from_secs(10), h).await.unwrap().unwrap(),
                9
            );
            // The dropped slow future is dropped with the timeout.
            let dropped = Arc::new(AtomicUsize::new(0));
            let g = common::DropGuard::new(&dropped);
            let r = timeout(Duration::from_millis(1), async move {
                let _g = g;
                std::future::pending::<()>().await;
            })
            .await;
            assert!(r.is_err());
            assert_eq!(dropped.load(Ordering::SeqCst), 1);
        });
    })
}

#[test]
fn interval_ticks_at_the_period() {
    with_timeout(T, || {
        let rt = rt(2);
        let (ticks, gaps_ok, late) = rt.block_on(async {
            let period = Duration::from_millis(10);
            let window = Duration::from_millis(200);
            let mut iv = interval(period);
            assert_eq!(iv.period(), period);
            let t0 = Instant::now();
            let mut scheduled = Vec::new();
            let mut late = Duration::ZERO;
            while t0.elapsed() < window {
                let s = iv.tick().await;
                let now = Instant::now();
                assert!(now >= s, "tick returned before its scheduled instant");
                late = late.max(now - s);
                scheduled.push(s);
            }
            // Scheduled instants are whole periods apart (missed ticks are
            // skipped, never bunched).
            let gaps_ok = scheduled.windows(2).all(|w| {
                let gap = w[1] - w[0];
                gap >= period && gap.as_nanos() % period.as_nanos() == 0
            });
            (scheduled.len(), gaps_ok, late)
        });
        println!("interval(10ms): {ticks} ticks in 200 ms, max lateness {late:?}");
        assert!(gaps_ok, "ticks not a whole number of periods apart");
        // At most one tick per period plus the immediate first one (a tick
        // is never early); at least a few even on a loaded machine.
        assert!(ticks <= 22, "{ticks} ticks: ticks came early");
        assert!(ticks >= 3, "{ticks} ticks: interval stalled");
    })
}

#[test]
fn interval_skips_missed_ticks() {
    with_timeout(T, || {
        let rt = rt(1);
        rt.block_on(async {
            let period = Duration::from_millis(5);
            let mut iv = interval(period);
            let first = iv.tick().await;
            // Stall the task (and the core) for ~8 periods.
            std::thread::sleep(period * 8);
            let t1 = Instant::now();
            let second = iv.tick().await;
            let third = iv.tick().await;
            // The stalled-over ticks are not delivered in a burst: the third
            // tick is a full period after the second.
            assert!(third - second >= period, "burst after a stall");
            assert!(second >= first + period);
            assert!(Instant::now() >= third);
            assert!(t1 >= first + period * 8);
        });
    })
}

#[test]
#[should_panic(expected = "period")]
fn interval_zero_period_panics() {
    let _ = interval(Duration::ZERO);
}

#[test]
fn sleep_until_in_the_past_completes_at_once() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            let now = Instant::now();
            let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
            let r = futures_lite::future::poll_once(sleep_until(past)).await;
            assert_eq!(r, Some(()), "sleep_until(past) must be ready on first poll");
            let r = futures_lite::future::poll_once(sleep_until(Instant::now())).await;
            assert_eq!(r, Some(()), "sleep_until(now) must be ready on first poll");
            let r = futures_lite::future::poll_once(sleep(Duration::ZERO)).await;
            assert_eq!(r, Some(()), "sleep(0) must be ready on first poll");
            assert!(sleep_until(past).is_elapsed());
            // The future one is not.
            let far = sleep(Duration::from_secs(60));
            assert!(!far.is_elapsed());
            let mut far = std::pin::pin!(far);
            assert_eq!(futures_lite::future::poll_once(far.as_mut()).await, None);
        });
    })
}

#[test]
fn dropping_pending_sleeps_is_fine() {
    with_timeout(T, || {
        let rt = rt(2);
        rt.block_on(async {
            // Register, then drop, many timers of various deadlines.
            for i in 0..5_000u64 {
                let mut s = std::pin::pin!(sleep(Duration::from_millis(1 + i % 50)));
                assert_eq!(futures_lite::future::poll_once(s.as_mut()).await, None);
            }
            // A dropped short sleep must not wake anything wrongly, and
            // later timers still fire.
            let t0 = Instant::now();
            sleep(Duration::from_millis(60)).await;
            assert!(t0.elapsed() >= Duration::from_millis(60));
            // Drop a sleep from another task than the one that polled it.
            let mut s = Box::pin(sleep(Duration::from_millis(1)));
            assert_eq!(futures_lite::future::poll_once(s.as_mut()).await, None);
            spawn(async move { drop(s) }).await.unwrap();
            // And one on another thread entirely.
            let mut s = Box::pin(sleep(Duration::from_secs(3600)));
            assert_eq!(futures_lite::future::poll_once(s.as_mut()).await, None);
            std::thread::spawn(move || drop(s)).join().unwrap();
            sleep(Duration::from_millis(2)).await;
        });
    })
}

#[test]
fn ten_thousand_concurrent_sleeps_all_complete() {
    with_timeout(T, || {
        const N: u64 = 10_000;
        let rt = rt(2);
        let done = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let done = done.clone();
                rt.spawn(async move {
                    let d = Duration::from_micros(100 + (i * 7919) % 50_000);
                    let t = Instant::now();
                    sleep(d).await;
                    let el = t.elapsed();
                    assert!(el >= d, "sleep({d:?}) done after {el:?}");
                    done.fetch_add(1, Ordering::SeqCst);
                    core_id()
                })
            })
            .collect();
        let mut per_core = [0usize; 2];
        for h in hs {
            per_core[futures_lite::future::block_on(h).unwrap()] += 1;
        }
        assert_eq!(done.load(Ordering::SeqCst), N as usize);
        assert!(per_core[0] > 0 && per_core[1] > 0, "{per_core:?}");
        println!("{N} concurrent sleeps (<=50 ms) done in {:?}", t0.elapsed());

        // Same, all in one task with futures awaited in one go.
        let n = rt.block_on(async {
            let hs: Vec<_> = (0..N)
                .map(|i| spawn(sleep(Duration::from_micros(i % 1000))))
                .collect();
            let mut n = 0;
            for h in hs {
                h.await.unwrap();
                n += 1;
            }
            n
        });
        assert_eq!(n, N);
    })
}

#[test]
fn timers_fire_while_the_core_is_busy() {
    with_timeout(T, || {
        let rt = rt(1);
        rt.block_on(async {
            // A busy task that keeps the core's queue non-empty.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s = stop.clone();
            let busy = spawn(async move {
                while !s.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {}
                    yield_now().await;
                }
            });
            let t0 = Instant::now();
            sleep(Duration::from_millis(20)).await;
            let el = t0.elapsed();
            stop.store(true, Ordering::SeqCst);
            busy.await.unwrap();
            println!("20 ms sleep beside a busy task took {el:?}");
            assert!(el >= Duration::from_millis(20));
        });
    })
}

#[test]
fn polling_a_sleep_outside_a_runtime_panics_clearly() {
    with_timeout(T, || {
        let payload = catch_unwind(AssertUnwindSafe(|| {
            futures_lite::future::block_on(sleep(Duration::from_millis(1)));
        }))
        .expect_err("a Sleep polled outside a runtime must panic");
        let msg = panic_message(&*payload);
        assert!(msg.contains("outside a fairloop runtime"), "{msg:?}");
    })
}

#[test]
fn lateness_of_sequential_1ms_sleeps_on_an_idle_core() {
    with_timeout(T, || {
        let rt = rt(2);
        let mut late = rt.block_on(async {
            let mut late = Vec::with_capacity(200);
            for _ in 0..200 {
                let d = Duration::from_millis(1);
                let t0 = Instant::now();
                sleep(d).await;
                let el = t0.elapsed();
                assert!(el >= d);
                late.push(el - d);
            }
            late
        });
        late.sort();
        let p = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
        println!(
            "200 x sleep(1ms) lateness: p50 {:?}, p99 {:?}, max {:?}",
            p(0.5),
            p(0.99),
            late[late.len() - 1]
        );
    })
}

#[test]
fn sleep_moved_to_a_task_on_another_core_still_fires() {
    with_timeout(T, || {
        let rt = rt(2);
        let r = rt.block_on(async {
            assert_eq!(core_id(), 0);
            // Registered on core 0's timers by this task...
            let mut s = Box::pin(sleep(Duration::from_millis(20)));
            assert_eq!(futures_lite::future::poll_once(s.as_mut()).await, None);
            let deadline = s.deadline();
            // ...then awaited by a task on core 1.
            let h = fairloop::partition::Partition::builder()
                .placement(fairloop::partition::Placement::Core(1))
                .build()
                .unwrap()
                .spawn(async move {
                    s.await;
                    (core_id(), Instant::now())
                });
            let r = timeout(Duration::from_secs(5), h).await;
            (r, deadline)
        });
        let (r, deadline) = r;
        let (core, at) = r.expect("a moved sleep never fired").unwrap();
        assert_eq!(core, 1);
        assert!(at >= deadline);
    })
}
