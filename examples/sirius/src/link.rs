//! A [`DeviceLink`] over mamba's GPU data plane runtime: device slots from
//! the runtime's stream-ordered allocator, copies on one stream.
//!
//! The apply runs on the host after the copy back: the input chunk is
//! copied device -> host into pooled scratch, H is applied there, and the
//! result is copied host -> device into the output slot, all ordered on
//! the link's stream. With [`SimDevice`] (the **test double**) this is how
//! the double can apply at all; with [`CudaRuntime`] the wave functions
//! really travel to the GPU and back, but the apply is still the CPU's
//! (no device kernel yet), and the label says so.

use std::fmt;

use faer::c64;
use mamba::gpu::{CudaRuntime, DevicePtr, DeviceRuntime, SimDevice, StreamId};

use crate::device::{DeviceError, DeviceLink};
use crate::memory::{Buf, Memory};
use crate::physics::Hamiltonian;

/// Device slots and host scratch of one reservation.
struct Slots {
    /// Input and output device buffers of each of the two slots.
    device: [(DevicePtr, DevicePtr); 2],
    /// Values per buffer.
    len: usize,
    /// Host copies of an input chunk and of its result.
    host_x: Buf<c64>,
    host_y: Buf<c64>,
}

/// Wave-function chunks through a [`DeviceRuntime`].
pub struct RuntimeLink<R: DeviceRuntime> {
    rt: R,
    stream: StreamId,
    memory: Memory,
    slots: Option<Slots>,
}

impl<R: DeviceRuntime> fmt::Debug for RuntimeLink<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeLink")
            .field("rt", &self.rt)
            .field("slot_values", &self.slots.as_ref().map(|s| s.len))
            .finish()
    }
}

fn gpu(e: mamba::Error) -> DeviceError {
    DeviceError::Runtime(e)
}

impl<R: DeviceRuntime> RuntimeLink<R> {
    /// A link over `rt` with host scratch from `memory`.
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] when no stream can be made.
    pub fn new(rt: R, memory: Memory) -> Result<RuntimeLink<R>, DeviceError> {
        let stream = rt.create_stream().map_err(gpu)?;
        Ok(RuntimeLink {
            rt,
            stream,
            memory,
            slots: None,
        })
    }

    fn slots(
        &mut self,
        slot: usize,
        len: usize,
    ) -> Result<(&R, StreamId, &mut Slots), DeviceError> {
        match self.slots.as_mut() {
            Some(s) if slot < 2 && len <= s.len => Ok((&self.rt, self.stream, s)),
            _ => Err(DeviceError::NotReserved),
        }
    }

    /// Frees the device buffers (after the stream's pending work).
    fn free(&mut self) -> Result<(), DeviceError> {
        let Some(slots) = self.slots.take() else {
            return Ok(());
        };
        let synced = self.rt.synchronize_stream(self.stream).map_err(gpu);
        // Output then input of the last slot first: LIFO.
        for (x, y) in slots.device.into_iter().rev() {
            for ptr in [y, x] {
                // SAFETY: allocated by `alloc_async` in `reserve`, on this
                // stream, and no longer referenced (the slots are gone).
                unsafe { self.rt.free_async(ptr, self.stream) }.map_err(gpu)?;
            }
        }
        drop(slots.host_y);
        drop(slots.host_x);
        synced
    }
}

impl RuntimeLink<SimDevice> {
    /// The test double: a fresh [`SimDevice`].
    ///
    /// # Errors
    /// As [`RuntimeLink::new`].
    pub fn sim(memory: Memory) -> Result<RuntimeLink<SimDevice>, DeviceError> {
        RuntimeLink::new(SimDevice::new(), memory)
    }
}

impl RuntimeLink<CudaRuntime> {
    /// CUDA device `ordinal`.
    ///
    /// # Errors
    /// [`DeviceError::NoGpu`] without libcuda or without that device.
    pub fn cuda(ordinal: u32, memory: Memory) -> Result<RuntimeLink<CudaRuntime>, DeviceError> {
        let rt = CudaRuntime::new(ordinal).map_err(|e| DeviceError::NoGpu(e.to_string()))?;
        RuntimeLink::new(rt, memory)
    }
}

fn bytes(len: usize) -> usize {
    len * size_of::<c64>()
}

impl<R: DeviceRuntime> DeviceLink for RuntimeLink<R> {
    fn reserve(&mut self, len: usize) -> Result<(), DeviceError> {
        self.free()?;
        let host_x = self.memory.buf(len)?;
        let host_y = self.memory.buf(len)?;
        let mut ptrs = [DevicePtr(0); 4];
        for i in 0..ptrs.len() {
            match self.rt.alloc_async(bytes(len).max(1), self.stream) {
                Ok(p) => ptrs[i] = p,
                Err(e) => {
                    for &p in ptrs[..i].iter().rev() {
                        // SAFETY: allocated just above, never used.
                        if let Err(e) = unsafe { self.rt.free_async(p, self.stream) } {
                            tracing::warn!("freeing a device slot: {e}");
                        }
                    }
                    return Err(gpu(e));
                }
            }
        }
        let device = [(ptrs[0], ptrs[1]), (ptrs[2], ptrs[3])];
        self.slots = Some(Slots {
            device,
            len,
            host_x,
            host_y,
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
                s.device[slot].0,
                src.as_ptr().cast(),
                bytes(src.len()),
                stream,
            )
        }
        .map_err(gpu)
    }

    fn apply(&mut self, slot: usize, h: &Hamiltonian, len: usize) -> Result<(), DeviceError> {
        let (rt, stream, s) = self.slots(slot, len)?;
        // SAFETY: `host_x` holds `s.len >= len` values and is only touched
        // again after the synchronization below.
        unsafe {
            rt.copy_dtoh_async(
                s.host_x.as_mut_ptr().cast(),
                s.device[slot].0,
                bytes(len),
                stream,
            )
        }
        .map_err(gpu)?;
        // Also orders the previous apply's upload of `host_y` before it is
        // overwritten.
        rt.synchronize_stream(stream).map_err(gpu)?;
        h.apply(&s.host_x[..len], &mut s.host_y[..len]);
        // SAFETY: `host_y` stays untouched until the next apply or the
        // release, which synchronize this stream first.
        unsafe {
            rt.copy_htod_async(
                s.device[slot].1,
                s.host_y.as_ptr().cast(),
                bytes(len),
                stream,
            )
        }
        .map_err(gpu)
    }

    fn download(&mut self, slot: usize, dst: &mut [c64]) -> Result<(), DeviceError> {
        let (rt, stream, s) = self.slots(slot, dst.len())?;
        // SAFETY: `dst` is exclusively borrowed until the synchronization
        // below completes the copy.
        unsafe {
            rt.copy_dtoh_async(
                dst.as_mut_ptr().cast(),
                s.device[slot].1,
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

impl<R: DeviceRuntime> Drop for RuntimeLink<R> {
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
