//! Safe wrappers for the two system calls lmlab makes outside the standard library: mapping a
//! file read-only, and the process's CPU time.

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
