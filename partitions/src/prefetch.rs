//! Hints to the CPU to start loading memory the scheduler touches next.
//!
//! With thousands of partitions, each turn belongs to a different one whose
//! state (its slot, its statistics) was last touched a whole round ago: a
//! cache miss, and with 4 KiB pages a TLB miss, on the first touch of each.
//! The order of the next turns is known a turn ahead (the runnable set is
//! ordered), so the scheduler asks for that state while the current turn's
//! task runs, and finds it in cache when the turn begins.

/// Asks the CPU to bring the cache line at `p` (and, for a value spanning
/// more, the following one: at most two lines) into its caches. A hint
/// only: no effect on the program's behaviour, whatever `p` points to
/// (the runtime uses it for its own per-partition state the same way).
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = p.cast::<i8>();
        // SAFETY: a prefetch has no architectural effect: it never faults,
        // whatever the address (dangling, unmapped or null), and reads or
        // writes nothing the program can observe. `wrapping_add` keeps the
        // address computation itself defined.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if std::mem::size_of::<T>() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
