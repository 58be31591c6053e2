//! The archiver and librarian components through the pool manager: the
//! library types ([`Archiver`] and [`Librarian`] on application pools
//! joined to the manager) in threads, and the binaries as processes.

mod ipc_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdo::app::{Archiver, Librarian, Pool, Served};
use cdo::archive::{Archive, Backend, Flushed, Outcome, Subsample, Tally};
use cdo::ipc::client::ClientConfig;
use cdo::ipc::endpoint::{SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::manager::ManagerHandle;
use cdo::ipc::wire::Attributes;
use cdo::Value;
use ipc_common::{client, manager, wait_for, GUARD};

const WAIT: Duration = Duration::from_secs(10);

/// An application pool: `pm`, joined as `component`.
fn app_pool(pm: &ManagerHandle, component: &str) -> Pool {
    Pool::connect_with(&ClientConfig::new(pm.endpoint().clone(), component)).unwrap()
}

/// The archiver's application pool: `pm`, joined as `archiver`.
fn archiver_pool(pm: &ManagerHandle) -> Pool {
    app_pool(pm, "archiver")
}

/// Gives up what `librarian` offers, then leaves its pool (waiting up to
/// [`WAIT`]).
fn leave_librarian(librarian: Librarian<'_>, pool: &Pool) {
    drop(librarian);
    pool.leave(WAIT).unwrap();
}

/// An archiver on `pool` keeping what `selector` picks in the archive at
/// `dir`.
fn archiver<'p>(pool: &'p Pool, dir: &std::path::Path, selector: &str) -> Archiver<'p> {
    Archiver::join(pool, "archive", selector, Archive::open(dir).unwrap()).unwrap()
}

/// Leaves the group, then the pool (waiting up to [`WAIT`]); what the
/// archiver did.
fn leave(archiver: Archiver<'_>, pool: &Pool) -> Tally {
    let tally = archiver.tally();
    drop(archiver);
    pool.leave(WAIT).unwrap();
    tally
}

fn persisted(step: u64) -> Attributes {
    Attributes::from([
        ("persist".to_string(), Value::Bool(true)),
        ("app.step".to_string(), Value::UInt(step)),
    ])
}

/// `attrs` as the pool keeps them for an object of `size` bytes: with the
/// `size` attribute, as in one process.
fn offered(mut attrs: Attributes, size: u64) -> Attributes {
    attrs.insert("size".to_string(), Value::UInt(size));
    attrs
}

/// Runs `next` until it has produced `n` outcomes.
fn take<T>(n: usize, mut next: impl FnMut() -> Option<T>) -> Vec<T> {
    let until = Instant::now() + GUARD;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < until, "only {} of {n} came", got.len());
        got.extend(next());
    }
    got
}

#[test]
fn archiver_keeps_what_its_selector_picks_and_librarian_serves_it_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let pm = manager();
        let pool = archiver_pool(&pm);
        let mut archiver = archiver(&pool, dir.path(), "persist == true");
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
        assert!(stored.iter().all(|o| matches!(
            o,
            Outcome::Stored {
                flushed: Flushed::Fsync,
                ..
            }
        )));
        // Done records no longer hold the producer back.
        for step in 0..3 {
            p.withdraw(&format!("run/chk/{step}")).unwrap();
        }
        let tally = leave(archiver, &pool);
        assert_eq!((tally.stored, tally.bytes), (3, 3003));
    }
    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(
        archive.names().unwrap(),
        ["run/chk/0", "run/chk/1", "run/chk/2"]
    );
    let entry = archive.load("run/chk/2").unwrap().unwrap();
    assert_eq!(entry.attributes, offered(persisted(2), 1002));
    assert_eq!(entry.data, vec![2u8; 1002]);

    // A later run: nobody produces, the librarian answers requires.
    let pm = manager();
    let pool = app_pool(&pm, "librarian");
    let mut librarian =
        Librarian::start(&pool, "name ~ '^run/'", Archive::open(dir.path()).unwrap()).unwrap();
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
    assert_eq!(v.attrs(), &offered(persisted(1), 1001));
    drop(v);
    c.retract("run/missing").unwrap();
    c.leave(WAIT).unwrap();
    leave_librarian(librarian, &pool);
}

#[test]
fn archiver_subsamples_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let pm = manager();
    let pool = archiver_pool(&pm);
    let mut archiver = archiver(&pool, dir.path(), "*").with_subsample(Subsample { every: 3 });
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

/// Starts a component binary joined to `pm`, with `args` and the
/// environment `envs`, once it says it is ready.
fn spawn(
    bin: &str,
    pm: &ManagerHandle,
    args: &[&str],
    envs: &[(&str, &std::path::Path)],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
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
        &[],
    );
    let mut p = client(&pm, "producer");
    for step in 0..3u64 {
        p.offer(&format!("b/{step}"), &[step as u8; 64], persisted(step))
            .unwrap();
    }
    // A record the archive refuses does not stop the archiver.
    let mut nan = persisted(5);
    nan.insert("app.ratio".into(), Value::Float(f64::INFINITY));
    p.offer("b/inf", b"refused", nan).unwrap();
    // The withdrawals return once the archiver is done with its records.
    for name in ["b/0", "b/1", "b/inf", "b/2"] {
        p.withdraw(name).unwrap();
    }
    stop(archiver);
    let mut summary = String::new();
    out.read_line(&mut summary).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["stored"], 2, "{summary}");
    assert_eq!(summary["dead_letters"], 1, "{summary}");
    assert_eq!(summary["flushed"], "fsync", "{summary}");
    assert_eq!(
        Archive::open(dir.path()).unwrap().names().unwrap(),
        ["b/1", "b/2"]
    );

    let (librarian, _out) = spawn(
        env!("CARGO_BIN_EXE_cdo-librarian"),
        &pm,
        &["--dir", dir_arg],
        &[],
    );
    let mut c = client(&pm, "consumer");
    c.require("b/2").unwrap();
    let v = c.demand("b/2", WAIT).unwrap();
    assert_eq!(&*v, &[2u8; 64][..]);
    drop(v);
    c.leave(WAIT).unwrap();
    stop(librarian);
}

#[test]
fn archiver_sets_aside_what_the_archive_refuses_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let pm = manager();
    let pool = archiver_pool(&pm);
    let mut archiver = archiver(&pool, dir.path(), "persist == true");
    let mut p = client(&pm, "producer");
    let mut nan = persisted(1);
    nan.insert("app.ratio".into(), Value::Float(f64::NAN));
    p.offer("bad/nan", b"not a number", nan).unwrap();
    p.offer("bad/../up", b"no path", persisted(2)).unwrap();
    p.offer("good/3", b"kept", persisted(3)).unwrap();
    let outcomes = take(3, || {
        archiver.next_timeout(Duration::from_millis(100)).unwrap()
    });
    let dead: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::DeadLettered { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dead, ["bad/nan", "bad/../up"]);
    // Done: the producer's withdrawals are not held up, nothing comes back.
    for name in ["bad/nan", "bad/../up", "good/3"] {
        p.withdraw(name).unwrap();
    }
    assert_eq!(
        archiver.next_timeout(Duration::from_millis(300)).unwrap(),
        None
    );
    let tally = leave(archiver, &pool);
    assert_eq!((tally.stored, tally.dead_letters), (1, 2));

    let archive = Archive::open(dir.path()).unwrap();
    assert_eq!(archive.names().unwrap(), ["good/3"]);
    let letters = archive.dead_letters().unwrap();
    let names: Vec<&str> = letters.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["bad/nan", "bad/../up"]);
    assert!(
        letters[0].reason.contains("finite"),
        "{}",
        letters[0].reason
    );
    assert!(letters[1].reason.contains("`..`"), "{}", letters[1].reason);
    assert_eq!(
        letters[0].attributes["app.ratio"]["Float"],
        serde_json::Value::Null
    );
    let copy = std::fs::read(letters[1].data.as_ref().unwrap()).unwrap();
    assert_eq!(copy, b"no path");
}

#[test]
fn librarian_withdraws_what_nobody_requires_any_more() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    for name in ["l/demanded", "l/retracted", "l/orphaned", "l/shared"] {
        archive.store(name, &persisted(0), name.as_bytes()).unwrap();
    }
    let pm = manager();
    let pool = app_pool(&pm, "librarian");
    let mut librarian = Librarian::start(&pool, "name ~ '^l/'", archive).unwrap();
    let mut step = || librarian.next_timeout(Duration::from_millis(100)).unwrap();
    let withdrawn = |name: &str| Served::Withdrawn { name: name.into() };
    let offered = |name: &str| Served::Offered {
        name: name.into(),
        bytes: name.len() as u64,
    };

    // Required, demanded: withdrawn at once; the view stays valid.
    let mut c = client(&pm, "c");
    c.require("l/demanded").unwrap();
    let mut served = take(1, &mut step);
    let v = c.demand("l/demanded", WAIT).unwrap();
    served.extend(take(1, &mut step));
    assert_eq!(served, [offered("l/demanded"), withdrawn("l/demanded")]);
    wait_for(&pm, |s| s.objects == 0);
    assert_eq!(&*v, b"l/demanded");
    drop(v);

    // Required, retracted.
    c.require("l/retracted").unwrap();
    assert_eq!(take(1, &mut step), [offered("l/retracted")]);
    c.retract("l/retracted").unwrap();
    assert_eq!(take(1, &mut step), [withdrawn("l/retracted")]);

    // Required by a consumer that goes away.
    let mut gone = client(&pm, "gone");
    gone.require("l/orphaned").unwrap();
    assert_eq!(take(1, &mut step), [offered("l/orphaned")]);
    drop(gone);
    assert_eq!(take(1, &mut step), [withdrawn("l/orphaned")]);

    // Required by two: kept until the second is served.
    let mut d = client(&pm, "d");
    c.require("l/shared").unwrap();
    assert_eq!(take(1, &mut step), [offered("l/shared")]);
    d.require("l/shared").unwrap();
    assert_eq!(
        take(1, &mut step),
        [Served::OnOffer {
            name: "l/shared".into()
        }]
    );
    drop(c.demand("l/shared", WAIT).unwrap());
    c.flush().unwrap();
    assert_eq!(step(), None);
    assert_eq!(pm.stats().objects, 1);
    drop(d.demand("l/shared", WAIT).unwrap());
    assert_eq!(take(1, &mut step), [withdrawn("l/shared")]);
    wait_for(&pm, |s| s.objects == 0);
    assert_eq!(librarian.serving(), 0);
    c.leave(WAIT).unwrap();
    d.leave(WAIT).unwrap();
    leave_librarian(librarian, &pool);
}

#[test]
fn librarian_notes_an_entry_it_cannot_serve_and_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    archive
        .store("r/corrupt", &persisted(0), b"0123456789")
        .unwrap();
    archive.store("r/fine", &persisted(1), b"fine").unwrap();
    let path = archive.data_path("r/corrupt").unwrap();
    std::fs::write(&path, b"01234").unwrap();
    let pm = manager();
    let pool = app_pool(&pm, "librarian");
    let mut librarian = Librarian::start(&pool, "*", Archive::open(dir.path()).unwrap()).unwrap();
    let mut c = client(&pm, "c");
    c.require("r/corrupt").unwrap();
    c.require("r/fine").unwrap();
    c.retract("r/corrupt").unwrap();
    c.require("r/corrupt").unwrap();
    let served = take(3, || {
        librarian.next_timeout(Duration::from_millis(100)).unwrap()
    });
    match &served[..] {
        [Served::DeadLettered { name, reason }, Served::Offered { .. }, Served::DeadLettered { name: again, .. }] =>
        {
            assert_eq!((name.as_str(), again.as_str()), ("r/corrupt", "r/corrupt"));
            assert!(reason.contains("corrupt"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(&*c.demand("r/fine", WAIT).unwrap(), b"fine");
    // Noted once: the second require was not tried again.
    let letters = archive.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].name.as_str(), letters[0].data.as_ref()),
        ("r/corrupt", None)
    );
}

#[test]
fn the_binaries_archive_in_persistent_memory_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // A directory emulating an NVDIMM (no fsdax here: flushed with msync).
    let nvdimm = dir.path().join("nvdimm");
    let pm = manager();
    let (mut archiver, _out) = spawn(
        env!("CARGO_BIN_EXE_cdo-archiver"),
        &pm,
        &["--pmem", nvdimm.to_str().unwrap()],
        &[],
    );
    let mut p = client(&pm, "producer");
    let data = |step: u64| -> Vec<u8> { (0..5000 + step).map(|i| (i * 31 + step) as u8).collect() };
    for step in 0..3u64 {
        p.offer(&format!("k/{step}"), &data(step), persisted(step))
            .unwrap();
    }
    // Each withdrawal returns once the archiver stored and flushed it.
    for step in 0..3 {
        p.withdraw(&format!("k/{step}")).unwrap();
    }
    // No shutdown, no final write: the process is killed outright.
    archiver.kill().unwrap();
    let status = archiver.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    let archive = Archive::open_backend(Backend::Pmem(nvdimm.clone())).unwrap();
    assert_eq!(archive.names().unwrap(), ["k/0", "k/1", "k/2"]);
    for step in 0..3u64 {
        let entry = archive.load(&format!("k/{step}")).unwrap().unwrap();
        assert_eq!(
            entry.attributes,
            offered(persisted(step), 5000 + step),
            "k/{step}"
        );
        assert_eq!(entry.data, data(step), "k/{step}");
    }
    // The librarian, told by its environment, serves the objects back.
    let (librarian, _out) = spawn(
        env!("CARGO_BIN_EXE_cdo-librarian"),
        &pm,
        &[],
        &[("CDO_ARCHIVE_PMEM", &nvdimm)],
    );
    let mut c = client(&pm, "consumer");
    c.require("k/2").unwrap();
    let v = c.demand("k/2", WAIT).unwrap();
    assert_eq!(&*v, &data(2)[..]);
    assert_eq!(v.attrs(), &offered(persisted(2), 5002));
    drop(v);
    c.leave(WAIT).unwrap();
    stop(librarian);
}

#[test]
fn the_binaries_want_exactly_one_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    for bin in [
        env!("CARGO_BIN_EXE_cdo-archiver"),
        env!("CARGO_BIN_EXE_cdo-librarian"),
    ] {
        for args in [&["--dir", path, "--pmem", path][..], &[]] {
            let out = Command::new(bin)
                .args(args)
                .env_remove("CDO_ARCHIVE_DIR")
                .env_remove("CDO_ARCHIVE_PMEM")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
            assert!(stderr.contains("--pmem"), "{bin} {args:?}: {stderr}");
        }
        // The environment counts as much as the options.
        let out = Command::new(bin)
            .args(["--pmem", path])
            .env("CDO_ARCHIVE_DIR", path)
            .env_remove("CDO_ARCHIVE_PMEM")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
    }
}
