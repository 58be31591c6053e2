//! Per-thread caches of free blocks, so that allocation and free on the hot
//! path take no lock and touch no shared cache line.
//!
//! Each thread keeps, for every pool it has used, the free blocks of every
//! size class and a few recently freed large blocks. For memory the CPU can
//! write (host tiers) a size class's free blocks form an intrusive list:
//! each free block's first word holds the address of the next one, so a
//! pop or a push touches the block itself and one cache line of the
//! thread's cache ([`ClassSlot`]), which also holds that class's counters.
//! Blocks of a new slab are handed out from a bump range (`fresh`) before
//! any of them is written. Device memory keeps its free blocks out of band,
//! in per-class stacks of addresses, off the hot path: its lists' heads
//! stay empty and their push limit is 0, so the host fast path never asks
//! which kind of memory it serves until a list runs dry or fills up.
//!
//! Lifetimes: a pool registers in a global slot table with a generation
//! number. A thread's cache entry remembers slot and generation; an entry
//! whose generation no longer matches belongs to a dropped pool and is
//! discarded without touching its blocks. When a thread exits, its entries
//! are flushed back to the pools it can still reach through the table's
//! weak references, holding a strong one meanwhile — so a flush never
//! reaches a dropped pool.
//!
//! Reclaiming: a pool lists its threads' caches ([`CacheCell`]s) and can
//! take their blocks back at any time ([`CacheCell::steal`]) — before it
//! reports a capacity error, and in `trim` — even from a thread that sleeps.
//! The owner marks its few instructions of cache use with a `busy` flag and
//! a [`fence::light`], the stealer raises `steal` and issues a
//! [`fence::heavy`]: one of them sees the other, so they never use the
//! cache at the same time, and the owner's hot path pays no atomic
//! read-modify-write.
//!
//! Statistics: every counter is written by its thread only, with a plain
//! load and store (no read-modify-write), in the cache line the operation
//! touches anyway; `stats` sums them over the threads (and over the
//! counters of exited threads, folded into the pool's retired ones).

use super::classes::{batch, CLASS_SIZES, NUM_CLASSES};
use super::{fence, Shared};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;

/// Counters of one size class (or of the arena blocks) of one thread,
/// written by that thread only with plain loads and stores.
#[derive(Debug, Default)]
pub(super) struct ClassCounters {
    allocations: AtomicU64,
    frees: AtomicU64,
    /// Bytes requested by the allocations counted here less those of the
    /// frees (negative when the thread frees others' blocks).
    requested: AtomicI64,
}

impl ClassCounters {
    /// Counts an allocation of `requested` bytes.
    #[inline(always)]
    pub fn on_allocate(&self, requested: usize) {
        bump(&self.allocations, 1);
        bump_i(&self.requested, requested as i64);
    }

    /// Counts a free of an allocation of `requested` bytes.
    #[inline(always)]
    pub fn on_free(&self, requested: usize) {
        bump(&self.frees, 1);
        bump_i(&self.requested, -(requested as i64));
    }
}

/// Sums of counters over threads (read-modify-write operations: several
/// threads add to the retired and cache-less ones). Allocations and frees
/// are counted per size class (index [`LARGE`] for arena blocks), so that
/// bytes of blocks in use follow from the counts.
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
    /// Allocations plus frees so far.
    pub fn activity(&self) -> u64 {
        self.allocations
            .iter()
            .chain(&self.frees)
            .map(|c| c.load(Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Counts an allocation of index `class` (a size class or [`LARGE`]).
    pub fn on_allocate(&self, class: usize, requested: i64, large: i64) {
        self.allocations[class].fetch_add(1, Relaxed);
        self.requested_in_use.fetch_add(requested, Relaxed);
        self.large_in_use.fetch_add(large, Relaxed);
    }

    /// Counts a free of index `class`.
    pub fn on_free(&self, class: usize, requested: i64, large: i64) {
        self.frees[class].fetch_add(1, Relaxed);
        self.requested_in_use.fetch_sub(requested, Relaxed);
        self.large_in_use.fetch_sub(large, Relaxed);
    }

    /// Adds `other`'s counts to these.
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

    /// Adds the counts of one thread's cache to these.
    pub fn add_cell(&self, cell: &CacheCell) {
        let per_index = cell
            .slots
            .iter()
            .map(|s| &s.counters)
            .chain(std::iter::once(&cell.large));
        for (i, c) in per_index.enumerate() {
            self.allocations[i].fetch_add(c.allocations.load(Relaxed), Relaxed);
            self.frees[i].fetch_add(c.frees.load(Relaxed), Relaxed);
            self.requested_in_use
                .fetch_add(c.requested.load(Relaxed), Relaxed);
        }
        self.large_in_use
            .fetch_add(cell.large_blocks.load(Relaxed), Relaxed);
    }
}

#[inline(always)]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

#[inline(always)]
fn bump_i(c: &AtomicI64, by: i64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// The global table of live pools.
pub(super) struct Registry {
    /// Per slot: the pool's generation and a weak reference to its state.
    slots: Vec<Option<(u64, Weak<Shared>)>>,
    next_generation: u64,
}

pub(super) static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    next_generation: 1,
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reserves a slot and a generation for a new pool; its shared state is
/// named with [`publish`] once built. Until then no thread can hold a
/// cache entry of that generation, so none looks the slot up.
pub(super) fn reserve() -> (usize, u64) {
    let mut r = registry();
    let generation = r.next_generation;
    r.next_generation += 1;
    let entry = Some((generation, Weak::new()));
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

/// Names the shared state of the pool of a reserved slot.
pub(super) fn publish(slot: usize, shared: Weak<Shared>) {
    if let Some(Some((_, weak))) = registry().slots.get_mut(slot) {
        *weak = shared;
    }
}

/// Removes a pool from the table: no thread flushes into it afterwards.
pub(super) fn unregister(slot: usize) {
    registry().slots[slot] = None;
}

/// The free blocks of one size class that one thread holds.
#[derive(Debug, Default)]
struct FreeList {
    /// First block of the intrusive list (0: empty); each block's first
    /// word holds the next one's address. Host memory only.
    head: usize,
    /// Blocks on the list (or on the out-of-band stack of device memory).
    len: usize,
    /// Never-used blocks of a new slab: `fresh..fresh_end`.
    fresh: usize,
    fresh_end: usize,
    /// Most blocks the hot path ([`Owned::push`]) puts on the list: the
    /// class's [`list_limit`] for host memory, 0 for device memory, whose
    /// frees all take [`Owned::push_any`].
    limit: usize,
}

impl FreeList {
    /// The next never-used block of the bump range, if any.
    #[inline(always)]
    fn take_fresh(&mut self, class: usize) -> Option<usize> {
        if self.fresh == self.fresh_end {
            return None;
        }
        let addr = self.fresh;
        self.fresh += CLASS_SIZES[class];
        Some(addr)
    }
}

/// One size class of a thread's cache: its free list and its counters, in
/// one cache line.
#[repr(C, align(64))]
struct ClassSlot {
    /// Used by the owner (or a stealer holding the cache) only.
    list: UnsafeCell<FreeList>,
    /// Read by `stats` at any time.
    counters: ClassCounters,
}

// A class's list and counters fill exactly one cache line.
const _: () = assert!(std::mem::size_of::<ClassSlot>() == 64);

/// The rest of one thread's cache for one pool.
pub(super) struct PoolCache {
    /// (address, block length) of cached large blocks, newest last.
    pub large: Vec<(usize, usize)>,
    pub large_bytes: usize,
    /// Device memory: the free blocks of every class, out of band (the
    /// lists' `len` counts them). Empty for host memory.
    stacks: Vec<Vec<usize>>,
}

/// Most blocks of a class a thread keeps on its list; a free beyond it
/// moves a batch to the central list.
#[inline(always)]
pub(super) fn list_limit(class: usize) -> usize {
    2 * batch(class)
}

/// A thread's cache for one pool, shared with the pool so that the pool
/// can take its blocks back ([`CacheCell::steal`]).
pub(super) struct CacheCell {
    /// The size classes, each in its own cache line.
    slots: [ClassSlot; NUM_CLASSES],
    generation: u64,
    owner: ThreadId,
    /// Free blocks are linked through their first word (host memory).
    intrusive: bool,
    /// Set by the owner while it uses the cache.
    busy: AtomicBool,
    /// Set by a stealer while it takes the cache.
    steal: AtomicBool,
    /// Counters of arena (large) blocks.
    large: ClassCounters,
    /// Bytes of arena blocks allocated less those freed by this thread.
    large_blocks: AtomicI64,
    cache: UnsafeCell<PoolCache>,
}

// SAFETY: the lists and the cache inside are used by one thread at a time:
// the owner between `busy` set and cleared, a stealer between `steal` set
// and cleared, and the busy/steal handshake (fenced, see the module docs)
// keeps those apart. Everything else is atomic or immutable.
unsafe impl Sync for CacheCell {}

impl CacheCell {
    /// Allocations plus frees so far: the thread's cache changes only with
    /// one of them.
    pub fn activity(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| &s.counters)
            .chain(std::iter::once(&self.large))
            .map(|c| {
                c.allocations
                    .load(Relaxed)
                    .wrapping_add(c.frees.load(Relaxed))
            })
            .fold(0, u64::wrapping_add)
    }
}

/// Exclusive use of a thread's cache, by its owner or by a stealer: only
/// [`CacheCell`]'s entry points make one, for the time they hold the cache.
pub(super) struct Owned<'a> {
    cell: &'a CacheCell,
}

impl<'a> Owned<'a> {
    /// # Safety
    /// The caller has `cell`'s lists and cache to itself for as long as
    /// the result lives.
    #[inline(always)]
    unsafe fn new(cell: &'a CacheCell) -> Self {
        Owned { cell }
    }

    #[inline(always)]
    fn list(&mut self, class: usize) -> &mut FreeList {
        // SAFETY: an `Owned` exists only while its holder has the cache to
        // itself (`Owned::new`'s contract), and `&mut self` allows one
        // reference into it at a time.
        unsafe { &mut *self.cell.slots[class].list.get() }
    }

    /// The large-block cache and the device stacks.
    #[inline(always)]
    pub fn rest(&mut self) -> &mut PoolCache {
        // SAFETY: as in `list`.
        unsafe { &mut *self.cell.cache.get() }
    }

    /// The counters of size class `class`.
    #[inline(always)]
    pub fn counters(&self, class: usize) -> &ClassCounters {
        &self.cell.slots[class].counters
    }

    /// Counts an allocation of an arena block of `block_len` bytes.
    #[inline(always)]
    pub fn on_allocate_large(&self, requested: usize, block_len: usize) {
        self.cell.large.on_allocate(requested);
        bump_i(&self.cell.large_blocks, block_len as i64);
    }

    /// Counts a free of an arena block of `block_len` bytes.
    #[inline(always)]
    pub fn on_free_large(&self, requested: usize, block_len: usize) {
        self.cell.large.on_free(requested);
        bump_i(&self.cell.large_blocks, -(block_len as i64));
    }

    /// A cached free block of `class`, or `None` when the class has none.
    #[inline(always)]
    pub fn pop(&mut self, class: usize) -> Option<usize> {
        let intrusive = self.cell.intrusive;
        let list = self.list(class);
        let addr = list.head;
        if addr != 0 {
            // SAFETY: `addr` is a free block of this cache's list (the head
            // of device memory's lists stays 0): host memory of the pool,
            // at least 16 bytes, 16-byte aligned, that nobody else uses;
            // its first word was written by `push`.
            list.head = unsafe { (addr as *const usize).read() };
            list.len -= 1;
            return Some(addr);
        }
        if intrusive {
            return list.take_fresh(class);
        }
        self.pop_stack(class)
    }

    #[cold]
    fn pop_stack(&mut self, class: usize) -> Option<usize> {
        match self.rest().stacks[class].pop() {
            Some(addr) => {
                self.list(class).len -= 1;
                Some(addr)
            }
            None => self.list(class).take_fresh(class),
        }
    }

    /// The hot path of a free: links the freed block `addr` of `class`
    /// into the list; false when the class already holds its limit, and
    /// always for device memory (callers then take [`Owned::push_any`]).
    #[inline(always)]
    pub fn push(&mut self, class: usize, addr: usize) -> bool {
        let list = self.list(class);
        if list.len >= list.limit {
            return false;
        }
        list.len += 1;
        // SAFETY: a non-zero limit means host memory; `addr` is a block of
        // `class` of this pool that was just freed: nobody else uses it,
        // and it is at least 16 bytes long and 16-byte aligned.
        unsafe { (addr as *mut usize).write(list.head) };
        list.head = addr;
        true
    }

    /// Caches the freed block `addr` of `class`, host or device memory;
    /// false when the class already holds its limit.
    #[cold]
    pub fn push_any(&mut self, class: usize, addr: usize) -> bool {
        if self.cell.intrusive {
            return self.push(class, addr);
        }
        let list = self.list(class);
        if list.len >= list_limit(class) {
            return false;
        }
        list.len += 1;
        self.rest().stacks[class].push(addr);
        true
    }

    /// Adds free blocks of `class` (taken off the central list).
    pub fn fill(&mut self, class: usize, blocks: impl Iterator<Item = usize>) {
        for addr in blocks {
            let pushed = self.push_any(class, addr);
            debug_assert!(pushed, "refills stay under the list limit");
        }
    }

    /// Makes `start..end`, never-used blocks of `class`, the class's bump
    /// range (which must be empty).
    pub fn set_fresh(&mut self, class: usize, start: usize, end: usize) {
        let list = self.list(class);
        debug_assert_eq!(list.fresh, list.fresh_end);
        (list.fresh, list.fresh_end) = (start, end);
    }

    /// Moves up to `n` free blocks of `class` (the bump range included)
    /// into `out`.
    pub fn drain(&mut self, class: usize, n: usize, out: &mut Vec<usize>) {
        let want = out.len().saturating_add(n);
        while out.len() < want {
            match self.pop(class) {
                Some(addr) => out.push(addr),
                None => break,
            }
        }
    }

    /// Gives every cached block back to the pool's central structures.
    pub fn flush(&mut self, shared: &Shared) {
        for class in 0..NUM_CLASSES {
            let list = self.list(class);
            if list.len == 0 && list.fresh == list.fresh_end {
                continue;
            }
            let mut central = super::lock(&shared.central[class]);
            self.drain(class, usize::MAX, &mut central);
        }
        let rest = self.rest();
        for (addr, len) in rest.large.drain(..) {
            shared.arena_free(addr, len);
        }
        rest.large_bytes = 0;
    }
}

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
    fn owned<R>(&self, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
        let _entered = self.enter().ok()?;
        // SAFETY: `busy` is set and no steal was seen after the light fence:
        // a stealer raises `steal`, issues the heavy fence and then waits
        // while `busy` is set, so nobody else uses the cache until
        // `_entered` clears it; re-entry was refused by `enter`.
        Some(f(&mut unsafe { Owned::new(self) }))
    }

    /// [`CacheCell::owned`], waiting for a stealer to finish.
    fn owned_waiting<R>(&self, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
        loop {
            match self.enter() {
                // SAFETY: as in `owned`.
                Ok(_entered) => return Some(f(&mut unsafe { Owned::new(self) })),
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
    pub fn steal<R>(&self, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
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
        Some(f(&mut unsafe { Owned::new(self) }))
    }
}

/// All of one thread's pool caches, indexed by registry slot.
pub(super) struct ThreadCaches {
    pools: Vec<Option<Arc<CacheCell>>>,
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        LAST.set((0, std::ptr::null()));
        // Strong references to the pools still alive, taken under the
        // registry's lock; the flushes run after it is released (the last
        // reference, dropped here, unregisters its pool).
        let live: Vec<(Arc<CacheCell>, Arc<Shared>)> = {
            let r = registry();
            self.pools
                .iter_mut()
                .enumerate()
                .filter_map(|(slot, cell)| {
                    let cell = cell.take()?;
                    match r.slots.get(slot) {
                        Some(Some((generation, weak))) if *generation == cell.generation => {
                            Some((cell, weak.upgrade()?))
                        }
                        _ => None,
                    }
                })
                .collect()
        };
        for (cell, shared) in live {
            // Off the pool's list first: no stealer can reach the cell any
            // more (one in progress holds the list's lock).
            shared.retire(&cell);
            cell.owned(|c| c.flush(&shared));
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
pub(super) fn with_last<R>(generation: u64, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
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
pub(super) fn with_cache<R>(shared: &Shared, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
    let (last, ptr) = LAST.get();
    if last == shared.generation {
        // SAFETY: as in `with_last`.
        let cell = unsafe { &*ptr };
        return cell.owned_waiting(f);
    }
    with_cache_slow(shared, f)
}

#[cold]
fn with_cache_slow<R>(shared: &Shared, f: impl FnOnce(&mut Owned<'_>) -> R) -> Option<R> {
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
    let intrusive = shared.intrusive;
    CacheCell {
        slots: std::array::from_fn(|class| ClassSlot {
            list: UnsafeCell::new(FreeList {
                limit: if intrusive { list_limit(class) } else { 0 },
                ..FreeList::default()
            }),
            counters: ClassCounters::default(),
        }),
        generation: shared.generation,
        owner: std::thread::current().id(),
        intrusive,
        busy: AtomicBool::new(false),
        steal: AtomicBool::new(false),
        large: ClassCounters::default(),
        large_blocks: AtomicI64::new(0),
        cache: UnsafeCell::new(PoolCache {
            large: Vec::with_capacity(super::LARGE_CACHE_ENTRIES),
            large_bytes: 0,
            stacks: if intrusive {
                Vec::new()
            } else {
                (0..NUM_CLASSES)
                    .map(|c| Vec::with_capacity(list_limit(c)))
                    .collect()
            },
        }),
    }
}
