//! Device memory as [`BlockIo`]: byte reads and writes by device address,
//! so that code written for memory the CPU cannot load (an allocation's
//! `read_bytes`/`write_bytes`, the tiering's copies between spaces) reaches
//! GPU spaces too.

use super::device::DevicePtr;
use super::gpu_device::GpuDevice;
use crate::error::Result;
use crate::provider::BlockIo;

/// Synchronous copies on the device's copy stream, through its staging
/// ring (the host side is pageable memory of the caller's).
impl BlockIo for GpuDevice {
    fn write_at(&self, addr: usize, bytes: &[u8]) -> Result<()> {
        // SAFETY: `bytes` is readable host memory for the call, and the
        // copy completes before `upload` returns.
        unsafe { self.upload(DevicePtr(addr as u64), bytes.as_ptr(), bytes.len(), false) }
    }

    fn read_at(&self, addr: usize, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        // SAFETY: `buf` is writable host memory that the exclusive borrow
        // keeps unshared for the call; the copy completes before return.
        unsafe { self.download(buf.as_mut_ptr(), DevicePtr(addr as u64), len, false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::SimDevice;
    use std::sync::Arc;

    #[test]
    fn device_bytes_round_trip_by_address() {
        let sim = SimDevice::new();
        let gpu = GpuDevice::new(Arc::new(sim.clone()));
        let buffer = gpu.alloc(10_000).unwrap();
        let addr = buffer.ptr().0 as usize;
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        gpu.write_at(addr, &bytes).unwrap();
        assert_eq!(sim.peek(buffer.ptr(), bytes.len()).unwrap(), bytes);
        let mut back = vec![0u8; 100];
        gpu.read_at(addr + 5000, &mut back).unwrap();
        assert_eq!(back, bytes[5000..5100]);
        // Outside the device's memory: an error, not a stray access.
        assert!(gpu.read_at(8, &mut back).is_err());
    }
}
