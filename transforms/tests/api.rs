//! Validation errors, larger copies on the fast paths, records and
//! redistribution.

mod common;

use common::{logical, random_layout, reference_copy, Rng};
use mamba_transforms::{
    copy, copy_typed, extract, insert, CopyPlan, Decomposition, Error, ExecOptions, Field, Layout,
    Order, RecordLayout, RedistributionPlan, Streaming, Threads,
};

fn parallel_streaming() -> ExecOptions {
    ExecOptions {
        threads: Threads::Pool,
        streaming: Streaming::Always,
        min_parallel_bytes: 0,
        ..ExecOptions::default()
    }
}

#[test]
fn invalid_layouts_are_errors() {
    assert_eq!(Layout::row_major(0, &[2]), Err(Error::ZeroElementSize));
    assert_eq!(Layout::row_major(4, &[]), Err(Error::NoDimensions));
    assert_eq!(
        Layout::row_major(4, &[3, 0]),
        Err(Error::ZeroExtent { dim: 1 })
    );
    assert_eq!(
        Layout::from_strides(4, &[3, 2], &[1], 0),
        Err(Error::RankMismatch {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        Layout::from_strides(4, &[3], &[-1], 1),
        Err(Error::NegativeOffset { below: 4 })
    );
    assert_eq!(
        Layout::from_strides(8, &[2, 2], &[isize::MAX / 2, 1], 0),
        Err(Error::Overflow)
    );
    assert!(matches!(
        Layout::permuted(4, &[2, 2], &[0, 0]),
        Err(Error::InvalidPermutation(_))
    ));
    assert_eq!(
        Layout::tiled(4, &[4, 4], &[2, 0], Order::RowMajor, Order::RowMajor),
        Err(Error::InvalidTile { dim: 1 })
    );
    assert_eq!(
        Layout::padded_rows(4, &[3, 5], 4),
        Err(Error::InvalidPadding { ld: 4, len: 5 })
    );
    let c = Layout::row_major(4, &[3, 5]).unwrap();
    assert!(matches!(
        c.view(&[1, 3], &[2, 3]),
        Err(Error::RegionOutOfRange { dim: 1, .. })
    ));
    assert_eq!(
        c.strided_view(&[0, 0], &[1, 1], &[1, 0]),
        Err(Error::ZeroStep { dim: 1 })
    );
    let t = Layout::tiled(4, &[4, 4], &[2, 2], Order::RowMajor, Order::ColumnMajor).unwrap();
    assert_eq!(t.reversed(0), Err(Error::NotStrided));
    assert_eq!(t.byte_strides(), Err(Error::NotStrided));
}

#[test]
fn invalid_copies_are_errors() {
    let c = Layout::row_major(4, &[3, 5]).unwrap();
    let src = vec![0u8; 60];
    let mut dst = vec![0u8; 60];
    // Buffers too short.
    assert_eq!(
        copy(&src[..59], &c, &mut dst, &c),
        Err(Error::OutOfBounds {
            needed: 60,
            len: 59
        })
    );
    assert_eq!(
        copy(&src, &c, &mut dst[..10], &c),
        Err(Error::OutOfBounds {
            needed: 60,
            len: 10
        })
    );
    // Shapes and element sizes.
    let other = Layout::row_major(4, &[5, 3]).unwrap();
    assert!(matches!(
        copy(&src, &c, &mut dst, &other),
        Err(Error::ShapeMismatch { .. })
    ));
    let wide = Layout::row_major(8, &[3, 5]).unwrap();
    assert_eq!(
        copy(&src, &c, &mut dst, &wide),
        Err(Error::ElementSizeMismatch { src: 4, dst: 8 })
    );
    let mut typed = [0u64; 15];
    assert_eq!(
        copy_typed(&[0u64; 15], &c, &mut typed, &c),
        Err(Error::ElementSizeMismatch { src: 4, dst: 8 })
    );
    // Replication is fine for a source, an overlap for a destination.
    let rep = Layout::from_strides(4, &[3, 5], &[0, 1], 0).unwrap();
    assert!(!rep.is_injective());
    copy(&src, &rep, &mut dst, &c).unwrap();
    assert_eq!(
        copy(&src, &c, &mut dst, &rep),
        Err(Error::Overlap { dim: 0 })
    );
    let overlapping = Layout::from_strides(4, &[3, 5], &[2, 1], 0).unwrap();
    assert_eq!(
        copy(&src, &c, &mut dst, &overlapping),
        Err(Error::Overlap { dim: 0 })
    );
    // Regions.
    let small = Layout::row_major(4, &[2, 2]).unwrap();
    let mut out = vec![0u8; 16];
    assert!(matches!(
        extract(&src, &c, &[2, 0], &mut out, &small),
        Err(Error::RegionOutOfRange { dim: 0, .. })
    ));
    assert!(matches!(
        insert(&out, &small, &mut dst, &c, &[0, 4]),
        Err(Error::RegionOutOfRange { dim: 1, .. })
    ));
}

#[test]
fn extract_and_insert_halo() {
    // A 6 x 8 block with a halo of one: interior 4 x 6.
    let full = Layout::row_major(8, &[6, 8]).unwrap();
    let field: Vec<f64> = (0..48).map(f64::from).collect();
    let interior = Layout::row_major(8, &[4, 6]).unwrap();
    let mut inner = vec![0.0f64; 24];
    extract(
        bytemuck::cast_slice(&field),
        &full,
        &[1, 1],
        bytemuck::cast_slice_mut(&mut inner),
        &interior,
    )
    .unwrap();
    assert_eq!(&inner[..6], &[9.0, 10.0, 11.0, 12.0, 13.0, 14.0]);
    let mut back = vec![-1.0f64; 48];
    insert(
        bytemuck::cast_slice(&inner),
        &interior,
        bytemuck::cast_slice_mut(&mut back),
        &full,
        &[1, 1],
    )
    .unwrap();
    for r in 0..6 {
        for c in 0..8 {
            let want = if (1..5).contains(&r) && (1..7).contains(&c) {
                field[r * 8 + c]
            } else {
                -1.0
            };
            assert_eq!(back[r * 8 + c], want);
        }
    }
}

/// Larger arrays, so that the micro-tiles, the alignment peeling, the
/// threads and the streaming stores all run.
#[test]
#[cfg_attr(
    miri,
    ignore = "too slow under Miri; the micro-kernels have unit tests"
)]
fn large_copies_match_reference() {
    let mut rng = Rng(7);
    for &(elem, rows, cols) in &[
        (8, 203, 517),
        (4, 300, 260),
        (1, 130, 333),
        (2, 97, 211),
        (16, 65, 131),
        (12, 40, 70),
    ] {
        let c = Layout::row_major(elem, &[rows, cols]).unwrap();
        let cases = [
            (
                c.permute_axes(&[1, 0]).unwrap(),
                Layout::row_major(elem, &[cols, rows]).unwrap(),
            ),
            (
                c.clone(),
                Layout::padded_rows(elem, &[rows, cols], cols + 3).unwrap(),
            ),
            (
                c.reversed(1).unwrap(),
                Layout::column_major(elem, &[rows, cols]).unwrap(),
            ),
            (
                c.clone(),
                Layout::tiled(
                    elem,
                    &[rows, cols],
                    &[8, 16],
                    Order::ColumnMajor,
                    Order::RowMajor,
                )
                .unwrap(),
            ),
        ];
        for (sl, dl) in cases {
            let label = format!("{elem} {rows}x{cols}: {sl:?} -> {dl:?}");
            matches_reference(&mut rng, &sl, &dl, &label);
        }
    }
}

/// Copies random bytes from `sl` to `dl` serially and in parallel with
/// streaming stores, and checks both against the reference copy.
fn matches_reference(rng: &mut Rng, sl: &Layout, dl: &Layout, label: &str) {
    let src = rng.bytes(sl.required_len());
    let mut want = vec![0u8; dl.required_len()];
    reference_copy(&src, sl, &mut want, dl);
    let plan = CopyPlan::new(sl, dl).unwrap();
    let elements: usize = sl.shape().iter().product();
    assert_eq!(plan.bytes(), elements * sl.elem_size(), "{label}");
    for opts in [ExecOptions::serial(), parallel_streaming()] {
        let mut got = vec![0u8; dl.required_len()];
        plan.execute_with(&src, &mut got, &opts).unwrap();
        assert!(got == want, "{label} {opts:?}");
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "too slow under Miri; the kernels have unit tests of batches"
)]
fn reversals_of_all_axes_match_reference() {
    // Row-major to column-major reverses all three axes; the plan batches
    // neighbouring slices of the middle axis, in blocks that do not divide
    // these odd extents.
    let mut rng = Rng(11);
    for elem in [1usize, 2, 4, 8] {
        for shape in [[7, 37, 9], [33, 19, 65], [5, 3, 300], [64, 40, 64]] {
            let sl = Layout::row_major(elem, &shape).unwrap();
            let dl = Layout::column_major(elem, &shape).unwrap();
            matches_reference(&mut rng, &sl, &dl, &format!("{elem} {shape:?}"));
        }
    }
}

#[test]
fn plans_pick_few_jobs() {
    let c = Layout::row_major(8, &[64, 64]).unwrap();
    // Dense to dense is one memcpy job; a transpose one job; aligned tiles
    // one job per dimension piece.
    assert_eq!(CopyPlan::new(&c, &c).unwrap().job_count(), 1);
    let t = c.permute_axes(&[1, 0]).unwrap();
    assert_eq!(CopyPlan::new(&t, &c).unwrap().job_count(), 1);
    let tiled = Layout::tiled(8, &[64, 64], &[8, 8], Order::RowMajor, Order::RowMajor).unwrap();
    assert_eq!(CopyPlan::new(&c, &tiled).unwrap().job_count(), 1);
    assert_eq!(CopyPlan::new(&c, &tiled).unwrap().bytes(), 64 * 64 * 8);
}

#[test]
fn records_round_trip() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct P {
        x: f64,
        y: f64,
        q: u32,
        m: u16,
        flag: u8,
        pad: u8,
    }
    let rec = RecordLayout::new(
        24,
        &[
            Field { offset: 0, size: 8 },
            Field { offset: 8, size: 8 },
            Field {
                offset: 16,
                size: 4,
            },
            Field {
                offset: 20,
                size: 2,
            },
            Field {
                offset: 22,
                size: 1,
            },
        ],
    )
    .unwrap();
    let n = if cfg!(miri) { 700 } else { 5000 };
    let aos: Vec<P> = (0..n)
        .map(|i| P {
            x: i as f64,
            y: -(i as f64),
            q: i as u32 * 3,
            m: i as u16,
            flag: i as u8,
            pad: 0,
        })
        .collect();
    for opts in [ExecOptions::serial(), parallel_streaming()] {
        let mut f: Vec<Vec<u8>> = rec.fields().iter().map(|f| vec![0; f.size * n]).collect();
        let mut views: Vec<&mut [u8]> = f.iter_mut().map(|v| v.as_mut_slice()).collect();
        rec.split(bytemuck::cast_slice(&aos), n, &mut views, &opts)
            .unwrap();
        // Field buffers are byte vectors: read without assuming alignment.
        let q: u32 = bytemuck::pod_read_unaligned(&f[2][321 * 4..322 * 4]);
        assert_eq!(q, 321 * 3);
        let mut back = vec![
            P {
                x: 1.0,
                y: 1.0,
                q: 1,
                m: 1,
                flag: 1,
                pad: 9
            };
            n
        ];
        let views: Vec<&[u8]> = f.iter().map(|v| v.as_slice()).collect();
        rec.join(&views, n, bytemuck::cast_slice_mut(&mut back), &opts)
            .unwrap();
        assert_eq!(back, aos);
    }
    let packed = RecordLayout::packed(&[8, 8, 8, 8]).unwrap();
    assert_eq!(packed.size(), 32);
    assert_eq!(
        packed.split_records(&aos, &mut []),
        Err(Error::ElementSizeMismatch { src: 24, dst: 32 })
    );
    assert_eq!(
        rec.split_records(&aos, &mut []),
        Err(Error::BufferCount {
            expected: 5,
            found: 0
        })
    );
    let overlapping = [Field { offset: 0, size: 8 }, Field { offset: 4, size: 4 }];
    assert!(matches!(
        RecordLayout::new(8, &overlapping),
        Err(Error::InvalidRecord(_))
    ));
    assert!(matches!(
        RecordLayout::new(4, &overlapping[..1]),
        Err(Error::InvalidRecord(_))
    ));
}

#[test]
fn redistribution_between_random_decompositions() {
    let mut rng = Rng(99);
    for round in 0..if cfg!(miri) { 4 } else { 30 } {
        let rank = 1 + round % 3;
        let shape: Vec<usize> = (0..rank).map(|_| 3 + rng.below(14)).collect();
        let elem = [1, 4, 8, 12][rng.below(4)];
        let decomp = |rng: &mut Rng| {
            let cuts: Vec<Vec<usize>> = shape
                .iter()
                .map(|&n| {
                    let mut c: Vec<usize> =
                        (0..rng.below(4)).map(|_| 1 + rng.below(n - 1)).collect();
                    c.push(0);
                    c.push(n);
                    c.sort_unstable();
                    c.dedup();
                    c
                })
                .collect();
            let d = Decomposition::from_cuts(elem, &shape, cuts).unwrap();
            let layouts = (0..d.block_count())
                .map(|b| random_layout(rng, elem, &d.block_shape(b).unwrap(), false))
                .collect();
            d.with_layouts(layouts).unwrap()
        };
        let (a, b) = (decomp(&mut rng), decomp(&mut rng));
        let global = Layout::row_major(elem, &shape).unwrap();
        let field = rng.bytes(global.required_len());
        let blocks = |d: &Decomposition| -> Vec<Vec<u8>> {
            (0..d.block_count())
                .map(|k| vec![0u8; d.layout(k).unwrap().required_len()])
                .collect()
        };
        let mut src = blocks(&a);
        for (k, buf) in src.iter_mut().enumerate() {
            extract(
                &field,
                &global,
                &a.block_start(k).unwrap(),
                buf,
                a.layout(k).unwrap(),
            )
            .unwrap();
        }
        let plan = RedistributionPlan::new(&a, &b).unwrap();
        for opts in [ExecOptions::serial(), parallel_streaming()] {
            let mut dst = blocks(&b);
            let sv: Vec<&[u8]> = src.iter().map(|v| v.as_slice()).collect();
            let mut dv: Vec<&mut [u8]> = dst.iter_mut().map(|v| v.as_mut_slice()).collect();
            plan.execute(&sv, &mut dv, &opts).unwrap();
            for (k, buf) in dst.iter().enumerate() {
                let piece = global
                    .view(&b.block_start(k).unwrap(), &b.block_shape(k).unwrap())
                    .unwrap();
                assert_eq!(logical(buf, b.layout(k).unwrap()), logical(&field, &piece));
            }
        }
    }
    let a = Decomposition::blocks(8, &[8, 8], &[4, 1]).unwrap();
    let b = Decomposition::blocks(8, &[8, 6], &[2, 2]).unwrap();
    assert!(matches!(
        RedistributionPlan::new(&a, &b),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Decomposition::blocks(8, &[8, 8], &[9, 1]),
        Err(Error::InvalidDecomposition(_))
    ));
    assert_eq!(a.block_start(3), Some(vec![6, 0]));
    assert_eq!(a.block_shape(4), None);
    let huge = Layout::from_strides(8, &[1 << 40, 1 << 40], &[0, 0], 0).unwrap();
    assert_eq!(huge.len(), usize::MAX);
    let plan = RedistributionPlan::new(&a, &a).unwrap();
    assert_eq!(
        plan.execute(&[], &mut [], &ExecOptions::default()),
        Err(Error::BufferCount {
            expected: 4,
            found: 0
        })
    );
}
