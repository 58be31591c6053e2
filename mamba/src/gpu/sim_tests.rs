use super::*;

fn filled(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn copies_wait_in_their_stream_until_forced_and_read_the_host_when_they_run() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let d = dev.alloc_async(100, s).unwrap();
    let mut host = filled(100, 1);
    // SAFETY: `host` lives until the stream is synchronized below.
    unsafe { dev.copy_htod_async(d, host.as_ptr(), 100, s) }.unwrap();
    assert_eq!(dev.pending(s).unwrap(), 1);
    assert_eq!(dev.peek(d, 100).unwrap(), vec![0; 100], "ran before forced");
    assert_eq!(dev.stats().htod_copies, 0);
    // Overwriting the host buffer before completion is visible on the
    // device: this is what staging must never do.
    host[0] = 0xEE;
    dev.synchronize_stream(s).unwrap();
    let seen = dev.peek(d, 100).unwrap();
    assert_eq!(seen[0], 0xEE);
    assert_eq!(seen[1..], filled(100, 1)[1..]);
    let st = dev.stats();
    assert_eq!((st.htod_copies, st.htod_bytes), (1, 100));
}

#[test]
fn round_trip_through_device_memory() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.alloc_async(4097, s).unwrap();
    let b = dev.alloc_async(4097, s).unwrap();
    let src = filled(4097, 7);
    let mut back = vec![0u8; 4097];
    // SAFETY: both host buffers live until the synchronization.
    unsafe {
        dev.copy_htod_async(a, src.as_ptr(), 4097, s).unwrap();
        dev.copy_dtod_async(b, a, 4097, s).unwrap();
        dev.copy_dtoh_async(back.as_mut_ptr(), b, 4097, s).unwrap();
    }
    assert_eq!(back, vec![0; 4097]);
    dev.synchronize().unwrap();
    assert_eq!(back, src);
    let st = dev.stats();
    assert_eq!(
        (st.dtod_copies, st.dtod_bytes, st.dtoh_bytes),
        (1, 4097, 4097)
    );
}

#[test]
fn a_query_advances_one_operation_and_a_wait_stops_at_the_event() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let d = dev.alloc_async(8, s).unwrap();
    let e = dev.create_event().unwrap();
    assert!(dev.query_event(e).unwrap(), "never recorded: complete");
    let src = [1u8; 8];
    // SAFETY: `src` outlives the synchronization at the end.
    unsafe {
        dev.copy_htod_async(d, src.as_ptr(), 4, s).unwrap();
        dev.copy_htod_async(d.offset(4).unwrap(), src.as_ptr(), 4, s)
            .unwrap();
    }
    dev.record_event(e, s).unwrap();
    // SAFETY: as above.
    unsafe { dev.copy_htod_async(d, src.as_ptr(), 8, s) }.unwrap();
    assert!(!dev.query_event(e).unwrap());
    assert_eq!(dev.stats().htod_copies, 1);
    dev.wait_event(e).unwrap();
    assert!(dev.query_event(e).unwrap());
    assert_eq!(dev.stats().htod_copies, 2);
    assert_eq!(dev.pending(s).unwrap(), 1, "the copy after the event waits");
    dev.synchronize_stream(s).unwrap();
    assert_eq!(dev.stats().htod_copies, 3);
}

#[test]
fn a_stream_waiting_on_an_event_runs_after_the_other_stream_reached_it() {
    let dev = SimDevice::new();
    let (a, b) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
    let x = dev.alloc_async(16, a).unwrap();
    let y = dev.alloc_async(16, a).unwrap();
    let e = dev.create_event().unwrap();
    let src = filled(16, 3);
    let later = [9u8; 16];
    // SAFETY: both host buffers outlive the synchronization.
    unsafe { dev.copy_htod_async(x, src.as_ptr(), 16, a) }.unwrap();
    dev.record_event(e, a).unwrap();
    // SAFETY: as above.
    unsafe { dev.copy_htod_async(x, later.as_ptr(), 16, a) }.unwrap();
    dev.stream_wait_event(b, e).unwrap();
    // SAFETY: as above.
    unsafe { dev.copy_dtod_async(y, x, 16, b) }.unwrap();
    // One step of `b` is blocked on the event: it runs `a` instead.
    assert!(dev.step(b).unwrap());
    assert_eq!(dev.pending(b).unwrap(), 2);
    dev.synchronize_stream(b).unwrap();
    assert_eq!(
        dev.peek(y, 16).unwrap(),
        src,
        "b copied what a held at the event"
    );
    assert_eq!(
        dev.pending(a).unwrap(),
        1,
        "a's work after the event is not forced"
    );
    dev.synchronize().unwrap();
    assert_eq!(dev.peek(x, 16).unwrap(), later);
}

#[test]
fn bad_ranges_and_handles_are_typed_errors() {
    let dev = SimDevice::new();
    let other = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let foreign = other.create_stream().unwrap();
    let d = dev.alloc_async(64, s).unwrap();
    let host = [0u8; 128];
    // SAFETY: every call is refused before anything is enqueued.
    unsafe {
        for r in [
            dev.copy_htod_async(d, host.as_ptr(), 65, s),
            dev.copy_htod_async(d.offset(1).unwrap(), host.as_ptr(), 64, s),
            dev.copy_htod_async(DevicePtr(8), host.as_ptr(), 1, s),
            dev.copy_htod_async(d, host.as_ptr(), 1, foreign),
            dev.copy_htod_async(d, std::ptr::null(), 1, s),
            dev.copy_dtod_async(d, d.offset(32).unwrap(), 33, s),
        ] {
            assert!(matches!(r, Err(Error::Gpu { .. })), "{r:?}");
        }
    }
    assert_eq!(dev.pending(s).unwrap(), 0);
    assert!(matches!(dev.alloc_async(0, s), Err(Error::ZeroSize)));
    assert!(matches!(dev.alloc_pinned(0), Err(Error::ZeroSize)));
    let e = other.create_event().unwrap();
    assert!(dev.record_event(e, s).is_err());
    assert!(dev.query_event(e).is_err());
    // SAFETY: `d` is a live allocation; the second free is refused.
    unsafe {
        dev.free_async(d, s).unwrap();
        assert!(dev.free_async(d, s).is_err());
        assert!(dev.free_async(DevicePtr(d.0 + 1), s).is_err());
    }
    dev.destroy_stream(s).unwrap();
    assert!(dev.pending(s).is_err());
}

#[test]
fn frees_are_stream_ordered() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let d = dev.alloc_async(32, s).unwrap();
    let src = [5u8; 32];
    let mut back = [0u8; 32];
    // SAFETY: host buffers outlive the synchronization; `d` is freed once,
    // after its last use on the same stream.
    unsafe {
        dev.copy_htod_async(d, src.as_ptr(), 32, s).unwrap();
        dev.copy_dtoh_async(back.as_mut_ptr(), d, 32, s).unwrap();
        dev.free_async(d, s).unwrap();
    }
    assert_eq!(dev.stats().live_bytes, 32);
    dev.synchronize_stream(s).unwrap();
    assert_eq!(back, src);
    let st = dev.stats();
    assert_eq!((st.allocs, st.frees, st.live_bytes), (1, 1, 0));
    assert!(dev.peek(d, 1).is_err());
}

#[test]
fn peer_copies_reach_the_other_device_of_the_group() {
    let group = SimDevice::group(2);
    let (g0, g1) = (&group[0], &group[1]);
    let s0 = g0.create_stream().unwrap();
    let s1 = g1.create_stream().unwrap();
    let a = g0.alloc_async(10, s0).unwrap();
    let b = g1.alloc_async(10, s1).unwrap();
    let src = filled(10, 2);
    // SAFETY: `src` outlives the synchronization.
    unsafe {
        g0.copy_htod_async(a, src.as_ptr(), 10, s0).unwrap();
        assert!(
            g0.copy_peer_async(1, a, b, 10, s0).is_err(),
            "ranges swapped"
        );
        assert!(
            g0.copy_dtod_async(b, a, 10, s0).is_err(),
            "b is not on device 0"
        );
        g0.copy_peer_async(1, b, a, 10, s0).unwrap();
    }
    g0.synchronize().unwrap();
    assert_eq!(g1.peek(b, 10).unwrap(), src);
    assert!(g0.peek(b, 10).is_err());
    assert_eq!(g0.stats().peer_bytes, 10);
    assert_eq!(g1.stats().peer_bytes, 0);
    assert_eq!(g0.ordinal(), 0);
    assert_eq!(g1.ordinal(), 1);
}

#[test]
fn pinned_memory_is_host_memory_and_is_counted() {
    let dev = SimDevice::new();
    let p = dev.alloc_pinned(3 * 4096 + 1).unwrap();
    // SAFETY: the allocation is 3 pages + 1 byte long.
    let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), 3 * 4096 + 1) };
    assert!(bytes.iter().all(|&b| b == 0));
    bytes.fill(4);
    // SAFETY: allocated above and no longer used.
    unsafe { dev.free_pinned(p) }.unwrap();
    let st = dev.stats();
    assert_eq!((st.pinned_allocs, st.pinned_frees), (1, 1));
    let q = dev.alloc_pinned(16).unwrap();
    // SAFETY: `q` is freed once; the second free is refused by the table.
    unsafe {
        dev.free_pinned(q).unwrap();
        assert!(dev.free_pinned(q).is_err());
    }
}

#[test]
fn device_addresses_are_never_host_addresses() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let d = dev.alloc_async(1, s).unwrap();
    assert!(d.0 >= FIRST_ADDRESS);
    assert!(matches!(
        DevicePtr(u64::MAX).offset(1),
        Err(Error::SizeTooLarge { .. })
    ));
}

#[test]
fn host_kernels_run_in_stream_order_on_device_memory() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let x = dev.alloc_async(8, s).unwrap();
    let y = dev.alloc_async(8, s).unwrap();
    let host = filled(8, 3);
    // SAFETY: `host` lives until the stream is synchronized below.
    unsafe { dev.copy_htod_async(x, host.as_ptr(), 8, s) }.unwrap();
    // Doubles every byte of x into y: after the upload, before the
    // download, whatever the host does meanwhile.
    dev.launch_host(s, move |mem| {
        let mut bytes = [0u8; 8];
        mem.read(x, &mut bytes)?;
        for b in &mut bytes {
            *b = b.wrapping_mul(2);
        }
        mem.write(y, &bytes)
    })
    .unwrap();
    let mut back = vec![0u8; 8];
    // SAFETY: `back` is unshared until the synchronization below.
    unsafe { dev.copy_dtoh_async(back.as_mut_ptr(), y, 8, s) }.unwrap();
    assert_eq!(dev.pending(s).unwrap(), 3);
    assert_eq!(dev.stats().launches, 0, "ran before forced");
    dev.synchronize_stream(s).unwrap();
    let doubled: Vec<u8> = host.iter().map(|b| b.wrapping_mul(2)).collect();
    assert_eq!(back, doubled);
    assert_eq!(dev.stats().launches, 1);

    // A kernel reaching outside the allocations fails the synchronization
    // that runs it.
    dev.launch_host(s, move |mem| mem.write(y, &[0; 9]))
        .unwrap();
    assert!(dev.synchronize_stream(s).is_err());
    assert!(dev.launch_host(StreamId(u64::MAX), |_| Ok(())).is_err());
}

#[test]
fn host_kernels_read_and_write_device_memory_in_place() {
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.alloc_async(64, s).unwrap();
    let b = dev.alloc_async(64, s).unwrap();
    let host = filled(64, 5);
    // SAFETY: `host` lives until the stream is synchronized below.
    unsafe { dev.copy_htod_async(a, host.as_ptr(), 64, s) }.unwrap();
    // Across two allocations, both ways round, and within one.
    let twice = |x: &[u8], y: &mut [u8]| {
        for (y, x) in y.iter_mut().zip(x) {
            *y = x.wrapping_mul(2);
        }
    };
    dev.launch_host(s, move |mem| mem.read_write(a, 64, b, 64, twice))
        .unwrap();
    dev.launch_host(s, move |mem| {
        mem.read_write(b, 32, a, 32, |x, y| {
            // In place: 8-byte aligned as the device addresses are.
            assert_eq!(x.as_ptr() as usize % 8, 0);
            assert_eq!(y.as_ptr() as usize % 8, 0);
            y.copy_from_slice(x);
        })
    })
    .unwrap();
    let (b32, b40) = (DevicePtr(b.0 + 32), DevicePtr(b.0 + 40));
    dev.launch_host(s, move |mem| mem.read_write(b, 32, b32, 32, twice))
        .unwrap();
    dev.launch_host(s, move |mem| mem.read_write(b40, 8, b, 8, twice))
        .unwrap();
    dev.synchronize_stream(s).unwrap();
    let doubled: Vec<u8> = host.iter().map(|x| x.wrapping_mul(2)).collect();
    let mut want_b = doubled.clone();
    for i in 0..32 {
        want_b[32 + i] = doubled[i].wrapping_mul(2);
    }
    for i in 0..8 {
        want_b[i] = want_b[40 + i].wrapping_mul(2);
    }
    assert_eq!(dev.peek(b, 64).unwrap(), want_b);
    let mut want_a = host.clone();
    want_a[..32].copy_from_slice(&doubled[..32]);
    assert_eq!(dev.peek(a, 64).unwrap(), want_a);

    // Overlapping ranges, and ranges outside an allocation, fail the
    // synchronization that runs the kernel.
    let b16 = DevicePtr(b.0 + 16);
    dev.launch_host(s, move |mem| mem.read_write(b, 32, b16, 32, |_, _| ()))
        .unwrap();
    assert!(dev.synchronize_stream(s).is_err());
    dev.launch_host(s, move |mem| mem.read_write(a, 65, b, 8, |_, _| ()))
        .unwrap();
    assert!(dev.synchronize_stream(s).is_err());
}
