//! Arrays in tiers, tiles, and layout-converting copies between spaces.

mod common;

use mamba::copy::{copy_array, copy_async, route, Route};
use mamba::{Array, Error, Mamba, Policy, Tier};
use mamba_transforms::Layout;

fn filled(m: &Mamba, rows: usize, cols: usize, tier: Tier) -> Array<'_> {
    let mut a = m
        .array(
            Layout::row_major(8, &[rows, cols]).unwrap(),
            &Policy::require(tier),
        )
        .unwrap();
    for (i, x) in a.as_typed_mut::<f64>().unwrap().iter_mut().enumerate() {
        *x = i as f64;
    }
    a
}

#[test]
fn duplicate_into_another_tier_and_layout_transposes_the_memory_order() {
    let m = Mamba::discover(&common::simulated("")).unwrap();
    let a = filled(&m, 3, 5, Tier::Dram);
    let f = m
        .duplicate_array(
            &a,
            Some(Layout::column_major(8, &[3, 5]).unwrap()),
            &Policy::require(Tier::Hbm),
        )
        .unwrap();
    assert_eq!(f.space().unwrap().tier, Tier::Hbm);
    let got = f.as_typed::<f64>().unwrap();
    // Column-major: element (r, c) at c * 3 + r holds r * 5 + c.
    for r in 0..3 {
        for c in 0..5 {
            assert_eq!(got[c * 3 + r], (r * 5 + c) as f64);
        }
    }
}

#[test]
fn migrate_moves_the_data_and_frees_the_old_memory() {
    let m = Mamba::discover(&common::simulated("")).unwrap();
    let mut a = filled(&m, 64, 64, Tier::Dram);
    m.migrate_array(&mut a, None, &Policy::require(Tier::Nvdimm))
        .unwrap();
    assert_eq!(a.space().unwrap().tier, Tier::Nvdimm);
    assert_eq!(a.as_typed::<f64>().unwrap()[4095], 4095.0);
    assert_eq!(m.pool_named("dram0").unwrap().stats().in_use, 0);
}

#[test]
fn copies_to_an_ssd_tier_go_through_its_mapped_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::simulated("");
    c.ssd.push(mamba::config::DirectoryTier {
        path: dir.path().into(),
        capacity: Some(mamba::ByteSize(16 << 20)),
        bandwidth_mib_s: None,
        latency_ns: None,
    });
    let m = Mamba::discover(&c).unwrap();
    let a = filled(&m, 100, 100, Tier::Dram);
    let on_ssd = m
        .duplicate_array(&a, None, &Policy::require(Tier::Ssd))
        .unwrap();
    assert_eq!(on_ssd.space().unwrap().tier, Tier::Ssd);
    assert_eq!(
        on_ssd.as_bytes().unwrap()[..80_000],
        a.as_bytes().unwrap()[..80_000]
    );
}

#[test]
fn tiles_cover_the_array_once_and_are_views_of_its_bytes() {
    let m = common::this_machine();
    let a = filled(&m, 10, 7, Tier::Dram);
    let mut seen = vec![0u32; 70];
    let mut count = 0;
    for tile in a.tiles(&[4, 3]).unwrap() {
        count += 1;
        assert!(
            std::ptr::eq(tile.bytes().unwrap(), a.as_bytes().unwrap()),
            "a view, not a copy"
        );
        let (r0, c0) = (tile.start()[0], tile.start()[1]);
        let shape = tile.layout().shape().to_vec();
        for r in 0..shape[0] {
            for c in 0..shape[1] {
                let off = tile.layout().byte_offset(&[r, c]).unwrap();
                let v = f64::from_ne_bytes(tile.bytes().unwrap()[off..off + 8].try_into().unwrap());
                assert_eq!(v, ((r0 + r) * 7 + c0 + c) as f64);
                seen[(r0 + r) * 7 + c0 + c] += 1;
            }
        }
    }
    assert_eq!(count, 3 * 3);
    assert!(seen.iter().all(|&n| n == 1));
    assert!(matches!(a.tiles(&[4]), Err(Error::Layout(_))));
    assert!(matches!(a.tiles(&[0, 3]), Err(Error::Layout(_))));
    assert!(matches!(a.tile(&[8, 0], &[4, 7]), Err(Error::Layout(_))));
}

#[test]
fn wrapped_memory_is_used_in_place_and_never_freed() {
    let mut mine = vec![0u8; 6 * 4];
    {
        let mut w = Array::wrap(&mut mine, Layout::row_major(4, &[2, 3]).unwrap()).unwrap();
        assert!(w.space().is_none());
        w.as_typed_mut::<u32>()
            .unwrap()
            .copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        let m = common::this_machine();
        let t = m
            .duplicate_array(
                &w,
                Some(Layout::column_major(4, &[2, 3]).unwrap()),
                &Policy::require(Tier::Dram),
            )
            .unwrap();
        assert_eq!(t.as_typed::<u32>().unwrap(), &[1, 4, 2, 5, 3, 6]);
    }
    assert_eq!(mine[4], 2, "the caller's bytes hold what was written");
    let mut short = vec![0u8; 10];
    assert!(matches!(
        Array::wrap(&mut short, Layout::row_major(4, &[2, 3]).unwrap()),
        Err(Error::Layout(_))
    ));
}

#[test]
fn mismatched_shapes_are_refused_and_nothing_is_written() {
    let m = common::this_machine();
    let a = filled(&m, 4, 4, Tier::Dram);
    let mut b = m
        .array(
            Layout::row_major(8, &[4, 5]).unwrap(),
            &Policy::require(Tier::Dram),
        )
        .unwrap();
    b.as_bytes_mut().unwrap().fill(0xEE);
    assert_eq!(route(&a, &b).unwrap(), Route::Host);
    assert!(matches!(copy_array(&a, &mut b), Err(Error::Layout(_))));
    assert!(b.as_bytes().unwrap().iter().all(|&x| x == 0xEE));
}

#[test]
fn asynchronous_copies_complete_and_give_the_arrays_back() {
    let m = common::this_machine();
    let dram = Policy::require(Tier::Dram);
    let mut src = m
        .array_owned(Layout::row_major(8, &[256, 300]).unwrap(), &dram)
        .unwrap();
    for (i, x) in src.as_typed_mut::<f64>().unwrap().iter_mut().enumerate() {
        *x = i as f64;
    }
    let dst = m
        .array_owned(Layout::column_major(8, &[256, 300]).unwrap(), &dram)
        .unwrap();
    // The arrays keep their pool alive: the allocator may go first.
    drop(m);
    let mut handle = copy_async(src, dst);
    while !handle.poll() {
        std::thread::yield_now();
    }
    let (src, dst) = handle.wait().unwrap();
    let s = src.as_typed::<f64>().unwrap();
    let d = dst.as_typed::<f64>().unwrap();
    assert_eq!(d[1], s[300]);
    assert_eq!(d[256], s[1]);
}
