//! The device abstraction of the data plane: what copies, staging and
//! device arrays need from a GPU runtime, and nothing more.

use crate::error::Result;
use std::fmt::Debug;
use std::ptr::NonNull;

/// An address in a device's memory. It is a number, never a reference: the
/// CPU cannot load or store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevicePtr(pub u64);

impl DevicePtr {
    /// The address `bytes` further on.
    ///
    /// # Errors
    /// [`Error::SizeTooLarge`](crate::Error::SizeTooLarge) when the sum
    /// overflows.
    pub fn offset(self, bytes: usize) -> Result<DevicePtr> {
        u64::try_from(bytes)
            .ok()
            .and_then(|b| self.0.checked_add(b))
            .map(DevicePtr)
            .ok_or(crate::Error::SizeTooLarge { size: bytes })
    }
}

/// An opaque handle of a stream created by a [`DeviceRuntime`]. For the
/// CUDA runtime, [`StreamId::raw`] is the `CUstream` (what GPU kernels are
/// launched on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub(crate) u64);

impl StreamId {
    /// The runtime's own handle: the `CUstream` for CUDA, an index for the
    /// test double.
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// An opaque handle of an event created by a [`DeviceRuntime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub(crate) u64);

/// What the data plane needs from one GPU: streams, stream-ordered copies
/// and allocation, events, pinned host memory.
///
/// Operations on a stream run in the order they were enqueued; operations
/// on different streams are unordered unless a stream waits on an event
/// recorded on another. Every method checks its handles and sizes and
/// returns [`Error::Gpu`](crate::Error::Gpu) for bad ones; without a driver
/// every method returns [`Error::NoGpu`](crate::Error::NoGpu).
///
/// Implementations: [`CudaRuntime`](super::CudaRuntime) (the CUDA driver)
/// and [`SimDevice`](super::SimDevice) (an in-memory test double).
pub trait DeviceRuntime: Send + Sync + Debug {
    /// The device ordinal.
    fn ordinal(&self) -> u32;

    /// A new stream, unordered with respect to the legacy default stream.
    ///
    /// # Errors
    /// The driver's refusal.
    fn create_stream(&self) -> Result<StreamId>;

    /// Destroys a stream once its pending work has finished.
    ///
    /// # Errors
    /// An unknown stream; the driver's refusal.
    fn destroy_stream(&self, stream: StreamId) -> Result<()>;

    /// Enqueues a copy of `len` bytes from host memory `src` to `dst`.
    ///
    /// # Safety
    /// `src..src+len` must be readable host memory that stays valid and
    /// unmodified until the copy has completed (an event recorded after it
    /// completed, or the stream was synchronized).
    unsafe fn copy_htod_async(
        &self,
        dst: DevicePtr,
        src: *const u8,
        len: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Enqueues a copy of `len` bytes from `src` to host memory `dst`.
    ///
    /// # Safety
    /// `dst..dst+len` must be writable host memory that stays valid, and is
    /// neither read nor written by anyone else, until the copy has
    /// completed.
    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Enqueues a copy of `len` bytes between two ranges of this device.
    ///
    /// # Safety
    /// Both ranges must be live allocations of this device until the copy
    /// has completed.
    unsafe fn copy_dtod_async(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Enqueues a copy of `len` bytes from `src` on this device to `dst` on
    /// device `dst_ordinal` (same runtime), ordered on this device's
    /// `stream`.
    ///
    /// # Safety
    /// As [`DeviceRuntime::copy_dtod_async`], each range on its device.
    unsafe fn copy_peer_async(
        &self,
        dst_ordinal: u32,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// A new event.
    ///
    /// # Errors
    /// The driver's refusal.
    fn create_event(&self) -> Result<EventId>;

    /// Destroys an event.
    ///
    /// # Errors
    /// An unknown event; the driver's refusal.
    fn destroy_event(&self, event: EventId) -> Result<()>;

    /// Records `event` at the current end of `stream`: it completes once
    /// everything enqueued on `stream` before it has.
    ///
    /// # Errors
    /// Unknown handles; the driver's refusal.
    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()>;

    /// Whether the work before the last record of `event` has completed
    /// (true for an event never recorded), without blocking.
    ///
    /// # Errors
    /// An unknown event; an error of the work it guards.
    fn query_event(&self, event: EventId) -> Result<bool>;

    /// Blocks the calling thread until `event` has completed.
    ///
    /// # Errors
    /// As [`DeviceRuntime::query_event`].
    fn wait_event(&self, event: EventId) -> Result<()>;

    /// Makes work enqueued on `stream` from now on wait until `event` (as
    /// last recorded) has completed, without blocking the host.
    ///
    /// # Errors
    /// Unknown handles; the driver's refusal.
    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()>;

    /// Allocates `len` bytes of device memory, usable by work enqueued on
    /// `stream` after this call (and by other streams once ordered after
    /// it).
    ///
    /// # Errors
    /// [`Error::Exhausted`](crate::Error::Exhausted) when the device is
    /// full; the driver's refusal.
    fn alloc_async(&self, len: usize, stream: StreamId) -> Result<DevicePtr>;

    /// Frees device memory once the work enqueued on `stream` before this
    /// call has completed.
    ///
    /// # Safety
    /// `ptr` must come from [`DeviceRuntime::alloc_async`] of this runtime,
    /// be freed once, and no work ordered after this call may use it.
    unsafe fn free_async(&self, ptr: DevicePtr, stream: StreamId) -> Result<()>;

    /// Allocates `len` bytes of page-locked host memory, usable by every
    /// device of the runtime.
    ///
    /// # Errors
    /// [`Error::Exhausted`](crate::Error::Exhausted); the driver's refusal.
    fn alloc_pinned(&self, len: usize) -> Result<NonNull<u8>>;

    /// Frees page-locked host memory.
    ///
    /// # Safety
    /// `ptr` must come from [`DeviceRuntime::alloc_pinned`] of this runtime,
    /// be freed once, and no pending or later work may use it.
    unsafe fn free_pinned(&self, ptr: NonNull<u8>) -> Result<()>;

    /// Blocks until everything enqueued on `stream` has completed.
    ///
    /// # Errors
    /// An unknown stream; an error of the work.
    fn synchronize_stream(&self, stream: StreamId) -> Result<()>;

    /// Blocks until everything enqueued on every stream of the device has
    /// completed.
    ///
    /// # Errors
    /// An error of the work.
    fn synchronize(&self) -> Result<()>;
}
