//! The handle of movable data and its pin guard.

use super::engine::{lock, Entry, Tiering};
use crate::allocation::Allocation;
use crate::error::Result;
use crate::tier::{SpaceId, SpaceInfo, Tier};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, MutexGuard};

/// Data that mamba may move between tiers (see [`crate::tiering`]); made
/// by [`Mamba::movable`](crate::Mamba::movable) and freed on drop.
///
/// Every access goes through the handle and counts as heat. The address
/// of the data may change between accesses (when it is copied to or from
/// an SSD space); it does not while a [`Pinned`] guard lives. The handle
/// keeps its space's pool alive: it may outlive the allocator and move
/// between threads.
pub struct Movable {
    entry: Arc<Entry>,
    tiering: Arc<Tiering>,
}

impl std::fmt::Debug for Movable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Movable")
            .field("len", &self.entry.len)
            .field("space", &self.space_id())
            .finish()
    }
}

impl Movable {
    pub(super) fn new(entry: Arc<Entry>, tiering: Arc<Tiering>) -> Self {
        Movable { entry, tiering }
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.entry.len
    }

    /// Always false: zero-byte allocations are refused.
    pub fn is_empty(&self) -> bool {
        self.entry.len == 0
    }

    /// The space holding the data now (it may change at any time unless
    /// the data is pinned).
    pub fn space_id(&self) -> SpaceId {
        SpaceId(self.entry.space.load(Relaxed))
    }

    /// The space holding the data now, described.
    pub fn space(&self) -> SpaceInfo {
        self.block().resident_space().clone()
    }

    /// The tier holding the data now.
    pub fn tier(&self) -> Tier {
        self.block().resident_space().tier
    }

    /// The address of the data now (a file offset for spill spaces); it
    /// stays valid only while the data is pinned.
    pub fn addr(&self) -> usize {
        self.block().addr()
    }

    fn block(&self) -> MutexGuard<'_, Allocation<'static>> {
        lock(&self.entry.block)
    }

    /// Counts an access the handle did not see (the data was used through
    /// a pointer kept from an earlier pin, say): hot data moves up.
    pub fn touch(&self) {
        self.tiering.touch(&self.entry);
    }

    /// Copies `bytes` into the data at `offset`, wherever it is.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) past the end; the
    /// disk's error for spill spaces.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        let mut block = self.block();
        self.touch();
        block.write_bytes(offset, bytes)
    }

    /// Copies `buf.len()` bytes at `offset` out of the data, wherever it is.
    ///
    /// # Errors
    /// As [`Movable::write`].
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let block = self.block();
        self.touch();
        block.read_bytes(offset, buf)
    }

    /// Pins the data: it stays where it is, at the same address, until the
    /// guard is dropped. Data in a space the CPU cannot address is first
    /// moved to the fastest CPU-addressable space with room (a promotion);
    /// when none has, the coldest unpinned movable data there is demoted
    /// to make room.
    ///
    /// # Errors
    /// [`Error::OutOfCapacity`](crate::Error::OutOfCapacity) or
    /// [`Error::NotHostAccessible`](crate::Error::NotHostAccessible) when
    /// no CPU-addressable space has or can make room; the disk's error. The
    /// data is then where and as it was.
    pub fn pin(&mut self) -> Result<Pinned<'_>> {
        let mut block = self.block();
        self.touch();
        if !block.space().host_accessible {
            self.tiering.bring_to_host(&self.entry, &mut block)?;
        }
        self.entry.pinned.store(true, Relaxed);
        Ok(Pinned {
            block,
            entry: &self.entry,
        })
    }
}

/// Movable data held in place: the guard of [`Movable::pin`]. The data is
/// in CPU-addressable memory and neither moves nor changes address until
/// the guard is dropped (unpinning it).
pub struct Pinned<'a> {
    block: MutexGuard<'a, Allocation<'static>>,
    entry: &'a Entry,
}

impl std::fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned")
            .field("addr", &format_args!("{:#x}", self.block.addr()))
            .field("len", &self.block.len())
            .field("space", &self.block.resident_space().name)
            .finish()
    }
}

impl Pinned<'_> {
    /// The stable CPU pointer to the first byte.
    ///
    /// # Errors
    /// None in practice: pinned data is in CPU-addressable memory; as
    /// [`Allocation::as_ptr`].
    pub fn as_ptr(&self) -> Result<*mut u8> {
        self.block.as_ptr()
    }

    /// The bytes.
    ///
    /// # Errors
    /// As [`Pinned::as_ptr`].
    pub fn as_slice(&self) -> Result<&[u8]> {
        self.block.as_slice()
    }

    /// The bytes, mutably.
    ///
    /// # Errors
    /// As [`Pinned::as_ptr`].
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        self.block.as_mut_slice()
    }

    /// The space holding the data.
    pub fn space(&self) -> &SpaceInfo {
        self.block.resident_space()
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        self.entry.pinned.store(false, Relaxed);
    }
}
