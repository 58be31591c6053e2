//! [`DeviceRuntime`] over the CUDA driver API (cudarc's `result`/`sys`
//! levels, libcuda loaded at run time), and the context hygiene shared with
//! [`CudaProvider`](crate::provider::CudaProvider).
//!
//! Contexts: a device's primary context is retained lazily, on the first
//! call that needs it, once per device per process (shared by every user in
//! the process through [`LazyContext`], released when the last one drops).
//! Every call pushes it onto the calling thread's context stack and pops it
//! afterwards ([`ContextGuard`]), so the caller's current context is never
//! overwritten.

use super::device::{DevicePtr, DeviceRuntime, EventId, StreamId};
use crate::error::{Error, Result};
use cudarc::driver::{result, sys};
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// Whether libcuda can be loaded. cudarc panics on first use when it
/// cannot, so every entry point checks this first.
pub(crate) fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// The error of every entry point when libcuda is absent.
pub(crate) fn no_driver() -> Error {
    Error::NoGpu("the CUDA driver library (libcuda) is not installed".into())
}

/// Checks that the driver is present and initialized.
pub(crate) fn init_driver() -> Result<()> {
    if !driver_present() {
        return Err(no_driver());
    }
    result::init().map_err(gpu_err("cuInit"))
}

/// Maps a driver error of `call` to [`Error::Exhausted`] (out of memory) or
/// [`Error::Gpu`].
pub(crate) fn gpu_err(call: &'static str) -> impl Fn(result::DriverError) -> Error {
    move |e| match e.0 {
        sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::Exhausted {
            call,
            reason: format!("{e:?}"),
        },
        _ => Error::Gpu {
            call,
            message: format!("{e:?}"),
        },
    }
}

/// A retained primary context of one device, released on drop.
#[derive(Debug)]
pub(crate) struct PrimaryContext {
    device: sys::CUdevice,
    ordinal: u32,
    context: sys::CUcontext,
}

// SAFETY: a context handle may be pushed on any thread; the struct holds no
// thread-affine state.
unsafe impl Send for PrimaryContext {}
// SAFETY: as above; it is never mutated after creation.
unsafe impl Sync for PrimaryContext {}

impl Drop for PrimaryContext {
    fn drop(&mut self) {
        // SAFETY: balances the retain of `PrimaryContext::retain`.
        if let Err(e) = unsafe { result::primary_ctx::release(self.device) } {
            tracing::error!(device = self.ordinal, error = ?e, "releasing a primary context");
        }
    }
}

/// The process's retained primary contexts, by ordinal. Weak: the last
/// user's drop releases the context.
static PRIMARY: Mutex<Vec<(u32, Weak<PrimaryContext>)>> = Mutex::new(Vec::new());

impl PrimaryContext {
    /// The primary context of device `ordinal`, retained now unless some
    /// user in the process already holds it.
    fn shared(ordinal: u32) -> Result<Arc<PrimaryContext>> {
        init_driver()?;
        let mut table = PRIMARY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table.retain(|(_, w)| w.strong_count() > 0);
        if let Some(ctx) = table
            .iter()
            .find(|(o, _)| *o == ordinal)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(ctx);
        }
        let index =
            i32::try_from(ordinal).map_err(|_| Error::NoGpu(format!("no device {ordinal}")))?;
        let device = result::device::get(index).map_err(gpu_err("cuDeviceGet"))?;
        // SAFETY: `device` comes from cuDeviceGet; released in Drop.
        let context = unsafe { result::primary_ctx::retain(device) }
            .map_err(gpu_err("cuDevicePrimaryCtxRetain"))?;
        let ctx = Arc::new(PrimaryContext {
            device,
            ordinal,
            context,
        });
        table.push((ordinal, Arc::downgrade(&ctx)));
        Ok(ctx)
    }
}

/// A device's primary context, retained on first use.
#[derive(Debug)]
pub(crate) struct LazyContext {
    ordinal: u32,
    context: OnceLock<Arc<PrimaryContext>>,
}

impl LazyContext {
    /// Nothing retained yet.
    pub(crate) fn new(ordinal: u32) -> Self {
        LazyContext {
            ordinal,
            context: OnceLock::new(),
        }
    }

    /// Whether the context was retained (by a first use).
    #[cfg(test)]
    pub(crate) fn is_retained(&self) -> bool {
        self.context.get().is_some()
    }

    /// The retained context (retaining it on first call).
    fn get(&self) -> Result<&Arc<PrimaryContext>> {
        if let Some(ctx) = self.context.get() {
            return Ok(ctx);
        }
        let ctx = PrimaryContext::shared(self.ordinal)?;
        // Another thread may have won the race: both hold the same shared
        // context, one of the two Arcs is dropped.
        Ok(self.context.get_or_init(|| ctx))
    }

    /// The raw context handle, for calls that name a context.
    pub(crate) fn raw(&self) -> Result<sys::CUcontext> {
        Ok(self.get()?.context)
    }

    /// Pushes the context on the calling thread until the guard drops.
    pub(crate) fn enter(&self) -> Result<ContextGuard<'_>> {
        let ctx = self.get()?;
        // SAFETY: the context is retained for as long as `self` lives, which
        // outlives the guard's borrow.
        unsafe { sys::cuCtxPushCurrent_v2(ctx.context) }
            .result()
            .map_err(gpu_err("cuCtxPushCurrent"))?;
        Ok(ContextGuard {
            ordinal: self.ordinal,
            _context: PhantomData,
        })
    }
}

/// Pops the context pushed by [`LazyContext::enter`] on drop, restoring the
/// caller's current context. Bound to its thread.
#[derive(Debug)]
pub(crate) struct ContextGuard<'a> {
    ordinal: u32,
    /// Borrows the context (it outlives the guard) and is not `Send` (the
    /// pop must happen on the pushing thread).
    _context: PhantomData<(&'a PrimaryContext, *const ())>,
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        let mut popped = std::ptr::null_mut();
        // SAFETY: balances the push of `enter` on this thread.
        if let Err(e) = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) }.result() {
            tracing::error!(device = self.ordinal, error = ?e, "popping a CUDA context");
        }
    }
}

/// The PCI bus id of a device ("0000:00:06.0").
pub(crate) fn pci_bus_id(device: sys::CUdevice) -> Result<String> {
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: the buffer is writable for its length; the driver writes a
    // NUL-terminated string.
    unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, device) }
        .result()
        .map_err(gpu_err("cuDeviceGetPCIBusId"))?;
    // SAFETY: NUL-terminated within the buffer (the driver truncates).
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(id.to_string_lossy().into_owned())
}

/// A CUDA device as a [`DeviceRuntime`]: streams, events, copies and
/// stream-ordered allocation in the device's primary context.
///
/// Creating one retains nothing; the primary context is retained on the
/// first call that needs it. Streams and events are tracked, so that a
/// handle from elsewhere is refused instead of reaching the driver.
#[derive(Debug)]
pub struct CudaRuntime {
    ordinal: u32,
    device: sys::CUdevice,
    context: LazyContext,
    peers: Mutex<HashMap<u32, LazyContext>>,
    streams: Mutex<HashSet<u64>>,
    events: Mutex<HashSet<u64>>,
    memory_pools: OnceLock<bool>,
}

// SAFETY: the raw handles inside are plain identifiers usable from any
// thread once the context is pushed, which every call does first; the
// tables are behind mutexes.
unsafe impl Send for CudaRuntime {}
// SAFETY: as above.
unsafe impl Sync for CudaRuntime {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bad_handle(call: &'static str, what: &str, raw: u64) -> Error {
    Error::Gpu {
        call,
        message: format!("{what} {raw:#x} was not created by this runtime"),
    }
}

impl CudaRuntime {
    /// The runtime of device `ordinal`.
    ///
    /// # Errors
    /// [`Error::NoGpu`] without libcuda or without that device.
    pub fn new(ordinal: u32) -> Result<Self> {
        init_driver()?;
        let count = result::device::get_count().map_err(gpu_err("cuDeviceGetCount"))?;
        if i64::from(ordinal) >= i64::from(count) {
            return Err(Error::NoGpu(format!(
                "no CUDA device {ordinal} ({count} found)"
            )));
        }
        let device = result::device::get(ordinal as i32).map_err(gpu_err("cuDeviceGet"))?;
        Ok(CudaRuntime {
            ordinal,
            device,
            context: LazyContext::new(ordinal),
            peers: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashSet::new()),
            events: Mutex::new(HashSet::new()),
            memory_pools: OnceLock::new(),
        })
    }

    /// The PCI bus id of the device ("0000:00:06.0").
    ///
    /// # Errors
    /// The driver's refusal.
    pub fn pci_bus_id(&self) -> Result<String> {
        pci_bus_id(self.device)
    }

    fn stream(&self, call: &'static str, stream: StreamId) -> Result<sys::CUstream> {
        if lock(&self.streams).contains(&stream.0) {
            Ok(stream.0 as sys::CUstream)
        } else {
            Err(bad_handle(call, "stream", stream.0))
        }
    }

    fn event(&self, call: &'static str, event: EventId) -> Result<sys::CUevent> {
        if lock(&self.events).contains(&event.0) {
            Ok(event.0 as sys::CUevent)
        } else {
            Err(bad_handle(call, "event", event.0))
        }
    }

    /// Whether the device has stream-ordered memory pools
    /// (`cuMemAllocAsync`).
    fn has_memory_pools(&self) -> bool {
        *self.memory_pools.get_or_init(|| {
            // SAFETY: `device` comes from cuDeviceGet.
            unsafe {
                result::device::get_attribute(
                    self.device,
                    sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
                )
            }
            .is_ok_and(|v| v != 0)
        })
    }

    fn peer_context(&self, ordinal: u32) -> Result<sys::CUcontext> {
        if ordinal == self.ordinal {
            return self.context.raw();
        }
        let mut peers = lock(&self.peers);
        peers
            .entry(ordinal)
            .or_insert_with(|| LazyContext::new(ordinal))
            .raw()
    }
}

impl DeviceRuntime for CudaRuntime {
    fn ordinal(&self) -> u32 {
        self.ordinal
    }

    fn create_stream(&self) -> Result<StreamId> {
        let _ctx = self.context.enter()?;
        let s = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(gpu_err("cuStreamCreate"))?;
        lock(&self.streams).insert(s as u64);
        Ok(StreamId(s as u64))
    }

    fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        let s = self.stream("cuStreamDestroy", stream)?;
        let _ctx = self.context.enter()?;
        lock(&self.streams).remove(&stream.0);
        // SAFETY: a stream of ours, destroyed once (removed from the table).
        unsafe { result::stream::destroy(s) }.map_err(gpu_err("cuStreamDestroy"))
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DevicePtr,
        src: *const u8,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        let s = self.stream("cuMemcpyHtoDAsync", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: the caller keeps the host range valid until completion;
        // the driver checks the device range.
        unsafe { sys::cuMemcpyHtoDAsync_v2(dst.0, src.cast(), len, s) }
            .result()
            .map_err(gpu_err("cuMemcpyHtoDAsync"))
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        let s = self.stream("cuMemcpyDtoHAsync", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: the caller keeps the host range valid and unshared until
        // completion; the driver checks the device range.
        unsafe { sys::cuMemcpyDtoHAsync_v2(dst.cast(), src.0, len, s) }
            .result()
            .map_err(gpu_err("cuMemcpyDtoHAsync"))
    }

    unsafe fn copy_dtod_async(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        let s = self.stream("cuMemcpyDtoDAsync", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: the caller keeps both ranges allocated until completion.
        unsafe { result::memcpy_dtod_async(dst.0, src.0, len, s) }
            .map_err(gpu_err("cuMemcpyDtoDAsync"))
    }

    unsafe fn copy_peer_async(
        &self,
        dst_ordinal: u32,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        if dst_ordinal == self.ordinal {
            // SAFETY: forwarded contract.
            return unsafe { self.copy_dtod_async(dst, src, len, stream) };
        }
        let s = self.stream("cuMemcpyPeerAsync", stream)?;
        let dst_ctx = self.peer_context(dst_ordinal)?;
        let src_ctx = self.context.raw()?;
        let _ctx = self.context.enter()?;
        // SAFETY: both contexts are retained by `self`; the caller keeps both
        // ranges allocated until completion.
        unsafe { result::memcpy_peer_async(dst_ctx, dst.0, src_ctx, src.0, len, s) }
            .map_err(gpu_err("cuMemcpyPeerAsync"))
    }

    fn create_event(&self) -> Result<EventId> {
        let _ctx = self.context.enter()?;
        let e = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(gpu_err("cuEventCreate"))?;
        lock(&self.events).insert(e as u64);
        Ok(EventId(e as u64))
    }

    fn destroy_event(&self, event: EventId) -> Result<()> {
        let e = self.event("cuEventDestroy", event)?;
        let _ctx = self.context.enter()?;
        lock(&self.events).remove(&event.0);
        // SAFETY: an event of ours, destroyed once (removed from the table).
        unsafe { result::event::destroy(e) }.map_err(gpu_err("cuEventDestroy"))
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        let e = self.event("cuEventRecord", event)?;
        let s = self.stream("cuEventRecord", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: both handles are live ones of ours.
        unsafe { result::event::record(e, s) }.map_err(gpu_err("cuEventRecord"))
    }

    fn query_event(&self, event: EventId) -> Result<bool> {
        let e = self.event("cuEventQuery", event)?;
        let _ctx = self.context.enter()?;
        // SAFETY: a live event of ours.
        match unsafe { result::event::query(e) } {
            Ok(()) => Ok(true),
            Err(err) if err.0 == sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            Err(err) => Err(gpu_err("cuEventQuery")(err)),
        }
    }

    fn wait_event(&self, event: EventId) -> Result<()> {
        let e = self.event("cuEventSynchronize", event)?;
        let _ctx = self.context.enter()?;
        // SAFETY: a live event of ours.
        unsafe { result::event::synchronize(e) }.map_err(gpu_err("cuEventSynchronize"))
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        let e = self.event("cuStreamWaitEvent", event)?;
        let s = self.stream("cuStreamWaitEvent", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: both handles are live ones of ours.
        unsafe { result::stream::wait_event(s, e, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT) }
            .map_err(gpu_err("cuStreamWaitEvent"))
    }

    fn alloc_async(&self, len: usize, stream: StreamId) -> Result<DevicePtr> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        let s = self.stream("cuMemAllocAsync", stream)?;
        let pools = self.has_memory_pools();
        let _ctx = self.context.enter()?;
        let ptr = if pools {
            // SAFETY: a live stream of ours; the memory is handed out as an
            // address, never read as a typed value here.
            unsafe { result::malloc_async(s, len) }.map_err(gpu_err("cuMemAllocAsync"))?
        } else {
            // Without memory pools: a synchronous allocation is ordered
            // before everything enqueued afterwards anyway.
            // SAFETY: as above.
            unsafe { result::malloc_sync(len) }.map_err(gpu_err("cuMemAlloc"))?
        };
        Ok(DevicePtr(ptr))
    }

    unsafe fn free_async(&self, ptr: DevicePtr, stream: StreamId) -> Result<()> {
        let s = self.stream("cuMemFreeAsync", stream)?;
        let pools = self.has_memory_pools();
        let _ctx = self.context.enter()?;
        if pools {
            // SAFETY: the caller passes an allocation of ours, freed once.
            unsafe { result::free_async(ptr.0, s) }.map_err(gpu_err("cuMemFreeAsync"))
        } else {
            // SAFETY: a live stream of ours; then the caller's allocation,
            // freed once, once no pending work on the stream uses it.
            unsafe { result::stream::synchronize(s) }.map_err(gpu_err("cuStreamSynchronize"))?;
            // SAFETY: as above.
            unsafe { result::free_sync(ptr.0) }.map_err(gpu_err("cuMemFree"))
        }
    }

    fn alloc_pinned(&self, len: usize) -> Result<NonNull<u8>> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        let _ctx = self.context.enter()?;
        // SAFETY: a plain allocation; portable so that every context can
        // use it for DMA.
        let p = unsafe { result::malloc_host(len, sys::CU_MEMHOSTALLOC_PORTABLE) }
            .map_err(gpu_err("cuMemHostAlloc"))?;
        NonNull::new(p.cast()).ok_or_else(|| Error::Exhausted {
            call: "cuMemHostAlloc",
            reason: "null pointer".into(),
        })
    }

    unsafe fn free_pinned(&self, ptr: NonNull<u8>) -> Result<()> {
        let _ctx = self.context.enter()?;
        // SAFETY: the caller passes an allocation of alloc_pinned, freed
        // once.
        unsafe { result::free_host(ptr.as_ptr().cast()) }.map_err(gpu_err("cuMemFreeHost"))
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        let s = self.stream("cuStreamSynchronize", stream)?;
        let _ctx = self.context.enter()?;
        // SAFETY: a live stream of ours.
        unsafe { result::stream::synchronize(s) }.map_err(gpu_err("cuStreamSynchronize"))
    }

    fn synchronize(&self) -> Result<()> {
        let _ctx = self.context.enter()?;
        result::ctx::synchronize().map_err(gpu_err("cuCtxSynchronize"))
    }
}

impl Drop for CudaRuntime {
    fn drop(&mut self) {
        let streams: Vec<u64> = lock(&self.streams).drain().collect();
        let events: Vec<u64> = lock(&self.events).drain().collect();
        if streams.is_empty() && events.is_empty() {
            return;
        }
        let Ok(_ctx) = self.context.enter() else {
            return;
        };
        for s in streams {
            // SAFETY: a live stream of ours, destroyed once.
            if let Err(e) = unsafe { result::stream::destroy(s as sys::CUstream) } {
                tracing::error!(device = self.ordinal, error = ?e, "destroying a stream");
            }
        }
        for e in events {
            // SAFETY: a live event of ours, destroyed once.
            if let Err(err) = unsafe { result::event::destroy(e as sys::CUevent) } {
                tracing::error!(device = self.ordinal, error = ?err, "destroying an event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime of device 0, or why there is none.
    fn runtime() -> std::result::Result<CudaRuntime, String> {
        match CudaRuntime::new(0) {
            Ok(rt) => Ok(rt),
            Err(e) => Err(format!("no CUDA device: {e}")),
        }
    }

    #[test]
    fn without_a_driver_the_runtime_is_no_gpu() {
        if driver_present() {
            eprintln!("skipped: libcuda is present, this test covers machines without it");
            return;
        }
        assert!(matches!(CudaRuntime::new(0), Err(Error::NoGpu(_))));
    }

    #[test]
    fn calls_leave_the_callers_current_context_alone() {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(why) => return eprintln!("skipped: {why}"),
        };
        let before = result::ctx::get_current().unwrap();
        let s = rt.create_stream().unwrap();
        let d = rt.alloc_async(4096, s).unwrap();
        let src: Vec<u8> = (0..4096).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; 4096];
        // SAFETY: both host buffers live until the synchronization; `d` is
        // freed once after its last use on the same stream.
        unsafe {
            rt.copy_htod_async(d, src.as_ptr(), 4096, s).unwrap();
            rt.copy_dtoh_async(back.as_mut_ptr(), d, 4096, s).unwrap();
            rt.free_async(d, s).unwrap();
        }
        rt.synchronize_stream(s).unwrap();
        rt.destroy_stream(s).unwrap();
        assert_eq!(back, src);
        assert_eq!(result::ctx::get_current().unwrap(), before);
    }

    #[test]
    fn foreign_handles_never_reach_the_driver() {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(why) => return eprintln!("skipped: {why}"),
        };
        assert!(matches!(
            rt.synchronize_stream(StreamId(0xdead)),
            Err(Error::Gpu { .. })
        ));
        assert!(matches!(
            rt.query_event(EventId(0xbeef)),
            Err(Error::Gpu { .. })
        ));
        assert!(!rt.pci_bus_id().unwrap().is_empty());
    }
}
