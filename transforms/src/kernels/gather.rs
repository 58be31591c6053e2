//! Element-by-element strided copy (reversal, replication, scatter), with
//! the common element sizes specialised.

use std::ptr;

use super::JDim;

/// Copies `n` elements of `elem` bytes: element `i` goes from
/// `src + i * g.s` to `dst + i * g.d`.
///
/// # Safety
/// Every such source element must be readable and every destination element
/// writable, and the destination elements must not overlap the source.
pub(crate) unsafe fn gather(elem: usize, src: *const u8, dst: *mut u8, g: JDim, n: usize) {
    // SAFETY: (all arms) forwarded from the caller.
    unsafe {
        match elem {
            1 => typed::<u8>(src, dst, g, n),
            2 => typed::<u16>(src, dst, g, n),
            4 => typed::<u32>(src, dst, g, n),
            8 => typed::<u64>(src, dst, g, n),
            16 => typed::<u128>(src, dst, g, n),
            _ => {
                for i in 0..n as isize {
                    ptr::copy_nonoverlapping(src.offset(i * g.s), dst.offset(i * g.d), elem);
                }
            }
        }
    }
}

/// [`gather`] for an element type of the right size.
///
/// # Safety
/// As for [`gather`] with `elem = size_of::<T>()`.
#[inline(always)]
unsafe fn typed<T: Copy>(src: *const u8, dst: *mut u8, g: JDim, n: usize) {
    for i in 0..n as isize {
        // SAFETY: element `i` is inside both ranges (caller); unaligned
        // accesses need no alignment.
        unsafe {
            let v = ptr::read_unaligned(src.offset(i * g.s) as *const T);
            ptr::write_unaligned(dst.offset(i * g.d) as *mut T, v);
        }
    }
}

/// [`gather`] with non-temporal stores where the target has them, for
/// 4- and 8-byte elements written to aligned destinations; an ordinary
/// [`gather`] otherwise.
///
/// # Safety
/// As for [`gather`].
pub(crate) unsafe fn gather_nt(elem: usize, src: *const u8, dst: *mut u8, g: JDim, n: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::{_mm_stream_si32, _mm_stream_si64};
        let aligned = (dst as usize).is_multiple_of(elem) && g.d % elem as isize == 0;
        if elem == 8 && aligned {
            for i in 0..n as isize {
                // SAFETY: element `i` is inside both ranges (caller) and the
                // destination is 8-byte aligned (checked).
                unsafe {
                    let v = ptr::read_unaligned(src.offset(i * g.s) as *const i64);
                    _mm_stream_si64(dst.offset(i * g.d) as *mut i64, v);
                }
            }
            return;
        }
        if elem == 4 && aligned {
            for i in 0..n as isize {
                // SAFETY: as above, 4-byte aligned.
                unsafe {
                    let v = ptr::read_unaligned(src.offset(i * g.s) as *const i32);
                    _mm_stream_si32(dst.offset(i * g.d) as *mut i32, v);
                }
            }
            return;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { gather(elem, src, dst, g, n) }
}
