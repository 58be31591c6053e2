//! Clients killed with SIGKILL never block the pool.

mod ipc_common;

use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError};
use cdo::ipc::manager::{ManagerConfig, ProducerExit};
use cdo::ipc::wire::{Attributes, ErrorCode, Stats};
use cdo::{PoolConfig, Value};
use ipc_common::{child_client, fill, hear, manager, manager_with, pattern, say, wait_for, Peer};

/// Child side: a producer or a consumer that waits to be killed.
#[test]
fn child_entry() {
    let Some((role, mut c)) = child_client() else {
        return;
    };
    match role.as_str() {
        "producer" => {
            c.offer_with("a", 4096, Attributes::new(), |d| fill(1, d))
                .unwrap();
            c.offer_with("b", 8 << 20, Attributes::new(), |d| fill(2, d))
                .unwrap();
        }
        "lifetime-producer" => {
            let lifetime = Attributes::from([("lifetime_ms".into(), Value::UInt(600_000))]);
            c.offer_with("kept", 1 << 20, lifetime, |d| fill(3, d))
                .unwrap();
            c.offer_with("plain", 4096, Attributes::new(), |d| fill(4, d))
                .unwrap();
        }
        "consumer" => {
            c.require("x").unwrap();
            c.submit_demand("never").unwrap();
            c.flush().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
    say("ready");
    hear();
    std::process::exit(0);
}

#[test]
fn killed_producer_withdraws_its_offers() {
    let pm = manager();
    let mut consumer = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "c")).unwrap();
    let mut producer = Peer::spawn("child_entry", "producer", pm.endpoint());
    assert_eq!(producer.recv(), "ready");
    consumer.require("b").unwrap();
    let a = consumer.demand("a", Duration::from_secs(5)).unwrap();
    assert_eq!(wait_for(&pm, |s| s.objects == 2).segments, 2);
    producer.kill();
    let s = wait_for(&pm, |s| s.clients == 1);
    // Nothing is offered any more; the segment of the viewed object stays
    // (a consumer group could still be given it) until the view goes.
    assert_eq!((s.objects, s.segments, s.offered_bytes), (0, 1, 0), "{s:?}");
    match consumer.demand("b", Duration::from_secs(5)) {
        Err(ClientError::Pool {
            code: ErrorCode::ProducerDied,
            ..
        }) => {}
        other => panic!("expected ProducerDied, got {other:?}"),
    }
    // The view we hold keeps the dead producer's memory alive and intact.
    assert!(*a == pattern(1, 4096)[..]);
    drop(a);
    consumer.flush().unwrap();
    wait_for(&pm, |s| s.segments == 0);
}

#[test]
fn a_killed_producers_offer_with_a_lifetime_is_served_when_kept() {
    let pm = manager_with(ManagerConfig {
        pool: PoolConfig {
            producer_exit: ProducerExit::Keep,
            ..PoolConfig::default()
        },
        ..ManagerConfig::default()
    });
    let mut consumer = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "c")).unwrap();
    let mut producer = Peer::spawn("child_entry", "lifetime-producer", pm.endpoint());
    assert_eq!(producer.recv(), "ready");
    producer.kill();
    let s = wait_for(&pm, |s| s.clients == 1);
    assert_eq!((s.objects, s.segments), (1, 1), "{s:?}");
    // Offered and exited: the manager still serves its bytes.
    let kept = consumer.demand("kept", Duration::from_secs(5)).unwrap();
    assert!(*kept == pattern(3, 1 << 20)[..]);
    match consumer.demand("plain", Duration::from_secs(5)) {
        Err(ClientError::Pool {
            code: ErrorCode::ProducerDied,
            ..
        }) => {}
        other => panic!("no lifetime, not kept: expected ProducerDied, got {other:?}"),
    }
}

#[test]
fn killed_consumer_releases_its_requires_and_demands() {
    let pm = manager();
    let mut producer = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "p")).unwrap();
    producer.offer("x", b"payload", Attributes::new()).unwrap();
    let mut consumer = Peer::spawn("child_entry", "consumer", pm.endpoint());
    assert_eq!(consumer.recv(), "ready");
    wait_for(&pm, |s| s.waiting_demands == 1);
    match producer.leave(Duration::from_millis(200)) {
        Err(ClientError::StillRequired(names)) => assert_eq!(names, ["x"]),
        other => panic!("expected StillRequired, got {other:?}"),
    }
    consumer.kill();
    producer.leave(Duration::from_secs(10)).unwrap();
    let s = wait_for(&pm, |s| s.clients == 0);
    let live = Stats {
        offers_total: s.offers_total,
        views_total: s.views_total,
        view_bytes_total: s.view_bytes_total,
        uptime_ms: s.uptime_ms,
        ..Stats::default()
    };
    assert_eq!(s, live, "nothing left but the totals");
    assert_eq!((s.offers_total, s.views_total), (1, 0));
}

#[test]
fn waiting_demand_fails_when_the_manager_stops() {
    let pm = manager();
    let mut c = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "c")).unwrap();
    let id = c.submit_demand("late").unwrap();
    c.flush().unwrap();
    wait_for(&pm, |s| s.waiting_demands == 1);
    pm.shutdown();
    match c.wait(id, Some(Duration::from_secs(5))) {
        Err(ClientError::Pool {
            code: ErrorCode::ShuttingDown,
            ..
        }) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
}

#[test]
fn a_client_that_stops_reading_stalls_nobody_else() {
    let pm = manager();
    let cfg = |name: &str| ClientConfig {
        window: 1 << 20,
        ..ClientConfig::new(pm.endpoint().clone(), name)
    };
    // 50,000 demands waiting for "x", whose replies (megabytes of frames)
    // it will never read.
    let mut stuck = Client::connect(&cfg("stuck")).unwrap();
    for _ in 0..50_000 {
        stuck.submit_demand("x").unwrap();
    }
    stuck.flush().unwrap();
    wait_for(&pm, |s| s.waiting_demands == 50_000);
    // The offer is handled by the producer's connection: it must not wait
    // for the stuck client's socket to drain.
    let mut producer = Client::connect(&cfg("p")).unwrap();
    let id = producer
        .submit_offer("x", 7, Attributes::new(), |b| b.copy_from_slice(b"payload"))
        .unwrap();
    match producer.wait(id, Some(Duration::from_secs(5))) {
        Ok(cdo::ipc::client::Reply::Ok) => {}
        other => panic!("the offer was held up: {other:?}"),
    }
    // Everyone else is served meanwhile.
    let mut other = Client::connect(&cfg("other")).unwrap();
    for i in 0..100 {
        producer
            .offer(&format!("y{i}"), b"more", Attributes::new())
            .unwrap();
        let v = other
            .demand(&format!("y{i}"), Duration::from_secs(5))
            .unwrap();
        assert_eq!(&*v, b"more");
    }
    drop(stuck);
}
