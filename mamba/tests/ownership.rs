//! Sound ownership: raw blocks come back at most once and only to their
//! own pool; owned allocations keep their pool alive.

mod common;

use mamba::{Allocation, Error, Mamba, Policy, Tier};

#[test]
fn a_raw_block_of_another_allocator_is_refused_and_harmless() {
    let a = Mamba::discover(&common::simulated("")).unwrap();
    let b = Mamba::discover(&common::simulated("")).unwrap();
    let hbm = Policy::require(Tier::Hbm);
    let raw = a.allocate(1000, 8, &hbm).unwrap().into_raw();
    let space = raw.space();
    assert_eq!(a.pool(space).unwrap().stats().in_use, 1000);
    // Same space id, same kind of pool, but not b's memory.
    assert!(matches!(
        b.free_raw(raw),
        Err(Error::ForeignBlock { space: s, .. }) if s == space
    ));
    assert_eq!(b.pool(space).unwrap().stats().frees, 0);
    // The refused block stays allocated in a: its pool is intact and usable.
    assert_eq!(a.pool(space).unwrap().stats().in_use, 1000);
    let raw = a.allocate(1000, 8, &hbm).unwrap().into_raw();
    assert_eq!(a.pool(space).unwrap().stats().in_use, 2000);
    a.free_raw(raw).unwrap();
    assert_eq!(a.pool(space).unwrap().stats().in_use, 1000);
}

#[test]
fn a_raw_block_of_a_dropped_allocator_is_refused() {
    let first = Mamba::discover(&common::simulated("")).unwrap();
    let raw = first
        .allocate(64, 8, &Policy::require(Tier::Dram))
        .unwrap()
        .into_raw();
    drop(first);
    // A new allocator may well map the same addresses for the same space.
    let second = Mamba::discover(&common::simulated("")).unwrap();
    let live = second
        .allocate(64, 8, &Policy::require(Tier::Dram))
        .unwrap();
    let space = raw.space();
    assert!(matches!(
        second.free_raw(raw),
        Err(Error::ForeignBlock { .. })
    ));
    let stats = second.pool(space).unwrap().stats();
    assert_eq!((stats.allocations, stats.frees), (1, 0));
    drop(live);
}

#[test]
fn raw_blocks_round_trip_with_their_address_and_length() {
    let m = common::this_machine();
    let a = m.allocate(5000, 64, &Policy::require(Tier::Dram)).unwrap();
    let (addr, len, space) = (a.addr(), a.len(), a.space().id);
    let raw = a.into_raw();
    assert_eq!((raw.addr(), raw.len(), raw.space()), (addr, len, space));
    m.free_raw(raw).unwrap();
    assert_eq!(m.pool(space).unwrap().stats().in_use, 0);
}

#[test]
fn owned_allocations_outlive_their_allocator_and_cross_threads() {
    let m = common::this_machine();
    let dram = m.pool_of(Tier::Dram).unwrap().info().name.clone();
    let mut small = m
        .allocate_owned(100, 8, &Policy::require(Tier::Dram))
        .unwrap();
    let mut large = m
        .allocate(1 << 20, 4096, &Policy::require(Tier::Dram))
        .unwrap()
        .into_owned();
    assert!(small.is_owned() && large.is_owned());
    small.as_mut_slice().unwrap().fill(7);
    large.as_mut_slice().unwrap().fill(9);
    drop(m);
    let handles: Vec<std::thread::JoinHandle<u64>> = [small, large]
        .into_iter()
        .map(|a: Allocation<'static>| {
            let dram = dram.clone();
            std::thread::spawn(move || {
                assert_eq!(a.space().name, dram);
                let sum = a.as_slice().unwrap().iter().map(|&b| u64::from(b)).sum();
                drop(a); // freed on another thread, into a pool nobody else holds
                sum
            })
        })
        .collect();
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(sums, vec![700, 9 << 20]);
}

#[test]
fn owned_and_borrowed_allocations_share_the_pool_accounting() {
    let m = common::this_machine();
    let pool = m.pool_of(Tier::Dram).unwrap();
    let borrowed = pool.allocate(3000, 8).unwrap();
    assert!(!borrowed.is_owned());
    let owned = pool.allocate(5000, 8).unwrap().into_owned();
    assert_eq!(pool.stats().in_use, 8000);
    drop(owned);
    assert_eq!(pool.stats().in_use, 3000);
    drop(borrowed);
    let st = pool.stats();
    assert_eq!((st.in_use, st.allocations, st.frees), (0, 2, 2));
}
