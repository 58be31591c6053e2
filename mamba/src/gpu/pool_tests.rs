//! The pool's rules, checked against the [`SimDevice`] test double, whose
//! streams run only when something forces them.

use super::*;
use crate::gpu::SimDevice;

const KIB: usize = 1 << 10;

fn pool_on(sim: &SimDevice, settings: DevicePoolSettings) -> DevicePool {
    DevicePool::new(Arc::new(sim.clone()), settings).unwrap()
}

/// Enqueues a copy into `ptr` on `stream` that stays pending until the
/// stream is forced; the caller keeps `host` alive until then.
fn pending_write(sim: &SimDevice, ptr: DevicePtr, host: &[u8], stream: StreamId) {
    // SAFETY: `host` outlives the copy (the tests synchronize before it
    // goes) and `ptr` holds at least `host.len()` bytes.
    unsafe { sim.copy_htod_async(ptr, host.as_ptr(), host.len(), stream) }.unwrap();
}

#[test]
fn a_block_freed_on_a_stream_is_reused_by_that_stream_without_waiting() {
    let sim = SimDevice::new();
    let pool = pool_on(&sim, DevicePoolSettings::default());
    let s = sim.create_stream().unwrap();
    let host = vec![7u8; 4 * KIB];
    let a = pool.alloc(4 * KIB, s).unwrap();
    pending_write(&sim, a, &host, s);
    // SAFETY: later work on `s` is ordered after the pending copy.
    unsafe { pool.free(a, s).unwrap() };
    let b = pool.alloc(4 * KIB, s).unwrap();
    assert_eq!(a, b);
    // Nothing ran and nothing was enqueued: no event, no wait.
    assert_eq!(sim.pending(s).unwrap(), 1);
    assert_eq!(sim.stats().allocs, 1);
    let st = pool.stats();
    assert_eq!(
        (st.hits, st.misses, st.in_use, st.cached),
        (1, 1, 4 * KIB, 0)
    );
    sim.synchronize().unwrap();
}

#[test]
fn another_stream_reuses_a_block_only_after_the_event_at_its_free_completed() {
    let sim = SimDevice::new();
    let pool = pool_on(&sim, DevicePoolSettings::default());
    let (s, t) = (sim.create_stream().unwrap(), sim.create_stream().unwrap());
    let host = vec![1u8; 4 * KIB];
    let a = pool.alloc(4 * KIB, s).unwrap();
    // Two pending operations: querying the fence runs at most one.
    pending_write(&sim, a, &host, s);
    pending_write(&sim, a, &host, s);
    // SAFETY: no later work uses `a` except through the pool.
    unsafe { pool.free(a, s).unwrap() };
    let b = pool.alloc(4 * KIB, t).unwrap();
    assert_ne!(
        a, b,
        "reused before the work on the freeing stream finished"
    );
    assert_eq!(pool.stats().misses, 2);
    assert!(sim.pending(s).unwrap() > 0);
    sim.synchronize_stream(s).unwrap();
    let c = pool.alloc(4 * KIB, t).unwrap();
    assert_eq!(
        a, c,
        "the fence completed: the block is free for every stream"
    );
    let st = pool.stats();
    assert_eq!((st.hits, st.misses, st.cached), (1, 2, 0));
}

#[test]
fn sizes_are_rounded_and_larger_cached_blocks_are_split_within_the_bound() {
    let sim = SimDevice::new();
    let pool = pool_on(
        &sim,
        DevicePoolSettings {
            split_bound: 4,
            ..DevicePoolSettings::default()
        },
    );
    let s = sim.create_stream().unwrap();
    let one = pool.alloc(1, s).unwrap();
    assert_eq!(pool.stats().in_use, 512);
    let large = pool.alloc((1 << 20) + 1, s).unwrap();
    assert_eq!(pool.stats().in_use, 512 + (1 << 20) + (128 << 10));
    let big = pool.alloc(4 * KIB, s).unwrap();
    // SAFETY: none of these is used again.
    unsafe {
        pool.free(one, s).unwrap();
        pool.free(large, s).unwrap();
        pool.free(big, s).unwrap();
    }
    // 1 KiB from the 4 KiB block (within 4x), the 3 KiB rest stays cached.
    let part = pool.alloc(KIB, s).unwrap();
    assert_eq!(part, big);
    let rest = pool.alloc(3 * KIB, s).unwrap();
    assert_eq!(rest, big.offset(KIB).unwrap());
    // 512 bytes: the 512-byte block fits exactly.
    assert_eq!(pool.alloc(512, s).unwrap(), one);
    // 256 KiB: the 1.125 MiB block is 4.5 times that, beyond the bound.
    let miss = pool.alloc(256 * KIB, s).unwrap();
    assert_ne!(miss, large);
    let st = pool.stats();
    assert_eq!((st.hits, st.misses, st.segments), (3, 4, 4));
    assert_eq!(st.cached, (1 << 20) + (128 << 10));
}

#[test]
fn an_allocation_over_capacity_trims_unused_segments_and_retries() {
    let sim = SimDevice::new();
    let pool = pool_on(
        &sim,
        DevicePoolSettings {
            capacity: 8 * KIB,
            split_bound: 1,
        },
    );
    let s = sim.create_stream().unwrap();
    let a = pool.alloc(4 * KIB, s).unwrap();
    let b = pool.alloc(2 * KIB, s).unwrap();
    // SAFETY: neither is used again.
    unsafe {
        pool.free(a, s).unwrap();
        pool.free(b, s).unwrap();
    }
    // 8 KiB does not fit next to 6 KiB cached: both segments go back.
    let c = pool.alloc(8 * KIB, s).unwrap();
    let st = pool.stats();
    assert_eq!(
        (st.trims, st.trimmed, st.segments, st.in_use, st.cached),
        (1, 6 * KIB, 1, 8 * KIB, 0)
    );
    assert_eq!(sim.stats().live_bytes, 8 * KIB as u64);
    // Full and nothing to trim: a typed error, the pool unchanged.
    match pool.alloc(512, s) {
        Err(Error::Exhausted { .. }) => {}
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(pool.stats(), st);
    // SAFETY: `c` is not used again.
    unsafe { pool.free(c, s).unwrap() };
}

#[test]
fn trimming_keeps_segments_with_a_block_in_use() {
    let sim = SimDevice::new();
    let pool = pool_on(&sim, DevicePoolSettings::default());
    let s = sim.create_stream().unwrap();
    let whole = pool.alloc(4 * KIB, s).unwrap();
    let lone = pool.alloc(2 * KIB, s).unwrap();
    // SAFETY: neither is used again.
    unsafe {
        pool.free(whole, s).unwrap();
        pool.free(lone, s).unwrap();
    }
    let part = pool.alloc(2 * KIB, s).unwrap();
    assert_eq!(part, lone, "the exact fit first");
    let split = pool.alloc(KIB, s).unwrap();
    assert_eq!(split, whole);
    // `whole`'s segment has a block in use: only nothing else to give back.
    assert_eq!(pool.trim().unwrap(), 0);
    // SAFETY: `split` is not used again.
    unsafe { pool.free(split, s).unwrap() };
    assert_eq!(pool.trim().unwrap(), 4 * KIB);
    let st = pool.stats();
    assert_eq!((st.segments, st.cached, st.in_use), (1, 0, 2 * KIB));
    assert_eq!(sim.stats().live_bytes, 2 * KIB as u64);
    // SAFETY: `part` is not used again.
    unsafe { pool.free(part, s).unwrap() };
}

#[test]
fn statistics_follow_every_operation_exactly() {
    let sim = SimDevice::new();
    let pool = pool_on(&sim, DevicePoolSettings::default());
    let s = sim.create_stream().unwrap();
    let blocks: Vec<DevicePtr> = (0..3).map(|_| pool.alloc(KIB, s).unwrap()).collect();
    // SAFETY: none is used again.
    unsafe {
        for &b in &blocks {
            pool.free(b, s).unwrap();
        }
    }
    let again = pool.alloc(KIB, s).unwrap();
    assert_eq!(
        pool.stats(),
        DevicePoolStats {
            in_use: KIB,
            cached: 2 * KIB,
            high_water: 3 * KIB,
            hits: 1,
            misses: 3,
            trims: 0,
            trimmed: 0,
            segments: 3,
        }
    );
    assert_eq!(pool.trim().unwrap(), 2 * KIB);
    let st = pool.stats();
    assert_eq!(
        (st.cached, st.high_water, st.trims, st.trimmed, st.segments),
        (0, 3 * KIB, 1, 2 * KIB, 1)
    );
    // SAFETY: `again` is not used again.
    unsafe { pool.free(again, s).unwrap() };
}

#[test]
fn bad_input_is_a_typed_error_and_leaves_the_pool_intact() {
    let sim = SimDevice::new();
    let pool = pool_on(&sim, DevicePoolSettings::default());
    let s = sim.create_stream().unwrap();
    let a = pool.alloc(KIB, s).unwrap();
    let before = pool.stats();
    assert!(matches!(pool.alloc(0, s), Err(Error::ZeroSize)));
    assert!(matches!(
        pool.alloc(usize::MAX - 3, s),
        Err(Error::SizeTooLarge { .. })
    ));
    // SAFETY: a pointer the pool never handed out; nothing is freed.
    let foreign = unsafe { pool.free(a.offset(512).unwrap(), s) };
    assert!(matches!(foreign, Err(Error::Gpu { .. })), "{foreign:?}");
    let other = SimDevice::new();
    let alien = other.create_stream().unwrap();
    assert!(
        pool.alloc(KIB, alien).is_err(),
        "a stream of another device"
    );
    assert_eq!(pool.stats(), before);
    // SAFETY: `a` is not used again.
    unsafe { pool.free(a, s).unwrap() };
    // SAFETY: already freed: refused.
    assert!(unsafe { pool.free(a, s) }.is_err());
    assert!(DevicePool::new(
        Arc::new(sim.clone()),
        DevicePoolSettings {
            split_bound: 0,
            ..DevicePoolSettings::default()
        }
    )
    .is_err());
}

#[test]
fn dropping_the_pool_gives_its_memory_back() {
    let sim = SimDevice::new();
    let s = sim.create_stream().unwrap();
    {
        let pool = pool_on(&sim, DevicePoolSettings::default());
        let a = pool.alloc(64 * KIB, s).unwrap();
        // SAFETY: `a` is not used again.
        unsafe { pool.free(a, s).unwrap() };
        assert_eq!(sim.stats().live_bytes, 64 * KIB as u64);
    }
    assert_eq!(sim.stats().live_bytes, 0);
}

#[test]
fn a_full_device_space_falls_back_by_placement_policy() {
    use crate::pool::{Pool, PoolSettings};
    use crate::provider::NumaProvider;
    use crate::sys::NumaMode;
    use crate::tier::{SpaceInfo, Tier};
    use crate::{Mamba, Policy};

    let space = |id: u32, name: &str, tier: Tier, host: bool| {
        SpaceInfo::unbound(id, name, tier, None, host, usize::MAX / 4)
    };
    let settings = PoolSettings {
        chunk_size: 256 * KIB,
        ..PoolSettings::default()
    };
    let sim = SimDevice::new();
    // The device has room for 512 KiB: the pool's capacity plays the GPU.
    let device = pool_on(
        &sim,
        DevicePoolSettings {
            capacity: 512 * KIB,
            ..DevicePoolSettings::default()
        },
    );
    let m = Mamba::from_pools(vec![
        Pool::new(
            space(0, "gpu0", Tier::Gpu, false),
            Box::new(device),
            settings,
        ),
        Pool::new(
            space(1, "dram0", Tier::Dram, true),
            Box::new(NumaProvider::new(None, NumaMode::Default, false)),
            settings,
        ),
    ])
    .unwrap();
    let policy = Policy::prefer(Tier::Gpu).or(Tier::Dram);
    let on_gpu: Vec<_> = (0..2)
        .map(|_| m.allocate(200 * KIB, 512, &policy).unwrap())
        .collect();
    assert!(on_gpu.iter().all(|a| a.space().name == "gpu0"));
    assert!(
        on_gpu.iter().all(|a| a.as_slice().is_err()),
        "device memory is not host memory"
    );
    let spilled = m.allocate(200 * KIB, 512, &policy).unwrap();
    assert_eq!(spilled.space().name, "dram0");
    match m.allocate(200 * KIB, 512, &Policy::require(Tier::Gpu)) {
        Err(Error::OutOfCapacity { name, .. }) => assert_eq!(name, "gpu0"),
        other => panic!("expected OutOfCapacity, got {other:?}"),
    }
    assert_eq!(sim.stats().live_bytes, 512 * KIB as u64);
}

#[test]
fn aligned_addresses_spread_over_the_low_bits_of_their_hashes() {
    use std::hash::Hash;
    let low: std::collections::HashSet<u64> = (0..1024u64)
        .map(|i| {
            let mut h = IdHasher::default();
            (0xD000_0000_0000_0000 + i * 512).hash(&mut h);
            h.finish() & 1023
        })
        .collect();
    // A hash that kept the alignment's zero bits would give at most 2.
    assert!(low.len() > 512, "{} distinct buckets of 1024", low.len());
}
