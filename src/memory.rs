//! Giving memory a run freed back to the system between the phases of a large run.
//!
//! glibc's allocator keeps what a process frees for later use, and only gives back the top of its heap. A sync run
//! frees large, many-piece structures (both tenants' members once planned, the plan once applied) while smaller ones
//! it still needs (the results) lie above them, so without help that memory stays resident for the rest of the run.
//! At 100,000 users it kept a first sync's peak 25 MB higher during the run log upload (BENCHMARKS.md).
//! `malloc_trim(0)` hands back every free page, in the middle of the heap too (madvise, glibc 2.8 and later).
//! Elsewhere (other C libraries, other systems) this does nothing.

/// Hands the pages the allocator holds free back to the system. Takes a few milliseconds on a large heap: call it
/// after a phase frees much, not in a loop.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists, locking each arena as it goes; it
    // is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
