//! How the process's allocator keeps freed memory, for training's allocation pattern.
//!
//! A training step allocates and frees the same large buffers (activations, gradients,
//! convolution scratch: 1 to 30 MB each for the reference CNN) every step. glibc's `malloc`
//! serves blocks above its mmap threshold (128 KiB at first, raised on the fly up to 32 MiB)
//! with a fresh `mmap` and gives them back with `munmap` when freed, and trims the top of its
//! heaps as soon as 128 KiB there are free. So every step faulted its buffers in again: the
//! kernel zeroes each fresh page, and `perf` of a step showed page faults, `clear_page` and
//! `brk` among the top entries. [`keep_freed_memory`] raises both thresholds once at start-up,
//! so freed blocks stay in the heap and the next step reuses them. Peak memory is unchanged
//! (the same blocks are live at the peak); the process simply does not hand memory back to
//! the system between steps. docs/BENCHMARKS.md has the measured effect (1.2–1.35× on the
//! reference CNN's training step on 2 cores).
//!
//! Only on Linux with glibc; elsewhere it does nothing (other allocators have their own
//! policies).

/// Raises glibc's mmap and trim thresholds (see the module docs). Call it once, at the start
/// of `main`, before other threads exist. Returns whether the allocator took both settings.
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    /// glibc refuses an mmap threshold above half its largest heap, 32 MiB on 64-bit.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    /// Free memory at the top of a heap is handed back only above 1 GiB.
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;

    pub fn keep_freed_memory() -> bool {
        // SAFETY: `mallopt` only changes two of malloc's tuning parameters. glibc takes its
        // arena lock for that (it is safe to call with other threads running, though we call
        // it before any exist); the values are plain integers within the ranges glibc checks
        // (it returns 0 and changes nothing for a value it refuses).
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
        mmap == 1 && trim == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc takes both settings (they are within its limits), and memory still works.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_thresholds() {
        assert!(super::keep_freed_memory());
        let big = vec![1u8; 20 << 20];
        assert_eq!(big.iter().map(|&b| usize::from(b)).sum::<usize>(), 20 << 20);
    }
}
