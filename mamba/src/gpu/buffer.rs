//! Owned device and pinned host buffers of a [`GpuDevice`], with checked
//! synchronous copies.

use super::device::DevicePtr;
use super::gpu_device::GpuDevice;
use crate::error::{Error, Result};
use std::ptr::NonNull;
use std::sync::Arc;

/// Checks that `len` bytes fit in a buffer of `available` bytes.
pub(crate) fn check_fits(len: usize, available: usize) -> Result<()> {
    if len > available {
        return Err(Error::OutOfBounds {
            requested: len,
            available,
        });
    }
    Ok(())
}

/// Device memory of one [`GpuDevice`], freed on drop (ordered after every
/// copy enqueued on the device's copy stream). Never dereferenceable: its
/// bytes are reached through copies only.
#[derive(Debug)]
pub struct DeviceBuffer {
    gpu: Arc<GpuDevice>,
    ptr: DevicePtr,
    len: usize,
}

impl DeviceBuffer {
    pub(crate) fn new(gpu: Arc<GpuDevice>, ptr: DevicePtr, len: usize) -> Self {
        DeviceBuffer { gpu, ptr, len }
    }

    /// The device address of the first byte.
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty buffers are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<GpuDevice> {
        &self.gpu
    }

    /// Copies pageable `src` into the first `src.len()` bytes (through the
    /// staging ring) and waits for it.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when `src` is longer than the buffer; the
    /// runtime's errors.
    pub fn copy_from_host(&mut self, src: &[u8]) -> Result<()> {
        check_fits(src.len(), self.len)?;
        // SAFETY: `src` is borrowed for the call.
        unsafe { self.gpu.upload(self.ptr, src.as_ptr(), src.len(), false) }
    }

    /// Copies the first `dst.len()` bytes into pageable `dst` (through the
    /// staging ring).
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_from_host`].
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<()> {
        check_fits(dst.len(), self.len)?;
        // SAFETY: `dst` is borrowed mutably for the call.
        unsafe {
            self.gpu
                .download(dst.as_mut_ptr(), self.ptr, dst.len(), false)
        }
    }

    /// Copies all of `src` into the first bytes with one DMA and waits for
    /// it.
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_from_host`].
    pub fn copy_from_pinned(&mut self, src: &PinnedBuffer) -> Result<()> {
        check_fits(src.len, self.len)?;
        // SAFETY: `src` is borrowed for the call, which waits for the DMA.
        unsafe { self.gpu.upload(self.ptr, src.ptr.as_ptr(), src.len, true) }
    }

    /// Fills all of `dst` from the first bytes with one DMA.
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_from_host`].
    pub fn copy_to_pinned(&self, dst: &mut PinnedBuffer) -> Result<()> {
        check_fits(dst.len, self.len)?;
        // SAFETY: `dst` is borrowed mutably for the call.
        unsafe { self.gpu.download(dst.ptr.as_ptr(), self.ptr, dst.len, true) }
    }

    /// Copies all of `src` (this device or a peer) into the first bytes and
    /// waits for it.
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_from_host`].
    pub fn copy_from_device(&mut self, src: &DeviceBuffer) -> Result<()> {
        check_fits(src.len, self.len)?;
        // SAFETY: both buffers are borrowed for the call, which waits for
        // the copy.
        unsafe {
            src.gpu
                .enqueue_device_copy(&self.gpu, self.ptr, src.ptr, src.len)?;
        }
        src.gpu.finish()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let freed = self.gpu.stream().and_then(|s| {
            // SAFETY: allocated by GpuDevice::alloc on this stream, freed
            // once; every copy using it was enqueued on the same stream
            // before.
            unsafe { self.gpu.runtime().free_async(self.ptr, s) }
        });
        if let Err(e) = freed {
            tracing::error!(error = %e, "freeing a device buffer");
        }
    }
}

/// Page-locked host memory of one [`GpuDevice`]: host bytes that DMA reads
/// and writes directly. Freed on drop.
#[derive(Debug)]
pub struct PinnedBuffer {
    gpu: Arc<GpuDevice>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: owned host memory, reached only through `&self`/`&mut self`.
unsafe impl Send for PinnedBuffer {}
// SAFETY: as above.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    pub(crate) fn new(gpu: Arc<GpuDevice>, ptr: NonNull<u8>, len: usize) -> Self {
        PinnedBuffer { gpu, ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty buffers are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes of host memory owned by `self`; no DMA uses
        // them outside a call borrowing `self` mutably or waiting for it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by GpuDevice::alloc_pinned, freed once; every
        // copy using it has completed (the copies wait).
        if let Err(e) = unsafe { self.gpu.runtime().free_pinned(self.ptr) } {
            tracing::error!(error = %e, "freeing a pinned buffer");
        }
    }
}
