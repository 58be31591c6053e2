//! A whole program's heap in a tier: this test binary's global allocator is
//! a `TierHeap` on DRAM, so every allocation below (and the test harness's
//! own) goes through it.

use mamba::adapters::TierHeap;
use mamba::{Policy, Tier};
use std::collections::HashMap;

#[global_allocator]
static HEAP: TierHeap = TierHeap::new(|| Policy::require(Tier::Dram));

#[test]
fn the_heap_is_served_from_the_tier() {
    let v = vec![3u32; 1 << 20];
    assert!(HEAP.is_active(), "this machine's DRAM resolves");
    let before = HEAP.counts();
    let mut map = HashMap::new();
    for i in 0..10_000u32 {
        map.insert(i, i.to_string());
    }
    let after = HEAP.counts();
    assert!(
        after.in_tier >= before.in_tier + 10_000,
        "{before:?} -> {after:?}"
    );
    assert_eq!(map[&4321], "4321");
    assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 3 << 20);
    let placement = HEAP.placement().unwrap();
    assert!(placement.spaces().all(|s| s.tier == Tier::Dram));
    let addr = v.as_ptr() as usize;
    assert_eq!(addr % std::mem::align_of::<u32>(), 0);
}

#[test]
fn threads_allocate_and_free_across_each_other() {
    let made: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u8)
            .map(|t| s.spawn(move || (0..500).map(|i| vec![t; 1 + i * 7]).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(made.len(), 2000);
    assert!(made.iter().all(|v| v.iter().all(|&b| b == v[0])));
    // Freed here, on another thread than the one that allocated.
    drop(made);
    let s: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 1000);
}
