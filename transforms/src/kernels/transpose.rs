//! Two-dimensional transpose: register-blocked micro-tiles (8x8 elements
//! for 8-byte elements, 8x16 for 4-byte, 4x4 for 16-byte, ...) marched in
//! bands and strips, with non-temporal stores for copies larger than the
//! last-level cache; 4-byte elements whose source rows collide in the caches
//! go through a staging buffer.
//!
//! The problem: element `(ia, ib)` is read at `src + ia * E + ib * sb` (rows
//! of the source run along `a`) and written at `dst + ia * da + ib * E`
//! (rows of the destination run along `b`).

use std::mem::size_of;
use std::ptr;

use bytemuck::Pod;

use super::stream::stream_copy;

/// Strides and extents of a batch of transposes of the same shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transpose {
    /// Element size in bytes.
    pub elem: usize,
    /// Extent along `a` (contiguous in the source).
    pub na: usize,
    /// Extent along `b` (contiguous in the destination).
    pub nb: usize,
    /// Source byte stride along `b`.
    pub sb: isize,
    /// Destination byte stride along `a`.
    pub da: isize,
    /// Transposes in the batch (at least 1): transpose `c` reads from
    /// `src + c * sc` and writes to `dst + c * dc`.
    pub nc: usize,
    /// Source byte stride along the batch.
    pub sc: isize,
    /// Destination byte stride along the batch.
    pub dc: isize,
}

impl Transpose {
    /// Transpose `c` of the batch alone, with its source and destination
    /// byte offsets from the first.
    fn single(&self, c: usize) -> (Transpose, isize, isize) {
        let one = Transpose { nc: 1, ..*self };
        (one, c as isize * self.sc, c as isize * self.dc)
    }
}

/// Runs the batch of transposes `t`: the staged kernel interleaves its
/// transposes (see [`staged_4`]), the others run them one after the other.
///
/// # Safety
/// Every element `(ia, ib)` with `ia < na`, `ib < nb` of every transpose
/// `c < nc` must be readable at its source address and writable at its
/// destination address, and the destination elements must not overlap each
/// other or the source.
pub(crate) unsafe fn transpose(t: Transpose, src: *const u8, dst: *mut u8, nt: bool) {
    if t.elem == 4 && staged(&t) {
        // SAFETY: forwarded from the caller.
        unsafe { staged_4(t, src, dst, nt, simd::micro_4(), simd::micro_4_wide()) };
        return;
    }
    for c in 0..t.nc {
        let (t, s, d) = t.single(c);
        // SAFETY: (all arms) transpose `c` of the batch, forwarded from the
        // caller; each arm's element type has size `t.elem`.
        unsafe {
            let (src, dst) = (src.offset(s), dst.offset(d));
            match t.elem {
                1 => blocked::<u8, 64, 8>(t, src, dst, nt, micro::<u8, 64, 8>),
                2 => blocked::<u16, 32, 8>(t, src, dst, nt, micro::<u16, 32, 8>),
                4 => blocked::<u32, 8, 16>(t, src, dst, nt, simd::micro_4()),
                8 => blocked::<u64, 8, 8>(t, src, dst, nt, simd::micro_8()),
                16 => blocked::<[u64; 2], 4, 4>(t, src, dst, nt, simd::MICRO_16),
                _ => generic(t, src, dst),
            }
        }
    }
}

/// A micro-tile kernel: `(src, sb, dst, da, nt)`, see [`micro`].
type Micro = unsafe fn(*const u8, isize, *mut u8, isize, bool);

/// Destination rows per strip of the blocked transpose. With rows pages
/// apart, a strip touches this many destination pages per band, which
/// should stay well inside the second-level TLB alongside the band's
/// source pages: an 8192^2 8-byte transpose ran at 0.79-0.90 of a memcpy
/// with 256 rows, 0.74-0.89 with 128 or 512, 0.67-0.82 with 1024 and
/// 0.42-0.46 with 4096.
const STRIP: usize = 256;

/// Source rows marched together along `a` for elements of 4 bytes or more
/// (1- and 2-byte elements keep bands of one cache line of rows). Rows a
/// power of two apart share their cache sets, so every row of a band
/// competes for the same few ways: with 16 rows, a 512^3 4-byte reversal
/// and an 8192^2 8-byte transpose ran at 0.72-0.77 and 1.02-1.04 of a
/// one-thread memcpy, against 0.55-0.58 and 0.75-0.87 with 32 rows.
const BAND: usize = 16;

/// How far ahead along its row a source line is prefetched, in bytes.
const PREFETCH: usize = 256;

/// 4-byte transposes whose source rows lie a multiple of this many bytes
/// apart go through a staging buffer (see [`staged_4`]).
pub(super) const STAGE_ALIAS: isize = 128 << 10;

/// Source rows staged together by [`staged_4`]: each destination row
/// receives `4 * STAGE_ROWS` contiguous bytes per visit.
const STAGE_ROWS: usize = 32;

/// Bytes of each source row staged at a time by [`staged_4`].
const STAGE_BYTES: usize = 512;

/// Whether the 4-byte transpose `t` is staged: its source rows share their
/// cache sets, so the rows of a band overflow the ways of a set.
fn staged(t: &Transpose) -> bool {
    t.elem == 4 && t.sb % STAGE_ALIAS == 0
}

/// Number of leading indices to skip so that rows of stride `stride`
/// starting at `addr` begin on a cache line (0 when the rows do not share an
/// alignment or the element size does not divide the gap).
fn line_head(addr: usize, stride: isize, elem: usize, n: usize) -> usize {
    if stride % 64 != 0 || !addr.is_multiple_of(elem) {
        return 0;
    }
    let gap = (64 - addr % 64) % 64;
    if !gap.is_multiple_of(elem) {
        return 0;
    }
    (gap / elem).min(n)
}

/// Register-blocked transpose for `T` of `t.elem` bytes and micro-tiles of
/// `MA x MB` elements transposed by `kernel`. With rows a power of two
/// apart, lines of neighbouring rows collide in the same cache sets, and
/// streaming stores combine only a few lines at a time, so the micro-tiles
/// are shaped to use whole cache lines: 8-byte elements read and write
/// whole lines, 4-byte elements write whole lines and read each source line
/// in two neighbouring micro-tiles.
///
/// # Safety
/// As for [`transpose`]; `kernel` must be a micro-tile kernel for `MA x MB`
/// elements of `size_of::<T>()` bytes.
unsafe fn blocked<T: Pod, const MA: usize, const MB: usize>(
    t: Transpose,
    src: *const u8,
    dst: *mut u8,
    nt: bool,
    kernel: Micro,
) {
    let e = size_of::<T>();
    let ha = line_head(src as usize, t.sb, e, t.na);
    let hb = line_head(dst as usize, t.da, e, t.nb);
    let a_end = ha + (t.na - ha) / MA * MA;
    let b_end = hb + (t.nb - hb) / MB * MB;
    // Strips of `STRIP` destination rows; inside a strip, bands of `BAND`
    // source rows marched along `a`. A band's rows are read as sequential
    // streams (prefetched `PREFETCH` bytes ahead), each destination row
    // receives one or more whole cache lines per step, and a strip touches
    // few enough pages to stay in the TLB when rows are pages apart.
    let band = if e >= 4 { BAND.max(MB) } else { 64 / e };
    let pf = PREFETCH / e;
    for a0 in (ha..a_end).step_by(STRIP) {
        let a1 = (a0 + STRIP).min(a_end);
        for b0 in (hb..b_end).step_by(band) {
            let b1 = (b0 + band).min(b_end);
            for aa in (a0..a1).step_by(MA) {
                for bb in (b0..b1).step_by(MB) {
                    for r in 0..MB {
                        let row = src.wrapping_offset((bb + r) as isize * t.sb);
                        simd::prefetch(row.wrapping_add((aa + pf) * e));
                    }
                    // SAFETY: the micro-tile `aa..aa+MA` x `bb..bb+MB` lies in
                    // the `na x nb` problem, whose elements the caller
                    // guarantees.
                    unsafe {
                        kernel(
                            src.offset(bb as isize * t.sb).add(aa * e),
                            t.sb,
                            dst.offset(aa as isize * t.da).add(bb * e),
                            t.da,
                            nt,
                        )
                    };
                }
            }
        }
    }
    // SAFETY: the body `ha..a_end` x `hb..b_end` lies in the problem.
    unsafe { borders::<T>(t, src, dst, ha..a_end, hb..b_end) };
}

/// Staged transpose of 4-byte elements for source rows that collide in the
/// caches: bands of [`STAGE_ROWS`] source rows are copied [`STAGE_BYTES`]
/// at a time into a contiguous local buffer (each source row read as a
/// sequential run of whole lines), and the micro-tiles transposed from
/// there write [`STAGE_ROWS`] elements (two whole cache lines) to each
/// destination row. Scattered streaming stores of 64 bytes ran at about
/// half the rate of sequential ones on the machine measured, of 128 bytes
/// at about three quarters; larger stages no longer fit the first-level
/// cache and ran slower.
///
/// Full bands go through the 8x32 `wide` kernel where there is one, which
/// stores both lines of a destination row back to back; otherwise two 8x16
/// tiles of `kernel` each visit the same eight destination rows, whose
/// pages (a megabyte apart in the 512^3 reversal) compete for one set of
/// the first-level TLB. The 512^3 4-byte reversal on ordinary pages ran at
/// 0.69-0.87 of a memcpy with the wide kernel against 0.68-0.84 without it,
/// ahead in nine of ten alternating runs.
///
/// Runs of a few lines on rows a page or more apart get little from the
/// hardware prefetchers, so each stage would wait for its source lines:
/// while one stage is transposed, the rows of the next are prefetched into
/// the second-level cache, one row per micro-tile.
///
/// The transposes of a batch take turns on each band of source rows, so
/// neighbouring slices that share the pages of those rows read them close
/// together in time (alternating between them at every stage instead ran
/// slower than one transpose at a time).
///
/// # Safety
/// As for [`transpose`] with `t.elem == 4`; `kernel` must be an 8x16
/// and `wide` an 8x32 micro-tile kernel for 4-byte elements.
unsafe fn staged_4(
    t: Transpose,
    src: *const u8,
    dst: *mut u8,
    nt: bool,
    kernel: Micro,
    wide: Option<Micro>,
) {
    /// The staging buffer: [`STAGE_ROWS`] rows of [`STAGE_BYTES`].
    #[repr(C, align(64))]
    struct Stage([[u8; STAGE_BYTES]; STAGE_ROWS]);
    const MA: usize = 8;
    const MB: usize = 16;
    let mut stage = std::mem::MaybeUninit::<Stage>::uninit();
    let buf = stage.as_mut_ptr() as *mut u8;
    let ha = line_head(src as usize, t.sb, 4, t.na);
    let hb = line_head(dst as usize, t.da, 4, t.nb);
    let a_end = ha + (t.na - ha) / MA * MA;
    let b_end = hb + (t.nb - hb) / MB * MB;
    let cols = STAGE_BYTES / 4;
    let chunks = (a_end - ha).div_ceil(cols);
    let per_band = t.nc * chunks;
    let stages = (b_end - hb).div_ceil(STAGE_ROWS) * per_band;
    // Stage `q`: its first source row `b0`, transpose `c` and first element
    // `a0` of the rows, with the transposes of the batch in turn on each
    // band of rows.
    let stage = |q: usize| {
        let (band, k) = (q / per_band, q % per_band);
        (hb + band * STAGE_ROWS, k / chunks, ha + k % chunks * cols)
    };
    for q in 0..stages {
        let (b0, c, a0) = stage(q);
        let rows = (b_end - b0).min(STAGE_ROWS);
        let width = (a_end - a0).min(cols);
        let src_c = src.wrapping_offset(c as isize * t.sc);
        let dst_c = dst.wrapping_offset(c as isize * t.dc);
        let (next, next_rows, next_bytes) = if q + 1 < stages {
            let (nb0, nc, na0) = stage(q + 1);
            let first = src.wrapping_offset(nc as isize * t.sc + nb0 as isize * t.sb);
            let rows = (b_end - nb0).min(STAGE_ROWS);
            (
                first.wrapping_add(na0 * 4),
                rows,
                (a_end - na0).min(cols) * 4,
            )
        } else {
            (src, 0, 0)
        };
        let prefetch_row = |r: usize| {
            prefetch_run(next.wrapping_offset(r as isize * t.sb), next_bytes);
        };
        let mut ahead = 0..next_rows;
        // SAFETY: source rows `b0..b0 + rows`, elements `a0..a0 + width` of
        // transpose `c` lie in the problem; staged row `r` takes the first
        // `4 * width <= STAGE_BYTES` bytes of row `r < STAGE_ROWS` of the
        // buffer, and the micro-tiles read only those staged bytes (`rows`
        // and `width` are multiples of the tile) and write destination
        // elements of the problem.
        unsafe {
            for r in 0..rows {
                ptr::copy_nonoverlapping(
                    src_c.offset((b0 + r) as isize * t.sb).add(a0 * 4),
                    buf.add(r * STAGE_BYTES),
                    width * 4,
                );
            }
            for aa in (0..width).step_by(MA) {
                match wide {
                    Some(wide) if rows == 2 * MB => {
                        ahead.by_ref().take(2).for_each(prefetch_row);
                        wide(
                            buf.add(aa * 4),
                            STAGE_BYTES as isize,
                            dst_c.offset((a0 + aa) as isize * t.da).add(b0 * 4),
                            t.da,
                            nt,
                        );
                    }
                    _ => {
                        for bb in (0..rows).step_by(MB) {
                            if let Some(r) = ahead.next() {
                                prefetch_row(r);
                            }
                            kernel(
                                buf.add(bb * STAGE_BYTES + aa * 4),
                                STAGE_BYTES as isize,
                                dst_c.offset((a0 + aa) as isize * t.da).add((b0 + bb) * 4),
                                t.da,
                                nt,
                            );
                        }
                    }
                }
            }
        }
        // Stages of fewer micro-tiles than rows: the rest of the next.
        ahead.for_each(prefetch_row);
    }
    for c in 0..t.nc {
        let (one, s, d) = t.single(c);
        // SAFETY: the body `ha..a_end` x `hb..b_end` of transpose `c` lies
        // in the problem.
        unsafe { borders::<u32>(one, src.offset(s), dst.offset(d), ha..a_end, hb..b_end) };
    }
}

/// Hints that the `len` bytes from `p` will be read soon, into the
/// second-level cache.
fn prefetch_run(p: *const u8, len: usize) {
    let head = p as usize % 64;
    let line = p.wrapping_sub(head);
    for off in (0..head + len).step_by(64) {
        simd::prefetch_l2(line.wrapping_add(off));
    }
}

/// Transposes what lies outside the body `ar x br` (left by alignment and
/// by extents not multiple of a tile) element by element.
///
/// # Safety
/// `ar x br` must lie in the problem of [`transpose`], `T` be `t.elem`
/// bytes.
unsafe fn borders<T: Pod>(
    t: Transpose,
    src: *const u8,
    dst: *mut u8,
    ar: std::ops::Range<usize>,
    br: std::ops::Range<usize>,
) {
    // SAFETY: (all four) sub-ranges of the problem.
    unsafe {
        scalar::<T>(t, src, dst, 0..ar.start, 0..t.nb);
        scalar::<T>(t, src, dst, ar.end..t.na, 0..t.nb);
        scalar::<T>(t, src, dst, ar.clone(), 0..br.start);
        scalar::<T>(t, src, dst, ar, br.end..t.nb);
    }
}

/// Transposes one micro-tile through registers: `MB` source rows of `MA`
/// elements loaded whole, `MA` destination rows of `MB` elements stored
/// whole (portable version).
///
/// # Safety
/// The elements at `src + r * sb + c * E` must be readable and those at
/// `dst + c * da + r * E` writable, without overlap, for `r < MB`, `c < MA`.
unsafe fn micro<T: Pod, const MA: usize, const MB: usize>(
    src: *const u8,
    sb: isize,
    dst: *mut u8,
    da: isize,
    nt: bool,
) {
    let mut tile = [[T::zeroed(); MA]; MB];
    for (r, row) in tile.iter_mut().enumerate() {
        // SAFETY: row `r` of the micro-tile is MA readable elements.
        *row = unsafe { ptr::read_unaligned(src.offset(r as isize * sb) as *const [T; MA]) };
    }
    for c in 0..MA {
        let mut out = [T::zeroed(); MB];
        for (o, row) in out.iter_mut().zip(&tile) {
            *o = row[c];
        }
        // SAFETY: destination row `c` of the micro-tile is MB writable
        // elements; `out` is a local.
        unsafe {
            let d = dst.offset(c as isize * da);
            if nt {
                stream_copy(d, out.as_ptr() as *const u8, size_of::<[T; MB]>());
            } else {
                ptr::write_unaligned(d as *mut [T; MB], out);
            }
        }
    }
}

/// Element-by-element transpose of the sub-rectangle `ar x br`.
///
/// # Safety
/// The sub-rectangle must lie in the problem of [`transpose`].
unsafe fn scalar<T: Pod>(
    t: Transpose,
    src: *const u8,
    dst: *mut u8,
    ar: std::ops::Range<usize>,
    br: std::ops::Range<usize>,
) {
    let e = size_of::<T>();
    for ib in br {
        for ia in ar.clone() {
            // SAFETY: `(ia, ib)` is an element of the problem.
            unsafe {
                let v = ptr::read_unaligned(src.offset(ib as isize * t.sb).add(ia * e) as *const T);
                ptr::write_unaligned(dst.offset(ia as isize * t.da).add(ib * e) as *mut T, v);
            }
        }
    }
}

/// Cache-blocked transpose for element sizes without a specialisation.
///
/// # Safety
/// As for [`transpose`].
unsafe fn generic(t: Transpose, src: *const u8, dst: *mut u8) {
    const B: usize = 16;
    let e = t.elem;
    for b0 in (0..t.nb).step_by(B) {
        for a0 in (0..t.na).step_by(B) {
            for ib in b0..(b0 + B).min(t.nb) {
                for ia in a0..(a0 + B).min(t.na) {
                    // SAFETY: `(ia, ib)` is an element of the problem.
                    unsafe {
                        ptr::copy_nonoverlapping(
                            src.offset(ib as isize * t.sb).add(ia * e),
                            dst.offset(ia as isize * t.da).add(ib * e),
                            e,
                        )
                    };
                }
            }
        }
    }
}

/// Micro-tile kernels with SSE2 shuffles (part of the x86_64 baseline):
/// values go from source rows to destination rows in registers, and
/// streaming stores need no staging buffer.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi32, _mm_unpackhi_epi64,
        _mm_unpacklo_epi32, _mm_unpacklo_epi64,
    };

    use super::Micro;

    /// The best 4-byte micro-kernel this processor runs.
    pub(super) fn micro_4() -> Micro {
        #[cfg(not(miri))]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            return micro_4_avx512;
        }
        #[cfg(not(miri))]
        if std::arch::is_x86_feature_detected!("avx") {
            return micro_4_avx;
        }
        micro_4_sse2
    }

    /// An 8x32 4-byte micro-kernel storing each destination row's two
    /// cache lines together, where this processor has one.
    pub(super) fn micro_4_wide() -> Option<Micro> {
        #[cfg(not(miri))]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            return Some(micro_4_wide_avx512);
        }
        None
    }

    /// Hints that the line at `p` will be read soon, into the second-level
    /// cache.
    #[inline(always)]
    pub(super) fn prefetch_l2(p: *const u8) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p as *const i8)
        };
    }

    /// Hints that the line at `p` will be read soon.
    #[inline(always)]
    pub(super) fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
        };
    }

    /// The best 8-byte micro-kernel this processor runs.
    pub(super) fn micro_8() -> Micro {
        #[cfg(not(miri))]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return micro_8_avx512;
        }
        #[cfg(not(miri))]
        if std::arch::is_x86_feature_detected!("avx") {
            return micro_8_avx;
        }
        micro_8_sse2
    }
    pub(super) const MICRO_16: Micro = micro_16;

    /// Loads 16 bytes.
    ///
    /// # Safety
    /// `p` must be readable for 16 bytes.
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m128i {
        // SAFETY: forwarded; the load is unaligned.
        unsafe { _mm_loadu_si128(p as *const __m128i) }
    }

    /// Stores 16 bytes, streaming when `nt` (then `p` is 16-byte aligned
    /// whenever the destination rows and their start are).
    ///
    /// # Safety
    /// `p` must be writable for 16 bytes.
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m128i, nt: bool) {
        #[cfg(not(miri))]
        if nt && (p as usize).is_multiple_of(16) {
            // SAFETY: writable (caller) and aligned (checked).
            unsafe { std::arch::x86_64::_mm_stream_si128(p as *mut __m128i, v) };
            return;
        }
        let _ = nt;
        // SAFETY: writable (caller); the store is unaligned.
        unsafe { _mm_storeu_si128(p as *mut __m128i, v) };
    }

    /// 8x8 tile of 8-byte elements as 2x2 blocks; each pair of destination
    /// rows is completed before the next.
    ///
    /// # Safety
    /// As for [`super::micro`] with 8-byte elements and `MA = MB = 8`.
    pub(super) unsafe fn micro_8_sse2(
        src: *const u8,
        sb: isize,
        dst: *mut u8,
        da: isize,
        nt: bool,
    ) {
        for c in (0..8).step_by(2) {
            for r in (0..8).step_by(2) {
                // SAFETY: rows `r, r + 1`, columns `c, c + 1` of the source
                // tile and rows `c, c + 1`, columns `r, r + 1` of the
                // destination tile are inside the tile.
                unsafe {
                    let x = load(src.offset(r as isize * sb).add(c * 8));
                    let y = load(src.offset((r + 1) as isize * sb).add(c * 8));
                    let d = dst.offset(c as isize * da).add(r * 8);
                    store(d, _mm_unpacklo_epi64(x, y), nt);
                    store(d.offset(da), _mm_unpackhi_epi64(x, y), nt);
                }
            }
        }
    }

    /// 8x8 tile of 8-byte elements as four 4x4 blocks in 256-bit AVX
    /// registers; each destination row receives its whole cache line before
    /// the next quadrant. The `pd` instructions only move bits.
    ///
    /// # Safety
    /// As for [`super::micro`] with 8-byte elements and `MA = MB = 8`, on a
    /// processor with AVX.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn micro_8_avx(src: *const u8, sb: isize, dst: *mut u8, da: isize, nt: bool) {
        use std::arch::x86_64::{
            __m256d, _mm256_loadu_pd, _mm256_permute2f128_pd, _mm256_storeu_pd, _mm256_stream_pd,
            _mm256_unpackhi_pd, _mm256_unpacklo_pd,
        };
        for cq in [0usize, 4] {
            for rq in [0usize, 4] {
                // SAFETY: the 4x4 quadrant at rows `rq..rq + 4`, columns
                // `cq..cq + 4` (source) and its mirror (destination) are
                // inside the tile; streaming stores are used only on
                // 32-byte aligned addresses.
                unsafe {
                    let s = src.offset(rq as isize * sb).add(cq * 8);
                    let r0 = _mm256_loadu_pd(s as *const f64);
                    let r1 = _mm256_loadu_pd(s.offset(sb) as *const f64);
                    let r2 = _mm256_loadu_pd(s.offset(2 * sb) as *const f64);
                    let r3 = _mm256_loadu_pd(s.offset(3 * sb) as *const f64);
                    let t0 = _mm256_unpacklo_pd(r0, r1);
                    let t1 = _mm256_unpackhi_pd(r0, r1);
                    let t2 = _mm256_unpacklo_pd(r2, r3);
                    let t3 = _mm256_unpackhi_pd(r2, r3);
                    let out: [__m256d; 4] = [
                        _mm256_permute2f128_pd::<0x20>(t0, t2),
                        _mm256_permute2f128_pd::<0x20>(t1, t3),
                        _mm256_permute2f128_pd::<0x31>(t0, t2),
                        _mm256_permute2f128_pd::<0x31>(t1, t3),
                    ];
                    let d = dst.offset(cq as isize * da).add(rq * 8);
                    for (k, v) in out.into_iter().enumerate() {
                        let p = d.offset(k as isize * da) as *mut f64;
                        if nt && (p as usize).is_multiple_of(32) {
                            _mm256_stream_pd(p, v);
                        } else {
                            _mm256_storeu_pd(p, v);
                        }
                    }
                }
            }
        }
    }

    /// 8x8 tile of 8-byte elements in 512-bit AVX-512 registers: one load
    /// per source row, one whole-line store per destination row. The `pd`
    /// instructions only move bits.
    ///
    /// # Safety
    /// As for [`super::micro`] with 8-byte elements and `MA = MB = 8`, on a
    /// processor with AVX-512F.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn micro_8_avx512(
        src: *const u8,
        sb: isize,
        dst: *mut u8,
        da: isize,
        nt: bool,
    ) {
        use std::arch::x86_64::{
            _mm512_loadu_pd, _mm512_shuffle_f64x2, _mm512_storeu_pd, _mm512_stream_pd,
            _mm512_unpackhi_pd, _mm512_unpacklo_pd,
        };
        // SAFETY: the eight source rows of 64 bytes and the eight
        // destination rows of 64 bytes are the tile's (caller); streaming
        // stores only on 64-byte aligned addresses.
        unsafe {
            let row = |k: isize| _mm512_loadu_pd(src.offset(k * sb) as *const f64);
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            // Pairs of rows interleaved: `t0` holds columns 0, 2, 4, 6 of
            // rows 0 and 1, `t1` columns 1, 3, 5, 7.
            let (t0, t1) = (_mm512_unpacklo_pd(r0, r1), _mm512_unpackhi_pd(r0, r1));
            let (t2, t3) = (_mm512_unpacklo_pd(r2, r3), _mm512_unpackhi_pd(r2, r3));
            let (t4, t5) = (_mm512_unpacklo_pd(r4, r5), _mm512_unpackhi_pd(r4, r5));
            let (t6, t7) = (_mm512_unpacklo_pd(r6, r7), _mm512_unpackhi_pd(r6, r7));
            // Even and odd 128-bit lanes of two pairs: `u0` holds columns
            // 0 and 4 of rows 0..4, `u1` columns 2 and 6, and so on.
            let u0 = _mm512_shuffle_f64x2::<0x88>(t0, t2);
            let u1 = _mm512_shuffle_f64x2::<0xDD>(t0, t2);
            let u2 = _mm512_shuffle_f64x2::<0x88>(t1, t3);
            let u3 = _mm512_shuffle_f64x2::<0xDD>(t1, t3);
            let u4 = _mm512_shuffle_f64x2::<0x88>(t4, t6);
            let u5 = _mm512_shuffle_f64x2::<0xDD>(t4, t6);
            let u6 = _mm512_shuffle_f64x2::<0x88>(t5, t7);
            let u7 = _mm512_shuffle_f64x2::<0xDD>(t5, t7);
            let out = [
                _mm512_shuffle_f64x2::<0x88>(u0, u4),
                _mm512_shuffle_f64x2::<0x88>(u2, u6),
                _mm512_shuffle_f64x2::<0x88>(u1, u5),
                _mm512_shuffle_f64x2::<0x88>(u3, u7),
                _mm512_shuffle_f64x2::<0xDD>(u0, u4),
                _mm512_shuffle_f64x2::<0xDD>(u2, u6),
                _mm512_shuffle_f64x2::<0xDD>(u1, u5),
                _mm512_shuffle_f64x2::<0xDD>(u3, u7),
            ];
            for (k, v) in out.into_iter().enumerate() {
                let p = dst.offset(k as isize * da) as *mut f64;
                if nt && (p as usize).is_multiple_of(64) {
                    _mm512_stream_pd(p, v);
                } else {
                    _mm512_storeu_pd(p, v);
                }
            }
        }
    }

    /// 8x16 tile of 4-byte elements in 512-bit AVX-512 registers, each
    /// destination row receiving its whole cache line in one store.
    ///
    /// # Safety
    /// As for [`super::micro`] with 4-byte elements, `MA = 8`, `MB = 16`, on
    /// a processor with AVX-512F and AVX-512DQ.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn micro_4_avx512(
        src: *const u8,
        sb: isize,
        dst: *mut u8,
        da: isize,
        nt: bool,
    ) {
        // SAFETY: the sixteen source rows of 32 bytes and the eight
        // destination rows of 64 bytes are the tile's (caller).
        unsafe {
            for (c, v) in rows_4_avx512(src, sb).into_iter().enumerate() {
                store_512(dst.offset(c as isize * da), v, nt);
            }
        }
    }

    /// 8x32 tile of 4-byte elements as two 8x16 tiles of
    /// [`micro_4_avx512`], each destination row receiving both its cache
    /// lines one after the other: with rows pages apart, the eight rows of
    /// a tile share a set of the first-level TLB, and visiting each row
    /// once instead of twice halves the translations the stores look up.
    ///
    /// # Safety
    /// As for [`super::micro`] with 4-byte elements, `MA = 8`, `MB = 32`, on
    /// a processor with AVX-512F and AVX-512DQ.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn micro_4_wide_avx512(
        src: *const u8,
        sb: isize,
        dst: *mut u8,
        da: isize,
        nt: bool,
    ) {
        // SAFETY: the 32 source rows of 32 bytes and the eight destination
        // rows of 128 bytes are the tile's (caller).
        unsafe {
            let top = rows_4_avx512(src, sb);
            let bottom = rows_4_avx512(src.offset(16 * sb), sb);
            for (c, (a, b)) in top.into_iter().zip(bottom).enumerate() {
                let d = dst.offset(c as isize * da);
                store_512(d, a, nt);
                store_512(d.add(64), b, nt);
            }
        }
    }

    /// The eight destination rows of the 8x16 tile of 4-byte elements at
    /// `src`: source rows `k` and `k + 8` share a register, and both 8x8
    /// blocks are transposed at once.
    ///
    /// # Safety
    /// The sixteen source rows of 32 bytes, `sb` bytes apart, must be
    /// readable; the processor must have AVX-512F and AVX-512DQ.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    unsafe fn rows_4_avx512(src: *const u8, sb: isize) -> [std::arch::x86_64::__m512; 8] {
        use std::arch::x86_64::{
            _mm256_loadu_ps, _mm512_castps256_ps512, _mm512_insertf32x8, _mm512_permutex2var_ps,
            _mm512_setr_epi32, _mm512_shuffle_ps, _mm512_unpackhi_ps, _mm512_unpacklo_ps,
        };
        let pair = |k: isize| {
            // SAFETY: rows `k` and `k + 8` are readable (caller).
            unsafe {
                let lo = _mm256_loadu_ps(src.offset(k * sb) as *const f32);
                let hi = _mm256_loadu_ps(src.offset((k + 8) * sb) as *const f32);
                _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi)
            }
        };
        let (z0, z1, z2, z3) = (pair(0), pair(1), pair(2), pair(3));
        let (z4, z5, z6, z7) = (pair(4), pair(5), pair(6), pair(7));
        // The steps of the 8x8 transpose within 128-bit lanes, as in
        // `transpose_8x8_ps`, on both halves at once.
        let t0 = _mm512_unpacklo_ps(z0, z1);
        let t1 = _mm512_unpackhi_ps(z0, z1);
        let t2 = _mm512_unpacklo_ps(z2, z3);
        let t3 = _mm512_unpackhi_ps(z2, z3);
        let t4 = _mm512_unpacklo_ps(z4, z5);
        let t5 = _mm512_unpackhi_ps(z4, z5);
        let t6 = _mm512_unpacklo_ps(z6, z7);
        let t7 = _mm512_unpackhi_ps(z6, z7);
        let u = [
            _mm512_shuffle_ps::<0x44>(t0, t2),
            _mm512_shuffle_ps::<0xEE>(t0, t2),
            _mm512_shuffle_ps::<0x44>(t1, t3),
            _mm512_shuffle_ps::<0xEE>(t1, t3),
            _mm512_shuffle_ps::<0x44>(t4, t6),
            _mm512_shuffle_ps::<0xEE>(t4, t6),
            _mm512_shuffle_ps::<0x44>(t5, t7),
            _mm512_shuffle_ps::<0xEE>(t5, t7),
        ];
        // Low (`lo`) and high (`hi`) 128-bit lanes of each 256-bit half of
        // `u[c]` and `u[c + 4]`, interleaved: the two 8x8 results.
        let lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        let hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        std::array::from_fn(|c| {
            let (a, b) = (u[c % 4], u[c % 4 + 4]);
            if c < 4 {
                _mm512_permutex2var_ps(a, lo, b)
            } else {
                _mm512_permutex2var_ps(a, hi, b)
            }
        })
    }

    /// Stores 64 bytes, streaming when `nt` and `p` is 64-byte aligned.
    ///
    /// # Safety
    /// `p` must be writable for 64 bytes; the processor must have AVX-512F.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_512(p: *mut u8, v: std::arch::x86_64::__m512, nt: bool) {
        use std::arch::x86_64::{_mm512_storeu_ps, _mm512_stream_ps};
        // SAFETY: writable (caller); the stream store only when aligned.
        unsafe {
            if nt && (p as usize).is_multiple_of(64) {
                _mm512_stream_ps(p as *mut f32, v);
            } else {
                _mm512_storeu_ps(p as *mut f32, v);
            }
        }
    }

    /// 8x16 tile of 4-byte elements as two 8x8 blocks in 256-bit AVX
    /// registers: each destination row gets its whole cache line at once.
    ///
    /// # Safety
    /// As for [`super::micro`] with 4-byte elements, `MA = 8`, `MB = 16`, on
    /// a processor with AVX.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn micro_4_avx(src: *const u8, sb: isize, dst: *mut u8, da: isize, nt: bool) {
        // SAFETY: the two 8x8 blocks at rows `0..8` and `8..16`, columns
        // `0..8` (source) and their mirrors (destination) are inside the
        // tile.
        unsafe {
            let top = transpose_8x8_ps(load_8x8_ps(src, sb));
            let bottom = transpose_8x8_ps(load_8x8_ps(src.offset(8 * sb), sb));
            for (k, (a, b)) in top.into_iter().zip(bottom).enumerate() {
                let d = dst.offset(k as isize * da);
                store_256(d, a, nt);
                store_256(d.add(32), b, nt);
            }
        }
    }

    /// Loads the 8x8 block of 4-byte elements at `src`, rows `sb` bytes
    /// apart.
    ///
    /// # Safety
    /// The block must be readable; the processor must have AVX.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn load_8x8_ps(src: *const u8, sb: isize) -> [std::arch::x86_64::__m256; 8] {
        // SAFETY: the eight rows of 32 bytes are readable (caller).
        std::array::from_fn(|k| unsafe {
            std::arch::x86_64::_mm256_loadu_ps(src.offset(k as isize * sb) as *const f32)
        })
    }

    /// Stores 32 bytes, streaming when `nt` and `p` is 32-byte aligned.
    ///
    /// # Safety
    /// `p` must be writable for 32 bytes; the processor must have AVX.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn store_256(p: *mut u8, v: std::arch::x86_64::__m256, nt: bool) {
        use std::arch::x86_64::{_mm256_storeu_ps, _mm256_stream_ps};
        // SAFETY: writable (caller); the stream store only when aligned.
        unsafe {
            if nt && (p as usize).is_multiple_of(32) {
                _mm256_stream_ps(p as *mut f32, v);
            } else {
                _mm256_storeu_ps(p as *mut f32, v);
            }
        }
    }

    /// Transposes the 8x8 block of 4-byte elements whose rows are `r`.
    #[cfg(not(miri))]
    #[target_feature(enable = "avx")]
    #[inline]
    fn transpose_8x8_ps(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
        use std::arch::x86_64::{
            _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
        };
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// 8x16 tile of 4-byte elements as eight 4x4 blocks; each destination
    /// row is completed before the next.
    ///
    /// # Safety
    /// As for [`super::micro`] with 4-byte elements, `MA = 8`, `MB = 16`.
    pub(super) unsafe fn micro_4_sse2(
        src: *const u8,
        sb: isize,
        dst: *mut u8,
        da: isize,
        nt: bool,
    ) {
        for c in (0..8).step_by(4) {
            for r in (0..16).step_by(4) {
                // SAFETY: the 4x4 block at rows `r..r + 4`, columns
                // `c..c + 4` (source) and its mirror (destination) are
                // inside the tile.
                unsafe {
                    let row = |k: usize| load(src.offset((r + k) as isize * sb).add(c * 4));
                    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                    let t0 = _mm_unpacklo_epi32(r0, r1);
                    let t1 = _mm_unpacklo_epi32(r2, r3);
                    let t2 = _mm_unpackhi_epi32(r0, r1);
                    let t3 = _mm_unpackhi_epi32(r2, r3);
                    let d = dst.offset(c as isize * da).add(r * 4);
                    store(d, _mm_unpacklo_epi64(t0, t1), nt);
                    store(d.offset(da), _mm_unpackhi_epi64(t0, t1), nt);
                    store(d.offset(2 * da), _mm_unpacklo_epi64(t2, t3), nt);
                    store(d.offset(3 * da), _mm_unpackhi_epi64(t2, t3), nt);
                }
            }
        }
    }

    /// 4x4 tile of 16-byte elements: one register per element.
    ///
    /// # Safety
    /// As for [`super::micro`] with 16-byte elements and `MA = MB = 4`.
    unsafe fn micro_16(src: *const u8, sb: isize, dst: *mut u8, da: isize, nt: bool) {
        for c in 0..4 {
            for r in 0..4 {
                // SAFETY: element `(r, c)` of the tile.
                unsafe {
                    let v = load(src.offset(r as isize * sb).add(c * 16));
                    store(dst.offset(c as isize * da).add(r * 16), v, nt);
                }
            }
        }
    }
}

/// Portable micro-tile kernels for other targets.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::{micro, Micro};

    /// No prefetch hint on this target.
    pub(super) fn prefetch(_: *const u8) {}

    /// No prefetch hint on this target.
    pub(super) fn prefetch_l2(_: *const u8) {}

    /// The 4-byte micro-kernel.
    pub(super) fn micro_4() -> Micro {
        micro::<u32, 8, 16>
    }

    /// No wide 4-byte micro-kernel on this target.
    pub(super) fn micro_4_wide() -> Option<Micro> {
        None
    }

    /// The 8-byte micro-kernel.
    pub(super) fn micro_8() -> Micro {
        micro::<u64, 8, 8>
    }
    pub(super) const MICRO_16: Micro = micro::<[u64; 2], 4, 4>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::stream;

    /// Runs `kernel` on an `ma x mb` tile of `e`-byte elements with padded
    /// rows, at a 32-byte aligned and at an unaligned destination, and
    /// compares with the portable kernel.
    fn check(kernel: Micro, reference: Micro, e: usize, ma: usize, mb: usize) {
        let (sb, da) = ((ma + 3) * e, (mb + 5) * e);
        let src: Vec<u8> = (0..mb * sb).map(|i| (i * 7 + 1) as u8).collect();
        for shift in [0, 8] {
            for nt in [false, true] {
                let mut want = vec![0u8; ma * da + 64];
                let mut got = want.clone();
                let base = want.as_ptr().align_offset(32) + shift;
                // SAFETY: the tile fits in both buffers (rows of `da` bytes,
                // 64 spare bytes for the alignment shift).
                unsafe {
                    reference(
                        src.as_ptr(),
                        sb as isize,
                        want.as_mut_ptr().add(base),
                        da as isize,
                        false,
                    );
                    kernel(
                        src.as_ptr(),
                        sb as isize,
                        got.as_mut_ptr().add(base),
                        da as isize,
                        nt,
                    );
                }
                stream::fence();
                assert_eq!(got, want, "e = {e}, shift = {shift}, nt = {nt}");
            }
        }
    }

    #[test]
    fn only_4_byte_transposes_with_aliasing_source_rows_are_staged() {
        let t = |elem: usize, sb: isize| Transpose {
            elem,
            na: 16,
            nb: 16,
            sb,
            da: 64,
            nc: 1,
            sc: 0,
            dc: 0,
        };
        assert!(staged(&t(4, STAGE_ALIAS)));
        assert!(staged(&t(4, 8 * STAGE_ALIAS)));
        assert!(!staged(&t(4, STAGE_ALIAS - 4)));
        assert!(!staged(&t(4, STAGE_ALIAS + 64)));
        assert!(!staged(&t(8, STAGE_ALIAS)));
    }

    #[test]
    fn micro_kernels_agree_with_the_portable_one() {
        check(simd::micro_4(), micro::<u32, 8, 16>, 4, 8, 16);
        check(simd::micro_8(), micro::<u64, 8, 8>, 8, 8, 8);
        check(simd::MICRO_16, micro::<[u64; 2], 4, 4>, 16, 4, 4);
        #[cfg(target_arch = "x86_64")]
        check(simd::micro_8_sse2, micro::<u64, 8, 8>, 8, 8, 8);
        #[cfg(target_arch = "x86_64")]
        check(simd::micro_4_sse2, micro::<u32, 8, 16>, 4, 8, 16);
    }

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn every_detected_x86_kernel_agrees_with_the_portable_one() {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx") {
            check(simd::micro_8_avx, micro::<u64, 8, 8>, 8, 8, 8);
            check(simd::micro_4_avx, micro::<u32, 8, 16>, 4, 8, 16);
        }
        if has!("avx512f") {
            check(simd::micro_8_avx512, micro::<u64, 8, 8>, 8, 8, 8);
        }
        if has!("avx512f") && has!("avx512dq") {
            check(simd::micro_4_avx512, micro::<u32, 8, 16>, 4, 8, 16);
            check(simd::micro_4_wide_avx512, micro::<u32, 8, 32>, 4, 8, 32);
        }
    }
}
