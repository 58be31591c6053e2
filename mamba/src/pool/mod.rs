//! The pooled strategy of one space: size classes with per-thread caches
//! for small blocks, a best-fit coalescing arena for large ones, chunks
//! obtained from the space's provider under its capacity limit and given
//! back when idle.

mod arena;
mod cache;
pub mod classes;
mod fence;
#[cfg(test)]
mod free_list_tests;
#[cfg(test)]
mod heap_provider;
#[cfg(test)]
mod reclaim_tests;
#[cfg(test)]
mod tests;

use crate::allocation::Allocation;
use crate::error::{Error, Result};
use crate::provider::Provider;
use crate::tier::SpaceInfo;
use arena::{Arena, ArenaError};
use cache::{with_cache, with_last, CacheCell, Counters, Owned, LARGE};
use classes::{batch, class_for, slab_size, CLASS_SIZES, NUM_CLASSES};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tuning of a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Size of the chunks taken from the provider (the last chunk before the
    /// capacity limit may be smaller).
    pub chunk_size: usize,
    /// Bytes of entirely free chunks kept for reuse; beyond it idle chunks
    /// go back to the provider as soon as they become free.
    pub retain_idle: usize,
    /// Bytes of large blocks one thread may keep cached per pool.
    pub thread_cache_bytes: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            chunk_size: 32 << 20,
            retain_idle: 64 << 20,
            thread_cache_bytes: 256 << 20,
        }
    }
}

/// The largest alignment a pool serves (1 GiB, the largest huge page).
pub const MAX_ALIGN: usize = 1 << 30;

/// Most large blocks one thread caches per pool.
const LARGE_CACHE_ENTRIES: usize = 8;

/// A pool's statistics. Exact when no other thread is allocating or
/// freeing in the pool at the same moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Bytes requested by live allocations.
    pub in_use: usize,
    /// Bytes of the blocks backing live allocations (size classes and page
    /// rounding make it at least `in_use`).
    pub in_use_blocks: usize,
    /// Bytes obtained from the provider and not given back.
    pub reserved: usize,
    /// Largest `reserved` so far.
    pub high_water: usize,
    /// Bytes of reserved memory in the arena's free extents (not counting
    /// blocks cached for size classes or by threads).
    pub arena_free: usize,
    /// The capacity limit.
    pub capacity: usize,
    /// Bytes of other spaces' allocations whose pages were moved here.
    pub moved_in: usize,
    /// Bytes of this pool's allocations whose pages were moved to another
    /// space: their blocks stay reserved here, but no longer count against
    /// the capacity limit.
    pub moved_out: usize,
    /// Allocations made so far.
    pub allocations: u64,
    /// Frees so far.
    pub frees: u64,
    /// Chunks held now.
    pub chunks: usize,
    /// Chunks obtained from the provider so far.
    pub chunk_acquisitions: u64,
    /// Chunks given back so far.
    pub chunk_releases: u64,
}

impl PoolStats {
    /// Bytes that can still be reserved under the capacity limit.
    pub fn available(&self) -> usize {
        self.capacity
            .saturating_add(self.moved_out)
            .saturating_sub(self.reserved)
            .saturating_sub(self.moved_in)
    }

    /// Share of reserved memory not requested by live allocations (0 when
    /// nothing is reserved).
    pub fn fragmentation(&self) -> f64 {
        if self.reserved == 0 {
            0.0
        } else {
            1.0 - self.in_use as f64 / self.reserved as f64
        }
    }
}

/// A raw block: what an [`Allocation`] owns. Crate-private, so that no
/// safe code outside the crate can make one up and free it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Address (a device address for GPU memory).
    pub addr: usize,
    /// Bytes requested.
    pub len: usize,
    /// The size class of a small block (below [`NUM_CLASSES`]), or the
    /// bytes of an arena block (always above [`classes::MAX_SMALL`]): a
    /// free finds the class without computing it from a length.
    size: usize,
}

impl Block {
    /// A block of size class `class`.
    #[inline(always)]
    pub(crate) fn small(addr: usize, len: usize, class: usize) -> Block {
        debug_assert!(class < NUM_CLASSES);
        Block {
            addr,
            len,
            size: class,
        }
    }

    /// An arena block of `block_len` bytes (more than
    /// [`classes::MAX_SMALL`]).
    #[inline(always)]
    pub(crate) fn large(addr: usize, len: usize, block_len: usize) -> Block {
        debug_assert!(block_len > classes::MAX_SMALL);
        Block {
            addr,
            len,
            size: block_len,
        }
    }

    /// The size class of a small block; `None` for an arena block.
    #[inline(always)]
    pub(crate) fn class(&self) -> Option<usize> {
        (self.size < NUM_CLASSES).then_some(self.size)
    }

    /// Bytes of the block (class size or granule-rounded).
    #[inline(always)]
    pub(crate) fn block_len(&self) -> usize {
        match self.class() {
            Some(class) => CLASS_SIZES[class],
            None => self.size,
        }
    }
}

/// Arena plus the slabs carved from it for size classes.
#[derive(Debug, Default)]
struct ArenaState {
    arena: Arena,
    /// Slab start -> (class, length).
    slabs: BTreeMap<usize, (usize, usize)>,
}

/// State shared by every thread using a pool.
pub(crate) struct Shared {
    slot: usize,
    generation: u64,
    central: [Mutex<Vec<usize>>; NUM_CLASSES],
    state: Mutex<ArenaState>,
    provider: Box<dyn Provider>,
    settings: PoolSettings,
    /// The space served; its capacity is the limit.
    info: SpaceInfo,
    granule: usize,
    /// The CPU can write the memory: free small blocks are linked through
    /// their first word (out-of-band stacks otherwise).
    intrusive: bool,
    moved_in: AtomicUsize,
    moved_out: AtomicUsize,
    /// Every live thread's cache of this pool. Lock order: this before a
    /// central list or the arena state, never the other way round.
    cells: Mutex<Vec<Arc<CacheCell>>>,
    retired: Counters,
    /// [`Counters::activity`] of all threads at the last reclaim (written
    /// under the `cells` lock).
    reclaimed_at: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn central_push(&self, class: usize, blocks: impl Iterator<Item = usize>) {
        lock(&self.central[class]).extend(blocks);
    }

    /// Moves a batch of `cache`'s free blocks of `class` to the central
    /// list (its list is full).
    #[cold]
    fn spill(&self, class: usize, cache: &mut Owned<'_>) {
        cache.drain(class, batch(class), &mut lock(&self.central[class]));
    }

    fn arena_free(&self, addr: usize, len: usize) {
        let mut st = lock(&self.state);
        if st.arena.free(addr, len).is_some() && st.arena.idle_bytes() > self.settings.retain_idle {
            st.arena
                .release_idle(&*self.provider, self.settings.retain_idle);
        }
    }

    fn adopt(&self, cell: Arc<CacheCell>) {
        lock(&self.cells).push(cell);
    }

    /// Takes an exiting thread's cache off the list and folds its counters
    /// into the retired ones; under the same lock as `stats` reads them, so
    /// that nothing is counted twice.
    fn retire(&self, cell: &Arc<CacheCell>) {
        let mut cells = lock(&self.cells);
        self.retired.add_cell(cell);
        cells.retain(|c| !Arc::ptr_eq(c, cell));
    }

    /// Takes back the blocks every thread caches (sleeping threads'
    /// too) and gives entirely free slabs back to the arena: what a full
    /// pool does before it reports [`Error::OutOfCapacity`], and `trim`.
    /// The calling thread must not be inside its own cache.
    ///
    /// Stealing costs every running thread of the process an interrupt
    /// (see `fence`), so it is skipped when no thread allocated or freed
    /// since the last time: a full pool that placement keeps falling back
    /// from does not pay it on every request.
    fn reclaim(&self) {
        {
            let cells = lock(&self.cells);
            let activity = cells
                .iter()
                .map(|c| c.activity())
                .fold(self.retired.activity(), u64::wrapping_add);
            if self.reclaimed_at.swap(activity, Relaxed) != activity {
                for cell in cells.iter() {
                    cell.steal(|c| c.flush(self));
                }
            }
        }
        self.release_free_slabs();
    }

    /// Gives slabs whose blocks are all on the central lists back to the
    /// arena.
    fn release_free_slabs(&self) {
        for (class, central) in self.central.iter().enumerate() {
            let mut central = lock(central);
            if central.is_empty() {
                continue;
            }
            let mut st = lock(&self.state);
            let mut free_per_slab: BTreeMap<usize, usize> = BTreeMap::new();
            for &addr in central.iter() {
                if let Some((&start, _)) = st.slabs.range(..=addr).next_back() {
                    *free_per_slab.entry(start).or_default() += 1;
                }
            }
            let size = CLASS_SIZES[class];
            let idle: Vec<(usize, usize)> = free_per_slab
                .into_iter()
                .filter_map(|(start, free)| {
                    let (_, len) = st.slabs[&start];
                    (free == len / size).then_some((start, len))
                })
                .collect();
            if idle.is_empty() {
                continue;
            }
            central.retain(|&addr| {
                !idle
                    .iter()
                    .any(|&(start, len)| addr >= start && addr < start + len)
            });
            for (start, len) in idle {
                st.slabs.remove(&start);
                st.arena.free(start, len);
            }
        }
    }

    fn arena_allocate(&self, st: &mut ArenaState, len: usize, align: usize) -> Result<usize> {
        let limit = self
            .info
            .capacity
            .saturating_add(self.moved_out.load(Relaxed))
            .saturating_sub(self.moved_in.load(Relaxed));
        st.arena
            .allocate(len, align, &*self.provider, self.settings.chunk_size, limit)
            .map_err(|e| match e {
                ArenaError::Capacity { needed, available } => {
                    self.out_of_capacity(needed, available)
                }
                // The system is out of memory for this space: full, as if
                // capped, so that placement falls back.
                ArenaError::Provider(e @ Error::Exhausted { .. }) => {
                    tracing::warn!(space = %self.info.name, error = %e, "the system refused memory");
                    self.out_of_capacity(len, 0)
                }
                ArenaError::Provider(e) => e,
            })
    }

    /// The error of a request for `requested` bytes when `available` are
    /// left under the limit.
    fn out_of_capacity(&self, requested: usize, available: usize) -> Error {
        Error::OutOfCapacity {
            space: self.info.id,
            name: self.info.name.clone(),
            tier: self.info.tier,
            requested,
            available,
            capacity: self.info.capacity,
        }
    }

    /// Refills `cache`'s list of `class` (which is empty): a batch off the
    /// central list, or else the first blocks of a new slab as the list's
    /// bump range (the rest go to the central list).
    fn refill(&self, class: usize, cache: &mut Owned<'_>) -> Result<()> {
        let want = batch(class);
        {
            let mut central = lock(&self.central[class]);
            let take = central.len().min(want);
            if take > 0 {
                let from = central.len() - take;
                cache.fill(class, central.drain(from..));
                return Ok(());
            }
        }
        let (start, count) = self.carve(class)?;
        let size = CLASS_SIZES[class];
        let keep = count.min(want);
        cache.set_fresh(class, start, start + keep * size);
        if count > keep {
            self.central_push(class, (keep..count).map(|i| start + i * size));
        }
        Ok(())
    }

    /// One free block of `class` for a thread without a cache.
    fn take_uncached(&self, class: usize) -> Result<usize> {
        if let Some(addr) = lock(&self.central[class]).pop() {
            return Ok(addr);
        }
        let (start, count) = self.carve(class)?;
        let size = CLASS_SIZES[class];
        self.central_push(class, (1..count).map(|i| start + i * size));
        Ok(start)
    }

    /// A new slab for `class` from the arena: its start and its number of
    /// blocks.
    fn carve(&self, class: usize) -> Result<(usize, usize)> {
        let size = CLASS_SIZES[class];
        let mut st = lock(&self.state);
        let slab = slab_size(class, self.granule);
        let (start, len) = match self.arena_allocate(&mut st, slab, self.granule) {
            Ok(start) => (start, slab),
            Err(Error::OutOfCapacity { .. }) => {
                // Near the limit: a slab of just one block.
                let small = size.next_multiple_of(self.granule);
                (self.arena_allocate(&mut st, small, self.granule)?, small)
            }
            Err(e) => return Err(e),
        };
        st.slabs.insert(start, (class, len));
        Ok((start, len / size))
    }
}

/// The pooled allocator of one space.
///
/// The pool's state is reference-counted: owned allocations
/// ([`Allocation::into_owned`]) keep it alive after the `Pool` (or the
/// [`Mamba`](crate::Mamba) holding it) is dropped, and its memory goes back
/// to the provider when the last of them is freed.
///
/// ```
/// use mamba::{Mamba, Config, Tier, Policy};
/// let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() }).unwrap();
/// let dram = mamba.pool_of(Tier::Dram).unwrap();
/// let block = dram.allocate(1000, 64).unwrap();
/// assert_eq!(block.addr() % 64, 0);
/// assert!(dram.stats().in_use >= 1000);
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    /// `shared.generation`, next to the pointer: the hot paths compare it
    /// with the thread's last cache without reaching the shared state.
    generation: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("space", &self.shared.info.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    /// A pool over `provider` for the space `info`, with `info.capacity` as
    /// its limit.
    pub fn new(info: SpaceInfo, provider: Box<dyn Provider>, settings: PoolSettings) -> Self {
        fence::init();
        let granule = provider.granule();
        let intrusive = provider.host_accessible() && provider.block_io().is_none();
        let (slot, generation) = cache::reserve();
        let shared = Arc::new(Shared {
            slot,
            generation,
            central: std::array::from_fn(|_| Mutex::new(Vec::new())),
            state: Mutex::new(ArenaState::default()),
            provider,
            settings,
            info,
            granule,
            intrusive,
            moved_in: AtomicUsize::new(0),
            moved_out: AtomicUsize::new(0),
            cells: Mutex::new(Vec::new()),
            reclaimed_at: AtomicU64::new(u64::MAX),
            retired: Counters::default(),
        });
        cache::publish(slot, Arc::downgrade(&shared));
        Pool { shared, generation }
    }

    /// Another handle on the same pool state (for owned allocations).
    pub(crate) fn handle(&self) -> Pool {
        Pool {
            shared: Arc::clone(&self.shared),
            generation: self.generation,
        }
    }

    /// Whether `self` and `other` are handles on the same pool.
    pub(crate) fn same(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The pool's unique generation: never reused by another pool of the
    /// process.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The space this pool serves.
    pub fn info(&self) -> &SpaceInfo {
        &self.shared.info
    }

    /// Byte transfers for memory the CPU cannot address (see
    /// [`Provider::block_io`]).
    pub(crate) fn block_io(&self) -> Option<&dyn crate::provider::BlockIo> {
        self.shared.provider.block_io()
    }

    /// How the pool's memory is reached (see [`Provider::access`]).
    pub fn access(&self) -> Option<crate::provider::Access> {
        self.shared.provider.access()
    }

    /// The GPU of the pool's memory (see [`Provider::gpu`]).
    pub fn gpu(&self) -> Option<Arc<crate::gpu::GpuDevice>> {
        self.shared.provider.gpu()
    }

    /// Allocates `len` bytes aligned to `align` (a power of two, at most
    /// [`MAX_ALIGN`]). Alignments above the provider's granule (the page
    /// for host memory) reserve up to `align` bytes of slack in the chunk
    /// the block is carved from.
    ///
    /// # Errors
    /// [`Error::ZeroSize`], [`Error::BadAlignment`],
    /// [`Error::AlignmentTooLarge`], [`Error::SizeTooLarge`],
    /// [`Error::OutOfCapacity`], or the provider's error.
    #[inline(always)]
    pub fn allocate(&self, len: usize, align: usize) -> Result<Allocation<'_>> {
        // The two paths meet on a block (three words), not on an
        // allocation inside a `Result`, so that the hot path's handle
        // stays in registers.
        let block = match self.allocate_cached(len, align) {
            Some(b) => b,
            None => self.allocate_block(len, align)?,
        };
        Ok(Allocation::new(block, self))
    }

    /// The hot path: a block from this thread's cache — a small one of the
    /// size class, or the large block freed last when it has exactly the
    /// size — or `None` (anything else, errors included, takes the checked
    /// path).
    #[inline(always)]
    pub(crate) fn allocate_cached(&self, len: usize, align: usize) -> Option<Block> {
        if len.wrapping_sub(1) >= classes::MAX_SMALL {
            let (addr, block_len) = self.allocate_cached_large(len, align)?;
            return Some(Block::large(addr, len, block_len.get()));
        }
        if align > 16 || !align.is_power_of_two() {
            return None;
        }
        // Every class size is a multiple of 16, so alignments up to 16 hold.
        let class = classes::class_of(len);
        let addr = with_last(self.generation, |c| {
            let addr = c.pop(class)?;
            c.counters(class).on_allocate(len);
            Some(addr)
        })??;
        Some(Block::small(addr, len, class))
    }

    /// The large case of [`Pool::allocate_cached`]: address and length of
    /// the block (two words, returned in registers, so that the small
    /// case's block is not forced into memory where the two meet).
    #[inline(never)]
    fn allocate_cached_large(&self, len: usize, align: usize) -> Option<(usize, NonZeroUsize)> {
        let granule = self.shared.granule;
        if len > isize::MAX as usize / 2 || !align.is_power_of_two() || align > granule {
            return None;
        }
        let block_len = NonZeroUsize::new(len.next_multiple_of(granule))?;
        let addr = with_last(self.generation, |c| {
            let rest = c.rest();
            match rest.large.last() {
                Some(&(addr, l)) if l == block_len.get() => {
                    rest.large.pop();
                    rest.large_bytes -= l;
                    c.on_allocate_large(len, l);
                    Some(addr)
                }
                _ => None,
            }
        })??;
        Some((addr, block_len))
    }

    #[cold]
    pub(crate) fn allocate_block(&self, len: usize, align: usize) -> Result<Block> {
        self.check_request(len, align)?;
        // Slabs are granule-aligned: larger alignments take the arena.
        let class = (align <= self.shared.granule)
            .then(|| class_for(len, align))
            .flatten();
        match class {
            Some(class) => self.allocate_small(len, class),
            None => self.allocate_large(len, align),
        }
    }

    #[inline]
    fn check_request(&self, len: usize, align: usize) -> Result<()> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        if !align.is_power_of_two() {
            return Err(Error::BadAlignment { align });
        }
        if align > MAX_ALIGN {
            return Err(Error::AlignmentTooLarge {
                align,
                max: MAX_ALIGN,
                space: self.shared.info.id,
            });
        }
        if len > isize::MAX as usize / 2 {
            return Err(Error::SizeTooLarge { size: len });
        }
        Ok(())
    }

    /// Runs `attempt`; when the limit is hit, takes back every thread's
    /// cached blocks and tries once more.
    fn reclaiming<T>(&self, attempt: impl Fn() -> Result<T>) -> Result<T> {
        match attempt() {
            Err(Error::OutOfCapacity { .. }) => {
                self.shared.reclaim();
                attempt()
            }
            other => other,
        }
    }

    /// Small allocation, reclaiming cached blocks when the limit is hit.
    #[inline]
    fn allocate_small(&self, len: usize, class: usize) -> Result<Block> {
        let addr = self.reclaiming(|| self.take_small(len, class))?;
        Ok(Block::small(addr, len, class))
    }

    #[inline]
    fn take_small(&self, len: usize, class: usize) -> Result<usize> {
        let shared = &*self.shared;
        let cached = with_cache(shared, |c| {
            let addr = match c.pop(class) {
                Some(addr) => addr,
                None => {
                    shared.refill(class, c)?;
                    c.pop(class).expect("refill adds blocks")
                }
            };
            c.counters(class).on_allocate(len);
            Ok(addr)
        });
        match cached {
            Some(r) => r,
            None => self.allocate_uncached_small(len, class),
        }
    }

    /// Small allocation for a thread whose cache is gone (thread exit).
    fn allocate_uncached_small(&self, len: usize, class: usize) -> Result<usize> {
        let addr = self.shared.take_uncached(class)?;
        self.shared.retired.on_allocate(class, len as i64, 0);
        Ok(addr)
    }

    fn allocate_large(&self, len: usize, align: usize) -> Result<Block> {
        let shared = &*self.shared;
        // A large block is never as small as a size class (only
        // over-aligned requests get here with small lengths): `Block`
        // tells the two kinds apart by it.
        let block_len = len
            .max(classes::MAX_SMALL + 1)
            .checked_next_multiple_of(self.shared.granule)
            .ok_or(Error::SizeTooLarge { size: len })?;
        let hit = with_cache(shared, |c| {
            let slack = block_len / 8;
            let rest = c.rest();
            let i = rest.large.iter().rposition(|&(addr, l)| {
                l >= block_len && l - block_len <= slack && addr % align == 0
            })?;
            let (addr, l) = rest.large.swap_remove(i);
            rest.large_bytes -= l;
            c.on_allocate_large(len, l);
            Some((addr, l))
        })
        .flatten();
        if let Some((addr, block_len)) = hit {
            return Ok(Block::large(addr, len, block_len));
        }
        let addr =
            self.reclaiming(|| shared.arena_allocate(&mut lock(&shared.state), block_len, align))?;
        let counted = with_cache(shared, |c| c.on_allocate_large(len, block_len));
        if counted.is_none() {
            shared
                .retired
                .on_allocate(LARGE, len as i64, block_len as i64);
        }
        Ok(Block::large(addr, len, block_len))
    }

    /// The hot path of a free: links a small block into this thread's
    /// cache when that cache was the last one used and has room. False,
    /// with nothing done, otherwise (callers then take
    /// [`Pool::free_block`]).
    #[inline(always)]
    pub(crate) fn free_cached(&self, block: &Block) -> bool {
        let Some(class) = block.class() else {
            return false;
        };
        let pushed = with_last(self.generation, |c| {
            let room = c.push(class, block.addr);
            if room {
                c.counters(class).on_free(block.len);
            }
            room
        });
        pushed == Some(true)
    }

    /// Gives a block back, by whichever path it takes.
    pub(crate) fn free_block(&self, block: &Block) {
        if self.free_cached(block) {
            return;
        }
        match block.class() {
            Some(_) => self.free_block_slow(block),
            None => self.free_large(block),
        }
    }

    /// Frees an arena block into this thread's cache when it has room.
    #[inline(never)]
    fn free_large(&self, block: &Block) {
        let block_len = block.block_len();
        if block_len <= self.shared.settings.thread_cache_bytes {
            let limit = self.shared.settings.thread_cache_bytes;
            let pushed = with_last(self.generation, |c| {
                let rest = c.rest();
                let room =
                    rest.large.len() < LARGE_CACHE_ENTRIES && rest.large_bytes + block_len <= limit;
                if room {
                    rest.large.push((block.addr, block_len));
                    rest.large_bytes += block_len;
                    c.on_free_large(block.len, block_len);
                }
                room
            });
            if pushed == Some(true) {
                return;
            }
        }
        self.free_block_slow(block);
    }

    /// Frees what the hot path could not: large blocks, a full cache stack,
    /// a thread without a cache.
    #[cold]
    fn free_block_slow(&self, block: &Block) {
        let shared = &*self.shared;
        let (addr, len, block_len) = (block.addr, block.len, block.block_len());
        let done = with_cache(shared, |c| {
            if let Some(class) = block.class() {
                c.counters(class).on_free(len);
                if !c.push_any(class, addr) {
                    shared.spill(class, c);
                    let pushed = c.push_any(class, addr);
                    debug_assert!(pushed, "a spilled list has room");
                }
                return;
            }
            c.on_free_large(len, block_len);
            if block_len <= shared.settings.thread_cache_bytes {
                let rest = c.rest();
                while rest.large_bytes + block_len > shared.settings.thread_cache_bytes
                    || rest.large.len() >= LARGE_CACHE_ENTRIES
                {
                    let (a, l) = rest.large.remove(0);
                    rest.large_bytes -= l;
                    shared.arena_free(a, l);
                }
                rest.large.push((addr, block_len));
                rest.large_bytes += block_len;
            } else {
                shared.arena_free(addr, block_len);
            }
        });
        if done.is_none() {
            match block.class() {
                Some(class) => {
                    shared.retired.on_free(class, len as i64, 0);
                    shared.central_push(class, std::iter::once(addr));
                }
                None => {
                    shared.retired.on_free(LARGE, len as i64, block_len as i64);
                    shared.arena_free(addr, block_len);
                }
            }
        }
    }

    /// Whether `addr..addr+len` lies in memory this pool holds.
    pub fn owns(&self, addr: usize, len: usize) -> bool {
        lock(&self.shared.state).arena.owns(addr, len)
    }

    /// Takes back every thread's cached blocks (waiting for none of those
    /// threads), gives entirely free slabs back to the arena and entirely
    /// free chunks back to the provider. Returns the bytes released.
    pub fn trim(&self) -> usize {
        let shared = &*self.shared;
        shared.reclaim();
        lock(&shared.state).arena.release_idle(&*shared.provider, 0)
    }

    /// The pool's statistics.
    pub fn stats(&self) -> PoolStats {
        let shared = &*self.shared;
        let total = Counters::default();
        {
            let cells = lock(&shared.cells);
            for c in cells.iter() {
                total.add_cell(c);
            }
            total.add(&shared.retired);
        }
        let count = |a: &[AtomicU64]| -> Vec<u64> { a.iter().map(|x| x.load(Relaxed)).collect() };
        let (allocs, frees) = (count(&total.allocations), count(&total.frees));
        let small_blocks: u64 = (0..NUM_CLASSES)
            .map(|c| {
                allocs[c]
                    .wrapping_sub(frees[c])
                    .wrapping_mul(CLASS_SIZES[c] as u64)
            })
            .fold(0, u64::wrapping_add);
        let blocks = small_blocks as i64 + total.large_in_use.load(Relaxed);
        let requested = total.requested_in_use.load(Relaxed);
        let allocations: u64 = allocs.iter().sum();
        let frees: u64 = frees.iter().sum();
        let counts = lock(&shared.state).arena.counts();
        PoolStats {
            in_use: requested.max(0) as usize,
            in_use_blocks: blocks.max(0) as usize,
            reserved: counts.reserved,
            high_water: counts.high_water,
            arena_free: counts.free,
            capacity: shared.info.capacity,
            moved_in: shared.moved_in.load(Relaxed),
            moved_out: shared.moved_out.load(Relaxed),
            allocations,
            frees,
            chunks: counts.chunks,
            chunk_acquisitions: counts.acquisitions,
            chunk_releases: counts.releases,
        }
    }

    /// Charges `bytes` of pages moved here from another space against the
    /// capacity limit.
    pub(crate) fn charge_moved_in(&self, bytes: usize) -> Result<()> {
        let st = lock(&self.shared.state);
        let reserved = st.arena.counts().reserved;
        let moved = self.shared.moved_in.load(Relaxed);
        let available = (self.shared.info.capacity)
            .saturating_add(self.shared.moved_out.load(Relaxed))
            .saturating_sub(reserved + moved);
        if bytes > available {
            return Err(self.shared.out_of_capacity(bytes, available));
        }
        self.shared.moved_in.store(moved + bytes, Relaxed);
        Ok(())
    }

    /// Gives `len` bytes at `addr` (whole pages of one of this pool's
    /// blocks) back to the provider's placement; see [`Provider::rebind`].
    pub(crate) fn rebind(&self, addr: usize, len: usize, migrate: bool) -> Result<()> {
        self.shared.provider.rebind(addr, len, migrate)
    }

    /// Undoes [`Pool::charge_moved_in`].
    pub(crate) fn uncharge_moved_in(&self, bytes: usize) {
        let _st = lock(&self.shared.state);
        self.shared.moved_in.fetch_sub(bytes, Relaxed);
    }

    /// Records `bytes` of this pool's blocks whose pages now live in
    /// another space (they stop counting against the capacity limit).
    pub(crate) fn note_moved_out(&self, bytes: usize) {
        let _st = lock(&self.shared.state);
        self.shared.moved_out.fetch_add(bytes, Relaxed);
    }

    /// Undoes [`Pool::note_moved_out`] (the pages came home, or the block
    /// was freed).
    pub(crate) fn unnote_moved_out(&self, bytes: usize) {
        let _st = lock(&self.shared.state);
        self.shared.moved_out.fetch_sub(bytes, Relaxed);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        cache::unregister(self.slot);
        // The last handle is gone: no allocation of the pool is alive (owned
        // allocations hold a handle, borrowed ones borrow one).
        lock(&self.state).arena.release_all(&*self.provider);
    }
}
