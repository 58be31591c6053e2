//! mamba.h called as C would call it, on a simulated two-socket node with
//! HBM (hwloc XML): placements land in the tiers asked for, copies cross
//! tiers, and misuse is a status code. One test: the node is per process.

use mamba_capi::mamba::*;
use std::ffi::{c_void, CStr};
use std::ptr::null_mut;

fn ok(s: mamba_status) {
    assert_eq!(s, mamba_status::MAMBA_OK);
}

fn space_of(ptr: *const c_void) -> (String, mamba_tier, usize) {
    // SAFETY: mamba_space is plain data; written by the call.
    let mut space: mamba_space = unsafe { std::mem::zeroed() };
    let mut len = 0;
    // SAFETY: writable out-parameters.
    ok(unsafe { mamba_alloc_space(ptr, &mut space, &mut len) });
    // SAFETY: the name is NUL-terminated.
    let name = unsafe { CStr::from_ptr(space.name.as_ptr()) };
    (name.to_str().unwrap().to_owned(), space.tier, len)
}

#[test]
fn placements_allocations_and_copies_on_a_simulated_node() {
    let xml = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mamba/tests/data/xeon-max-2s.xml"
    );
    std::env::set_var("MAMBA_TOPOLOGY", xml);
    std::env::set_var("MAMBA_GPU", "0");
    let mut count = 0;
    // SAFETY: a writable count.
    let before_init = unsafe { mamba_space_count(&mut count) };
    assert_eq!(before_init, mamba_status::MAMBA_NOT_INITIALIZED);
    // SAFETY: NULL selects the environment.
    ok(unsafe { mamba_init(std::ptr::null()) });
    // SAFETY: as above.
    let again = unsafe { mamba_init(std::ptr::null()) };
    assert_eq!(again, mamba_status::MAMBA_ALREADY_INITIALIZED);
    // SAFETY: a writable count.
    ok(unsafe { mamba_space_count(&mut count) });
    assert_eq!(count, 5, "dram0 hbm0 dram1 hbm1 nvdimm0");

    let mut hbm = null_mut();
    let mut dram = null_mut();
    let tiers = [
        mamba_tier::MAMBA_TIER_HBM as u32,
        mamba_tier::MAMBA_TIER_DRAM as u32,
    ];
    // SAFETY: `tiers` holds the count given; writable handles.
    unsafe {
        ok(mamba_placement_prefer(tiers.as_ptr(), 2, 1, &mut hbm));
        ok(mamba_placement_best(2, -1, &mut dram));
        assert_eq!(
            mamba_placement_prefer([99u32].as_ptr(), 1, -1, &mut dram),
            mamba_status::MAMBA_INVALID_ARGUMENT
        );
        assert_eq!(
            mamba_placement_prefer(
                [mamba_tier::MAMBA_TIER_SSD as u32].as_ptr(),
                1,
                -1,
                &mut dram
            ),
            mamba_status::MAMBA_NO_SPACE
        );
        assert_eq!(
            mamba_placement_best(7, -1, &mut dram),
            mamba_status::MAMBA_INVALID_ARGUMENT
        );
        ok(mamba_placement_best(2, -1, &mut dram));
    }

    let (mut a, mut b) = (null_mut(), null_mut());
    // SAFETY: writable pointers.
    unsafe {
        ok(mamba_alloc(hbm, 1 << 20, 64, &mut a));
        ok(mamba_alloc(dram, 1 << 20, 4096, &mut b));
        assert_eq!(
            mamba_alloc(hbm, 0, 64, &mut a),
            mamba_status::MAMBA_INVALID_ARGUMENT
        );
        assert_eq!(
            mamba_alloc(hbm, 64, 3, &mut a),
            mamba_status::MAMBA_INVALID_ARGUMENT
        );
        assert_eq!(
            mamba_alloc(1234usize as mamba_placement, 64, 8, &mut a),
            mamba_status::MAMBA_INVALID_ARGUMENT
        );
    }
    let (name, tier, len) = space_of(a);
    assert_eq!(
        (name.as_str(), tier, len),
        ("hbm0", mamba_tier::MAMBA_TIER_HBM, 1 << 20)
    );
    assert_eq!(b as usize % 4096, 0);
    // SAFETY: `a` has 1 MiB of host memory.
    unsafe { std::slice::from_raw_parts_mut(a.cast::<u8>(), 1 << 20).fill(7) };
    ok(mamba_copy(b, a));
    // SAFETY: `b` has 1 MiB of host memory.
    let copied = unsafe { std::slice::from_raw_parts(b.cast::<u8>(), 1 << 20) };
    assert!(copied.iter().all(|&x| x == 7));
    assert_eq!(mamba_copy(a, a), mamba_status::MAMBA_INVALID_ARGUMENT);

    ok(mamba_free(a));
    assert_eq!(mamba_free(a), mamba_status::MAMBA_UNKNOWN_POINTER);
    assert_eq!(mamba_copy(b, a), mamba_status::MAMBA_UNKNOWN_POINTER);
    ok(mamba_free(null_mut()));
    ok(mamba_placement_free(hbm));
    assert_eq!(
        mamba_placement_free(hbm),
        mamba_status::MAMBA_INVALID_ARGUMENT
    );
    ok(mamba_finalize());
    assert_eq!(mamba_free(b), mamba_status::MAMBA_NOT_INITIALIZED);
    assert_eq!(mamba_finalize(), mamba_status::MAMBA_NOT_INITIALIZED);
}

#[test]
fn every_status_value_has_a_description() {
    let describe = |s: i32| {
        // SAFETY: the description is a static NUL-terminated string.
        unsafe { CStr::from_ptr(mamba_status_description(s)) }
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(describe(mamba_status::MAMBA_OK as i32), "success");
    assert_eq!(
        describe(mamba_status::MAMBA_NO_SPACE as i32),
        "no space of the node matches the policy"
    );
    // C lets any int through the enum: a value outside it is described,
    // not undefined behaviour.
    for outside in [-1, 9, 1000, i32::MIN] {
        assert_eq!(describe(outside), "unknown status");
    }
}
