//! Taking cached blocks back from another thread, on heap memory (so that
//! the handshake can also run under Miri).

use super::*;
use crate::provider::Chunk;
use crate::tier::{Backing, SpaceId, Tier};
use std::alloc::Layout;

const GRANULE: usize = 4096;

/// Zeroed heap memory.
#[derive(Debug)]
struct HeapProvider;

impl Provider for HeapProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let layout = Layout::from_size_align(len, GRANULE).expect("valid layout");
        // SAFETY: pools never ask for empty chunks.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::Exhausted {
                call: "alloc_zeroed",
                reason: format!("{len} bytes"),
            });
        }
        Ok(Chunk {
            addr: ptr as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let layout = Layout::from_size_align(chunk.len, GRANULE).expect("valid layout");
        // SAFETY: the chunk came from `acquire` with this layout.
        unsafe { std::alloc::dealloc(chunk.addr as *mut u8, layout) };
    }

    fn granule(&self) -> usize {
        GRANULE
    }

    fn host_accessible(&self) -> bool {
        true
    }
}

fn heap_pool(capacity: usize) -> Pool {
    Pool::new(
        SpaceInfo {
            id: SpaceId(0),
            name: "heap".into(),
            tier: Tier::Dram,
            capacity,
            numa_node: None,
            device: None,
            cpus: Vec::new(),
            bandwidth_mib_s: None,
            latency_ns: None,
            host_accessible: true,
            persistent: false,
            backing: Backing::Unbound,
        },
        Box::new(HeapProvider),
        PoolSettings {
            chunk_size: 4 * GRANULE,
            retain_idle: 0,
            thread_cache_bytes: 1 << 20,
        },
    )
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
