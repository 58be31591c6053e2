//! Taking cached blocks back from another thread, on heap memory (so that
//! the handshake can also run under Miri).

use super::heap_provider::{heap_pool as heap_pool_with, GRANULE};
use super::*;

/// A pool of `capacity` bytes on the heap with chunks of four pages.
fn heap_pool(capacity: usize) -> Pool {
    let settings = PoolSettings {
        chunk_size: 4 * GRANULE,
        retain_idle: 0,
        thread_cache_bytes: 1 << 20,
    };
    heap_pool_with(capacity, settings).0
}

#[test]
fn a_sleeping_threads_cache_is_taken_back_at_the_cap() {
    let pool = heap_pool(4 * GRANULE);
    let (filled_tx, filled_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        // Owned by the closure: a failure below drops it and wakes the
        // sleeper, so the test fails instead of hanging.
        let stop_tx = stop_tx;
        let pool = &pool;
        s.spawn(move || {
            // Two large blocks and small ones, all freed into this thread's
            // cache.
            let large: Vec<_> = (0..2).map(|_| pool.allocate(GRANULE, 8).unwrap()).collect();
            let small: Vec<_> = (0..8).map(|_| pool.allocate(100, 8).unwrap()).collect();
            drop((large, small));
            filled_tx.send(()).unwrap();
            let _ = stop_rx.recv();
        });
        filled_rx.recv().unwrap();
        assert_eq!(pool.stats().in_use, 0);
        // The whole capacity at once: only with the sleeper's blocks.
        let whole = pool.allocate(4 * GRANULE, 8).unwrap();
        assert_eq!(whole.len(), 4 * GRANULE);
        drop(whole);
        stop_tx.send(()).unwrap();
    });
    pool.trim();
    assert_eq!(pool.stats().reserved, 0);
}

#[test]
fn the_owner_keeps_using_its_cache_while_it_is_taken_back() {
    let pool = heap_pool(64 * GRANULE);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200 {
                let a = pool.allocate(16 + i % 500, 8).unwrap();
                let b = pool.allocate(GRANULE + i, 8).unwrap();
                drop((a, b));
            }
        });
        for _ in 0..20 {
            pool.trim();
        }
    });
    let st = pool.stats();
    assert_eq!((st.in_use, st.allocations), (0, st.frees));
}
