//! The layout kernels of `mamba-gpu-kernels` behind the copy engine's
//! [`DeviceConverter`] seam, loaded (compiled by NVRTC) on a device's first
//! layout-converting device copy, not before.

use super::{DeviceConverter, DevicePtr, StreamId};
use crate::error::{Error, Result};
use mamba_gpu_kernels::{DeviceBuffer, GpuKernels, KernelError};
use mamba_transforms::Layout;

/// Runs device-to-device layout conversions of one CUDA device as GPU
/// kernels; pairs of layouts the kernels do not take (tiled layouts), and
/// machines without NVRTC, are left to the host path.
#[derive(Debug)]
pub(crate) struct KernelConverter {
    ordinal: u32,
}

impl KernelConverter {
    /// The converter of CUDA device `ordinal`.
    pub(crate) fn new(ordinal: u32) -> Self {
        KernelConverter { ordinal }
    }
}

fn kernel_err(e: KernelError) -> Error {
    Error::Gpu {
        call: "layout kernel",
        message: e.to_string(),
    }
}

impl DeviceConverter for KernelConverter {
    fn convert(
        &self,
        src_layout: &Layout,
        dst_layout: &Layout,
        src: DevicePtr,
        dst: DevicePtr,
        stream: StreamId,
    ) -> Result<bool> {
        let kernels = match GpuKernels::shared(self.ordinal) {
            Ok(k) => k,
            Err(e @ (KernelError::NoCompiler(_) | KernelError::Compile { .. })) => {
                tracing::warn!(device = self.ordinal, error = %e,
                    "GPU layout kernels unavailable: converting on the host");
                return Ok(false);
            }
            Err(e) => return Err(kernel_err(e)),
        };
        let src_buf = DeviceBuffer {
            ptr: src.0,
            len: src_layout.required_len(),
        };
        let dst_buf = DeviceBuffer {
            ptr: dst.0,
            len: dst_layout.required_len(),
        };
        // The CUDA runtime's stream handle is the CUstream itself.
        let stream = stream.raw() as cudarc::driver::sys::CUstream;
        match kernels.convert(src_layout, src_buf, dst_layout, dst_buf, stream) {
            Ok(()) => Ok(true),
            Err(KernelError::Layout(mamba_transforms::Error::NotStrided)) => Ok(false),
            Err(KernelError::Unsupported(why)) => {
                tracing::debug!(device = self.ordinal, why, "layout pair left to the host");
                Ok(false)
            }
            Err(KernelError::Layout(e)) => Err(e.into()),
            Err(e) => Err(kernel_err(e)),
        }
    }
}
