//! `device-alloc-free-1MiB`: alloc+free pairs of 1 MiB of device memory on
//! one stream through mamba's [`DevicePool`] against what a user without a
//! pool does, synchronous `cuMemAlloc`/`cuMemFree` pairs (through mamba's
//! CUDA provider, which pushes and pops the device's primary context around
//! each call), in the same run; medians of interleaved samples, ns per
//! pair. No rows without a CUDA GPU; a failure is one line on stderr and
//! no row. The pool must miss exactly once (the first allocation), or the
//! row is refused.

use crate::{interleaved_medians, Better, Row};
use mamba::gpu::{CudaRuntime, DevicePool, DevicePoolSettings, DeviceRuntime};
use mamba::provider::{cuda_devices, CudaProvider, Provider};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 11;
const SIZE: usize = 1 << 20;
/// Pairs per sample: the pool's are cheap, the driver's are not.
const POOL_PAIRS: u32 = 20_000;
const DRIVER_PAIRS: u32 = 200;

/// The rows of this family; none without a CUDA GPU.
pub fn run() -> Vec<Row> {
    if !cuda_devices().is_ok_and(|devices| !devices.is_empty()) {
        return Vec::new();
    }
    match alloc_free_1mib() {
        Ok(row) => vec![row],
        Err(e) => {
            eprintln!("gpu_pool: device-alloc-free-1MiB failed: {e}");
            Vec::new()
        }
    }
}

fn alloc_free_1mib() -> mamba::Result<Row> {
    let runtime = Arc::new(CudaRuntime::new(0)?);
    let stream = runtime.create_stream()?;
    let pool = DevicePool::new(runtime.clone(), DevicePoolSettings::default())?;
    let driver = CudaProvider::new(0, false)?;
    let mut failure = None;
    let mut ours = || {
        let start = Instant::now();
        for _ in 0..POOL_PAIRS {
            let pair = pool.alloc(SIZE, stream).and_then(|p| {
                black_box(p);
                // SAFETY: nothing uses the block; it goes straight back.
                unsafe { pool.free(p, stream) }
            });
            if let Err(e) = pair {
                failure.get_or_insert(e);
                break;
            }
        }
        start.elapsed() / POOL_PAIRS
    };
    let mut driver_failure = None;
    let mut peer = || {
        let start = Instant::now();
        for _ in 0..DRIVER_PAIRS {
            match driver.acquire(SIZE) {
                Ok(chunk) => {
                    black_box(chunk.addr);
                    // SAFETY: the chunk came from `driver` and is unused.
                    unsafe { driver.release(chunk) };
                }
                Err(e) => {
                    driver_failure.get_or_insert(e);
                    break;
                }
            }
        }
        start.elapsed() / DRIVER_PAIRS
    };
    // Warm both (the pool's first allocation is a miss, the driver's first
    // call retains the context).
    ours();
    peer();
    let (o, p): (Duration, Duration) = interleaved_medians(ROUNDS, &mut ours, &mut peer);
    if let Some(e) = failure.or(driver_failure) {
        return Err(e);
    }
    let stats = pool.stats();
    if stats.misses != 1 {
        return Err(mamba::Error::Gpu {
            call: "DevicePool::alloc",
            message: format!(
                "the pool missed {} times, not once: {stats:?}",
                stats.misses
            ),
        });
    }
    drop(pool);
    runtime.destroy_stream(stream)?;
    Ok(Row::compared(
        "gpu",
        "device-alloc-free-1MiB",
        "ns",
        Better::Lower,
        o.as_nanos() as f64,
        p.as_nanos() as f64,
        "cuMemAlloc+cuMemFree",
    ))
}
