//! The small-block path of threads' caches: intrusive free lists in host
//! memory, out-of-band stacks for memory the CPU cannot address, on heap
//! memory (so that Miri checks every access the lists make to blocks).

use super::cache::list_limit;
use super::heap_provider::{device_like_heap_pool, heap_pool as heap_pool_with, Live, GRANULE};
use super::*;
use std::collections::BTreeSet;
use std::sync::Barrier;

fn settings() -> PoolSettings {
    PoolSettings {
        chunk_size: 64 << 10,
        retain_idle: 0,
        thread_cache_bytes: 32 << 10,
    }
}

/// A host pool and a device-like one (out-of-band bookkeeping), both on
/// the heap, for tests that must hold for either.
fn both_pools(capacity: usize) -> [(Pool, Live); 2] {
    [
        heap_pool_with(capacity, settings()),
        device_like_heap_pool(capacity, settings()),
    ]
}

/// Reads the first word of a block the pool holds (a test looks into a
/// free block: the chunk is still live heap memory).
fn first_word(addr: usize) -> usize {
    // SAFETY: `addr` is 16-byte aligned inside a live chunk of the heap
    // provider, and no other thread uses the pool meanwhile.
    unsafe { (addr as *const usize).read() }
}

fn live_bytes(blocks: &[Allocation<'_>]) -> (usize, usize) {
    blocks
        .iter()
        .fold((0, 0), |(l, b), a| (l + a.len(), b + a.block_len()))
}

fn assert_stats(pool: &Pool, blocks: &[Allocation<'_>], allocations: u64) {
    let st = pool.stats();
    let (len, block_len) = live_bytes(blocks);
    assert_eq!((st.in_use, st.in_use_blocks), (len, block_len), "{st:?}");
    assert_eq!(st.allocations, allocations, "{st:?}");
    assert_eq!(st.allocations - st.frees, blocks.len() as u64, "{st:?}");
}

#[test]
fn freed_small_blocks_come_back_last_in_first_out() {
    for (pool, _live) in both_pools(1 << 20) {
        let blocks: Vec<_> = (0..3).map(|_| pool.allocate(64, 16).unwrap()).collect();
        let addrs: Vec<usize> = blocks.iter().map(Allocation::addr).collect();
        assert_eq!(addrs.iter().collect::<BTreeSet<_>>().len(), 3);
        drop(blocks);
        // Each allocation takes the block freed last: a pair of allocate and
        // free keeps touching one block.
        for _ in 0..3 {
            assert_eq!(pool.allocate(64, 16).unwrap().addr(), addrs[2]);
        }
        let again: Vec<usize> = (0..3)
            .map(|_| pool.allocate(64, 16).unwrap().into_raw().addr())
            .collect();
        assert_eq!(again, vec![addrs[2], addrs[1], addrs[0]]);
        let st = pool.stats();
        assert_eq!((st.allocations, st.frees, st.in_use), (9, 6, 3 * 64));
    }
}

#[test]
fn host_free_lists_link_through_blocks_and_device_ones_never_write_them() {
    let [(host, _h), (device, _d)] = both_pools(1 << 20);
    for (pool, intrusive) in [(&host, true), (&device, false)] {
        let mut blocks: Vec<_> = (0..2).map(|_| pool.allocate(48, 16).unwrap()).collect();
        for a in &mut blocks {
            a.as_mut_slice().unwrap().fill(0xab);
        }
        let (first, second) = (blocks[0].addr(), blocks[1].addr());
        drop(blocks);
        let pattern = usize::from_ne_bytes([0xab; 8]);
        if intrusive {
            // The list: second -> first -> (the slab's bump range is
            // separate, so the list ends here).
            assert_eq!(first_word(second), first);
            assert_eq!(first_word(first), 0);
        } else {
            assert_eq!((first_word(first), first_word(second)), (pattern, pattern));
        }
        let a = pool.allocate(48, 16).unwrap();
        assert_eq!(a.addr(), second);
    }
}

#[test]
fn a_full_list_moves_a_batch_to_the_central_list_and_every_block_comes_back() {
    for (pool, live) in both_pools(4 << 20) {
        let class = classes::class_of(256);
        let n = 5 * batch(class);
        let mut blocks: Vec<_> = (0..n).map(|_| pool.allocate(256, 16).unwrap()).collect();
        for (i, a) in blocks.iter_mut().enumerate() {
            a.as_mut_slice().unwrap().fill(i as u8);
        }
        let addrs: BTreeSet<usize> = blocks.iter().map(Allocation::addr).collect();
        let reserved = pool.stats().reserved;
        let central_before = lock(&pool.shared.central[class]).len();
        drop(blocks);
        let central_after = lock(&pool.shared.central[class]).len();
        assert!(
            central_after >= central_before + n - list_limit(class),
            "frees past the list's limit reach the central list: {central_before} -> {central_after}"
        );
        // Another thread reuses them: no new slab, and no two live blocks
        // overlap.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut again: Vec<_> = (0..n).map(|_| pool.allocate(256, 16).unwrap()).collect();
                for (i, a) in again.iter_mut().enumerate() {
                    a.as_mut_slice().unwrap().fill(i as u8 ^ 0x5a);
                }
                for (i, a) in again.iter().enumerate() {
                    assert!(a.as_slice().unwrap().iter().all(|&b| b == i as u8 ^ 0x5a));
                }
                let got: BTreeSet<usize> = again.iter().map(Allocation::addr).collect();
                assert!(got.intersection(&addrs).count() >= n - list_limit(class));
                assert_eq!(pool.stats().reserved, reserved);
            });
        });
        // Every block came back: every slab is entirely free.
        pool.trim();
        assert_eq!(pool.stats().reserved, 0);
        assert!(live.lock().unwrap().is_empty());
    }
}

#[test]
fn blocks_freed_by_another_thread_are_reused_there_and_counted_exactly() {
    for (pool, live) in both_pools(1 << 20) {
        let sizes = [16, 64, 64, 100, 300, 1000, 4000, 20_000];
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Allocation<'_>>>();
        let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
        let counted = Barrier::new(2);
        std::thread::scope(|s| {
            let (pool, counted, sizes) = (&pool, &counted, &sizes);
            let freer = s.spawn(move || {
                let blocks = rx.recv().unwrap();
                let addrs: BTreeSet<usize> = blocks.iter().map(Allocation::addr).collect();
                drop(blocks);
                freed_tx.send(()).unwrap();
                counted.wait();
                // The freed blocks are in this thread's cache now.
                let again: Vec<_> = sizes
                    .iter()
                    .map(|&l| pool.allocate(l, 16).unwrap())
                    .collect();
                let got: BTreeSet<usize> = again.iter().map(Allocation::addr).collect();
                assert_eq!(got, addrs);
                assert_stats(pool, &again, 2 * sizes.len() as u64);
            });
            let blocks: Vec<_> = sizes
                .iter()
                .map(|&l| pool.allocate(l, 16).unwrap())
                .collect();
            assert_stats(pool, &blocks, sizes.len() as u64);
            tx.send(blocks).unwrap();
            freed_rx.recv().unwrap();
            // The allocating thread counted the allocations, the other the
            // frees: their sums are exact.
            assert_stats(pool, &[], sizes.len() as u64);
            counted.wait();
            freer.join().unwrap();
        });
        let st = pool.stats();
        assert_eq!((st.in_use, st.in_use_blocks), (0, 0));
        assert_eq!(st.allocations, st.frees);
        pool.trim();
        assert!(live.lock().unwrap().is_empty());
    }
}

#[test]
fn statistics_are_exact_sums_over_live_and_exited_threads() {
    let (pool, _live) = heap_pool_with(8 << 20, settings());
    const THREADS: usize = 3;
    let holding = Barrier::new(THREADS + 1);
    let checked = Barrier::new(THREADS + 1);
    let expected: Vec<Vec<usize>> = (0..THREADS)
        .map(|t| (0..200).map(|i| 1 + (i * 37 + t * 11) % 3000).collect())
        .collect();
    std::thread::scope(|s| {
        for sizes in &expected {
            let (pool, holding, checked) = (&pool, &holding, &checked);
            s.spawn(move || {
                // Every other block is freed at once (the list reuses it).
                let mut kept = Vec::new();
                for (i, &len) in sizes.iter().enumerate() {
                    let a = pool.allocate(len, 8).unwrap();
                    if i % 2 == 0 {
                        kept.push(a);
                    }
                }
                holding.wait();
                checked.wait();
                drop(kept);
            });
        }
        holding.wait();
        let kept: Vec<usize> = expected
            .iter()
            .flat_map(|s| s.iter().step_by(2).copied())
            .collect();
        let st = pool.stats();
        assert_eq!(st.in_use, kept.iter().sum::<usize>());
        let blocks: usize = kept
            .iter()
            .map(|&l| CLASS_SIZES[classes::class_of(l)])
            .sum();
        assert_eq!(st.in_use_blocks, blocks);
        assert_eq!(st.allocations, (THREADS * 200) as u64);
        assert_eq!(st.frees, (THREADS * 100) as u64);
        checked.wait();
    });
    // The threads exited: their counters were folded into the pool's.
    let st = pool.stats();
    assert_eq!((st.in_use, st.in_use_blocks), (0, 0));
    assert_eq!(
        (st.allocations, st.frees),
        ((THREADS * 200) as u64, (THREADS * 200) as u64)
    );
}

#[test]
fn blocks_on_free_lists_count_against_the_capacity_and_are_taken_back_at_it() {
    let capacity = 32 * GRANULE;
    for (pool, live) in both_pools(capacity) {
        // Fill the capacity with small blocks.
        let mut blocks = Vec::new();
        let refused = loop {
            match pool.allocate(64, 16) {
                Ok(a) => blocks.push(a),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(refused, Error::OutOfCapacity { capacity: c, .. } if c == capacity),
            "{refused:?}"
        );
        let n = blocks.len();
        assert!(n * 64 <= capacity && n * 64 > capacity / 2, "{n} blocks");
        let st = pool.stats();
        assert!(st.reserved <= capacity, "{st:?}");
        // Freed into this thread's list (and the central one): the whole
        // capacity at once only with those blocks taken back.
        drop(blocks);
        std::thread::scope(|s| {
            s.spawn(|| {
                let whole = pool.allocate(capacity, 16).unwrap();
                assert_eq!(whole.len(), capacity);
                assert!(matches!(
                    pool.allocate(64, 16),
                    Err(Error::OutOfCapacity { .. })
                ));
            });
        });
        // The pool is intact: the same number of small blocks fits again.
        pool.trim();
        let again: Vec<_> = (0..n).map(|_| pool.allocate(64, 16).unwrap()).collect();
        assert_eq!(again.len(), n);
        drop(again);
        pool.trim();
        assert_eq!(pool.stats().reserved, 0);
        assert!(live.lock().unwrap().is_empty());
    }
}
