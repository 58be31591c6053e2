use super::*;
use crate::gpu::SimDevice;

const SLOT: usize = 16;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn ring(dev: &SimDevice, slots: usize) -> StagingRing {
    let config = StagingConfig {
        slots,
        slot_size: SLOT,
    };
    StagingRing::new(Arc::new(dev.clone()), config).unwrap()
}

const SIZES: [usize; 10] = [
    0,
    1,
    SLOT - 1,
    SLOT,
    SLOT + 1,
    2 * SLOT,
    2 * SLOT + 1,
    3 * SLOT,
    5 * SLOT + 7,
    1000,
];

#[test]
fn uploads_of_every_size_arrive_whole_with_one_dma_per_chunk() {
    for slots in [1, 2, 3] {
        for len in SIZES {
            let dev = SimDevice::new();
            let s = dev.create_stream().unwrap();
            let d = dev.alloc_async(len.max(1), s).unwrap();
            let mut r = ring(&dev, slots);
            let src = pattern(len);
            r.upload(d, &src, s).unwrap();
            // Only the DMAs the ring could not yet wait for are pending:
            // at most one per slot (plus its event mark).
            assert!(
                dev.pending(s).unwrap() <= 2 * slots,
                "slots {slots} len {len}"
            );
            r.wait_idle().unwrap();
            assert_eq!(dev.peek(d, len).unwrap(), src, "slots {slots} len {len}");
            let st = dev.stats();
            assert_eq!(st.htod_copies as usize, len.div_ceil(SLOT));
            assert_eq!(st.htod_bytes as usize, len);
        }
    }
}

#[test]
fn downloads_of_every_size_arrive_whole_with_one_dma_per_chunk() {
    for slots in [1, 2, 3] {
        for len in SIZES {
            let dev = SimDevice::new();
            let s = dev.create_stream().unwrap();
            let d = dev.alloc_async(len.max(1), s).unwrap();
            let src = pattern(len);
            // SAFETY: `src` outlives the synchronization.
            unsafe { dev.copy_htod_async(d, src.as_ptr(), len, s) }.unwrap();
            dev.synchronize_stream(s).unwrap();
            let mut r = ring(&dev, slots);
            let mut out = vec![0xAA; len];
            r.download(&mut out, d, s).unwrap();
            assert_eq!(out, src, "slots {slots} len {len}");
            assert_eq!(dev.stats().dtoh_copies as usize, len.div_ceil(SLOT));
        }
    }
}

#[test]
fn back_to_back_copies_reuse_slots_only_after_their_dma() {
    // Two uploads then a download through the same ring, without waiting
    // in between: each slot reuse must wait for the DMA that read it, or
    // the device would get the later chunk's bytes.
    let dev = SimDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.alloc_async(70, s).unwrap();
    let b = dev.alloc_async(70, s).unwrap();
    let mut r = ring(&dev, 2);
    let first = pattern(70);
    let second: Vec<u8> = first.iter().map(|x| !x).collect();
    r.upload(a, &first, s).unwrap();
    r.upload(b, &second, s).unwrap();
    let mut out = vec![0; 70];
    r.download(&mut out, a, s).unwrap();
    assert_eq!(out, first);
    r.download(&mut out, b, s).unwrap();
    assert_eq!(out, second);
}

#[test]
fn bad_configurations_and_ranges_are_errors() {
    let dev = SimDevice::new();
    let rt: Arc<dyn DeviceRuntime> = Arc::new(dev.clone());
    for config in [
        StagingConfig {
            slots: 0,
            slot_size: SLOT,
        },
        StagingConfig {
            slots: 2,
            slot_size: 0,
        },
    ] {
        assert!(matches!(
            StagingRing::new(Arc::clone(&rt), config),
            Err(Error::Config(_))
        ));
    }
    let s = dev.create_stream().unwrap();
    let d = dev.alloc_async(20, s).unwrap();
    let mut r = ring(&dev, 2);
    assert!(matches!(r.upload(d, &[1; 21], s), Err(Error::Gpu { .. })));
    let mut out = [0u8; 21];
    assert!(matches!(r.download(&mut out, d, s), Err(Error::Gpu { .. })));
    drop(r);
    let st = dev.stats();
    assert_eq!(st.pinned_allocs, st.pinned_frees, "slots freed on drop");
}

#[test]
fn the_environment_shapes_the_ring() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        StagingConfig::from_env_with(vars(&[])).unwrap(),
        StagingConfig::default()
    );
    let c = StagingConfig::from_env_with(vars(&[
        ("MAMBA_STAGING_SLOTS", "3"),
        ("MAMBA_STAGING_SLOT_SIZE", "8MiB"),
    ]))
    .unwrap();
    assert_eq!(
        c,
        StagingConfig {
            slots: 3,
            slot_size: 8 << 20
        }
    );
    for bad in [
        &[("MAMBA_STAGING_SLOTS", "0")][..],
        &[("MAMBA_STAGING_SLOTS", "two")][..],
        &[("MAMBA_STAGING_SLOT_SIZE", "0")][..],
        &[("MAMBA_STAGING_SLOT_SIZE", "lots")][..],
    ] {
        assert!(matches!(
            StagingConfig::from_env_with(vars(bad)),
            Err(Error::Config(_))
        ));
    }
}
