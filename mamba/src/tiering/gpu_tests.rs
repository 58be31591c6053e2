//! GPU spaces in the tier order, on simulated devices: demotion to host
//! memory above the watermark, promotion back to the data's own device,
//! pinning; and the same on a real CUDA device where there is one.

use crate::gpu::{
    DevicePool, DevicePoolSettings, DevicePtr, GpuDevice, RuntimeProvider, SimDevice,
};
use crate::pool::{Pool, PoolSettings};
use crate::provider::{NumaProvider, Provider};
use crate::sys::NumaMode;
use crate::tier::{SpaceId, SpaceInfo, Tier};
use crate::tiering::Direction;
use crate::tiering::Movable;
use crate::{Config, Error, Mamba, Policy, Watermarks};
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn pool(id: u32, tier: Tier, capacity: usize, provider: Box<dyn Provider>) -> Pool {
    let host = tier != Tier::Gpu;
    let name = format!("{tier}{id}");
    Pool::new(
        SpaceInfo::unbound(id, &name, tier, (!host).then_some(id), host, capacity),
        provider,
        PoolSettings {
            chunk_size: MIB,
            ..PoolSettings::default()
        },
    )
}

/// Two simulated GPUs of 4 MiB (spaces 0 and 1, demoting above 2 MiB down
/// to 1 MiB) and 64 MiB of DRAM (space 2).
fn two_gpus_and_dram() -> (Mamba, Vec<SimDevice>) {
    let sims = SimDevice::group(2);
    let gpu = |id: u32| {
        let device = GpuDevice::new(Arc::new(sims[id as usize].clone()));
        pool(
            id,
            Tier::Gpu,
            4 * MIB,
            Box::new(RuntimeProvider::new(device, false)),
        )
    };
    let dram = NumaProvider::new(None, NumaMode::Default, false);
    let m = Mamba::from_pools(vec![
        gpu(0),
        gpu(1),
        pool(2, Tier::Dram, 64 * MIB, Box::new(dram)),
    ])
    .unwrap();
    for g in [SpaceId(0), SpaceId(1)] {
        m.set_watermarks(g, Watermarks::new(0.5, 0.25).unwrap())
            .unwrap();
    }
    (m, sims)
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..MIB).map(|i| (i % 253) as u8 ^ seed).collect()
}

fn contents(data: &Movable) -> Vec<u8> {
    let mut back = vec![0; data.len()];
    data.read(0, &mut back).unwrap();
    back
}

#[test]
fn gpu_data_goes_down_above_the_watermark_and_back_to_its_own_device() {
    let (m, sims) = two_gpus_and_dram();
    let (gpu0, gpu1, dram) = (SpaceId(0), SpaceId(1), SpaceId(2));
    assert!(m.is_tiered());
    let mut data: Vec<Movable> = (0..3)
        .map(|_| m.movable(MIB, &Policy::require(gpu1)).unwrap())
        .collect();
    for (i, d) in data.iter().enumerate() {
        d.write(0, &pattern(i as u8)).unwrap();
    }
    // In device memory: the simulated GPU holds the bytes.
    let on_device = sims[1].peek(DevicePtr(data[0].addr() as u64), MIB).unwrap();
    assert_eq!(on_device, pattern(0));
    for _ in 0..5 {
        data[0].touch();
    }
    assert_eq!(m.movable_bytes(gpu1), 3 * MIB);

    // 3 MiB over the 2 MiB high watermark: the two coldest go to host
    // memory, down to the 1 MiB low watermark; the hot one stays.
    let report = m.rebalance();
    assert_eq!((report.moves, report.failed), (2, 0), "{report:?}");
    assert_eq!(report.demoted_bytes, 2 * MIB as u64);
    let spaces: Vec<SpaceId> = data.iter().map(Movable::space_id).collect();
    assert_eq!(spaces, [gpu1, dram, dram]);
    assert!(m.movable_bytes(gpu1) <= m.watermarks(gpu1).unwrap().high_bytes(4 * MIB));
    assert_eq!(m.movable_bytes(gpu0), 0, "never to another GPU");
    for (i, d) in data.iter().enumerate() {
        assert_eq!(contents(d), pattern(i as u8), "data {i} after demotion");
    }
    let stats = m.tiering_stats();
    assert_eq!(stats.pairs.len(), 1);
    let pair = &stats.pairs[0];
    assert_eq!((pair.from, pair.from_tier), (gpu1, Tier::Gpu));
    assert_eq!((pair.to, pair.to_tier), (dram, Tier::Dram));
    assert_eq!(
        (pair.direction, pair.bytes),
        (Direction::Demotion, 2 * MIB as u64)
    );
    assert_eq!((pair.moves, pair.in_place), (2, 0));

    // Room again on its GPU: hot data goes back there, hottest first; the
    // other hot one finds no room on its own GPU and stays in host memory
    // although the other GPU is empty.
    drop(data.remove(0));
    for _ in 0..3 {
        data[0].touch();
    }
    let report = m.rebalance();
    assert_eq!(report.promoted_bytes, MIB as u64, "{report:?}");
    assert_eq!(data[0].space_id(), gpu1);
    assert_eq!(data[1].space_id(), dram);
    assert_eq!(m.movable_bytes(gpu0), 0);
    let on_device = sims[1].peek(DevicePtr(data[0].addr() as u64), MIB).unwrap();
    assert_eq!(on_device, pattern(1));
    assert_eq!(contents(&data[1]), pattern(2));
}

#[test]
fn pinning_gpu_data_brings_it_to_host_memory_until_it_is_hot_again() {
    let (m, _sims) = two_gpus_and_dram();
    let (gpu0, dram) = (SpaceId(0), SpaceId(2));
    let mut data = m.movable(MIB, &Policy::require(gpu0)).unwrap();
    data.write(0, &pattern(7)).unwrap();
    {
        let mut pinned = data.pin().unwrap();
        assert_eq!(pinned.space().id, dram);
        assert_eq!(pinned.as_slice().unwrap(), pattern(7));
        pinned.as_mut_slice().unwrap()[..3].copy_from_slice(b"cpu");
    }
    assert_eq!(data.space_id(), dram);
    // Written, pinned: hot; its GPU has room under the low watermark.
    let report = m.rebalance();
    assert_eq!(report.promoted_bytes, MIB as u64, "{report:?}");
    assert_eq!(data.space_id(), gpu0);
    let mut expected = pattern(7);
    expected[..3].copy_from_slice(b"cpu");
    assert_eq!(contents(&data), expected);
}

#[test]
fn host_data_is_never_promoted_to_a_gpu() {
    let (m, _sims) = two_gpus_and_dram();
    let data = m.movable(MIB, &Policy::require(SpaceId(2))).unwrap();
    data.write(0, &pattern(1)).unwrap();
    for _ in 0..5 {
        data.touch();
    }
    assert_eq!(m.rebalance().moves, 0);
    assert_eq!(data.space_id(), SpaceId(2));
}

#[test]
fn device_memory_that_cannot_be_read_by_address_refuses_movable_data() {
    let sim = SimDevice::new();
    let device = DevicePool::new(Arc::new(sim), DevicePoolSettings::default()).unwrap();
    let dram = NumaProvider::new(None, NumaMode::Default, false);
    let m = Mamba::from_pools(vec![
        pool(0, Tier::Gpu, 4 * MIB, Box::new(device)),
        pool(1, Tier::Dram, 4 * MIB, Box::new(dram)),
    ])
    .unwrap();
    assert!(matches!(
        m.movable(MIB, &Policy::require(Tier::Gpu)),
        Err(Error::Unsupported {
            tier: Tier::Gpu,
            ..
        })
    ));
    let one_level = Mamba::from_pools(vec![pool(
        0,
        Tier::Dram,
        4 * MIB,
        Box::new(NumaProvider::new(None, NumaMode::Default, false)),
    )])
    .unwrap();
    assert!(!one_level.is_tiered());
}

#[test]
fn gpu_data_moves_on_a_real_cuda_device() {
    let m = match Mamba::discover(&Config::default()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: no node to discover: {e}");
            return;
        }
    };
    let Some(gpu) = m.spaces().find(|s| s.tier == Tier::Gpu).map(|s| s.id) else {
        eprintln!("skipped: no CUDA GPU on this machine");
        return;
    };
    let data = m.movable(MIB, &Policy::require(gpu)).unwrap();
    data.write(0, &pattern(3)).unwrap();
    // Watermarks below one allocation: it must leave the device.
    m.set_watermarks(gpu, Watermarks::new(1e-9, 1e-9).unwrap())
        .unwrap();
    let report = m.rebalance();
    assert_eq!(report.demoted_bytes, MIB as u64, "{report:?}");
    assert_ne!(data.space_id(), gpu);
    assert_eq!(contents(&data), pattern(3));
    m.set_watermarks(gpu, Watermarks::DEFAULT).unwrap();
    data.touch();
    let report = m.rebalance();
    assert_eq!(report.promoted_bytes, MIB as u64, "{report:?}");
    assert_eq!(data.space_id(), gpu);
    assert_eq!(contents(&data), pattern(3));
}
