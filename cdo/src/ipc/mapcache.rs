//! A consumer's cache of the page mappings behind its views.
//!
//! Mapping the pages of every demanded object afresh would cost an `mmap`,
//! its page faults and an `munmap` per view: more than the rest of a small
//! hand-off, and for a large object the faults of all its pages again. A
//! producer reuses the slots of its segments, so the same pages come back
//! object after object: the cache keeps each mapping of whole pages that a
//! view needed, keyed by segment and page range, and the next object on
//! those pages is viewed through it. Only pages that held a demanded object
//! are ever mapped, so a tiny object in a huge sparse segment still costs
//! one page. The cache is bounded in mappings and in mapped bytes (the
//! least recently used go first), and a segment's mappings go when the
//! manager says the segment is gone; a view keeps its own mapping alive.

use std::io;
use std::sync::Arc;

use super::fasthash::FastMap;
use super::shm::{page_span, PageMap, ReadOnlyMap, ReceivedSegment};

/// Most mappings kept.
const MAX_MAPS: usize = 1024;
/// Most bytes mapped by the kept mappings.
const MAX_BYTES: usize = 1 << 30;

/// Segment id (the manager's) and page range of one mapping.
type Key = (u64, u64, u64);

struct Cached {
    pages: Arc<PageMap>,
    last_used: u64,
}

/// Page mappings of received segments, reused across views.
#[derive(Default)]
pub(crate) struct MapCache {
    maps: FastMap<Key, Cached>,
    clock: u64,
    bytes: usize,
}

impl MapCache {
    /// The view of `offset..offset + len` of `segment` (the manager's
    /// segment `id`), through a kept mapping of its pages when there is one.
    pub(crate) fn view(
        &mut self,
        id: u64,
        segment: &Arc<ReceivedSegment>,
        offset: u64,
        len: u64,
    ) -> io::Result<ReadOnlyMap> {
        if len == 0 || offset.checked_add(len).is_none() {
            return ReadOnlyMap::range(segment, offset, len);
        }
        self.clock += 1;
        let (first, end) = page_span(offset, len);
        let key = (id, first, end);
        if let Some(hit) = self.maps.get_mut(&key) {
            hit.last_used = self.clock;
            return ReadOnlyMap::within(Arc::clone(&hit.pages), offset, len);
        }
        let pages = Arc::new(PageMap::new(Arc::clone(segment), offset, len)?);
        self.bytes += pages.len();
        self.maps.insert(
            key,
            Cached {
                pages: Arc::clone(&pages),
                last_used: self.clock,
            },
        );
        if self.maps.len() > MAX_MAPS || self.bytes > MAX_BYTES {
            self.evict();
        }
        ReadOnlyMap::within(pages, offset, len)
    }

    /// Drops the least recently used half of the mappings (at least one),
    /// so that the sort is paid once per many insertions.
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.maps.values().map(|c| c.last_used).collect();
        ages.sort_unstable();
        let cut = ages[(ages.len() / 2).max(1) - 1];
        self.retain(|_, c| c.last_used > cut);
    }

    /// Forgets the mappings of the manager's segment `id`.
    pub(crate) fn forget(&mut self, id: u64) {
        self.retain(|&(segment, _, _), _| segment != id);
    }

    /// Keeps the mappings `keep` says to keep, counting out the bytes of
    /// the others.
    fn retain(&mut self, keep: impl Fn(&Key, &Cached) -> bool) {
        let bytes = &mut self.bytes;
        self.maps.retain(|key, c| {
            let kept = keep(key, c);
            if !kept {
                *bytes -= c.pages.len();
            }
            kept
        });
    }

    /// Mappings kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.maps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shm::Segment;

    fn segment(len: u64) -> (Segment, Arc<ReceivedSegment>) {
        let seg = Segment::create(len).unwrap();
        let received = ReceivedSegment::new(seg.fd().try_clone().unwrap()).unwrap();
        (seg, Arc::new(received))
    }

    #[test]
    fn objects_on_the_same_pages_share_one_mapping() {
        let (seg, received) = segment(8 * 4096);
        // SAFETY: the only slice of this segment in this test.
        let bytes = unsafe { seg.bytes_mut(0, seg.len()) };
        bytes[..64].fill(1);
        bytes[64..128].fill(2);
        bytes[5 * 4096..5 * 4096 + 8].fill(3);
        let mut cache = MapCache::default();
        let a = cache.view(1, &received, 0, 64).unwrap();
        let b = cache.view(1, &received, 64, 64).unwrap();
        let c = cache.view(1, &received, 5 * 4096, 8).unwrap();
        assert_eq!(
            (a.bytes(), b.bytes(), c.bytes()),
            (&[1; 64][..], &[2; 64][..], &[3; 8][..])
        );
        assert_eq!(
            cache.len(),
            2,
            "one mapping for the first page, one for the sixth"
        );
        assert_eq!(a.bytes().as_ptr().wrapping_add(64), b.bytes().as_ptr());
        assert_eq!(c.mapped_len(), 4096);
        // A later object in a reused slot is seen through the same mapping,
        // with its new bytes.
        drop((a, b));
        bytes[..64].fill(9);
        assert_eq!(cache.view(1, &received, 0, 64).unwrap().bytes(), [9; 64]);
        assert_eq!(cache.len(), 2);
        // Another segment id never shares.
        cache.view(2, &received, 0, 64).unwrap();
        assert_eq!(cache.len(), 3);
        cache.forget(1);
        assert_eq!(cache.len(), 1);
        assert_eq!(c.bytes(), [3; 8], "a view outlives its cache entry");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let (_seg, received) = segment((MAX_MAPS as u64 + 10) * 4096);
        let mut cache = MapCache::default();
        for page in 0..MAX_MAPS as u64 + 10 {
            cache.view(1, &received, page * 4096, 16).unwrap();
            assert!(cache.len() <= MAX_MAPS);
        }
        assert_eq!(cache.bytes, cache.len() * 4096);
        assert!(cache
            .view(1, &received, (MAX_MAPS as u64 + 10) * 4096, 1)
            .is_err());
    }
}
