//! A counting global allocator for the test binaries that measure the heap or the allocations
//! of what they run: bytes live and allocation calls, process-wide (so one measuring test per
//! binary). Each binary installs it: `#[global_allocator] static A: Counting = Counting;`.

#![allow(dead_code, reason = "each test binary reads one of the counts")]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, AtomicU64, Ordering},
};

/// Bytes allocated and not freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Allocations made (a reallocation is an allocation and a free: `GlobalAlloc`'s default).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counted.
pub struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Bytes the process holds on the heap (through this allocator).
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations made so far.
pub fn allocations() -> u64 {
    CALLS.load(Ordering::Relaxed)
}
