//! allocator-api2 collections in a placement: the bytes land in the
//! policy's space (on a simulated node with HBM), come back when freed, and
//! a full tier is an allocation error, not a crash.

mod common;

use allocator_api2::alloc::{Allocator, Global};
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use common::simulated;
use mamba::{Mamba, Policy, Tier};
use std::alloc::Layout;

fn in_use(m: &Mamba, name: &str) -> usize {
    m.pool_named(name).unwrap().stats().in_use
}

#[test]
fn a_vector_in_a_placement_lives_in_its_space() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let hbm = m
        .placement(&Policy::require(Tier::Hbm).near_node(1))
        .unwrap();
    let before = in_use(&m, "hbm0");
    let mut v: Vec<u64, _> = Vec::new_in(&hbm);
    v.extend(0..100_000u64);
    assert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
    assert!(
        in_use(&m, "hbm0") >= before + 800_000,
        "the vector's bytes are in hbm0"
    );
    assert_eq!(in_use(&m, "dram0"), 0);
    v.shrink_to_fit();
    let b = Box::new_in([7u8; 3000], &hbm);
    assert_eq!(b.iter().map(|&x| x as usize).sum::<usize>(), 21_000);
    drop(v);
    drop(b);
    assert_eq!(in_use(&m, "hbm0"), before, "every byte came back");
}

#[test]
fn alignments_and_zero_sizes_are_honoured() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let dram = m.placement(&Policy::require(Tier::Dram)).unwrap();
    for align in [1, 8, 16, 64, 4096, 1 << 21] {
        for size in [0, 1, 24, 5000] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let block = Allocator::allocate(&dram, layout).unwrap();
            let ptr = block.cast::<u8>();
            assert_eq!(ptr.as_ptr() as usize % align, 0, "align {align}");
            assert_eq!(block.len(), size);
            // SAFETY: the block has `size` writable bytes.
            unsafe {
                ptr.as_ptr().write_bytes(0xa5, size);
                dram.deallocate(ptr, layout);
            }
        }
    }
    assert_eq!(in_use(&m, "dram0") + in_use(&m, "dram1"), 0);
}

#[test]
fn a_full_tier_is_an_allocation_error_and_the_pool_stays_usable() {
    let m = Mamba::discover(&simulated("[caps]\nhbm = \"4MiB\"")).unwrap();
    let hbm = m.placement(&Policy::require(Tier::Hbm)).unwrap();
    let too_big = Layout::from_size_align(64 << 20, 64).unwrap();
    assert!(Allocator::allocate(&hbm, too_big).is_err());
    let mut v: Vec<u8, _> = Vec::new_in(&hbm);
    assert!(v.try_reserve(64 << 20).is_err());
    v.try_reserve(1 << 20).expect("what fits still fits");
    // The same program with a fallback chain takes DRAM.
    let spill = m
        .placement(&Policy::prefer(Tier::Hbm).or(Tier::Dram))
        .unwrap();
    let mut w: Vec<u8, _> = Vec::new_in(&spill);
    w.resize(16 << 20, 1);
    assert!(in_use(&m, "dram0") + in_use(&m, "dram1") >= 16 << 20);
    // A clone of a placement frees the blocks of the original.
    let other = hbm.clone();
    let layout = Layout::from_size_align(100, 8).unwrap();
    let block = Allocator::allocate(&hbm, layout).unwrap();
    // SAFETY: allocated above with `layout`; a clone has the same pools.
    unsafe { other.deallocate(block.cast(), layout) };
    // Global is the peer: the same collection code runs on it.
    let g: Vec<u8, Global> = Vec::with_capacity_in(10, Global);
    assert!(g.capacity() >= 10);
}
