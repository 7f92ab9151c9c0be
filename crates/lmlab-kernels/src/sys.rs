//! Safe wrappers for the system calls lmlab makes outside the standard library: mapping a
//! file read-only, the process's CPU time, and telling malloc to keep freed memory.

use std::fs::File;
use std::io;

/// A read-only memory map of a whole file.
///
/// Mapping is `unsafe` in memmap2 because another process may change or truncate the file
/// while it is mapped, which would change memory Rust treats as immutable. lmlab only maps
/// files it never rewrites in place (token shards are written to a temporary file and renamed
/// over the old one, so a reader keeps the old inode), which is the contract callers accept.
pub fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the file is open read-only, and by this function's documented contract nobody
    // modifies it in place while the map lives (lmlab writes such files by rename).
    unsafe { memmap2::Mmap::map(file) }
}

/// User + system CPU seconds used so far by this process, or with `children` by the child
/// processes already waited for. NaN where the call fails.
pub fn cpu_seconds(children: bool) -> f64 {
    #[cfg(unix)]
    {
        let who = if children { libc::RUSAGE_CHILDREN } else { libc::RUSAGE_SELF };
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes one `rusage` into the zeroed struct we own; `who` is one of
        // the two valid constants.
        if unsafe { libc::getrusage(who, usage.as_mut_ptr()) } != 0 {
            return f64::NAN;
        }
        // SAFETY: zero bits are a valid rusage (all integers), and getrusage filled it.
        let usage = unsafe { usage.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }
    #[cfg(not(unix))]
    {
        let _ = children;
        f64::NAN
    }
}

/// Asks glibc's malloc to keep the memory that tensors free, for the next step to reuse,
/// instead of handing it back to the kernel. Returns whether both settings took.
///
/// Why: a training step frees and reallocates the same few hundred megabytes of activations and
/// gradients. By default glibc serves blocks over its (adaptive) mmap threshold with fresh
/// `mmap`s and trims the heap's top whenever 128 KiB are free, so every step faults in
/// zeroed pages again: on `configs/small.toml` that was 6.5 of 11 s in the kernel, and a step
/// took 1.6x as long (docs/PERFORMANCE.md). Blocks up to 32 MiB (glibc's maximum threshold)
/// now come from the heap, and the heap is never trimmed. The cost is that a process keeps its
/// peak heap until it exits, which is what a training job does anyway.
///
/// A no-op returning false on systems without glibc.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit targets: larger values are refused.
        const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes malloc's tuning parameters; both are documented options
        // taking an int, and any value in range is valid at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
