//! Issue 8 (memory at 100,000 open sockets): the daemon's allocator settings hold. One test per
//! binary: glibc's counters are process-wide, nothing else allocates meanwhile.

/// Blocks glibc has mapped (not served from a heap) right now (`mallinfo2`: glibc 2.33 or later).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mapped_blocks() -> usize {
    // SAFETY: returns a plain struct of counters.
    unsafe { nix::libc::mallinfo2() }.hblks
}

/// After `tune_heap`, a large passing buffer is still mapped (and so given back when freed)
/// after a larger one was freed. Without it glibc raises its threshold to the size of the block
/// freed, and the second buffer comes from the heap, between long-lived objects.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn large_buffers_stay_mapped_after_a_larger_one_was_freed() {
    assert!(monitor::sys::tune_heap(), "glibc takes the settings");
    let first = vec![1u8; 4 << 20];
    let before = mapped_blocks();
    drop(std::hint::black_box(first));
    assert_eq!(mapped_blocks(), before - 1, "a 4 MiB buffer is a mapped block, unmapped when freed");
    let second = vec![1u8; 2 * monitor::sys::MMAP_THRESHOLD];
    assert_eq!(mapped_blocks(), before, "a buffer twice the threshold is mapped, not served from the heap");
    drop(std::hint::black_box(second));
}
