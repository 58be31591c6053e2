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

/// A `cdo-pm` process, killed if the test fails before it stops it.
struct Pm(Option<std::process::Child>);

impl Pm {
    /// Starts `cdo-pm` with `args`; returns it and how to reach it.
    fn start(args: &[&std::ffi::OsStr]) -> (Pm, Endpoint) {
        let (pm, vars) = ipc_common::start_pm(
            Command::new(env!("CARGO_BIN_EXE_cdo-pm"))
                .args(args)
                .env(TOKEN_ENV, "workflow-43")
                .env("RUST_LOG", "error"),
        );
        let ep = Endpoint {
            socket: vars[SOCKET_ENV].clone().into(),
            token: vars[TOKEN_ENV].clone(),
        };
        (Pm(Some(pm)), ep)
    }

    /// Stops it with SIGTERM and checks that it exits cleanly.
    fn stop(mut self) {
        let mut pm = self.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pm.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(pm.wait().unwrap().success());
    }
}

impl Drop for Pm {
    fn drop(&mut self) {
        if let Some(mut pm) = self.0.take() {
            let _ = pm.kill();
            let _ = pm.wait();
        }
    }
}

/// Whether an offer that an acknowledged subscriber never acknowledges
/// succeeds (best-effort) or fails with `AckTimeout` (fail-fast).
fn unacknowledged_offer_succeeds(ep: &Endpoint) -> bool {
    let mut deaf = Client::connect(&ClientConfig::new(ep.clone(), "deaf")).unwrap();
    deaf.subscribe("*", cdo::EventKind::Offer.into(), true)
        .unwrap();
    let mut a = Client::connect(&ClientConfig::new(ep.clone(), "a")).unwrap();
    let mut attrs = Attributes::new();
    attrs.insert("app.step".into(), cdo::Value::UInt(1));
    match a.offer("quiet/x", b"x", attrs) {
        Ok(()) => true,
        Err(cdo::ipc::client::ClientError::Pool { code, .. }) => {
            assert_eq!(code, cdo::ipc::wire::ErrorCode::AckTimeout);
            false
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn cdo_pm_takes_the_pool_semantics_from_the_in_process_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        "namespace: app\nattributes:\n  step: {type: uint, required: true}\n",
    )
    .unwrap();
    let config = dir.path().join("pool.yaml");
    std::fs::write(
        &config,
        "duplicates: version\nschemas: [app.yaml]\npolicy: best-effort\nack_timeout_ms: 100\n",
    )
    .unwrap();
    // The file is the one an in-process pool reads.
    let parsed = cdo::PoolConfig::from_file(&config).unwrap();
    assert_eq!(parsed.policy, cdo::ipc::manager::FaultPolicy::BestEffort);

    let (pm, ep) = Pm::start(&["--config".as_ref(), config.as_os_str()]);
    let mut a = Client::connect(&ClientConfig::new(ep.clone(), "a")).unwrap();
    let mut b = Client::connect(&ClientConfig::new(ep.clone(), "b")).unwrap();
    // Its schema (a path relative to the file): a key it does not declare
    // is refused (without a schema, user attributes pass).
    let mut bogus = Attributes::new();
    bogus.insert("app.bogus".into(), cdo::Value::UInt(1));
    let refused = a.offer("x", b"1", bogus).unwrap_err();
    assert!(
        matches!(&refused, cdo::ipc::client::ClientError::Pool { text, .. } if text.contains("app.bogus")),
        "{refused}"
    );
    let mut attrs = Attributes::new();
    attrs.insert("app.step".into(), cdo::Value::UInt(1));
    a.offer("x", b"1", attrs.clone()).unwrap();
    // Its duplicates rule: a second offer of the name is a newer version.
    b.offer("x", b"2", attrs).unwrap();
    // Its policy and acknowledgement timeout.
    assert!(
        unacknowledged_offer_succeeds(&ep),
        "best-effort from the file"
    );
    pm.stop();

    // An option overrides the file.
    let (pm, ep) = Pm::start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--policy".as_ref(),
        "fail-fast".as_ref(),
    ]);
    assert!(
        !unacknowledged_offer_succeeds(&ep),
        "fail-fast from the option"
    );
    pm.stop();
}
