//! The best-fit arena: carves provider chunks into blocks of any size,
//! coalesces free neighbours, and gives fully free chunks back.
//!
//! Pure bookkeeping over addresses: it never touches the memory, so it
//! serves device memory as well as host memory. Callers hold it under a
//! lock.

use crate::provider::{Chunk, Provider};
use std::collections::{BTreeMap, BTreeSet};

/// Why the arena could not produce a block.
#[derive(Debug)]
pub enum ArenaError {
    /// Taking another chunk would exceed the capacity limit.
    Capacity {
        /// Bytes that were needed.
        needed: usize,
        /// Bytes left under the limit.
        available: usize,
    },
    /// The provider failed.
    Provider(crate::Error),
}

/// Free extents and chunks of one pool.
#[derive(Debug, Default)]
pub struct Arena {
    /// Chunk start -> length.
    chunks: BTreeMap<usize, usize>,
    /// Free extent start -> length.
    free_by_addr: BTreeMap<usize, usize>,
    /// (length, start) of every free extent, for best fit.
    free_by_size: BTreeSet<(usize, usize)>,
    /// Bytes of all chunks.
    reserved: usize,
    /// Largest `reserved` ever.
    high_water: usize,
    /// Bytes of chunks that are entirely free.
    idle_bytes: usize,
    acquisitions: u64,
    releases: u64,
}

/// Counters the pool reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArenaCounts {
    /// Bytes obtained from the provider and not given back.
    pub reserved: usize,
    /// Largest `reserved` ever.
    pub high_water: usize,
    /// Bytes in free extents.
    pub free: usize,
    /// Chunks held.
    pub chunks: usize,
    /// Chunks obtained from the provider so far.
    pub acquisitions: u64,
    /// Chunks given back so far.
    pub releases: u64,
}

impl Arena {
    /// Takes a block of `len` bytes (a multiple of `granule`) aligned to
    /// `align`, obtaining a chunk of `chunk_size` (or just enough) when no
    /// free extent fits. `limit` is the most bytes the arena may reserve.
    pub fn allocate(
        &mut self,
        len: usize,
        align: usize,
        provider: &dyn Provider,
        chunk_size: usize,
        limit: usize,
    ) -> Result<usize, ArenaError> {
        if let Some(addr) = self.take_fit(len, align) {
            return Ok(addr);
        }
        let granule = provider.granule();
        // Alignment beyond the granule may need slack in front of the block.
        let slack = align.saturating_sub(granule);
        let needed = len + slack;
        let mut available = limit.saturating_sub(self.reserved);
        if needed > available && self.idle_bytes > 0 {
            // Entirely free chunks that cannot hold the request: give them
            // back to make room for one that can.
            self.release_idle(provider, 0);
            available = limit.saturating_sub(self.reserved);
        }
        if needed > available {
            return Err(ArenaError::Capacity { needed, available });
        }
        let size = chunk_size.max(needed).min(available) / granule * granule;
        let chunk = match provider.acquire(size) {
            Ok(chunk) => chunk,
            // The system has less than a chunk left: just the request may fit.
            Err(crate::Error::Exhausted { .. }) if size > needed => provider
                .acquire(needed.next_multiple_of(granule))
                .map_err(ArenaError::Provider)?,
            Err(e) => return Err(ArenaError::Provider(e)),
        };
        self.add_chunk(chunk);
        Ok(self
            .take_fit(len, align)
            .expect("a fresh chunk holds the request"))
    }

    fn add_chunk(&mut self, chunk: Chunk) {
        self.chunks.insert(chunk.addr, chunk.len);
        self.reserved += chunk.len;
        self.high_water = self.high_water.max(self.reserved);
        self.acquisitions += 1;
        self.insert_free(chunk.addr, chunk.len);
        self.idle_bytes += chunk.len;
    }

    /// Best fit: the smallest free extent that holds `len` bytes at `align`.
    fn take_fit(&mut self, len: usize, align: usize) -> Option<usize> {
        let (ext_len, ext_addr, start) =
            self.free_by_size
                .range((len, 0)..)
                .find_map(|&(ext_len, ext_addr)| {
                    let start = ext_addr.next_multiple_of(align);
                    (start + len <= ext_addr + ext_len).then_some((ext_len, ext_addr, start))
                })?;
        if self.is_whole_chunk(ext_addr, ext_len) {
            self.idle_bytes -= ext_len;
        }
        self.remove_free(ext_addr, ext_len);
        if start > ext_addr {
            self.insert_free(ext_addr, start - ext_addr);
        }
        let end = start + len;
        if end < ext_addr + ext_len {
            self.insert_free(end, ext_addr + ext_len - end);
        }
        Some(start)
    }

    /// Returns a block; merges it with free neighbours in the same chunk.
    /// Returns the chunk when it became entirely free.
    pub fn free(&mut self, addr: usize, len: usize) -> Option<Chunk> {
        let (&chunk_addr, &chunk_len) = self.chunks.range(..=addr).next_back()?;
        debug_assert!(addr + len <= chunk_addr + chunk_len);
        let mut start = addr;
        let mut end = addr + len;
        if let Some((&prev, &prev_len)) = self.free_by_addr.range(chunk_addr..addr).next_back() {
            if prev + prev_len == addr {
                self.remove_free(prev, prev_len);
                start = prev;
            }
        }
        if let Some(&next_len) = self.free_by_addr.get(&end) {
            if end < chunk_addr + chunk_len {
                self.remove_free(end, next_len);
                end += next_len;
            }
        }
        self.insert_free(start, end - start);
        if start == chunk_addr && end == chunk_addr + chunk_len {
            self.idle_bytes += chunk_len;
            return Some(Chunk {
                addr: chunk_addr,
                len: chunk_len,
            });
        }
        None
    }

    /// Whether `addr..addr+len` lies inside one of the arena's chunks.
    pub fn owns(&self, addr: usize, len: usize) -> bool {
        self.chunks
            .range(..=addr)
            .next_back()
            .is_some_and(|(&c, &l)| addr.checked_add(len).is_some_and(|end| end <= c + l))
    }

    /// Bytes of chunks that are entirely free.
    pub fn idle_bytes(&self) -> usize {
        self.idle_bytes
    }

    /// Gives every entirely free chunk back to the provider, keeping
    /// `keep` bytes of them; returns the bytes released.
    pub fn release_idle(&mut self, provider: &dyn Provider, keep: usize) -> usize {
        let idle: Vec<(usize, usize)> = self
            .chunks
            .iter()
            .filter(|&(&a, &l)| self.is_whole_chunk(a, l))
            .map(|(&a, &l)| (a, l))
            .collect();
        let mut released = 0;
        for (addr, len) in idle {
            if self.idle_bytes <= keep {
                break;
            }
            self.remove_free(addr, len);
            self.chunks.remove(&addr);
            self.reserved -= len;
            self.idle_bytes -= len;
            self.releases += 1;
            released += len;
            // SAFETY: the chunk came from this provider and is entirely free:
            // no block of it is handed out.
            unsafe { provider.release(Chunk { addr, len }) };
        }
        released
    }

    /// Gives every chunk back, used or not (the pool is being dropped).
    pub fn release_all(&mut self, provider: &dyn Provider) {
        for (addr, len) in std::mem::take(&mut self.chunks) {
            // SAFETY: the pool's state is going away; no block outlives it
            // (borrowed handles borrow the pool, owned ones keep its state
            // alive).
            unsafe { provider.release(Chunk { addr, len }) };
        }
        self.free_by_addr.clear();
        self.free_by_size.clear();
        self.reserved = 0;
        self.idle_bytes = 0;
    }

    /// The arena's counters.
    pub fn counts(&self) -> ArenaCounts {
        ArenaCounts {
            reserved: self.reserved,
            high_water: self.high_water,
            free: self.free_by_addr.values().sum(),
            chunks: self.chunks.len(),
            acquisitions: self.acquisitions,
            releases: self.releases,
        }
    }

    fn is_whole_chunk(&self, addr: usize, len: usize) -> bool {
        self.chunks.get(&addr) == Some(&len) && self.free_by_addr.get(&addr) == Some(&len)
    }

    fn insert_free(&mut self, addr: usize, len: usize) {
        self.free_by_addr.insert(addr, len);
        self.free_by_size.insert((len, addr));
    }

    fn remove_free(&mut self, addr: usize, len: usize) {
        self.free_by_addr.remove(&addr);
        self.free_by_size.remove(&(len, addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use std::sync::Mutex;

    /// Hands out address ranges without memory behind them.
    #[derive(Debug, Default)]
    struct FakeProvider {
        next: Mutex<usize>,
        live: Mutex<BTreeMap<usize, usize>>,
    }

    impl Provider for FakeProvider {
        fn acquire(&self, len: usize) -> Result<Chunk> {
            let mut next = self.next.lock().unwrap();
            // Chunks are adjacent in the address space: the arena must still
            // not merge across them.
            let addr = 0x10_0000 + *next;
            *next += len;
            self.live.lock().unwrap().insert(addr, len);
            Ok(Chunk { addr, len })
        }
        unsafe fn release(&self, chunk: Chunk) {
            assert_eq!(
                self.live.lock().unwrap().remove(&chunk.addr),
                Some(chunk.len)
            );
        }
        fn granule(&self) -> usize {
            4096
        }
        fn host_accessible(&self) -> bool {
            false
        }
    }

    #[test]
    fn blocks_coalesce_and_idle_chunks_go_back() {
        let p = FakeProvider::default();
        let mut a = Arena::default();
        let x = a.allocate(8192, 4096, &p, 65536, usize::MAX).unwrap();
        let y = a.allocate(8192, 4096, &p, 65536, usize::MAX).unwrap();
        assert_eq!(a.counts().chunks, 1);
        assert!(a.free(x, 8192).is_none());
        let whole = a.free(y, 8192).expect("chunk entirely free");
        assert_eq!(whole.len, 65536);
        assert_eq!(a.idle_bytes(), 65536);
        assert_eq!(a.release_idle(&p, 0), 65536);
        assert_eq!(a.counts().reserved, 0);
        assert!(p.live.lock().unwrap().is_empty());
    }

    #[test]
    fn adjacent_chunks_are_never_merged() {
        let p = FakeProvider::default();
        let mut a = Arena::default();
        let x = a.allocate(65536, 4096, &p, 65536, usize::MAX).unwrap();
        let y = a.allocate(65536, 4096, &p, 65536, usize::MAX).unwrap();
        assert_eq!(y, x + 65536, "the fake provider makes them adjacent");
        assert!(a.free(x, 65536).is_some());
        assert!(a.free(y, 65536).is_some());
        assert_eq!(a.counts().free, 2 * 65536);
        assert_eq!(a.release_idle(&p, 0), 2 * 65536);
    }

    #[test]
    fn the_limit_is_exact() {
        let p = FakeProvider::default();
        let mut a = Arena::default();
        let limit = 10 * 4096;
        let blocks: Vec<usize> = (0..10)
            .map(|_| a.allocate(4096, 4096, &p, 1 << 20, limit).unwrap())
            .collect();
        assert_eq!(a.counts().reserved, limit);
        assert!(matches!(
            a.allocate(4096, 4096, &p, 1 << 20, limit),
            Err(ArenaError::Capacity { available: 0, .. })
        ));
        for b in blocks {
            a.free(b, 4096);
        }
        assert_eq!(a.counts().free, limit);
    }

    #[test]
    fn idle_chunks_make_room_for_a_request_they_cannot_hold() {
        let p = FakeProvider::default();
        let mut a = Arena::default();
        let limit = 4 * 65536;
        let blocks: Vec<usize> = (0..4)
            .map(|_| a.allocate(65536, 4096, &p, 65536, limit).unwrap())
            .collect();
        assert_eq!(a.counts().chunks, 4);
        for &b in &blocks[1..] {
            a.free(b, 65536);
        }
        // Three idle chunks, the limit reached: a two-chunk block only fits
        // once they go back.
        let big = a.allocate(2 * 65536, 4096, &p, 65536, limit).unwrap();
        assert_eq!(a.counts().chunks, 2);
        assert_eq!(a.counts().reserved, 3 * 65536);
        assert!(a.owns(big, 2 * 65536));
        assert_eq!(p.live.lock().unwrap().len(), 2);
    }

    #[test]
    fn alignment_beyond_the_granule_is_honoured() {
        let p = FakeProvider::default();
        let mut a = Arena::default();
        let _pad = a.allocate(4096, 4096, &p, 1 << 20, usize::MAX).unwrap();
        let b = a.allocate(4096, 65536, &p, 1 << 20, usize::MAX).unwrap();
        assert_eq!(b % 65536, 0);
        assert!(a.owns(b, 4096));
        assert!(!a.owns(b, 1 << 30));
    }
}
