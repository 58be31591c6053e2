//! Non-temporal ("streaming") stores: bytes written around the caches, for
//! copies larger than the last-level cache. On other targets, and under
//! Miri, they are ordinary copies.

/// Copies `len` bytes from `src` to `dst`, with non-temporal stores where
/// the target has them (16-byte aligned body; unaligned head and tail are
/// ordinary stores). Call [`fence`] before other threads read the bytes.
///
/// # Safety
/// `src` must be valid for reading and `dst` for writing `len` bytes, and the
/// two ranges must not overlap.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
pub(crate) unsafe fn stream_copy(dst: *mut u8, src: *const u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    let head = dst.align_offset(16).min(len);
    // SAFETY: the caller guarantees both ranges of `len` bytes; `head <= len`.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
    let mut done = head;
    while done + 64 <= len {
        // SAFETY: `done + 64 <= len` keeps the four 16-byte loads and stores
        // inside the ranges; `dst + done` is 16-byte aligned (head aligned it
        // and `done` grows by multiples of 16), as `_mm_stream_si128` needs.
        // SSE2 is part of the x86_64 baseline.
        unsafe {
            let s = src.add(done) as *const __m128i;
            let d = dst.add(done) as *mut __m128i;
            let (v0, v1, v2, v3) = (
                _mm_loadu_si128(s),
                _mm_loadu_si128(s.add(1)),
                _mm_loadu_si128(s.add(2)),
                _mm_loadu_si128(s.add(3)),
            );
            _mm_stream_si128(d, v0);
            _mm_stream_si128(d.add(1), v1);
            _mm_stream_si128(d.add(2), v2);
            _mm_stream_si128(d.add(3), v3);
        }
        done += 64;
    }
    while done + 16 <= len {
        // SAFETY: as above, for one 16-byte chunk.
        unsafe {
            let v = _mm_loadu_si128(src.add(done) as *const __m128i);
            _mm_stream_si128(dst.add(done) as *mut __m128i, v);
        }
        done += 16;
    }
    // SAFETY: the tail `done..len` lies inside both ranges.
    unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done) };
}

/// Portable fallback: an ordinary copy.
///
/// # Safety
/// As for the x86_64 version.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
#[inline]
pub(crate) unsafe fn stream_copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

/// Orders this thread's non-temporal stores before its later stores (and so
/// before whatever tells other threads the work is done).
#[inline]
pub(crate) fn fence() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `sfence` has no memory operands; SSE is part of the baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}
