//! The GPU data plane on a real CUDA device. Every test prints
//! `skipped: ...` and returns when no CUDA device is found, and checks real
//! results (bytes against the CPU copy engine, the driver's context stack)
//! when one is.
//!
//! Run: `cargo test -p mamba --test gpu -- --nocapture --test-threads=1`.

use cudarc::driver::{result, sys};
use mamba::copy::{copy_array, copy_async, copy_into_tile, copy_tile, route, Route};
use mamba::gpu::{cuda_gpu, DevicePtr, GpuDevice};
use mamba::provider::cuda_devices;
use mamba::{Array, Config, Error, Mamba, Policy, Tier};
use mamba_transforms::{CopyPlan, Layout};
use std::sync::Arc;

/// This machine with its GPU spaces, or why not.
fn gpu_node() -> Option<Mamba> {
    match cuda_devices() {
        Ok(d) if !d.is_empty() => {}
        Ok(_) => {
            eprintln!("skipped: the CUDA driver reports no device");
            return None;
        }
        Err(e) => {
            eprintln!("skipped: no CUDA GPU on this machine ({e})");
            return None;
        }
    }
    let m = Mamba::discover(&Config::default()).expect("discovery with a GPU");
    assert!(m.pool_of(Tier::Gpu).is_ok() && m.pool_of(Tier::Pinned).is_ok());
    Some(m)
}

fn gpu0() -> Arc<GpuDevice> {
    cuda_gpu(0).expect("device 0")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn cpu_copy(src: &[u8], src_layout: &Layout, dst_layout: &Layout, init: &[u8]) -> Vec<u8> {
    let mut out = init.to_vec();
    CopyPlan::new(src_layout, dst_layout)
        .unwrap()
        .execute(src, &mut out)
        .unwrap();
    out
}

/// A device array's bytes, read back through the copy engine.
fn device_bytes(a: &Array<'_>) -> Vec<u8> {
    let mut out = vec![0u8; a.layout().required_len()];
    let mut host = Array::wrap(&mut out, a.layout().clone()).unwrap();
    copy_array(a, &mut host).unwrap();
    drop(host);
    out
}

#[test]
fn calls_leave_the_callers_context_stack_as_it_was() {
    let Some(m) = gpu_node() else { return };
    // A fresh thread has no current context; ours must not leave one.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(result::ctx::get_current().unwrap(), None);
            let mut a = m
                .array(
                    Layout::row_major(4, &[1000]).unwrap(),
                    &Policy::require(Tier::Gpu),
                )
                .unwrap();
            let mut host = vec![7u8; 4000];
            let h = Array::wrap(&mut host, Layout::row_major(4, &[1000]).unwrap()).unwrap();
            copy_array(&h, &mut a).unwrap();
            assert_eq!(result::ctx::get_current().unwrap(), None);
        });
    });
    // A caller with its own current context keeps it, and the stack depth.
    let dev = result::device::get(0).unwrap();
    // SAFETY: `dev` from cuDeviceGet; released below.
    let ctx = unsafe { result::primary_ctx::retain(dev) }.unwrap();
    // SAFETY: a retained context; popped below.
    unsafe { sys::cuCtxPushCurrent_v2(ctx) }.result().unwrap();
    let gpu = gpu0();
    let mut buf = gpu.alloc(4096).unwrap();
    buf.copy_from_host(&[1; 4096]).unwrap();
    assert_eq!(result::ctx::get_current().unwrap(), Some(ctx));
    let mut popped = std::ptr::null_mut();
    // SAFETY: pops the push above.
    unsafe { sys::cuCtxPopCurrent_v2(&mut popped) }
        .result()
        .unwrap();
    assert_eq!(popped, ctx);
    assert_eq!(
        result::ctx::get_current().unwrap(),
        None,
        "no push left behind"
    );
    // SAFETY: balances the retain above.
    unsafe { result::primary_ctx::release(dev) }.unwrap();
}

#[test]
fn round_trips_of_every_size_pinned_and_pageable() {
    let Some(_m) = gpu_node() else { return };
    let gpu = gpu0();
    for len in [0usize, 1, 4097, (64 << 20) + 3] {
        let src = pattern(len, len as u8);
        let mut a = gpu.alloc(len.max(1)).unwrap();
        let mut b = gpu.alloc(len.max(1)).unwrap();
        // Pageable, through the staging ring.
        a.copy_from_host(&src).unwrap();
        let mut back = vec![0u8; len];
        a.copy_to_host(&mut back).unwrap();
        assert!(back == src, "pageable round trip of {len} bytes");
        // Device to device.
        b.copy_from_device(&a)
            .unwrap_or_else(|e| panic!("d2d {len}: {e}"));
        if len == 0 {
            continue;
        }
        // Pinned, straight DMA.
        let mut pinned = gpu.alloc_pinned(len).unwrap();
        b.copy_to_pinned(&mut pinned).unwrap();
        assert!(pinned.as_slice() == src, "d2d + pinned d2h of {len} bytes");
        pinned.as_mut_slice().reverse();
        a.copy_from_pinned(&pinned).unwrap();
        a.copy_to_host(&mut back).unwrap();
        assert!(back == pinned.as_slice(), "pinned h2d of {len} bytes");
    }
}

#[test]
fn layout_converting_copies_match_the_cpu_copy_plan() {
    let Some(m) = gpu_node() else { return };
    let shape = [513, 257];
    let row = Layout::row_major(8, &shape).unwrap();
    let col = Layout::column_major(8, &shape).unwrap();
    let padded = Layout::padded_rows(8, &shape, 264).unwrap();
    let pairs = [(&row, &row), (&row, &col), (&col, &padded), (&padded, &row)];
    for host_tier in [Tier::Dram, Tier::Pinned] {
        for (src_layout, dev_layout) in pairs {
            let mut src = m
                .array(src_layout.clone(), &Policy::require(host_tier))
                .unwrap();
            let bytes = pattern(src_layout.required_len(), 9);
            src.as_bytes_mut().unwrap().copy_from_slice(&bytes);
            let mut dev = m
                .array(dev_layout.clone(), &Policy::require(Tier::Gpu))
                .unwrap();
            let init = device_bytes(&dev);
            assert!(matches!(
                route(&src, &dev).unwrap(),
                Route::HostToDevice { .. }
            ));
            copy_array(&src, &mut dev).unwrap();
            let want = cpu_copy(&bytes, src_layout, dev_layout, &init);
            assert!(
                device_bytes(&dev) == want,
                "{host_tier} {src_layout:?} -> {dev_layout:?}"
            );
            // Device to device in another layout, then back to the host.
            let mut dev2 = m.array(col.clone(), &Policy::require(Tier::Gpu)).unwrap();
            copy_array(&dev, &mut dev2).unwrap();
            let mut out = m.array(row.clone(), &Policy::require(host_tier)).unwrap();
            let out_init = out.as_bytes().unwrap().to_vec();
            copy_array(&dev2, &mut out).unwrap();
            assert!(out.as_bytes().unwrap() == cpu_copy(&bytes, src_layout, &row, &out_init));
        }
    }
}

#[test]
fn device_arrays_tiles_and_migration() {
    let Some(m) = gpu_node() else { return };
    let layout = Layout::row_major(8, &[100, 70]).unwrap();
    let mut a = m
        .array(layout.clone(), &Policy::require(Tier::Dram))
        .unwrap();
    let bytes = pattern(layout.required_len(), 3);
    a.as_bytes_mut().unwrap().copy_from_slice(&bytes);
    m.migrate_array(&mut a, None, &Policy::require(Tier::Gpu))
        .unwrap();
    assert_eq!(a.space().unwrap().tier, Tier::Gpu);
    assert!(matches!(a.as_bytes(), Err(Error::NotHostAccessible(_))));
    assert!(matches!(
        a.as_typed::<f64>(),
        Err(Error::NotHostAccessible(_))
    ));
    let host = {
        let mut h = m
            .array(layout.clone(), &Policy::require(Tier::Dram))
            .unwrap();
        h.as_bytes_mut().unwrap().copy_from_slice(&bytes);
        h
    };
    for (dt, ht) in a
        .tiles(&[32, 16])
        .unwrap()
        .zip(host.tiles(&[32, 16]).unwrap())
    {
        assert!(dt.bytes().is_err());
        let tl = Layout::column_major(8, dt.layout().shape()).unwrap();
        let mut out = m.array(tl.clone(), &Policy::require(Tier::Pinned)).unwrap();
        let init = out.as_bytes().unwrap().to_vec();
        copy_tile(&dt, &mut out).unwrap();
        assert!(out.as_bytes().unwrap() == cpu_copy(ht.bytes().unwrap(), ht.layout(), &tl, &init));
    }
    let patch_layout = Layout::row_major(8, &[3, 5]).unwrap();
    let mut patch = m.array(patch_layout, &Policy::require(Tier::Dram)).unwrap();
    patch.as_bytes_mut().unwrap().fill(0xFF);
    copy_into_tile(&patch, &mut a, &[50, 60]).unwrap();
    let got = device_bytes(&a);
    for r in 0..100 {
        for c in 0..70 {
            let off = layout.byte_offset(&[r, c]).unwrap();
            let inside = (50..53).contains(&r) && (60..65).contains(&c);
            let want: &[u8] = if inside {
                &[0xFF; 8]
            } else {
                &bytes[off..off + 8]
            };
            assert!(got[off..off + 8] == *want, "({r}, {c})");
        }
    }
    m.migrate_array(
        &mut a,
        Some(Layout::column_major(8, &[100, 70]).unwrap()),
        &Policy::require(Tier::Pinned),
    )
    .unwrap();
    assert!(a.as_bytes().is_ok());
}

#[test]
fn completion_handles_poll_wait_and_chain() {
    let Some(m) = gpu_node() else { return };
    let layout = Layout::row_major(8, &[2048, 2048]).unwrap();
    let mut src = m
        .array_owned(layout.clone(), &Policy::require(Tier::Pinned))
        .unwrap();
    let bytes = pattern(layout.required_len(), 5);
    src.as_bytes_mut().unwrap().copy_from_slice(&bytes);
    let dev = m
        .array_owned(layout.clone(), &Policy::require(Tier::Gpu))
        .unwrap();
    let mut t = copy_async(src, dev);
    while !t.poll() {
        std::thread::yield_now();
    }
    let (src, dev) = t.wait().unwrap();
    // A stream of the same runtime waits on a transfer, then copies.
    let gpu = m.pool_of(Tier::Gpu).unwrap().gpu().unwrap();
    let rt = gpu.runtime();
    let other = m
        .array_owned(layout.clone(), &Policy::require(Tier::Gpu))
        .unwrap();
    let other_ptr = DevicePtr(other.allocation().unwrap().addr() as u64);
    let dev_ptr = DevicePtr(dev.allocation().unwrap().addr() as u64);
    let mut t = copy_async(src, dev);
    let s = rt.create_stream().unwrap();
    t.then_on(s).unwrap();
    // SAFETY: both arrays live until the stream is synchronized.
    unsafe { rt.copy_dtod_async(other_ptr, dev_ptr, layout.required_len(), s) }.unwrap();
    rt.synchronize_stream(s).unwrap();
    rt.destroy_stream(s).unwrap();
    let (_src, dev) = t.wait().unwrap();
    assert!(device_bytes(&other) == bytes);
    // Chained: device -> device, then to the host in another layout.
    let col = Layout::column_major(8, &[2048, 2048]).unwrap();
    let back = m
        .array_owned(col.clone(), &Policy::require(Tier::Dram))
        .unwrap();
    let init = back.as_bytes().unwrap().to_vec();
    let chained = copy_async(dev, other).then(move |(_, other)| copy_async(other, back));
    let (_, back) = chained.wait().unwrap();
    assert!(back.as_bytes().unwrap() == cpu_copy(&bytes, &layout, &col, &init));
}

#[test]
fn bad_input_is_a_typed_error() {
    let Some(m) = gpu_node() else { return };
    let gpu = gpu0();
    let mut buf = gpu.alloc(1000).unwrap();
    assert!(matches!(
        buf.copy_from_host(&[0; 1001]),
        Err(Error::OutOfBounds {
            requested: 1001,
            available: 1000
        })
    ));
    let mut small = gpu.alloc_pinned(10).unwrap();
    let mut big = gpu.alloc_pinned(1001).unwrap();
    assert!(matches!(
        buf.copy_to_pinned(&mut big),
        Err(Error::OutOfBounds { .. })
    ));
    buf.copy_to_pinned(&mut small).unwrap();
    let rt = gpu.runtime();
    let bogus = rt.create_stream().unwrap();
    rt.destroy_stream(bogus).unwrap();
    assert!(matches!(
        rt.synchronize_stream(bogus),
        Err(Error::Gpu { .. })
    ));
    assert!(matches!(gpu.alloc(0), Err(Error::ZeroSize)));
    let mut a = m
        .array(
            Layout::row_major(8, &[4, 4]).unwrap(),
            &Policy::require(Tier::Gpu),
        )
        .unwrap();
    let b = m
        .array(
            Layout::row_major(8, &[4, 5]).unwrap(),
            &Policy::require(Tier::Gpu),
        )
        .unwrap();
    assert!(matches!(copy_array(&b, &mut a), Err(Error::Layout(_))));
}

#[test]
fn peer_copies_between_two_devices() {
    let Some(m) = gpu_node() else { return };
    let count = cuda_devices().map(|d| d.len()).unwrap_or(0);
    if count < 2 {
        eprintln!("skipped: one CUDA device, no peer to copy to");
        return;
    }
    let layout = Layout::row_major(8, &[300, 300]).unwrap();
    let gpus: Vec<_> = m
        .spaces()
        .filter(|s| s.tier == Tier::Gpu)
        .map(|s| s.id)
        .collect();
    let mut a = m.array(layout.clone(), &Policy::require(gpus[0])).unwrap();
    let mut b = m.array(layout.clone(), &Policy::require(gpus[1])).unwrap();
    let mut host = pattern(layout.required_len(), 4);
    let h = Array::wrap(&mut host, layout.clone()).unwrap();
    copy_array(&h, &mut a).unwrap();
    assert_eq!(route(&a, &b).unwrap(), Route::DeviceToDevice { peer: true });
    copy_array(&a, &mut b).unwrap();
    assert!(device_bytes(&b) == h.as_bytes().unwrap());
}
