//! The pool engine on its own: operations in, effects out, no sockets.
//!
//! Table tests of the main operations in each object state, and a property
//! test replaying random operation sequences from several clients against
//! a small reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cdo::engine::registry::{ClientId, NameRegistry};
use cdo::engine::{
    Effect, Engine, EngineConfig, FaultPolicy, Limits, ProducerExit, GROUP_WINDOW, TOMBSTONES_KEPT,
};
use cdo::ipc::interest::Interest;
use cdo::ipc::wire::{
    with_size, Attributes, ErrorCode, LifecycleRef, Msg, SegmentRef, SubscribeRef,
};
use cdo::{DuplicateOffers, EventKind, EventMask, Value};
use proptest::prelude::*;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of every object offered here.
const SIZE: u64 = 8;
/// Length of every segment offered here.
const SEGMENT_LEN: u64 = 4096;

/// An engine and the ids a test needs.
struct Pool {
    engine: Engine,
    now: Instant,
    next_request: u64,
    next_segment: u64,
}

/// A message as tests compare it: who gets it, for which request, what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Got {
    Ok,
    Data(String, u64),
    Error(String),
    Waiting(Vec<String>),
    Bye,
    Other(String),
}

fn got(msg: &Msg) -> Got {
    match msg {
        Msg::Ok => Got::Ok,
        Msg::Data(d) => Got::Data(d.name.clone(), d.object),
        Msg::Error { code, .. } => Got::Error(format!("{code:?}")),
        Msg::Waiting { names } => Got::Waiting(names.clone()),
        Msg::Bye => Got::Bye,
        other => Got::Other(format!("{other:?}")),
    }
}

fn error(code: ErrorCode) -> Got {
    Got::Error(format!("{code:?}"))
}

impl Pool {
    fn new(policy: FaultPolicy, duplicates: DuplicateOffers) -> Pool {
        let config = EngineConfig {
            policy,
            ack_timeout: ACK_TIMEOUT,
            ..EngineConfig::default()
        };
        Pool {
            engine: Engine::new(Box::new(NameRegistry::new(duplicates)), config),
            now: Instant::now(),
            next_request: 1,
            next_segment: 1,
        }
    }

    fn join(&mut self, component: &str) -> ClientId {
        let mut out = Vec::new();
        self.engine.join(component.into(), &mut out)
    }

    /// Sends `msg` from `client`; returns the request id and the effects.
    fn ask(&mut self, client: ClientId, msg: Msg) -> (u64, Vec<Effect>) {
        let id = self.next_request;
        self.next_request += 1;
        let mut out = Vec::new();
        self.engine
            .handle(client, id, msg, None, self.now, &mut out);
        (id, out)
    }

    /// Offers `name` from `client` in a new segment.
    fn offer(&mut self, client: ClientId, name: &str) -> (u64, Vec<Effect>) {
        self.offer_with(client, name, Attributes::new())
    }

    /// Offers `name` with `attrs` from `client` in a new segment.
    fn offer_with(
        &mut self,
        client: ClientId,
        name: &str,
        attrs: Attributes,
    ) -> (u64, Vec<Effect>) {
        let id = self.next_request;
        self.next_request += 1;
        let segment = self.next_segment;
        self.next_segment += 1;
        let msg = Msg::Offer {
            name: name.into(),
            attrs,
            size: SIZE,
            segment: SegmentRef { segment, offset: 0 },
        };
        let mut check = || Ok(SEGMENT_LEN);
        let mut out = Vec::new();
        self.engine
            .handle(client, id, msg, Some(&mut check), self.now, &mut out);
        (id, out)
    }

    fn demand(&mut self, client: ClientId, name: &str) -> (u64, Vec<Effect>) {
        self.ask(client, Msg::Demand { name: name.into() })
    }

    fn withdraw(&mut self, client: ClientId, name: &str) -> (u64, Vec<Effect>) {
        self.ask(client, Msg::Withdraw { name: name.into() })
    }

    /// Releases one view of `object` held by `client`.
    fn release(&mut self, client: ClientId, object: u64) -> (u64, Vec<Effect>) {
        self.ask(
            client,
            Msg::Release {
                objects: vec![object],
            },
        )
    }

    fn subscribe(&mut self, client: ClientId, sub: SubscribeRef) -> u64 {
        let (id, out) = self.ask(client, Msg::Subscribe(sub));
        match &to(&out, client, id)[..] {
            [Msg::Subscribed { subscription }] => *subscription,
            other => panic!("subscribe: {other:?}"),
        }
    }

    fn disconnect(&mut self, client: ClientId) -> Vec<Effect> {
        let mut out = Vec::new();
        self.engine.disconnect(client, &mut out);
        out
    }

    fn expire(&mut self, after: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        self.engine.expire(self.now + after, &mut out);
        out
    }
}

/// The messages `effects` send to `client` for request `id`.
fn to(effects: &[Effect], client: ClientId, id: u64) -> Vec<Msg> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, id: i, msg, .. } if *to == client && *i == id => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// What `effects` answer to request `id` of `client`, compared loosely.
fn answers(effects: &[Effect], client: ClientId, id: u64) -> Vec<Got> {
    to(effects, client, id).iter().map(got).collect()
}

/// The unsolicited messages (id 0) `effects` send to `client`.
fn unsolicited(effects: &[Effect], client: ClientId) -> Vec<Msg> {
    to(effects, client, 0)
}

fn object_of(effects: &[Effect], client: ClientId, id: u64) -> u64 {
    match &to(effects, client, id)[..] {
        [Msg::Data(d)] => d.object,
        other => panic!("no data: {other:?}"),
    }
}

fn acked_events(kinds: &[EventKind]) -> SubscribeRef {
    SubscribeRef {
        selector: String::new(),
        kinds: kinds.iter().fold(EventMask::NONE, |m, &k| m | k).bits(),
        ack: true,
        group: None,
    }
}

#[test]
fn a_demand_gets_the_offer_and_the_segment_once() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let (id, out) = p.offer(prod, "a");
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    assert!(out.iter().any(|e| matches!(e, Effect::Keep { .. })));
    let (id, out) = p.demand(cons, "a");
    let sent = out.iter().find_map(|e| match e {
        Effect::Send { segment, .. } => Some(*segment),
        _ => None,
    });
    assert!(
        matches!(sent, Some(Some(_))),
        "first view carries the segment"
    );
    assert!(matches!(&answers(&out, cons, id)[..], [Got::Data(n, _)] if n == "a"));
    let (id2, out) = p.demand(cons, "a");
    assert!(matches!(
        &out[..],
        [Effect::Send { id, segment: None, .. }] if *id == id2
    ));
    let stats = p.engine.stats();
    assert_eq!(
        (stats.objects, stats.views_total, stats.offered_bytes),
        (1, 2, SIZE)
    );
}

#[test]
fn duplicates_are_refused_or_versioned() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (a, b) = (p.join("a"), p.join("b"));
    p.offer(a, "x");
    let (id, out) = p.offer(b, "x");
    assert_eq!(answers(&out, b, id), [error(ErrorCode::DuplicateName)]);
    assert_eq!(p.engine.stats().objects, 1);

    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Version);
    let (a, b, c) = (p.join("a"), p.join("b"), p.join("c"));
    p.offer(a, "x");
    let (id, out) = p.offer(b, "x");
    assert_eq!(answers(&out, b, id), [Got::Ok]);
    let (id, out) = p.demand(c, "x");
    let newer = object_of(&out, c, id);
    let (id, out) = p.withdraw(b, "x");
    assert!(answers(&out, b, id).is_empty(), "waits for the view of c");
    let (rel, out) = p.release(c, newer);
    assert!(answers(&out, c, rel).is_empty());
    assert_eq!(answers(&out, b, id), [Got::Ok]);
    let (id, out) = p.demand(c, "x");
    assert!(object_of(&out, c, id) < newer, "the older version is back");
}

#[test]
fn a_waiting_demand_is_served_by_the_offer_or_ended_by_retract() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let (waiting, out) = p.demand(cons, "a");
    assert!(out.is_empty());
    assert_eq!(p.engine.stats().waiting_demands, 1);
    let (id, out) = p.offer(prod, "a");
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    assert!(matches!(&answers(&out, cons, waiting)[..], [Got::Data(..)]));
    let (waiting, _) = p.demand(cons, "b");
    let (id, out) = p.ask(cons, Msg::Retract { name: "b".into() });
    assert_eq!(answers(&out, cons, waiting), [error(ErrorCode::Retracted)]);
    assert_eq!(answers(&out, cons, id), [Got::Ok]);
    assert_eq!(p.engine.stats().waiting_demands, 0);
}

#[test]
fn withdraw_of_unknown_foreign_viewed_and_unviewed_objects() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let (id, out) = p.withdraw(prod, "nothing");
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::UnknownName)]);
    p.offer(prod, "a");
    let (id, out) = p.withdraw(cons, "a");
    assert_eq!(answers(&out, cons, id), [error(ErrorCode::NotOwner)]);
    p.offer(prod, "b");
    let (id, out) = p.withdraw(prod, "b");
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    let (d, out) = p.demand(cons, "a");
    let object = object_of(&out, cons, d);
    let (w, out) = p.withdraw(prod, "a");
    assert!(answers(&out, prod, w).is_empty(), "a view is held");
    // The consumer going releases its views: the withdrawal completes.
    let out = p.disconnect(cons);
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
    assert!(object > 0);
    assert_eq!(p.engine.stats().objects, 0);
}

/// A client with several versions of a name on offer withdraws each by
/// the request that offered it; one named by another client's request,
/// or by a request that offered nothing, is refused; a withdrawal that
/// waits for a require takes the object it named when it goes.
#[test]
fn a_withdrawal_names_one_of_a_client_s_versions_by_its_offer() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Version);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let (older, _) = p.offer(prod, "v");
    let (newer, _) = p.offer(prod, "v");
    let withdraw = |p: &mut Pool, client, offer| {
        let name = "v".into();
        let (id, out) = p.ask(client, Msg::WithdrawOffer { name, offer });
        answers(&out, client, id)
    };
    assert_eq!(withdraw(&mut p, cons, older), [error(ErrorCode::NotOwner)]);
    assert_eq!(withdraw(&mut p, prod, 999), [error(ErrorCode::NotOwner)]);

    // The consumer's require is matched with the newer version, which
    // holds only that version's withdrawal.
    p.ask(cons, Msg::Require { name: "v".into() });
    let newer_object = p.engine.offered("v").unwrap().object;
    let (held, out) = p.ask(
        prod,
        Msg::WithdrawOffer {
            name: "v".into(),
            offer: newer,
        },
    );
    assert!(answers(&out, prod, held).is_empty(), "required");
    assert_eq!(withdraw(&mut p, prod, older), [Got::Ok]);
    assert_eq!(p.engine.offered("v").unwrap().object, newer_object);
    let (d, out) = p.demand(cons, "v");
    assert_eq!(object_of(&out, cons, d), newer_object);
    assert_eq!(answers(&out, prod, held), []);
    let out = p.release(cons, newer_object).1;
    assert_eq!(answers(&out, prod, held), [Got::Ok]);
    assert!(p.engine.offered("v").is_none());
}

#[test]
fn a_forgotten_segment_closes_with_its_last_object() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer(prod, "a");
    let (d, out) = p.demand(cons, "a");
    let object = object_of(&out, cons, d);
    let (id, out) = p.ask(prod, Msg::Forget { segment: 1 });
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    assert_eq!(p.engine.stats().segments, 1, "its object keeps it");
    let (_, out) = p.withdraw(prod, "a");
    assert!(!out.iter().any(|e| matches!(e, Effect::Close { .. })));
    let (_, out) = p.release(cons, object);
    assert!(out.iter().any(|e| matches!(e, Effect::Close { .. })));
    assert!(unsolicited(&out, cons)
        .iter()
        .any(|m| matches!(m, Msg::SegmentGone { .. })));
    assert_eq!(p.engine.stats().segments, 0);
}

#[test]
fn a_bad_segment_is_refused_and_not_kept() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let prod = p.join("prod");
    let msg = Msg::Offer {
        name: "a".into(),
        attrs: Attributes::new(),
        size: SIZE,
        segment: SegmentRef {
            segment: 1,
            offset: 0,
        },
    };
    let mut check = || Err("not sealed".to_string());
    let mut out = Vec::new();
    p.engine
        .handle(prod, 7, msg, Some(&mut check), p.now, &mut out);
    assert_eq!(answers(&out, prod, 7), [error(ErrorCode::BadSegment)]);
    assert!(!out.iter().any(|e| matches!(e, Effect::Keep { .. })));
    let mut check = || Ok(SEGMENT_LEN);
    let mut out = Vec::new();
    let msg = Msg::Demand { name: "a".into() };
    p.engine
        .handle(prod, 8, msg, Some(&mut check), p.now, &mut out);
    assert_eq!(answers(&out, prod, 8), [error(ErrorCode::Protocol)]);
}

#[test]
fn a_require_holds_a_leave_until_served_or_retracted() {
    for retract in [false, true] {
        let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
        let (prod, cons) = (p.join("prod"), p.join("cons"));
        p.ask(cons, Msg::Require { name: "a".into() });
        p.offer(prod, "a");
        let (leave, out) = p.ask(prod, Msg::Leave);
        assert_eq!(answers(&out, prod, leave), [Got::Waiting(vec!["a".into()])]);
        assert_eq!(p.engine.stats().pending_leaves, 1);
        let (_, out) = if retract {
            p.ask(cons, Msg::Retract { name: "a".into() })
        } else {
            p.demand(cons, "a")
        };
        assert_eq!(answers(&out, prod, leave), [Got::Bye]);
        assert!(!p.engine.has_client(prod));
        let (id, out) = p.demand(cons, "a");
        assert!(answers(&out, cons, id).is_empty(), "left, not died: waits");
    }
}

#[test]
fn a_withdrawal_that_lets_its_producer_leave_is_answered_before_bye() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.ask(cons, Msg::Require { name: "a".into() });
    p.offer(prod, "a");
    let (leave, _) = p.ask(prod, Msg::Leave);
    let (w, out) = p.withdraw(prod, "a");
    assert!(answers(&out, prod, w).is_empty(), "waits for the require");
    assert!(answers(&out, prod, leave).is_empty());
    let (_, out) = p.ask(cons, Msg::Retract { name: "a".into() });
    let order: Vec<u64> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, id, .. } if *to == prod => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(order, [w, leave]);
    assert_eq!(answers(&out, prod, leave), [Got::Bye]);
}

#[test]
fn a_dead_producer_fails_demands_or_they_wait() {
    for policy in [FaultPolicy::FailFast, FaultPolicy::BestEffort] {
        let mut p = Pool::new(policy, DuplicateOffers::Reject);
        let (prod, cons) = (p.join("prod"), p.join("cons"));
        p.offer(prod, "a");
        p.disconnect(prod);
        let (id, out) = p.demand(cons, "a");
        let expected = match policy {
            FaultPolicy::FailFast => vec![error(ErrorCode::ProducerDied)],
            FaultPolicy::BestEffort => vec![],
        };
        assert_eq!(answers(&out, cons, id), expected);
        // A client that is gone is told so (its host has no connection to
        // send it on), and nothing else changes.
        let (id, out) = p.ask(prod, Msg::Stat);
        assert_eq!(answers(&out, prod, id), [error(ErrorCode::NotJoined)]);
        assert_eq!(out.len(), 1);
    }
}

#[test]
fn a_pending_withdrawal_holds_its_producer_s_leave_until_answered() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer(prod, "a");
    p.offer(prod, "b");
    p.ask(cons, Msg::Require { name: "b".into() });
    let (d, out) = p.demand(cons, "a");
    let object = object_of(&out, cons, d);
    let (leave, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, leave), [Got::Waiting(vec!["b".into()])]);
    let (w, out) = p.withdraw(prod, "a");
    assert!(answers(&out, prod, w).is_empty(), "waits for the view");
    // The require no longer holds the leave; the withdrawal still does.
    let (_, out) = p.demand(cons, "b");
    assert!(
        answers(&out, prod, leave).is_empty(),
        "no BYE before the withdrawal's reply"
    );
    assert!(p.engine.has_client(prod));
    assert_eq!(p.engine.stats().pending_leaves, 1);
    // A second LEAVE says what holds it.
    let (again, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, again), [Got::Waiting(vec!["a".into()])]);
    let (_, out) = p.release(cons, object);
    let order: Vec<(u64, Got)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, id, msg, .. } if *to == prod => Some((*id, got(msg))),
            _ => None,
        })
        .collect();
    assert_eq!(order, [(w, Got::Ok), (again, Got::Bye)]);
    assert!(!p.engine.has_client(prod));
    assert_eq!(p.engine.stats().pending_leaves, 0);
}

#[test]
fn a_withdrawal_of_a_leaving_producer_is_answered_when_a_view_is_taken_back() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons, watcher) = (p.join("prod"), p.join("cons"), p.join("watch"));
    p.subscribe(watcher, acked_events(&[EventKind::Demand]));
    p.offer(prod, "a");
    // The demand's view waits for the watcher's acknowledgement.
    let (d, out) = p.demand(cons, "a");
    assert!(answers(&out, cons, d).is_empty());
    let (w, _) = p.withdraw(prod, "a");
    let (leave, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, leave), [Got::Waiting(vec!["a".into()])]);
    // Not acknowledged in time: the view is taken back, which answers the
    // withdrawal and lets the leave finish.
    let out = p.expire(ACK_TIMEOUT * 2);
    assert_eq!(answers(&out, cons, d), [error(ErrorCode::AckTimeout)]);
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
    assert_eq!(answers(&out, prod, leave), [Got::Bye]);
}

#[test]
fn requests_after_bye_get_not_joined() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer(prod, "a");
    let (leave, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, leave), [Got::Bye]);
    let before = p.engine.stats();
    for msg in [
        Msg::Stat,
        Msg::Demand { name: "a".into() },
        Msg::Withdraw { name: "a".into() },
        Msg::Leave,
    ] {
        let (id, out) = p.ask(prod, msg);
        assert_eq!(answers(&out, prod, id), [error(ErrorCode::NotJoined)]);
        assert_eq!(out.len(), 1, "only the error: {out:?}");
    }
    // An offer with a descriptor: not kept, and told why.
    let (id, out) = p.offer(prod, "b");
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::NotJoined)]);
    assert!(!out.iter().any(|e| matches!(e, Effect::Keep { .. })));
    assert_eq!(p.engine.stats(), before);
    // A client id never given out is answered the same way.
    let (id, out) = p.ask(cons + 100, Msg::Stat);
    assert_eq!(answers(&out, cons + 100, id), [error(ErrorCode::NotJoined)]);
}

#[test]
fn names_of_dead_producers_are_bounded_but_a_required_one_fails_fast() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (old, cons) = (p.join("old"), p.join("cons"));
    let name = |i: usize| format!("n{i}");
    // The two oldest, the first one required by the consumer.
    p.ask(cons, Msg::Require { name: name(0) });
    p.offer(old, &name(0));
    p.offer(old, &name(1));
    p.disconnect(old);
    // One name more than the bound.
    let prod = p.join("prod");
    let count = TOMBSTONES_KEPT + 1;
    p.offer(prod, &name(2));
    let segment = p.next_segment - 1;
    for i in 3..count {
        let (id, out) = p.ask(
            prod,
            Msg::Offer {
                name: name(i),
                attrs: Attributes::new(),
                size: SIZE,
                segment: SegmentRef { segment, offset: 0 },
            },
        );
        assert_eq!(answers(&out, prod, id), [Got::Ok]);
    }
    p.disconnect(prod);
    // Required when its producer died: fails fast however old.
    let (id, out) = p.demand(cons, &name(0));
    assert_eq!(answers(&out, cons, id), [error(ErrorCode::ProducerDied)]);
    // The oldest unrequired name beyond the bound is forgotten: a demand
    // of it waits, as for a name never offered.
    let (id, out) = p.demand(cons, &name(1));
    assert!(answers(&out, cons, id).is_empty(), "{out:?}");
    assert_eq!(p.engine.stats().waiting_demands, 1);
    // The newer ones still fail fast.
    for i in [2, 3, count - 1] {
        let (id, out) = p.demand(cons, &name(i));
        assert_eq!(answers(&out, cons, id), [error(ErrorCode::ProducerDied)]);
    }
    // Offered again, a name is no longer a dead producer's.
    let prod = p.join("prod2");
    p.offer(prod, &name(2));
    p.ask(prod, Msg::Withdraw { name: name(2) });
    let (id, out) = p.demand(cons, &name(2));
    assert!(answers(&out, cons, id).is_empty(), "waits: {out:?}");
}

#[test]
fn a_refused_offer_does_not_keep_the_segment_it_brought() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (first, prod) = (p.join("first"), p.join("prod"));
    p.offer(first, "a");
    assert_eq!(p.engine.stats().segments, 1);
    let offer = |name: &str| Msg::Offer {
        name: name.into(),
        attrs: Attributes::new(),
        size: SIZE,
        segment: SegmentRef {
            segment: 7,
            offset: 0,
        },
    };
    let mut check = || Ok(SEGMENT_LEN);
    let mut out = Vec::new();
    p.engine
        .handle(prod, 100, offer("a"), Some(&mut check), p.now, &mut out);
    assert_eq!(answers(&out, prod, 100), [error(ErrorCode::DuplicateName)]);
    let kept = out.iter().find_map(|e| match e {
        Effect::Keep { segment } => Some(*segment),
        _ => None,
    });
    let closed = out.iter().find_map(|e| match e {
        Effect::Close { segment } => Some(*segment),
        _ => None,
    });
    assert!(kept.is_some());
    assert_eq!(closed, kept, "the descriptor kept is closed again");
    assert_eq!(p.engine.stats().segments, 1, "only the first producer's");
    // As the producer believes: the segment is not held, so an offer that
    // names it without its descriptor is refused...
    let (id, out) = p.ask(prod, offer("b"));
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::BadSegment)]);
    // ... and one that sends it again is taken.
    let mut out = Vec::new();
    p.engine
        .handle(prod, 101, offer("b"), Some(&mut check), p.now, &mut out);
    assert_eq!(answers(&out, prod, 101), [Got::Ok]);
    assert_eq!(p.engine.stats().segments, 2);
    // A refused offer in a segment already held leaves it alone.
    let (id, out) = p.ask(prod, offer("a"));
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::DuplicateName)]);
    assert!(!out.iter().any(|e| matches!(e, Effect::Close { .. })));
    let (id, out) = p.ask(prod, offer("c"));
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    assert_eq!(p.engine.stats().segments, 2);
}

#[test]
fn acknowledged_events_hold_the_operation_until_acked() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, watcher) = (p.join("prod"), p.join("watcher"));
    p.subscribe(watcher, acked_events(&[EventKind::Offer]));
    let (id, out) = p.offer(prod, "a");
    assert!(answers(&out, prod, id).is_empty(), "held");
    let event = match &unsolicited(&out, watcher)[..] {
        [Msg::Event(e)] if e.needs_ack => e.event,
        other => panic!("{other:?}"),
    };
    assert!(p.engine.holds_any());
    assert_eq!(p.engine.next_deadline(), Some(p.now + ACK_TIMEOUT));
    let (_, out) = p.ask(watcher, Msg::Ack { event });
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    assert!(!p.engine.holds_any());
}

/// The interests `effects` publish, in order.
fn published(effects: &[Effect]) -> Vec<Interest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Interest(i) => Some(*i),
            _ => None,
        })
        .collect()
}

fn lifecycle(kind: EventKind, name: &str, wait: bool) -> Msg {
    Msg::Lifecycle(LifecycleRef {
        kind,
        name: name.into(),
        attrs: Attributes::new(),
        wait,
    })
}

#[test]
fn the_interest_in_lifecycle_events_follows_the_subscriptions() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (a, b) = (p.join("a"), p.join("b"));
    let plain = |kinds: EventMask| SubscribeRef {
        selector: String::new(),
        kinds: kinds.bits(),
        ack: false,
        group: None,
    };
    // Offers are not lifecycle steps: nothing to publish.
    let (_, out) = p.ask(a, Msg::Subscribe(plain(EventKind::Offer.into())));
    assert!(published(&out).is_empty());
    let (_, out) = p.ask(
        a,
        Msg::Subscribe(plain(EventKind::Declare | EventKind::Offer)),
    );
    assert_eq!(
        published(&out),
        [Interest::of(EventKind::Declare.into(), false)]
    );
    let (_, out) = p.ask(b, Msg::Subscribe(acked_events(&[EventKind::Seal])));
    let both = Interest::of(EventKind::Declare.into(), false)
        .union(Interest::of(EventKind::Seal.into(), true));
    assert_eq!(published(&out), [both]);
    let (_, out) = p.ask(a, Msg::Subscribe(plain(EventKind::Declare.into())));
    assert!(published(&out).is_empty(), "unchanged");
    // A consumer group takes no events.
    let group = SubscribeRef {
        group: Some("g".into()),
        ..plain(EventMask::ALL)
    };
    let (_, out) = p.ask(b, Msg::Subscribe(group));
    assert!(published(&out).is_empty());
    // The acknowledged subscriber goes: only the declares stay wanted.
    let out = p.disconnect(b);
    assert_eq!(
        published(&out),
        [Interest::of(EventKind::Declare.into(), false)]
    );
}

#[test]
fn a_lifecycle_step_raises_its_event_and_waits_only_when_asked() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, watcher) = (p.join("prod"), p.join("watcher"));
    p.subscribe(
        watcher,
        acked_events(&[EventKind::Seal, EventKind::Dispose]),
    );
    // Waited for: held until acknowledged.
    let (id, out) = p.ask(prod, lifecycle(EventKind::Seal, "a", true));
    assert!(answers(&out, prod, id).is_empty(), "held");
    let event = match &unsolicited(&out, watcher)[..] {
        [Msg::Event(e)] if e.needs_ack && e.kind == EventKind::Seal && e.name == "a" => e.event,
        other => panic!("{other:?}"),
    };
    let (_, out) = p.ask(watcher, Msg::Ack { event });
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    // Not waited for: the event awaits nothing, and no reply comes.
    let (id, out) = p.ask(prod, lifecycle(EventKind::Dispose, "a", false));
    assert!(answers(&out, prod, id).is_empty());
    match &unsolicited(&out, watcher)[..] {
        [Msg::Event(e)] if !e.needs_ack && e.kind == EventKind::Dispose => {}
        other => panic!("{other:?}"),
    }
    assert!(!p.engine.holds_any());
    // Other kinds and bad names are refused, silently when not waited for.
    let (id, out) = p.ask(prod, lifecycle(EventKind::Offer, "a", true));
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::Protocol)]);
    let (id, out) = p.ask(prod, lifecycle(EventKind::Seal, "", true));
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::InvalidName)]);
    let (id, out) = p.ask(prod, lifecycle(EventKind::Offer, "a", false));
    assert!(to(&out, prod, id).is_empty() && unsolicited(&out, watcher).is_empty());
    let (_, out) = p.ask(prod, lifecycle(EventKind::Seal, "", false));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn unacknowledged_events_time_out_by_policy() {
    for policy in [FaultPolicy::FailFast, FaultPolicy::BestEffort] {
        let mut p = Pool::new(policy, DuplicateOffers::Reject);
        let (prod, cons, watcher) = (p.join("prod"), p.join("cons"), p.join("w"));
        p.offer(prod, "a");
        p.subscribe(watcher, acked_events(&[EventKind::Demand]));
        let (id, out) = p.demand(cons, "a");
        assert!(answers(&out, cons, id).is_empty(), "held");
        assert!(p.expire(ACK_TIMEOUT / 2).is_empty(), "not yet due");
        let out = p.expire(ACK_TIMEOUT);
        let stats = p.engine.stats();
        match policy {
            FaultPolicy::FailFast => {
                assert_eq!(answers(&out, cons, id), [error(ErrorCode::AckTimeout)]);
                // The view was taken back: the withdrawal need not wait.
                let (w, out) = p.withdraw(prod, "a");
                assert_eq!(answers(&out, prod, w), [Got::Ok]);
            }
            FaultPolicy::BestEffort => {
                assert!(matches!(&answers(&out, cons, id)[..], [Got::Data(..)]));
                let (w, out) = p.withdraw(prod, "a");
                assert!(answers(&out, prod, w).is_empty(), "the view is held");
            }
        }
        assert_eq!(stats.awaited_acks, 0);
        assert!(!p.engine.holds_any());
    }
}

#[test]
fn a_consumer_group_gives_a_window_per_member_and_queues_the_rest() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, member) = (p.join("prod"), p.join("member"));
    let group = SubscribeRef {
        selector: String::new(),
        kinds: 0,
        ack: false,
        group: Some("g".into()),
    };
    p.subscribe(member, group.clone());
    let n = GROUP_WINDOW as usize + 2;
    let mut records = Vec::new();
    for i in 0..n {
        let (_, out) = p.offer(prod, &format!("r{i}"));
        for m in unsolicited(&out, member) {
            if let Msg::Record { event, .. } = m {
                records.push(event);
            }
        }
    }
    assert_eq!(records.len(), GROUP_WINDOW as usize);
    assert_eq!(p.engine.stats().queued_records, 2);
    let (_, out) = p.ask(member, Msg::Ack { event: records[0] });
    assert_eq!(unsolicited(&out, member).len(), 1, "the next queued record");
    // A second member takes the last queued one; the first dying gives its
    // undone records to the second.
    let other = p.join("other");
    let (_, out) = p.ask(other, Msg::Subscribe(group));
    assert_eq!(unsolicited(&out, other).len(), 1);
    let out = p.disconnect(member);
    let given: Vec<_> = unsolicited(&out, other);
    assert_eq!(given.len(), GROUP_WINDOW as usize - 1);
    // The member's window went back to the group; the other had room for
    // all but one.
    assert_eq!(p.engine.stats().queued_records, 1);
}

#[test]
fn a_group_whose_last_member_goes_releases_or_keeps_its_records() {
    for keep in [false, true] {
        let config = EngineConfig {
            keep_group_records: keep,
            ack_timeout: ACK_TIMEOUT,
            ..EngineConfig::default()
        };
        let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
        p.engine = Engine::new(Box::new(NameRegistry::new(DuplicateOffers::Reject)), config);
        let (prod, member) = (p.join("prod"), p.join("member"));
        let group = SubscribeRef {
            selector: String::new(),
            kinds: 0,
            ack: false,
            group: Some("g".into()),
        };
        let sub = p.subscribe(member, group.clone());
        let (_, out) = p.offer(prod, "r");
        assert_eq!(unsolicited(&out, member).len(), 1);
        // The member drops its view but never finishes the record.
        let (_, out) = p.ask(member, Msg::Unsubscribe { subscription: sub });
        assert!(out
            .iter()
            .any(|e| matches!(e, Effect::Send { msg: Msg::Ok, .. })));
        let (w, out) = p.withdraw(prod, "r");
        assert!(
            answers(&out, prod, w).is_empty(),
            "the member still holds its view"
        );
        let out = p.disconnect(member);
        let expected = match keep {
            false => vec![Got::Ok],
            true => vec![],
        };
        assert_eq!(answers(&out, prod, w), expected, "keep = {keep}");
        assert_eq!(p.engine.stats().queued_records, u64::from(keep));
        // A member joining later gets a kept record.
        let late = p.join("late");
        let (_, out) = p.ask(late, Msg::Subscribe(group));
        let records = unsolicited(&out, late)
            .iter()
            .filter(|m| matches!(m, Msg::Record { .. }))
            .count();
        assert_eq!(records, usize::from(keep));
    }
}

#[test]
fn a_withdrawal_waits_for_the_requires_made_before_it() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, a, b, late) = (p.join("prod"), p.join("a"), p.join("b"), p.join("late"));
    p.offer(prod, "x");
    p.ask(a, Msg::Require { name: "x".into() });
    p.ask(b, Msg::Require { name: "x".into() });
    // The producer's own require holds nothing.
    p.ask(prod, Msg::Require { name: "x".into() });
    let (w, out) = p.withdraw(prod, "x");
    assert!(answers(&out, prod, w).is_empty(), "two requires hold it");
    // Still on offer while it waits: a demand without a require is served.
    let (d, out) = p.demand(late, "x");
    let late_object = object_of(&out, late, d);
    // A demand serves a require; the view it gives then holds the reply.
    let (d, out) = p.demand(a, "x");
    let object = object_of(&out, a, d);
    assert_eq!(object, late_object);
    assert!(answers(&out, prod, w).is_empty(), "b still requires it");
    let (_, out) = p.ask(b, Msg::Retract { name: "x".into() });
    assert!(answers(&out, prod, w).is_empty(), "withdrawn, views out");
    assert_eq!(p.engine.stats().objects, 0);
    let (_, out) = p.release(a, object);
    assert!(answers(&out, prod, w).is_empty(), "late's view is out");
    let (_, out) = p.release(late, object);
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
    // A require made after the withdrawal waits for the next offer.
    let (d, out) = p.demand(b, "x");
    assert!(answers(&out, b, d).is_empty());
}

/// A client that asked for it ([`Engine::hold_own_requires`]) has its
/// own requires hold its withdrawals, of the objects they were matched
/// with only, and not its leave.
#[test]
fn own_requires_hold_the_withdrawal_of_their_object_when_asked() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Version);
    let (app, other) = (p.join("app"), p.join("other"));
    p.engine.hold_own_requires(app);
    p.offer(app, "x");
    p.offer(other, "x");
    p.ask(app, Msg::Require { name: "x".into() });
    // Matched with the newest, the other client's: the app's own offer
    // goes at once, the other's waits for the app's require.
    let (w, out) = p.withdraw(app, "x");
    assert_eq!(answers(&out, app, w), [Got::Ok]);
    let (w, out) = p.withdraw(other, "x");
    assert!(answers(&out, other, w).is_empty(), "the app requires it");
    p.ask(app, Msg::Retract { name: "x".into() });
    // Its own offer, required by itself: the withdrawal waits for the
    // demand, then for the view it gave.
    p.offer(app, "y");
    p.ask(app, Msg::Require { name: "y".into() });
    let (w, out) = p.withdraw(app, "y");
    assert!(answers(&out, app, w).is_empty(), "its own require holds it");
    let (d, out) = p.demand(app, "y");
    let object = object_of(&out, app, d);
    assert!(answers(&out, app, w).is_empty(), "its view holds it");
    let (_, out) = p.release(app, object);
    assert_eq!(answers(&out, app, w), [Got::Ok]);
    // A leave ends the client's requires: they hold nothing then.
    p.offer(app, "z");
    p.ask(app, Msg::Require { name: "z".into() });
    let (l, out) = p.ask(app, Msg::Leave);
    assert_eq!(answers(&out, app, l), [Got::Bye]);
}

/// Under versions, a require is matched with one object: the newest on
/// offer when it is made; when that object goes (its producer died), with
/// the newest left.
#[test]
fn a_require_is_matched_with_one_object_and_rematched_when_it_goes() {
    let mut p = Pool::new(FaultPolicy::BestEffort, DuplicateOffers::Version);
    let (old, new, consumer) = (p.join("old"), p.join("new"), p.join("consumer"));
    p.offer(old, "v");
    p.ask(consumer, Msg::Require { name: "v".into() });
    p.offer(new, "v");
    let (w, out) = p.withdraw(new, "v");
    assert_eq!(
        answers(&out, new, w),
        [Got::Ok],
        "the newer is not required"
    );
    p.offer(new, "v");
    let (w, out) = p.withdraw(old, "v");
    assert!(answers(&out, old, w).is_empty(), "the older is required");
    // Its producer dies: the require is matched with the newest left,
    // whose withdrawal it now holds and whose data its demand gets.
    p.disconnect(old);
    let (w, out) = p.withdraw(new, "v");
    assert!(answers(&out, new, w).is_empty(), "rematched with the newer");
    let (d, out) = p.demand(consumer, "v");
    let object = object_of(&out, consumer, d);
    let (_, out) = p.release(consumer, object);
    assert_eq!(answers(&out, new, w), [Got::Ok]);
}

/// The federation's client (the mirror) requires on behalf of other
/// nodes' consumers and demands to export what it was told of: its demand
/// gets the newest object, while its require still holds the object it
/// was matched with.
#[test]
fn the_mirror_exports_the_newest_version_whatever_its_require_matched() {
    let mut p = Pool::new(FaultPolicy::BestEffort, DuplicateOffers::Version);
    let (old, new, other) = (p.join("old"), p.join("new"), p.join("other"));
    let mirror = p.join("federation");
    p.engine.set_mirror(mirror);
    p.offer(old, "v");
    p.ask(mirror, Msg::Require { name: "v".into() });
    p.offer(new, "v");
    let (d, out) = p.demand(other, "v");
    let newest = object_of(&out, other, d);
    let (d, out) = p.demand(mirror, "v");
    assert_eq!(object_of(&out, mirror, d), newest);
    let (w, out) = p.withdraw(old, "v");
    assert!(
        answers(&out, old, w).is_empty(),
        "the mirror's require holds v0"
    );
}

/// Under versions a client may offer a name more than once; when it goes,
/// every one of its offers goes (one used to stay, its owner gone).
#[test]
fn a_client_that_goes_takes_every_version_it_offered() {
    let mut p = Pool::new(FaultPolicy::BestEffort, DuplicateOffers::Version);
    let (prod, other) = (p.join("prod"), p.join("other"));
    p.offer(prod, "v");
    p.offer(prod, "v");
    p.offer(other, "v");
    assert_eq!(p.engine.stats().objects, 3);
    p.disconnect(prod);
    assert_eq!(p.engine.stats().objects, 1);
}

#[test]
fn waiting_withdrawals_count_against_the_waiters_quota() {
    let config = EngineConfig {
        limits: Limits {
            waiters: 1,
            ..Limits::default()
        },
        ..EngineConfig::default()
    };
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    p.engine = Engine::new(Box::new(NameRegistry::new(DuplicateOffers::Reject)), config);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer(prod, "x");
    p.offer(prod, "y");
    p.ask(cons, Msg::Require { name: "x".into() });
    p.ask(cons, Msg::Require { name: "y".into() });
    let (w, out) = p.withdraw(prod, "x");
    assert!(answers(&out, prod, w).is_empty());
    let (again, out) = p.withdraw(prod, "y");
    assert_eq!(
        answers(&out, prod, again),
        [error(ErrorCode::QuotaExceeded)]
    );
    let (_, out) = p.ask(cons, Msg::Retract { name: "x".into() });
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
    // The quota is free again.
    let (again, out) = p.withdraw(prod, "y");
    assert!(
        answers(&out, prod, again).is_empty(),
        "waits for the require"
    );
}

#[test]
fn a_withdrawal_carried_out_later_waits_for_its_acknowledgements() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons, watcher) = (p.join("prod"), p.join("cons"), p.join("watcher"));
    p.subscribe(watcher, acked_events(&[EventKind::Withdraw]));
    p.offer(prod, "x");
    p.ask(cons, Msg::Require { name: "x".into() });
    let (w, out) = p.withdraw(prod, "x");
    assert!(answers(&out, prod, w).is_empty());
    assert!(unsolicited(&out, watcher).is_empty(), "not withdrawn yet");
    let (r, out) = p.ask(cons, Msg::Retract { name: "x".into() });
    assert_eq!(answers(&out, cons, r), [Got::Ok], "the retract is not held");
    assert!(answers(&out, prod, w).is_empty(), "held for the watcher");
    let event = match &unsolicited(&out, watcher)[..] {
        [Msg::Event(e)] if e.needs_ack && e.kind == EventKind::Withdraw => e.event,
        other => panic!("{other:?}"),
    };
    let (_, out) = p.ask(watcher, Msg::Ack { event });
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
}

#[test]
fn a_withdrawal_of_a_required_object_ends_with_its_producer() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer(prod, "x");
    p.ask(cons, Msg::Require { name: "x".into() });
    let (w, out) = p.withdraw(prod, "x");
    assert!(answers(&out, prod, w).is_empty());
    let out = p.disconnect(prod);
    assert!(answers(&out, prod, w).is_empty(), "nobody to answer");
    let s = p.engine.stats();
    assert_eq!((s.objects, s.clients), (0, 1));
    let (d, out) = p.demand(cons, "x");
    assert_eq!(answers(&out, cons, d), [error(ErrorCode::ProducerDied)]);
}

#[test]
fn a_minimum_lifetime_holds_the_withdrawal_until_it_ends() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let lifetime = Duration::from_secs(5);
    let attrs = Attributes::from([("lifetime_ms".to_string(), Value::UInt(5000))]);
    let (id, out) = p.offer_with(prod, "x", attrs);
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    p.offer(prod, "plain");
    assert_eq!(p.engine.next_deadline(), None, "nothing waits yet");
    let (w, out) = p.withdraw(prod, "x");
    assert!(answers(&out, prod, w).is_empty(), "within its lifetime");
    let (plain, out) = p.withdraw(prod, "plain");
    assert_eq!(answers(&out, prod, plain), [Got::Ok], "no lifetime");
    assert_eq!(p.engine.next_deadline(), Some(p.now + lifetime));
    assert!(p.engine.holds_any());
    // Served while it waits, to a consumer that comes late.
    let (d, out) = p.demand(cons, "x");
    let object = object_of(&out, cons, d);
    p.release(cons, object);
    // Its producer's leave waits for the reply.
    let (leave, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, leave), [Got::Waiting(vec!["x".into()])]);
    let out = p.expire(lifetime - Duration::from_millis(1));
    assert!(answers(&out, prod, w).is_empty());
    let out = p.expire(lifetime);
    assert_eq!(answers(&out, prod, w), [Got::Ok]);
    assert_eq!(answers(&out, prod, leave), [Got::Bye]);
    assert_eq!(p.engine.next_deadline(), None);
}

/// A pool whose producers' offers with a lifetime outlive them.
fn keeping() -> Pool {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let config = EngineConfig {
        ack_timeout: ACK_TIMEOUT,
        producer_exit: ProducerExit::Keep,
        ..EngineConfig::default()
    };
    p.engine = Engine::new(Box::new(NameRegistry::new(DuplicateOffers::Reject)), config);
    p
}

fn lifetime_ms(ms: u64) -> Attributes {
    Attributes::from([("lifetime_ms".to_string(), Value::UInt(ms))])
}

#[test]
fn an_offer_with_a_lifetime_outlives_its_dead_producer_when_kept() {
    let mut p = keeping();
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let (_, out) = p.offer_with(prod, "kept", lifetime_ms(5000));
    let kept = out
        .iter()
        .find_map(|e| match e {
            Effect::Keep { segment } => Some(*segment),
            _ => None,
        })
        .expect("the offer's segment is kept");
    p.offer(prod, "plain");
    let out = p.disconnect(prod);
    let closed: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Close { segment } => Some(*segment),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "the plain offer's segment closes");
    assert!(!closed.contains(&kept), "the kept offer's stays open");
    let s = p.engine.stats();
    assert_eq!(
        (s.objects, s.clients),
        (1, 1),
        "only the kept offer is left"
    );
    let (d, out) = p.demand(cons, "kept");
    let object = object_of(&out, cons, d);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Send { to, segment: Some(_), .. } if *to == cons)),
        "the consumer gets the dead producer's segment"
    );
    let (d, out) = p.demand(cons, "plain");
    assert_eq!(answers(&out, cons, d), [error(ErrorCode::ProducerDied)]);
    p.release(cons, object);
    // A require made before the lifetime ends holds the withdrawal after it.
    p.ask(
        cons,
        Msg::Require {
            name: "kept".into(),
        },
    );
    let out = p.expire(Duration::from_secs(5));
    p.now += Duration::from_secs(5);
    assert!(!out.iter().any(|e| matches!(e, Effect::Close { .. })));
    assert_eq!(p.engine.stats().objects, 1, "still required");
    let (r, out) = p.ask(
        cons,
        Msg::Retract {
            name: "kept".into(),
        },
    );
    assert_eq!(answers(&out, cons, r), [Got::Ok]);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Close { segment } if *segment == kept)),
        "withdrawn at last, its segment closed: {out:?}"
    );
    assert_eq!(p.engine.stats().objects, 0);
    assert_eq!(p.engine.next_deadline(), None);
    // Withdrawn as by its producer: not a dead producer's name.
    let (d, out) = p.demand(cons, "kept");
    assert!(answers(&out, cons, d).is_empty(), "waits for a new offer");
}

#[test]
fn a_leave_does_not_wait_for_the_offers_it_leaves_behind() {
    let mut p = keeping();
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    p.offer_with(prod, "kept", lifetime_ms(5000));
    p.ask(
        cons,
        Msg::Require {
            name: "kept".into(),
        },
    );
    let (w, out) = p.withdraw(prod, "kept");
    assert!(answers(&out, prod, w).is_empty(), "within its lifetime");
    let (leave, out) = p.ask(prod, Msg::Leave);
    assert_eq!(answers(&out, prod, leave), [Got::Bye]);
    let (d, out) = p.demand(cons, "kept");
    assert!(matches!(&answers(&out, cons, d)[..], [Got::Data(n, _)] if n == "kept"));
    // Its name is free for a producer that comes after the lifetime.
    let object = object_of(&out, cons, d);
    p.release(cons, object);
    p.expire(Duration::from_secs(5));
    p.now += Duration::from_secs(5);
    assert_eq!(p.engine.stats().objects, 0);
    let next = p.join("next");
    let (id, out) = p.offer(next, "kept");
    assert_eq!(answers(&out, next, id), [Got::Ok]);
}

#[test]
fn without_a_lifetime_or_under_withdraw_the_offers_go_with_their_producer() {
    for keep in [true, false] {
        let mut p = if keep {
            keeping()
        } else {
            Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject)
        };
        let (prod, cons) = (p.join("prod"), p.join("cons"));
        p.offer_with(prod, "timed", lifetime_ms(5000));
        p.offer(prod, "plain");
        p.disconnect(prod);
        let expected = usize::from(keep);
        assert_eq!(p.engine.stats().objects as usize, expected, "keep: {keep}");
        let (d, out) = p.demand(cons, "plain");
        assert_eq!(answers(&out, cons, d), [error(ErrorCode::ProducerDied)]);
    }
}

#[test]
fn producer_exit_parses_its_two_names() {
    assert_eq!("keep".parse::<ProducerExit>(), Ok(ProducerExit::Keep));
    assert_eq!(
        "withdraw".parse::<ProducerExit>(),
        Ok(ProducerExit::Withdraw)
    );
    assert!("linger".parse::<ProducerExit>().is_err());
}

#[test]
fn a_query_lists_matching_names_by_priority_in_pages() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let prod = p.join("prod");
    let priority = |v: &str| Attributes::from([("priority".to_string(), Value::from(v))]);
    p.offer_with(prod, "b", priority("checkpoint"));
    p.offer_with(prod, "c", priority("output"));
    p.offer(prod, "a");
    let list = |p: &mut Pool, selector: &str, skip: u64| {
        let (id, out) = p.ask(
            prod,
            Msg::Query {
                selector: selector.into(),
                skip,
            },
        );
        to(&out, prod, id)
    };
    let listed = |names: &[&str], more: bool| {
        vec![Msg::Listed {
            names: names.iter().map(|n| n.to_string()).collect(),
            more,
        }]
    };
    assert_eq!(list(&mut p, "", 0), listed(&["c", "a", "b"], false));
    assert_eq!(list(&mut p, "has priority", 1), listed(&["b"], false));
    assert_eq!(list(&mut p, "name == \"zzz\"", 0), listed(&[], false));
    assert!(matches!(
        &list(&mut p, "priority ==", 0)[..],
        [Msg::Error {
            code: ErrorCode::BadSelector,
            ..
        }]
    ));
    // More than a frame holds: pages, each within a frame.
    let long: Vec<String> = (0..200)
        .map(|i| format!("{i:03}{}", "x".repeat(4000)))
        .collect();
    for name in &long {
        p.offer(prod, name);
    }
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let reply = list(&mut p, "name ~ \"^[0-9]\"", got.len() as u64);
        let [Msg::Listed { names, more }] = &reply[..] else {
            panic!("{reply:?}");
        };
        got.extend(names.iter().cloned());
        pages += 1;
        if !more {
            break;
        }
    }
    assert!(pages > 1);
    assert_eq!(got, long);
}

#[test]
fn the_size_attribute_is_the_object_s_size() {
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    let (prod, cons) = (p.join("prod"), p.join("cons"));
    let size = |n: u64| Attributes::from([("size".to_string(), Value::UInt(n))]);
    let (id, out) = p.offer_with(prod, "wrong", size(SIZE + 1));
    assert_eq!(answers(&out, prod, id), [error(ErrorCode::BadAttributes)]);
    let (id, out) = p.offer_with(prod, "right", size(SIZE));
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    p.offer(prod, "unsaid");
    for name in ["right", "unsaid"] {
        let (d, out) = p.demand(cons, name);
        let [Msg::Data(data)] = &to(&out, cons, d)[..] else {
            panic!("{out:?}");
        };
        // The size travels once, as the size of the data, not again as
        // an attribute; the client puts it back among the attributes.
        assert_eq!((data.size, data.attrs.get("size")), (SIZE, None), "{name}");
        assert_eq!(
            with_size(data.attrs.clone(), data.size),
            size(SIZE),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Model test.

#[derive(Debug, Clone)]
enum Op {
    Offer(usize, usize),
    Demand(usize, usize),
    Require(usize, usize),
    Retract(usize, usize),
    Withdraw(usize, usize),
    Release(usize, usize),
    Leave(usize),
    Disconnect(usize),
}

const NAMES: [&str; 2] = ["a", "b"];

fn op() -> impl Strategy<Value = Op> {
    let c = 0..4usize;
    let n = 0..NAMES.len();
    prop_oneof![
        3 => (c.clone(), n.clone()).prop_map(|(c, n)| Op::Offer(c, n)),
        3 => (c.clone(), n.clone()).prop_map(|(c, n)| Op::Demand(c, n)),
        2 => (c.clone(), n.clone()).prop_map(|(c, n)| Op::Require(c, n)),
        2 => (c.clone(), n.clone()).prop_map(|(c, n)| Op::Retract(c, n)),
        2 => (c.clone(), n.clone()).prop_map(|(c, n)| Op::Withdraw(c, n)),
        2 => (c.clone(), 0..8usize).prop_map(|(c, k)| Op::Release(c, k)),
        2 => c.clone().prop_map(Op::Leave),
        1 => c.prop_map(Op::Disconnect),
    ]
}

/// A client's request: who sent it, and its id.
type Request = (ClientId, u64);

/// What the pool should look like: the obvious bookkeeping.
#[derive(Default)]
struct Model {
    fail_fast: bool,
    /// Whether a second offer of a name is a newer version (else refused).
    versions: bool,
    alive: BTreeSet<ClientId>,
    /// Name → its offers (owner, object), oldest first.
    offers: BTreeMap<String, Vec<(ClientId, u64)>>,
    next_object: u64,
    /// Views each client holds, as objects (repeated per view).
    held: BTreeMap<ClientId, Vec<u64>>,
    /// Withdrawn objects still viewed → their producer, who waits for the
    /// reply, and the name.
    draining: BTreeMap<u64, (ClientId, Option<Request>, String)>,
    /// Segments each client sent (one per offer taken; those of refused
    /// offers are not kept).
    segments: BTreeMap<ClientId, u64>,
    waiting: BTreeMap<String, Vec<(ClientId, u64)>>,
    /// (name, client) → the objects its requires were matched with,
    /// oldest first: the newest on offer when made, else the next offered.
    /// A demand serves the oldest, a retraction ends the newest.
    requires: BTreeMap<(String, ClientId), Vec<Option<u64>>>,
    /// Names whose producer died while offering them.
    died: BTreeSet<String>,
    /// Clients waiting for BYE → their LEAVE request.
    leaving: BTreeMap<ClientId, u64>,
    /// Withdrawals waiting for requires: (name, owner, request), oldest
    /// first.
    withdrawing: Vec<(String, ClientId, u64)>,
    /// Clients whose own requires hold their withdrawals
    /// (`Engine::hold_own_requires`).
    own_requires_hold: BTreeSet<ClientId>,
}

/// Expected messages: (client, request, what).
type Expect = Vec<(ClientId, u64, Got)>;

impl Model {
    fn views(&self, object: u64) -> usize {
        self.held
            .values()
            .flatten()
            .filter(|&&o| o == object)
            .count()
    }

    /// The newest object on offer as `name`.
    fn newest(&self, name: &str) -> Option<u64> {
        self.offers.get(name)?.last().map(|&(_, o)| o)
    }

    /// The newest object `owner` offers as `name` (what its withdrawal
    /// takes).
    fn own(&self, name: &str, owner: ClientId) -> Option<u64> {
        let offers = self.offers.get(name)?;
        offers
            .iter()
            .rev()
            .find(|(o, _)| *o == owner)
            .map(|&(_, o)| o)
    }

    /// Removes `owner`'s newest offer of `name`; the requires matched with
    /// it are matched with the newest left.
    fn take(&mut self, name: &str, owner: ClientId) -> Option<u64> {
        let offers = self.offers.get_mut(name)?;
        let i = offers.iter().rposition(|(o, _)| *o == owner)?;
        let (_, object) = offers.remove(i);
        if offers.is_empty() {
            self.offers.remove(name);
        }
        let newest = self.newest(name);
        for ((n, _), matches) in self.requires.iter_mut() {
            for m in matches.iter_mut().filter(|_| n == name) {
                if *m == Some(object) {
                    *m = newest;
                }
            }
        }
        Some(object)
    }

    fn give(&mut self, to: ClientId, id: u64, name: &str, object: u64, e: &mut Expect) {
        self.end_require(name, to, true);
        self.held.entry(to).or_default().push(object);
        e.push((to, id, Got::Data(name.into(), object)));
    }

    /// Ends one of `c`'s requires of `name`: the oldest when `served`.
    fn end_require(&mut self, name: &str, c: ClientId, served: bool) {
        let key = (name.to_string(), c);
        let Some(matches) = self.requires.get_mut(&key) else {
            return;
        };
        match served {
            true => drop(matches.remove(0)),
            false => drop(matches.pop()),
        }
        if matches.is_empty() {
            self.requires.remove(&key);
        }
    }

    fn release(&mut self, client: ClientId, object: u64, e: &mut Expect) {
        let held = self.held.entry(client).or_default();
        let Some(i) = held.iter().position(|&o| o == object) else {
            return;
        };
        held.remove(i);
        if self.views(object) == 0 {
            if let Some((_, Some((owner, id)), _)) = self.draining.remove(&object) {
                e.push((owner, id, Got::Ok));
            }
        }
    }

    /// Segments the pool keeps: those of clients still there (each holds
    /// one offer at most) and those of gone clients' objects still viewed.
    fn segments(&self) -> u64 {
        let of_clients: u64 = self
            .alive
            .iter()
            .map(|c| self.segments.get(c).copied().unwrap_or(0))
            .sum();
        let orphans = self
            .draining
            .values()
            .filter(|(owner, _, _)| !self.alive.contains(owner))
            .count();
        of_clients + orphans as u64
    }

    /// Names that hold the leave of `c`: its offers another client
    /// requires, and its withdrawals not answered yet.
    fn leave_blockers(&self, c: ClientId) -> Vec<String> {
        let mut names: Vec<String> = self
            .offers
            .iter()
            .filter(|(n, offers)| {
                offers
                    .iter()
                    .any(|&(o, object)| o == c && self.required_by_others(n, c, object))
            })
            .map(|(n, _)| n.clone())
            .collect();
        let withdrawing = self
            .draining
            .values()
            .filter(|(_, r, _)| r.is_some_and(|(o, _)| o == c));
        names.extend(withdrawing.map(|(_, _, n)| n.clone()));
        let waiting = self.withdrawing.iter().filter(|(_, o, _)| *o == c);
        names.extend(waiting.map(|(n, _, _)| n.clone()));
        names.sort();
        names.dedup();
        names
    }

    /// Whether another client than `owner` required `name` and one of its
    /// requires was matched with `object`.
    fn required_by_others(&self, name: &str, owner: ClientId, object: u64) -> bool {
        self.requires.iter().any(|((rn, rc), matches)| {
            rn == name && *rc != owner && matches.contains(&Some(object))
        })
    }

    /// Whether a require holds `owner`'s withdrawal of `object`, offered
    /// as `name`: another client's, or its own when it asked for that.
    fn withdrawal_held(&self, name: &str, owner: ClientId, object: u64) -> bool {
        let own = self.own_requires_hold.contains(&owner);
        self.requires.iter().any(|((rn, rc), matches)| {
            rn == name && (*rc != owner || own) && matches.contains(&Some(object))
        })
    }

    /// Withdraws `owner`'s offer of `name` for request `id`: answered now,
    /// or when the views of it are released.
    fn withdraw(&mut self, name: &str, owner: ClientId, id: u64, e: &mut Expect) {
        match self.take(name, owner) {
            Some(object) => {
                if self.views(object) > 0 {
                    self.draining
                        .insert(object, (owner, Some((owner, id)), name.into()));
                } else {
                    e.push((owner, id, Got::Ok));
                }
            }
            _ => e.push((owner, id, error(ErrorCode::UnknownName))),
        }
    }

    /// The waiting withdrawals nothing holds any more, then the leaves.
    fn settle(&mut self, e: &mut Expect) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.withdrawing)
            .into_iter()
            .partition(|(n, o, _)| {
                !self
                    .own(n, *o)
                    .is_some_and(|object| self.withdrawal_held(n, *o, object))
            });
        self.withdrawing = waiting;
        for (n, o, id) in ready {
            self.withdraw(&n, o, id, e);
        }
        self.check_leaves(e);
    }

    fn remove(&mut self, c: ClientId, died: bool, e: &mut Expect) {
        for object in self.held.remove(&c).unwrap_or_default() {
            self.held.entry(c).or_default().push(object);
            self.release(c, object, e);
        }
        let names: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, offers)| offers.iter().any(|(o, _)| *o == c))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            while let Some(object) = self.take(&n, c) {
                if self.views(object) > 0 {
                    self.draining.insert(object, (c, None, n.clone()));
                }
            }
            if died {
                self.died.insert(n);
            }
        }
        for (_, reply, _) in self.draining.values_mut() {
            if reply.is_some_and(|(o, _)| o == c) {
                *reply = None;
            }
        }
        self.alive.remove(&c);
        self.leaving.remove(&c);
        self.withdrawing.retain(|(_, o, _)| *o != c);
        self.requires.retain(|(_, rc), _| *rc != c);
        for w in self.waiting.values_mut() {
            w.retain(|(wc, _)| *wc != c);
        }
        self.waiting.retain(|_, w| !w.is_empty());
        self.settle(e);
    }

    fn check_leaves(&mut self, e: &mut Expect) {
        let ready: Vec<(ClientId, u64)> = self
            .leaving
            .iter()
            .filter(|(&c, _)| self.leave_blockers(c).is_empty())
            .map(|(&c, &id)| (c, id))
            .collect();
        for (c, id) in ready {
            if self.alive.contains(&c) {
                e.push((c, id, Got::Bye));
                self.remove(c, false, e);
            }
        }
    }

    /// Applies `op` of client `c` as request `id`; returns the messages
    /// the engine must send.
    fn apply(&mut self, c: ClientId, id: u64, op: &Op) -> Expect {
        let mut e = Expect::new();
        if !self.alive.contains(&c) {
            // Gone: its requests change nothing and are refused (a
            // disconnect is no request).
            if !matches!(op, Op::Disconnect(_)) {
                e.push((c, id, error(ErrorCode::NotJoined)));
            }
            return e;
        }
        match op {
            Op::Offer(_, n) => {
                let n = NAMES[*n];
                if !self.versions && self.offers.contains_key(n) {
                    e.push((c, id, error(ErrorCode::DuplicateName)));
                    return e;
                }
                *self.segments.entry(c).or_default() += 1;
                self.next_object += 1;
                let object = self.next_object;
                self.offers.entry(n.into()).or_default().push((c, object));
                for ((rn, _), matches) in self.requires.iter_mut() {
                    for m in matches.iter_mut().filter(|_| rn == n) {
                        if m.is_none() {
                            *m = Some(object);
                        }
                    }
                }
                self.died.remove(n);
                e.push((c, id, Got::Ok));
                for (to, rid) in self.waiting.remove(n).unwrap_or_default() {
                    self.give(to, rid, n, object, &mut e);
                }
                self.settle(&mut e);
            }
            Op::Demand(_, n) => {
                let n = NAMES[*n];
                let key = (n.to_string(), c);
                let matched = self.requires.get(&key).and_then(|m| m[0]);
                if let Some(object) = matched.or_else(|| self.newest(n)) {
                    self.give(c, id, n, object, &mut e);
                    self.settle(&mut e);
                } else if self.fail_fast && self.died.contains(n) {
                    e.push((c, id, error(ErrorCode::ProducerDied)));
                } else {
                    self.waiting.entry(n.into()).or_default().push((c, id));
                }
            }
            Op::Require(_, n) => {
                let newest = self.newest(NAMES[*n]);
                let key = (NAMES[*n].into(), c);
                self.requires.entry(key).or_default().push(newest);
                e.push((c, id, Got::Ok));
            }
            Op::Retract(_, n) => {
                let n = NAMES[*n];
                self.end_require(n, c, false);
                if let Some(w) = self.waiting.get_mut(n) {
                    for &(_, rid) in w.iter().filter(|(wc, _)| *wc == c) {
                        e.push((c, rid, error(ErrorCode::Retracted)));
                    }
                    w.retain(|(wc, _)| *wc != c);
                }
                self.waiting.retain(|_, w| !w.is_empty());
                self.settle(&mut e);
                e.push((c, id, Got::Ok));
            }
            Op::Withdraw(_, n) => {
                let n = NAMES[*n];
                match (self.offers.contains_key(n), self.own(n, c)) {
                    (false, _) => e.push((c, id, error(ErrorCode::UnknownName))),
                    (true, None) => e.push((c, id, error(ErrorCode::NotOwner))),
                    (true, Some(object)) if self.withdrawal_held(n, c, object) => {
                        self.withdrawing.push((n.into(), c, id));
                    }
                    (true, Some(_)) => {
                        self.withdraw(n, c, id, &mut e);
                        self.settle(&mut e);
                    }
                }
            }
            Op::Release(_, _) => unreachable!("released by object"),
            Op::Leave(_) => {
                let blocked = self.leave_blockers(c);
                if blocked.is_empty() {
                    e.push((c, id, Got::Bye));
                    self.remove(c, false, &mut e);
                } else {
                    self.leaving.insert(c, id);
                    e.push((c, id, Got::Waiting(blocked)));
                }
            }
            Op::Disconnect(_) => self.remove(c, true, &mut e),
        }
        e
    }
}

fn run_model(
    clients: usize,
    fail_fast: bool,
    versions: bool,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let policy = match fail_fast {
        true => FaultPolicy::FailFast,
        false => FaultPolicy::BestEffort,
    };
    let duplicates = match versions {
        true => DuplicateOffers::Version,
        false => DuplicateOffers::Reject,
    };
    let mut p = Pool::new(policy, duplicates);
    let mut m = Model {
        fail_fast,
        versions,
        ..Model::default()
    };
    let ids: Vec<ClientId> = (0..clients).map(|i| p.join(&format!("c{i}"))).collect();
    m.alive.extend(ids.iter().copied());
    // The second client's own requires hold its withdrawals, as an
    // application's do; the others' do not.
    p.engine.hold_own_requires(ids[1]);
    m.own_requires_hold.insert(ids[1]);
    for op in ops {
        let (Op::Offer(c, _)
        | Op::Demand(c, _)
        | Op::Require(c, _)
        | Op::Retract(c, _)
        | Op::Withdraw(c, _)
        | Op::Release(c, _)
        | Op::Leave(c)
        | Op::Disconnect(c)) = op;
        let c = ids[c % clients];
        let (out, mut expected) = match op {
            Op::Offer(_, n) => {
                let (id, out) = p.offer(c, NAMES[*n]);
                (out, m.apply(c, id, op))
            }
            Op::Demand(_, n) => {
                let (id, out) = p.demand(c, NAMES[*n]);
                (out, m.apply(c, id, op))
            }
            Op::Require(_, n) => {
                let (id, out) = p.ask(
                    c,
                    Msg::Require {
                        name: NAMES[*n].into(),
                    },
                );
                (out, m.apply(c, id, op))
            }
            Op::Retract(_, n) => {
                let (id, out) = p.ask(
                    c,
                    Msg::Retract {
                        name: NAMES[*n].into(),
                    },
                );
                (out, m.apply(c, id, op))
            }
            Op::Withdraw(_, n) => {
                let (id, out) = p.withdraw(c, NAMES[*n]);
                (out, m.apply(c, id, op))
            }
            Op::Release(_, k) => {
                let held = m.held.get(&c).cloned().unwrap_or_default();
                let object = if held.is_empty() {
                    0
                } else {
                    held[k % held.len()]
                };
                let (id, out) = p.release(c, object);
                let mut e = Expect::new();
                if m.alive.contains(&c) {
                    m.release(c, object, &mut e);
                    // The last view of a withdrawn object may let its
                    // producer leave.
                    m.settle(&mut e);
                } else {
                    e.push((c, id, error(ErrorCode::NotJoined)));
                }
                (out, e)
            }
            Op::Leave(_) => {
                let (id, out) = p.ask(c, Msg::Leave);
                (out, m.apply(c, id, op))
            }
            Op::Disconnect(_) => (p.disconnect(c), m.apply(c, 0, op)),
        };
        let mut actual: Expect = out
            .iter()
            .filter_map(|e| match e {
                // Segment notices are not modelled.
                Effect::Send {
                    msg: Msg::SegmentGone { .. },
                    ..
                } => None,
                Effect::Send { to, id, msg, .. } => Some((*to, *id, got(msg))),
                _ => None,
            })
            .collect();
        actual.sort();
        expected.sort();
        prop_assert_eq!(&actual, &expected, "after {:?}", op);
        let s = p.engine.stats();
        let waiting: usize = m.waiting.values().map(Vec::len).sum();
        prop_assert_eq!(s.clients, m.alive.len() as u64, "clients after {:?}", op);
        let offers = m.offers.values().map(Vec::len).sum::<usize>() as u64;
        prop_assert_eq!(s.objects, offers);
        prop_assert_eq!(s.offered_bytes, SIZE * offers);
        prop_assert_eq!(
            s.requires,
            m.requires.values().map(|v| v.len() as u64).sum::<u64>()
        );
        prop_assert_eq!(s.waiting_demands, waiting as u64);
        prop_assert_eq!(s.pending_leaves, m.leaving.len() as u64);
        prop_assert_eq!(s.segments, m.segments(), "segments after {:?}", op);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_agree_with_the_model(
        clients in 2..=4usize,
        fail_fast in any::<bool>(),
        versions in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run_model(clients, fail_fast, versions, &ops)?;
    }
}

/// A consumer group that spans nodes: `member` joins `g` here, and the
/// federation's client (`mirror`) is set for proxies of other nodes.
fn federated_group(keep: bool) -> (Pool, ClientId, ClientId, ClientId, SubscribeRef) {
    let config = EngineConfig {
        keep_group_records: keep,
        ack_timeout: ACK_TIMEOUT,
        ..EngineConfig::default()
    };
    let mut p = Pool::new(FaultPolicy::FailFast, DuplicateOffers::Reject);
    p.engine = Engine::new(Box::new(NameRegistry::new(DuplicateOffers::Reject)), config);
    let (prod, member, mirror) = (p.join("prod"), p.join("member"), p.join("federation"));
    p.engine.set_mirror(mirror);
    let group = SubscribeRef {
        selector: String::new(),
        kinds: 0,
        ack: false,
        group: Some("g".into()),
    };
    (p, prod, member, mirror, group)
}

/// The delivery ids of the records `effects` give `client`.
fn records_to(effects: &[Effect], client: ClientId) -> Vec<u64> {
    unsolicited(effects, client)
        .iter()
        .filter_map(|m| match m {
            Msg::Record { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

fn set_proxy(p: &mut Pool, node: &str, members: u32) -> (Option<u64>, Vec<Effect>) {
    let mut out = Vec::new();
    let sub = p
        .engine
        .set_proxy("g", "", node, members, &mut out)
        .unwrap();
    (sub, out)
}

#[test]
fn a_proxy_member_is_weighted_by_its_node_s_members() {
    let (mut p, prod, member, mirror, group) = federated_group(false);
    p.subscribe(member, group);
    assert_eq!(
        p.engine.take_group_notes(),
        [cdo::engine::GroupNote::Members {
            group: "g".into(),
            selector: String::new(),
            members: 1,
            epoch: 1
        }]
    );
    let (sub, _) = set_proxy(&mut p, "b", 3);
    assert!(sub.is_some());
    // Members done at once: weighted round robin, 1 to 3.
    let (mut here, mut there) = (0, 0);
    for i in 0..8 {
        let (_, out) = p.offer(prod, &format!("fast{i}"));
        for (who, n) in [(member, &mut here), (mirror, &mut there)] {
            for event in records_to(&out, who) {
                *n += 1;
                p.ask(who, Msg::Ack { event });
            }
        }
    }
    assert_eq!((here, there), (2, 6));
    // Saturated: a window per member; the proxy holds three.
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for i in 0..(5 * GROUP_WINDOW) {
        let (_, out) = p.offer(prod, &format!("slow{i}"));
        here.extend(records_to(&out, member));
        there.extend(records_to(&out, mirror));
    }
    assert_eq!(here.len(), GROUP_WINDOW as usize);
    assert_eq!(there.len(), 3 * GROUP_WINDOW as usize);
    assert_eq!(p.engine.stats().queued_records, u64::from(GROUP_WINDOW));
    // The node's count falls to one: the proxy takes no more until it is
    // under one window.
    set_proxy(&mut p, "b", 1);
    let (_, out) = p.ask(mirror, Msg::Ack { event: there[0] });
    assert!(records_to(&out, mirror).is_empty());
    let (_, out) = p.ask(member, Msg::Ack { event: here[0] });
    assert_eq!(records_to(&out, member).len(), 1);
    // Any count another node claims is bounded: the queued records go to
    // a node claiming all of them, and nothing overflows.
    let (_, out) = set_proxy(&mut p, "c", u32::MAX);
    assert_eq!(records_to(&out, mirror).len(), GROUP_WINDOW as usize - 1);
}

#[test]
fn a_node_whose_members_leave_gives_its_records_back_here() {
    let (mut p, prod, member, mirror, group) = federated_group(false);
    set_proxy(&mut p, "b", 1);
    let mut remote = Vec::new();
    for i in 0..GROUP_WINDOW {
        let (_, out) = p.offer(prod, &format!("r{i}"));
        remote.extend(records_to(&out, mirror));
    }
    assert_eq!(remote.len(), GROUP_WINDOW as usize, "the only member");
    // The remote node finished one, then its members left.
    p.engine.finish_proxy_record(remote[0], &mut Vec::new());
    p.subscribe(member, group);
    let (sub, out) = set_proxy(&mut p, "b", 0);
    assert_eq!(sub, None);
    let again = unsolicited(&out, member)
        .iter()
        .filter_map(|m| match m {
            Msg::Record { data, .. } => Some(data.name.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        again,
        ["r1", "r2", "r3"],
        "its unfinished records, in order"
    );
    // A late answer of the gone node changes nothing.
    let mut out = Vec::new();
    p.engine.finish_proxy_record(remote[1], &mut out);
    assert!(out.is_empty());
    assert_eq!(p.engine.stats().queued_records, 0);
}

#[test]
fn a_group_whose_last_member_was_a_proxy_releases_or_keeps_its_records() {
    for keep in [false, true] {
        let (mut p, prod, member, mirror, group) = federated_group(keep);
        set_proxy(&mut p, "b", 2);
        let (_, out) = p.offer(prod, "r");
        assert_eq!(records_to(&out, mirror).len(), 1);
        p.ask(mirror, Msg::Release { objects: vec![1] });
        let (w, out) = p.withdraw(prod, "r");
        assert!(
            answers(&out, prod, w).is_empty(),
            "the remote node holds it"
        );
        let (_, out) = set_proxy(&mut p, "b", 0);
        let expected = match keep {
            false => vec![Got::Ok],
            true => vec![],
        };
        assert_eq!(answers(&out, prod, w), expected, "keep = {keep}");
        assert_eq!(p.engine.stats().queued_records, u64::from(keep));
        let (_, out) = p.ask(member, Msg::Subscribe(group));
        assert_eq!(records_to(&out, member).len(), usize::from(keep));
    }
}

#[test]
fn forwarded_records_go_to_local_members_and_their_end_is_noted() {
    let (mut p, _, member, mirror, group) = federated_group(false);
    p.subscribe(member, group.clone());
    set_proxy(&mut p, "a", 5);
    p.engine.take_group_notes();
    // The federation's copy of a's object is not routed here again.
    let (_, out) = p.offer(mirror, "copy");
    assert!(records_to(&out, member).is_empty() && records_to(&out, mirror).is_empty());
    let from = cdo::engine::Forwarded {
        node: "a".into(),
        event: 77,
    };
    let mut out = Vec::new();
    assert!(p
        .engine
        .route_forwarded("g", "copy", from.clone(), 1, &mut out));
    assert!(!p
        .engine
        .route_forwarded("g", "nothing", from.clone(), 1, &mut out));
    // Given to this node's members of another time: refused.
    assert!(!p.engine.route_forwarded("g", "copy", from, 2, &mut out));
    let given = records_to(&out, member);
    assert_eq!(given.len(), 1, "to the local member, never to a proxy");
    assert!(p.engine.take_group_notes().is_empty());
    p.ask(member, Msg::Ack { event: given[0] });
    assert_eq!(
        p.engine.take_group_notes(),
        [cdo::engine::GroupNote::Done {
            node: "a".into(),
            event: 77
        }]
    );
    // The last local member leaving is noted too; with no local member a
    // forwarded record is refused (its node gives it to another).
    p.disconnect(member);
    assert_eq!(
        p.engine.take_group_notes(),
        [cdo::engine::GroupNote::Members {
            group: "g".into(),
            selector: String::new(),
            members: 0,
            epoch: 1
        }]
    );
    let from = cdo::engine::Forwarded {
        node: "a".into(),
        event: 78,
    };
    assert!(!p
        .engine
        .route_forwarded("g", "copy", from, 1, &mut Vec::new()));
    // Members again: a new epoch.
    let again = p.join("again");
    p.subscribe(again, group);
    match &p.engine.take_group_notes()[..] {
        [cdo::engine::GroupNote::Members { epoch: 2, .. }] => {}
        other => panic!("{other:?}"),
    }
}

/// The federation's client (the mirror) demands a local offer only to
/// export it: a name no longer offered fails its demand at once instead of
/// leaving it waiting (its node's thread would stall behind it), while any
/// other client's demand of the same name waits for a later offer.
#[test]
fn the_mirror_s_demand_of_a_name_not_offered_fails_at_once() {
    let (mut p, prod, member, mirror, _) = federated_group(false);
    let (id, out) = p.offer(prod, "gone");
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    let (id, out) = p.withdraw(prod, "gone");
    assert_eq!(answers(&out, prod, id), [Got::Ok]);
    let (id, out) = p.demand(mirror, "gone");
    assert_eq!(answers(&out, mirror, id), [error(ErrorCode::UnknownName)]);
    let (waiting, out) = p.demand(member, "gone");
    assert!(answers(&out, member, waiting).is_empty());
    assert_eq!(p.engine.stats().waiting_demands, 1);
    // An offer on hand is exported as before.
    p.offer(prod, "here");
    let (id, out) = p.demand(mirror, "here");
    assert!(matches!(&answers(&out, mirror, id)[..], [Got::Data(..)]));
}
