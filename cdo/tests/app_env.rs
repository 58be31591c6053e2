//! [`cdo::app::Pool::from_env`]: the deployment is configuration. One
//! test in its own binary, because it changes the process's environment.

use cdo::app::{Deployment, Pool, STAT_SOCKET_ENV};
use cdo::ipc::endpoint::{SOCKET_ENV, TOKEN_ENV, TOKEN_FILE_ENV};
use cdo::ipc::manager::ManagerConfig;
use cdo::Error;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn the_environment_chooses_the_deployment() {
    std::env::remove_var(TOKEN_FILE_ENV);
    let config = ManagerConfig {
        runtime_dir: Some(std::env::temp_dir()),
        ..ManagerConfig::default()
    };
    let host = Pool::start_manager(config, "host").unwrap();
    assert!(host.runs_manager());
    let endpoint = host.endpoint().unwrap().clone();

    // The manager the variables name, and the same code on it.
    for (key, value) in endpoint.env() {
        std::env::set_var(key, value);
    }
    let app = Pool::from_env("app").unwrap();
    assert_eq!(app.deployment(), Deployment::Manager);
    assert!(!app.runs_manager());
    assert_eq!(app.endpoint(), Some(&endpoint));
    hand_over(&app, &host);

    // A socket without a token is a configuration error, not a silent
    // fall-back to a pool in this process.
    std::env::remove_var(TOKEN_ENV);
    assert!(matches!(Pool::from_env("app"), Err(Error::Config(_))));

    // Without a socket: in process.
    std::env::remove_var(SOCKET_ENV);
    let local = Pool::from_env("app").unwrap();
    assert_eq!(local.deployment(), Deployment::InProcess);
    assert_eq!(local.endpoint(), None);
    hand_over(&local, &local);

    // With CDO_STAT_SOCKET, the in-process pool serves its counters there
    // for cdo-stat while the handle lives.
    let dir = tempfile::tempdir().unwrap();
    let stat = dir.path().join("stat.sock");
    std::env::set_var(STAT_SOCKET_ENV, &stat);
    let served = Pool::from_env("app").unwrap();
    hand_over(&served, &served);
    let mut line = String::new();
    UnixStream::connect(&stat)
        .unwrap()
        .read_to_string(&mut line)
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(stats["deployment"], "in-process", "{stats}");
    assert_eq!(stats["offers_total"], 1, "{stats}");
    drop(served);
    assert!(!stat.exists(), "socket left behind");
    std::env::remove_var(STAT_SOCKET_ENV);
}

/// `from` offers an object that `to` demands.
fn hand_over(from: &Pool, to: &Pool) {
    let mut p = from.declare("env/x").unwrap();
    p.write(b"bytes").unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = to.declare("env/x").unwrap();
    c.require().unwrap();
    let view = c.demand_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(view.bytes().unwrap(), b"bytes");
    drop(view);
    c.dispose().unwrap();
    p.withdraw_timeout(Duration::from_secs(20)).unwrap();
    p.dispose().unwrap();
}
