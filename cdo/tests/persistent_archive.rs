//! The archive in persistent memory: stored through a node's NVDIMM space,
//! everything dropped, the node discovered again, and read back.

use cdo::archive::{ArchiveError, PersistentArchive};
use cdo::{FlatAttributes, Value};
use mamba::config::DirectoryTier;
use mamba::pmem::{FlushMode, PmemSpace};
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
        let mode = archive
            .store("run1/checkpoint/40", &attrs(40), &big)
            .unwrap();
        // A directory on an ordinary file system: no DAX, so msync.
        println!("persistent archive flush: {mode}");
        assert!(matches!(mode, FlushMode::Msync | FlushMode::MapSync));
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
