//! What a pool manager does for its federation in its own request path
//! (`Control`): the offers of its clients handed to the mirror, small
//! ones with their bytes.

mod ipc_common;

use std::sync::mpsc;
use std::time::Duration;

use cdo::ipc::client::Notice;
use cdo::ipc::manager::MirrorOffer;
use cdo::ipc::wire::Attributes;
use cdo::{EventKind, Value};
use ipc_common::{client, manager, pattern};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(200);

fn step(n: u64) -> Attributes {
    Attributes::from([("app.step".to_string(), Value::UInt(n))])
}

#[test]
fn offers_reach_the_mirror_in_the_request_path_small_ones_with_their_bytes() {
    let pm = manager();
    let control = pm.control();
    let mut mirror = client(&pm, "federation");
    control.set_mirror(mirror.client_id());
    let (tx, rx) = mpsc::channel();
    control.on_mirror_offers(4096, move |offer| {
        let _ = tx.send(offer);
    });
    mirror
        .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
        .unwrap();
    let mut producer = client(&pm, "producer");

    let small = pattern(1, 4096);
    producer.offer("small", &small, step(1)).unwrap();
    let MirrorOffer { name, inline } = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(name, "small");
    let (attrs, bytes) = inline.expect("a small object comes with its bytes");
    assert_eq!(bytes, small);
    assert_eq!(attrs.get("size"), Some(&Value::UInt(4096)));
    assert_eq!(attrs.get("app.step"), Some(&Value::UInt(1)));

    // One byte over the limit: the mirror demands it itself.
    producer.offer("large", &pattern(2, 4097), step(2)).unwrap();
    let offer = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((offer.name.as_str(), offer.inline), ("large", None));

    // Offers never come on the mirror's connection; withdrawals do.
    producer.withdraw("small").unwrap();
    match mirror.next_notice(Some(WAIT)).unwrap() {
        Some(Notice::Event(e)) => {
            assert_eq!((e.kind, e.name.as_str()), (EventKind::Withdraw, "small"));
        }
        other => panic!("expected the withdraw event, got {other:?}"),
    }
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
