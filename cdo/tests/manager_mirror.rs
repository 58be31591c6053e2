//! What a pool manager does for its federation in its own request path
//! (`Control`): the offers and withdrawals of its clients handed to the
//! mirror, small offers with their bytes; copies offered and withdrawn as the mirror's,
//! in the manager's own memory.

mod ipc_common;

use std::sync::mpsc;
use std::time::Duration;

use cdo::ipc::client::Reply;
use cdo::ipc::manager::MirrorEvent;
use cdo::ipc::wire::{Attributes, ErrorCode};
use cdo::{EventKind, Value};
use ipc_common::{client, eventually, manager, pattern};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(200);

fn step(n: u64) -> Attributes {
    Attributes::from([("app.step".to_string(), Value::UInt(n))])
}

#[test]
fn events_reach_the_mirror_in_the_request_path_small_offers_with_their_bytes() {
    let pm = manager();
    let control = pm.control();
    let mut mirror = client(&pm, "federation");
    control.set_mirror(mirror.client_id());
    let (tx, rx) = mpsc::channel();
    control.on_mirror_events(4096, move |event| {
        let _ = tx.send(event);
    });
    mirror
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
        .unwrap();
    let mut producer = client(&pm, "producer");

    let small = pattern(1, 4096);
    producer.offer("small", &small, step(1)).unwrap();
    let MirrorEvent {
        kind, name, inline, ..
    } = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((kind, name.as_str()), (EventKind::Offer, "small"));
    let (attrs, bytes) = inline.expect("a small object comes with its bytes");
    assert_eq!(bytes, small);
    assert_eq!(attrs.get("size"), Some(&Value::UInt(4096)));
    assert_eq!(attrs.get("app.step"), Some(&Value::UInt(1)));

    // One byte over the limit: the mirror demands it itself.
    producer.offer("large", &pattern(2, 4097), step(2)).unwrap();
    let offer = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((offer.name.as_str(), offer.inline), ("large", None));

    // A withdrawal, without bytes; no event comes on the mirror's
    // connection, nothing was sent there before (`after`).
    producer.withdraw("small").unwrap();
    let withdrawn = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (withdrawn.kind, withdrawn.name.as_str(), withdrawn.inline),
        (EventKind::Withdraw, "small", None)
    );
    assert_eq!(withdrawn.after, 0);
    assert!(mirror.next_notice(Some(QUIET)).unwrap().is_none());

    // The mirror's own offers are no news to it, and its view of a
    // demanded object is its own business.
    mirror.offer("copy", &pattern(3, 64), step(3)).unwrap();
    let view = mirror.demand("large", WAIT).unwrap();
    assert_eq!(*view, pattern(2, 4097)[..]);
    drop(view);
    mirror.withdraw("copy").unwrap();
    assert!(rx.recv_timeout(QUIET).is_err());

    // Nothing is held for the mirror: the producer's withdrawal completes.
    producer.withdraw("large").unwrap();
    assert_eq!(pm.stats().objects, 0);
}

#[test]
fn copies_offered_in_the_request_path_serve_waiting_demands_and_leak_nothing() {
    let pm = manager();
    let control = pm.control();
    let bytes = pattern(7, 4096);
    // No mirror yet: refused, typed.
    let refused = control.offer_copy("copy", step(7), &bytes).unwrap_err();
    assert_eq!(refused.0, ErrorCode::NotJoined);
    let mirror = client(&pm, "federation");
    control.set_mirror(mirror.client_id());
    let mut watcher = client(&pm, "watcher");
    watcher
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
        .unwrap();
    let mut consumer = client(&pm, "consumer");

    // A demand that waits is served before the call returns.
    let waiting = consumer.submit_demand("copy").unwrap();
    consumer.flush().unwrap();
    eventually("the demand waits", || pm.stats().waiting_demands == 1);
    control.offer_copy("copy", step(7), &bytes).unwrap();
    assert_eq!(pm.stats().waiting_demands, 0);
    let view = match consumer.wait(waiting, Some(WAIT)).unwrap() {
        Reply::Data(view) => view,
        other => panic!("expected the copy, got {other:?}"),
    };
    assert_eq!(*view, bytes[..]);
    assert_eq!(view.attrs().get("size"), Some(&Value::UInt(4096)));
    assert_eq!(view.attrs().get("app.step"), Some(&Value::UInt(7)));

    // The errors of an offer, typed, and nothing left behind by them.
    let twice = control.offer_copy("copy", step(7), &bytes).unwrap_err();
    assert_eq!(twice.0, ErrorCode::DuplicateName);
    let bad = control.offer_copy("", step(7), &bytes).unwrap_err();
    assert_eq!(bad.0, ErrorCode::InvalidName);
    assert_eq!(pm.stats().objects, 1);
    let unknown = control.withdraw_copy("nowhere").unwrap_err();
    assert_eq!(unknown.0, ErrorCode::UnknownName);

    // Withdrawn at once while viewed; the view stays whole.
    control.withdraw_copy("copy").unwrap();
    assert_eq!(pm.stats().objects, 0);
    assert_eq!(
        control.withdraw_copy("copy").unwrap_err().0,
        ErrorCode::UnknownName
    );
    assert_eq!(*view, bytes[..]);
    drop(view);
    consumer.flush().unwrap();

    // Slots come back once released: 200 copies of 60 KB, more than one
    // segment of their size class holds (64 slots of 64 KiB), in one.
    for i in 0..200u64 {
        let name = format!("cycle/{i}");
        let b = pattern(i, 60_000 + i as usize);
        control.offer_copy(&name, Attributes::new(), &b).unwrap();
        let view = consumer.demand(&name, WAIT).unwrap();
        assert_eq!(*view, b[..]);
        drop(view);
        consumer.flush().unwrap();
        control.withdraw_copy(&name).unwrap();
    }
    eventually("every view released", || pm.stats().objects == 0);
    // That of the 4 KiB copy's class, and that of these.
    assert_eq!(pm.stats().segments, 2, "{:?}", pm.stats());

    // Copies are the mirror's: no event for the watcher.
    assert!(watcher.next_notice(Some(QUIET)).unwrap().is_none());

    // The mirror gone: its copies with it, their segments closed.
    control.offer_copy("left", step(8), &bytes).unwrap();
    drop(mirror);
    eventually("the mirror's copies are gone", || {
        let s = pm.stats();
        s.objects == 0 && s.segments == 0
    });
    let gone = control.offer_copy("late", step(9), &bytes).unwrap_err();
    assert_eq!(gone.0, ErrorCode::NotJoined);
    assert_eq!(
        control.withdraw_copy("left").unwrap_err().0,
        ErrorCode::NotJoined
    );
}

#[test]
fn a_reserved_copy_slot_is_written_in_place_offered_or_given_back() {
    let pm = manager();
    let control = pm.control();
    assert_eq!(
        control.reserve_copy(4096).unwrap_err().0,
        ErrorCode::NotJoined
    );
    let mirror = client(&pm, "federation");
    control.set_mirror(mirror.client_id());
    let mut consumer = client(&pm, "consumer");

    // Written in place, offered: a waiting demand sees exactly those bytes.
    let bytes = pattern(3, 1 << 20);
    let waiting = consumer.submit_demand("pulled").unwrap();
    consumer.flush().unwrap();
    eventually("the demand waits", || pm.stats().waiting_demands == 1);
    let mut slot = control.reserve_copy(bytes.len() as u64).unwrap();
    assert_eq!(slot.bytes_mut().len(), bytes.len());
    slot.bytes_mut().copy_from_slice(&bytes);
    control.offer_reserved("pulled", step(3), slot).unwrap();
    let view = match consumer.wait(waiting, Some(WAIT)).unwrap() {
        Reply::Data(view) => view,
        other => panic!("expected the copy, got {other:?}"),
    };
    assert_eq!(*view, bytes[..]);
    assert_eq!(view.attrs().get("app.step"), Some(&Value::UInt(3)));
    let segments = pm.stats().segments;

    // A refused offer gives its slot back; so does a dropped slot: many
    // of them take no new memory.
    for _ in 0..10 {
        let slot = control.reserve_copy(bytes.len() as u64).unwrap();
        let twice = control.offer_reserved("pulled", step(3), slot).unwrap_err();
        assert_eq!(twice.0, ErrorCode::DuplicateName);
        drop(control.reserve_copy(bytes.len() as u64).unwrap());
    }
    assert_eq!(pm.stats().segments, segments);
    assert_eq!(pm.stats().objects, 1);
    drop(view);
    consumer.flush().unwrap();
    control.withdraw_copy("pulled").unwrap();
    eventually("the copy is gone", || pm.stats().objects == 0);

    // A slot reserved for a mirror that left is refused, typed, when
    // offered, and its memory stays whole while it is written.
    let mut slot = control.reserve_copy(4096).unwrap();
    drop(mirror);
    eventually("the mirror left", || pm.stats().segments == 0);
    slot.bytes_mut().fill(9);
    let late = control.offer_reserved("late", step(4), slot).unwrap_err();
    assert_eq!(late.0, ErrorCode::NotJoined);
    assert_eq!(pm.stats().objects, 0);
}
