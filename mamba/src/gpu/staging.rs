//! The pinned staging ring: pageable host memory reaches the device
//! through a few pinned slots, double-buffered so that the CPU fills (or
//! empties) one slot while the DMA engine moves another.
//!
//! Each slot has an event recorded after the DMA that uses it; the ring
//! waits on that event before the CPU touches the slot again, so a slot is
//! never overwritten (or read) while its DMA may still run.

use super::device::{DevicePtr, DeviceRuntime, EventId, StreamId};
use crate::error::{Error, Result};
use mamba_transforms::{CopyPlan, ExecOptions, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

/// Shape of a staging ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagingConfig {
    /// Number of pinned slots (at least 1; 2 double-buffers).
    pub slots: usize,
    /// Bytes per slot: the chunk size of staged copies.
    pub slot_size: usize,
}

impl Default for StagingConfig {
    /// Two slots of 16 MiB: large enough that each DMA runs near full
    /// bandwidth, small enough that filling the first slot (the part that
    /// does not overlap) is short.
    fn default() -> Self {
        StagingConfig {
            slots: 2,
            slot_size: 16 << 20,
        }
    }
}

impl StagingConfig {
    /// The defaults with the overrides of `MAMBA_STAGING_SLOTS` (a count)
    /// and `MAMBA_STAGING_SLOT_SIZE` (a size: `8MiB`, `32M`, ...) read
    /// through `var` (the process environment for CUDA devices).
    ///
    /// # Errors
    /// [`Error::Config`] for a value that does not parse or is zero.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut c = StagingConfig::default();
        if let Some(v) = var("MAMBA_STAGING_SLOTS") {
            c.slots = v.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::Config(format!(
                    "MAMBA_STAGING_SLOTS={v:?}: expected a count above 0"
                ))
            })?;
        }
        if let Some(v) = var("MAMBA_STAGING_SLOT_SIZE") {
            let size: crate::ByteSize = v.parse()?;
            if size.0 == 0 {
                return Err(Error::Config(
                    "MAMBA_STAGING_SLOT_SIZE must not be 0".into(),
                ));
            }
            c.slot_size = size.0;
        }
        Ok(c)
    }
}

#[derive(Debug)]
struct Slot {
    ptr: NonNull<u8>,
    event: EventId,
}

/// Pinned slots of one device and the events that guard them.
#[derive(Debug)]
pub struct StagingRing {
    runtime: Arc<dyn DeviceRuntime>,
    config: StagingConfig,
    slots: Vec<Slot>,
    /// Next slot to use.
    next: usize,
    opts: ExecOptions,
}

// SAFETY: the slots are pinned host memory owned by the ring; it is only
// reached through `&mut self`.
unsafe impl Send for StagingRing {}
// SAFETY: as above; `&self` methods do not touch slot memory.
unsafe impl Sync for StagingRing {}

/// Copies `src` into `dst` (same length) with the transforms kernels:
/// several threads and non-temporal stores for large chunks.
fn host_copy(src: &[u8], dst: &mut [u8], opts: &ExecOptions) -> Result<()> {
    if src.is_empty() {
        return Ok(());
    }
    let layout = Layout::row_major(1, &[src.len()])?;
    CopyPlan::new(&layout, &layout)?.execute_with(src, dst, opts)?;
    Ok(())
}

impl StagingRing {
    /// A ring with `config.slots` pinned slots of `config.slot_size` bytes
    /// from the runtime's pinned allocator.
    ///
    /// # Errors
    /// [`Error::Config`] for zero slots or a zero slot size; allocation
    /// errors (everything allocated so far is freed).
    pub fn new(runtime: Arc<dyn DeviceRuntime>, config: StagingConfig) -> Result<Self> {
        if config.slots == 0 || config.slot_size == 0 {
            return Err(Error::Config(format!(
                "a staging ring needs slots and a slot size: {config:?}"
            )));
        }
        let mut ring = StagingRing {
            runtime,
            config,
            slots: Vec::with_capacity(config.slots),
            next: 0,
            opts: ExecOptions::default(),
        };
        for _ in 0..config.slots {
            let ptr = ring.runtime.alloc_pinned(config.slot_size)?;
            let event = match ring.runtime.create_event() {
                Ok(e) => e,
                Err(e) => {
                    // SAFETY: just allocated, never used.
                    let _ = unsafe { ring.runtime.free_pinned(ptr) };
                    return Err(e);
                }
            };
            ring.slots.push(Slot { ptr, event });
        }
        Ok(ring)
    }

    /// The ring's shape.
    pub fn config(&self) -> StagingConfig {
        self.config
    }

    /// The runtime whose pinned memory the slots are.
    pub fn runtime(&self) -> &Arc<dyn DeviceRuntime> {
        &self.runtime
    }

    /// Waits until the slot's last DMA finished; its memory, `len` bytes.
    fn claim(&mut self, len: usize) -> Result<(usize, &mut [u8])> {
        let index = self.next;
        self.next = (self.next + 1) % self.slots.len();
        let slot = &self.slots[index];
        self.runtime.wait_event(slot.event)?;
        // SAFETY: the slot is `slot_size >= len` bytes of pinned memory
        // owned by the ring, its last DMA has completed, and `&mut self`
        // makes this the only access.
        let bytes = unsafe { std::slice::from_raw_parts_mut(slot.ptr.as_ptr(), len) };
        Ok((index, bytes))
    }

    /// Copies pageable `src` to `dst` on `stream`, chunk by chunk through
    /// the slots. Returns once every chunk is enqueued: `src` may be reused
    /// at once; the device bytes are complete once [`StagingRing::wait_idle`]
    /// returns (or an event recorded on `stream` afterwards completes).
    ///
    /// # Errors
    /// The runtime's errors (then no more chunks are enqueued).
    pub fn upload(&mut self, dst: DevicePtr, src: &[u8], stream: StreamId) -> Result<()> {
        let size = self.config.slot_size;
        for (i, chunk) in src.chunks(size).enumerate() {
            let opts = self.opts;
            let (index, slot) = self.claim(chunk.len())?;
            host_copy(chunk, slot, &opts)?;
            let slot = &self.slots[index];
            // SAFETY: the slot holds the chunk and is not touched again
            // before its event, recorded right after, has completed.
            unsafe {
                self.runtime.copy_htod_async(
                    dst.offset(i * size)?,
                    slot.ptr.as_ptr(),
                    chunk.len(),
                    stream,
                )?;
            }
            self.runtime.record_event(slot.event, stream)?;
        }
        Ok(())
    }

    /// Copies `src` on the device into pageable `dst`, chunk by chunk
    /// through the slots (up to one DMA per slot ahead of the CPU). Returns
    /// once every byte is in `dst`.
    ///
    /// # Errors
    /// The runtime's errors.
    pub fn download(&mut self, dst: &mut [u8], src: DevicePtr, stream: StreamId) -> Result<()> {
        let size = self.config.slot_size;
        let total = dst.len();
        let chunks = total.div_ceil(size);
        let ahead = self.slots.len().min(chunks);
        // The slot of chunk `i` is `(first + i) % slots`: enqueue the first
        // `ahead` DMAs, then, as each chunk is emptied, the one `ahead`
        // further on into the same slot.
        let first = self.next;
        let slot_of = |i: usize| (first + i) % self.slots.len();
        for i in 0..ahead {
            self.enqueue_download(slot_of(i), src, i, total, stream)?;
        }
        for (i, out) in dst.chunks_mut(size).enumerate() {
            let index = slot_of(i);
            let slot = &self.slots[index];
            self.runtime.wait_event(slot.event)?;
            // SAFETY: the slot's DMA of chunk `i` has completed (its event),
            // it is at least `out.len()` bytes, and `&mut self` makes this
            // the only access.
            let bytes = unsafe { std::slice::from_raw_parts(slot.ptr.as_ptr(), out.len()) };
            host_copy(bytes, out, &self.opts)?;
            if i + ahead < chunks {
                self.enqueue_download(index, src, i + ahead, total, stream)?;
            }
        }
        self.next = slot_of(chunks);
        Ok(())
    }

    /// Enqueues the DMA of chunk `chunk` of a download of `total` bytes
    /// into slot `index`, and records the slot's event after it.
    fn enqueue_download(
        &self,
        index: usize,
        src: DevicePtr,
        chunk: usize,
        total: usize,
        stream: StreamId,
    ) -> Result<()> {
        let size = self.config.slot_size;
        let len = size.min(total - chunk * size);
        let slot = &self.slots[index];
        // SAFETY: the slot's previous contents were consumed (or it is
        // fresh), the CPU does not touch it again before its event, and it
        // is `size >= len` bytes long.
        unsafe {
            self.runtime.copy_dtoh_async(
                slot.ptr.as_ptr(),
                src.offset(chunk * size)?,
                len,
                stream,
            )?;
        }
        self.runtime.record_event(slot.event, stream)
    }

    /// Waits until no DMA uses a slot.
    ///
    /// # Errors
    /// The runtime's errors.
    pub fn wait_idle(&self) -> Result<()> {
        self.slots
            .iter()
            .try_for_each(|s| self.runtime.wait_event(s.event))
    }
}

impl Drop for StagingRing {
    fn drop(&mut self) {
        for slot in self.slots.drain(..) {
            // A slot must not be freed under a running DMA.
            let waited = self.runtime.wait_event(slot.event);
            if let Err(e) = &waited {
                tracing::error!(error = %e, "waiting for a staging slot; leaking it");
                continue;
            }
            let _ = self.runtime.destroy_event(slot.event);
            // SAFETY: allocated by `new`, freed once, no DMA uses it.
            if let Err(e) = unsafe { self.runtime.free_pinned(slot.ptr) } {
                tracing::error!(error = %e, "freeing a staging slot");
            }
        }
    }
}

#[cfg(test)]
#[path = "staging_tests.rs"]
mod tests;
