//! The bastion's memory over time. glibc's allocator keeps what threads free in their
//! arenas (one per thread that allocates: the runtime's workers, each recording's writer
//! and compression threads) and raises its thresholds after large frees, so a bastion
//! would stay at the high-water mark of its biggest floods, more so when several ran at
//! once. `serve` fixes the thresholds, and the memory a flood or a session freed is handed
//! back when it ends.

/// Allocations from this size get pages of their own, returned when freed (frame buffers,
/// zstd contexts); smaller ones come from the arenas.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Free memory at the top of an arena beyond this goes back to the system on `free`.
const TRIM_THRESHOLD: i32 = 512 * 1024;

/// Fixes glibc's thresholds (it would otherwise raise them after large frees). For `serve`,
/// before its threads start.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Hands free memory inside the arenas back to the system: at the end of a flood (on the
/// recording's thread) and of a session (off the runtime's workers).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
