use super::*;
use std::process::Command;

/// Variable that makes the test binary act as the writer child.
const CHILD_DIR: &str = "MAMBA_PMEM_CHILD_DIR";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// The child's part (run by `objects_survive_a_killed_writer` in a child
/// process): writes and flushes `kept`, writes `torn` after its flush, and
/// kills itself with SIGKILL.
#[test]
#[ignore = "run as a child process by objects_survive_a_killed_writer"]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        eprintln!("skipped: only meaningful as objects_survive_a_killed_writer's child");
        return;
    };
    let space = PmemSpace::new(Path::new(&dir)).unwrap();
    let mut kept = space.create("kept", 100_003).unwrap();
    kept.as_mut_slice().copy_from_slice(&pattern(100_003, 3));
    kept.flush().unwrap();
    let mut torn = space.create("torn", 5000).unwrap();
    torn.as_mut_slice()[..4].copy_from_slice(b"lost");
    // SAFETY: kill has no memory preconditions; the process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the process");
}

#[test]
fn objects_survive_a_killed_writer() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pmem::tests::writer_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let space = PmemSpace::new(dir.path()).unwrap();
    assert_eq!(space.names().unwrap(), ["kept", "torn"]);
    let kept = space.open("kept").unwrap();
    assert_eq!(kept.len(), 100_003);
    assert!(kept.as_slice() == pattern(100_003, 3), "flushed data back");
    assert_eq!(kept.flushes(), 2, "the creation's flush and the writer's");
    eprintln!("flush mode here: {}", kept.flush_mode());
    let err = space.open("torn").unwrap_err();
    assert!(
        matches!(&err, Error::TornObject { name, reason } if name == "torn" && reason.contains("changed after flush 1")),
        "{err}"
    );
}

#[test]
fn reopening_checks_header_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let space = PmemSpace::new(dir.path()).unwrap();
    let mut obj = space.create("a", 10_000).unwrap();
    obj.as_mut_slice()[9_999] = 1;
    obj.flush().unwrap();
    let path = obj.path().to_owned();
    drop(obj);
    assert_eq!(space.open("a").unwrap().as_slice()[9_999], 1);

    // One flipped data byte.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 5] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = space.open("a").unwrap_err();
    assert!(matches!(err, Error::TornObject { .. }), "{err}");
    bytes[HEADER + 5] ^= 0x40;

    // A damaged header (its length field).
    bytes[17] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = space.open("a").unwrap_err();
    assert!(err.to_string().contains("header is damaged"), "{err}");
    bytes[17] ^= 1;

    // A truncated file.
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let err = space.open("a").unwrap_err();
    assert!(err.to_string().contains("the file holds"), "{err}");

    // Not an object at all.
    std::fs::write(&path, vec![0u8; HEADER + 10]).unwrap();
    let err = space.open("a").unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");

    // Restored, it opens again.
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(space.open("a").unwrap().as_slice()[9_999], 1);
}

#[test]
fn names_and_sizes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let space = PmemSpace::new(dir.path()).unwrap();
    for bad in ["", "a/b", ".hidden", "sp ace"] {
        assert!(
            matches!(space.create(bad, 8), Err(Error::Config(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(space.create("z", 0), Err(Error::ZeroSize)));
    assert!(matches!(
        space.open("missing"),
        Err(Error::ObjectNotFound { .. })
    ));
    let obj = space.create("x", 8).unwrap();
    assert!(matches!(
        space.create("x", 8),
        Err(Error::Os { call: "open", .. })
    ));
    assert_eq!(
        obj.flush_mode(),
        FlushMode::Msync,
        "no DAX in a temporary directory"
    );
    drop(obj);
    space.remove("x").unwrap();
    assert!(matches!(
        space.remove("x"),
        Err(Error::ObjectNotFound { .. })
    ));
    assert!(space.names().unwrap().is_empty());
}

#[test]
fn checksums_see_changed_swapped_and_shortened_data() {
    let a = pattern(100, 1);
    let mut swapped = a.clone();
    swapped.swap(0, 8);
    assert_ne!(checksum(&a), checksum(&swapped));
    assert_ne!(checksum(&a), checksum(&a[..99]));
    assert_ne!(checksum(&[0; 8]), checksum(&[0; 16]));
    assert_eq!(checksum(&a), checksum(&a.clone()));
}

#[test]
fn nvdimm_directory_spaces_hold_objects() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::Config {
        gpu: false,
        nvdimm: vec![crate::config::DirectoryTier {
            path: dir.path().to_owned(),
            capacity: Some(crate::ByteSize(1 << 20)),
            bandwidth_mib_s: None,
            latency_ns: None,
        }],
        ..crate::Config::default()
    };
    let mamba = crate::Mamba::discover(&config).unwrap();
    let nv = mamba
        .spaces()
        .find(|s| s.tier == crate::Tier::Nvdimm)
        .unwrap()
        .id;
    let space = mamba.persistent_objects(nv).unwrap();
    assert_eq!(space.dir(), dir.path());
    space.create("o", 10).unwrap();
    assert_eq!(space.names().unwrap(), ["o"]);
    let dram = mamba
        .spaces()
        .find(|s| s.tier == crate::Tier::Dram)
        .unwrap()
        .id;
    assert!(matches!(
        mamba.persistent_objects(dram),
        Err(Error::Unsupported { .. })
    ));
}
