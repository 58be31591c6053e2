//! Demands into and out of device spaces, in process: a pool over a mamba
//! assembled from a DRAM space and GPU spaces of the `SimDevice` test
//! double (no GPU needed).

use cdo::app;
use cdo::transport::{LocalTransport, Transport, Want};
use cdo::{Buffer, Error, Layout, Order, Place, Pool, PoolConfig};
use mamba::gpu::{DevicePtr, GpuDevice, RuntimeProvider, SimDevice};
use mamba::provider::NumaProvider;
use mamba::{Mamba, Policy, PoolSettings, SpaceId, SpaceInfo, Tier};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;
const DRAM: SpaceId = SpaceId(0);
const GPU: SpaceId = SpaceId(1);
const GPU_B: SpaceId = SpaceId(2);
/// Sizes every path is checked at: empty, one byte, one past a page, and
/// one past a power of two beyond the staging ring's slots.
const SIZES: [usize; 4] = [0, 1, 4097, MIB + 3];

struct Node {
    mamba: Arc<Mamba>,
    sim: SimDevice,
}

fn space(id: SpaceId, tier: Tier, host_accessible: bool) -> SpaceInfo {
    let name = format!("{tier}{}", id.0);
    let device = (!host_accessible).then_some(0);
    SpaceInfo::unbound(id.0, &name, tier, device, host_accessible, 64 * MIB)
}

/// Space 0: DRAM; spaces 1 and 2: two GPU spaces of one simulated device.
fn node() -> Node {
    let sim = SimDevice::new();
    let gpu = GpuDevice::new(Arc::new(sim.clone()));
    let settings = PoolSettings {
        chunk_size: 4 * MIB,
        ..PoolSettings::default()
    };
    let device = |id| {
        mamba::Pool::new(
            space(id, Tier::Gpu, false),
            Box::new(RuntimeProvider::new(Arc::clone(&gpu), false)),
            settings,
        )
    };
    let mamba = Mamba::from_pools(vec![
        mamba::Pool::new(
            space(DRAM, Tier::Dram, true),
            Box::new(NumaProvider::process_default()),
            settings,
        ),
        device(GPU),
        device(GPU_B),
    ])
    .unwrap();
    Node {
        mamba: Arc::new(mamba),
        sim,
    }
}

/// An in-process pool over `n` writing into DRAM.
fn pool(n: &Node) -> Pool {
    let mut pool = Pool::new(Arc::clone(&n.mamba), PoolConfig::default()).unwrap();
    pool.set_default_policy(&Policy::require(DRAM)).unwrap();
    pool
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The bytes of `data`, read from wherever they lie.
fn contents(data: &cdo::Data) -> Vec<u8> {
    let mut back = vec![0; data.len()];
    data.read_bytes(0, &mut back).unwrap();
    back
}

/// Offers `bytes` as `name`, in `space` (DRAM: written; a device space:
/// allocated there and filled host -> device).
fn offer<'p>(pool: &'p Pool, name: &str, bytes: &[u8], space: SpaceId) -> cdo::Cdo<'p> {
    let mut p = pool.declare(name).unwrap();
    if space == DRAM || bytes.is_empty() {
        p.write(bytes).unwrap();
    } else {
        let mut buf = Buffer::allocate(pool.mamba(), bytes.len(), &Policy::require(space)).unwrap();
        buf.write_bytes(0, bytes).unwrap();
        p.attach(buf).unwrap();
    }
    p.seal().unwrap();
    p.offer().unwrap();
    p
}

/// Demands `name` wanting `place`.
fn demand(pool: &Pool, name: &str, place: Place) -> cdo::Data {
    let mut c = pool.declare(name).unwrap();
    c.want_place(place).unwrap();
    c.require().unwrap();
    let data = c.demand().unwrap();
    c.dispose().unwrap();
    data
}

fn finish(mut p: cdo::Cdo<'_>) {
    p.withdraw().unwrap();
    p.dispose().unwrap();
}

#[test]
fn host_data_wanted_on_the_device_is_copied_there_byte_exact() {
    let n = node();
    let pool = pool(&n);
    for (i, len) in SIZES.into_iter().enumerate() {
        let bytes = pattern(len, i as u8);
        let name = format!("h2d/{len}");
        let p = offer(&pool, &name, &bytes, DRAM);
        for place in [Place::Space(GPU), Place::Tier(Tier::Gpu)] {
            let data = demand(&pool, &name, place);
            assert_eq!(data.len(), len);
            if len == 0 {
                assert!(data.is_empty());
                continue;
            }
            assert_eq!(data.place().map(|(_, t)| t), Some(Tier::Gpu));
            assert!(!data.host_accessible());
            // The simulated device holds the bytes.
            let on_device = n.sim.peek(DevicePtr(data.addr().unwrap() as u64), len);
            assert_eq!(on_device.unwrap(), bytes, "{len} bytes");
            assert_eq!(contents(&data), bytes);
            // The CPU cannot read device data: a typed error, no panic.
            assert!(matches!(
                data.as_slice(),
                Err(Error::Memory(mamba::Error::NotHostAccessible(_)))
            ));
        }
        finish(p);
    }
    let s = pool.stats();
    let copied: usize = SIZES.iter().map(|l| 2 * l).sum();
    assert_eq!(s.bytes_copied, copied as u64);
}

#[test]
fn device_data_wanted_on_the_host_is_copied_back_byte_exact() {
    let n = node();
    let pool = pool(&n);
    for (i, len) in SIZES.into_iter().enumerate() {
        let bytes = pattern(len, 0x40 | i as u8);
        let name = format!("d2h/{len}");
        let p = offer(&pool, &name, &bytes, GPU);
        let data = demand(&pool, &name, Place::Tier(Tier::Dram));
        assert_eq!(data.len(), len);
        if len > 0 {
            assert_eq!(data.space(), Some(DRAM));
        }
        assert_eq!(data.as_slice().unwrap(), &bytes[..], "{len} bytes");
        // Into the other device space of the same device: a copy there.
        let other = demand(&pool, &name, Place::Space(GPU_B));
        if len > 0 {
            assert_eq!(other.space(), Some(GPU_B));
            let on_device = n.sim.peek(DevicePtr(other.addr().unwrap() as u64), len);
            assert_eq!(on_device.unwrap(), bytes);
        }
        finish(p);
    }
}

#[test]
fn device_data_wanted_in_its_own_space_is_handed_over_without_a_copy() {
    let n = node();
    let transport = LocalTransport::new(Arc::clone(&n.mamba));
    let pool = pool(&n);
    for len in SIZES {
        let bytes = pattern(len, 7);
        let name = format!("d2d/{len}");
        let p = offer(&pool, &name, &bytes, GPU);
        // Demanded with no wanted place: the producer's bytes as offered.
        let offered = {
            let mut c = pool.declare(&name).unwrap();
            c.require().unwrap();
            c.demand().unwrap()
        };
        for place in [Place::Space(GPU), Place::Tier(Tier::Gpu)] {
            let delivery = transport
                .deliver(
                    p.name(),
                    &offered,
                    &Want {
                        place: Some(place),
                        ..Want::default()
                    },
                )
                .unwrap();
            assert!(!delivery.copied, "{len} bytes, {place:?}");
            assert!(delivery.data.same_bytes(&offered));
        }
        // Through the pool: the same address, counted as zero-copy.
        let data = demand(&pool, &name, Place::Space(GPU));
        assert!(data.same_bytes(&offered));
        assert_eq!(contents(&data), bytes);
        finish(p);
    }
    let s = pool.stats();
    assert_eq!(s.bytes_copied, 0);
    assert_eq!(s.bytes_zero_copy, 2 * SIZES.iter().sum::<usize>() as u64);
}

#[test]
fn reorders_with_a_device_side_run_on_the_host() {
    let n = node();
    let pool = pool(&n);
    // 3 x 5 elements of 4 bytes, row-major.
    let (rows, cols, elem) = (3, 5, 4);
    let row_major = pattern(rows * cols * elem, 3);
    let mut col_major = vec![0u8; row_major.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * elem;
            let to = (c * rows + r) * elem;
            col_major[to..to + elem].copy_from_slice(&row_major[from..from + elem]);
        }
    }
    let layout = Layout {
        shape: vec![rows, cols],
        order: Order::RowMajor,
        ..Layout::default()
    };
    for (from, to) in [(DRAM, GPU), (GPU, DRAM), (GPU, GPU), (GPU, GPU_B)] {
        let name = format!("reorder/{}/{}", from.0, to.0);
        let mut p = pool.declare(&name).unwrap();
        p.set_element_type(cdo::ElementType::F32).unwrap();
        p.set_layout(layout.clone()).unwrap();
        if from == DRAM {
            p.write(&row_major).unwrap();
        } else {
            let mut buf =
                Buffer::allocate(pool.mamba(), row_major.len(), &Policy::require(from)).unwrap();
            buf.write_bytes(0, &row_major).unwrap();
            p.attach(buf).unwrap();
        }
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = pool.declare(&name).unwrap();
        c.want_place(Place::Space(to)).unwrap();
        c.want_order(Order::ColumnMajor).unwrap();
        c.require().unwrap();
        let data = c.demand().unwrap();
        assert_eq!(data.space(), Some(to));
        assert_eq!(contents(&data), col_major, "{from:?} -> {to:?}");
        c.dispose().unwrap();
        finish(p);
    }
}

#[test]
fn reading_device_data_through_the_application_api_is_a_typed_error() {
    let n = node();
    let pool = app::Pool::local(Arc::new(pool(&n)));
    let bytes = pattern(4097, 9);
    let mut p = pool.declare("app/device").unwrap();
    p.write(&bytes).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = pool.declare("app/device").unwrap();
    c.set("wanted_tier", "gpu").unwrap();
    c.require().unwrap();
    let view = c.demand_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(view.len(), bytes.len());
    assert!(matches!(
        view.bytes(),
        Err(Error::Memory(mamba::Error::NotHostAccessible(GPU)))
    ));
    drop(view);
    c.dispose().unwrap();
    p.withdraw().unwrap();
    p.dispose().unwrap();
}
