//! Keep freed result buffers in the process's heap, so that the next step reuses them.
//!
//! A paper-size step allocates a handful of [n × width] results (20 MB each in f32, 41 MB in f64)
//! and frees them before the next step asks for the same sizes again. glibc's malloc serves
//! blocks that large with a fresh `mmap` and returns them with `munmap` (or trims them off the
//! heap's top once 2× the block is free), so every step faults every page of every result in
//! again: 60,000–130,000 page faults a step, 12 % of a paper-size f32 step's time in a profile.
//! With mmap off and the trim threshold raised, a freed block stays mapped and the next one of
//! its size lands in it. The peak footprint is unchanged; what changes is that memory freed
//! below 1 GiB of free heap top is kept for reuse instead of returned to the system. (Threads
//! other than the main one allocate from glibc arenas of 64 MB heaps, which still map larger
//! blocks afresh; a paper-size result, 41 MB in f64, fits.)
//!
//! Process-wide, set once on the first kernel call; `EOSLAB_MALLOC=system` leaves glibc's
//! defaults. Elsewhere than glibc (musl, macOS, Windows) it does nothing.

use std::sync::Once;

/// Free heap top (bytes) beyond which glibc still returns memory to the system.
pub const TRIM_THRESHOLD: usize = 1 << 30;

static KEEP: Once = Once::new();

/// Configure the allocator to keep freed buffers (once per process; see the module docs).
pub fn keep_freed_buffers() {
    KEEP.call_once(|| {
        if std::env::var("EOSLAB_MALLOC").is_ok_and(|v| v == "system") {
            return;
        }
        configure();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn configure() {
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc and both
    // parameters are documented (mallopt(3)). A rejected value leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn configure() {}
