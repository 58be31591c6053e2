//! Two-process hand-offs through an in-process pool manager.

mod ipc_common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::ManagerConfig;
use cdo::ipc::wire::Attributes;
use cdo::Value;
use ipc_common::{child_client, fill, hear, manager, pattern, say, Peer};

const SIZES: [(&str, usize); 2] = [("small", 4096), ("big", 64 << 20)];

/// Child side: a producer offering the objects of `SIZES`.
#[test]
fn child_entry() {
    let Some((role, mut c)) = child_client() else {
        return;
    };
    match role.as_str() {
        "producer" => {
            for (i, (name, len)) in SIZES.iter().enumerate() {
                let mut attrs = Attributes::new();
                attrs.insert("seed".into(), Value::UInt(i as u64));
                c.offer_with(name, *len as u64, attrs, |dst| fill(i as u64, dst))
                    .unwrap();
                let (dev, ino) = c.offered_identity(name).unwrap();
                say(&format!("{name} {dev} {ino}"));
            }
            assert_eq!(hear(), "done");
            c.leave(Duration::from_secs(10)).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn hands_off_4k_and_64m_without_copy() {
    let pm = manager();
    let mut producer = Peer::spawn("child_entry", "producer", pm.endpoint());
    let mut consumer =
        Client::connect(&ClientConfig::new(pm.endpoint().clone(), "consumer")).unwrap();
    for (i, (name, len)) in SIZES.iter().enumerate() {
        let line = producer.recv();
        let fields: Vec<u64> = line
            .split(' ')
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        let view = consumer.demand(name, Duration::from_secs(10)).unwrap();
        assert_eq!(view.len(), *len);
        assert!(*view == pattern(i as u64, *len)[..], "{name}: bytes differ");
        assert_eq!(view.attrs()["seed"], Value::UInt(i as u64));
        assert_eq!(
            view.segment_identity().unwrap(),
            (fields[0], fields[1]),
            "{name}: the consumer must map the producer's memfd"
        );
    }
    producer.send("done");
    producer.join();
    let stats = consumer.stats().unwrap();
    assert_eq!(stats.objects, 0, "the leaver's offers are withdrawn");
    assert_eq!(stats.clients, 1);
}

#[test]
fn pipelined_offers_and_demands_in_one_process() {
    let pm = manager();
    let cfg = ClientConfig::new(pm.endpoint().clone(), "p");
    let mut p = Client::connect(&cfg).unwrap();
    // Demands are submitted before any offer exists, so the consumer's
    // window must hold them all (a full window waits for replies).
    let mut c = Client::connect(&ClientConfig {
        window: 4096,
        ..cfg.clone()
    })
    .unwrap();
    let names: Vec<String> = (0..3000).map(|i| format!("obj-{i}")).collect();
    let data: Vec<Vec<u8>> = (0..3000)
        .map(|i| pattern(i, 100 + (i as usize % 5000)))
        .collect();
    // Demands first: they wait in the manager until the offers arrive.
    let ids: Vec<_> = names.iter().map(|n| c.submit_demand(n).unwrap()).collect();
    c.flush().unwrap();
    p.offer_many(
        names
            .iter()
            .map(String::as_str)
            .zip(data.iter().map(Vec::as_slice)),
    )
    .unwrap();
    for (id, d) in ids.into_iter().zip(&data) {
        match c.wait(id, Some(Duration::from_secs(10))).unwrap() {
            cdo::ipc::client::Reply::Data(v) => assert_eq!(&*v, &d[..]),
            other => panic!("{other:?}"),
        }
    }
    // The views are dropped; the consumer reports it, then the withdrawals
    // (which wait for that) complete.
    c.flush().unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    p.withdraw_many(&refs).unwrap();
    assert_eq!(pm.stats().objects, 0);
    assert!(matches!(
        p.withdraw("obj-1"),
        Err(ClientError::Pool {
            code: cdo::ipc::wire::ErrorCode::UnknownName,
            ..
        })
    ));
    assert!(matches!(
        c.demand("nothing", Duration::from_millis(50)),
        Err(ClientError::Timeout)
    ));
}

#[test]
fn wrong_token_is_refused() {
    let pm = manager();
    let bad = Endpoint {
        socket: pm.endpoint().socket.clone(),
        token: "not-the-token".into(),
    };
    match Client::connect(&ClientConfig::new(bad, "intruder")) {
        Err(ClientError::Refused(reason)) => assert!(reason.contains("token"), "{reason}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("joined with a wrong token"),
    }
    assert_eq!(pm.stats().clients, 0);
}

#[test]
fn socket_is_owner_only_and_removed_at_shutdown() {
    let pm = manager();
    let sock = pm.endpoint().socket.clone();
    let dir = pm.dir().to_path_buf();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&dir), 0o700);
    pm.shutdown();
    assert!(!sock.exists());
    assert!(!dir.exists());
}

#[test]
fn other_uid_is_refused() {
    let pm = ipc_common::manager_with(ManagerConfig {
        allowed_uid: Some(nix::unistd::geteuid().as_raw().wrapping_add(1)),
        ..Default::default()
    });
    match Client::connect(&ClientConfig::new(pm.endpoint().clone(), "other")) {
        Err(ClientError::Refused(reason)) => assert!(reason.contains("uid"), "{reason}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("joined with the wrong uid"),
    }
}

#[test]
fn withdrawal_waits_for_views_and_memory_is_not_reused_meanwhile() {
    let pm = manager();
    let cfg = ClientConfig::new(pm.endpoint().clone(), "p");
    let mut p = Client::connect(&cfg).unwrap();
    let mut c = Client::connect(&cfg).unwrap();
    p.offer("x", &pattern(1, 4096), Attributes::new()).unwrap();
    let view = c.demand("x", Duration::from_secs(5)).unwrap();
    let id = p.submit_withdraw("x").unwrap();
    assert!(matches!(
        p.wait(id, Some(Duration::from_millis(100))),
        Err(ClientError::Timeout)
    ));
    // The slot of x is not reused while the consumer views it.
    p.offer("y", &pattern(2, 4096), Attributes::new()).unwrap();
    assert!(*view == pattern(1, 4096)[..], "x was overwritten");
    let id = p.submit_withdraw("y").unwrap();
    p.flush().unwrap();
    drop(view);
    c.flush().unwrap();
    // y was never viewed: its withdrawal completes at once; x's completes
    // once the release arrived (the abandoned reply above is dropped).
    p.wait(id, Some(Duration::from_secs(5))).unwrap();
    let start = std::time::Instant::now();
    while pm.stats().segments != 1 || pm.stats().objects != 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", pm.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    p.offer("z", &pattern(3, 4096), Attributes::new()).unwrap();
    let z = c.demand("z", Duration::from_secs(5)).unwrap();
    assert!(*z == pattern(3, 4096)[..]);
}
