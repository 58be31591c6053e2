//! Owned data in a mamba space: [`Buffer`] (writable, one owner) and
//! [`Data`] (read-only, shared: what consumers get).
//!
//! A pool is long-lived and its data moves between threads, so a `Buffer`
//! holds an owned mamba [`Allocation`] (`Allocation<'static>`, which keeps
//! its mamba pool alive by reference count).

use crate::error::Result;
use mamba::{Allocation, Mamba, Policy, SpaceId, Tier};
use std::sync::Arc;

/// Alignment of CDO data: enough for every [`ElementType`](crate::ElementType)
/// and for SIMD loads.
pub const DATA_ALIGN: usize = 64;

/// The most bytes a withdrawn offer keeps for the next [`Cdo::write`] of
/// its name (host memory only): a small object's allocation costs more
/// than its copy, a large one's does not, and what a name keeps stays
/// allocated while the name is declared.
///
/// [`Cdo::write`]: crate::Cdo::write
pub const KEPT_DATA_MAX: usize = 1024;

/// The spaces a policy allows, in order: resolve once, allocate many times
/// with [`Buffer::allocate_in`].
///
/// # Errors
/// mamba's placement errors.
pub fn resolve(mamba: &Mamba, policy: &Policy) -> Result<Vec<SpaceId>> {
    Ok(mamba.placement(policy)?.spaces().map(|s| s.id).collect())
}

/// Writable data owned by one producer until it is offered.
pub struct Buffer {
    alloc: Allocation<'static>,
}

impl Buffer {
    /// Allocates `len` bytes (at least one) where `policy` allows.
    ///
    /// # Errors
    /// mamba's errors (zero size, capacity, unknown tier).
    pub fn allocate(mamba: &Arc<Mamba>, len: usize, policy: &Policy) -> Result<Self> {
        Ok(Self::wrap(mamba.allocate(len, DATA_ALIGN, policy)?))
    }

    /// Allocates `len` bytes from the first of `spaces` with room (a policy
    /// resolved once with [`resolve`]).
    ///
    /// # Errors
    /// The first space's capacity error when all are full; other mamba
    /// errors; [`mamba::Error::UnknownSpace`] when `spaces` is empty.
    pub fn allocate_in(mamba: &Arc<Mamba>, len: usize, spaces: &[SpaceId]) -> Result<Self> {
        let mut first_error = None;
        for &id in spaces {
            match mamba.pool(id)?.allocate(len, DATA_ALIGN) {
                Ok(a) => return Ok(Self::wrap(a)),
                Err(e @ mamba::Error::OutOfCapacity { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(first_error
            .unwrap_or(mamba::Error::UnknownSpace(SpaceId(u32::MAX)))
            .into())
    }

    fn wrap(alloc: Allocation<'_>) -> Self {
        Buffer {
            alloc: alloc.into_owned(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.alloc.len()
    }

    /// Always false: buffers hold at least one byte (empty CDOs have none).
    pub fn is_empty(&self) -> bool {
        self.alloc.is_empty()
    }

    /// Start address (a device address for GPU memory).
    pub fn addr(&self) -> usize {
        self.alloc.addr()
    }

    /// The space holding the data.
    pub fn space(&self) -> SpaceId {
        self.alloc.space().id
    }

    /// The tier holding the data.
    pub fn tier(&self) -> Tier {
        self.alloc.tier()
    }

    /// Whether the CPU can read the bytes.
    pub fn host_accessible(&self) -> bool {
        self.alloc.space().host_accessible
    }

    /// The bytes.
    ///
    /// # Errors
    /// [`mamba::Error::NotHostAccessible`] for device memory.
    pub fn as_slice(&self) -> Result<&[u8]> {
        Ok(self.alloc.as_slice()?)
    }

    /// The bytes, writable.
    ///
    /// # Errors
    /// [`mamba::Error::NotHostAccessible`] for device memory.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        Ok(self.alloc.as_mut_slice()?)
    }

    /// Copies `bytes` into the buffer at `offset`: a memory copy in host
    /// memory, a copy to the device (through its copy stream) in GPU
    /// memory, a disk write in spill spaces.
    ///
    /// # Errors
    /// [`mamba::Error::OutOfBounds`] past the end; the device's or the
    /// disk's errors; [`mamba::Error::NotHostAccessible`] for device memory
    /// without a runtime that reaches it.
    pub fn write_bytes(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        Ok(self.alloc.write_bytes(offset, bytes)?)
    }

    /// Copies `buf.len()` bytes at `offset` out of the buffer into `buf`,
    /// wherever the buffer lies (see [`Buffer::write_bytes`]).
    ///
    /// # Errors
    /// As [`Buffer::write_bytes`].
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        Ok(self.alloc.read_bytes(offset, buf)?)
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len())
            .field("space", &self.space())
            .finish()
    }
}

/// Read-only data shared between a producer's offer and its consumers;
/// cloning shares the same bytes. Empty for zero-length CDOs.
#[derive(Debug, Clone, Default)]
pub struct Data(Option<Arc<Buffer>>);

impl Data {
    /// No bytes: the data of a zero-length CDO (a synchronisation token).
    pub fn empty() -> Self {
        Data(None)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.len())
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Start address, `None` when empty. Two views of the same bytes have
    /// the same address (zero-copy hand-over).
    pub fn addr(&self) -> Option<usize> {
        self.0.as_ref().map(|b| b.addr())
    }

    /// The space holding the bytes, `None` when empty.
    pub fn space(&self) -> Option<SpaceId> {
        self.0.as_ref().map(|b| b.space())
    }

    /// Space and tier of the bytes, `None` when empty.
    pub fn place(&self) -> Option<(SpaceId, Tier)> {
        self.0.as_ref().map(|b| (b.space(), b.tier()))
    }

    /// The bytes (empty for an empty CDO).
    ///
    /// # Errors
    /// [`mamba::Error::NotHostAccessible`] for device memory.
    pub fn as_slice(&self) -> Result<&[u8]> {
        match &self.0 {
            None => Ok(&[]),
            Some(b) => b.as_slice(),
        }
    }

    /// Whether the CPU can read the bytes ([`Data::as_slice`] works);
    /// true when empty.
    pub fn host_accessible(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.host_accessible())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`, wherever the bytes
    /// lie: from the device for GPU memory, where [`Data::as_slice`] fails.
    ///
    /// # Errors
    /// [`mamba::Error::OutOfBounds`] past the end (any non-empty read of
    /// empty data); the device's errors.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        match &self.0 {
            Some(b) => b.read_bytes(offset, buf),
            None if offset == 0 && buf.is_empty() => Ok(()),
            None => Err(mamba::Error::OutOfBounds {
                requested: offset.saturating_add(buf.len()),
                available: 0,
            }
            .into()),
        }
    }

    /// The underlying buffer, `None` when empty.
    pub fn buffer(&self) -> Option<&Buffer> {
        self.0.as_deref()
    }

    /// The buffer, writable, when this view is its only one (no consumer,
    /// offer or other clone shares it): a producer's staging block can be
    /// refilled and offered again without a new allocation. `None` when
    /// empty or shared.
    pub fn get_mut(&mut self) -> Option<&mut Buffer> {
        self.0.as_mut().and_then(Arc::get_mut)
    }

    /// Whether a withdrawn offer may keep this data for the next write of
    /// its name: at most [`KEPT_DATA_MAX`] bytes of host memory. Consumers
    /// may still hold views of it; the write refills it only once they
    /// have let go.
    pub(crate) fn keepable(&self) -> bool {
        self.len() <= KEPT_DATA_MAX && self.host_accessible()
    }

    /// Whether both views share the same bytes.
    pub fn same_bytes(&self, other: &Data) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl From<Buffer> for Data {
    fn from(b: Buffer) -> Self {
        Data(Some(Arc::new(b)))
    }
}
