use super::*;

/// A deterministic byte pattern.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes at unaligned offsets over a patterned file and checks every
/// byte against a model; returns the file's whole content.
fn round_trips(spill: &SpillFile) -> Vec<u8> {
    let cap = spill.capacity();
    let mut model = pattern(cap, 1);
    spill.write(0, &model).unwrap();
    for (i, (offset, len)) in [
        (3, 1),
        (4097, 4095),
        (8192 + 100, 4096),
        (12_345, (1 << 20) + 7),
        (cap - 5, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(len, 50 + i as u8);
        spill.write(offset, &data).unwrap();
        model[offset..offset + len].copy_from_slice(&data);
        let mut back = vec![0; len];
        spill.read(offset, &mut back).unwrap();
        assert!(back == data, "{} bytes at {offset}", len);
    }
    let mut all = vec![0; cap];
    spill.read(0, &mut all).unwrap();
    assert!(all == model, "neighbours of the unaligned writes kept");
    all
}

#[test]
fn unaligned_round_trips_and_both_engines_agree() {
    let dir = tempfile::tempdir().unwrap();
    let pread = SpillFile::create(dir.path(), "p", 3 << 20, Some(IoEngine::Pread)).unwrap();
    assert_eq!(pread.io().engine, IoEngine::Pread);
    eprintln!("spill on the test directory: {}", pread.io());
    let from_pread = round_trips(&pread);
    match SpillFile::create(dir.path(), "r", 3 << 20, Some(IoEngine::IoUring)) {
        Ok(ring) => {
            assert_eq!(ring.io().engine, IoEngine::IoUring);
            assert!(round_trips(&ring) == from_pread, "same bytes either way");
        }
        Err(e) => eprintln!("skipped the io_uring half: {e}"),
    }
}

#[test]
fn files_are_preallocated_named_and_removed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillFile::create(dir.path(), "cold", 1 << 20, None).unwrap();
    assert_eq!(spill.path(), dir.path().join("cold.spill"));
    let meta = std::fs::metadata(spill.path()).unwrap();
    assert_eq!(meta.len(), 1 << 20);
    assert!(meta.blocks() * 512 >= 1 << 20, "{} blocks", meta.blocks());
    assert!(matches!(
        SpillFile::create(dir.path(), "cold", 4096, None),
        Err(Error::Os { call: "open", .. })
    ));
    drop(spill);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_requests_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        SpillFile::create(dir.path(), "a/b", 4096, None),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        SpillFile::create(dir.path(), "z", 0, None),
        Err(Error::SizeTooLarge { .. })
    ));
    let spill = SpillFile::create(dir.path(), "s", 5000, None).unwrap();
    assert_eq!(spill.capacity(), 8192);
    let mut buf = [0u8; 2];
    assert!(matches!(
        spill.read(8191, &mut buf),
        Err(Error::OutOfBounds {
            requested: 8193,
            available: 8192
        })
    ));
    assert!(matches!(
        spill.write(usize::MAX, b"x"),
        Err(Error::OutOfBounds { .. })
    ));
    spill.read(8191, &mut buf[..1]).unwrap();
    assert_eq!(buf[0], 0, "never-written bytes read as zeros");
}

#[test]
fn allocations_stage_out_and_back_in() {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillFile::create(dir.path(), "stage", 1 << 20, None).unwrap();
    let mamba = crate::Mamba::discover(&crate::Config {
        gpu: false,
        ..crate::Config::default()
    })
    .unwrap();
    let policy = crate::Policy::require(crate::Tier::Dram);
    let mut a = mamba.allocate(10_000, 64, &policy).unwrap();
    a.as_mut_slice()
        .unwrap()
        .copy_from_slice(&pattern(10_000, 9));
    spill.stage_out(777, &a).unwrap();
    let mut b = mamba.allocate(10_000, 64, &policy).unwrap();
    spill.stage_in(777, &mut b).unwrap();
    assert!(b.as_slice().unwrap() == a.as_slice().unwrap());
}

/// A file system mounted on a fresh directory, unmounted on drop.
pub(crate) struct TinyMount {
    pub(crate) dir: tempfile::TempDir,
}

impl TinyMount {
    /// A tmpfs of `size` (e.g. `1m`).
    pub(crate) fn new(size: &str) -> std::result::Result<TinyMount, String> {
        Self::mount("tmpfs", &format!("size={size}"))
    }

    fn mount(kind: &str, options: &str) -> std::result::Result<TinyMount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = std::process::Command::new("mount")
            .args(["-t", kind, "-o", options, kind])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount failed ({status}): needs root"));
        }
        Ok(TinyMount { dir })
    }
}

impl Drop for TinyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_file_system_is_a_typed_error() {
    let mount = match TinyMount::new("1m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tiny tmpfs ({e})");
            return;
        }
    };
    let small = SpillFile::create(mount.dir.path(), "fits", 256 << 10, None).unwrap();
    eprintln!("spill on tmpfs: {}", small.io());
    small.write(1, b"kept").unwrap();
    let err = SpillFile::create(mount.dir.path(), "too-big", 4 << 20, None).unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
    assert!(
        !mount.dir.path().join("too-big.spill").exists(),
        "a failed file is removed"
    );
    let mut back = [0u8; 4];
    small.read(1, &mut back).unwrap();
    assert_eq!(&back, b"kept");
}

#[test]
fn a_file_system_without_o_direct_falls_back_to_buffered_io() {
    // ramfs refuses O_DIRECT (and fallocate).
    let mount = match TinyMount::mount("ramfs", "mode=0700") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a ramfs ({e})");
            return;
        }
    };
    let spill = SpillFile::create(mount.dir.path(), "buffered", 2 << 20, None).unwrap();
    assert!(!spill.io().direct, "{}", spill.io());
    assert!(spill.io().to_string().starts_with("buffered/"));
    round_trips(&spill);
}
