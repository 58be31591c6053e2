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

#[test]
fn blocks_know_their_class_or_their_arena_length() {
    for (class, &size) in CLASS_SIZES.iter().enumerate() {
        let b = Block::small(4096, 1, class);
        assert_eq!((b.class(), b.block_len()), (Some(class), size));
    }
    let b = Block::large(4096, 1, classes::MAX_SMALL + 1);
    assert_eq!((b.class(), b.block_len()), (None, classes::MAX_SMALL + 1));
    let (pool, live) = heap_pool(1 << 20);
    // An over-aligned small request takes a larger class; one aligned
    // above the page, an arena block: both free back to where they came
    // from, with the block bytes they were counted with.
    let over = pool.allocate(48, 32).unwrap();
    let arena = pool
        .allocate(100, 2 * super::heap_provider::GRANULE)
        .unwrap();
    assert_eq!((over.block().class(), over.block_len()), (Some(3), 64));
    assert_eq!(arena.block().class(), None);
    assert!(arena.block_len() > classes::MAX_SMALL);
    let st = pool.stats();
    assert_eq!(st.in_use_blocks, 64 + arena.block_len(), "{st:?}");
    drop((over, arena));
    assert_empty(&pool, &live);
}

/// Charges the move of `a`'s block from its pool to `to`, as a page move
/// does, and records it on the allocation.
fn pretend_moved(a: &mut Allocation<'_>, to: &Pool) {
    to.charge_moved_in(a.block_len()).unwrap();
    a.pool().note_moved_out(a.block_len());
    a.set_resident(to.handle());
}

#[test]
fn every_kind_of_allocation_link_frees_into_its_own_pool() {
    let (origin, origin_live) = heap_pool(1 << 20);
    let (target, target_live) = heap_pool(1 << 20);
    let counts = |p: &Pool| {
        let st = p.stats();
        (
            st.allocations,
            st.frees,
            st.in_use,
            st.moved_in,
            st.moved_out,
        )
    };

    // Borrowed, pages at home: the plain link.
    let a = origin.allocate(64, 16).unwrap();
    assert!(a.is_plain() && !a.is_owned() && a.resident().is_none());
    assert!(a.pool().same(&origin));
    drop(a);
    assert_eq!(counts(&origin), (1, 1, 0, 0, 0));

    // Borrowed, pages moved: detached; moving home makes it plain again.
    let mut a = origin.allocate(64, 16).unwrap();
    pretend_moved(&mut a, &target);
    assert!(!a.is_plain() && !a.is_owned());
    assert!(a.pool().same(&origin) && a.resident().unwrap().same(&target));
    assert_eq!(counts(&target), (0, 0, 0, 64, 0));
    let home = a.take_resident().unwrap();
    home.uncharge_moved_in(a.block_len());
    a.pool().unnote_moved_out(a.block_len());
    assert!(a.is_plain() && a.resident().is_none());
    pretend_moved(&mut a, &target);
    drop(a);
    assert_eq!(counts(&origin), (2, 2, 0, 0, 0));
    assert_eq!(counts(&target), (0, 0, 0, 0, 0));

    // Owned, moved pages kept through `into_owned`.
    let mut a = origin.allocate(5000, 16).unwrap();
    pretend_moved(&mut a, &target);
    let a = a.into_owned();
    assert!(!a.is_plain() && a.is_owned());
    assert!(a.pool().same(&origin) && a.resident().unwrap().same(&target));
    drop(a);
    assert_eq!(counts(&origin), (3, 3, 0, 0, 0));
    assert_eq!(counts(&target), (0, 0, 0, 0, 0));

    // Owned, into raw and back: the moved pages go home first.
    let mut a = origin.allocate(40_000, 16).unwrap().into_owned();
    pretend_moved(&mut a, &target);
    let raw = a.into_raw();
    assert_eq!(counts(&target), (0, 0, 0, 0, 0));
    assert_eq!(raw.generation(), origin.generation());
    origin.free_block(&raw.block());
    assert_eq!(counts(&origin), (4, 4, 0, 0, 0));

    // An owned allocation keeps its pool alive and frees into it last.
    let a = origin.allocate(64, 16).unwrap().into_owned();
    drop(origin);
    assert!(a.is_owned() && !origin_live.lock().unwrap().is_empty());
    drop(a);
    assert!(origin_live.lock().unwrap().is_empty());
    assert_empty(&target, &target_live);
}

/// Owned allocations reuse the boxes of those freed before them on the
/// same thread, up to the number kept; the rest go back to the heap.
#[test]
fn owned_allocations_reuse_the_boxes_of_freed_ones() {
    use crate::allocation::spare;
    let (pool, _live) = heap_pool(1 << 20);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(spare::kept(), 0);
            let owned: Vec<_> = (0..spare::KEPT + 3)
                .map(|_| pool.allocate(64, 16).unwrap().into_owned())
                .collect();
            assert_eq!(spare::kept(), 0, "none kept while all are live");
            drop(owned);
            assert_eq!(spare::kept(), spare::KEPT, "at most KEPT kept");
            let again = pool.allocate(64, 16).unwrap().into_owned();
            assert_eq!(spare::kept(), spare::KEPT - 1, "one reused");
            assert!(again.is_owned() && again.pool().same(&pool));
            drop(again);
            assert_eq!(spare::kept(), spare::KEPT);
        });
    });
}
