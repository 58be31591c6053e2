//! Subscriptions: kinds, selectors, polling, waiting, acknowledgements.

mod common;

use cdo::{EventKind, EventMask};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn subscriptions_see_the_kinds_and_cdos_they_select() {
    let env = common::env();
    let pool = &env.pool;
    let all = pool.subscribe("", EventMask::ALL, false).unwrap();
    let offers = pool
        .subscribe(
            r#"name ~ "^run1/" and app.step >= 40 and priority == "output""#,
            EventKind::Offer | EventKind::Withdraw,
            false,
        )
        .unwrap();
    for (name, step) in [("run1/a", 41u64), ("run1/b", 3), ("run2/c", 50)] {
        let mut p = pool.declare(name).unwrap();
        p.set("app.step", step).unwrap();
        p.set("priority", "output").unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        p.withdraw().unwrap();
        p.dispose().unwrap();
    }
    let e = offers.poll().expect("offer of run1/a");
    assert_eq!(
        (e.kind, &*e.name, e.version),
        (EventKind::Offer, "run1/a", Some(0))
    );
    assert_eq!(offers.poll().unwrap().kind, EventKind::Withdraw);
    assert!(offers.poll().is_none());
    let kinds: Vec<EventKind> = std::iter::from_fn(|| all.poll()).map(|e| e.kind).collect();
    assert_eq!(kinds.len(), 15);
    assert_eq!(
        &kinds[..5],
        [
            EventKind::Declare,
            EventKind::Seal,
            EventKind::Offer,
            EventKind::Withdraw,
            EventKind::Dispose
        ]
    );
    assert!(pool.subscribe("size >", EventMask::ALL, false).is_err());
}

#[test]
fn wait_returns_events_from_other_threads_or_times_out() {
    let env = common::env();
    let pool = &env.pool;
    let sub = pool
        .subscribe("has app.step", EventKind::Require.into(), false)
        .unwrap();
    assert!(sub.wait(Duration::from_millis(10)).is_none());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            let mut c = pool.declare("waited").unwrap();
            c.set("app.step", 1u64).unwrap();
            c.require().unwrap();
        });
        let e = sub.wait(Duration::from_secs(10)).expect("require event");
        assert_eq!(&*e.name, "waited");
        assert!(!e.needs_ack());
    });
}

#[test]
fn acknowledged_events_hold_the_operation_until_acked() {
    let env = common::env();
    let pool = &env.pool;
    let sub = pool
        .subscribe("priority == 'checkpoint'", EventKind::Offer.into(), true)
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut p = pool.declare("ckpt").unwrap();
            p.set("priority", "checkpoint").unwrap();
            p.write(&[1; 32]).unwrap();
            p.seal().unwrap();
            p.offer().unwrap();
            done.store(true, Ordering::SeqCst);
        });
        let e = sub.wait(Duration::from_secs(10)).expect("offer event");
        assert!(e.needs_ack());
        assert_eq!(e.view().get("size"), Some(cdo::Value::UInt(32)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !done.load(Ordering::SeqCst),
            "offer returned before the ack"
        );
        e.ack();
    });
    assert!(done.load(Ordering::SeqCst));

    // Dropping the subscription releases operations waiting on it.
    let sub2 = pool
        .subscribe("*", EventKind::Declare.into(), true)
        .unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| pool.declare("released").map(|_| ()));
        std::thread::sleep(Duration::from_millis(20));
        drop(sub2);
        t.join().unwrap().unwrap();
    });
    drop(sub);
}

#[test]
fn events_describe_the_offer_or_the_handle() {
    let env = common::env();
    let pool = &env.pool;
    let sub = pool
        .subscribe("name == 'ev'", EventMask::ALL, false)
        .unwrap();
    let mut p = pool.declare("ev").unwrap();
    p.write(&[0; 8]).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = pool.declare("ev").unwrap();
    c.want_place(cdo::Place::Tier(mamba::Tier::Dram)).unwrap();
    c.require().unwrap();
    c.demand().unwrap();
    let events: Vec<cdo::Event> = std::iter::from_fn(|| sub.poll()).collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Declare,
            EventKind::Seal,
            EventKind::Offer,
            EventKind::Declare,
            EventKind::Require,
            EventKind::Demand
        ]
    );
    let offer = &events[2];
    assert_eq!(offer.version, Some(0));
    assert!(offer.place.is_some());
    let require = &events[4];
    assert_eq!(require.version, None);
    assert_eq!(
        require.view().get("wanted_tier"),
        Some(cdo::Value::from("dram"))
    );
    let demand = &events[5];
    assert_eq!(
        (demand.version, demand.view().get("size")),
        (Some(0), Some(cdo::Value::UInt(8)))
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A subscriber that asks for a replay while offers are being made sees
/// each offer exactly once and in offer order: replayed when it was on
/// offer as the subscription began, live otherwise (an offer whose event
/// was still on its way is not repeated, and none falls in between).
#[test]
fn a_replaying_subscriber_sees_each_concurrent_offer_once() {
    const N: usize = 2000;
    let env = common::env();
    let pool = &env.pool;
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut held = Vec::new();
            for i in 0..N {
                let mut p = pool.declare(&format!("c/{i}")).unwrap();
                p.seal().unwrap();
                p.offer().unwrap();
                held.push(p);
                if i == N / 4 {
                    started.store(true, Ordering::SeqCst);
                }
            }
            held
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let sub = pool
            .subscribe_replay(r#"name ~ "^c/""#, EventKind::Offer.into(), false)
            .unwrap();
        let held = producer.join().unwrap();
        let seen: Vec<String> = std::iter::from_fn(|| sub.poll())
            .map(|e| {
                assert!(!e.needs_ack());
                e.name.to_string()
            })
            .collect();
        let expected: Vec<String> = (0..N).map(|i| format!("c/{i}")).collect();
        assert_eq!(seen, expected);
        drop(held);
    });
}

/// A replay lists only what its selector matches and only when offer
/// events are asked for; other kinds then come live.
#[test]
fn a_replay_selects_like_the_live_events() {
    let env = common::env();
    let pool = &env.pool;
    let mut held = Vec::new();
    for (name, step) in [("r/b", 5u64), ("r/a", 1), ("r/c", 9)] {
        let mut p = pool.declare(name).unwrap();
        p.set("app.step", step).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        held.push(p);
    }
    let offers = pool
        .subscribe_replay("app.step >= 2", EventMask::ALL, false)
        .unwrap();
    let names: Vec<(EventKind, String, Option<u64>)> = std::iter::from_fn(|| offers.poll())
        .map(|e| (e.kind, e.name.to_string(), e.version))
        .collect();
    assert_eq!(
        names,
        [
            (EventKind::Offer, "r/b".to_string(), Some(0)),
            (EventKind::Offer, "r/c".to_string(), Some(0)),
        ]
    );
    let withdrawals = pool
        .subscribe_replay("", EventKind::Withdraw.into(), false)
        .unwrap();
    assert!(withdrawals.poll().is_none());
    held[0].withdraw().unwrap();
    let e = withdrawals.poll().expect("the live withdrawal");
    assert_eq!((e.kind, &*e.name), (EventKind::Withdraw, "r/b"));
    let e = offers.poll().expect("the live withdrawal");
    assert_eq!((e.kind, &*e.name), (EventKind::Withdraw, "r/b"));
}

/// A replay comes in offer order, whatever the names: an offer that
/// takes over a withdrawn one's record takes its own place in the order.
#[test]
fn a_replay_comes_in_offer_order() {
    let env = common::env();
    let pool = &env.pool;
    let offer = |name: &str| {
        let mut p = pool.declare(name).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        p
    };
    let mut first_z = offer("order/z");
    let _a = offer("order/a");
    first_z.withdraw().unwrap();
    first_z.dispose().unwrap();
    let _z = offer("order/z");
    let _m = offer("order/m");
    let replay = pool
        .subscribe_replay("", EventKind::Offer.into(), false)
        .unwrap();
    let names: Vec<String> = std::iter::from_fn(|| replay.poll())
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["order/a", "order/z", "order/m"]);
}
