//! Every request gets its reply through the pool manager: withdrawals
//! pending when a leave could finish, requests after BYE, offers refused
//! with a new segment.

mod ipc_common;

use std::time::Duration;

use cdo::ipc::client::ClientError;
use cdo::ipc::wire::{Attributes, ErrorCode};
use ipc_common::{client, code, manager, wait_for};

/// A failure guard only: every wait here ends as soon as its reply comes.
const GUARD: Duration = Duration::from_secs(30);

#[test]
fn a_withdrawal_pending_when_the_leave_could_finish_is_answered_first() {
    let pm = manager();
    let mut producer = client(&pm, "producer");
    let mut consumer = client(&pm, "consumer");
    producer
        .offer("viewed", b"data", Attributes::new())
        .unwrap();
    producer
        .offer("required", b"more", Attributes::new())
        .unwrap();
    consumer.require("required").unwrap();
    let view = consumer.demand("viewed", GUARD).unwrap();
    // The leave waits for the consumer's require.
    match producer.leave(Duration::from_millis(1)) {
        Err(ClientError::StillRequired(_)) => {}
        other => panic!("expected a pending leave, got {other:?}"),
    }
    // The withdrawal waits for the consumer's view.
    let withdrawing = std::thread::spawn(move || {
        let withdrawn = producer.withdraw("viewed");
        (producer, withdrawn)
    });
    wait_for(&pm, |s| s.objects == 1);
    // Served: the require no longer holds the leave, the withdrawal does.
    let served = consumer.demand("required", GUARD).unwrap();
    assert_eq!(pm.stats().pending_leaves, 1);
    drop((view, served));
    consumer.stats().unwrap(); // sends the releases
    let (mut producer, withdrawn) = withdrawing.join().unwrap();
    withdrawn.unwrap();
    producer.leave(GUARD).unwrap();
    wait_for(&pm, |s| s.clients == 1);
}

#[test]
fn requests_after_bye_are_refused_as_not_joined() {
    let pm = manager();
    let mut c = client(&pm, "leaver");
    c.offer("a", b"data", Attributes::new()).unwrap();
    c.leave(GUARD).unwrap();
    assert_eq!(code(c.stats().unwrap_err()), ErrorCode::NotJoined);
    assert_eq!(
        code(c.demand("a", GUARD).unwrap_err()),
        ErrorCode::NotJoined
    );
    assert_eq!(code(c.withdraw("a").unwrap_err()), ErrorCode::NotJoined);
    // Its connection is still open, and it holds nothing.
    let s = pm.stats();
    assert_eq!((s.clients, s.objects, s.segments), (0, 0, 0), "{s:?}");
}

#[test]
fn a_producer_whose_offer_was_refused_offers_again_from_its_segment() {
    let pm = manager();
    let mut first = client(&pm, "first");
    let mut producer = client(&pm, "producer");
    first.offer("taken", b"first", Attributes::new()).unwrap();
    assert_eq!(
        code(
            producer
                .offer("taken", b"second", Attributes::new())
                .unwrap_err()
        ),
        ErrorCode::DuplicateName
    );
    // The segment that came with the refused offer is not kept.
    assert_eq!(pm.stats().segments, 1);
    producer
        .offer("mine", b"second", Attributes::new())
        .unwrap();
    producer.offer("also", b"third", Attributes::new()).unwrap();
    assert_eq!(pm.stats().segments, 2);
    let mut consumer = client(&pm, "consumer");
    assert_eq!(&*consumer.demand("mine", GUARD).unwrap(), b"second");
    assert_eq!(&*consumer.demand("also", GUARD).unwrap(), b"third");
}
