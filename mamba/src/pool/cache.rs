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
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counters written by one thread only (plain load + store, no atomic
/// read-modify-write on the hot path) and summed by whoever reads stats.
/// Allocations and frees are counted per size class (index
/// [`LARGE`] for arena blocks), so that bytes of blocks in use follow from
/// the counts without a third counter on the hot path.
#[derive(Debug)]
pub(super) struct Counters {
    pub allocations: [AtomicU64; NUM_CLASSES + 1],
    pub frees: [AtomicU64; NUM_CLASSES + 1],
    pub requested_in_use: AtomicI64,
    pub large_in_use: AtomicI64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            allocations: std::array::from_fn(|_| AtomicU64::new(0)),
            frees: std::array::from_fn(|_| AtomicU64::new(0)),
            requested_in_use: AtomicI64::new(0),
            large_in_use: AtomicI64::new(0),
        }
    }
}

/// Counter index of arena (large) blocks.
pub(super) const LARGE: usize = NUM_CLASSES;

impl Counters {
    #[inline(always)]
    pub fn on_allocate(&self, class: usize, requested: usize) {
        bump(&self.allocations[class], 1);
        bump_i(&self.requested_in_use, requested as i64);
    }

    #[inline(always)]
    pub fn on_free(&self, class: usize, requested: usize) {
        bump(&self.frees[class], 1);
        bump_i(&self.requested_in_use, -(requested as i64));
    }

    #[inline]
    pub fn on_large(&self, block: i64) {
        bump_i(&self.large_in_use, block);
    }

    /// Adds `other`'s counts to these, with read-modify-write operations
    /// (for counters several threads update: the retired and cache-less
    /// ones).
    pub fn add(&self, other: &Counters) {
        for (a, b) in self.allocations.iter().zip(&other.allocations) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        for (a, b) in self.frees.iter().zip(&other.frees) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        self.requested_in_use
            .fetch_add(other.requested_in_use.load(Relaxed), Relaxed);
        self.large_in_use
            .fetch_add(other.large_in_use.load(Relaxed), Relaxed);
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
    /// Flushes the cache when `trim` asked every thread to.
    pub fn sync_epoch(&mut self, shared: &Shared) {
        let epoch = shared.flush_epoch.load(Relaxed);
        if self.epoch != epoch {
            self.flush(shared);
            self.epoch = epoch;
        }
    }

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
    pools: Vec<Option<Box<PoolCache>>>,
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        LAST.set((0, std::ptr::null_mut()));
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
    /// The cache used last: (pool generation, pointer into `CACHES`). A
    /// generation is never reused, so a match means the pointer is this
    /// thread's live cache for that pool. Reset whenever the entry it
    /// points to goes away.
    static LAST: Cell<(u64, *mut PoolCache)> = const { Cell::new((0, std::ptr::null_mut())) };
}

/// Runs `f` on this thread's cache for `shared`, creating it on first use.
/// Returns `None` while the thread is being torn down (callers then go to
/// the central structures). Callers on a slow path (refill, overflow, large
/// blocks) call [`PoolCache::sync_epoch`] so that a `trim` elsewhere makes
/// them flush.
///
/// `f` must not call back into this function (no path below a cache
/// operation does: they reach only central lists, the arena and
/// providers).
#[inline(always)]
pub(super) fn with_cache<R>(shared: &Shared, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    // SAFETY: `f` does not re-enter (this function's contract).
    match unsafe { last_cache(shared.generation) } {
        Some(cache) => Some(f(cache)),
        None => with_cache_slow(shared, f),
    }
}

/// The hot path of [`with_cache`]: this thread's cache for `shared` when it
/// was the last one used, without touching the `RefCell`.
///
/// # Safety
/// The caller must not call [`with_cache`] or this function again while it
/// holds the reference (the hot paths only pop or push one address).
#[inline(always)]
pub(super) unsafe fn last_cache<'a>(generation: u64) -> Option<&'a mut PoolCache> {
    let (last, ptr) = LAST.get();
    if last == generation {
        // SAFETY: LAST names this pool's cache of this thread (generations
        // are unique and LAST is reset when the entry or the thread's caches
        // go away); the Box does not move while in `CACHES`; nothing else
        // borrows it now, since callers do not re-enter.
        Some(unsafe { &mut *ptr })
    } else {
        None
    }
}

#[cold]
fn with_cache_slow<R>(shared: &Shared, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let epoch = shared.flush_epoch.load(Relaxed);
            if caches.pools.len() <= shared.slot {
                caches.pools.resize_with(shared.slot + 1, || None);
            }
            let entry = &mut caches.pools[shared.slot];
            if entry
                .as_ref()
                .is_none_or(|c| c.generation != shared.generation)
            {
                if let Some(stale) = entry.as_mut() {
                    if std::ptr::eq(LAST.get().1, &**stale) {
                        LAST.set((0, std::ptr::null_mut()));
                    }
                }
                *entry = Some(Box::new(new_cache(shared, epoch)));
            }
            let cache = entry.as_mut()?;
            cache.sync_epoch(shared);
            LAST.set((shared.generation, &mut **cache));
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
        large: Vec::with_capacity(super::LARGE_CACHE_ENTRIES),
        large_bytes: 0,
        counters,
    }
}
