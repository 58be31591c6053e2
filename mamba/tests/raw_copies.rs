//! `Mamba::duplicate`, `Mamba::migrate` and `copy::copy_bytes` between any
//! two spaces: DRAM, pinned memory, an SSD spill directory and GPU memory
//! of two devices of the `SimDevice` test double (no GPU needed), each
//! route checked byte for byte and by the copies the devices ran.

use mamba::copy::copy_bytes;
use mamba::gpu::{GpuDevice, RuntimeProvider, SimDevice, SimStats, StagingConfig};
use mamba::provider::{NumaProvider, SpillProvider};
use mamba::{Allocation, Error, Mamba, Policy, Pool, PoolSettings, SpaceInfo, Tier};
use std::sync::Arc;

mod common;

/// Slot size of the staging rings: small, so that copies span many chunks.
const SLOT: usize = 4096;
/// Bytes copied: several staging slots and a partial one.
const LEN: usize = 5 * SLOT + 3;
/// Bytes each space holds.
const CAPACITY: usize = 64 << 20;
/// The spaces, by name.
const SPACES: [&str; 5] = ["dram", "spill", "pinned0", "gpu0", "gpu1"];

struct Node {
    mamba: Mamba,
    sims: Vec<SimDevice>,
    _dir: tempfile::TempDir,
}

/// The five spaces of [`SPACES`], in that order.
fn node() -> Node {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sims = SimDevice::group(2);
    let gpus: Vec<Arc<GpuDevice>> = sims
        .iter()
        .map(|d| {
            let staging = StagingConfig {
                slots: 2,
                slot_size: SLOT,
            };
            GpuDevice::with_staging(Arc::new(d.clone()), staging)
        })
        .collect();
    let settings = PoolSettings {
        chunk_size: 1 << 20,
        ..PoolSettings::default()
    };
    let on_gpu = |id, name, gpu: &Arc<GpuDevice>, pinned| {
        let tier = if pinned { Tier::Pinned } else { Tier::Gpu };
        Pool::new(
            SpaceInfo::unbound(id, name, tier, Some(gpu.ordinal()), pinned, CAPACITY),
            Box::new(RuntimeProvider::new(Arc::clone(gpu), pinned)),
            settings,
        )
    };
    let spill = SpillProvider::new(dir.path(), None).expect("a spill directory");
    let mamba = Mamba::from_pools(vec![
        Pool::new(
            SpaceInfo::unbound(0, "dram", Tier::Dram, None, true, CAPACITY),
            Box::new(NumaProvider::process_default()),
            settings,
        ),
        Pool::new(
            SpaceInfo::unbound(1, "spill", Tier::Ssd, None, false, CAPACITY),
            Box::new(spill),
            settings,
        ),
        on_gpu(2, "pinned0", &gpus[0], true),
        on_gpu(3, "gpu0", &gpus[0], false),
        on_gpu(4, "gpu1", &gpus[1], false),
    ])
    .expect("the node assembles");
    Node {
        mamba,
        sims,
        _dir: dir,
    }
}

fn named(name: &str) -> Policy {
    Policy::require(mamba::Target::Named(name.into()))
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The bytes of `a`, wherever it lies.
fn read_back(a: &Allocation<'_>) -> Vec<u8> {
    let mut bytes = vec![0u8; a.len()];
    a.read_bytes(0, &mut bytes)
        .expect("the allocation reads back");
    bytes
}

/// An allocation in `space` holding `bytes`.
fn filled<'m>(m: &'m Mamba, space: &str, bytes: &[u8]) -> Allocation<'m> {
    let mut a = m.allocate(bytes.len(), 64, &named(space)).expect(space);
    a.write_bytes(0, bytes).expect("the allocation is written");
    a
}

/// What both devices ran, summed per kind.
fn device_copies(n: &Node) -> (u64, u64, u64, u64) {
    n.sims
        .iter()
        .map(SimDevice::stats)
        .fold((0, 0, 0, 0), |t, s: SimStats| {
            (
                t.0 + s.htod_copies,
                t.1 + s.dtoh_copies,
                t.2 + s.dtod_copies,
                t.3 + s.peer_copies,
            )
        })
}

#[test]
fn duplicate_copies_every_byte_between_any_two_spaces() {
    let n = node();
    for (i, from) in SPACES.iter().enumerate() {
        for (j, to) in SPACES.iter().enumerate() {
            let bytes = pattern((i * 8 + j) as u8);
            let a = filled(&n.mamba, from, &bytes);
            let copy = n.mamba.duplicate(&a, &named(to)).expect("duplicate");
            assert_eq!(copy.space().name, *to);
            assert_eq!(read_back(&copy), bytes, "{from} -> {to}");
            assert_eq!(read_back(&a), bytes, "{from} is left as it was");
        }
    }
}

#[test]
fn each_route_runs_the_copies_it_should() {
    let n = node();
    let bytes = pattern(1);
    // (from, to, host-to-device, device-to-host, on one device, peer)
    let cases = [
        ("pinned0", "gpu0", (1, 0, 0, 0)),
        ("gpu0", "pinned0", (0, 1, 0, 0)),
        // Pageable memory goes through the staging ring, slot by slot.
        ("dram", "gpu0", (6, 0, 0, 0)),
        ("gpu0", "dram", (0, 6, 0, 0)),
        ("gpu0", "gpu0", (0, 0, 1, 0)),
        ("gpu0", "gpu1", (0, 0, 0, 1)),
        ("dram", "pinned0", (0, 0, 0, 0)),
    ];
    for (from, to, expected) in cases {
        let a = filled(&n.mamba, from, &bytes);
        let before = device_copies(&n);
        let copy = n.mamba.duplicate(&a, &named(to)).expect("duplicate");
        let after = device_copies(&n);
        let ran = (
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
            after.3 - before.3,
        );
        assert_eq!(ran, expected, "{from} -> {to}");
        assert_eq!(read_back(&copy), bytes, "{from} -> {to}");
    }
}

#[test]
fn migrate_moves_device_and_spill_data_and_frees_the_old_block() {
    let n = node();
    let bytes = pattern(7);
    let mut a = filled(&n.mamba, "dram", &bytes);
    for to in ["gpu0", "spill", "gpu1", "pinned0", "dram"] {
        let from = a.space().id;
        n.mamba.migrate(&mut a, &named(to)).expect("migrate");
        assert_eq!(a.space().name, to);
        assert_eq!(read_back(&a), bytes, "after the move to {to}");
        let left = n.mamba.pool(from).unwrap().stats().in_use;
        assert_eq!(left, 0, "the old block went back to its pool");
    }
}

#[test]
fn allocations_of_different_lengths_are_refused_untouched() {
    let n = node();
    let a = filled(&n.mamba, "gpu0", &pattern(3));
    let mut short = filled(&n.mamba, "dram", &[9; 100]);
    let refused = copy_bytes(&a, &mut short);
    assert!(
        matches!(
            refused,
            Err(Error::OutOfBounds {
                requested: LEN,
                available: 100
            })
        ),
        "{refused:?}"
    );
    assert_eq!(read_back(&short), [9; 100], "nothing was copied");
}

#[test]
fn a_failed_migration_leaves_the_allocation_where_it_was() {
    let n = node();
    let bytes = pattern(5);
    let mut a = filled(&n.mamba, "gpu0", &bytes);
    // Fill DRAM (64 MiB) with 1 MiB blocks until it refuses one.
    let mut taken = Vec::new();
    while let Ok(block) = n.mamba.allocate(1 << 20, 64, &named("dram")) {
        taken.push(block);
        assert!(taken.len() <= 64, "DRAM's capacity holds");
    }
    let refused = n.mamba.migrate(&mut a, &named("dram"));
    assert!(
        matches!(refused, Err(Error::OutOfCapacity { .. })),
        "{refused:?}"
    );
    assert_eq!(a.space().name, "gpu0");
    assert_eq!(read_back(&a), bytes);
    drop(taken);
    n.mamba.migrate(&mut a, &named("dram")).unwrap();
    assert_eq!(read_back(&a), bytes);
}
