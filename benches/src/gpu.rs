//! `compare gpu`: the GPU data plane against plain CUDA driver copies of
//! the same bytes, measured in the same run.
//!
//! | case | ours | peer |
//! |---|---|---|
//! | `h2d-pinned-256MiB` | `DeviceBuffer::copy_from_pinned` (DMA on mamba's copy stream, event wait) | `cuMemcpyHtoD` from the same pinned buffer |
//! | `d2h-pinned-256MiB` | `DeviceBuffer::copy_to_pinned` | `cuMemcpyDtoH` into a pinned buffer |
//! | `h2d-pageable-256MiB` | `DeviceBuffer::copy_from_host` (pinned staging ring) | `cuMemcpyHtoD` from the same pageable buffer |
//!
//! Throughput is bytes moved (once) per second; medians of interleaved
//! rounds; every case checks the bytes that arrived. Without a CUDA GPU the
//! family prints one line saying so and no rows.
//!
//! To add a case, add a function `fn(&Setup) -> Row` to [`CASES`]. The
//! rows of [`gpu_pool`](crate::gpu_pool) (`device-alloc-free-1MiB`) and
//! [`gpu_transpose`](crate::gpu_transpose) (`transpose-f64-8192`) follow.

use std::time::{Duration, Instant};

use cudarc::driver::{result, sys};
use mamba::gpu::{cuda_gpu, DeviceBuffer, GpuDevice, PinnedBuffer};

use crate::{interleaved_medians, Better, Row};

const BENCH: &str = "gpu";
const ROUNDS: usize = 7;
const MIB_256: usize = 256 << 20;

/// What every case gets: mamba's device 0, with the device's primary
/// context current on this thread for the plain driver calls of the peers.
pub struct Setup {
    /// Mamba's view of CUDA device 0.
    pub gpu: std::sync::Arc<GpuDevice>,
}

/// One case: measures ours and the peer and returns the row.
pub type Case = fn(&Setup) -> Row;

/// The cases, in the order they run.
pub const CASES: &[Case] = &[h2d_pinned, d2h_pinned, h2d_pageable];

/// Runs every case on CUDA device 0; no rows (and one line saying why)
/// without one.
pub fn run() -> Vec<Row> {
    let setup = match setup() {
        Ok(s) => s,
        Err(why) => {
            println!("gpu: no CUDA GPU found ({why}); nothing to measure");
            return Vec::new();
        }
    };
    let mut rows: Vec<Row> = CASES.iter().map(|case| case(&setup)).collect();
    rows.extend(crate::gpu_pool::run());
    rows.extend(crate::gpu_transpose::run());
    rows
}

fn setup() -> Result<Setup, String> {
    let gpu = cuda_gpu(0).map_err(|e| e.to_string())?;
    // The peers are plain driver calls: they need a current context.
    let dev = result::device::get(0).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `dev` comes from cuDeviceGet; the context stays retained for
    // the life of the process (a benchmark run).
    let ctx = unsafe { result::primary_ctx::retain(dev) }.map_err(|e| format!("{e:?}"))?;
    // SAFETY: a retained context.
    unsafe { result::ctx::set_current(ctx) }.map_err(|e| format!("{e:?}"))?;
    Ok(Setup { gpu })
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn timed(mut f: impl FnMut()) -> impl FnMut() -> Duration {
    move || {
        let t = Instant::now();
        f();
        t.elapsed()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn pinned_with(setup: &Setup, bytes: &[u8]) -> PinnedBuffer {
    let mut p = setup.gpu.alloc_pinned(bytes.len()).expect("pinned buffer");
    p.as_mut_slice().copy_from_slice(bytes);
    p
}

/// The device bytes, read back with a plain driver copy.
fn device_bytes(buf: &DeviceBuffer) -> Vec<u8> {
    let mut out = vec![0u8; buf.len()];
    // SAFETY: `out` is `buf.len()` writable bytes; the copy is synchronous.
    unsafe { result::memcpy_dtoh_sync(&mut out, buf.ptr().0) }.expect("cuMemcpyDtoH");
    out
}

fn row(case: &str, ours: Duration, peer: Duration, peer_name: &str) -> Row {
    Row::compared(
        BENCH,
        case,
        "GB/s",
        Better::Higher,
        gbps(MIB_256, ours),
        gbps(MIB_256, peer),
        peer_name,
    )
}

fn h2d_pinned(setup: &Setup) -> Row {
    let src = pattern(MIB_256, 1);
    let pinned = pinned_with(setup, &src);
    let mut ours = setup.gpu.alloc(MIB_256).expect("device buffer");
    let peer = setup.gpu.alloc(MIB_256).expect("device buffer");
    let (o, p) = interleaved_medians(
        ROUNDS,
        timed(|| ours.copy_from_pinned(&pinned).expect("our copy")),
        timed(|| {
            // SAFETY: both buffers are 256 MiB and live; synchronous copy.
            unsafe {
                sys::cuMemcpyHtoD_v2(peer.ptr().0, pinned.as_slice().as_ptr().cast(), MIB_256)
            }
            .result()
            .expect("cuMemcpyHtoD")
        }),
    );
    assert!(device_bytes(&ours) == src, "our h2d copy is wrong");
    assert!(device_bytes(&peer) == src, "the peer's h2d copy is wrong");
    row("h2d-pinned-256MiB", o, p, "cuMemcpyHtoD pinned")
}

fn d2h_pinned(setup: &Setup) -> Row {
    let src = pattern(MIB_256, 2);
    let mut dev = setup.gpu.alloc(MIB_256).expect("device buffer");
    dev.copy_from_host(&src).expect("fill");
    let mut ours = setup.gpu.alloc_pinned(MIB_256).expect("pinned buffer");
    let mut peer = setup.gpu.alloc_pinned(MIB_256).expect("pinned buffer");
    let (o, p) = interleaved_medians(
        ROUNDS,
        timed(|| dev.copy_to_pinned(&mut ours).expect("our copy")),
        timed(|| {
            let out = peer.as_mut_slice();
            // SAFETY: both buffers are 256 MiB and live; synchronous copy.
            unsafe { sys::cuMemcpyDtoH_v2(out.as_mut_ptr().cast(), dev.ptr().0, MIB_256) }
                .result()
                .expect("cuMemcpyDtoH")
        }),
    );
    assert!(ours.as_slice() == src, "our d2h copy is wrong");
    assert!(peer.as_slice() == src, "the peer's d2h copy is wrong");
    row("d2h-pinned-256MiB", o, p, "cuMemcpyDtoH pinned")
}

fn h2d_pageable(setup: &Setup) -> Row {
    let src = pattern(MIB_256, 3);
    let mut ours = setup.gpu.alloc(MIB_256).expect("device buffer");
    let peer = setup.gpu.alloc(MIB_256).expect("device buffer");
    let (o, p) = interleaved_medians(
        ROUNDS,
        timed(|| ours.copy_from_host(&src).expect("our copy")),
        timed(|| {
            // SAFETY: both buffers are 256 MiB and live; synchronous copy.
            unsafe { sys::cuMemcpyHtoD_v2(peer.ptr().0, src.as_ptr().cast(), MIB_256) }
                .result()
                .expect("cuMemcpyHtoD")
        }),
    );
    assert!(device_bytes(&ours) == src, "our staged h2d copy is wrong");
    assert!(device_bytes(&peer) == src, "the peer's h2d copy is wrong");
    row("h2d-pageable-256MiB", o, p, "cuMemcpyHtoD pageable")
}
