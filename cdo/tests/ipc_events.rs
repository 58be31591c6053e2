//! Events, acknowledged subscriptions, consumer groups, attribute schemas
//! and fault policies through the pool manager.

mod common;
mod ipc_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, Notice};
use cdo::ipc::handshake::Capabilities;
use cdo::ipc::interest::Interest;
use cdo::ipc::manager::{FaultPolicy, ManagerConfig, GROUP_WINDOW};
use cdo::ipc::wire::{Attributes, ErrorCode};
use cdo::{EventKind, EventMask, Schema, UnknownAttributes, Value};
use ipc_common::{child_client, client, code, eventually, hear, manager, manager_with, say, Peer};

const WAIT: Duration = Duration::from_secs(10);

fn step(n: u64) -> Attributes {
    Attributes::from([("app.step".to_string(), Value::UInt(n))])
}

/// `attrs` as the pool keeps them for an object of `size` bytes: with the
/// `size` attribute, as in one process.
fn offered(mut attrs: Attributes, size: u64) -> Attributes {
    attrs.insert("size".to_string(), Value::UInt(size));
    attrs
}

fn next_event(c: &mut Client) -> cdo::ipc::wire::EventRef {
    match c.next_notice(Some(WAIT)).unwrap() {
        Some(Notice::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn events_follow_kinds_and_selectors() {
    let pm = manager();
    let mut watcher = client(&pm, "watcher");
    let kinds = EventKind::Offer | EventKind::Withdraw;
    watcher.subscribe("app.step >= 2", kinds, false).unwrap();
    let mut producer = client(&pm, "producer");
    for n in 1..=3 {
        producer
            .offer(&format!("run/{n}"), &[n as u8], step(n))
            .unwrap();
    }
    producer.require("run/2").unwrap();
    producer.withdraw("run/3").unwrap();
    let got: Vec<(EventKind, String)> = (0..3)
        .map(|_| next_event(&mut watcher))
        .map(|e| {
            assert_eq!(e.client, producer.client_id());
            assert!(!e.needs_ack);
            (e.kind, e.name)
        })
        .collect();
    assert_eq!(
        got,
        [
            (EventKind::Offer, "run/2".to_string()),
            (EventKind::Offer, "run/3".to_string()),
            (EventKind::Withdraw, "run/3".to_string()),
        ]
    );
    assert!(watcher
        .next_notice(Some(Duration::from_millis(100)))
        .unwrap()
        .is_none());
}

#[test]
fn join_and_leave_are_events() {
    let pm = manager();
    let mut watcher = client(&pm, "watcher");
    watcher
        .subscribe(
            "name ~ '^worker'",
            EventKind::Join | EventKind::Leave,
            false,
        )
        .unwrap();
    let mut worker = client(&pm, "worker-1");
    worker.leave(WAIT).unwrap();
    let crashed = client(&pm, "worker-2");
    drop(crashed);
    let got: Vec<(EventKind, String)> = (0..4)
        .map(|_| next_event(&mut watcher))
        .map(|e| (e.kind, e.name))
        .collect();
    assert_eq!(got[0], (EventKind::Join, "worker-1".to_string()));
    assert_eq!(got[1], (EventKind::Leave, "worker-1".to_string()));
    assert_eq!(got[2], (EventKind::Join, "worker-2".to_string()));
    assert_eq!(got[3], (EventKind::Leave, "worker-2".to_string()));
}

#[test]
fn bad_selectors_and_subscriptions_are_refused() {
    let pm = manager();
    let mut c = client(&pm, "c");
    let e = c.subscribe("size >= ", EventMask::ALL, false).unwrap_err();
    let text = e.to_string();
    assert_eq!(code(e), ErrorCode::BadSelector);
    assert!(text.contains("8"), "the error gives the position: {text}");
    c.join_group("g", "app.step > 1").unwrap();
    let e = c.join_group("g", "app.step > 2").unwrap_err();
    assert_eq!(code(e), ErrorCode::BadSubscription);
    assert_eq!(
        code(c.unsubscribe(999).unwrap_err()),
        ErrorCode::BadSubscription
    );
    // The client and the pool still work.
    c.offer("x", b"1", step(3)).unwrap();
    assert_eq!(pm.stats().objects, 1);
}

#[test]
fn acknowledged_events_hold_the_operation() {
    let pm = manager();
    let mut gate = client(&pm, "gate");
    gate.subscribe("*", EventKind::Offer.into(), true).unwrap();
    let acked = Arc::new(AtomicBool::new(false));
    let producer = {
        let ep = pm.endpoint().clone();
        let acked = acked.clone();
        std::thread::spawn(move || {
            let mut p = Client::connect(&ClientConfig::new(ep, "producer")).unwrap();
            p.offer("held", b"data", Attributes::new()).unwrap();
            acked.load(Ordering::SeqCst)
        })
    };
    let event = next_event(&mut gate);
    assert!(event.needs_ack);
    assert_eq!(event.name, "held");
    std::thread::sleep(Duration::from_millis(200));
    acked.store(true, Ordering::SeqCst);
    gate.ack(event.event).unwrap();
    assert!(
        producer.join().unwrap(),
        "the offer returned before its event was acknowledged"
    );
    assert_eq!(pm.stats().awaited_acks, 0);
}

#[test]
fn unanswered_acknowledgements_time_out_by_policy() {
    for policy in [FaultPolicy::FailFast, FaultPolicy::BestEffort] {
        let pm = manager_with(ManagerConfig {
            pool: cdo::PoolConfig {
                policy,
                ack_timeout: Duration::from_millis(100),
                ..Default::default()
            },
            ..ManagerConfig::default()
        });
        let mut gate = client(&pm, "gate");
        gate.subscribe("*", EventKind::Offer | EventKind::Demand, true)
            .unwrap();
        let mut p = client(&pm, "producer");
        let offered = p.offer("obj", b"abc", Attributes::new());
        let mut c = client(&pm, "consumer");
        let demanded = c.demand("obj", WAIT);
        match policy {
            FaultPolicy::FailFast => {
                assert_eq!(code(offered.unwrap_err()), ErrorCode::AckTimeout);
                assert_eq!(code(demanded.unwrap_err()), ErrorCode::AckTimeout);
            }
            FaultPolicy::BestEffort => {
                offered.unwrap();
                assert_eq!(&*demanded.unwrap(), b"abc");
            }
        }
        // The offer took effect either way, and nothing is left held.
        c.flush().unwrap();
        let s = c.stats().unwrap();
        assert_eq!((s.objects, s.awaited_acks), (1, 0), "{policy:?}");
        p.withdraw("obj").unwrap();
    }
}

#[test]
fn dropping_an_acknowledged_subscription_releases_its_operations() {
    let pm = manager();
    let mut gate = client(&pm, "gate");
    gate.subscribe("*", EventKind::Offer.into(), true).unwrap();
    let producer = {
        let ep = pm.endpoint().clone();
        std::thread::spawn(move || {
            let mut p = Client::connect(&ClientConfig::new(ep, "producer")).unwrap();
            p.offer("x", b"1", Attributes::new())
        })
    };
    next_event(&mut gate);
    drop(gate);
    producer.join().unwrap().unwrap();
}

fn take_record(c: &mut Client) -> Option<cdo::ipc::client::GroupRecord> {
    match c.next_notice(Some(Duration::from_millis(300))).unwrap() {
        Some(Notice::Record(r)) => Some(r),
        None => None,
        Some(other) => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn every_group_sees_every_record_once() {
    let pm = manager();
    let selector = "name ~ '^out/'";
    let mut stats = client(&pm, "stats");
    stats.join_group("stats", selector).unwrap();
    let mut render: Vec<Client> = (0..2)
        .map(|i| {
            let mut c = client(&pm, &format!("render-{i}"));
            c.join_group("render", selector).unwrap();
            c
        })
        .collect();
    let mut p = client(&pm, "producer");
    const N: u64 = 24;
    for n in 0..N {
        p.offer(&format!("out/{n}"), &n.to_le_bytes(), step(n))
            .unwrap();
    }
    p.offer("other", b"x", Attributes::new()).unwrap();
    let mut seen_by_stats = Vec::new();
    while let Some(r) = take_record(&mut stats) {
        let n: u64 = r.view.name()["out/".len()..].parse().unwrap();
        assert_eq!(&*r.view, &n.to_le_bytes(), "the record's own bytes");
        assert_eq!(r.view.attrs(), &offered(step(n), 8));
        seen_by_stats.push(r.view.name().to_string());
        stats.done(r).unwrap();
    }
    let mut shares = vec![Vec::new(); 2];
    let mut idle = 0;
    while idle < 2 {
        idle = 0;
        for (i, c) in render.iter_mut().enumerate() {
            match take_record(c) {
                Some(r) => {
                    shares[i].push(r.view.name().to_string());
                    c.done(r).unwrap();
                }
                None => idle += 1,
            }
        }
    }
    let all: Vec<String> = (0..N).map(|n| format!("out/{n}")).collect();
    seen_by_stats.sort();
    let mut sorted_all = all.clone();
    sorted_all.sort();
    assert_eq!(seen_by_stats, sorted_all);
    let mut union: Vec<String> = shares.concat();
    union.sort();
    assert_eq!(union, sorted_all, "each record to exactly one renderer");
    for s in &shares {
        assert!(
            s.len() >= (N / 4) as usize,
            "shares are fair: {:?}",
            shares.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    // Done records no longer hold the producer's withdrawals.
    for n in 0..N {
        p.withdraw(&format!("out/{n}")).unwrap();
    }
    assert_eq!(pm.stats().queued_records, 0);
}

#[test]
fn a_member_holds_at_most_the_window_and_the_rest_queue() {
    let pm = manager();
    let mut m = client(&pm, "member");
    m.join_group("g", "*").unwrap();
    let mut p = client(&pm, "producer");
    let n = u64::from(GROUP_WINDOW) + 3;
    for i in 0..n {
        p.offer(&format!("r/{i}"), b"x", Attributes::new()).unwrap();
    }
    assert_eq!(pm.stats().queued_records, 3);
    let mut got = 0;
    while let Some(r) = take_record(&mut m) {
        got += 1;
        m.done(r).unwrap();
    }
    assert_eq!(got, n);
    assert_eq!(pm.stats().queued_records, 0);
}

#[test]
fn records_of_a_member_that_goes_are_given_to_another() {
    let pm = manager();
    let mut a = client(&pm, "a");
    a.join_group("g", "*").unwrap();
    let mut p = client(&pm, "producer");
    for i in 0..3 {
        p.offer(&format!("r/{i}"), &[i], Attributes::new()).unwrap();
    }
    // `a` takes the records and dies without finishing them.
    let mut held = Vec::new();
    while let Some(r) = take_record(&mut a) {
        held.push(r);
    }
    assert_eq!(held.len(), 3);
    // The producer's withdrawal waits for the group.
    let withdraw = {
        let ep = pm.endpoint().clone();
        std::thread::spawn(move || {
            let mut q = Client::connect(&ClientConfig::new(ep, "late-producer")).unwrap();
            q.offer("late", b"z", Attributes::new()).unwrap();
            q.withdraw("late")
        })
    };
    let mut b = client(&pm, "b");
    b.join_group("g", "*").unwrap();
    drop(held);
    drop(a);
    let mut names = Vec::new();
    while let Some(r) = take_record(&mut b) {
        assert_eq!(r.view.len(), 1);
        names.push(r.view.name().to_string());
        b.done(r).unwrap();
    }
    names.sort();
    assert_eq!(names, ["late", "r/0", "r/1", "r/2"]);
    withdraw.join().unwrap().unwrap();
}

/// The next record for `c`, waiting up to ten seconds.
fn next_record(c: &mut Client) -> cdo::ipc::client::GroupRecord {
    match c.next_notice(Some(Duration::from_secs(10))).unwrap() {
        Some(Notice::Record(r)) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn a_group_whose_last_member_goes_lets_its_records_go_unless_told_to_keep_them() {
    for keep in [false, true] {
        let pm = manager_with(ManagerConfig {
            pool: cdo::PoolConfig {
                keep_group_records: keep,
                ..Default::default()
            },
            ..ManagerConfig::default()
        });
        let mut a = client(&pm, "a");
        a.join_group("g", "*").unwrap();
        let mut p = client(&pm, "producer");
        p.offer("r/0", b"x", Attributes::new()).unwrap();
        p.offer("r/1", b"y", Attributes::new()).unwrap();
        // `a` holds both records undone, then leaves the pool.
        let held = [next_record(&mut a), next_record(&mut a)];
        drop(held);
        drop(a);
        if keep {
            // Kept for the next member, who finishes them: only then can
            // the producer withdraw.
            let mut b = client(&pm, "b");
            b.join_group("g", "*").unwrap();
            let mut names = Vec::new();
            for _ in 0..2 {
                let r = next_record(&mut b);
                names.push(r.view.name().to_string());
                b.done(r).unwrap();
            }
            names.sort();
            assert_eq!(names, ["r/0", "r/1"]);
        }
        // Released by the group (or finished by `b`): the withdrawals
        // complete and nothing stays queued or mapped.
        p.withdraw_many(&["r/0", "r/1"]).unwrap();
        let stats = pm.stats();
        assert_eq!(
            (stats.queued_records, stats.objects),
            (0, 0),
            "keep = {keep}"
        );
    }
}

#[test]
fn child_entry() {
    let Some((role, mut c)) = child_client() else {
        return;
    };
    match role.as_str() {
        "member" => {
            c.join_group("g", "*").unwrap();
            say("joined");
            let mut taken = Vec::new();
            while let Some(Notice::Record(r)) = c.next_notice(Some(WAIT)).unwrap() {
                say(r.view.name());
                taken.push(r);
            }
            // Killed while holding them.
            let _ = hear();
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn a_killed_member_s_records_go_to_the_others() {
    let pm = manager();
    let mut victim = Peer::spawn("child_entry", "member", pm.endpoint());
    assert_eq!(victim.recv(), "joined");
    let mut p = client(&pm, "producer");
    for i in 0..2 {
        p.offer(&format!("k/{i}"), &[i], Attributes::new()).unwrap();
    }
    assert_eq!(victim.recv(), "k/0");
    assert_eq!(victim.recv(), "k/1");
    let mut other = client(&pm, "other");
    other.join_group("g", "*").unwrap();
    victim.kill();
    let mut names = Vec::new();
    while names.len() < 2 {
        let r = take_record(&mut other).expect("the killed member's records come back");
        names.push(r.view.name().to_string());
        other.done(r).unwrap();
    }
    names.sort();
    assert_eq!(names, ["k/0", "k/1"]);
}

fn schema() -> Arc<Schema> {
    let mut s = Schema::default();
    s.add_yaml(
        "namespace: app\nattributes:\n  step: {type: uint, required: true}\n  label: {type: str}\n",
        "test",
    )
    .unwrap();
    Arc::new(s)
}

#[test]
fn offers_are_checked_against_the_schema() {
    for unknown in [UnknownAttributes::Reject, UnknownAttributes::Drop] {
        let pm = manager_with(ManagerConfig {
            pool: cdo::PoolConfig {
                unknown_attributes: unknown,
                ..Default::default()
            },
            schema: Some(schema()),
            ..ManagerConfig::default()
        });
        let mut p = client(&pm, "producer");
        let bad_type = Attributes::from([("app.step".into(), Value::Str("x".into()))]);
        assert_eq!(
            code(p.offer("a", b"1", bad_type).unwrap_err()),
            ErrorCode::BadAttributes
        );
        let missing = Attributes::from([("app.label".into(), Value::Str("x".into()))]);
        assert_eq!(
            code(p.offer("a", b"1", missing).unwrap_err()),
            ErrorCode::BadAttributes
        );
        let bad_builtin = Attributes::from([
            ("app.step".into(), Value::UInt(1)),
            ("priority".into(), Value::Str("urgent".into())),
        ]);
        assert_eq!(
            code(p.offer("a", b"1", bad_builtin).unwrap_err()),
            ErrorCode::BadAttributes
        );
        assert_eq!(pm.stats().objects, 0, "refused offers leave no trace");
        let mut extra = step(4);
        extra.insert("app.colour".into(), Value::Str("red".into()));
        let r = p.offer("a", b"1", extra);
        let mut c = client(&pm, "consumer");
        match unknown {
            UnknownAttributes::Reject => {
                assert_eq!(code(r.unwrap_err()), ErrorCode::BadAttributes);
                p.offer("a", b"1", step(4)).unwrap();
            }
            UnknownAttributes::Drop => r.unwrap(),
        }
        let v = c.demand("a", WAIT).unwrap();
        assert_eq!(v.attrs(), &offered(step(4), 1));
    }
}

#[test]
fn a_dead_producer_s_object_fails_fast_or_waits_for_another_source() {
    for policy in [FaultPolicy::FailFast, FaultPolicy::BestEffort] {
        let pm = manager_with(ManagerConfig {
            pool: cdo::PoolConfig {
                policy,
                ..Default::default()
            },
            ..ManagerConfig::default()
        });
        let mut p = client(&pm, "producer");
        p.offer("x", b"old", Attributes::new()).unwrap();
        drop(p);
        // The manager notices the closed connection.
        while pm.stats().clients > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut c = client(&pm, "consumer");
        match policy {
            FaultPolicy::FailFast => {
                let e = c.demand("x", WAIT).unwrap_err();
                assert_eq!(code(e), ErrorCode::ProducerDied);
            }
            FaultPolicy::BestEffort => {
                let id = c.submit_demand("x").unwrap();
                c.flush().unwrap();
                let mut source = client(&pm, "librarian");
                source.offer("x", b"new", Attributes::new()).unwrap();
                match c.wait(id, Some(WAIT)).unwrap() {
                    cdo::ipc::client::Reply::Data(v) => assert_eq!(&*v, b"new"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_consumer_converts_its_view_into_another_tier_and_order() {
    use cdo::ipc::convert::convert_view;
    use cdo::{Order, Place};
    let (mamba, _dir) = common::mamba();
    let pm = manager();
    let mut p = client(&pm, "producer");
    // A 2x3 f64 array, row-major.
    let values: Vec<f64> = (0..6).map(f64::from).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let attrs = Attributes::from([
        (
            "shape".to_string(),
            Value::List(vec![Value::UInt(2), Value::UInt(3)]),
        ),
        ("order".to_string(), Value::Str("row".into())),
        ("element_type".to_string(), Value::Str("f64".into())),
    ]);
    p.offer("array", &bytes, attrs).unwrap();
    let mut c = client(&pm, "consumer");
    let view = c.demand("array", WAIT).unwrap();
    let tier = mamba::Tier::Ssd;
    let column = cdo::Attributes {
        wanted_place: Some(Place::Tier(tier)),
        wanted_order: Some(Order::ColumnMajor),
        ..cdo::Attributes::default()
    };
    let col = convert_view(&mamba, &view, &column).unwrap();
    assert_eq!(col.tier(), tier);
    let got: Vec<f64> = col
        .as_slice()
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let same = convert_view(&mamba, &view, &cdo::Attributes::default()).unwrap();
    assert_eq!(same.as_slice().unwrap(), &bytes[..]);
    // A reorder of bytes without a shape is refused.
    p.offer("blob", &bytes, Attributes::new()).unwrap();
    let blob = c.demand("blob", WAIT).unwrap();
    let column = cdo::Attributes {
        wanted_order: Some(Order::ColumnMajor),
        ..cdo::Attributes::default()
    };
    let e = convert_view(&mamba, &blob, &column).unwrap_err();
    assert!(matches!(e, cdo::Error::Layout { .. }), "{e}");
}

#[test]
fn events_can_be_polled_without_blocking() {
    let pm = manager();
    let mut watcher = client(&pm, "watcher");
    watcher
        .subscribe("*", EventKind::Offer.into(), false)
        .unwrap();
    assert!(watcher.poll_notice().unwrap().is_none(), "nothing yet");
    let mut p = client(&pm, "producer");
    p.offer("polled", b"x", Attributes::new()).unwrap();
    let mut event = None;
    eventually("the event", || {
        if let Some(Notice::Event(e)) = watcher.poll_notice().unwrap() {
            event = Some(e);
        }
        event.is_some()
    });
    let event = event.unwrap();
    assert_eq!(
        (event.kind, event.name.as_str()),
        (EventKind::Offer, "polled")
    );
    assert!(watcher.poll_notice().unwrap().is_none());
}

#[test]
fn second_offers_are_refused_or_versioned_by_configuration() {
    use cdo::DuplicateOffers;
    let pm = manager();
    let mut a = client(&pm, "a");
    let mut b = client(&pm, "b");
    a.offer("x", b"first", Attributes::new()).unwrap();
    let e = b.offer("x", b"second", Attributes::new()).unwrap_err();
    assert_eq!(code(e), ErrorCode::DuplicateName);

    let pm = manager_with(ManagerConfig {
        pool: cdo::PoolConfig {
            duplicates: DuplicateOffers::Version,
            ..Default::default()
        },
        ..ManagerConfig::default()
    });
    let mut a = client(&pm, "a");
    let mut b = client(&pm, "b");
    let mut c = client(&pm, "c");
    a.offer("x", b"first", Attributes::new()).unwrap();
    let old = c.demand("x", WAIT).unwrap();
    b.offer("x", b"second", Attributes::new()).unwrap();
    assert_eq!(pm.stats().objects, 2);
    assert_eq!(
        &*c.demand("x", WAIT).unwrap(),
        b"second",
        "the newest version"
    );
    // Withdrawing the newer version brings the older back into view; a
    // client withdraws only its own version.
    let e = c.withdraw("x").unwrap_err();
    assert_eq!(code(e), ErrorCode::NotOwner);
    c.flush().unwrap();
    b.withdraw("x").unwrap();
    assert_eq!(&*c.demand("x", WAIT).unwrap(), b"first");
    assert_eq!(&*old, b"first", "an offer never changes");
    drop(old);
    c.flush().unwrap();
    a.withdraw("x").unwrap();
    assert_eq!(pm.stats().objects, 0);
    let e = a.withdraw("x").unwrap_err();
    assert_eq!(code(e), ErrorCode::UnknownName);
}

#[test]
fn the_schema_reaches_clients_that_agree_to_it() {
    let pm = manager_with(ManagerConfig {
        pool: cdo::PoolConfig {
            unknown_attributes: UnknownAttributes::Drop,
            ..Default::default()
        },
        schema: Some(schema()),
        ..ManagerConfig::default()
    });
    let c = client(&pm, "c");
    assert!(c.capabilities().contains(Capabilities::SCHEMA));
    let got = c.schema().expect("the manager sent its schema");
    assert_eq!(got.unknown, UnknownAttributes::Drop);
    assert_eq!(*got.schema, *schema(), "the schema arrives whole");

    // A manager without a schema says so: the client checks nothing.
    let plain = manager();
    let c = client(&plain, "c");
    let got = c.schema().expect("the manager sent its rules");
    assert!(got.schema.is_empty());
    assert_eq!(got.unknown, UnknownAttributes::Reject);

    // A manager that does not offer the capability sends nothing, and
    // the connection goes on as before.
    let without = manager_with(ManagerConfig {
        schema: Some(schema()),
        capabilities: Capabilities::from_bits(
            Capabilities::KNOWN.bits() & !Capabilities::SCHEMA.bits(),
        ),
        ..ManagerConfig::default()
    });
    let mut c = client(&without, "c");
    assert!(c.schema().is_none());
    assert_eq!(c.stats().unwrap().clients, 1);
}

#[test]
fn clients_read_the_interest_in_lifecycle_events_and_send_only_what_is_wanted() {
    let pm = manager();
    let mut producer = client(&pm, "producer");
    assert!(producer.capabilities().contains(Capabilities::LIFECYCLE));
    let page = Arc::clone(producer.interest_page().expect("the manager sent its page"));
    assert_eq!(page.get(), Interest::NONE);
    // Nobody wants declares: nothing is sent.
    let told = producer.submit_lifecycle(EventKind::Declare, "obj", Attributes::new());
    assert_eq!(told.unwrap(), None);

    let mut watcher = client(&pm, "watcher");
    let sub = watcher
        .subscribe(
            "name == \"obj\"",
            EventKind::Declare | EventKind::Offer,
            false,
        )
        .unwrap();
    // Published before the subscription was answered.
    assert_eq!(page.get(), Interest::of(EventKind::Declare.into(), false));
    let told = producer.submit_lifecycle(EventKind::Declare, "obj", step(1));
    assert_eq!(told.unwrap(), None, "not waited for");
    producer.flush().unwrap();
    let event = next_event(&mut watcher);
    assert_eq!(
        (event.kind, event.name.as_str(), event.needs_ack),
        (EventKind::Declare, "obj", false)
    );
    assert_eq!(event.attrs, step(1));
    assert_eq!(event.client, producer.client_id());
    // Seals are not wanted: not sent, so not heard.
    let told = producer.submit_lifecycle(EventKind::Seal, "obj", Attributes::new());
    assert_eq!(told.unwrap(), None);

    // The acknowledged subscriber's kind is a request held for it.
    let acker = watcher
        .subscribe("*", EventKind::Seal.into(), true)
        .unwrap();
    assert!(page.get().awaited.contains(EventKind::Seal));
    let id = producer
        .submit_lifecycle(EventKind::Seal, "obj", Attributes::new())
        .unwrap()
        .expect("a request");
    producer.flush().unwrap();
    let event = next_event(&mut watcher);
    assert!(event.needs_ack && event.kind == EventKind::Seal);
    watcher.ack(event.event).unwrap();
    producer.wait(id, Some(WAIT)).unwrap();

    watcher.unsubscribe(acker).unwrap();
    watcher.unsubscribe(sub).unwrap();
    assert_eq!(page.get(), Interest::NONE);

    // A manager that does not offer the capability sends no page; the
    // client sends nothing, and the connection goes on as before.
    let without = manager_with(ManagerConfig {
        capabilities: Capabilities::from_bits(
            Capabilities::KNOWN.bits() & !Capabilities::LIFECYCLE.bits(),
        ),
        ..ManagerConfig::default()
    });
    let mut c = client(&without, "c");
    assert!(c.interest_page().is_none());
    let told = c.submit_lifecycle(EventKind::Declare, "obj", Attributes::new());
    assert_eq!(told.unwrap(), None);
    assert_eq!(c.stats().unwrap().clients, 1);
}
