//! The receive buffers a core's ring lends to `recv`s as data arrives
//! (io_uring "provided buffers").
//!
//! A `recv` in flight on an idle connection would otherwise hold a buffer
//! of the reader's size for as long as the peer stays silent: 10,000 idle
//! keep-alive connections reading into 8 KiB buffers would pin 80 MiB. With
//! a pool, the `recv` names the pool instead of a buffer, and the kernel
//! picks a free buffer only when bytes arrive; the completion says which.
//! The core copies the bytes into the stream (sized to what arrived) and
//! hands the buffer straight back, so an idle connection holds no receive
//! buffer at all, and the pool needs only as many buffers as reads
//! complete between two harvests.
//!
//! When the pool runs dry the `recv` fails with `ENOBUFS` and the stream
//! falls back to a buffer of its own for that read.
//!
//! Sharing memory with the kernel: the ring of buffer descriptors is read
//! by the kernel (it consumes from the head, we publish at the tail with a
//! release store), and a buffer is written by the kernel from the moment it
//! is published until its completion names it. Both live until the pool is
//! unregistered, which [`Ring`](super::uring::Ring) does only after every
//! operation has completed.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Buffers in a pool: reads completing between two harvests of one core.
const COUNT: u16 = 256;
/// The size of each buffer: the most one pooled `recv` returns.
pub(crate) const BUF_SIZE: usize = 16 * 1024;
/// The buffer group id of a core's pool (one pool per ring).
pub(crate) const GROUP: u16 = 0;
/// The distance between two buffers' starts: one cache line more than a
/// buffer. With starts 16 KiB apart, the first lines of all the buffers
/// (where a short message lands) would fall in the same few cache sets, and
/// the kernel's copy into the buffer the ring hands out next would miss the
/// cache as they cycle; one line of stagger spreads them over every set.
const STRIDE: usize = BUF_SIZE + 64;

/// A ring of provided buffers registered with one io_uring.
pub(crate) struct BufPool {
    /// `COUNT` descriptors, page-aligned as the kernel requires.
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// `COUNT * STRIDE` bytes, zeroed (lazily, by the allocator's fresh
    /// pages), so every byte is initialised for Rust.
    memory: *mut u8,
    memory_layout: Layout,
    /// Our copy of the tail: the next descriptor slot to publish.
    tail: u16,
}

// SAFETY: the pool is owned by one ring, which is used from one thread at a
// time (its core's); the raw pointers are owned allocations.
unsafe impl Send for BufPool {}

impl BufPool {
    /// Allocates the pool, registers it with `uring` as group [`GROUP`]
    /// and publishes every buffer.
    pub(crate) fn new(uring: &IoUring) -> io::Result<BufPool> {
        let entries_layout =
            Layout::from_size_align(COUNT as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        // A small alignment lets the allocator take fresh zero pages from
        // the OS (`calloc`) instead of zeroing 4 MiB by hand: the pool then
        // costs resident memory only for the buffers that receive bytes.
        let memory_layout =
            Layout::from_size_align(COUNT as usize * STRIDE, 16).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size; a null result is
        // handled before anything else touches either pointer.
        let (entries, memory) = unsafe {
            (
                alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc_zeroed(memory_layout),
            )
        };
        if entries.is_null() || memory.is_null() {
            // SAFETY: each non-null one was allocated just now with its
            // layout, and is not used again.
            unsafe {
                if !entries.is_null() {
                    dealloc(entries.cast(), entries_layout);
                }
                if !memory.is_null() {
                    dealloc(memory, memory_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut pool = BufPool {
            entries,
            entries_layout,
            memory,
            memory_layout,
            tail: 0,
        };
        // SAFETY: `entries` holds `COUNT` descriptors and stays allocated
        // until `Drop`, which the ring runs only after unregistering.
        unsafe {
            uring
                .submitter()
                .register_buf_ring(entries as u64, COUNT, GROUP)?;
        }
        for bid in 0..COUNT {
            pool.publish(bid);
        }
        pool.commit();
        Ok(pool)
    }

    /// The first `len` bytes the kernel wrote into buffer `bid`.
    pub(crate) fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < COUNT && len <= BUF_SIZE,
            "buffer {bid} of {len} bytes"
        );
        // SAFETY: in bounds (checked), initialised (zeroed at allocation,
        // then written by the kernel), and not written again until `bid`
        // is handed back with `recycle`, which takes `&mut self`.
        unsafe { std::slice::from_raw_parts(self.memory.add(bid as usize * STRIDE), len) }
    }

    /// Hands buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        self.publish(bid);
        self.commit();
    }

    fn publish(&mut self, bid: u16) {
        let slot = (self.tail & (COUNT - 1)) as usize;
        // SAFETY: `slot < COUNT`; the kernel reads descriptors only between
        // its head and the published tail, and this slot is past the tail.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid < COUNT`, so the address is inside `memory`.
        entry.set_addr(unsafe { self.memory.add(bid as usize * STRIDE) } as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the published descriptors visible to the kernel.
    fn commit(&self) {
        // SAFETY: the tail is a `u16` inside the first descriptor, which the
        // kernel only reads; `AtomicU16` has the same layout and the release
        // store orders the descriptor writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries)
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Unregisters the pool from `uring` (after every operation using it
    /// has completed); only then may it be dropped.
    pub(crate) fn unregister(&self, uring: &IoUring) {
        let _ = uring.submitter().unregister_buf_ring(GROUP);
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring
        // unregistered the pool (or leaked it, if the kernel kept
        // operations) before dropping it.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}
