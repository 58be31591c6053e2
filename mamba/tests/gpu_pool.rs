//! Device pools, GPU locality and pinned capacity on a real CUDA GPU. Each
//! test skips with a printed reason where no CUDA device is found.

use mamba::gpu::{CudaRuntime, DevicePool, DevicePoolSettings, DevicePtr, DeviceRuntime};
use mamba::provider::cuda_devices;
use mamba::{Config, Error, Mamba, Tier};
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn gpu() -> Option<Arc<CudaRuntime>> {
    match cuda_devices() {
        Ok(d) if !d.is_empty() => {}
        Ok(_) => {
            eprintln!("skipped: the CUDA driver reports no device");
            return None;
        }
        Err(e) => {
            eprintln!("skipped: no CUDA GPU ({e})");
            return None;
        }
    }
    match CudaRuntime::new(0) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            eprintln!("skipped: CUDA device 0 is unusable ({e})");
            None
        }
    }
}

/// Writes `bytes` to `ptr` on `stream` and waits.
fn write(rt: &CudaRuntime, ptr: DevicePtr, bytes: &[u8], stream: mamba::gpu::StreamId) {
    // SAFETY: `bytes` lives until the stream is synchronized below; `ptr`
    // holds at least `bytes.len()` bytes.
    unsafe { rt.copy_htod_async(ptr, bytes.as_ptr(), bytes.len(), stream) }.unwrap();
    rt.synchronize_stream(stream).unwrap();
}

/// Reads `len` bytes at `ptr` on `stream`.
fn read(rt: &CudaRuntime, ptr: DevicePtr, len: usize, stream: mamba::gpu::StreamId) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: `out` lives until the stream is synchronized below.
    unsafe { rt.copy_dtoh_async(out.as_mut_ptr(), ptr, len, stream) }.unwrap();
    rt.synchronize_stream(stream).unwrap();
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn blocks_are_reused_on_their_stream_and_keep_what_is_written() {
    let Some(rt) = gpu() else { return };
    let pool = DevicePool::new(rt.clone(), DevicePoolSettings::default()).unwrap();
    let s = rt.create_stream().unwrap();
    let a = pool.alloc(MIB, s).unwrap();
    write(&rt, a, &pattern(MIB, 1), s);
    assert_eq!(read(&rt, a, MIB, s), pattern(MIB, 1));
    // SAFETY: `a` is not used after the free.
    unsafe { pool.free(a, s).unwrap() };
    let b = pool.alloc(MIB, s).unwrap();
    assert_eq!(a, b);
    write(&rt, b, &pattern(MIB, 2), s);
    assert_eq!(read(&rt, b, MIB, s), pattern(MIB, 2));
    let st = pool.stats();
    assert_eq!((st.hits, st.misses, st.in_use, st.cached), (1, 1, MIB, 0));
    // SAFETY: `b` is not used after the free.
    unsafe { pool.free(b, s).unwrap() };
    assert_eq!(pool.trim().unwrap(), MIB);
    rt.destroy_stream(s).unwrap();
}

#[test]
fn another_stream_reuses_a_block_once_the_freeing_stream_is_done() {
    let Some(rt) = gpu() else { return };
    let pool = DevicePool::new(rt.clone(), DevicePoolSettings::default()).unwrap();
    let (s, t) = (rt.create_stream().unwrap(), rt.create_stream().unwrap());
    let a = pool.alloc(4 * MIB, s).unwrap();
    write(&rt, a, &pattern(4 * MIB, 3), s);
    // SAFETY: `a` is not used after the free.
    unsafe { pool.free(a, s).unwrap() };
    rt.synchronize_stream(s).unwrap();
    let b = pool.alloc(4 * MIB, t).unwrap();
    assert_eq!(a, b, "the fence after the free completed");
    write(&rt, b, &pattern(4 * MIB, 4), t);
    assert_eq!(read(&rt, b, 4 * MIB, t), pattern(4 * MIB, 4));
    assert_eq!(pool.stats().hits, 1);
    // SAFETY: `b` is not used after the free.
    unsafe { pool.free(b, t).unwrap() };
    drop(pool);
    rt.destroy_stream(s).unwrap();
    rt.destroy_stream(t).unwrap();
}

#[test]
fn pressure_trims_and_an_impossible_request_is_exhausted() {
    let Some(rt) = gpu() else { return };
    let total = cuda_devices().unwrap()[0].total_memory;
    let pool = DevicePool::new(
        rt.clone(),
        DevicePoolSettings {
            capacity: 8 * MIB,
            split_bound: 1,
        },
    )
    .unwrap();
    let s = rt.create_stream().unwrap();
    let a = pool.alloc(6 * MIB, s).unwrap();
    // SAFETY: `a` is not used after the free.
    unsafe { pool.free(a, s).unwrap() };
    let b = pool.alloc(8 * MIB, s).unwrap();
    let st = pool.stats();
    assert_eq!((st.trims, st.trimmed, st.segments), (1, 6 * MIB, 1));
    // SAFETY: `b` is not used after the free.
    unsafe { pool.free(b, s).unwrap() };
    drop(pool);

    let unbounded = DevicePool::new(rt.clone(), DevicePoolSettings::default()).unwrap();
    match unbounded.alloc(total + (1 << 30), s) {
        Err(Error::Exhausted { .. }) => {}
        other => panic!("expected Exhausted for more than the device has, got {other:?}"),
    }
    let c = unbounded.alloc(MIB, s).unwrap();
    write(&rt, c, &pattern(MIB, 5), s);
    assert_eq!(read(&rt, c, MIB, s), pattern(MIB, 5));
    // SAFETY: `c` is not used after the free.
    unsafe { unbounded.free(c, s).unwrap() };
    drop(unbounded);
    rt.destroy_stream(s).unwrap();
}

/// A space backed by a device pool on the real GPU: full at the pool's
/// capacity with the typed error placement falls back on (the fallback
/// itself is tested with the SimDevice double).
#[test]
fn a_device_pool_space_is_full_at_its_capacity() {
    use mamba::{Backing, Policy, Pool, PoolSettings, SpaceId, SpaceInfo};
    let Some(rt) = gpu() else { return };
    let info = SpaceInfo {
        id: SpaceId(0),
        name: "gpu0".into(),
        tier: Tier::Gpu,
        capacity: usize::MAX / 4,
        numa_node: None,
        device: Some(0),
        cpus: Vec::new(),
        bandwidth_mib_s: None,
        latency_ns: None,
        host_accessible: false,
        persistent: false,
        backing: Backing::Cuda { device: 0 },
    };
    let device = DevicePool::new(
        rt.clone(),
        DevicePoolSettings {
            capacity: 64 * MIB,
            ..DevicePoolSettings::default()
        },
    )
    .unwrap();
    let settings = PoolSettings {
        chunk_size: 32 * MIB,
        ..PoolSettings::default()
    };
    let m = Mamba::from_pools(vec![Pool::new(info, Box::new(device), settings)]).unwrap();
    let policy = Policy::require(Tier::Gpu);
    let blocks: Vec<_> = (0..2)
        .map(|_| m.allocate(30 * MIB, 512, &policy).unwrap())
        .collect();
    match m.allocate(30 * MIB, 512, &policy) {
        Err(Error::OutOfCapacity { name, .. }) => assert_eq!(name, "gpu0"),
        other => panic!("expected OutOfCapacity, got {other:?}"),
    }
    // The blocks are real device memory: a copy round trip works.
    let s = rt.create_stream().unwrap();
    let at = DevicePtr(blocks[1].addr() as u64);
    write(&rt, at, &pattern(MIB, 6), s);
    assert_eq!(read(&rt, at, MIB, s), pattern(MIB, 6));
    drop(blocks);
    rt.destroy_stream(s).unwrap();
}

fn mem_total() -> usize {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn gpu_and_pinned_spaces_sit_near_the_gpu_with_honest_capacity() {
    if gpu().is_none() {
        return;
    }
    let m = Mamba::discover(&Config::default()).unwrap();
    let nodes: Vec<u32> = m
        .spaces()
        .filter(|s| s.is_node_memory())
        .filter_map(|s| s.numa_node)
        .collect();
    let gpus: Vec<_> = m
        .spaces()
        .filter(|s| s.tier == Tier::Gpu)
        .cloned()
        .collect();
    assert!(!gpus.is_empty());
    for g in &gpus {
        let pinned = m
            .spaces()
            .find(|s| s.tier == Tier::Pinned && s.device == g.device)
            .expect("a pinned space per GPU")
            .clone();
        eprintln!(
            "{}: node {:?}, cpus {}; {}: {} bytes",
            g.name,
            g.numa_node,
            g.cpu_list(),
            pinned.name,
            pinned.capacity
        );
        assert_eq!(g.numa_node, pinned.numa_node);
        assert_eq!(g.cpus, pinned.cpus);
        assert!(!g.cpus.is_empty());
        if let [only] = nodes.as_slice() {
            assert_eq!(g.numa_node, Some(*only), "one NUMA node: it is the GPU's");
        }
        assert!(
            pinned.capacity > 0 && pinned.capacity <= mem_total(),
            "{pinned:?}"
        );
        let mut block = m.pool(pinned.id).unwrap().allocate(4 * MIB, 4096).unwrap();
        block.as_mut_slice().unwrap().fill(0x5A);
        if let Some(node) = pinned.numa_node {
            let loc = m.locate(&block).unwrap();
            assert_eq!(loc.majority_node(), Some(node), "{loc:?}");
        }
    }
}

/// Set in the child process of [`discovery_retains_no_primary_context`].
const CHILD: &str = "MAMBA_GPU_POOL_DISCOVERY_CHILD";

/// Discovery (and creating the allocator) queries devices only: no
/// primary context becomes active. Checked in a fresh process, since the
/// other tests of this binary create contexts.
#[test]
fn discovery_retains_no_primary_context() {
    if std::env::var_os(CHILD).is_none() {
        if gpu().is_none() {
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "discovery_retains_no_primary_context",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}");
        assert!(out.status.success(), "child failed: {text}");
        assert!(
            text.contains("primary contexts active after discovery: 0"),
            "{text}"
        );
        return;
    }
    use cudarc::driver::sys;
    let m = Mamba::discover(&Config::default()).unwrap();
    let count = cuda_devices().unwrap().len();
    let mut active_total = 0;
    for ordinal in 0..count {
        let mut device = 0;
        let mut flags = 0;
        let mut active = 0;
        // SAFETY: plain driver queries writing into our locals; the driver
        // was initialised by discovery.
        unsafe {
            assert_eq!(
                sys::cuDeviceGet(&mut device, ordinal as i32),
                sys::CUresult::CUDA_SUCCESS
            );
            assert_eq!(
                sys::cuDevicePrimaryCtxGetState(device, &mut flags, &mut active),
                sys::CUresult::CUDA_SUCCESS
            );
        }
        active_total += active;
    }
    eprintln!("primary contexts active after discovery: {active_total}");
    assert_eq!(active_total, 0);
    drop(m);
}
