//! The archiver and librarian components through the pool manager: the
//! library types in threads, and the binaries as processes.

mod ipc_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdo::archive::{Archive, Outcome, Subsample};
use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::components::{ArchiverClient, Librarian, Served};
use cdo::ipc::endpoint::{SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::manager::ManagerHandle;
use cdo::ipc::wire::Attributes;
use cdo::Value;
use ipc_common::manager;

const WAIT: Duration = Duration::from_secs(10);

fn client(pm: &ManagerHandle, name: &str) -> Client {
    Client::connect(&ClientConfig::new(pm.endpoint().clone(), name)).unwrap()
}

fn persisted(step: u64) -> Attributes {
    Attributes::from([
        ("persist".to_string(), Value::Bool(true)),
        ("app.step".to_string(), Value::UInt(step)),
    ])
}

/// Runs `next` until it has produced `n` outcomes.
fn take<T>(n: usize, mut next: impl FnMut() -> Option<T>) -> Vec<T> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(start.elapsed() < WAIT, "only {} of {n} came", got.len());
        got.extend(next());
    }
    got
}

#[test]
fn archiver_keeps_what_its_selector_picks_and_librarian_serves_it_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let pm = manager();
        let mut archiver = ArchiverClient::join(
            client(&pm, "archiver"),
            "archive",
            "persist == true",
            Archive::open(dir.path()).unwrap(),
        )
        .unwrap();
        let mut p = client(&pm, "producer");
        for step in 0..3u64 {
            let data = vec![step as u8; 1000 + step as usize];
            p.offer(&format!("run/chk/{step}"), &data, persisted(step))
                .unwrap();
        }
        p.offer("run/scratch", b"not kept", Attributes::new())
            .unwrap();
        let stored = take(3, || {
            archiver.next_timeout(Duration::from_millis(100)).unwrap()
        });
        assert!(stored.iter().all(|o| matches!(o, Outcome::Stored { .. })));
        // Done records no longer hold the producer back.
        for step in 0..3 {
            p.withdraw(&format!("run/chk/{step}")).unwrap();
        }
        let tally = archiver.leave(WAIT).unwrap();
        assert_eq!((tally.stored, tally.bytes), (3, 3003));
    }
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(
        archive.names().unwrap(),
        ["run/chk/0", "run/chk/1", "run/chk/2"]
    );
    let entry = archive.load("run/chk/2").unwrap().unwrap();
    assert_eq!(entry.attributes, persisted(2));
    assert_eq!(entry.data, vec![2u8; 1002]);

    // A later run: nobody produces, the librarian answers requires.
    let pm = manager();
    let mut librarian = Librarian::start(
        client(&pm, "librarian"),
        "name ~ '^run/'",
        Archive::open(dir.path()).unwrap(),
    )
    .unwrap();
    let mut c = client(&pm, "consumer");
    c.require("run/chk/1").unwrap();
    c.require("run/missing").unwrap();
    let served = take(2, || {
        librarian.next_timeout(Duration::from_millis(100)).unwrap()
    });
    assert_eq!(
        served,
        [
            Served::Offered {
                name: "run/chk/1".into(),
                bytes: 1001
            },
            Served::Missing {
                name: "run/missing".into()
            },
        ]
    );
    let v = c.demand("run/chk/1", WAIT).unwrap();
    assert_eq!(&*v, &vec![1u8; 1001][..]);
    assert_eq!(v.attrs(), &persisted(1));
    drop(v);
    c.retract("run/missing").unwrap();
    c.leave(WAIT).unwrap();
    librarian.leave(WAIT).unwrap();
}

#[test]
fn archiver_subsamples_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let pm = manager();
    let mut archiver = ArchiverClient::join(
        client(&pm, "archiver"),
        "archive",
        "*",
        Archive::open(dir.path()).unwrap(),
    )
    .unwrap()
    .with_subsample(Subsample { every: 3 });
    let mut p = client(&pm, "producer");
    for i in 0..7 {
        p.offer(&format!("s/{i}"), &[i], Attributes::new()).unwrap();
    }
    take(7, || {
        archiver.next_timeout(Duration::from_millis(100)).unwrap()
    });
    let tally = archiver.tally();
    assert_eq!((tally.stored, tally.skipped), (3, 4));
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.names().unwrap(), ["s/0", "s/3", "s/6"]);
}

/// Starts a component binary joined to `pm`, once it says it is ready.
fn spawn(
    bin: &str,
    pm: &ManagerHandle,
    args: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin)
        .args(args)
        .env(SOCKET_ENV, &pm.endpoint().socket)
        .env(TOKEN_ENV, &pm.endpoint().token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (child, out)
}

fn stop(mut child: std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_binaries_archive_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let pm = manager();
    let (archiver, mut out) = spawn(
        env!("CARGO_BIN_EXE_cdo-archiver"),
        &pm,
        &["--dir", dir_arg, "--selector", "app.step >= 1"],
    );
    let mut p = client(&pm, "producer");
    for step in 0..3u64 {
        p.offer(&format!("b/{step}"), &[step as u8; 64], persisted(step))
            .unwrap();
    }
    // The withdrawals return once the archiver is done with its records.
    for step in 0..3 {
        p.withdraw(&format!("b/{step}")).unwrap();
    }
    stop(archiver);
    let mut summary = String::new();
    out.read_line(&mut summary).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["stored"], 2, "{summary}");
    assert_eq!(
        Archive::open(dir.path()).unwrap().names().unwrap(),
        ["b/1", "b/2"]
    );

    let (librarian, _out) = spawn(
        env!("CARGO_BIN_EXE_cdo-librarian"),
        &pm,
        &["--dir", dir_arg],
    );
    let mut c = client(&pm, "consumer");
    c.require("b/2").unwrap();
    let v = c.demand("b/2", WAIT).unwrap();
    assert_eq!(&*v, &[2u8; 64][..]);
    drop(v);
    c.leave(WAIT).unwrap();
    stop(librarian);
}
