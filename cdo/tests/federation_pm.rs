//! Two `cdo-pm` processes federated through their flags: a consumer of one
//! demands what a producer of the other offered.

mod ipc_common;

use std::process::{Child, Command};
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::wire::Attributes;
use ipc_common::pattern;

const TOKEN: &str = "federation-pm-token";

/// Kills the manager when dropped.
struct Pm(Child);

impl Drop for Pm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cdo_pm(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdo-pm"));
    cmd.arg(std::env::temp_dir())
        .args(args)
        .env(TOKEN_ENV, TOKEN)
        .env("RUST_LOG", "warn");
    cmd
}

fn start(args: &[&str]) -> (Pm, Client) {
    let (child, vars) = ipc_common::start_pm(&mut cdo_pm(args));
    let ep = Endpoint {
        socket: vars[SOCKET_ENV].clone().into(),
        token: vars[TOKEN_ENV].clone(),
    };
    let client = Client::connect(&ClientConfig::new(ep, "app")).unwrap();
    (Pm(child), client)
}

#[test]
fn two_managers_federated_by_their_flags_serve_each_others_offers() {
    let base = 21000 + (std::process::id() % 20000) as u16;
    let (a, b) = (
        format!("127.0.0.1:{base}"),
        format!("127.0.0.1:{}", base + 1),
    );
    let common = ["--fabric-provider", "tcp", "--remote-timeout-ms", "30000"];
    let (_pa, mut producer) = start(&[&["--federation-listen", a.as_str()], &common[..]].concat());
    let (_pb, mut consumer) = start(
        &[
            &[
                "--federation-listen",
                b.as_str(),
                "--federation-peers",
                a.as_str(),
            ],
            &common[..],
        ]
        .concat(),
    );
    producer
        .offer("field", &pattern(5, 1 << 20), Attributes::new())
        .unwrap();
    let v = consumer.demand("field", Duration::from_secs(60)).unwrap();
    assert!(*v == pattern(5, 1 << 20)[..]);
}

#[test]
fn peers_without_a_listening_address_are_refused_at_start() {
    let out = cdo_pm(&["--federation-peers", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--federation-listen"), "{err}");
}
