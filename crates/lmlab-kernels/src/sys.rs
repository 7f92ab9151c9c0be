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

/// The size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// A zeroed byte buffer for large read-mostly data (a model's weights), aligned to 2 MiB and
/// advised to the kernel as huge-page memory (`madvise(MADV_HUGEPAGE)`) before its first
/// touch, so that its pages are 2 MiB instead of 4 KiB where transparent huge pages are
/// enabled ("always" or "madvise", the usual default).
///
/// Why: a decode step streams every weight once (96 MB for SmolLM2-135M in Q4_1). With 4 KiB
/// pages that is ~24,000 TLB misses per token, each a page walk, nested under virtualisation;
/// with 2 MiB pages, ~50. Measured on SmolLM2-135M Q4_1 (docs/PERFORMANCE.md, step 18):
/// decode 2–8% faster. Elsewhere it is an ordinary aligned allocation.
pub struct HugePageBuffer {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    layout: std::alloc::Layout,
}

// SAFETY: the buffer owns its allocation outright (no aliasing handles exist), like a Box<[u8]>.
unsafe impl Send for HugePageBuffer {}
// SAFETY: shared references only read it, like &[u8].
unsafe impl Sync for HugePageBuffer {}

impl HugePageBuffer {
    /// `len` zero bytes (the allocation is rounded up to whole huge pages).
    pub fn zeroed(len: usize) -> Self {
        let size = len.max(1).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let layout = std::alloc::Layout::from_size_align(size, HUGE_PAGE).expect("a huge-page layout of a valid size");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        #[cfg(target_os = "linux")]
        // SAFETY: [ptr, ptr + size) is our allocation, aligned to the page size as madvise
        // requires; the advice changes only how the kernel backs it, never its contents. A
        // failure (THP disabled, an old kernel) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(raw.cast(), size, libc::MADV_HUGEPAGE);
        }
        // SAFETY: the allocation is `size >= len` bytes; zeroing it is its first touch, so the
        // advice above applies to every page faulted in here.
        unsafe { std::ptr::write_bytes(raw, 0, size) };
        Self { ptr, len, layout }
    }

    /// A copy of `bytes` in huge-page memory.
    pub fn copy_of(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.copy_from_slice(bytes);
        b
    }
}

impl std::ops::Deref for HugePageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to an initialised (zeroed, then written) allocation of at least
        // `len` bytes that lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HugePageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugePageBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, and freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_page_buffer_is_aligned_zeroed_and_holds_what_is_written() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let b = HugePageBuffer::copy_of(&data);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(&b[..], &data[..]);
        let z = HugePageBuffer::zeroed(10);
        assert_eq!(&z[..], &[0u8; 10]);
        assert!(HugePageBuffer::zeroed(0).is_empty());
    }
}
