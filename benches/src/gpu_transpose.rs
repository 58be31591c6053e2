//! `transpose-f64-8192` of the `gpu` family: the tiled transpose kernel of
//! `mamba-gpu-kernels` on an 8192 x 8192 `f64` array against a
//! device-to-device memcpy (`cuMemcpyDtoDAsync`) of the same bytes, in the
//! same run on device 0.
//!
//! Each sample is timed with CUDA events around one launch on the null
//! stream; the medians of interleaved samples are compared. Throughput
//! counts bytes read plus bytes written. The transposed array is checked
//! in full against the CPU transpose of `mamba-transforms` before any
//! figure is reported. The target is a ratio (memcpy time / our time) of at
//! least 0.8.
//!
//! Without a CUDA GPU, [`run`] returns no rows.

use std::time::Duration;

use cudarc::driver::{result, sys};
use mamba_gpu_kernels::{DeviceBuffer, GpuKernels};
use mamba_transforms::Layout;

use crate::{interleaved_medians, Better, Row};

const BENCH: &str = "gpu";
const CASE: &str = "transpose-f64-8192";
const N: usize = 8192;
const ROUNDS: usize = 11;

/// The row, or none without a GPU. A GPU on which the benchmark fails
/// gives no row either; the reason is printed on standard error.
pub fn run() -> Vec<Row> {
    match measure() {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{CASE}: not measured: {e}");
            Vec::new()
        }
    }
}

/// Device memory freed on drop.
struct DevMem(sys::CUdeviceptr);

impl Drop for DevMem {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemAlloc in this module, freed once.
        let _ = unsafe { result::free_sync(self.0) };
    }
}

/// A CUDA event destroyed on drop.
struct Event(sys::CUevent);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by cuEventCreate in this module, destroyed once.
        let _ = unsafe { result::event::destroy(self.0) };
    }
}

/// Formats a failed driver call.
fn err(call: &'static str) -> impl Fn(result::DriverError) -> String {
    move |e| format!("{call}: {e:?}")
}

fn gpu_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    let present = unsafe { sys::is_culib_present() };
    present && result::init().is_ok() && result::device::get_count().is_ok_and(|n| n > 0)
}

fn measure() -> Result<Vec<Row>, String> {
    if !gpu_present() {
        return Ok(Vec::new());
    }
    let kernels = GpuKernels::load(0).map_err(|e| e.to_string())?;
    let dev = result::device::get(0).map_err(err("cuDeviceGet"))?;
    // SAFETY: `dev` came from cuDeviceGet; the retain is kept for the
    // process, like the primary context itself.
    let ctx = unsafe { result::primary_ctx::retain(dev) }.map_err(err("retain"))?;
    // SAFETY: `ctx` is a retained primary context.
    unsafe { result::ctx::set_current(ctx) }.map_err(err("cuCtxSetCurrent"))?;

    let bytes = N * N * 8;
    let host: Vec<f64> = (0..N * N).map(|i| i as f64 * 0.5 - 7.0).collect();
    // SAFETY: plain allocations in the current context, freed by DevMem.
    let src = DevMem(unsafe { result::malloc_sync(bytes) }.map_err(err("cuMemAlloc"))?);
    // SAFETY: as above.
    let dst = DevMem(unsafe { result::malloc_sync(bytes) }.map_err(err("cuMemAlloc"))?);
    // SAFETY: `src` holds `bytes` bytes, the length of `host`.
    unsafe { result::memcpy_htod_sync(src.0, &host) }.map_err(err("cuMemcpyHtoD"))?;

    let from = Layout::row_major(8, &[N, N])
        .and_then(|l| l.permute_axes(&[1, 0]))
        .map_err(|e| e.to_string())?;
    let to = Layout::row_major(8, &[N, N]).map_err(|e| e.to_string())?;
    let stream: sys::CUstream = std::ptr::null_mut();
    let src_buf = DeviceBuffer {
        ptr: src.0,
        len: bytes,
    };
    let dst_buf = DeviceBuffer {
        ptr: dst.0,
        len: bytes,
    };

    // The result, checked in full against the CPU transpose.
    kernels
        .convert(&from, src_buf, &to, dst_buf, stream)
        .map_err(|e| e.to_string())?;
    let mut got = vec![0f64; N * N];
    // SAFETY: `dst` holds `bytes` bytes; the sync copy waits for the kernel
    // on the null stream.
    unsafe { result::memcpy_dtoh_sync(&mut got, dst.0) }.map_err(err("cuMemcpyDtoH"))?;
    let mut expected = vec![0f64; N * N];
    mamba_transforms::transpose(&host, N, N, &mut expected).map_err(|e| e.to_string())?;
    if got
        .iter()
        .zip(&expected)
        .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err("the GPU transpose differs from the CPU transpose".into());
    }

    let flags = sys::CUevent_flags::CU_EVENT_DEFAULT;
    let start = Event(result::event::create(flags).map_err(err("cuEventCreate"))?);
    let end = Event(result::event::create(flags).map_err(err("cuEventCreate"))?);
    let mut ours = || {
        kernels
            .convert(&from, src_buf, &to, dst_buf, stream)
            .map_err(|e| e.to_string())
    };
    let mut peer = || {
        // SAFETY: both buffers hold `bytes` bytes.
        unsafe { result::memcpy_dtod_async(dst.0, src.0, bytes, stream) }
            .map_err(err("cuMemcpyDtoDAsync"))
    };
    // Warm-up of both sides, then interleaved samples; the first failure
    // is reported instead of a row.
    sample(&start, &end, &mut ours)?;
    sample(&start, &end, &mut peer)?;
    let failure = std::cell::RefCell::new(None);
    let record = |r: Result<Duration, String>| {
        r.unwrap_or_else(|e| {
            failure.borrow_mut().get_or_insert(e);
            Duration::from_secs(1)
        })
    };
    let (o, p) = interleaved_medians(
        ROUNDS,
        || record(sample(&start, &end, &mut ours)),
        || record(sample(&start, &end, &mut peer)),
    );
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    let gbps = |t: Duration| 2.0 * bytes as f64 / t.as_secs_f64() / 1e9;
    Ok(vec![Row::compared(
        BENCH,
        CASE,
        "GB/s",
        Better::Higher,
        gbps(o),
        gbps(p),
        "cuMemcpyDtoD",
    )])
}

/// Times one call of `what` on the null stream with the two events.
fn sample(
    start: &Event,
    end: &Event,
    what: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let stream: sys::CUstream = std::ptr::null_mut();
    // SAFETY: live events of the current context, recorded on the null
    // stream; the elapsed time is read after the end event completed.
    let ms = unsafe {
        result::event::record(start.0, stream).map_err(err("cuEventRecord"))?;
        what()?;
        result::event::record(end.0, stream).map_err(err("cuEventRecord"))?;
        result::event::synchronize(end.0).map_err(err("cuEventSynchronize"))?;
        result::event::elapsed(start.0, end.0).map_err(err("cuEventElapsedTime"))?
    };
    Ok(Duration::from_secs_f64(f64::from(ms) / 1e3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gpu_means_no_rows() {
        if gpu_present() {
            eprintln!("skipped: a GPU is present (the benchmark itself is not a test)");
            return;
        }
        assert!(run().is_empty());
    }
}
