//! The pool's bookkeeping (size classes, slabs, arena, per-thread caches)
//! on heap memory from a test provider, with small chunks: no system call,
//! so Miri (`scripts/miri.sh`) checks every access the pool makes to its
//! blocks and the thread-cache lifetimes across threads.

use super::heap_provider::{heap_pool as heap_pool_with, Live};
use super::*;
use std::sync::Barrier;

/// A pool of `capacity` bytes on the heap with small chunks and caches.
fn heap_pool(capacity: usize) -> (Pool, Live) {
    let settings = PoolSettings {
        chunk_size: 64 << 10,
        retain_idle: 0,
        thread_cache_bytes: 32 << 10,
    };
    heap_pool_with(capacity, settings)
}

/// Allocates `sizes`, fills each block with its own tag, checks every tag
/// afterwards (an overlap would overwrite one), and frees them.
fn fill_and_check(pool: &Pool, sizes: &[usize], tag: u8) {
    let mut blocks = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut a = pool.allocate(size, 8).unwrap();
        assert!(a.block_len() >= size);
        a.as_mut_slice().unwrap().fill(tag.wrapping_add(i as u8));
        blocks.push(a);
    }
    for (i, a) in blocks.iter().enumerate() {
        let want = tag.wrapping_add(i as u8);
        assert!(
            a.as_slice().unwrap().iter().all(|&b| b == want),
            "block {i} overwritten"
        );
    }
}

fn assert_empty(pool: &Pool, live: &Mutex<BTreeMap<usize, usize>>) {
    pool.trim();
    let st = pool.stats();
    assert_eq!((st.in_use, st.in_use_blocks), (0, 0), "{st:?}");
    assert_eq!(st.allocations, st.frees);
    assert_eq!((st.reserved, st.chunks), (0, 0), "{st:?}");
    assert!(live.lock().unwrap().is_empty(), "chunks not given back");
}

#[test]
fn small_and_large_blocks_from_two_threads_never_overlap() {
    let (pool, live) = heap_pool(1 << 20);
    let sizes = [1, 8, 24, 100, 512, 3000, 5000, 20_000, 40_000];
    std::thread::scope(|s| {
        for tag in [0x10, 0x80] {
            let pool = &pool;
            s.spawn(move || {
                for _ in 0..3 {
                    fill_and_check(pool, &sizes, tag);
                }
            });
        }
    });
    assert_empty(&pool, &live);
}

#[test]
fn a_full_pool_refuses_and_stays_usable() {
    let (pool, live) = heap_pool(128 << 10);
    let held: Vec<_> = (0..2)
        .map(|_| pool.allocate(60 << 10, 8).unwrap())
        .collect();
    assert!(matches!(
        pool.allocate(64 << 10, 8),
        Err(Error::OutOfCapacity { .. })
    ));
    drop(held);
    fill_and_check(&pool, &[60 << 10, 60 << 10], 1);
    assert_empty(&pool, &live);
}

#[test]
fn a_threads_cache_outlives_its_pool_harmlessly() {
    let (pool, live) = heap_pool(1 << 20);
    let pool = Arc::new(pool);
    let cached = Arc::new(Barrier::new(2));
    let dropped = Arc::new(Barrier::new(2));
    let worker = {
        let (pool, cached, dropped) = (pool.clone(), cached.clone(), dropped.clone());
        std::thread::spawn(move || {
            // Frees land in this thread's cache.
            fill_and_check(&pool, &[16, 16, 700, 9000], 3);
            drop(pool);
            cached.wait();
            dropped.wait();
            // A new pool may take the dropped pool's slot: the stale cache
            // entry must not hand out the old blocks.
            let (again, again_live) = heap_pool(1 << 20);
            fill_and_check(&again, &[16, 16, 700, 9000], 5);
            assert_empty(&again, &again_live);
        })
    };
    cached.wait();
    drop(Arc::into_inner(pool).expect("the worker dropped its handle"));
    assert!(
        live.lock().unwrap().is_empty(),
        "dropping the pool released its chunks"
    );
    dropped.wait();
    worker.join().unwrap();
}

#[test]
fn alignments_above_the_page_are_served_and_freed() {
    let (pool, live) = heap_pool(16 << 20);
    let granule = pool.shared.granule;
    let mut blocks = Vec::new();
    for (i, (len, align)) in [
        (8, granule * 2),
        (100, 64 << 10),
        (granule * 3, 256 << 10),
        (5000, 2 << 20),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = pool.allocate(len, align).unwrap();
        assert_eq!(a.addr() % align, 0, "len {len} align {align}");
        a.as_mut_slice().unwrap().fill(i as u8 + 1);
        blocks.push(a);
    }
    for (i, a) in blocks.iter().enumerate() {
        assert!(a.as_slice().unwrap().iter().all(|&b| b == i as u8 + 1));
    }
    drop(blocks);
    assert!(matches!(
        pool.allocate(8, MAX_ALIGN * 2),
        Err(Error::AlignmentTooLarge { max: MAX_ALIGN, .. })
    ));
    assert_empty(&pool, &live);
}
