//! `cdo-stat` against a pool in an application's own process: the counters
//! served on a socket of the application's (`Pool::serve_stats`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::app::{Pool, STAT_SOCKET_ENV};
use cdo::ipc::endpoint::{SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::manager::ManagerConfig;
use cdo::{Error, PoolConfig};

fn in_process() -> Pool {
    let mamba = mamba::Mamba::from_env().expect("this machine's memory");
    Pool::in_process(Arc::new(mamba), PoolConfig::default()).expect("a pool")
}

/// `cdo-stat` run with the statistics socket `path` (and no manager).
fn cdo_stat(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdo-stat"))
        .env(STAT_SOCKET_ENV, path)
        .env_remove(SOCKET_ENV)
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap()
}

#[test]
fn cdo_stat_reads_an_in_process_pool_from_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stat.sock");
    let pool = in_process();
    let server = pool.serve_stats(&path).unwrap();
    assert_eq!(server.path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the owner's alone");

    let mut a = pool.declare("stat/a").unwrap();
    a.write(b"hello").unwrap();
    a.seal().unwrap();
    a.offer().unwrap();
    let mut b = pool.declare("stat/b").unwrap();
    b.write(b"abc").unwrap();
    b.seal().unwrap();
    b.offer().unwrap();
    let mut c = pool.declare("stat/a").unwrap();
    c.require().unwrap();
    let view = c.demand_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(view.bytes().unwrap(), b"hello");
    drop(view);

    let out = cdo_stat(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["deployment"], "in-process", "{stats}");
    assert_eq!(stats["objects"], 2, "{stats}");
    assert_eq!(stats["offers_total"], 2, "{stats}");
    assert_eq!(stats["views_total"], 1, "{stats}");
    assert_eq!(stats["view_bytes_total"], 5, "{stats}");
    assert_eq!(stats["counters"]["declared"], 3, "{stats}");
    assert_eq!(stats["counters"]["required"], 1, "{stats}");
    assert!(stats["offers_per_s"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["uptime_ms"].is_u64(), "{stats}");

    // A second server on a path one serves: refused, the first unharmed.
    match pool.serve_stats(&path) {
        Err(Error::StatServer(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(cdo_stat(&path).status.success());

    // Dropped: the socket goes, and cdo-stat says where it looked.
    drop(server);
    assert!(!path.exists(), "socket left behind");
    let gone = cdo_stat(&path);
    assert!(!gone.status.success());
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(said.contains("stat.sock"), "{said}");

    c.dispose().unwrap();
    for mut p in [a, b] {
        p.withdraw().unwrap();
        p.dispose().unwrap();
    }
}

#[test]
fn a_dead_process_socket_is_replaced_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pool = in_process();

    // A socket file nobody listens on any more (its process died). A
    // process another test forks meanwhile holds the listener until it
    // execs: wait until nobody does.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&stale).is_ok() {
        assert!(Instant::now() < deadline, "the stale socket still listens");
        std::thread::sleep(Duration::from_millis(1));
    }
    let server = pool.serve_stats(&stale).unwrap();
    assert!(cdo_stat(&stale).status.success());
    drop(server);

    // Its file removed while it serves: dropping the server still ends
    // its thread.
    let removed = dir.path().join("removed.sock");
    let server = pool.serve_stats(&removed).unwrap();
    std::fs::remove_file(&removed).unwrap();
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(server);
        let _ = done.send(());
    });
    dropped
        .recv_timeout(Duration::from_secs(10))
        .expect("the server stops without its file");

    // A file that is not a socket: refused, kept.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    match pool.serve_stats(&file) {
        Err(Error::StatServer(e)) => assert!(e.to_string().contains("not a socket"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    // A directory that does not exist: a typed error.
    let nowhere = dir.path().join("missing").join("stat.sock");
    assert!(matches!(
        pool.serve_stats(&nowhere),
        Err(Error::StatServer(_))
    ));
}

#[test]
fn through_a_pool_manager_the_manager_answers_instead() {
    let config = ManagerConfig {
        runtime_dir: Some(std::env::temp_dir()),
        ..ManagerConfig::default()
    };
    let pool = Pool::start_manager(config, "host").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stat.sock");
    assert!(matches!(pool.serve_stats(&path), Err(Error::Config(_))));
    assert!(!path.exists());
}
