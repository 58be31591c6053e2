//! A [`DeviceLink`] over mamba's GPU data plane runtime: device slots
//! from a device pool, copies on one stream.
//!
//! The slots come from one of three places ([`SlotSource`]):
//!
//! | source | what | used by |
//! |---|---|---|
//! | [`SlotSource::Space`] | the pool of a GPU space of a [`Mamba`] (the GPU tier's pool), copies on that device's runtime | `--device sim` and `--device gpu` runs |
//! | [`SlotSource::Pool`] | a [`DevicePool`] over the link's runtime (stream-ordered reuse) | a link on its own device ([`RuntimeLink::sim`], [`RuntimeLink::cuda`]) |
//! | [`SlotSource::Runtime`] | the runtime's `alloc_async`/`free_async` at every reservation | the benchmark's peer |
//!
//! H is applied on the device side, in the link's stream order:
//!
//! * on CUDA by the kernel of `apply.cu` ([`APPLY_SOURCE`]), compiled with
//!   NVRTC for the device and launched after the chunk's upload
//!   ([`RuntimeLink::applying_with_cuda`]); it does the arithmetic of
//!   [`Hamiltonian::apply`] in the same order without contracted
//!   multiply-adds, so its results are the CPU's bits, and with two slots
//!   the upload of chunk `c + 1` overlaps the apply of chunk `c`;
//! * on the test double ([`SimDevice`]) by a host function enqueued on the
//!   link's stream that reads the input slot and writes the output slot in
//!   the double's memory, as a kernel would ([`RuntimeLink::applying_on`]).
//!
//! A link with neither applies on the host after the copy back: the input
//! chunk is copied device -> host into pooled scratch, H is applied there,
//! and the result is copied host -> device into the output slot, all
//! ordered on the link's stream.

use std::fmt;
use std::sync::Arc;

use faer::c64;
use mamba::gpu::{
    CudaRuntime, DevicePool, DevicePoolSettings, DevicePtr, DeviceRuntime, SimDevice, StreamId,
};
use mamba::{Allocation, Mamba, SpaceId};
use mamba_gpu_kernels::plan::Launch;
use mamba_gpu_kernels::{CudaModule, KernelError};

use crate::device::{DeviceError, DeviceLink};
use crate::memory::{Buf, Memory};
use crate::physics::Hamiltonian;

/// Alignment of device slots.
const SLOT_ALIGN: usize = 256;

/// The CUDA C source of the apply kernel, `y = H x` on a chunk of
/// vectors ([`apply_launch`] packs its parameters).
pub const APPLY_SOURCE: &str = include_str!("apply.cu");

/// The apply kernel's entry point.
const APPLY_KERNEL: &str = "sirius_apply_h";

/// NVRTC options of the apply kernel: no contracted multiply-adds, so
/// that it rounds like [`Hamiltonian::apply`].
const APPLY_OPTIONS: [&str; 1] = ["--fmad=false"];

/// Threads per block of the apply kernel.
const APPLY_BLOCK: u32 = 256;

/// Most blocks of one apply launch (the kernel loops over the rest).
const APPLY_MAX_BLOCKS: usize = 1 << 16;

/// The launch of the apply kernel ([`APPLY_SOURCE`]) for `y = H x` on the
/// `len` complex values at device address `x` into those at `y`, with the
/// kinetic diagonal of `h` at `diagonal` (`h.dim()` doubles). `len` is a
/// multiple of `h.dim()`.
pub fn apply_launch(h: &Hamiltonian, x: u64, y: u64, diagonal: u64, len: usize) -> Launch {
    let [v0, v1, v2] = h.potential();
    let blocks = len
        .div_ceil(APPLY_BLOCK as usize)
        .clamp(1, APPLY_MAX_BLOCKS);
    Launch {
        kernel: APPLY_KERNEL,
        grid: [blocks as u32, 1, 1],
        block: [APPLY_BLOCK, 1, 1],
        params: vec![
            x,
            y,
            diagonal,
            h.dim() as u64,
            len as u64,
            crate::physics::side(h.nmax()) as u64,
            v0.to_bits(),
            v1.to_bits(),
            v2.to_bits(),
        ],
    }
}

/// Where a [`RuntimeLink`]'s device slots come from; see the
/// [module docs](self).
pub enum SlotSource {
    /// Allocations from the pool of GPU space `.1` of `.0`.
    Space(Arc<Mamba>, SpaceId),
    /// A stream-ordered device pool over the link's runtime.
    Pool(Box<DevicePool>),
    /// The runtime's stream-ordered allocator, at every reservation.
    Runtime,
}

impl fmt::Debug for SlotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotSource::Space(_, id) => write!(f, "Space({id})"),
            SlotSource::Pool(p) => write!(f, "Pool({:?})", p.stats()),
            SlotSource::Runtime => f.write_str("Runtime"),
        }
    }
}

/// One device buffer of a slot.
enum Slot {
    /// From a GPU space's pool: back to it on drop.
    Space(Allocation<'static>),
    /// From a [`DevicePool`] or the runtime: freed by the link.
    Ptr(DevicePtr),
}

impl Slot {
    fn ptr(&self) -> DevicePtr {
        match self {
            Slot::Space(a) => DevicePtr(a.addr() as u64),
            Slot::Ptr(p) => *p,
        }
    }
}

/// Device slots and host scratch of one reservation.
struct Slots {
    /// Input and output device buffers of each of the two slots, in
    /// allocation order, then the kinetic diagonal's buffer for the CUDA
    /// kernel.
    device: Vec<Slot>,
    /// Values per buffer.
    len: usize,
    /// Host copies of an input chunk and of its result, for an apply on
    /// the host (none when the device applies).
    scratch: Option<(Buf<c64>, Buf<c64>)>,
    /// The kinetic diagonal last copied to the diagonal's buffer, kept
    /// until the stream has run that copy.
    diagonal: Option<Vec<f64>>,
}

impl Slots {
    /// Input (`out == false`) or output buffer of `slot`.
    fn ptr(&self, slot: usize, out: bool) -> DevicePtr {
        self.device[2 * slot + usize::from(out)].ptr()
    }
}

/// What applies H on the device side.
enum DeviceApply {
    /// A host function in the test double's stream order.
    Sim(SimDevice),
    /// The CUDA kernel.
    Cuda(CudaModule),
}

/// Wave-function chunks through a [`DeviceRuntime`].
pub struct RuntimeLink {
    rt: Arc<dyn DeviceRuntime>,
    stream: StreamId,
    memory: Memory,
    source: SlotSource,
    slots: Option<Slots>,
    /// What applies H on the device side, when something does.
    device_apply: Option<DeviceApply>,
}

impl fmt::Debug for RuntimeLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeLink")
            .field("rt", &self.rt)
            .field("source", &self.source)
            .field("slot_values", &self.slots.as_ref().map(|s| s.len))
            .finish()
    }
}

fn gpu(e: mamba::Error) -> DeviceError {
    DeviceError::Runtime(e)
}

impl RuntimeLink {
    /// A link over `rt` with device slots from `source` and host scratch
    /// from `memory`. The slots of [`SlotSource::Pool`] must come from
    /// `rt`, those of [`SlotSource::Space`] from a space of the device
    /// `rt` drives ([`RuntimeLink::in_space`] takes its runtime).
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] when no stream can be made.
    pub fn new(
        rt: Arc<dyn DeviceRuntime>,
        memory: Memory,
        source: SlotSource,
    ) -> Result<RuntimeLink, DeviceError> {
        let stream = rt.create_stream().map_err(gpu)?;
        Ok(RuntimeLink {
            rt,
            stream,
            memory,
            source,
            slots: None,
            device_apply: None,
        })
    }

    /// Applies H on `sim`, the test double this link's runtime drives
    /// (a clone of it): each apply is a host function enqueued on the
    /// link's stream ([`SimDevice::launch_host`]) that reads the input
    /// slot and writes the output slot in device memory, so that it runs
    /// after the upload of its chunk and overlaps nothing on the host, and
    /// the upload of the next chunk is queued before it. Without it, H is
    /// applied on the host after a synchronizing copy back.
    pub fn applying_on(mut self, sim: SimDevice) -> RuntimeLink {
        self.device_apply = Some(DeviceApply::Sim(sim));
        self
    }

    /// Applies H with the CUDA kernel ([`APPLY_SOURCE`]) on CUDA device
    /// `ordinal`: compiled with NVRTC (once per architecture and process)
    /// and loaded when called, launched on the link's stream after each
    /// chunk's upload, reading the kinetic diagonal from a fifth device
    /// buffer that is refreshed when H's diagonal changes.
    ///
    /// # Errors
    /// [`DeviceError::NoGpu`] without libcuda or that device;
    /// [`DeviceError::Kernel`] when the kernel does not compile or load.
    ///
    /// # Safety
    /// The link's runtime must be that of CUDA device `ordinal` (its slots
    /// are device memory the kernel reads and writes).
    pub unsafe fn applying_with_cuda(mut self, ordinal: u32) -> Result<RuntimeLink, DeviceError> {
        let module = CudaModule::load(
            ordinal,
            "sirius_apply.cu",
            APPLY_SOURCE,
            &APPLY_OPTIONS,
            &[APPLY_KERNEL],
        )
        .map_err(|e| match e {
            KernelError::NoDriver(_) | KernelError::NoDevice { .. } => {
                DeviceError::NoGpu(e.to_string())
            }
            e => DeviceError::Kernel(e),
        })?;
        self.device_apply = Some(DeviceApply::Cuda(module));
        Ok(self)
    }

    /// Whether H is applied on the device's stream (by the test double or
    /// the CUDA kernel).
    pub fn applies_on_device(&self) -> bool {
        self.device_apply.is_some()
    }

    /// A link whose slots come from a [`DevicePool`] over `rt`.
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] when the pool or the stream cannot be made.
    pub fn pooled(rt: Arc<dyn DeviceRuntime>, memory: Memory) -> Result<RuntimeLink, DeviceError> {
        let pool = DevicePool::new(Arc::clone(&rt), DevicePoolSettings::default()).map_err(gpu)?;
        RuntimeLink::new(rt, memory, SlotSource::Pool(Box::new(pool)))
    }

    /// A link whose slots come from GPU space `space` of `mamba` (the GPU
    /// tier's pool), with copies on that space's device runtime.
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] for an unknown space, a space without a
    /// GPU runtime (host memory, HIP), or no stream.
    pub fn in_space(
        mamba: Arc<Mamba>,
        space: SpaceId,
        memory: Memory,
    ) -> Result<RuntimeLink, DeviceError> {
        let pool = mamba.pool(space).map_err(gpu)?;
        let info = pool.info();
        let device = match pool.gpu() {
            Some(device) if !info.host_accessible => device,
            _ => {
                return Err(gpu(mamba::Error::Unsupported {
                    operation: "device slots outside GPU memory",
                    space: info.id,
                    tier: info.tier,
                }))
            }
        };
        let rt = Arc::clone(device.runtime());
        RuntimeLink::new(rt, memory, SlotSource::Space(mamba, space))
    }

    /// The test double: a fresh [`SimDevice`], slots from a device pool,
    /// H applied in its stream order ([`RuntimeLink::applying_on`]).
    ///
    /// # Errors
    /// As [`RuntimeLink::pooled`].
    pub fn sim(memory: Memory) -> Result<RuntimeLink, DeviceError> {
        let sim = SimDevice::new();
        Ok(RuntimeLink::pooled(Arc::new(sim.clone()), memory)?.applying_on(sim))
    }

    /// CUDA device `ordinal`, slots from a device pool, H applied by the
    /// CUDA kernel ([`RuntimeLink::applying_with_cuda`]).
    ///
    /// # Errors
    /// [`DeviceError::NoGpu`] without libcuda or without that device;
    /// [`DeviceError::Kernel`] when the kernel does not compile or load.
    pub fn cuda(ordinal: u32, memory: Memory) -> Result<RuntimeLink, DeviceError> {
        let rt = CudaRuntime::new(ordinal).map_err(|e| DeviceError::NoGpu(e.to_string()))?;
        let link = RuntimeLink::pooled(Arc::new(rt), memory)?;
        // SAFETY: the link's runtime is CUDA device `ordinal`'s.
        unsafe { link.applying_with_cuda(ordinal) }
    }

    /// Where the slots come from.
    pub fn source(&self) -> &SlotSource {
        &self.source
    }

    fn slots(
        &mut self,
        slot: usize,
        len: usize,
    ) -> Result<(&dyn DeviceRuntime, StreamId, &mut Slots), DeviceError> {
        match self.slots.as_mut() {
            Some(s) if slot < 2 && len <= s.len => Ok((&*self.rt, self.stream, s)),
            _ => Err(DeviceError::NotReserved),
        }
    }

    /// One device buffer of `bytes` bytes.
    fn take(&self, bytes: usize) -> Result<Slot, DeviceError> {
        match &self.source {
            SlotSource::Space(mamba, space) => {
                let a = mamba.pool(*space).map_err(gpu)?.allocate(bytes, SLOT_ALIGN);
                Ok(Slot::Space(a.map_err(gpu)?.into_owned()))
            }
            SlotSource::Pool(pool) => pool.alloc(bytes, self.stream).map(Slot::Ptr).map_err(gpu),
            SlotSource::Runtime => self
                .rt
                .alloc_async(bytes, self.stream)
                .map(Slot::Ptr)
                .map_err(gpu),
        }
    }

    /// Gives `slot` back, after the stream's work that uses it (the
    /// caller synchronized the stream, or orders it for pool and runtime).
    fn give(&self, slot: Slot) -> Result<(), DeviceError> {
        match (slot, &self.source) {
            (Slot::Space(a), _) => {
                drop(a);
                Ok(())
            }
            (Slot::Ptr(p), SlotSource::Pool(pool)) => {
                // SAFETY: handed out by this pool for this stream, and no
                // longer referenced (its slots are gone).
                unsafe { pool.free(p, self.stream) }.map_err(gpu)
            }
            // SAFETY: allocated by `alloc_async` on this stream, no longer
            // referenced.
            (Slot::Ptr(p), _) => unsafe { self.rt.free_async(p, self.stream) }.map_err(gpu),
        }
    }

    /// Frees the device buffers (after the stream's pending work).
    fn free(&mut self) -> Result<(), DeviceError> {
        let Some(mut slots) = self.slots.take() else {
            return Ok(());
        };
        let synced = self.rt.synchronize_stream(self.stream).map_err(gpu);
        // Last allocated first: LIFO.
        let mut first_error = None;
        while let Some(slot) = slots.device.pop() {
            if let Err(e) = self.give(slot) {
                first_error.get_or_insert(e);
            }
        }
        if let Some((host_x, host_y)) = slots.scratch {
            drop(host_y);
            drop(host_x);
        }
        synced?;
        first_error.map_or(Ok(()), Err)
    }
}

fn bytes(len: usize) -> usize {
    len * size_of::<c64>()
}

/// Device bytes as the values they hold, in place; `None` when they are
/// not aligned for `c64` or not whole values.
fn values(b: &[u8]) -> Option<&[c64]> {
    // SAFETY: c64 is two f64 (repr(C)) without padding and every bit
    // pattern is a valid c64; `align_to` only hands out aligned values.
    match unsafe { b.align_to::<c64>() } {
        ([], v, []) => Some(v),
        _ => None,
    }
}

/// As [`values`], writable.
fn values_mut(b: &mut [u8]) -> Option<&mut [c64]> {
    // SAFETY: as in `values`.
    match unsafe { b.align_to_mut::<c64>() } {
        ([], v, []) => Some(v),
        _ => None,
    }
}

impl DeviceLink for RuntimeLink {
    fn reserve(&mut self, len: usize) -> Result<(), DeviceError> {
        self.free()?;
        let scratch = if self.device_apply.is_some() {
            None
        } else {
            let host_x = self.memory.buf(len)?;
            let host_y = self.memory.buf(len)?;
            Some((host_x, host_y))
        };
        // Two slots in and out, and the diagonal for the CUDA kernel (a
        // chunk holds at least one vector: `len` values of 16 bytes hold
        // its diagonal of 8 bytes a value).
        let buffers = match self.device_apply {
            Some(DeviceApply::Cuda(_)) => 5,
            _ => 4,
        };
        let mut device = Vec::with_capacity(buffers);
        for _ in 0..buffers {
            match self.take(bytes(len).max(1)) {
                Ok(slot) => device.push(slot),
                Err(e) => {
                    while let Some(slot) = device.pop() {
                        if let Err(e) = self.give(slot) {
                            tracing::warn!("freeing a device slot: {e}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.slots = Some(Slots {
            device,
            len,
            scratch,
            diagonal: None,
        });
        Ok(())
    }

    fn upload(&mut self, slot: usize, src: &[c64]) -> Result<(), DeviceError> {
        let (rt, stream, s) = self.slots(slot, src.len())?;
        // SAFETY: the destination slot holds `s.len >= src.len()` values;
        // `src` is the caller's block, which `Offload::apply` neither
        // writes nor frees before the download that ends the pipeline
        // synchronizes this stream (and `release` synchronizes on errors).
        unsafe {
            rt.copy_htod_async(
                s.ptr(slot, false),
                src.as_ptr().cast(),
                bytes(src.len()),
                stream,
            )
        }
        .map_err(gpu)
    }

    fn apply(&mut self, slot: usize, h: &Hamiltonian, len: usize) -> Result<(), DeviceError> {
        if let Some(DeviceApply::Cuda(module)) = &self.device_apply {
            let (rt, stream, s) = match self.slots.as_mut() {
                Some(s)
                    if slot < 2
                        && len <= s.len
                        && len % h.dim() == 0
                        && h.dim() <= 2 * s.len
                        && s.device.len() == 5 =>
                {
                    (&*self.rt, self.stream, s)
                }
                _ => return Err(DeviceError::NotReserved),
            };
            let diagonal = s.device[4].ptr();
            if s.diagonal.as_deref() != Some(h.diagonal()) {
                // The copy of the previous diagonal has run before its
                // host copy is replaced.
                rt.synchronize_stream(stream).map_err(gpu)?;
                let host = s.diagonal.insert(h.diagonal().to_vec());
                // SAFETY: the diagonal's buffer holds `2 * s.len >=
                // h.dim()` doubles; `host` stays in the slots, untouched,
                // until a later apply or the release synchronizes this
                // stream.
                unsafe {
                    rt.copy_htod_async(
                        diagonal,
                        host.as_ptr().cast(),
                        size_of_val(&host[..]),
                        stream,
                    )
                }
                .map_err(gpu)?;
            }
            let launch = apply_launch(
                h,
                s.ptr(slot, false).0,
                s.ptr(slot, true).0,
                diagonal.0,
                len,
            );
            // SAFETY: the words are the kernel's parameter struct; the
            // input and output slots hold `s.len >= len` values and the
            // diagonal's buffer `h.dim()` doubles, all device memory of this
            // CUDA device (`applying_with_cuda`'s contract) that stays
            // allocated until the release synchronizes the stream.
            return unsafe { module.launch(&launch, stream.raw() as _) }.map_err(DeviceError::from);
        }
        let sim = match &self.device_apply {
            Some(DeviceApply::Sim(sim)) => Some(sim.clone()),
            _ => None,
        };
        if let Some(sim) = sim {
            let (_, stream, s) = self.slots(slot, len)?;
            let (x, y) = (s.ptr(slot, false), s.ptr(slot, true));
            let kernel = h.kernel();
            // The kernel reads its input slot and writes its output slot
            // where they are in the double's memory, as a kernel does.
            return sim
                .launch_host(stream, move |mem| {
                    mem.read_write(x, bytes(len), y, bytes(len), |xs, ys| {
                        match (values(xs), values_mut(ys)) {
                            (Some(xs), Some(ys)) => {
                                kernel.apply(xs, ys);
                                Ok(())
                            }
                            _ => Err(mamba::Error::Gpu {
                                call: "sirius_apply_h",
                                message: "device slots not aligned for complex values".into(),
                            }),
                        }
                    })?
                })
                .map_err(gpu);
        }
        let (rt, stream, s) = self.slots(slot, len)?;
        let (x, y) = (s.ptr(slot, false), s.ptr(slot, true));
        let Some((host_x, host_y)) = s.scratch.as_mut() else {
            return Err(DeviceError::NotReserved);
        };
        // SAFETY: `host_x` holds `s.len >= len` values and is only touched
        // again after the synchronization below.
        unsafe { rt.copy_dtoh_async(host_x.as_mut_ptr().cast(), x, bytes(len), stream) }
            .map_err(gpu)?;
        // Also orders the previous apply's upload of `host_y` before it is
        // overwritten.
        rt.synchronize_stream(stream).map_err(gpu)?;
        h.apply(&host_x[..len], &mut host_y[..len]);
        // SAFETY: `host_y` stays untouched until the next apply or the
        // release, which synchronize this stream first.
        unsafe { rt.copy_htod_async(y, host_y.as_ptr().cast(), bytes(len), stream) }.map_err(gpu)
    }

    fn download(&mut self, slot: usize, dst: &mut [c64]) -> Result<(), DeviceError> {
        let (rt, stream, s) = self.slots(slot, dst.len())?;
        // SAFETY: `dst` is exclusively borrowed until the synchronization
        // below completes the copy.
        unsafe {
            rt.copy_dtoh_async(
                dst.as_mut_ptr().cast(),
                s.ptr(slot, true),
                bytes(dst.len()),
                stream,
            )
        }
        .map_err(gpu)?;
        rt.synchronize_stream(stream).map_err(gpu)
    }

    fn release(&mut self) {
        if let Err(e) = self.free() {
            tracing::warn!("releasing device slots: {e}");
        }
    }
}

impl Drop for RuntimeLink {
    fn drop(&mut self) {
        self.release();
        if let Err(e) = self.rt.destroy_stream(self.stream) {
            tracing::warn!("destroying the link's stream: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Offload;

    fn block(n: usize, nvec: usize) -> Vec<c64> {
        (0..n * nvec)
            .map(|i| c64::new((i as f64 * 0.7).sin(), (i as f64 * 0.3).cos()))
            .collect()
    }

    #[test]
    fn chunks_through_the_double_equal_the_direct_apply() {
        let memory = Memory::heap();
        let h = Hamiltonian::new(&memory, 8.0, [0.1, 0.2, 0.3], 1, [0.2, -0.1, 0.3]).unwrap();
        let n = h.dim();
        let x = block(n, 7);
        let mut want = vec![c64::new(0.0, 0.0); x.len()];
        h.apply(&x, &mut want);
        // Two vectors per chunk: 4 chunks, the last one short.
        let budget = (4 * 2 * n * 16) as u64;
        let mut offload = Offload::sim(memory.clone(), Some(budget)).unwrap();
        let mut y = vec![c64::new(0.0, 0.0); x.len()];
        offload.apply(&h, &x, &mut y).unwrap();
        assert_eq!(y, want);
        let t = offload.traffic();
        assert_eq!(t.chunks, 4);
        assert_eq!(t.to_device, (x.len() * 16) as u64);
        assert_eq!(t.from_device, t.to_device);
        // Reserved once for a bigger block, then applied twice.
        offload.reserve(n, 8).unwrap();
        offload.apply(&h, &x, &mut y).unwrap();
        offload.apply(&h, &x[..n], &mut y[..n]).unwrap();
        offload.release();
        assert_eq!(y, want);
    }

    #[test]
    fn the_double_applies_in_stream_order_and_the_host_path_gives_the_same_bits() {
        let memory = Memory::heap();
        let h = Hamiltonian::new(&memory, 8.0, [0.1, 0.2, 0.3], 1, [0.2, -0.1, 0.3]).unwrap();
        let n = h.dim();
        let x = block(n, 7);
        let mut want = vec![c64::new(0.0, 0.0); x.len()];
        h.apply(&x, &mut want);
        // Two vectors per chunk: 4 chunks.
        let budget = Some((4 * 2 * n * 16) as u64);
        for on_device in [true, false] {
            let sim = SimDevice::new();
            let mut link = RuntimeLink::pooled(Arc::new(sim.clone()), memory.clone()).unwrap();
            if on_device {
                link = link.applying_on(sim.clone());
            }
            assert_eq!(link.applies_on_device(), on_device);
            let mut offload = Offload::linked("double", Box::new(link), budget);
            let mut y = vec![c64::new(0.0, 0.0); x.len()];
            let buffers = memory.buffers();
            offload.apply(&h, &x, &mut y).unwrap();
            assert_eq!(y, want, "on the device: {on_device}");
            // Host scratch only for an apply on the host.
            let scratch = memory.buffers() - buffers;
            assert_eq!(scratch, if on_device { 0 } else { 2 });
            let st = sim.stats();
            // Each chunk up once and back once; the host path also copies
            // each chunk back for the apply and its result up again.
            assert_eq!(st.launches, if on_device { 4 } else { 0 });
            assert_eq!(st.htod_copies, if on_device { 4 } else { 8 });
            assert_eq!(st.dtoh_copies, st.htod_copies);
        }
    }

    fn sim_node() -> crate::Node {
        use clap::Parser;
        let cli = crate::Cli::parse_from(["sirius", "--nmax", "1", "--device", "sim"]);
        crate::Node::for_params(&crate::Params::try_from(&cli).unwrap()).unwrap()
    }

    #[test]
    fn slots_come_from_the_gpu_spaces_pool_and_go_back_to_it() {
        let node = sim_node();
        let h = Hamiltonian::new(&node.memory, 8.0, [0.1, 0.2, 0.3], 1, [0.2, -0.1, 0.3]).unwrap();
        let n = h.dim();
        let x = block(n, 5);
        let mut want = vec![c64::new(0.0, 0.0); x.len()];
        h.apply(&x, &mut want);
        let space = node.mamba.pool(node.device).unwrap();
        let before = space.stats();
        let link = RuntimeLink::in_space(Arc::clone(&node.mamba), node.device, node.memory.clone())
            .unwrap();
        assert!(matches!(link.source(), SlotSource::Space(_, s) if *s == node.device));
        let mut offload = Offload::linked("space", Box::new(link), None);
        offload.reserve(n, 5).unwrap();
        // Four slots (two in, two out) from the GPU space's pool.
        let during = space.stats();
        assert_eq!(during.allocations, before.allocations + 4);
        assert!(during.in_use >= before.in_use + 4 * 5 * n * 16);
        let mut y = vec![c64::new(0.0, 0.0); x.len()];
        offload.apply(&h, &x, &mut y).unwrap();
        assert_eq!(y, want);
        offload.release();
        let after = space.stats();
        assert_eq!(after.frees, before.frees + 4);
        assert_eq!(after.in_use, before.in_use);
        // Host memory has no device runtime: a typed error.
        assert!(matches!(
            RuntimeLink::in_space(Arc::clone(&node.mamba), node.host, node.memory.clone()),
            Err(DeviceError::Runtime(mamba::Error::Unsupported { .. }))
        ));
    }

    #[test]
    fn pooled_slots_are_reused_and_runtime_slots_are_allocated_each_time() {
        let memory = Memory::heap();
        let h = Hamiltonian::new(&memory, 8.0, [0.0; 3], 1, [0.1; 3]).unwrap();
        let x = block(h.dim(), 2);
        let sim = SimDevice::new();
        let mut pooled = RuntimeLink::pooled(Arc::new(sim.clone()), memory.clone()).unwrap();
        for _ in 0..3 {
            pooled.reserve(x.len()).unwrap();
            pooled.upload(0, &x).unwrap();
            pooled.release();
        }
        let SlotSource::Pool(pool) = pooled.source() else {
            panic!("a pooled link has a device pool");
        };
        // Four from the runtime once; the two later reservations reuse them.
        assert_eq!((pool.stats().misses, pool.stats().hits), (4, 8));
        assert_eq!(sim.stats().allocs, 4);

        let peer_sim = SimDevice::new();
        let mut peer =
            RuntimeLink::new(Arc::new(peer_sim.clone()), memory, SlotSource::Runtime).unwrap();
        for _ in 0..3 {
            peer.reserve(x.len()).unwrap();
            peer.release();
        }
        assert_eq!(peer_sim.stats().allocs, 12);
        // The last frees run on the stream, which the drop drains.
        drop(peer);
        assert_eq!(peer_sim.stats().frees, 12);
    }

    #[test]
    fn misuse_and_small_budgets_are_typed_errors() {
        let memory = Memory::heap();
        let h = Hamiltonian::new(&memory, 8.0, [0.0; 3], 1, [0.1; 3]).unwrap();
        let mut link = RuntimeLink::sim(memory.clone()).unwrap();
        let x = block(h.dim(), 1);
        assert!(matches!(link.upload(0, &x), Err(DeviceError::NotReserved)));
        link.reserve(h.dim()).unwrap();
        assert!(matches!(link.upload(2, &x), Err(DeviceError::NotReserved)));
        let long = block(h.dim(), 2);
        assert!(matches!(
            link.upload(0, &long),
            Err(DeviceError::NotReserved)
        ));
        link.upload(0, &x).unwrap();
        link.release();

        let mut offload = Offload::sim(memory, Some(100)).unwrap();
        let mut y = vec![c64::new(0.0, 0.0); x.len()];
        assert!(matches!(
            offload.apply(&h, &x, &mut y),
            Err(DeviceError::BudgetTooSmall { budget: 100, .. })
        ));
        // A CUDA device that is not there (or no libcuda) is NoGpu, not a
        // panic.
        assert!(matches!(
            Offload::gpu(u32::MAX, Memory::heap(), None),
            Err(DeviceError::NoGpu(_))
        ));
    }
}
