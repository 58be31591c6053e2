//! The layout kernels of `mamba-gpu-kernels` behind the copy engine's
//! [`DeviceConverter`] seam, loaded (compiled by NVRTC) on a device's first
//! layout-converting device copy, not before.

use super::{DeviceConverter, DevicePtr, StreamId};
use crate::error::{Error, Result};
use mamba_gpu_kernels::{DeviceBuffer, GpuKernels, KernelError};
use mamba_transforms::Layout;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs device-to-device layout conversions of one CUDA device as GPU
/// kernels; pairs of layouts the kernels do not take (tiled layouts), and
/// machines without NVRTC, are left to the host path.
#[derive(Debug)]
pub(crate) struct KernelConverter {
    ordinal: u32,
    /// The kernels cannot be compiled on this machine (no NVRTC, or a
    /// compiler that rejects the source): every conversion goes to the
    /// host without trying again.
    unavailable: AtomicBool,
}

impl KernelConverter {
    /// The converter of CUDA device `ordinal`.
    pub(crate) fn new(ordinal: u32) -> Self {
        KernelConverter {
            ordinal,
            unavailable: AtomicBool::new(false),
        }
    }

    /// What a failure to load the kernels means for a conversion: the host
    /// path (from now on) when they cannot be compiled here, an error
    /// otherwise.
    fn load_failed(&self, e: KernelError) -> Result<bool> {
        match e {
            KernelError::NoCompiler(_) | KernelError::Compile { .. } => {
                self.unavailable.store(true, Ordering::Relaxed);
                tracing::warn!(device = self.ordinal, error = %e,
                    "GPU layout kernels unavailable: converting on the host");
                Ok(false)
            }
            e => Err(kernel_err(e)),
        }
    }

    /// What a launch's outcome means for a conversion: done, left to the
    /// host (a pair of layouts the kernels do not take), or an error.
    fn launched(&self, outcome: std::result::Result<(), KernelError>) -> Result<bool> {
        match outcome {
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
        if self.unavailable.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let kernels = match GpuKernels::shared(self.ordinal) {
            Ok(k) => k,
            Err(e) => return self.load_failed(e),
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
        self.launched(kernels.convert(src_layout, src_buf, dst_layout, dst_buf, stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_that_cannot_be_compiled_leave_every_later_conversion_to_the_host() {
        for e in [
            KernelError::NoCompiler("libnvrtc".into()),
            KernelError::Compile {
                arch: "sm_90".into(),
                status: "error".into(),
                log: "bad".into(),
            },
        ] {
            let c = KernelConverter::new(3);
            assert!(!c.load_failed(e).unwrap());
            // Declined at once, without loading anything.
            let l = Layout::row_major(8, &[4, 4]).unwrap();
            let declined = c.convert(
                &l,
                &Layout::column_major(8, &[4, 4]).unwrap(),
                DevicePtr(0),
                DevicePtr(0),
                StreamId(0),
            );
            assert!(!declined.unwrap());
        }
    }

    #[test]
    fn other_load_failures_are_typed_gpu_errors() {
        let c = KernelConverter::new(1);
        for e in [
            KernelError::NoDriver("libcuda".into()),
            KernelError::NoDevice {
                ordinal: 1,
                count: 1,
            },
            KernelError::Driver {
                call: "cuModuleLoadData",
                message: "bad image".into(),
            },
        ] {
            let text = e.to_string();
            match c.load_failed(e) {
                Err(Error::Gpu { call, message }) => {
                    assert_eq!(call, "layout kernel");
                    assert_eq!(message, text);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!c.unavailable.load(Ordering::Relaxed));
    }

    #[test]
    fn launch_outcomes_map_to_done_host_or_typed_errors() {
        let c = KernelConverter::new(0);
        assert!(c.launched(Ok(())).unwrap());
        assert!(!c
            .launched(Err(KernelError::Layout(
                mamba_transforms::Error::NotStrided
            )))
            .unwrap());
        assert!(!c
            .launched(Err(KernelError::Unsupported("records".into())))
            .unwrap());
        assert!(matches!(
            c.launched(Err(KernelError::Layout(
                mamba_transforms::Error::NoDimensions
            ))),
            Err(Error::Layout(mamba_transforms::Error::NoDimensions))
        ));
        assert!(matches!(
            c.launched(Err(KernelError::BadAddress { ptr: 1, align: 8 })),
            Err(Error::Gpu {
                call: "layout kernel",
                ..
            })
        ));
        // A launch failure does not turn the kernels off.
        assert!(!c.unavailable.load(Ordering::Relaxed));
    }

    #[test]
    fn without_libcuda_no_device_gets_the_converter_and_it_fails_typed() {
        if super::super::driver_present() {
            eprintln!("skipped: libcuda is present (this checks machines without it)");
            return;
        }
        assert!(matches!(super::super::cuda_gpu(0), Err(Error::NoGpu(_))));
        let c = KernelConverter::new(0);
        let l = Layout::row_major(8, &[4, 4]).unwrap();
        let r = c.convert(
            &l,
            &Layout::column_major(8, &[4, 4]).unwrap(),
            DevicePtr(0),
            DevicePtr(0),
            StreamId(0),
        );
        assert!(matches!(r, Err(Error::Gpu { .. })), "{r:?}");
    }
}
