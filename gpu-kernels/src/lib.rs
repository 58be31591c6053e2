//! GPU versions of the `mamba-transforms` layout kernels, for CUDA and HIP.
//!
//! The kernels are CUDA C source compiled at run time: with NVRTC to a
//! cubin for the device's own compute capability (CUDA), or with hiprtc
//! for the current device (HIP). Both the driver and the compiler are
//! loaded dynamically, so the crate builds and its CPU tests run without
//! any GPU software; every entry point returns a [`KernelError`] when the
//! libraries or the device are missing.
//!
//! * [`GpuKernels`]: the kernels loaded on one device
//!   ([`GpuKernels::load`], or [`GpuKernels::shared`] for one instance per
//!   device and process).
//!   [`GpuKernels::convert`] copies a logical array between two strided
//!   [`Layout`]s (transposes, 3D axis permutations, padded <-> dense rows,
//!   strided pack/unpack, reversals, any mix); [`GpuKernels::split`] and
//!   [`GpuKernels::join`] convert arrays of structures to structures of
//!   arrays and back ([`RecordLayout`]); [`GpuKernels::convert_elements`]
//!   converts element types with the semantics of Rust `as` casts
//!   ([`elem`] documents them). Results are meant to be bit-identical to
//!   the CPU kernels of `mamba-transforms`; `tests/kernels.rs` checks that
//!   on a CUDA GPU and `tests/host_source.rs` runs the kernel source on the
//!   host against them.
//! * [`CudaModule`]: a caller's own CUDA C program, compiled with NVRTC
//!   the same way (once per architecture and process) and launched with
//!   the same conventions: one parameter struct of 64-bit words per entry
//!   point, work enqueued on the caller's stream.
//! * [`plan`]: the pure planning layer (which kernel, launch geometry,
//!   packed parameters), unit-tested on the CPU.
//! * [`convert_elements_cpu`]: the CPU reference of the type conversion.
//!
//! Every call validates its input like [`mamba_transforms::CopyPlan::new`]
//! and checks the layouts' required lengths against the buffer lengths the
//! caller passes, before anything is enqueued. Work is enqueued on the
//! caller's stream and is not waited for: the buffers must stay allocated
//! until the stream has run it. The CUDA backend retains the
//! device's primary context when loaded and pushes and pops it around every
//! call, so the caller's current context is left as it was.
//!
//! Tiled (blocked) layouts are not handled by the GPU kernels yet: they
//! are refused with [`mamba_transforms::Error::NotStrided`]. The HIP
//! backend has not run on AMD hardware yet.
//!
//! ```no_run
//! use mamba_gpu_kernels::{DeviceBuffer, GpuKernels};
//! use mamba_transforms::Layout;
//!
//! # fn demo(src: u64, dst: u64) -> Result<(), mamba_gpu_kernels::KernelError> {
//! let kernels = GpuKernels::load(0)?;
//! // Transpose a 1024 x 512 row-major f64 matrix on the default stream.
//! let from = Layout::row_major(8, &[1024, 512])?.permute_axes(&[1, 0])?;
//! let to = Layout::row_major(8, &[512, 1024])?;
//! let bytes = 8 * 1024 * 512;
//! kernels.convert(
//!     &from,
//!     DeviceBuffer { ptr: src, len: bytes },
//!     &to,
//!     DeviceBuffer { ptr: dst, len: bytes },
//!     std::ptr::null_mut(),
//! )?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod cuda;
pub mod elem;
mod error;
mod hip;
pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUstream;
use mamba_transforms::{Layout, RecordLayout};

use backend::Backend;
pub use elem::{convert_elements_cpu, ElemType};
pub use error::KernelError;
pub use hip::HIP_RUNTIME_NAMES;
use plan::{CopyKernel, Launch};

/// The CUDA C source of every kernel (compiled by NVRTC or hiprtc).
pub const SOURCE: &str = include_str!("kernels.cu");

/// The GPU API a [`GpuKernels`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// CUDA: NVRTC and the driver API.
    Cuda,
    /// HIP: hiprtc and the module API (not tested on hardware yet).
    Hip,
}

/// A device buffer: its address and its length in bytes (the allocation
/// the layouts must fit in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceBuffer {
    /// Device address of the first byte.
    pub ptr: u64,
    /// Length in bytes.
    pub len: usize,
}

/// The layout kernels loaded on one device.
pub struct GpuKernels {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for GpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuKernels")
            .field("api", &self.api())
            .finish()
    }
}

impl GpuKernels {
    /// Loads the kernels on device `device_ordinal`: CUDA when libcuda is
    /// present and has devices, otherwise HIP when libamdhip64 is. The compiled code is
    /// cached per architecture for the life of the process.
    ///
    /// # Errors
    ///
    /// [`KernelError::NoDriver`] without either runtime,
    /// [`KernelError::NoCompiler`] without libnvrtc / libhiprtc,
    /// [`KernelError::NoDevice`] for an ordinal past the device count,
    /// [`KernelError::Compile`] with the compiler's log, and
    /// [`KernelError::Driver`] when loading the module fails.
    pub fn load(device_ordinal: u32) -> Result<Self, KernelError> {
        if cuda::driver_present() {
            match cuda::CudaBackend::load(device_ordinal) {
                Ok(b) => return Ok(Self::with_backend(Box::new(b))),
                // A CUDA driver without any CUDA device (cuInit fails with
                // no device) leaves the HIP runtime to try.
                Err(KernelError::NoDevice { count: 0, .. })
                | Err(KernelError::Driver { call: "cuInit", .. })
                    if hip::runtime_present() => {}
                Err(e) => return Err(e),
            }
        }
        if hip::runtime_present() {
            return Ok(Self::with_backend(Box::new(hip::HipBackend::load(
                device_ordinal,
            )?)));
        }
        Err(KernelError::NoDriver(
            "neither the CUDA driver (libcuda) nor the HIP runtime (libamdhip64) can be loaded"
                .into(),
        ))
    }

    /// The kernels of device `device_ordinal` loaded once for the whole
    /// process: the first call loads them like [`GpuKernels::load`], later
    /// calls return the same instance (its module and primary context stay
    /// loaded until the process exits). A failed load is not remembered.
    ///
    /// # Errors
    ///
    /// As [`GpuKernels::load`].
    pub fn shared(device_ordinal: u32) -> Result<Arc<Self>, KernelError> {
        static LOADED: OnceLock<Mutex<HashMap<u32, Arc<GpuKernels>>>> = OnceLock::new();
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(k) = loaded.get(&device_ordinal) {
            return Ok(k.clone());
        }
        let k = Arc::new(Self::load(device_ordinal)?);
        loaded.insert(device_ordinal, k.clone());
        Ok(k)
    }

    fn with_backend(backend: Box<dyn Backend>) -> Self {
        GpuKernels { backend }
    }

    /// The API the kernels run on.
    pub fn api(&self) -> Api {
        self.backend.api()
    }

    /// Copies the logical array of layout `src` in buffer `src_buf` to
    /// layout `dst` in `dst_buf`, enqueued on `stream` (a `CUstream`, or a
    /// `hipStream_t` for HIP; null is the default stream).
    ///
    /// # Errors
    ///
    /// Everything [`mamba_transforms::CopyPlan::new`] refuses, layouts
    /// longer than their buffers ([`mamba_transforms::Error::OutOfBounds`]),
    /// tiled layouts, null addresses, and launch failures.
    pub fn convert(
        &self,
        src: &Layout,
        src_buf: DeviceBuffer,
        dst: &Layout,
        dst_buf: DeviceBuffer,
        stream: CUstream,
    ) -> Result<(), KernelError> {
        let launch = copy_launch(src, src_buf, dst, dst_buf)?;
        self.run(&launch, stream)
    }

    /// Splits `count` records stored back to back in `aos` into one array
    /// per field of `record` (`fields[f]` receives `count` values of field
    /// `f`), like [`RecordLayout::split`].
    ///
    /// # Errors
    ///
    /// A wrong number of field buffers
    /// ([`mamba_transforms::Error::BufferCount`]), buffers too short for
    /// `count` records or values, null addresses, launch failures. Nothing
    /// is enqueued unless every check passes.
    pub fn split(
        &self,
        record: &RecordLayout,
        count: usize,
        aos: DeviceBuffer,
        fields: &[DeviceBuffer],
        stream: CUstream,
    ) -> Result<(), KernelError> {
        let launches = record_launches(record, count, aos, fields, Direction::Split)?;
        launches.iter().try_for_each(|l| self.run(l, stream))
    }

    /// Joins one array per field of `record` into `count` records in
    /// `aos`, like [`RecordLayout::join`]: bytes no field covers are
    /// written as zero.
    ///
    /// # Errors
    ///
    /// As [`GpuKernels::split`].
    pub fn join(
        &self,
        record: &RecordLayout,
        count: usize,
        fields: &[DeviceBuffer],
        aos: DeviceBuffer,
        stream: CUstream,
    ) -> Result<(), KernelError> {
        let launches = record_launches(record, count, aos, fields, Direction::Join)?;
        let covered: usize = record.fields().iter().map(|f| f.size).sum();
        if count > 0 && covered < record.size() {
            self.backend.zero(aos.ptr, count * record.size(), stream)?;
        }
        launches.iter().try_for_each(|l| self.run(l, stream))
    }

    /// Converts `count` elements of type `from` in `src` to type `to` in
    /// `dst` with the semantics of Rust `as` casts (see [`elem`]), enqueued
    /// on `stream`. Both arrays are dense.
    ///
    /// # Errors
    ///
    /// Buffers shorter than `count` elements
    /// ([`mamba_transforms::Error::OutOfBounds`]), null addresses or
    /// addresses not aligned to their element size, launch failures.
    pub fn convert_elements(
        &self,
        from: ElemType,
        to: ElemType,
        count: usize,
        src: DeviceBuffer,
        dst: DeviceBuffer,
        stream: CUstream,
    ) -> Result<(), KernelError> {
        let launch = convert_launch(from, to, count, src, dst)?;
        match launch {
            Some(l) => self.run(&l, stream),
            None => Ok(()),
        }
    }

    fn run(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError> {
        tracing::trace!(
            kernel = launch.kernel,
            grid = ?launch.grid,
            block = ?launch.block,
            "launch"
        );
        self.backend.launch(launch, stream)
    }
}

/// A caller's CUDA C program compiled with NVRTC for one CUDA device and
/// loaded into its primary context (retained while the module lives).
/// The cubin is cached per architecture, source and options for the life
/// of the process, so that loading the same program on a second device of
/// the same architecture does not compile it again.
///
/// Every entry point takes one parameter: a struct of 64-bit words, which
/// [`CudaModule::launch`] passes from [`plan::Launch::params`].
pub struct CudaModule {
    module: cuda::Module,
    name: String,
}

impl std::fmt::Debug for CudaModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaModule")
            .field("name", &self.name)
            .finish()
    }
}

impl CudaModule {
    /// Compiles `source` (program name `name`, shown in compiler
    /// messages) for the compute capability of CUDA device
    /// `device_ordinal` with the NVRTC `options` (the architecture is
    /// added), loads it and looks up the entry points `kernels`
    /// (`extern "C"` names).
    ///
    /// # Errors
    ///
    /// [`KernelError::NoDriver`] without libcuda,
    /// [`KernelError::NoCompiler`] without libnvrtc,
    /// [`KernelError::NoDevice`] for an ordinal past the device count,
    /// [`KernelError::Compile`] with the compiler's log,
    /// [`KernelError::Unsupported`] for a NUL byte in the source or a name,
    /// and [`KernelError::Driver`] when loading the module or looking up
    /// an entry point fails.
    pub fn load(
        device_ordinal: u32,
        name: &str,
        source: &str,
        options: &[&str],
        kernels: &[&'static str],
    ) -> Result<Self, KernelError> {
        let program = cuda::Program {
            name,
            source,
            options,
        };
        Ok(CudaModule {
            module: cuda::Module::load(device_ordinal, program, kernels)?,
            name: name.to_owned(),
        })
    }

    /// Enqueues `launch` on `stream` (a `CUstream` of the module's device,
    /// or null for the default stream) and returns without waiting.
    ///
    /// # Errors
    ///
    /// [`KernelError::Unsupported`] for an entry point not named at load,
    /// [`KernelError::Driver`] when the launch fails.
    ///
    /// # Safety
    ///
    /// `launch.params` must be the parameter struct the entry point
    /// expects, and every device address in it must stay allocated, and
    /// hold what the kernel reads and writes, until `stream` has run it.
    pub unsafe fn launch(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError> {
        tracing::trace!(
            module = self.name,
            kernel = launch.kernel,
            grid = ?launch.grid,
            block = ?launch.block,
            "launch"
        );
        // SAFETY: the caller's contract is the module's.
        unsafe { self.module.launch(launch, stream) }
    }
}

/// Checks a buffer's address: not null, aligned to `align`, and its end
/// inside the address space.
fn check_buffer(buf: DeviceBuffer, align: u64) -> Result<(), KernelError> {
    if buf.ptr == 0 || buf.ptr % align != 0 {
        return Err(KernelError::BadAddress {
            ptr: buf.ptr,
            align,
        });
    }
    buf.ptr
        .checked_add(buf.len as u64)
        .ok_or(mamba_transforms::Error::Overflow)?;
    Ok(())
}

/// Validates a layout copy against its buffers and plans its launch.
fn copy_launch(
    src: &Layout,
    src_buf: DeviceBuffer,
    dst: &Layout,
    dst_buf: DeviceBuffer,
) -> Result<Launch, KernelError> {
    let kernel = CopyKernel::plan(src, dst)?;
    src.check_source(src_buf.len)?;
    dst.check_destination(dst_buf.len)?;
    check_buffer(src_buf, 1)?;
    check_buffer(dst_buf, 1)?;
    Ok(kernel.launch(
        src_buf.ptr + src.offset() as u64,
        dst_buf.ptr + dst.offset() as u64,
    ))
}

#[derive(Clone, Copy)]
enum Direction {
    Split,
    Join,
}

/// One strided copy per field between the records and the field arrays,
/// all validated before any is returned.
fn record_launches(
    record: &RecordLayout,
    count: usize,
    aos: DeviceBuffer,
    fields: &[DeviceBuffer],
    direction: Direction,
) -> Result<Vec<Launch>, KernelError> {
    if fields.len() != record.fields().len() {
        return Err(mamba_transforms::Error::BufferCount {
            expected: record.fields().len(),
            found: fields.len(),
        }
        .into());
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let needed = count
        .checked_mul(record.size())
        .ok_or(mamba_transforms::Error::Overflow)?;
    if aos.len < needed {
        return Err(mamba_transforms::Error::OutOfBounds {
            needed,
            len: aos.len,
        }
        .into());
    }
    let stride = isize::try_from(record.size()).map_err(|_| mamba_transforms::Error::Overflow)?;
    record
        .fields()
        .iter()
        .zip(fields)
        .map(|(f, &buf)| {
            let in_records = Layout::from_byte_strides(f.size, &[count], &[stride], f.offset)?;
            let dense = Layout::row_major(f.size, &[count])?;
            match direction {
                Direction::Split => copy_launch(&in_records, aos, &dense, buf),
                Direction::Join => copy_launch(&dense, buf, &in_records, aos),
            }
        })
        .collect()
}

/// Validates an element conversion and plans its launch (`None`: nothing
/// to convert).
fn convert_launch(
    from: ElemType,
    to: ElemType,
    count: usize,
    src: DeviceBuffer,
    dst: DeviceBuffer,
) -> Result<Option<Launch>, KernelError> {
    elem::check_len(from, count, src.len)?;
    elem::check_len(to, count, dst.len)?;
    check_buffer(src, from.size() as u64)?;
    check_buffer(dst, to.size() as u64)?;
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(plan::convert_launch(
        src.ptr,
        dst.ptr,
        count as u64,
        from,
        to,
    )))
}

#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod fixtures;
#[cfg(test)]
mod tests;
