//! The archive in persistent memory: stored through a node's NVDIMM space,
//! everything dropped, the node discovered again, and read back.

use cdo::archive::{Archive, ArchiveError, Backend, Flushed, PersistentArchive};
use cdo::{FlatAttributes, Value};
use mamba::config::DirectoryTier;
use mamba::pmem::PmemSpace;
use mamba::{Config, Mamba, Tier};
use std::path::Path;

/// A node whose NVDIMM tier is `dir` (an emulated persistent-memory
/// directory), on a synthetic one-node topology.
fn node(dir: &Path) -> Mamba {
    Mamba::discover(&Config {
        synthetic: Some("numa:1 core:1 pu:1".into()),
        gpu: false,
        nvdimm: vec![DirectoryTier {
            path: dir.to_owned(),
            capacity: Some(mamba::ByteSize(64 << 20)),
            bandwidth_mib_s: None,
            latency_ns: None,
        }],
        ..Config::default()
    })
    .unwrap()
}

fn archive_of(mamba: &Mamba) -> PersistentArchive {
    let nv = mamba
        .spaces()
        .find(|s| s.tier == Tier::Nvdimm)
        .expect("the configured NVDIMM directory")
        .id;
    PersistentArchive::new(mamba.persistent_objects(nv).unwrap())
}

fn attrs(step: u64) -> FlatAttributes {
    FlatAttributes::from([
        ("app.step".to_owned(), Value::UInt(step)),
        ("app.kind".to_owned(), Value::Str("checkpoint".into())),
    ])
}

#[test]
fn an_archive_in_persistent_memory_survives_its_process_state() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    {
        let mamba = node(dir.path());
        let archive = archive_of(&mamba);
        let stored = archive
            .store("run1/checkpoint/40", &attrs(40), &big)
            .unwrap();
        // A directory on an ordinary file system: no DAX, so msync.
        println!("persistent archive flush: {}", stored.flushed);
        assert!(matches!(
            stored.flushed,
            Flushed::Msync | Flushed::CacheLines
        ));
        assert!(stored.path.starts_with(dir.path()) && stored.path.is_file());
        archive.store("run1/log", &attrs(1), b"").unwrap();
        archive.store("run1/log", &attrs(2), b"second").unwrap();
    }
    // Everything dropped: a new node over the same directory.
    let mamba = node(dir.path());
    let archive = archive_of(&mamba);
    assert_eq!(archive.names().unwrap(), ["run1/checkpoint/40", "run1/log"]);
    let ckpt = archive.load("run1/checkpoint/40").unwrap().unwrap();
    assert_eq!((ckpt.attributes, ckpt.data), (attrs(40), big));
    let log = archive.load("run1/log").unwrap().unwrap();
    assert_eq!((log.attributes, log.data), (attrs(2), b"second".to_vec()));
    // One object per entry: the replaced generation is gone.
    assert_eq!(archive.space().names().unwrap().len(), 2);
    assert!(archive.load("run1/none").unwrap().is_none());
    assert!(archive.remove("run1/log").unwrap());
    assert!(!archive.remove("run1/log").unwrap());
    assert_eq!(archive.names().unwrap(), ["run1/checkpoint/40"]);
}

#[test]
fn a_store_cut_short_leaves_the_previous_generation_readable() {
    let dir = tempfile::tempdir().unwrap();
    let space = PmemSpace::new(dir.path()).unwrap();
    let archive = PersistentArchive::new(space.clone());
    archive.store("ckpt", &attrs(1), b"first").unwrap();
    // The next generation, written but never flushed (the process died
    // before): reopening it finds it torn.
    let mut torn = space.create("c-ckpt.1", 64).unwrap();
    torn.as_mut_slice().fill(0xAB);
    drop(torn);
    let back = archive.load("ckpt").unwrap().unwrap();
    assert_eq!(back.data, b"first");
    // The next store supersedes both and clears them away.
    archive.store("ckpt", &attrs(3), b"third").unwrap();
    assert_eq!(archive.load("ckpt").unwrap().unwrap().data, b"third");
    assert_eq!(space.names().unwrap(), ["c-ckpt.2"]);
    // With every generation torn the entry is reported, never guessed.
    let mut only = space.open("c-ckpt.2").unwrap();
    only.as_mut_slice()[0] ^= 1;
    drop(only);
    assert!(matches!(
        archive.load("ckpt"),
        Err(ArchiveError::Corrupt { .. })
    ));
}

#[test]
fn bad_names_and_attributes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = PersistentArchive::new(PmemSpace::new(dir.path()).unwrap());
    for name in ["", "a//b", "../x", "a\0b"] {
        assert!(matches!(
            archive.store(name, &FlatAttributes::new(), b"x"),
            Err(ArchiveError::BadName { .. })
        ));
    }
    let nan = FlatAttributes::from([("app.x".to_owned(), Value::Float(f64::NAN))]);
    assert!(matches!(
        archive.store("ok", &nan, b"x"),
        Err(ArchiveError::BadAttribute { .. })
    ));
    assert!(archive.names().unwrap().is_empty());
}

#[test]
fn an_archive_opened_on_the_pmem_backend_keeps_entries_as_flushed_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nvdimm/archive");
    let archive = Archive::open_backend(Backend::Pmem(root.clone())).unwrap();
    assert_eq!(archive.backend(), Backend::Pmem(root.clone()));
    let stored = archive.store("run/a", &attrs(1), b"alpha").unwrap();
    // Emulated persistent memory (no fsdax under a temporary directory).
    assert_eq!(stored.flushed, Flushed::Msync);
    assert_eq!(stored.path, archive.data_path("run/a").unwrap());
    archive.store("run/b", &attrs(2), b"beta").unwrap();
    assert!(archive.contains("run/a").unwrap());
    assert!(!archive.contains("run/c").unwrap());
    // Dead letters are plain files beside the objects, never entries.
    archive
        .dead_letter("bad/../x", &attrs(3), Some(b"refused"), "no path")
        .unwrap();

    // A fresh archive over the same space reads what the objects hold,
    // and the directory backend over it sees no entry of its own.
    let again = Archive::open_backend(Backend::Pmem(root.clone())).unwrap();
    assert_eq!(again.names().unwrap(), ["run/a", "run/b"]);
    let a = again.load("run/a").unwrap().unwrap();
    assert_eq!((a.attributes, a.data), (attrs(1), b"alpha".to_vec()));
    let letters = again.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].name, "bad/../x");
    assert!(Archive::open(&root).unwrap().names().unwrap().is_empty());

    // A changed byte in the object makes the entry corrupt, not wrong.
    let path = again.data_path("run/b").unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        again.load("run/b"),
        Err(ArchiveError::Corrupt { .. })
    ));
    assert!(again.remove("run/b").unwrap());
    assert_eq!(again.names().unwrap(), ["run/a"]);
}

#[test]
fn a_pmem_backend_on_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    assert!(matches!(
        Archive::open_backend(Backend::Pmem(file)),
        Err(ArchiveError::Io { .. })
    ));
}
