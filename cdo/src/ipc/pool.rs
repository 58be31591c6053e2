//! The producer's pool of pre-faulted shared segments.
//!
//! Small objects (up to [`LARGEST_CLASS`]) get a slot of a power-of-four size
//! class carved from a few big segments, so they cost no memfd, no page fault
//! and no descriptor passing after the first use of their segment. Larger
//! objects get a segment of their own, kept for reuse after the object is
//! withdrawn (up to a few per pool), so a steady stream of large objects also
//! runs on pre-faulted memory.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use super::shm::{page_round, Segment};

/// Slot sizes of the small classes.
const CLASSES: [u64; 7] = [
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
];
/// The largest object placed in a shared small-class segment.
pub const LARGEST_CLASS: u64 = 1 << 20;

/// Tuning of a [`SegmentPool`].
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Size of each segment carved into small slots (at least 4 slots).
    pub chunk_bytes: u64,
    /// How many withdrawn large segments are kept for reuse.
    pub retained_large: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            chunk_bytes: 4 << 20,
            retained_large: 2,
        }
    }
}

/// A place for one object: `capacity` bytes at `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The pool's identifier of the segment.
    pub segment: u64,
    /// Offset of the slot in the segment.
    pub offset: u64,
    /// Usable bytes.
    pub capacity: u64,
    /// Small class index, `None` for a large segment of its own.
    class: Option<usize>,
}

/// Producer-side allocator of slots in pre-faulted, sealed segments.
#[derive(Debug)]
pub struct SegmentPool {
    config: PoolConfig,
    segments: HashMap<u64, Arc<Segment>>,
    next_id: u64,
    free_small: [Vec<(u64, u64)>; CLASSES.len()],
    free_large: Vec<u64>,
    dropped: Vec<u64>,
}

impl SegmentPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        SegmentPool {
            config,
            segments: HashMap::new(),
            next_id: 1,
            free_small: Default::default(),
            free_large: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// A slot of at least `size` bytes.
    pub fn alloc(&mut self, size: u64) -> io::Result<Slot> {
        match CLASSES.iter().position(|&c| c >= size) {
            Some(class) => self.alloc_small(class),
            None => self.alloc_large(size),
        }
    }

    fn alloc_small(&mut self, class: usize) -> io::Result<Slot> {
        let slot = CLASSES[class];
        if self.free_small[class].is_empty() {
            let len = page_round(self.config.chunk_bytes.max(4 * slot));
            let id = self.insert(Segment::create(len)?);
            let free = &mut self.free_small[class];
            free.extend((0..len / slot).rev().map(|i| (id, i * slot)));
        }
        let (segment, offset) = self.free_small[class]
            .pop()
            .expect("a fresh chunk has free slots");
        Ok(Slot {
            segment,
            offset,
            capacity: slot,
            class: Some(class),
        })
    }

    fn alloc_large(&mut self, size: u64) -> io::Result<Slot> {
        let want = page_round(size);
        let fits = |seg: &Segment| seg.len() >= want && seg.len() <= 2 * want;
        let reuse = self
            .free_large
            .iter()
            .position(|id| fits(&self.segments[id]));
        let segment = match reuse {
            Some(i) => self.free_large.swap_remove(i),
            None => self.insert(Segment::create(want)?),
        };
        Ok(Slot {
            segment,
            offset: 0,
            capacity: self.segments[&segment].len(),
            class: None,
        })
    }

    fn insert(&mut self, seg: Segment) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.segments.insert(id, Arc::new(seg));
        id
    }

    /// Returns `slot` to the pool; its bytes may be handed out again.
    pub fn release(&mut self, slot: Slot) {
        match slot.class {
            Some(class) => self.free_small[class].push((slot.segment, slot.offset)),
            None => {
                self.free_large.push(slot.segment);
                if self.free_large.len() > self.config.retained_large {
                    let old = self.free_large.remove(0);
                    self.segments.remove(&old);
                    self.dropped.push(old);
                }
            }
        }
    }

    /// The segment `id`.
    pub fn segment(&self, id: u64) -> Option<&Arc<Segment>> {
        self.segments.get(&id)
    }

    /// Segments dropped since the last call (their holders may close them).
    pub fn take_dropped(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_slots_share_segments_and_are_reused() {
        let mut pool = SegmentPool::new(PoolConfig {
            chunk_bytes: 64 << 10,
            retained_large: 1,
        });
        let a = pool.alloc(100).unwrap();
        let b = pool.alloc(200).unwrap();
        assert_eq!(a.segment, b.segment);
        assert_ne!(a.offset, b.offset);
        assert_eq!(a.capacity, 256);
        pool.release(a);
        assert_eq!(pool.alloc(1).unwrap(), a);
        let c = pool.alloc(4097).unwrap();
        assert_ne!(c.segment, a.segment);
        assert_eq!(c.capacity, 16 << 10);
    }

    #[test]
    fn large_segments_are_retained_then_dropped() {
        let mut pool = SegmentPool::new(PoolConfig {
            chunk_bytes: 64 << 10,
            retained_large: 1,
        });
        let a = pool.alloc(2 << 20).unwrap();
        pool.release(a);
        let again = pool.alloc(2 << 20).unwrap();
        assert_eq!(again.segment, a.segment);
        let b = pool.alloc(3 << 20).unwrap();
        pool.release(again);
        pool.release(b);
        assert_eq!(pool.take_dropped(), vec![a.segment]);
        assert!(pool.segment(a.segment).is_none());
        assert!(pool.segment(b.segment).is_some());
    }
}
