//! Property tests: copies between random layouts agree with a naive
//! element-by-element reference, and any layout -> any layout -> back is the
//! identity.

mod common;

use common::{logical, random_layout, reference_copy, Rng};
use mamba_transforms::{CopyPlan, ExecOptions, Streaming, Threads};
use proptest::prelude::*;

const ELEMS: [usize; 7] = [1, 2, 3, 4, 8, 12, 16];

fn options(pick: u8) -> ExecOptions {
    ExecOptions {
        threads: if pick & 1 == 0 {
            Threads::Serial
        } else {
            Threads::Pool
        },
        streaming: if pick & 2 == 0 {
            Streaming::Never
        } else {
            Streaming::Always
        },
        min_parallel_bytes: 0,
        ..ExecOptions::default()
    }
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        prop::collection::vec(1usize..40, 1),
        prop::collection::vec(1usize..24, 2),
        prop::collection::vec(1usize..9, 3),
        prop::collection::vec(1usize..5, 4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn copy_matches_reference(shape in shape(), e in 0..ELEMS.len(), seed in 1u64.., pick in 0u8..4) {
        let elem = ELEMS[e];
        let mut rng = Rng(seed);
        let sl = random_layout(&mut rng, elem, &shape, true);
        let dl = random_layout(&mut rng, elem, &shape, false);
        let extra = rng.below(5);
        let src = rng.bytes(sl.required_len() + extra);
        let extra = rng.below(5);
        let init = rng.bytes(dl.required_len() + extra);
        let mut want = init.clone();
        reference_copy(&src, &sl, &mut want, &dl);
        let mut got = init;
        CopyPlan::new(&sl, &dl).unwrap().execute_with(&src, &mut got, &options(pick)).unwrap();
        prop_assert!(got == want, "{:?} -> {:?}", sl, dl);
    }

    #[test]
    fn round_trip_is_identity(shape in shape(), e in 0..ELEMS.len(), seed in 1u64.., pick in 0u8..4) {
        let elem = ELEMS[e];
        let mut rng = Rng(seed);
        let a = random_layout(&mut rng, elem, &shape, false);
        let b = random_layout(&mut rng, elem, &shape, false);
        let src = rng.bytes(a.required_len());
        let mut mid = vec![0u8; b.required_len()];
        let mut back = vec![0u8; a.required_len()];
        let opts = options(pick);
        CopyPlan::new(&a, &b).unwrap().execute_with(&src, &mut mid, &opts).unwrap();
        CopyPlan::new(&b, &a).unwrap().execute_with(&mid, &mut back, &opts).unwrap();
        prop_assert_eq!(logical(&back, &a), logical(&src, &a));
    }

    #[test]
    fn regions_match_reference(shape in shape(), e in 0..ELEMS.len(), seed in 1u64.., pick in 0u8..4) {
        let elem = ELEMS[e];
        let mut rng = Rng(seed);
        let size: Vec<usize> = shape.iter().map(|&n| 1 + rng.below(n)).collect();
        let ss: Vec<usize> = shape.iter().zip(&size).map(|(n, z)| rng.below(n - z + 1)).collect();
        let dshape: Vec<usize> = size.iter().map(|&z| z + rng.below(4)).collect();
        let ds: Vec<usize> = dshape.iter().zip(&size).map(|(n, z)| rng.below(n - z + 1)).collect();
        let sl = random_layout(&mut rng, elem, &shape, true);
        let dl = random_layout(&mut rng, elem, &dshape, false);
        let src = rng.bytes(sl.required_len());
        let init = rng.bytes(dl.required_len());
        let mut want = init.clone();
        reference_copy(&src, &sl.view(&ss, &size).unwrap(), &mut want, &dl.view(&ds, &size).unwrap());
        let mut got = init;
        CopyPlan::region(&sl, &ss, &dl, &ds, &size).unwrap().execute_with(&src, &mut got, &options(pick)).unwrap();
        prop_assert!(got == want);
    }
}
