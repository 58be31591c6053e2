//! Per-thread caches of free blocks, so that allocation and free on the hot
//! path take no lock and touch no shared cache line.
//!
//! Each thread keeps, for every pool it has used, a stack of free block
//! addresses per size class and a few recently freed large blocks. The
//! stacks hold addresses out of band (never written into the blocks), so
//! the same code serves device memory.
//!
//! Lifetimes: a pool registers in a global slot table with a generation
//! number. A thread's cache entry remembers slot and generation; an entry
//! whose generation no longer matches belongs to a dropped pool and is
//! discarded without touching its blocks. When a thread exits, its entries
//! are flushed back to their pools under the slot-table lock, which a pool
//! also takes to unregister — so a flush never reaches a dropped pool.
//! [`Shared::flush_epoch`] lets `trim` ask every thread to flush on its
//! next visit.

use super::classes::{batch, NUM_CLASSES};
use super::Shared;
use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counters written by one thread only (plain load + store, no atomic
/// read-modify-write on the hot path) and summed by whoever reads stats.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub allocations: AtomicU64,
    pub frees: AtomicU64,
    pub requested_in_use: AtomicI64,
    pub block_in_use: AtomicI64,
}

impl Counters {
    #[inline]
    pub fn on_allocate(&self, requested: usize, block: usize) {
        bump(&self.allocations, 1);
        bump_i(&self.requested_in_use, requested as i64);
        bump_i(&self.block_in_use, block as i64);
    }

    #[inline]
    pub fn on_free(&self, requested: usize, block: usize) {
        bump(&self.frees, 1);
        bump_i(&self.requested_in_use, -(requested as i64));
        bump_i(&self.block_in_use, -(block as i64));
    }

    /// Adds this thread's counts to `into` (used when a thread retires).
    pub fn merge_into(&self, into: &Counters) {
        into.allocations
            .fetch_add(self.allocations.load(Relaxed), Relaxed);
        into.frees.fetch_add(self.frees.load(Relaxed), Relaxed);
        into.requested_in_use
            .fetch_add(self.requested_in_use.load(Relaxed), Relaxed);
        into.block_in_use
            .fetch_add(self.block_in_use.load(Relaxed), Relaxed);
    }
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

#[inline]
fn bump_i(c: &AtomicI64, by: i64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// The global table of live pools.
pub(super) struct Registry {
    slots: Vec<Option<(u64, usize)>>,
    next_generation: u64,
}

pub(super) static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    next_generation: 1,
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a pool's shared state; returns (slot, generation).
pub(super) fn register(shared: *const Shared) -> (usize, u64) {
    let mut r = registry();
    let generation = r.next_generation;
    r.next_generation += 1;
    let entry = Some((generation, shared as usize));
    let slot = match r.slots.iter().position(Option::is_none) {
        Some(i) => {
            r.slots[i] = entry;
            i
        }
        None => {
            r.slots.push(entry);
            r.slots.len() - 1
        }
    };
    (slot, generation)
}

/// Removes a pool from the table: no thread flushes into it afterwards.
pub(super) fn unregister(slot: usize) {
    registry().slots[slot] = None;
}

/// One thread's cache for one pool.
pub(super) struct PoolCache {
    generation: u64,
    epoch: u64,
    pub classes: [Vec<usize>; NUM_CLASSES],
    /// (address, block length) of cached large blocks, newest last.
    pub large: Vec<(usize, usize)>,
    pub large_bytes: usize,
    pub counters: Arc<Counters>,
}

impl PoolCache {
    /// Gives every cached block back to the pool's central structures.
    pub fn flush(&mut self, shared: &Shared) {
        for (class, stack) in self.classes.iter_mut().enumerate() {
            if !stack.is_empty() {
                shared.central_push(class, stack.drain(..));
            }
        }
        for (addr, len) in self.large.drain(..) {
            shared.arena_free(addr, len);
        }
        self.large_bytes = 0;
    }
}

/// All of one thread's pool caches, indexed by registry slot.
pub(super) struct ThreadCaches {
    pools: Vec<Option<PoolCache>>,
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        let r = registry();
        for (slot, cache) in self.pools.iter_mut().enumerate() {
            let Some(cache) = cache.as_mut() else {
                continue;
            };
            if let Some(Some((generation, ptr))) = r.slots.get(slot) {
                if *generation == cache.generation {
                    // SAFETY: the registry lock is held and the slot still
                    // names this generation, so the pool has not started
                    // unregistering: its shared state is alive.
                    let shared = unsafe { &*(*ptr as *const Shared) };
                    cache.flush(shared);
                    shared.retire(&cache.counters);
                }
            }
        }
    }
}

thread_local! {
    static CACHES: RefCell<ThreadCaches> = const { RefCell::new(ThreadCaches { pools: Vec::new() }) };
}

/// Runs `f` on this thread's cache for `shared`, creating it on first use
/// and flushing it first when `trim` asked for it. Returns `None` while the
/// thread is being torn down (callers then go to the central structures).
#[inline]
pub(super) fn with_cache<R>(shared: &Shared, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let epoch = shared.flush_epoch.load(Relaxed);
            let fresh = match caches.pools.get_mut(shared.slot) {
                Some(Some(c)) if c.generation == shared.generation => None,
                _ => Some(new_cache(shared, epoch)),
            };
            if let Some(fresh) = fresh {
                if caches.pools.len() <= shared.slot {
                    caches.pools.resize_with(shared.slot + 1, || None);
                }
                caches.pools[shared.slot] = Some(fresh);
            }
            let cache = caches.pools[shared.slot].as_mut()?;
            if cache.epoch != epoch {
                cache.flush(shared);
                cache.epoch = epoch;
            }
            Some(f(cache))
        })
        .ok()
        .flatten()
}

fn new_cache(shared: &Shared, epoch: u64) -> PoolCache {
    let counters = Arc::new(Counters::default());
    shared.adopt(counters.clone());
    PoolCache {
        generation: shared.generation,
        epoch,
        classes: std::array::from_fn(|c| Vec::with_capacity(2 * batch(c))),
        large: Vec::new(),
        large_bytes: 0,
        counters,
    }
}
