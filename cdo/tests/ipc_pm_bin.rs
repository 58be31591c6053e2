//! The `cdo-pm` binary: prints how to reach it, serves, stops on SIGTERM and
//! removes its socket directory.

mod ipc_common;

use std::process::Command;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::wire::Attributes;

#[test]
fn cdo_pm_serves_until_sigterm() {
    let parent = std::env::temp_dir();
    let (mut pm, vars) = ipc_common::start_pm(
        Command::new(env!("CARGO_BIN_EXE_cdo-pm"))
            .arg(&parent)
            .env(TOKEN_ENV, "workflow-42")
            .env("RUST_LOG", "warn"),
    );
    let ep = Endpoint {
        socket: vars[SOCKET_ENV].clone().into(),
        token: vars[TOKEN_ENV].clone(),
    };
    assert_eq!(ep.token, "workflow-42");
    let dir = ep.socket.parent().unwrap().to_path_buf();
    assert!(dir.starts_with(&parent));
    let mut a = Client::connect(&ClientConfig::new(ep.clone(), "a")).unwrap();
    let mut b = Client::connect(&ClientConfig::new(ep.clone(), "b")).unwrap();
    a.offer("greeting", b"hello", Attributes::new()).unwrap();
    assert_eq!(
        &*b.demand("greeting", Duration::from_secs(5)).unwrap(),
        b"hello"
    );

    // `cdo-stat` reaches the same manager through the exported variables.
    let stat = Command::new(env!("CARGO_BIN_EXE_cdo-stat"))
        .env(SOCKET_ENV, &ep.socket)
        .env(TOKEN_ENV, &ep.token)
        .output()
        .unwrap();
    assert!(
        stat.status.success(),
        "{}",
        String::from_utf8_lossy(&stat.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(stats["objects"], 1, "{stats}");
    assert_eq!(stats["offered_bytes"], 5, "{stats}");
    assert_eq!(stats["offers_total"], 1, "{stats}");
    assert_eq!(stats["views_total"], 1, "{stats}");
    assert!(stats["offers_per_s"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["clients"].as_u64().unwrap() >= 2, "{stats}");
    let refused = Command::new(env!("CARGO_BIN_EXE_cdo-stat"))
        .env(SOCKET_ENV, &ep.socket)
        .env(TOKEN_ENV, "wrong")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a wrong token is refused");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(pm.wait().unwrap().success());
    assert!(!dir.exists(), "socket directory left behind");
}
