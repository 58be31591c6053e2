//! The owning handle of an allocation.

use crate::error::{Error, Result};
use crate::pool::{Block, Pool};
use crate::tier::{SpaceInfo, Tier};
use std::ptr::NonNull;

/// Memory obtained from a [`Pool`]; freed back to it on drop.
///
/// It tells where it landed ([`Allocation::space`]) — the answer users of
/// memkind and RMM cannot get. The memory of host-accessible spaces is
/// always initialised bytes (pools hand out memory that came zero-filled
/// from `mmap` or a file, and only ever held bytes written through safe
/// code), so byte slices of it are safe to read.
pub struct Allocation<'m> {
    block: Block,
    pool: &'m Pool,
    /// Space whose NUMA node now holds the pages, after a page move.
    pub(crate) resident: Option<&'m Pool>,
}

// SAFETY: an Allocation owns its block exclusively, like a Box<[u8]>; the
// pool it refers to is Sync.
unsafe impl Send for Allocation<'_> {}
// SAFETY: shared access only reads (slices require &mut to write).
unsafe impl Sync for Allocation<'_> {}

impl<'m> Allocation<'m> {
    pub(crate) fn new(block: Block, pool: &'m Pool) -> Self {
        Allocation {
            block,
            pool,
            resident: None,
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
        self.block.block_len
    }

    /// Start address (a device address for GPU memory).
    #[inline]
    pub fn addr(&self) -> usize {
        self.block.addr
    }

    /// The space the allocation came from.
    pub fn space(&self) -> &'m SpaceInfo {
        self.pool.info()
    }

    /// The space whose memory holds the data now: the origin space, or the
    /// target of [`Mamba::move_pages`](crate::Mamba::move_pages).
    pub fn resident_space(&self) -> &'m SpaceInfo {
        self.resident.unwrap_or(self.pool).info()
    }

    /// The tier the allocation came from.
    pub fn tier(&self) -> Tier {
        self.pool.info().tier
    }

    /// The pool it returns to.
    pub fn pool(&self) -> &'m Pool {
        self.pool
    }

    fn host_ptr(&self) -> Result<NonNull<u8>> {
        if !self.pool.info().host_accessible {
            return Err(Error::NotHostAccessible(self.pool.info().id));
        }
        NonNull::new(self.block.addr as *mut u8)
            .ok_or(Error::NotHostAccessible(self.pool.info().id))
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
    /// [`Mamba::free_raw`](crate::Mamba::free_raw).
    pub fn into_raw(self) -> RawAllocation {
        let raw = RawAllocation {
            space: self.pool.info().id,
            block: self.block,
        };
        std::mem::forget(self);
        raw
    }
}

impl std::fmt::Debug for Allocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocation")
            .field("addr", &format_args!("{:#x}", self.block.addr))
            .field("len", &self.block.len)
            .field("space", &self.pool.info().name)
            .finish()
    }
}

impl Drop for Allocation<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(resident) = self.resident.take() {
            crate::placement::return_moved_pages(self.pool, resident, &self.block);
        }
        self.pool.free_block(self.block);
    }
}

/// An allocation whose ownership was given up with
/// [`Allocation::into_raw`] (for example to cross an FFI boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAllocation {
    /// The space it belongs to.
    pub space: crate::SpaceId,
    /// The block.
    pub block: Block,
}
