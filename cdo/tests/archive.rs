//! The archive: layout, atomicity, corruption, and the archiver on an
//! in-process pool.

mod common;

use cdo::app::Archiver;
use cdo::archive::{Archive, ArchiveError, Flushed, Outcome, Subsample};
use cdo::{FlatAttributes, Timestamp, Value};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn every_value_type() -> FlatAttributes {
    FlatAttributes::from([
        ("app.int".to_owned(), Value::Int(-7)),
        ("app.uint".to_owned(), Value::UInt(u64::MAX)),
        ("app.float".to_owned(), Value::Float(0.1 + 0.2)),
        (
            "app.str".to_owned(),
            Value::Str("a \"quoted\"\nline é".into()),
        ),
        ("app.bool".to_owned(), Value::Bool(true)),
        (
            "app.when".to_owned(),
            Value::Timestamp(Timestamp(-1_234_567_890)),
        ),
        (
            "app.list".to_owned(),
            Value::List(vec![
                Value::UInt(1),
                Value::List(vec![Value::Str("x".into())]),
            ]),
        ),
        ("priority".to_owned(), Value::Str("checkpoint".into())),
    ])
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._%é/\\\\:-]{1,8}"
        .prop_map(|s| s.replace('/', "_"))
        .prop_filter("not . or ..", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn names_and_bytes_round_trip(
        components in prop::collection::vec(component(), 1..4),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().join("archive")).unwrap();
        let name = components.join("/");
        let stored = archive.store(&name, &every_value_type(), &data).unwrap();
        prop_assert!(stored.path.starts_with(archive.dir()));
        prop_assert_eq!(stored.flushed, Flushed::Fsync);
        prop_assert!(archive.contains(&name).unwrap());
        let back = archive.load(&name).unwrap().unwrap();
        prop_assert_eq!(&back.name, &name);
        prop_assert_eq!(back.attributes, every_value_type());
        prop_assert_eq!(back.data, data);
        prop_assert_eq!(archive.names().unwrap(), vec![name]);
        // Nothing outside the archive's directory.
        let outside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(outside, ["archive"]);
    }
}

#[test]
fn attributes_are_human_readable_json_beside_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let path = archive
        .store("hydro/checkpoint/40", &every_value_type(), b"abc")
        .unwrap()
        .path;
    assert_eq!(path, dir.path().join("hydro/checkpoint/40.cdo"));
    let json = std::fs::read_to_string(dir.path().join("hydro/checkpoint/40.json")).unwrap();
    assert!(json.contains("\"hydro/checkpoint/40\""), "{json}");
    assert!(json.contains("\"checkpoint\""), "{json}");
    assert!(json.contains('\n'), "pretty-printed: {json}");
}

#[test]
fn names_that_cannot_be_archived_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path().join("a")).unwrap();
    for name in [
        "",
        "/",
        "/abs",
        "a/",
        "a//b",
        ".",
        "..",
        "../x",
        "a/../../b",
        "a/./b",
        "x\0y",
    ] {
        let err = archive
            .store(name, &FlatAttributes::new(), b"x")
            .unwrap_err();
        assert!(
            matches!(err, ArchiveError::BadName { .. }),
            "{name:?}: {err}"
        );
        assert!(matches!(
            archive.load(name),
            Err(ArchiveError::BadName { .. })
        ));
    }
    let nan = FlatAttributes::from([("app.t".to_owned(), Value::Float(f64::NAN))]);
    assert!(matches!(
        archive.store("x", &nan, b""),
        Err(ArchiveError::BadAttribute { .. })
    ));
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn a_restore_replaces_the_entry_and_an_interrupted_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let attrs = |v: u64| FlatAttributes::from([("app.v".to_owned(), Value::UInt(v))]);
    let path = archive.store("run/x", &attrs(1), b"first").unwrap().path;
    archive.store("run/x", &attrs(2), b"other").unwrap();
    let entry = archive.load("run/x").unwrap().unwrap();
    assert_eq!(
        (entry.attributes, entry.data),
        (attrs(2), b"other".to_vec())
    );
    assert_eq!(files(dir.path()).len(), 2, "no temporary file left");

    // A third store interrupted after the attributes went into place,
    // before the data: the bytes in place are still served with their own
    // attributes.
    let meta = dir.path().join("run/x.json");
    let before = std::fs::read(&meta).unwrap();
    archive.store("run/x", &attrs(3), b"third").unwrap();
    let third_meta = std::fs::read(&meta).unwrap();
    std::fs::write(&path, b"other").unwrap();
    let entry = archive.load("run/x").unwrap().unwrap();
    assert_eq!(
        (entry.attributes, entry.data),
        (attrs(2), b"other".to_vec())
    );
    assert_ne!(before, third_meta);
}

#[test]
fn a_truncated_data_file_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let path = archive
        .store("a/b", &every_value_type(), &[7; 100])
        .unwrap()
        .path;
    std::fs::write(&path, [7; 60]).unwrap();
    let err = archive.load("a/b").unwrap_err();
    match &err {
        ArchiveError::Corrupt {
            name,
            path: at,
            reason,
        } => {
            assert_eq!((name.as_str(), at), ("a/b", &path));
            assert!(reason.contains("60 bytes, 100 expected"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // Same length, other bytes: the checksum tells.
    std::fs::write(&path, [8; 100]).unwrap();
    assert!(matches!(
        archive.load("a/b"),
        Err(ArchiveError::Corrupt { .. })
    ));
    // No attribute file at all.
    std::fs::remove_file(dir.path().join("a/b.json")).unwrap();
    assert!(matches!(
        archive.load("a/b"),
        Err(ArchiveError::Corrupt { .. })
    ));
}

#[test]
fn names_skip_interrupted_stores_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    archive.store("r/1", &FlatAttributes::new(), b"1").unwrap();
    archive.store("r/2", &FlatAttributes::new(), b"2").unwrap();
    archive
        .store("r/sub/3", &FlatAttributes::new(), b"3")
        .unwrap();
    // What a store interrupted before its data rename leaves behind.
    std::fs::write(dir.path().join("r/4.cdo.99-0.tmp"), b"4").unwrap();
    std::fs::write(dir.path().join("r/4.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("r/notes.txt.cdo"), b"x").unwrap();
    assert_eq!(archive.names().unwrap(), ["r/1", "r/2", "r/sub/3"]);
    assert!(!archive.contains("r/4").unwrap());
    assert_eq!(archive.load("r/4").unwrap(), None);

    assert!(archive.remove("r/1").unwrap());
    assert!(!archive.remove("r/1").unwrap());
    assert_eq!(archive.load("r/1").unwrap(), None);
    assert_eq!(archive.names().unwrap(), ["r/2", "r/sub/3"]);
}

#[test]
fn the_archiver_stores_a_subsample_of_its_group_with_attributes() {
    let env = common::env();
    // The producers use the in-process pool itself, the archiver the
    // application API over it.
    let pool = Arc::new(env.pool);
    let app = cdo::app::Pool::local(Arc::clone(&pool));
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let mut archiver = Archiver::join(&app, "archive", "persist == true", archive)
        .unwrap()
        .with_subsample(Subsample { every: 2 });
    let producers: Vec<_> = (0..5u64)
        .map(|step| {
            let mut p = pool.declare(&format!("run/out/{step}")).unwrap();
            p.set("app.step", step).unwrap();
            p.set_persist(step != 3).unwrap();
            p.write(&vec![step as u8; 10 + step as usize]).unwrap();
            p.seal().unwrap();
            p.offer().unwrap();
            p
        })
        .collect();
    let first = archiver.next_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(first, Some(Outcome::Stored { ref name, bytes: 10, .. }) if name == "run/out/0")
    );
    let tally = archiver.drain().unwrap();
    // Steps 0, 1, 2, 4 match; the 1st and 3rd of them are kept.
    assert_eq!((tally.stored, tally.bytes, tally.skipped), (2, 10 + 12, 2));
    for mut p in producers {
        assert!(p.try_withdraw().unwrap(), "every record completed");
    }
    let archive = archiver.archive();
    assert_eq!(archive.names().unwrap(), ["run/out/0", "run/out/2"]);
    let entry = archive.load("run/out/2").unwrap().unwrap();
    assert_eq!(entry.data, vec![2u8; 12]);
    assert_eq!(entry.attributes["app.step"], Value::UInt(2));
    assert_eq!(entry.attributes["persist"], Value::Bool(true));
    assert_eq!(entry.attributes["size"], Value::UInt(12));
    assert!(matches!(
        Archiver::join(&app, "archive", "*", Archive::open(dir.path()).unwrap()),
        Err(ArchiveError::Pool(_))
    ));
}
