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
//! On the test double ([`SimDevice`]) H is applied on the device side: a
//! host function enqueued on the link's stream reads the input slot and
//! writes the output slot in the double's memory, in stream order, as a
//! kernel would ([`RuntimeLink::applying_on`]). Elsewhere (CUDA) the apply
//! runs on the host after the copy back: the input chunk is copied device
//! -> host into pooled scratch, H is applied there, and the result is
//! copied host -> device into the output slot, all ordered on the link's
//! stream; the wave functions really travel to the GPU and back, but the
//! apply is the CPU's (no device kernel yet), and the label says so.

use std::fmt;
use std::sync::Arc;

use faer::c64;
use mamba::gpu::{
    CudaRuntime, DevicePool, DevicePoolSettings, DevicePtr, DeviceRuntime, SimDevice, StreamId,
};
use mamba::{Allocation, Mamba, SpaceId};

use crate::device::{DeviceError, DeviceLink};
use crate::memory::{Buf, Memory};
use crate::physics::Hamiltonian;
use crate::stage::{bytes as raw, bytes_mut as raw_mut};

/// Alignment of device slots.
const SLOT_ALIGN: usize = 256;

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
    /// allocation order.
    device: Vec<Slot>,
    /// Values per buffer.
    len: usize,
    /// Host copies of an input chunk and of its result, for an apply on
    /// the host (none when the device applies).
    scratch: Option<(Buf<c64>, Buf<c64>)>,
}

impl Slots {
    /// Input (`out == false`) or output buffer of `slot`.
    fn ptr(&self, slot: usize, out: bool) -> DevicePtr {
        self.device[2 * slot + usize::from(out)].ptr()
    }
}

/// Wave-function chunks through a [`DeviceRuntime`].
pub struct RuntimeLink {
    rt: Arc<dyn DeviceRuntime>,
    stream: StreamId,
    memory: Memory,
    source: SlotSource,
    slots: Option<Slots>,
    /// The test double that applies H in stream order, when it does.
    device_apply: Option<SimDevice>,
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
        self.device_apply = Some(sim);
        self
    }

    /// Whether H is applied on the device's stream.
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

    /// CUDA device `ordinal`, slots from a device pool.
    ///
    /// # Errors
    /// [`DeviceError::NoGpu`] without libcuda or without that device.
    pub fn cuda(ordinal: u32, memory: Memory) -> Result<RuntimeLink, DeviceError> {
        let rt = CudaRuntime::new(ordinal).map_err(|e| DeviceError::NoGpu(e.to_string()))?;
        RuntimeLink::pooled(Arc::new(rt), memory)
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
        let mut device = Vec::with_capacity(4);
        for _ in 0..4 {
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
        if let Some(sim) = self.device_apply.clone() {
            let (_, stream, s) = self.slots(slot, len)?;
            let (x, y) = (s.ptr(slot, false), s.ptr(slot, true));
            let kernel = h.kernel();
            return sim
                .launch_host(stream, move |mem| {
                    let zero = c64::new(0.0, 0.0);
                    let (mut xs, mut ys) = (vec![zero; len], vec![zero; len]);
                    mem.read(x, raw_mut(&mut xs))?;
                    kernel.apply(&xs, &mut ys);
                    mem.write(y, raw(&ys))
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
