//! Events across federated pool managers: a subscriber on one node hears
//! of the objects offered and withdrawn on the others, once each, marked
//! with the node they come from, and never of the federation's own
//! mirroring (the copies it offers and withdraws, the demands it makes to
//! export an object). Three managers on 127.0.0.1 in this process, fabric
//! provider tcp.

mod ipc_common;

use std::time::Duration;

use cdo::ipc::client::{Client, Notice};
use cdo::ipc::federation::{self, Federation};
use cdo::ipc::manager::{FaultPolicy, ManagerHandle};
use cdo::ipc::wire::{Attributes, EventRef};
use cdo::{EventKind, Value};
use ipc_common::{client, eventually, federated_node, linked, pattern};

const TOKEN: &str = "federation-events-token";
/// Long enough never to expire in a test that does not want it to.
const PATIENT: Duration = Duration::from_secs(60);

/// A manager with its federation on 127.0.0.1, dialling `peers`.
fn node(peers: &[&Federation]) -> (ManagerHandle, Federation) {
    let peers = peers.iter().map(|f| f.local_addr().to_string()).collect();
    federated_node(FaultPolicy::FailFast, peers, TOKEN, PATIENT)
}

fn step(n: u64) -> Attributes {
    Attributes::from([("app.step".to_string(), Value::UInt(n))])
}

fn next_event(c: &mut Client) -> EventRef {
    match c.next_notice(Some(PATIENT)).unwrap() {
        Some(Notice::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The events `c` receives up to and including the first that `last`
/// picks, as (kind, name): each raised on node `node` (no client of this
/// node), awaiting no acknowledgement, of an object of step 1.
fn remote_events_until(
    c: &mut Client,
    node: &str,
    last: impl Fn(&EventRef) -> bool,
) -> Vec<(EventKind, String)> {
    let mut heard = Vec::new();
    loop {
        let e = next_event(c);
        assert_eq!(e.node.as_deref(), Some(node), "{e:?}");
        assert_eq!(e.client, 0, "no client of this node raised it");
        assert!(!e.needs_ack);
        assert_eq!(e.attrs.get("app.step"), Some(&Value::UInt(1)), "{e:?}");
        let end = last(&e);
        heard.push((e.kind, e.name));
        if end {
            return heard;
        }
    }
}

/// The events `c` receives up to and including the offer of `last`, as
/// (kind, name, node).
fn events_until(c: &mut Client, last: &str) -> Vec<(EventKind, String, Option<String>)> {
    let mut got = Vec::new();
    loop {
        let e = next_event(c);
        let end = e.kind == EventKind::Offer && e.name == last;
        got.push((e.kind, e.name, e.node));
        if end {
            return got;
        }
    }
}

#[test]
fn subscribers_on_every_node_hear_of_remote_offers_and_withdrawals_once() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let (pc, fc) = node(&[&fa, &fb]);
    linked(&[&fa, &fb, &fc]);
    let a = fa.local_addr().to_string();
    let offers = EventKind::Offer | EventKind::Withdraw;
    // On the producer's node: its own offers, and no demand of the
    // federation exporting them.
    let mut watch_a = client(&pa, "watch-a");
    watch_a
        .subscribe("*", offers | EventKind::Demand, false)
        .unwrap();
    // On the consumer's node, with a selector.
    let mut watch_b = client(&pb, "watch-b");
    watch_b.subscribe("app.step >= 2", offers, false).unwrap();
    // On a third node, where nothing is read.
    let mut watch_c = client(&pc, "watch-c");
    watch_c
        .subscribe("*", offers | EventKind::Demand, false)
        .unwrap();

    let mut producer = client(&pa, "producer");
    let mut consumer = client(&pb, "consumer");
    // Inline (small) and read remotely (above the eager limit).
    let sizes = [1usize, 100, federation::DEFAULT_EAGER_MAX + 1];
    for (i, &n) in sizes.iter().enumerate() {
        let name = format!("run/{}", i + 1);
        producer
            .offer(&name, &pattern(i as u64, n), step(i as u64 + 1))
            .unwrap();
    }
    // The attributes travel with the event, the size among them.
    let e = next_event(&mut watch_b);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Offer, "run/2"));
    assert_eq!(e.node.as_deref(), Some(a.as_str()));
    assert_eq!(e.client, 0, "no client of this node raised it");
    assert!(!e.needs_ack);
    assert_eq!(e.attrs.get("app.step"), Some(&Value::UInt(2)));
    assert_eq!(e.attrs.get("size"), Some(&Value::UInt(sizes[1] as u64)));
    let e = next_event(&mut watch_b);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Offer, "run/3"));

    // Reading both here offers local copies: no second offer event.
    for (i, &n) in sizes.iter().enumerate().skip(1) {
        let v = consumer.demand(&format!("run/{}", i + 1), PATIENT).unwrap();
        assert!(*v == pattern(i as u64, n)[..]);
    }
    consumer.flush().unwrap();
    eventually("both were read", || fb.status().pulls == 2);
    // On A: its own offers, then the consumer's demands on B, from B; no
    // demand of the federation exporting them.
    let b = fb.local_addr().to_string();
    let heard_a: Vec<_> = (0..5)
        .map(|_| {
            let e = next_event(&mut watch_a);
            (e.kind, e.name, e.node)
        })
        .collect();
    let local = |kind, name: &str| (kind, name.to_string(), None);
    let from_b = |kind, name: &str| (kind, name.to_string(), Some(b.clone()));
    assert_eq!(
        heard_a,
        vec![
            local(EventKind::Offer, "run/1"),
            local(EventKind::Offer, "run/2"),
            local(EventKind::Offer, "run/3"),
            from_b(EventKind::Demand, "run/2"),
            from_b(EventKind::Demand, "run/3"),
        ]
    );
    producer.withdraw("run/2").unwrap();
    producer.withdraw("run/3").unwrap();
    // The copies' withdrawals raise nothing either.
    eventually("the copies are withdrawn", || pb.stats().objects == 0);
    // One link carries A's messages to each peer, in order: once the
    // last offer is heard of, everything before it was.
    producer.offer("end", &[0], step(9)).unwrap();

    let from_a = Some(a.clone());
    let ev = |kind, name: &str| (kind, name.to_string(), from_a.clone());
    assert_eq!(
        events_until(&mut watch_b, "end"),
        vec![
            ev(EventKind::Withdraw, "run/2"),
            ev(EventKind::Withdraw, "run/3"),
            ev(EventKind::Offer, "end"),
        ]
    );
    assert_eq!(
        events_until(&mut watch_c, "end"),
        vec![
            ev(EventKind::Offer, "run/1"),
            ev(EventKind::Offer, "run/2"),
            ev(EventKind::Offer, "run/3"),
            ev(EventKind::Withdraw, "run/2"),
            ev(EventKind::Withdraw, "run/3"),
            ev(EventKind::Offer, "end"),
        ]
    );
    assert_eq!(
        events_until(&mut watch_a, "end"),
        vec![
            local(EventKind::Withdraw, "run/2"),
            local(EventKind::Withdraw, "run/3"),
            local(EventKind::Offer, "end"),
        ]
    );
    drop((fa, fb, fc));
}

#[test]
fn objects_offered_on_two_nodes_are_told_apart_by_node() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let (pc, fc) = node(&[&fa, &fb]);
    linked(&[&fa, &fb, &fc]);
    let mut watch = client(&pc, "watch");
    watch
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
        .unwrap();
    let mut pa_producer = client(&pa, "producer-a");
    let mut pb_producer = client(&pb, "producer-b");
    pa_producer.offer("a/1", &[1], step(1)).unwrap();
    pb_producer.offer("b/1", &[2], step(1)).unwrap();
    let mut got = events_until(&mut watch, "a/1");
    if got.len() < 2 {
        got.extend(events_until(&mut watch, "b/1"));
    }
    got.sort_by(|x, y| x.1.cmp(&y.1));
    let (a, b) = (fa.local_addr().to_string(), fb.local_addr().to_string());
    assert_eq!(
        got,
        vec![
            (EventKind::Offer, "a/1".to_string(), Some(a)),
            (EventKind::Offer, "b/1".to_string(), Some(b)),
        ]
    );
    drop((fa, fb, fc));
}

#[test]
fn acknowledged_subscribers_on_other_nodes_hold_up_no_producer() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    linked(&[&fa, &fb]);
    let mut watch = client(&pb, "watch");
    watch
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, true)
        .unwrap();
    let mut producer = client(&pa, "producer");
    // Neither operation waits for the subscriber, which has not even
    // read its events when they return. (The withdrawal comes once the
    // offer was announced: an object withdrawn before that is never
    // heard of elsewhere.)
    producer.offer("x", &pattern(1, 4096), step(1)).unwrap();
    let offer = next_event(&mut watch);
    producer.withdraw("x").unwrap();
    let withdraw = next_event(&mut watch);
    for (e, kind) in [(offer, EventKind::Offer), (withdraw, EventKind::Withdraw)] {
        assert_eq!((e.kind, e.name.as_str()), (kind, "x"));
        assert!(!e.needs_ack, "acknowledgements stay on their node");
        // Acknowledging anyway is harmless.
        watch.ack(e.event).unwrap();
    }
    assert_eq!(pb.stats().awaited_acks, 0);
    drop((fa, fb));
}

#[test]
fn a_peer_that_dies_withdraws_its_objects_from_the_subscribers() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    linked(&[&fa, &fb]);
    let a = fa.local_addr().to_string();
    let mut watch = client(&pb, "watch");
    watch
        .subscribe(
            "app.step == 1",
            EventKind::Offer | EventKind::Withdraw,
            false,
        )
        .unwrap();
    let mut producer = client(&pa, "producer");
    producer.offer("kept", &pattern(2, 10), step(1)).unwrap();
    producer.offer("other", &pattern(3, 10), step(2)).unwrap();
    let e = next_event(&mut watch);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Offer, "kept"));

    // The producer's node goes: its federation ends, and its links.
    fa.shutdown();
    let e = next_event(&mut watch);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Withdraw, "kept"));
    assert_eq!(e.node.as_deref(), Some(a.as_str()));
    assert_eq!(e.attrs.get("app.step"), Some(&Value::UInt(1)));
    eventually("the other node forgot the peer", || {
        fb.status().peers.is_empty() && fb.status().imported == 0
    });
    drop((pa, fb));
}

#[test]
fn a_federation_that_stops_withdraws_the_remote_objects_from_its_subscribers() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    linked(&[&fa, &fb]);
    let a = fa.local_addr().to_string();
    let mut watch = client(&pb, "watch");
    watch
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
        .unwrap();
    let mut producer = client(&pa, "producer");
    producer.offer("x", &pattern(4, 10), step(1)).unwrap();
    let e = next_event(&mut watch);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Offer, "x"));

    // This node leaves the federation; its manager stays.
    fb.shutdown();
    let e = next_event(&mut watch);
    assert_eq!((e.kind, e.name.as_str()), (EventKind::Withdraw, "x"));
    assert_eq!(e.node.as_deref(), Some(a.as_str()));
    drop((pa, fa));
}

#[test]
fn a_consumer_s_requires_demands_and_retractions_are_heard_on_the_producer_s_node() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    linked(&[&fa, &fb]);
    let b = fb.local_addr().to_string();
    let consumer_kinds = EventKind::Require | EventKind::Demand | EventKind::Retract;
    // On the producer's node, with a selector on the object's attributes.
    let mut watch_a = client(&pa, "watch-a");
    watch_a
        .subscribe("app.step == 1", consumer_kinds, false)
        .unwrap();
    // On the consumer's node: its own consumer's events, as on one node.
    let mut watch_b = client(&pb, "watch-b");
    watch_b.subscribe("*", consumer_kinds, false).unwrap();

    let mut producer = client(&pa, "producer");
    for (name, step_of) in [("x/1", 1), ("x/2", 2), ("x/3", 1), ("x/end", 1)] {
        producer
            .offer(name, &pattern(step_of, 64), step(step_of))
            .unwrap();
    }
    eventually("the offers reach B", || fb.status().imported == 4);
    let mut consumer = client(&pb, "consumer");
    consumer.require("x/1").unwrap();
    consumer.require("x/2").unwrap();
    let view = consumer.demand("x/1", PATIENT).unwrap();
    assert!(*view == pattern(1, 64)[..]);
    drop(view);
    consumer.flush().unwrap();
    consumer.require("x/3").unwrap();
    consumer.retract("x/3").unwrap();
    // Offered nowhere: B's alone.
    consumer.require("nowhere").unwrap();
    consumer.require("x/end").unwrap();

    let heard = remote_events_until(&mut watch_a, &b, |e| e.name == "x/end");
    let ev = |kind, name: &str| (kind, name.to_string());
    assert_eq!(
        heard,
        vec![
            ev(EventKind::Require, "x/1"),
            ev(EventKind::Demand, "x/1"),
            ev(EventKind::Require, "x/3"),
            ev(EventKind::Retract, "x/3"),
            ev(EventKind::Require, "x/end"),
        ]
    );
    // B's subscriber hears its consumer locally, every object once.
    let mut local = Vec::new();
    while local.len() < 7 {
        let e = next_event(&mut watch_b);
        assert_eq!(e.node, None, "{e:?}");
        local.push((e.kind, e.name));
    }
    assert_eq!(
        local,
        vec![
            ev(EventKind::Require, "x/1"),
            ev(EventKind::Require, "x/2"),
            ev(EventKind::Demand, "x/1"),
            ev(EventKind::Require, "x/3"),
            ev(EventKind::Retract, "x/3"),
            ev(EventKind::Require, "nowhere"),
            ev(EventKind::Require, "x/end"),
        ]
    );
    drop(pa);
    drop((fa, fb));
}

/// Declare, seal and dispose events of clients on one node reach the
/// subscribers of another that take them, from their node, with the
/// step's attributes and through the subscriber's selector. A node's
/// clients tell their manager of these steps only while some node's
/// subscribers take them (its interest page says so), and stop when the
/// last such subscriber goes.
#[test]
fn lifecycle_steps_reach_subscribers_on_other_nodes_while_they_take_them() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    linked(&[&fa, &fb]);
    let b = fb.local_addr().to_string();
    let producer = client(&pb, "producer");
    let told = |c: &Client, kind| c.interest_page().and_then(|p| p.get().wants(kind));
    for kind in [EventKind::Declare, EventKind::Seal, EventKind::Dispose] {
        assert_eq!(told(&producer, kind), None, "nobody takes {kind:?} yet");
    }
    let lifecycle = EventKind::Declare | EventKind::Seal | EventKind::Dispose;
    let mut watch_a = client(&pa, "watch-a");
    let sub = watch_a
        .subscribe("app.step == 1", lifecycle, false)
        .unwrap();
    eventually("B's clients learn that A's subscriber takes them", || {
        [EventKind::Declare, EventKind::Seal, EventKind::Dispose]
            .into_iter()
            .all(|kind| told(&producer, kind) == Some(false))
    });
    // A subscriber on B takes seals only: its own node's, unchanged.
    let mut watch_b = client(&pb, "watch-b");
    let sub_b = watch_b
        .subscribe("*", EventKind::Seal.into(), false)
        .unwrap();

    let mut producer = producer;
    for (name, step_of) in [("y/1", 1), ("y/2", 2), ("y/end", 1)] {
        for kind in [EventKind::Declare, EventKind::Seal, EventKind::Dispose] {
            let reply = producer
                .submit_lifecycle(kind, name, step(step_of))
                .unwrap();
            assert!(reply.is_none(), "nobody acknowledges: no reply");
        }
    }
    producer.flush().unwrap();

    let heard = remote_events_until(&mut watch_a, &b, |e| {
        e.kind == EventKind::Dispose && e.name == "y/end"
    });
    let ev = |kind, name: &str| (kind, name.to_string());
    assert_eq!(
        heard,
        vec![
            ev(EventKind::Declare, "y/1"),
            ev(EventKind::Seal, "y/1"),
            ev(EventKind::Dispose, "y/1"),
            ev(EventKind::Declare, "y/end"),
            ev(EventKind::Seal, "y/end"),
            ev(EventKind::Dispose, "y/end"),
        ]
    );
    let local: Vec<String> = (0..3).map(|_| next_event(&mut watch_b).name).collect();
    assert_eq!(local, ["y/1", "y/2", "y/end"], "B's own subscriber");

    // A's subscriber goes: only B's own interest in seals is left.
    watch_a.unsubscribe(sub).unwrap();
    eventually("B's clients learn that nobody elsewhere takes them", || {
        told(&producer, EventKind::Declare).is_none()
            && told(&producer, EventKind::Dispose).is_none()
            && told(&producer, EventKind::Seal) == Some(false)
    });
    // And B's: nothing is left on either node. The subscription that each
    // federation makes for the other's subscribers is no interest of its
    // own node's, so neither keeps the other's alive.
    watch_b.unsubscribe(sub_b).unwrap();
    eventually("nobody takes seals any more, on either node", || {
        told(&producer, EventKind::Seal).is_none() && told(&watch_a, EventKind::Seal).is_none()
    });
    drop((pa, pb));
    drop((fa, fb));
}
