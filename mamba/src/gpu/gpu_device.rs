//! [`GpuDevice`]: one device as the copy engine uses it: its runtime, a
//! copy stream, a staging ring, and the device-side layout conversion seam.

use super::buffer::{DeviceBuffer, PinnedBuffer};
use super::device::{DevicePtr, DeviceRuntime, EventId, StreamId};
use super::staging::{StagingConfig, StagingRing};
use crate::error::Result;
use mamba_transforms::Layout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

/// The seam where a GPU layout kernel converts an array on the device
/// instead of the host. The copy engine asks it first for every
/// layout-converting copy between two arrays of the same device; without
/// one (or when it declines) the conversion runs on the host, through a
/// pinned temporary.
///
/// The GPU kernels crate provides the implementation (loaded per device
/// ordinal), installed on every CUDA device of [`cuda_gpu`]; other devices
/// get one with [`GpuDevice::set_converter`].
pub trait DeviceConverter: Send + Sync + std::fmt::Debug {
    /// Enqueues on `stream` the conversion of the array at `src` (layout
    /// `src_layout`) into `dst` (layout `dst_layout`), both on the device
    /// this converter serves. `Ok(false)`: this pair of layouts is not
    /// handled here (nothing was enqueued).
    ///
    /// # Errors
    /// A failed launch.
    fn convert(
        &self,
        src_layout: &Layout,
        dst_layout: &Layout,
        src: DevicePtr,
        dst: DevicePtr,
        stream: StreamId,
    ) -> Result<bool>;
}

/// A device as the copy engine uses it. Creating one retains nothing: the
/// copy stream and the staging ring are made on first use.
#[derive(Debug)]
pub struct GpuDevice {
    runtime: Arc<dyn DeviceRuntime>,
    stream: OnceLock<StreamId>,
    staging_config: StagingConfig,
    staging: Mutex<Option<StagingRing>>,
    converter: RwLock<Option<Arc<dyn DeviceConverter>>>,
    device_conversions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process's CUDA devices, by ordinal (weak: dropped with their last
/// user).
static CUDA: Mutex<Vec<(u32, Weak<GpuDevice>)>> = Mutex::new(Vec::new());

/// The process-wide [`GpuDevice`] of CUDA device `ordinal`, shared by every
/// space of that device; its staging ring follows
/// [`StagingConfig::from_env_with`] (the process environment).
///
/// # Errors
/// [`Error::NoGpu`](crate::Error::NoGpu) without libcuda or without that
/// device; [`Error::Config`](crate::Error::Config) for bad staging
/// variables.
pub fn cuda_gpu(ordinal: u32) -> Result<Arc<GpuDevice>> {
    let mut table = lock(&CUDA);
    table.retain(|(_, w)| w.strong_count() > 0);
    if let Some(gpu) = table
        .iter()
        .find(|(o, _)| *o == ordinal)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(gpu);
    }
    let staging = StagingConfig::from_env_with(|k| std::env::var(k).ok())?;
    let gpu = GpuDevice::with_staging(Arc::new(super::CudaRuntime::new(ordinal)?), staging);
    gpu.set_converter(Some(Arc::new(super::kernels::KernelConverter::new(
        ordinal,
    ))));
    table.push((ordinal, Arc::downgrade(&gpu)));
    Ok(gpu)
}

impl GpuDevice {
    /// A device over `runtime` with the default staging ring.
    pub fn new(runtime: Arc<dyn DeviceRuntime>) -> Arc<Self> {
        Self::with_staging(runtime, StagingConfig::default())
    }

    /// A device over `runtime` whose staging ring has shape `staging`
    /// (checked when the ring is first needed).
    pub fn with_staging(runtime: Arc<dyn DeviceRuntime>, staging: StagingConfig) -> Arc<Self> {
        Arc::new(GpuDevice {
            runtime,
            stream: OnceLock::new(),
            staging_config: staging,
            staging: Mutex::new(None),
            converter: RwLock::new(None),
            device_conversions: AtomicU64::new(0),
        })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<dyn DeviceRuntime> {
        &self.runtime
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> u32 {
        self.runtime.ordinal()
    }

    /// The shape of the staging ring.
    pub fn staging_config(&self) -> StagingConfig {
        self.staging_config
    }

    /// The stream every copy of this device is ordered on (created on first
    /// call).
    ///
    /// # Errors
    /// The runtime's refusal to create it.
    pub fn stream(&self) -> Result<StreamId> {
        if let Some(&s) = self.stream.get() {
            return Ok(s);
        }
        let created = self.runtime.create_stream()?;
        let kept = *self.stream.get_or_init(|| created);
        if kept != created {
            // Another thread won the race.
            self.runtime.destroy_stream(created)?;
        }
        Ok(kept)
    }

    /// Installs (or removes) the device-side layout converter.
    pub fn set_converter(&self, converter: Option<Arc<dyn DeviceConverter>>) {
        *self
            .converter
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = converter;
    }

    /// Converts the array at `src` (layout `src_layout`) into `dst` (layout
    /// `dst_layout`), both on this device, with the installed
    /// [`DeviceConverter`], and waits for it. Whether it did: `false`
    /// (nothing enqueued) without a converter or when it declines this pair
    /// of layouts.
    pub(crate) fn convert_on_device(
        &self,
        src_layout: &Layout,
        dst_layout: &Layout,
        src: DevicePtr,
        dst: DevicePtr,
    ) -> Result<bool> {
        let converter = self
            .converter
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(converter) = converter else {
            return Ok(false);
        };
        if !converter.convert(src_layout, dst_layout, src, dst, self.stream()?)? {
            return Ok(false);
        }
        self.finish()?;
        self.device_conversions.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether a [`DeviceConverter`] is installed (it may still decline a
    /// pair of layouts).
    pub fn has_converter(&self) -> bool {
        self.converter
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// How many layout-converting copies ran on this device through its
    /// [`DeviceConverter`] (a GPU kernel on CUDA devices) instead of
    /// through the host.
    pub fn device_conversions(&self) -> u64 {
        self.device_conversions.load(Ordering::Relaxed)
    }

    /// `len` bytes of device memory, freed (stream-ordered) on drop.
    ///
    /// # Errors
    /// [`Error::ZeroSize`](crate::Error::ZeroSize); the runtime's refusal.
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<DeviceBuffer> {
        let ptr = self.runtime.alloc_async(len, self.stream()?)?;
        Ok(DeviceBuffer::new(Arc::clone(self), ptr, len))
    }

    /// `len` bytes of pinned host memory, freed on drop.
    ///
    /// # Errors
    /// [`Error::ZeroSize`](crate::Error::ZeroSize); the runtime's refusal.
    pub fn alloc_pinned(self: &Arc<Self>, len: usize) -> Result<PinnedBuffer> {
        let ptr = self.runtime.alloc_pinned(len)?;
        Ok(PinnedBuffer::new(Arc::clone(self), ptr, len))
    }

    /// An event recorded now on the copy stream: it completes when every
    /// copy enqueued so far has.
    pub(crate) fn record(&self) -> Result<EventId> {
        let event = self.runtime.create_event()?;
        if let Err(e) = self.runtime.record_event(event, self.stream()?) {
            let _ = self.runtime.destroy_event(event);
            return Err(e);
        }
        Ok(event)
    }

    /// Blocks until every copy enqueued so far has completed.
    pub(crate) fn finish(&self) -> Result<()> {
        let event = self.record()?;
        let waited = self.runtime.wait_event(event);
        let destroyed = self.runtime.destroy_event(event);
        waited.and(destroyed)
    }

    fn with_ring<R>(&self, f: impl FnOnce(&mut StagingRing, StreamId) -> Result<R>) -> Result<R> {
        let stream = self.stream()?;
        let mut guard = lock(&self.staging);
        let ring = match &mut *guard {
            Some(ring) => ring,
            empty => empty.insert(StagingRing::new(
                Arc::clone(&self.runtime),
                self.staging_config,
            )?),
        };
        f(ring, stream)
    }

    /// Enqueues a copy of `src` to `dst`: straight DMA from pinned memory,
    /// through the staging ring from pageable memory. `src` may be reused
    /// when this returns unless `pinned`; the copy completes with the copy
    /// stream.
    ///
    /// # Safety
    /// `src..src+len` is readable host memory; when `pinned`, it stays
    /// valid and unmodified until the copy stream has passed this copy.
    pub(crate) unsafe fn enqueue_upload(
        &self,
        dst: DevicePtr,
        src: *const u8,
        len: usize,
        pinned: bool,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if pinned {
            // SAFETY: forwarded contract.
            unsafe { self.runtime.copy_htod_async(dst, src, len, self.stream()?) }
        } else {
            // SAFETY: readable for `len` bytes (contract); the ring copies
            // it out before returning.
            let bytes = unsafe { std::slice::from_raw_parts(src, len) };
            self.with_ring(|ring, stream| ring.upload(dst, bytes, stream))
        }
    }

    /// Copies `src` to `dst` and waits for it (see
    /// [`GpuDevice::enqueue_upload`]).
    ///
    /// # Safety
    /// `src..src+len` is readable host memory for the call.
    pub(crate) unsafe fn upload(
        &self,
        dst: DevicePtr,
        src: *const u8,
        len: usize,
        pinned: bool,
    ) -> Result<()> {
        // SAFETY: the copy completes before returning.
        unsafe { self.enqueue_upload(dst, src, len, pinned)? };
        self.finish()
    }

    /// Copies `src` on the device into host memory `dst` and waits for it:
    /// straight DMA into pinned memory, through the staging ring into
    /// pageable memory.
    ///
    /// # Safety
    /// `dst..dst+len` is writable host memory, used by nothing else during
    /// the call.
    pub(crate) unsafe fn download(
        &self,
        dst: *mut u8,
        src: DevicePtr,
        len: usize,
        pinned: bool,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if pinned {
            // SAFETY: the copy completes (finish) before returning.
            unsafe {
                self.runtime
                    .copy_dtoh_async(dst, src, len, self.stream()?)?
            };
            self.finish()
        } else {
            // SAFETY: writable and unshared for the call (contract).
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst, len) };
            self.with_ring(|ring, stream| ring.download(bytes, src, stream))
        }
    }

    /// Enqueues a copy of `len` bytes from `src` on this device to `dst` on
    /// `to` (this device or a peer), ordered after everything enqueued on
    /// both devices so far.
    ///
    /// # Safety
    /// Both ranges are live device memory until the copy stream has passed
    /// the copy.
    pub(crate) unsafe fn enqueue_device_copy(
        &self,
        to: &GpuDevice,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let stream = self.stream()?;
        if std::ptr::eq(self, to) {
            // SAFETY: forwarded contract.
            return unsafe { self.runtime.copy_dtod_async(dst, src, len, stream) };
        }
        // The destination's pending work (e.g. its allocation) first.
        to.finish()?;
        // SAFETY: forwarded contract.
        unsafe {
            self.runtime
                .copy_peer_async(to.ordinal(), dst, src, len, stream)
        }
    }
}

impl Drop for GpuDevice {
    fn drop(&mut self) {
        // The ring waits for its slots' DMAs before freeing them.
        drop(lock(&self.staging).take());
        if let Some(&s) = self.stream.get() {
            if let Err(e) = self.runtime.destroy_stream(s) {
                tracing::error!(device = self.ordinal(), error = %e, "destroying the copy stream");
            }
        }
    }
}
