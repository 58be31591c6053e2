//! Every kernel on small arrays against an element-by-element reference:
//! small enough for Miri (`scripts/miri.sh`), which checks that no kernel
//! reads or writes a byte outside the buffers `run` validated.

use super::*;

/// Copies like `job` should, one element at a time with checked indexing:
/// for every index tuple of `dims`, `elem` bytes from `src_off + Σ i·s` to
/// `dst_off + Σ i·d`.
fn reference(
    elem: usize,
    src_off: isize,
    dst_off: isize,
    dims: &[JDim],
    src: &[u8],
    dst: &mut [u8],
) {
    let count: usize = dims.iter().map(|g| g.n).product();
    for mut flat in 0..count {
        let (mut s, mut d) = (src_off, dst_off);
        for g in dims.iter().rev() {
            let i = (flat % g.n) as isize;
            flat /= g.n;
            s += i * g.s;
            d += i * g.d;
        }
        let (s, d) = (s as usize, d as usize);
        dst[d..d + elem].copy_from_slice(&src[s..s + elem]);
    }
}

fn dim(n: usize, s: isize, d: isize) -> JDim {
    JDim { n, s, d }
}

/// Runs `dims` serially and in parallel, with and without non-temporal
/// stores, and compares with the reference; the destination bytes the job
/// does not write must stay as they were.
fn check(
    elem: usize,
    src_off: isize,
    dst_off: isize,
    dims: &[JDim],
    src_len: usize,
    dst_len: usize,
) {
    let src: Vec<u8> = (0..src_len).map(|i| (i * 31 + 7) as u8).collect();
    let mut want = vec![0xAAu8; dst_len];
    reference(elem, src_off, dst_off, dims, &src, &mut want);
    let job = Job::new(elem, src_off, dst_off, dims).unwrap();
    for parallel in [false, true] {
        for nt in [false, true] {
            let mut got = vec![0xAAu8; dst_len];
            run(&job, &src, &mut got, Exec { parallel, nt }).unwrap();
            assert_eq!(got, want, "{dims:?} parallel={parallel} nt={nt}");
        }
    }
}

#[test]
fn runs_copy_contiguous_bytes() {
    check(1, 0, 0, &[dim(37, 1, 1)], 37, 37);
    check(8, 8, 16, &[dim(3, 8, 8), dim(5, 24, 24)], 16 * 8, 18 * 8);
}

#[test]
fn transposes_of_every_micro_kernel_width() {
    for e in [1usize, 2, 4, 8, 16] {
        let (r, c) = (9, 13);
        let (ei, ri, ci) = (e as isize, r as isize, c as isize);
        // Source row-major r x c, destination column-major.
        check(
            e,
            0,
            0,
            &[dim(r, ci * ei, ei), dim(c, ei, ri * ei)],
            r * c * e,
            r * c * e,
        );
    }
}

/// Odd extents spanning several micro-tiles and a strip boundary, padded
/// rows, and start offsets that leave unaligned head rows and columns: the
/// dispatched micro-kernel (AVX-512 where detected) covers the body, the
/// scalar path the edges.
#[test]
fn transposes_of_odd_sizes_with_padded_rows_and_offsets() {
    for e in [4usize, 8] {
        let ei = e as isize;
        for (r, c, pad, off) in [(17, 23, 0, 0), (35, 261, 3, 1), (263, 19, 5, 3)] {
            // Source r x c with rows of c + pad elements, destination
            // c x r with rows of r + pad, both starting `off` elements in.
            let (sr, dr) = ((c + pad) as isize * ei, (r + pad) as isize * ei);
            let o = off as isize * ei;
            check(
                e,
                o,
                o,
                &[dim(r, sr, ei), dim(c, ei, dr)],
                (off + r * (c + pad)) * e,
                (off + c * (r + pad)) * e,
            );
        }
    }
}

#[test]
fn gathers_with_strides_and_reversals() {
    for e in [1usize, 3, 4, 8] {
        let ei = e as isize;
        // Every other element, into a reversed destination.
        check(e, 0, 9 * ei, &[dim(10, 2 * ei, -ei)], 20 * e, 10 * e);
        // Reversed source, strided both sides, with offsets.
        check(
            e,
            19 * ei,
            ei,
            &[dim(4, -ei, 3 * ei), dim(5, -4 * ei, 12 * ei)],
            20 * e,
            61 * e,
        );
    }
}

#[test]
fn jobs_outside_the_buffers_are_refused_before_any_write() {
    let job = Job::new(4, 0, 0, &[dim(8, 4, 4)]).unwrap();
    let src = vec![1u8; 31];
    let mut dst = vec![0u8; 32];
    let ex = Exec {
        parallel: false,
        nt: false,
    };
    assert!(matches!(
        run(&job, &src, &mut dst, ex),
        Err(Error::OutOfBounds { .. })
    ));
    let src = vec![1u8; 32];
    let mut short = vec![0u8; 31];
    assert!(matches!(
        run(&job, &src, &mut short, ex),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(dst.iter().chain(&short).all(|&b| b == 0));
    assert!(matches!(
        Job::new(4, 0, 0, &[dim(2, -4, 4)]),
        Err(Error::NegativeOffset { .. })
    ));
}

#[test]
fn records_split_and_join_back() {
    // Records of 13 bytes: a u32 at 0, a u64 at 4, one byte of padding.
    let job = RecordJob {
        record: 13,
        fields: vec![(0, 4), (4, 8)],
        n: 7,
    };
    let aos: Vec<u8> = (0..13 * 7)
        .map(|i| if i % 13 == 12 { 0 } else { (i * 5 + 3) as u8 })
        .collect();
    for parallel in [false, true] {
        for nt in [false, true] {
            let ex = Exec { parallel, nt };
            let (mut a, mut b) = (vec![0u8; 4 * 7], vec![0u8; 8 * 7]);
            split_records(&job, &aos, &mut [&mut a, &mut b], ex).unwrap();
            for r in 0..7 {
                assert_eq!(a[r * 4..r * 4 + 4], aos[r * 13..r * 13 + 4]);
                assert_eq!(b[r * 8..r * 8 + 8], aos[r * 13 + 4..r * 13 + 12]);
            }
            let mut back = vec![0xFFu8; 13 * 7];
            join_records(&job, &[&a, &b], &mut back, ex).unwrap();
            assert_eq!(back, aos, "parallel={parallel} nt={nt}");
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "megabytes of sparse rows: too slow under Miri")]
fn staged_transposes_around_the_aliasing_stride() {
    // Source rows just under, at and above the staging stride (only its
    // multiples are staged); extents below, at and around the 8x16
    // micro-tile, and larger than one staging buffer along both sides
    // (150 x 70: two chunks of a row, three bands with a partial one);
    // offsets that are not on a cache line so the aligned body starts
    // inside the rows.
    let alias = transpose::STAGE_ALIAS;
    for sb in [alias - 64, alias, alias + 4, 2 * alias] {
        for (na, nb) in [
            (1, 1),
            (16, 16),
            (17, 15),
            (15, 33),
            (40, 17),
            (33, 48),
            (150, 70),
        ] {
            for (src_off, dst_off) in [(0, 0), (4, 8)] {
                let da = (nb as isize + 3) * 4;
                check(
                    4,
                    src_off,
                    dst_off,
                    &[dim(na, 4, da), dim(nb, sb, 4)],
                    src_off as usize + (nb - 1) * sb as usize + na * 4,
                    dst_off as usize + (na - 1) * da as usize + nb * 4,
                );
            }
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "megabytes of sparse rows: too slow under Miri")]
fn staged_transposes_with_both_strides_aliasing() {
    // A 3-d reversal of axes, the shape of the large benchmark case shrunk:
    // row-major 20 x 3 x 17 (k innermost) into column-major, with the rows of
    // both sides padded to the staging stride.
    let alias = transpose::STAGE_ALIAS;
    let (ni, nj, nk) = (20usize, 3usize, 17usize);
    let plane = alias;
    check(
        4,
        0,
        0,
        &[
            dim(ni, plane, 4),
            dim(nj, nk as isize * 4, ni as isize * 4),
            dim(nk, 4, plane),
        ],
        (ni - 1) * plane as usize + nj * nk * 4,
        (nk - 1) * plane as usize + nj * ni * 4,
    );
}

/// The dimensions of the reversal of all axes of a row-major `n0 x n1 x
/// n2` array of `e`-byte elements into column-major, with source planes
/// of `plane` bytes and destination planes of `dplane` bytes.
fn reversal(e: usize, [n0, n1, n2]: [usize; 3], plane: isize, dplane: isize) -> [JDim; 3] {
    let (ei, r1, r0) = (e as isize, (n2 * e) as isize, (n0 * e) as isize);
    [dim(n0, plane, ei), dim(n1, r1, r0), dim(n2, ei, dplane)]
}

#[test]
fn neighbouring_slices_of_a_reversal_are_batched_by_pages() {
    // Rows of 2 KiB on both sides: four slices cover two pages.
    let job = Job::new(4, 0, 0, &reversal(4, [512, 512, 512], 1 << 20, 1 << 20)).unwrap();
    assert!(matches!(job.kind, Kind::Transpose { block: 4, .. }));
    assert_eq!(job.outer_count, 128);
    assert_eq!(job.bytes(), 512 * 512 * 512 * 4);
    // Ragged: 37 slices in blocks of at most 16, still every byte once.
    let job = Job::new(4, 0, 0, &reversal(4, [7, 37, 9], 36 * 37, 28 * 37)).unwrap();
    assert!(matches!(job.kind, Kind::Transpose { block: 16, .. }));
    assert_eq!(job.outer_count, 3);
    assert_eq!(job.bytes(), 7 * 37 * 9 * 4);
    // Slices a page apart on both sides share no page: one at a time.
    let job = Job::new(8, 0, 0, &reversal(8, [512, 3, 512], 1 << 20, 1 << 20)).unwrap();
    assert!(matches!(job.kind, Kind::Transpose { block: 1, .. }));
    assert_eq!(job.outer_count, 3);
}

#[test]
fn batched_reversals_of_every_element_size() {
    // Odd extents, batches that do not divide the middle extent, and a
    // middle extent smaller than one batch.
    for e in [1usize, 2, 4, 8] {
        for n in [[7, 37, 9], [33, 19, 65], [5, 3, 300], [1, 5, 2]] {
            let [n0, n1, n2] = n;
            let len = n0 * n1 * n2 * e;
            let (sp, dp) = ((n1 * n2 * e) as isize, (n1 * n0 * e) as isize);
            check(e, 0, 0, &reversal(e, n, sp, dp), len, len);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "megabytes of sparse rows: too slow under Miri")]
fn staged_transposes_in_batches() {
    // The staged kernel on a batch: planes at the staging stride, 19 slices
    // in a block of 16 and a ragged one of 3, rows of 40 source elements
    // (two bands, the second partial) and of 150 (a chunk and a partial).
    let alias = transpose::STAGE_ALIAS;
    let (ni, nj, nk) = (40usize, 19usize, 150usize);
    let dims = reversal(4, [ni, nj, nk], alias, alias);
    let job = Job::new(4, 0, 0, &dims).unwrap();
    assert!(matches!(job.kind, Kind::Transpose { block: 16, .. }));
    check(
        4,
        0,
        0,
        &dims,
        (ni - 1) * alias as usize + nj * nk * 4,
        (nk - 1) * alias as usize + nj * ni * 4,
    );
}
