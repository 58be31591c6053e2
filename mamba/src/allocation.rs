//! The owning handles of an allocation: [`Allocation`], borrowed from its
//! pool or owning a reference to it, and [`RawAllocation`], an allocation
//! whose ownership was given up.

use crate::error::{Error, Result};
use crate::pool::{Block, Pool};
use crate::tier::{SpaceId, SpaceInfo, Tier};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// How an allocation reaches its pool.
enum PoolRef<'m> {
    /// Borrowed: no reference count touched.
    Borrowed(&'m Pool),
    /// A counted handle: the pool's state lives as long as the allocation.
    Owned(Pool),
}

impl PoolRef<'_> {
    #[inline(always)]
    fn get(&self) -> &Pool {
        match self {
            PoolRef::Borrowed(p) => p,
            PoolRef::Owned(p) => p,
        }
    }
}

/// What an allocation off the hot path holds: an owned pool handle, or
/// pages moved to another space.
struct Detached<'m> {
    pool: PoolRef<'m>,
    /// Space whose NUMA node now holds the pages, after a page move.
    resident: Option<Pool>,
}

/// How an allocation reaches its pool, in one word: a borrowed
/// `&'m Pool` (low bit clear: the hot path, which frees with one test of
/// that bit) or a boxed [`Detached`] (low bit set).
struct PoolLink<'m> {
    ptr: NonNull<u8>,
    /// Stands for the `&'m Pool` or the `Box<Detached<'m>>` it holds.
    _holds: PhantomData<(&'m Pool, Box<Detached<'m>>)>,
}

/// The tag bit of a boxed [`Detached`].
const DETACHED: usize = 1;

// Both pointees leave the tag bit free.
const _: () = assert!(std::mem::align_of::<Pool>() > DETACHED);
const _: () = assert!(std::mem::align_of::<Detached<'static>>() > DETACHED);

// `PoolLink` is `Send` and `Sync` because what it stands for is: a shared
// reference to a pool, or a box of pool handles.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
};

// SAFETY: a link is a `&Pool` or a `Box<Detached>` (pool handles only), and
// `Pool` is `Send + Sync` (checked above): sending or sharing the link is
// sending or sharing those.
unsafe impl Send for PoolLink<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for PoolLink<'_> {}

impl<'m> PoolLink<'m> {
    #[inline(always)]
    fn borrowed(pool: &'m Pool) -> Self {
        PoolLink {
            ptr: NonNull::from(pool).cast(),
            _holds: PhantomData,
        }
    }

    /// The pool, when it is borrowed and the pages are at home.
    #[inline(always)]
    fn plain(&self) -> Option<&'m Pool> {
        if self.ptr.addr().get() & DETACHED != 0 {
            return None;
        }
        // SAFETY: an untagged link was made by `borrowed` from a `&'m Pool`.
        Some(unsafe { self.ptr.cast::<Pool>().as_ref() })
    }

    /// The box of a tagged link, as a pointer (dangling for an untagged
    /// link: callers check the tag first).
    fn untagged(&self) -> *mut Detached<'m> {
        self.ptr
            .as_ptr()
            .map_addr(|a| a & !DETACHED)
            .cast::<Detached<'m>>()
    }

    fn detached(&self) -> Option<&Detached<'m>> {
        if self.plain().is_some() {
            return None;
        }
        // SAFETY: a tagged link owns the box `from_parts` leaked, at the
        // link's address less the tag; `&self` keeps it alive.
        Some(unsafe { &*self.untagged() })
    }

    fn detached_mut(&mut self) -> Option<&mut Detached<'m>> {
        if self.plain().is_some() {
            return None;
        }
        // SAFETY: as in `detached`, and `&mut self` makes the access
        // unique.
        Some(unsafe { &mut *self.untagged() })
    }

    /// The pool the allocation returns to.
    #[inline(always)]
    fn pool(&self) -> &Pool {
        if let Some(p) = self.plain() {
            return p;
        }
        // SAFETY: as in `detached`: the link is tagged.
        unsafe { &*self.untagged() }.pool.get()
    }

    /// The pool reference and the resident pool, taking the box apart.
    fn into_parts(self) -> (PoolRef<'m>, Option<Pool>) {
        let this = ManuallyDrop::new(self);
        if let Some(p) = this.plain() {
            return (PoolRef::Borrowed(p), None);
        }
        // SAFETY: a tagged link owns the box at `untagged`, and `this` is
        // never dropped: the box is taken back exactly once.
        let d = unsafe { spare::unbox(this.untagged()) };
        (d.pool, d.resident)
    }

    /// A link to `pool`, with the pages at `resident` when moved.
    fn from_parts(pool: PoolRef<'m>, resident: Option<Pool>) -> Self {
        match (pool, resident) {
            (PoolRef::Borrowed(p), None) => PoolLink::borrowed(p),
            (pool, resident) => {
                let d = spare::boxed(Detached { pool, resident });
                PoolLink {
                    ptr: d.cast::<u8>().map_addr(|a| a | DETACHED),
                    _holds: PhantomData,
                }
            }
        }
    }
}

impl Drop for PoolLink<'_> {
    fn drop(&mut self) {
        if self.plain().is_none() {
            // SAFETY: a tagged link owns the box at `untagged`; it is being
            // dropped, so the box is taken back exactly once.
            drop(unsafe { spare::unbox(self.untagged()) });
        }
    }
}

/// Boxes for [`Detached`], kept per thread once freed: making an
/// allocation owned ([`Allocation::into_owned`]) takes one, its free gives
/// it back, so that a steady state of owned allocations (a solver's
/// per-iteration scratch, CDO data) makes no heap allocation after the
/// first round.
pub(crate) mod spare {
    use super::Detached;
    use std::cell::RefCell;
    use std::mem::MaybeUninit;
    use std::ptr::NonNull;

    /// Most boxes a thread keeps.
    pub(crate) const KEPT: usize = 64;

    /// Empty boxes (their contents moved out), freed with the thread.
    struct Boxes(Vec<NonNull<MaybeUninit<Detached<'static>>>>);

    impl Drop for Boxes {
        fn drop(&mut self) {
            for b in self.0.drain(..) {
                // SAFETY: every pointer here came from a `Box` of this
                // type (see `boxed` and `unbox`) and is freed only here,
                // once, without reading its (moved-out) contents.
                drop(unsafe { Box::from_raw(b.as_ptr()) });
            }
        }
    }

    thread_local! {
        static SPARE: RefCell<Boxes> = const { RefCell::new(Boxes(Vec::new())) };
    }

    /// How many empty boxes this thread keeps now.
    #[cfg(test)]
    pub(crate) fn kept() -> usize {
        SPARE.with(|s| s.borrow().0.len())
    }

    /// `d` in a box: a kept one when the thread has one.
    pub(super) fn boxed<'m>(d: Detached<'m>) -> NonNull<Detached<'m>> {
        let kept = SPARE.try_with(|s| s.borrow_mut().0.pop()).ok().flatten();
        let b = kept.unwrap_or_else(|| NonNull::from(Box::leak(Box::new(MaybeUninit::uninit()))));
        // Lifetimes do not change a type's layout: a box made for
        // `Detached<'static>` holds a `Detached<'m>`.
        let b = b.cast::<Detached<'m>>();
        // SAFETY: `b` is a live, empty box of the right layout, owned here.
        unsafe { b.as_ptr().write(d) };
        b
    }

    /// Moves the contents out of box `b` and keeps the box for this thread
    /// (or frees it when the thread keeps enough).
    ///
    /// # Safety
    /// `b` came from [`boxed`] and is unboxed once.
    pub(super) unsafe fn unbox<'m>(b: *mut Detached<'m>) -> Detached<'m> {
        // SAFETY: by the contract, `b` holds a value written by `boxed`
        // that nobody else reads or frees.
        let d = unsafe { b.read() };
        let empty = b.cast::<MaybeUninit<Detached<'static>>>();
        // SAFETY: `b` is not null (it came from a box).
        let empty = unsafe { NonNull::new_unchecked(empty) };
        let kept = SPARE
            .try_with(|s| {
                let mut s = s.borrow_mut();
                let room = s.0.len() < KEPT;
                if room {
                    s.0.push(empty);
                }
                room
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: the box came from `Box` (see `boxed`), its contents
            // were moved out above, and it is freed once, here.
            drop(unsafe { Box::from_raw(empty.as_ptr()) });
        }
        d
    }
}

/// Memory obtained from a [`Pool`]; freed back to it on drop.
///
/// It tells where it landed ([`Allocation::space`]) — the answer users of
/// memkind and RMM cannot get. The memory of host-accessible spaces is
/// always initialised bytes (pools hand out memory that came zero-filled
/// from `mmap` or a file, and only ever held bytes written through safe
/// code), so byte slices of it are safe to read.
///
/// An allocation borrows its pool (`Allocation<'m>`, what
/// [`Mamba::allocate`](crate::Mamba::allocate) returns: no reference count
/// on the hot path) or, after [`Allocation::into_owned`], holds a counted
/// reference to the pool's state (`Allocation<'static>`): it may then
/// outlive the [`Mamba`](crate::Mamba), move to other threads and live in
/// long-lived structures; the pool's memory is given back when the last
/// such allocation is freed.
///
/// ```
/// use mamba::{Allocation, Config, Mamba, Policy, Tier};
/// let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
/// let owned: Allocation<'static> = mamba.allocate_owned(4096, 64, &Policy::require(Tier::Dram))?;
/// drop(mamba);
/// assert_eq!(owned.as_slice()?.len(), 4096); // the pool lives on
/// # Ok::<(), mamba::Error>(())
/// ```
pub struct Allocation<'m> {
    block: Block,
    /// Moved out by hand in `Drop` (on its cold path), so that the drop
    /// glue stays small enough to be inlined with the free.
    pool: ManuallyDrop<PoolLink<'m>>,
}

impl<'m> Allocation<'m> {
    #[inline(always)]
    pub(crate) fn new(block: Block, pool: &'m Pool) -> Self {
        Allocation {
            block,
            pool: ManuallyDrop::new(PoolLink::borrowed(pool)),
        }
    }

    /// Bytes requested.
    #[inline]
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Always false: zero-byte allocations are refused.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// Bytes of the underlying block (at least [`Allocation::len`]).
    pub fn block_len(&self) -> usize {
        self.block.block_len()
    }

    /// Start address (a device address for GPU memory).
    #[inline]
    pub fn addr(&self) -> usize {
        self.block.addr
    }

    pub(crate) fn block(&self) -> Block {
        self.block
    }

    /// The space the allocation came from.
    pub fn space(&self) -> &SpaceInfo {
        self.pool().info()
    }

    /// The space whose memory holds the data now: the origin space, or the
    /// target of [`Mamba::move_pages`](crate::Mamba::move_pages).
    pub fn resident_space(&self) -> &SpaceInfo {
        self.resident().unwrap_or(self.pool()).info()
    }

    /// Whether the allocation takes the hot path of `Drop` (a borrowed
    /// pool, pages at home).
    #[cfg(test)]
    pub(crate) fn is_plain(&self) -> bool {
        self.pool.plain().is_some()
    }

    /// The pool of the space holding the pages after a page move; `None`
    /// while they are at home.
    pub(crate) fn resident(&self) -> Option<&Pool> {
        self.pool.detached()?.resident.as_ref()
    }

    /// Takes the pool of the space holding the pages out (they are home
    /// again, or being freed).
    pub(crate) fn take_resident(&mut self) -> Option<Pool> {
        let detached = self.pool.detached_mut()?;
        let resident = detached.resident.take();
        if let PoolRef::Borrowed(pool) = detached.pool {
            // Nothing detached is left: back to the hot path of `Drop`.
            *self.pool = PoolLink::borrowed(pool);
        }
        resident
    }

    /// Records that the pages now live in the space of `resident`.
    pub(crate) fn set_resident(&mut self, resident: Pool) {
        if let Some(detached) = self.pool.detached_mut() {
            detached.resident = Some(resident);
        } else if let Some(pool) = self.pool.plain() {
            *self.pool = PoolLink::from_parts(PoolRef::Borrowed(pool), Some(resident));
        }
    }

    /// The tier the allocation came from.
    pub fn tier(&self) -> Tier {
        self.pool().info().tier
    }

    /// The pool it returns to.
    #[inline(always)]
    pub fn pool(&self) -> &Pool {
        self.pool.pool()
    }

    /// Whether the allocation holds a counted reference to its pool (see
    /// [`Allocation::into_owned`]).
    pub fn is_owned(&self) -> bool {
        matches!(
            self.pool.detached(),
            Some(Detached {
                pool: PoolRef::Owned(_),
                ..
            })
        )
    }

    /// The allocation with a counted reference to its pool instead of a
    /// borrow: it no longer borrows the [`Mamba`](crate::Mamba) and keeps
    /// the pool's state alive until it is freed. Costs one reference-count
    /// increment and a small box for the counted handle: an owned
    /// allocation freed on a thread leaves its box to the thread's next
    /// one, so only the first (or more than 64 at once) touch the heap.
    pub fn into_owned(self) -> Allocation<'static> {
        let (block, pool, resident) = self.into_parts();
        let pool = match pool {
            PoolRef::Borrowed(p) => p.handle(),
            PoolRef::Owned(p) => p,
        };
        Allocation {
            block,
            pool: ManuallyDrop::new(PoolLink::from_parts(PoolRef::Owned(pool), resident)),
        }
    }

    /// Takes the fields out without running `Drop`.
    fn into_parts(self) -> (Block, PoolRef<'m>, Option<Pool>) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used after this read, so the
        // link is moved out exactly once.
        let link = ManuallyDrop::into_inner(unsafe { std::ptr::read(&this.pool) });
        let (pool, resident) = link.into_parts();
        (this.block, pool, resident)
    }

    fn host_ptr(&self) -> Result<NonNull<u8>> {
        let info = self.pool().info();
        if !info.host_accessible {
            return Err(Error::NotHostAccessible(info.id));
        }
        // Built only on failure: this runs on every access.
        match NonNull::new(self.block.addr as *mut u8) {
            Some(ptr) => Ok(ptr),
            None => Err(Error::NotHostAccessible(info.id)),
        }
    }

    /// CPU pointer to the first byte.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn as_ptr(&self) -> Result<*mut u8> {
        self.host_ptr().map(NonNull::as_ptr)
    }

    /// The bytes, for host-accessible spaces.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn as_slice(&self) -> Result<&[u8]> {
        let ptr = self.host_ptr()?;
        // SAFETY: the block is ours for the lifetime of `self`, `len` bytes
        // long, CPU-addressable, and holds initialised bytes (type docs).
        Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.block.len) })
    }

    /// The bytes, mutably, for host-accessible spaces.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        let ptr = self.host_ptr()?;
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.block.len) })
    }

    /// Copies `bytes` into the allocation at `offset`: a memory copy for
    /// host memory, a disk write for SSD spill spaces, a copy to the device
    /// for GPU memory whose provider can reach it ([`BlockIo`](crate::provider::BlockIo)).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the end; [`Error::NotHostAccessible`]
    /// for device memory no provider copy reaches; the disk's or the
    /// device's error.
    pub fn write_bytes(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let end = self.checked_end(offset, bytes.len())?;
        match self.pool().block_io() {
            Some(io) => io.write_at(self.block.addr + offset, bytes),
            None => {
                self.as_mut_slice()?[offset..end].copy_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the allocation: a memory
    /// copy for host memory, a disk read for SSD spill spaces, a copy from
    /// the device for GPU memory.
    ///
    /// # Errors
    /// As [`Allocation::write_bytes`].
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let end = self.checked_end(offset, buf.len())?;
        match self.pool().block_io() {
            Some(io) => io.read_at(self.block.addr + offset, buf),
            None => {
                buf.copy_from_slice(&self.as_slice()?[offset..end]);
                Ok(())
            }
        }
    }

    /// `offset + len` when it lies within the allocation.
    fn checked_end(&self, offset: usize, len: usize) -> Result<usize> {
        offset
            .checked_add(len)
            .filter(|&end| end <= self.block.len)
            .ok_or_else(|| Error::OutOfBounds {
                requested: offset.saturating_add(len),
                available: self.block.len,
            })
    }

    /// A typed view: `len / size_of::<T>()` elements.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`], or [`Error::BadAlignment`] when the
    /// block is not aligned for `T`.
    pub fn as_typed_mut<T: bytemuck::Pod>(&mut self) -> Result<&mut [T]> {
        let size = std::mem::size_of::<T>();
        let bytes = self.as_mut_slice()?;
        let whole = bytes.len() - bytes.len() % size.max(1);
        bytemuck::try_cast_slice_mut(&mut bytes[..whole]).map_err(|_| Error::BadAlignment {
            align: std::mem::align_of::<T>(),
        })
    }

    /// Gives up ownership without freeing: the block must come back through
    /// [`Mamba::free_raw`](crate::Mamba::free_raw) (or it stays allocated
    /// until its pool goes away). Pages moved with
    /// [`Mamba::move_pages`](crate::Mamba::move_pages) return to the origin
    /// space's policy first. The memory stays valid while the pool does
    /// (while its [`Mamba`](crate::Mamba) lives).
    pub fn into_raw(self) -> RawAllocation {
        let (block, pool, resident) = self.into_parts();
        let pool = pool.get();
        if let Some(resident) = resident {
            crate::placement::return_moved_pages(pool, &resident, &block);
        }
        RawAllocation {
            space: pool.info().id,
            generation: pool.generation(),
            block,
        }
    }
}

impl std::fmt::Debug for Allocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocation")
            .field("addr", &format_args!("{:#x}", self.block.addr))
            .field("len", &self.block.len)
            .field("space", &self.space().name)
            .field("owned", &self.is_owned())
            .finish()
    }
}

/// Frees what the hot path of `Drop` does not: an allocation whose pages
/// were moved to another space, one holding a counted reference to its
/// pool, and any block the thread's cache does not take at once. It takes
/// the handle's parts by value, so that the caller's handle need not live
/// in memory for the hot path's sake.
#[cold]
#[inline(never)]
fn free_slow(block: Block, link: PoolLink<'_>) {
    let (pool, resident) = link.into_parts();
    if let Some(resident) = resident {
        crate::placement::return_moved_pages(pool.get(), &resident, &block);
    }
    // An owned handle goes after the free: it may be the pool's last one.
    pool.get().free_block(&block);
}

impl Drop for Allocation<'_> {
    /// The hot path (a borrowed pool, pages at home: an untagged link; a
    /// small block the thread's cache takes) is small enough to be inlined
    /// into the caller; everything else is one call out of line.
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(pool) = self.pool.plain() {
            if pool.free_cached(&self.block) {
                return;
            }
        }
        // SAFETY: `self` is being dropped and its link is not used again,
        // so the link is moved out exactly once.
        let link = unsafe { ManuallyDrop::take(&mut self.pool) };
        free_slow(self.block, link);
    }
}

/// An allocation whose ownership was given up with
/// [`Allocation::into_raw`] (for example to cross an FFI boundary).
///
/// It can be neither copied nor made up, so a block comes back through
/// [`Mamba::free_raw`](crate::Mamba::free_raw) at most once:
///
/// ```compile_fail
/// # use mamba::{Config, Mamba, Policy, Tier};
/// # let m = Mamba::discover(&Config { gpu: false, ..Config::default() }).unwrap();
/// let raw = m.allocate(64, 8, &Policy::require(Tier::Dram)).unwrap().into_raw();
/// m.free_raw(raw).unwrap();
/// m.free_raw(raw).unwrap(); // error: use of moved value
/// ```
///
/// ```compile_fail
/// # use mamba::{Config, Mamba, Policy, Tier};
/// # let m = Mamba::discover(&Config { gpu: false, ..Config::default() }).unwrap();
/// let raw = m.allocate(64, 8, &Policy::require(Tier::Dram)).unwrap().into_raw();
/// let twin = raw.clone(); // error: no `clone`
/// ```
///
/// ```compile_fail
/// # use mamba::{RawAllocation, SpaceId};
/// let forged = RawAllocation { space: SpaceId(0) }; // error: private fields
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct RawAllocation {
    space: SpaceId,
    /// The pool's generation: tells a block of a dropped pool from one of a
    /// later pool that reuses the space id and the addresses.
    generation: u64,
    block: Block,
}

impl RawAllocation {
    /// The space it belongs to.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// Start address (a device address for GPU memory).
    pub fn addr(&self) -> usize {
        self.block.addr
    }

    /// Bytes requested.
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Always false: zero-byte allocations are refused.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn block(&self) -> Block {
        self.block
    }
}
