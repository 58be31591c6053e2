//! Arrays in device spaces and the copy engine's device routes, against
//! the in-memory test double `SimDevice` (no GPU needed): two simulated
//! devices and a pinned space assembled with `Mamba::from_pools`.

use mamba::copy::{copy_array, copy_async, copy_into_tile, copy_tile, route, Route};
use mamba::gpu::{
    DeviceConverter, DevicePtr, DeviceRuntime, GpuDevice, RuntimeProvider, SimDevice,
    StagingConfig, StreamId,
};
use mamba::{Array, Error, Mamba, Policy, Pool, PoolSettings, SpaceInfo, Tier};
use mamba_transforms::{CopyPlan, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod common;
use common::gpu::{cpu_copy, device_bytes};

/// Slot size of the staging rings: small, so that arrays span many chunks.
const SLOT: usize = 4096;

struct Node {
    mamba: Mamba,
    sims: Vec<SimDevice>,
    gpus: Vec<Arc<GpuDevice>>,
}

/// Spaces: 0 `gpu0`, 1 `pinned0`, 2 `gpu1`, on two simulated devices.
fn node() -> Node {
    let sims = SimDevice::group(2);
    let gpus: Vec<Arc<GpuDevice>> = sims
        .iter()
        .map(|d| {
            GpuDevice::with_staging(
                Arc::new(d.clone()),
                StagingConfig {
                    slots: 2,
                    slot_size: SLOT,
                },
            )
        })
        .collect();
    let settings = PoolSettings {
        chunk_size: 1 << 20,
        ..PoolSettings::default()
    };
    let pool = |id, name, tier, gpu: &Arc<GpuDevice>, pinned| {
        Pool::new(
            SpaceInfo::unbound(id, name, tier, Some(gpu.ordinal()), pinned, 256 << 20),
            Box::new(RuntimeProvider::new(Arc::clone(gpu), pinned)),
            settings,
        )
    };
    let mamba = Mamba::from_pools(vec![
        pool(0, "gpu0", Tier::Gpu, &gpus[0], false),
        pool(1, "pinned0", Tier::Pinned, &gpus[0], true),
        pool(2, "gpu1", Tier::Gpu, &gpus[1], false),
    ])
    .unwrap();
    Node { mamba, sims, gpus }
}

fn named(name: &str) -> Policy {
    Policy::require(mamba::Target::Named(name.into()))
}

fn values(layout: &Layout) -> Vec<u8> {
    (0..layout.required_len())
        .map(|i| (i * 13 + 5) as u8)
        .collect()
}

fn layouts() -> Vec<(Layout, Layout)> {
    let row = Layout::row_major(8, &[37, 129]).unwrap();
    let col = Layout::column_major(8, &[37, 129]).unwrap();
    let padded = Layout::padded_rows(8, &[37, 129], 136).unwrap();
    vec![
        (row.clone(), row.clone()),
        (row.clone(), col.clone()),
        (col, padded.clone()),
        (padded, row),
    ]
}

#[test]
fn routes_follow_the_spaces() {
    let n = node();
    let layout = Layout::row_major(4, &[16]).unwrap();
    let mut host = vec![0u8; 64];
    let pageable = Array::wrap(&mut host, layout.clone()).unwrap();
    let pinned = n.mamba.array(layout.clone(), &named("pinned0")).unwrap();
    let g0 = n.mamba.array(layout.clone(), &named("gpu0")).unwrap();
    let g0b = n.mamba.array(layout.clone(), &named("gpu0")).unwrap();
    let g1 = n.mamba.array(layout, &named("gpu1")).unwrap();
    assert_eq!(
        route(&pageable, &g0).unwrap(),
        Route::HostToDevice { pinned: false }
    );
    assert_eq!(
        route(&pinned, &g0).unwrap(),
        Route::HostToDevice { pinned: true }
    );
    assert_eq!(
        route(&g0, &pinned).unwrap(),
        Route::DeviceToHost { pinned: true }
    );
    assert_eq!(
        route(&g0, &pageable).unwrap(),
        Route::DeviceToHost { pinned: false }
    );
    assert_eq!(
        route(&g0, &g0b).unwrap(),
        Route::DeviceToDevice { peer: false }
    );
    assert_eq!(
        route(&g0, &g1).unwrap(),
        Route::DeviceToDevice { peer: true }
    );
    assert_eq!(route(&pinned, &pageable).unwrap(), Route::Host);
}

#[test]
fn device_arrays_never_hand_out_host_bytes() {
    let n = node();
    let mut a = n
        .mamba
        .array(Layout::row_major(8, &[10, 7]).unwrap(), &named("gpu0"))
        .unwrap();
    assert!(!a.is_host_accessible());
    assert!(matches!(a.as_bytes(), Err(Error::NotHostAccessible(_))));
    assert!(matches!(a.as_bytes_mut(), Err(Error::NotHostAccessible(_))));
    assert!(matches!(
        a.as_typed::<f64>(),
        Err(Error::NotHostAccessible(_))
    ));
    let tiles: Vec<_> = a.tiles(&[4, 3]).unwrap().collect();
    assert_eq!(tiles.len(), 9);
    assert!(matches!(tiles[0].bytes(), Err(Error::NotHostAccessible(_))));
    assert!(format!("{a:?}").contains("gpu0"));
}

#[test]
fn host_device_round_trips_match_the_cpu_copy_plan() {
    let n = node();
    for pinned_side in [false, true] {
        for (src_layout, dev_layout) in layouts() {
            let src_bytes = values(&src_layout);
            let mut src_store = src_bytes.clone();
            let pinned_src;
            let src = if pinned_side {
                let mut a = n
                    .mamba
                    .array(src_layout.clone(), &named("pinned0"))
                    .unwrap();
                a.as_bytes_mut().unwrap().copy_from_slice(&src_bytes);
                pinned_src = a;
                &pinned_src
            } else {
                &Array::wrap(&mut src_store, src_layout.clone()).unwrap()
            };
            let mut dev = n.mamba.array(dev_layout.clone(), &named("gpu0")).unwrap();
            let dev_init = device_bytes(&dev);
            copy_array(src, &mut dev).unwrap();
            let expected = cpu_copy(&src_bytes, &src_layout, &dev_layout, &dev_init);
            assert_eq!(
                device_bytes(&dev),
                expected,
                "{src_layout:?} -> {dev_layout:?}"
            );
            // And back, into a third layout on the host.
            let back_layout = Layout::column_major(8, &[37, 129]).unwrap();
            let mut back_store = vec![0xAB; back_layout.required_len()];
            let mut back = Array::wrap(&mut back_store, back_layout.clone()).unwrap();
            copy_array(&dev, &mut back).unwrap();
            drop(back);
            let init = vec![0xAB; back_layout.required_len()];
            assert_eq!(
                back_store,
                cpu_copy(&src_bytes, &src_layout, &back_layout, &init)
            );
        }
    }
}

#[test]
fn pageable_memory_is_staged_in_slot_sized_chunks_and_pinned_memory_is_not() {
    let n = node();
    let layout = Layout::row_major(1, &[5 * SLOT + 1]).unwrap();
    let mut bytes = values(&layout);
    let pageable = Array::wrap(&mut bytes, layout.clone()).unwrap();
    let mut dev = n.mamba.array(layout.clone(), &named("gpu0")).unwrap();
    let before = n.sims[0].stats();
    copy_array(&pageable, &mut dev).unwrap();
    let after = n.sims[0].stats();
    assert_eq!(after.htod_copies - before.htod_copies, 6);
    assert_eq!(after.htod_bytes - before.htod_bytes, 5 * SLOT as u64 + 1);
    let mut pinned = n.mamba.array(layout, &named("pinned0")).unwrap();
    copy_array(&dev, &mut pinned).unwrap();
    let last = n.sims[0].stats();
    assert_eq!(last.dtoh_copies - after.dtoh_copies, 1);
    assert_eq!(pinned.as_bytes().unwrap(), pageable.as_bytes().unwrap());
}

#[test]
fn device_to_device_copies_on_one_device_and_between_peers() {
    let n = node();
    for (src_layout, dst_layout) in layouts() {
        let mut src_bytes = values(&src_layout);
        let host = Array::wrap(&mut src_bytes, src_layout.clone()).unwrap();
        let mut a = n.mamba.array(src_layout.clone(), &named("gpu0")).unwrap();
        copy_array(&host, &mut a).unwrap();
        for target in ["gpu0", "gpu1"] {
            let mut b = n.mamba.array(dst_layout.clone(), &named(target)).unwrap();
            let init = device_bytes(&b);
            copy_array(&a, &mut b).unwrap();
            let expected = cpu_copy(host.as_bytes().unwrap(), &src_layout, &dst_layout, &init);
            assert_eq!(device_bytes(&b), expected, "{target} {dst_layout:?}");
        }
    }
    assert!(n.sims[0].stats().peer_copies > 0);
}

#[test]
fn tiles_of_device_arrays_copy_out_and_in() {
    let n = node();
    let layout = Layout::row_major(8, &[10, 7]).unwrap();
    let mut src_bytes = values(&layout);
    let host = Array::wrap(&mut src_bytes, layout.clone()).unwrap();
    let mut dev = n.mamba.array(layout.clone(), &named("gpu0")).unwrap();
    copy_array(&host, &mut dev).unwrap();
    for (dev_tile, host_tile) in dev
        .tiles(&[4, 3])
        .unwrap()
        .zip(host.tiles(&[4, 3]).unwrap())
    {
        let shape = dev_tile.layout().shape().to_vec();
        let out_layout = Layout::row_major(8, &shape).unwrap();
        let mut out = n.mamba.array(out_layout.clone(), &named("gpu1")).unwrap();
        copy_tile(&dev_tile, &mut out).unwrap();
        let zeros = vec![0u8; out_layout.required_len()];
        let expected = cpu_copy(
            host_tile.bytes().unwrap(),
            host_tile.layout(),
            &out_layout,
            &zeros,
        );
        assert_eq!(device_bytes(&out), expected);
    }
    // Into a tile: the rest of the device array is kept.
    let patch_layout = Layout::column_major(8, &[3, 2]).unwrap();
    let mut patch_bytes = vec![0xFF; patch_layout.required_len()];
    let patch = Array::wrap(&mut patch_bytes, patch_layout).unwrap();
    copy_into_tile(&patch, &mut dev, &[5, 4]).unwrap();
    let got = device_bytes(&dev);
    for r in 0..10 {
        for c in 0..7 {
            let off = layout.byte_offset(&[r, c]).unwrap();
            let inside = (5..8).contains(&r) && (4..6).contains(&c);
            let want = if inside {
                vec![0xFF; 8]
            } else {
                host.as_bytes().unwrap()[off..off + 8].to_vec()
            };
            assert_eq!(got[off..off + 8], want[..], "({r}, {c})");
        }
    }
    assert!(matches!(
        copy_into_tile(&patch, &mut dev, &[8, 0]),
        Err(Error::Layout(_))
    ));
}

#[test]
fn arrays_migrate_to_the_device_and_back() {
    let n = node();
    let layout = Layout::row_major(8, &[33, 17]).unwrap();
    let mut a = n.mamba.array(layout.clone(), &named("pinned0")).unwrap();
    let original = values(&layout);
    a.as_bytes_mut().unwrap().copy_from_slice(&original);
    n.mamba.migrate_array(&mut a, None, &named("gpu1")).unwrap();
    assert_eq!(a.space().unwrap().name, "gpu1");
    let col = Layout::column_major(8, &[33, 17]).unwrap();
    n.mamba
        .migrate_array(&mut a, Some(col.clone()), &named("gpu0"))
        .unwrap();
    n.mamba
        .migrate_array(&mut a, Some(layout.clone()), &named("pinned0"))
        .unwrap();
    assert_eq!(a.as_bytes().unwrap(), original);
}

#[test]
fn mismatched_shapes_are_refused_before_any_device_work() {
    let n = node();
    let mut bytes = vec![1u8; 8 * 20];
    let host = Array::wrap(&mut bytes, Layout::row_major(8, &[4, 5]).unwrap()).unwrap();
    let mut dev = n
        .mamba
        .array(Layout::row_major(8, &[4, 4]).unwrap(), &named("gpu0"))
        .unwrap();
    let before = n.sims[0].stats();
    assert!(matches!(copy_array(&host, &mut dev), Err(Error::Layout(_))));
    let mut small = n
        .mamba
        .array(Layout::row_major(8, &[2, 2]).unwrap(), &named("gpu1"))
        .unwrap();
    assert!(matches!(
        copy_array(&dev, &mut small),
        Err(Error::Layout(_))
    ));
    assert_eq!(n.sims[0].stats(), before);
}

#[test]
fn asynchronous_copies_complete_in_order_and_chain() {
    let n = node();
    let layout = Layout::row_major(8, &[64, 40]).unwrap();
    let mut src = n
        .mamba
        .array_owned(layout.clone(), &named("pinned0"))
        .unwrap();
    let original = values(&layout);
    src.as_bytes_mut().unwrap().copy_from_slice(&original);
    let dev = n.mamba.array_owned(layout.clone(), &named("gpu0")).unwrap();
    // Pinned -> device: a DMA on the copy stream, not yet run (the double
    // runs streams only when forced).
    let mut t = copy_async(src, dev);
    let pending_before = n.sims[0].stats().htod_copies;
    let mut polls = 0;
    while !t.poll() {
        polls += 1;
    }
    assert!(polls >= 1, "the DMA was pending until polled");
    assert_eq!(n.sims[0].stats().htod_copies, pending_before + 1);
    let (src, dev) = t.wait().unwrap();
    // Chained: device -> peer device, then back into pinned memory in
    // another layout (a host-side conversion, on a thread).
    let other = n.mamba.array_owned(layout.clone(), &named("gpu1")).unwrap();
    let back = n
        .mamba
        .array_owned(
            Layout::column_major(8, &[64, 40]).unwrap(),
            &named("pinned0"),
        )
        .unwrap();
    let chained = copy_async(dev, other).then(move |(_, other)| copy_async(other, back));
    let (_, back) = chained.wait().unwrap();
    let col = Layout::column_major(8, &[64, 40]).unwrap();
    let zeros = vec![0u8; col.required_len()];
    assert_eq!(
        back.as_bytes().unwrap(),
        cpu_copy(&original, &layout, &col, &zeros)
    );
    drop(src);
}

#[test]
fn a_stream_can_wait_on_a_transfer() {
    let n = node();
    let layout = Layout::row_major(1, &[1000]).unwrap();
    let mut src = n
        .mamba
        .array_owned(layout.clone(), &named("pinned0"))
        .unwrap();
    src.as_bytes_mut().unwrap().fill(7);
    let dev = n.mamba.array_owned(layout, &named("gpu0")).unwrap();
    let dev_ptr = DevicePtr(dev.allocation().unwrap().addr() as u64);
    let sim = &n.sims[0];
    let mut t = copy_async(src, dev);
    let s = sim.create_stream().unwrap();
    let scratch = sim.alloc_async(1000, s).unwrap();
    t.then_on(s).unwrap();
    // SAFETY: both device ranges stay allocated until the synchronization.
    unsafe { sim.copy_dtod_async(scratch, dev_ptr, 1000, s) }.unwrap();
    // Running `s` forces the transfer's stream up to its event first.
    sim.synchronize_stream(s).unwrap();
    assert_eq!(sim.peek(scratch, 1000).unwrap(), vec![7; 1000]);
    assert!(t.poll());
    t.wait().unwrap();
}

/// A converter that counts its calls and converts through the host (a test
/// double of a GPU kernel).
#[derive(Debug)]
struct HostConverter {
    sim: SimDevice,
    calls: AtomicUsize,
}

impl DeviceConverter for HostConverter {
    fn convert(
        &self,
        src_layout: &Layout,
        dst_layout: &Layout,
        src: DevicePtr,
        dst: DevicePtr,
        stream: StreamId,
    ) -> mamba::Result<bool> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.sim.synchronize_stream(stream)?;
        let input = self.sim.peek(src, src_layout.required_len())?;
        let mut out = self.sim.peek(dst, dst_layout.required_len())?;
        CopyPlan::new(src_layout, dst_layout)?.execute(&input, &mut out)?;
        // SAFETY: `out` outlives the synchronization below.
        unsafe {
            self.sim
                .copy_htod_async(dst, out.as_ptr(), out.len(), stream)
        }?;
        self.sim.synchronize_stream(stream)?;
        Ok(true)
    }
}

#[test]
fn layout_conversions_on_one_device_go_through_the_converter_seam() {
    let n = node();
    let converter = Arc::new(HostConverter {
        sim: n.sims[0].clone(),
        calls: AtomicUsize::new(0),
    });
    n.gpus[0].set_converter(Some(converter.clone()));
    let row = Layout::row_major(8, &[20, 30]).unwrap();
    let col = Layout::column_major(8, &[20, 30]).unwrap();
    let mut bytes = values(&row);
    let host = Array::wrap(&mut bytes, row.clone()).unwrap();
    let mut a = n.mamba.array(row.clone(), &named("gpu0")).unwrap();
    copy_array(&host, &mut a).unwrap();
    assert_eq!(
        converter.calls.load(Ordering::Relaxed),
        0,
        "same layout: plain DMA"
    );
    let mut b = n.mamba.array(col.clone(), &named("gpu0")).unwrap();
    copy_array(&a, &mut b).unwrap();
    assert_eq!(converter.calls.load(Ordering::Relaxed), 1);
    assert_eq!(n.gpus[0].device_conversions(), 1);
    let zeros = vec![0u8; col.required_len()];
    assert_eq!(
        device_bytes(&b),
        cpu_copy(host.as_bytes().unwrap(), &row, &col, &zeros)
    );
    // Between two devices the host converts.
    let mut c = n.mamba.array(col.clone(), &named("gpu1")).unwrap();
    copy_array(&a, &mut c).unwrap();
    assert_eq!(converter.calls.load(Ordering::Relaxed), 1);
    assert_eq!(n.gpus[0].device_conversions(), 1);
    assert_eq!(n.gpus[1].device_conversions(), 0);
    // Without a converter the host converts, and nothing is counted.
    n.gpus[0].set_converter(None);
    let mut d = n.mamba.array(col, &named("gpu0")).unwrap();
    copy_array(&a, &mut d).unwrap();
    assert_eq!(n.gpus[0].device_conversions(), 1);
    assert_eq!(device_bytes(&d), device_bytes(&b));
}

#[test]
fn device_buffers_check_lengths() {
    let n = node();
    let mut buf = n.gpus[0].alloc(100).unwrap();
    assert!(matches!(
        buf.copy_from_host(&[0; 101]),
        Err(Error::OutOfBounds {
            requested: 101,
            available: 100
        })
    ));
    let mut out = [0u8; 101];
    assert!(matches!(
        buf.copy_to_host(&mut out),
        Err(Error::OutOfBounds { .. })
    ));
    buf.copy_from_host(&[3; 100]).unwrap();
    let mut pinned = n.gpus[0].alloc_pinned(60).unwrap();
    buf.copy_to_pinned(&mut pinned).unwrap();
    assert_eq!(pinned.as_slice(), [3; 60]);
    let mut peer = n.gpus[1].alloc(100).unwrap();
    peer.copy_from_device(&buf).unwrap();
    let mut back = [0u8; 100];
    peer.copy_to_host(&mut back).unwrap();
    assert_eq!(back, [3; 100]);
    assert!(matches!(n.gpus[0].alloc(0), Err(Error::ZeroSize)));
}

#[test]
fn large_host_device_conversions_run_on_the_device_small_ones_on_the_host() {
    let n = node();
    let converter = Arc::new(HostConverter {
        sim: n.sims[0].clone(),
        calls: AtomicUsize::new(0),
    });
    n.gpus[0].set_converter(Some(converter.clone()));
    let calls = || converter.calls.load(Ordering::Relaxed);
    // 400 x 400 f64: 1.28 MB, above DEVICE_CONVERSION_MIN.
    let shape = [400, 400];
    const { assert!(8 * 400 * 400 >= mamba::copy::DEVICE_CONVERSION_MIN) };
    let row = Layout::row_major(8, &shape).unwrap();
    let col = Layout::column_major(8, &shape).unwrap();
    let mut bytes = values(&row);
    let host = Array::wrap(&mut bytes, row.clone()).unwrap();

    // Host to device: uploaded as it is, converted on the device.
    let mut dev = n.mamba.array(col.clone(), &named("gpu0")).unwrap();
    let init = device_bytes(&dev);
    copy_array(&host, &mut dev).unwrap();
    assert_eq!(calls(), 1);
    assert_eq!(n.gpus[0].device_conversions(), 1);
    let expected = cpu_copy(host.as_bytes().unwrap(), &row, &col, &init);
    assert_eq!(device_bytes(&dev), expected);

    // Device to host, into a dense layout: converted on the device, then
    // downloaded as it is.
    let mut back = vec![0u8; row.required_len()];
    let mut back_host = Array::wrap(&mut back, row.clone()).unwrap();
    copy_array(&dev, &mut back_host).unwrap();
    assert_eq!(calls(), 2);
    drop(back_host);
    assert_eq!(back, host.as_bytes().unwrap(), "the round trip is exact");

    // Into a layout with gaps the host converts, and the gaps keep their
    // bytes.
    let padded = Layout::padded_rows(8, &shape, 401).unwrap();
    let mut gaps = values(&padded);
    let before = gaps.clone();
    let mut gaps_host = Array::wrap(&mut gaps, padded.clone()).unwrap();
    copy_array(&dev, &mut gaps_host).unwrap();
    assert_eq!(calls(), 2, "a destination with gaps converts on the host");
    drop(gaps_host);
    assert_eq!(gaps, cpu_copy(&expected, &col, &padded, &before));

    // A small array converts on the host.
    let small_row = Layout::row_major(8, &[20, 30]).unwrap();
    let small_col = Layout::column_major(8, &[20, 30]).unwrap();
    let mut small = values(&small_row);
    let small_host = Array::wrap(&mut small, small_row.clone()).unwrap();
    let mut small_dev = n.mamba.array(small_col.clone(), &named("gpu0")).unwrap();
    let small_init = device_bytes(&small_dev);
    copy_array(&small_host, &mut small_dev).unwrap();
    assert_eq!(calls(), 2, "a small array converts on the host");
    let small_expected = cpu_copy(
        small_host.as_bytes().unwrap(),
        &small_row,
        &small_col,
        &small_init,
    );
    assert_eq!(device_bytes(&small_dev), small_expected);

    // Without a converter the host converts the large array too, with the
    // same result.
    n.gpus[0].set_converter(None);
    let mut plain = n.mamba.array(col.clone(), &named("gpu0")).unwrap();
    copy_array(&host, &mut plain).unwrap();
    assert_eq!(device_bytes(&plain), device_bytes(&dev));
    assert_eq!(n.gpus[0].device_conversions(), 2);
}

#[test]
fn host_side_conversions_page_lock_no_memory_per_copy() {
    let n = node();
    let pinned = || -> u64 { n.sims.iter().map(|s| s.stats().pinned_allocs).sum() };
    // The first staged copy on each device makes its ring's pinned slots.
    let row = Layout::row_major(8, &[37, 129]).unwrap();
    let mut warm = values(&row);
    let warm_host = Array::wrap(&mut warm, row.clone()).unwrap();
    for gpu in ["gpu0", "gpu1"] {
        let mut dev = n.mamba.array(row.clone(), &named(gpu)).unwrap();
        copy_array(&warm_host, &mut dev).unwrap();
    }
    let before = pinned();
    for (src_layout, dst_layout) in layouts().into_iter().filter(|(a, b)| a != b) {
        let mut src_bytes = values(&src_layout);
        let host = Array::wrap(&mut src_bytes, src_layout.clone()).unwrap();
        let mut dev = n.mamba.array(dst_layout.clone(), &named("gpu0")).unwrap();
        let init = device_bytes(&dev);
        copy_array(&host, &mut dev).unwrap();
        let on_device = cpu_copy(host.as_bytes().unwrap(), &src_layout, &dst_layout, &init);
        assert_eq!(device_bytes(&dev), on_device, "to the device");
        let mut other = n.mamba.array(src_layout.clone(), &named("gpu1")).unwrap();
        let other_init = device_bytes(&other);
        copy_array(&dev, &mut other).unwrap();
        let mut back = vec![0u8; src_layout.required_len()];
        let mut back_host = Array::wrap(&mut back, src_layout.clone()).unwrap();
        copy_array(&other, &mut back_host).unwrap();
        drop(back_host);
        let expected = cpu_copy(&on_device, &dst_layout, &src_layout, &other_init);
        assert_eq!(back, expected, "{src_layout:?} -> {dst_layout:?} and back");
    }
    assert_eq!(pinned(), before, "no pinned allocation per copy");
}
