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
//!
//! Reclaiming: a pool lists its threads' caches ([`CacheCell`]s) and can
//! take their blocks back at any time ([`CacheCell::steal`]) — before it
//! reports a capacity error, and in `trim` — even from a thread that sleeps.
//! The owner marks its few instructions of cache use with a `busy` flag and
//! a [`fence::light`], the stealer raises `steal` and issues a
//! [`fence::heavy`]: one of them sees the other, so they never use the
//! cache at the same time, and the owner's hot path pays no atomic
//! read-modify-write.

use super::classes::{batch, NUM_CLASSES};
use super::{fence, Shared};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

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

    /// Allocations plus frees so far: a thread's cache changes only with
    /// one of them.
    pub fn activity(&self) -> u64 {
        self.allocations
            .iter()
            .chain(&self.frees)
            .map(|c| c.load(Relaxed))
            .fold(0, u64::wrapping_add)
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

/// A thread's cache for one pool, shared with the pool so that the pool
/// can take its blocks back ([`CacheCell::steal`]).
pub(super) struct CacheCell {
    generation: u64,
    owner: ThreadId,
    /// Set by the owner while it uses the cache.
    busy: AtomicBool,
    /// Set by a stealer while it takes the cache.
    steal: AtomicBool,
    /// The owner's counters (read by `stats`).
    pub counters: Arc<Counters>,
    cache: UnsafeCell<PoolCache>,
}

// SAFETY: the cache inside is used by one thread at a time: its owner
// between `busy` set and cleared, a stealer between `steal` set and cleared,
// and the busy/steal handshake (fenced, see the module docs) keeps those
// apart. Everything else is atomic or immutable.
unsafe impl Sync for CacheCell {}

/// The owner's use of its cache; clears `busy` when dropped, also on
/// unwinding, so that a stealer never waits for a dead owner.
struct Entered<'a>(&'a CacheCell);

impl Drop for Entered<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.busy.store(false, Release);
    }
}

/// A stealer's hold on a cache; clears `steal` when dropped, also on
/// unwinding, so that the owner never waits for a dead stealer.
struct Stealing<'a>(&'a CacheCell);

impl Drop for Stealing<'_> {
    fn drop(&mut self) {
        self.0.steal.store(false, Release);
    }
}

/// Why the owner could not use its cache.
enum Busy {
    /// It is using it already (a re-entrant call).
    Reentered,
    /// A stealer is taking it.
    Stolen,
}

impl CacheCell {
    /// Starts the owner's use. Must be called by the owner thread only
    /// (this module reaches cells of other threads only through `steal`).
    #[inline(always)]
    fn enter(&self) -> Result<Entered<'_>, Busy> {
        if self.busy.load(Relaxed) {
            return Err(Busy::Reentered);
        }
        self.busy.store(true, Relaxed);
        let entered = Entered(self);
        fence::light();
        if self.steal.load(Acquire) {
            return Err(Busy::Stolen);
        }
        Ok(entered)
    }

    /// Runs `f` on the cache as its owner; `None` on re-entry or while a
    /// stealer holds the cache.
    #[inline(always)]
    fn owned<R>(&self, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
        let _entered = self.enter().ok()?;
        // SAFETY: `busy` is set and no steal was seen after the light fence:
        // a stealer raises `steal`, issues the heavy fence and then waits
        // while `busy` is set, so nobody else uses the cache until
        // `_entered` clears it; re-entry was refused by `enter`.
        Some(f(unsafe { &mut *self.cache.get() }))
    }

    /// [`CacheCell::owned`], waiting for a stealer to finish.
    fn owned_waiting<R>(&self, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
        loop {
            match self.enter() {
                // SAFETY: as in `owned`.
                Ok(_entered) => return Some(f(unsafe { &mut *self.cache.get() })),
                Err(Busy::Reentered) => return None,
                Err(Busy::Stolen) => std::thread::yield_now(),
            }
        }
    }

    /// Takes the cache from its owner for `f`: waits until the owner is out
    /// of it and keeps it out meanwhile. Stealers must be serialised (the
    /// pool holds its cell list's lock). `None` when the owner is this
    /// thread and inside its cache (it cannot be waited for), or when the
    /// heavy fence could not be issued.
    pub fn steal<R>(&self, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
        if self.owner == std::thread::current().id() {
            return self.owned(f);
        }
        self.steal.store(true, Relaxed);
        let _stealing = Stealing(self);
        if !fence::heavy() {
            // Without the fence the owner may be inside: leave it the cache.
            return None;
        }
        while self.busy.load(Acquire) {
            std::thread::yield_now();
        }
        // SAFETY: `steal` was raised before the heavy fence and `busy` was
        // seen clear after it: the owner is out and, seeing `steal`, will
        // not come back in until `_stealing` clears it (the acquire load saw
        // the owner's last release of the cache).
        Some(f(unsafe { &mut *self.cache.get() }))
    }
}

/// All of one thread's pool caches, indexed by registry slot.
pub(super) struct ThreadCaches {
    pools: Vec<Option<Arc<CacheCell>>>,
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        LAST.set((0, std::ptr::null()));
        let r = registry();
        for (slot, cell) in self.pools.iter_mut().enumerate() {
            let Some(cell) = cell.take() else {
                continue;
            };
            if let Some(Some((generation, ptr))) = r.slots.get(slot) {
                if *generation == cell.generation {
                    // SAFETY: the registry lock is held and the slot still
                    // names this generation, so the pool has not started
                    // unregistering: its shared state is alive.
                    let shared = unsafe { &*(*ptr as *const Shared) };
                    // Off the pool's list first: no stealer can reach the
                    // cell any more (one in progress holds the list's lock).
                    shared.retire(&cell);
                    cell.owned(|c| c.flush(shared));
                }
            }
        }
    }
}

thread_local! {
    static CACHES: RefCell<ThreadCaches> = const { RefCell::new(ThreadCaches { pools: Vec::new() }) };
    /// The cache used last: (pool generation, pointer to the cell in
    /// `CACHES`). A generation is never reused, so a match means the
    /// pointer is this thread's live cell for that pool. Reset whenever the
    /// entry it points to goes away.
    static LAST: Cell<(u64, *const CacheCell)> = const { Cell::new((0, std::ptr::null())) };
}

/// The hot path: runs `f` on this thread's cache for the pool of
/// `generation` when it was the last one used; `None` otherwise, on
/// re-entry, or while the pool reclaims the cache (callers then take the
/// slow path).
#[inline(always)]
pub(super) fn with_last<R>(generation: u64, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    let (last, ptr) = LAST.get();
    if last != generation {
        return None;
    }
    // SAFETY: LAST names this thread's live cell for that pool
    // (generations are unique and LAST is reset when the entry or the
    // thread's caches go away); `CACHES` holds an Arc of it.
    let cell = unsafe { &*ptr };
    cell.owned(f)
}

/// Runs `f` on this thread's cache for `shared`, creating it on first use
/// and waiting while the pool reclaims it. Returns `None` on re-entry and
/// while the thread is being torn down (callers then go to the central
/// structures).
#[inline(always)]
pub(super) fn with_cache<R>(shared: &Shared, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    let (last, ptr) = LAST.get();
    if last == shared.generation {
        // SAFETY: as in `with_last`.
        let cell = unsafe { &*ptr };
        return cell.owned_waiting(f);
    }
    with_cache_slow(shared, f)
}

#[cold]
fn with_cache_slow<R>(shared: &Shared, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    let cell = CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            if caches.pools.len() <= shared.slot {
                caches.pools.resize_with(shared.slot + 1, || None);
            }
            let entry = &mut caches.pools[shared.slot];
            if entry
                .as_ref()
                .is_none_or(|c| c.generation != shared.generation)
            {
                if let Some(stale) = entry.as_ref() {
                    if std::ptr::eq(LAST.get().1, &**stale) {
                        LAST.set((0, std::ptr::null()));
                    }
                }
                let cell = Arc::new(new_cell(shared));
                shared.adopt(Arc::clone(&cell));
                *entry = Some(cell);
            }
            let cell = Arc::clone(entry.as_ref()?);
            LAST.set((shared.generation, Arc::as_ptr(&cell)));
            Some(cell)
        })
        .ok()
        .flatten()?;
    cell.owned_waiting(f)
}

fn new_cell(shared: &Shared) -> CacheCell {
    let counters = Arc::new(Counters::default());
    CacheCell {
        generation: shared.generation,
        owner: std::thread::current().id(),
        busy: AtomicBool::new(false),
        steal: AtomicBool::new(false),
        counters: Arc::clone(&counters),
        cache: UnsafeCell::new(PoolCache {
            classes: std::array::from_fn(|c| Vec::with_capacity(2 * batch(c))),
            large: Vec::with_capacity(super::LARGE_CACHE_ENTRIES),
            large_bytes: 0,
            counters,
        }),
    }
}
