//! Registration cache: registrations keyed by address range, so a hot
//! destination buffer is registered once and reused by later pulls.
//!
//! A lookup hits when a cached registration covers the whole range asked
//! for. The cache holds at most a configured number of bytes; beyond it the
//! least recently used registrations are dropped (deregistered).

use std::collections::BTreeMap;

/// Hit and miss counts and the current contents of a transport's registration cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served by a cached registration.
    pub hits: u64,
    /// Lookups that needed a new registration.
    pub misses: u64,
    /// Registrations held.
    pub entries: usize,
    /// Bytes covered by the registrations held.
    pub bytes: usize,
}

struct Entry<T> {
    len: usize,
    value: T,
    last_use: u64,
}

/// Values (registrations) keyed by the address range they cover.
pub(crate) struct RegCache<T> {
    entries: BTreeMap<usize, Entry<T>>,
    capacity: usize,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl<T> RegCache<T> {
    /// An empty cache holding at most `capacity` bytes of registrations (one
    /// registration is kept even when larger).
    pub fn new(capacity: usize) -> Self {
        RegCache {
            entries: BTreeMap::new(),
            capacity,
            bytes: 0,
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The registration covering `[start, start + len)`, counted as a hit;
    /// a miss otherwise.
    pub fn lookup(&mut self, start: usize, len: usize) -> Option<&T> {
        self.clock += 1;
        let clock = self.clock;
        let end = start.saturating_add(len);
        // Cached ranges may overlap: any entry starting at or before `start`
        // may cover the range, so look at all of them, nearest first.
        let found = self
            .entries
            .range_mut(..=start)
            .rev()
            .find(|(s, e)| *s + e.len >= end);
        match found {
            Some((_, e)) => {
                e.last_use = clock;
                self.hits += 1;
                Some(&e.value)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Caches a registration of `[start, start + len)` (replacing one that
    /// starts at the same address), evicting least recently used ones to stay
    /// within the capacity; returns the evicted values.
    pub fn insert(&mut self, start: usize, len: usize, value: T) -> Vec<T> {
        self.clock += 1;
        let mut evicted = Vec::new();
        if let Some(old) = self.entries.remove(&start) {
            self.bytes -= old.len;
            evicted.push(old.value);
        }
        while !self.entries.is_empty() && self.bytes + len > self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(s, _)| *s)
                .expect("the map is not empty");
            let e = self
                .entries
                .remove(&oldest)
                .expect("the key was just found");
            self.bytes -= e.len;
            evicted.push(e.value);
        }
        self.bytes += len;
        self.entries.insert(
            start,
            Entry {
                len,
                value,
                last_use: self.clock,
            },
        );
        evicted
    }

    /// The registration inserted at `start`, looked up without counting.
    #[cfg(test)]
    pub fn get(&self, start: usize) -> Option<&T> {
        self.entries.get(&start).map(|e| &e.value)
    }

    /// Drops every registration overlapping `[start, start + len)` (the
    /// memory is about to be freed or remapped) and returns them.
    pub fn forget(&mut self, start: usize, len: usize) -> Vec<T> {
        let end = start.saturating_add(len);
        let doomed: Vec<usize> = self
            .entries
            .range(..end)
            .filter(|(s, e)| **s + e.len > start)
            .map(|(s, _)| *s)
            .collect();
        doomed
            .into_iter()
            .filter_map(|s| self.entries.remove(&s))
            .map(|e| {
                self.bytes -= e.len;
                e.value
            })
            .collect()
    }

    /// Counts and contents.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_ranges_hit_and_others_miss() {
        let mut c = RegCache::new(1 << 20);
        assert!(c.lookup(1000, 10).is_none());
        assert!(c.insert(1000, 100, 'a').is_empty());
        assert_eq!(c.lookup(1000, 100), Some(&'a'));
        assert_eq!(c.lookup(1050, 50), Some(&'a'));
        assert!(c.lookup(1050, 51).is_none(), "runs past the end");
        assert!(c.lookup(999, 2).is_none(), "starts before");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (2, 3, 1, 100));
    }

    #[test]
    fn an_earlier_wider_entry_covers_past_a_nearer_narrow_one() {
        let mut c = RegCache::new(1 << 20);
        c.insert(0, 1000, 'w');
        c.insert(500, 10, 'n');
        assert_eq!(c.lookup(505, 100), Some(&'w'));
        assert_eq!(c.lookup(502, 5), Some(&'n'));
    }

    #[test]
    fn capacity_evicts_least_recently_used() {
        let mut c = RegCache::new(300);
        c.insert(0, 100, 'a');
        c.insert(1000, 100, 'b');
        c.insert(2000, 100, 'c');
        assert!(c.lookup(0, 1).is_some()); // a is now the most recent
        assert_eq!(c.insert(3000, 100, 'd'), vec!['b']);
        assert!(c.get(1000).is_none());
        assert_eq!(c.stats().bytes, 300);
        // One registration larger than the capacity is still kept.
        let out = c.insert(5000, 1000, 'e');
        assert_eq!(out.len(), 3);
        assert_eq!(c.get(5000), Some(&'e'));
    }

    #[test]
    fn forget_drops_overlapping_entries_only() {
        let mut c = RegCache::new(1 << 20);
        c.insert(0, 100, 'a');
        c.insert(100, 100, 'b');
        c.insert(300, 100, 'c');
        let mut gone = c.forget(150, 200);
        gone.sort();
        assert_eq!(gone, vec!['b', 'c']);
        assert_eq!(c.get(0), Some(&'a'));
        assert_eq!(c.stats().bytes, 100);
    }
}
