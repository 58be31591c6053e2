//! Test support: a pool on heap memory from a checking provider, with no
//! system call, so that Miri (`scripts/miri.sh`) can check every access the
//! pool makes to its blocks and the thread-cache handshake across threads.

use super::*;
use crate::provider::Chunk;
use crate::tier::{Backing, SpaceId, Tier};
use std::alloc::Layout;

/// The provider's granule.
pub(super) const GRANULE: usize = 4096;

/// The chunks a [`HeapProvider`] handed out and not yet took back, by
/// address.
pub(super) type Live = Arc<Mutex<BTreeMap<usize, usize>>>;

/// Zeroed chunks from the global allocator, checked on release.
#[derive(Debug, Default)]
struct HeapProvider {
    live: Live,
    /// Reported as memory the CPU cannot address (as device memory), so
    /// that the pool keeps its bookkeeping out of band.
    device_like: bool,
}

impl Provider for HeapProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let layout = Layout::from_size_align(len, GRANULE).expect("valid layout");
        // SAFETY: pools never ask for zero bytes (`len` is a positive
        // multiple of the granule).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::Exhausted {
                call: "alloc_zeroed",
                reason: format!("{len} bytes"),
            });
        }
        let addr = ptr as usize;
        self.live.lock().unwrap().insert(addr, len);
        Ok(Chunk { addr, len })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let len = self.live.lock().unwrap().remove(&chunk.addr);
        assert_eq!(len, Some(chunk.len), "release of an unknown chunk");
        let layout = Layout::from_size_align(chunk.len, GRANULE).expect("valid layout");
        // SAFETY: acquired above with this layout, released once (checked
        // against `live`).
        unsafe { std::alloc::dealloc(chunk.addr as *mut u8, layout) };
    }

    fn granule(&self) -> usize {
        GRANULE
    }

    fn host_accessible(&self) -> bool {
        !self.device_like
    }
}

/// A pool of `capacity` bytes on the heap with `settings`, and its
/// provider's live chunks.
pub(super) fn heap_pool(capacity: usize, settings: PoolSettings) -> (Pool, Live) {
    heap_pool_of(HeapProvider::default(), capacity, settings)
}

/// [`heap_pool`] whose provider reports memory the CPU cannot address, as
/// a device's: the pool must never write into its free blocks. (The space
/// still says it is host-accessible, so that tests can fill blocks.)
pub(super) fn device_like_heap_pool(capacity: usize, settings: PoolSettings) -> (Pool, Live) {
    let provider = HeapProvider {
        device_like: true,
        ..HeapProvider::default()
    };
    heap_pool_of(provider, capacity, settings)
}

fn heap_pool_of(provider: HeapProvider, capacity: usize, settings: PoolSettings) -> (Pool, Live) {
    let live = provider.live.clone();
    let info = SpaceInfo {
        id: SpaceId(0),
        name: "heap0".into(),
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
    };
    (Pool::new(info, Box::new(provider), settings), live)
}
