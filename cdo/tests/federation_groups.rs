//! Consumer groups across federated pool managers: a group's members on
//! several nodes receive every record of it once, the records a node's
//! leaving members did not finish go to the others, a record held on
//! another node keeps its object from being withdrawn, and a node's share
//! grows with its member count. Managers on 127.0.0.1 in this process,
//! fabric provider tcp.

mod ipc_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientError, Notice, Reply};
use cdo::ipc::federation::{self, Federation};
use cdo::ipc::manager::{FaultPolicy, ManagerHandle};
use cdo::ipc::wire::Attributes;
use cdo::Value;
use ipc_common::{client, eventually, federated_node, pattern};

const TOKEN: &str = "federation-groups-token";
/// Long enough never to expire in a test that does not want it to.
const PATIENT: Duration = Duration::from_secs(60);
/// How long a member waits for a record before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// A size read remotely (above the eager limit).
const LARGE: usize = federation::DEFAULT_EAGER_MAX + 1;

/// A manager with its federation on 127.0.0.1, dialling `peers`.
fn node(peers: &[&Federation]) -> (ManagerHandle, Federation) {
    let peers = peers.iter().map(|f| f.local_addr().to_string()).collect();
    federated_node(FaultPolicy::FailFast, peers, TOKEN, PATIENT)
}

fn step(n: usize) -> Attributes {
    Attributes::from([("app.step".to_string(), Value::UInt(n as u64))])
}

/// The size of record `i`: most inline, every fifth read remotely.
fn size_of(i: usize) -> usize {
    if i % 5 == 4 {
        LARGE
    } else {
        100 + i
    }
}

/// A member of group `g` (all steps) on `pm`.
fn member(pm: &ManagerHandle, name: &str) -> Client {
    let mut c = client(pm, name);
    c.join_group("g", "app.step >= 0").unwrap();
    c
}

/// The next record of `c` within `timeout`: its name and event, its bytes
/// checked against what the producer offered.
fn next_record(c: &mut Client, timeout: Duration) -> Option<(String, u64)> {
    match c.next_notice(Some(timeout)).unwrap() {
        Some(Notice::Record(r)) => {
            let i: usize = r.view.name()["rec/".len()..].parse().unwrap();
            assert!(
                *r.view == pattern(i as u64, size_of(i))[..],
                "bytes of {}",
                r.view.name()
            );
            Some((r.view.name().to_owned(), r.event))
        }
        Some(other) => panic!("expected a record, got {other:?}"),
        None => None,
    }
}

/// Runs member `c` on its own thread, finishing every record at once,
/// until `stop`; returns the names it received, in order.
fn finishing(mut c: Client, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Some((name, event)) = next_record(&mut c, POLL) {
                c.ack(event).unwrap();
                got.push(name);
            }
        }
        got
    })
}

fn offer_all(producer: &mut Client, n: usize) {
    for i in 0..n {
        let name = format!("rec/{i}");
        producer
            .offer(&name, &pattern(i as u64, size_of(i)), step(i))
            .unwrap();
    }
}

/// How many times each name was received, over all members.
fn tally(lists: &[Vec<String>]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for name in lists.iter().flatten() {
        *t.entry(name.clone()).or_default() += 1;
    }
    t
}

#[test]
fn members_on_every_node_receive_each_record_once() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let (pc, fc) = node(&[&fa, &fb]);
    let members = [member(&pa, "m-a"), member(&pb, "m-b"), member(&pc, "m-c")];
    eventually("every node has a proxy of the two others", || {
        [&fa, &fb, &fc]
            .iter()
            .all(|f| f.status().group_proxies == 2)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = members
        .into_iter()
        .map(|m| finishing(m, stop.clone()))
        .collect();
    let mut producer = client(&pa, "producer");
    let n = 60;
    offer_all(&mut producer, n);
    // A withdrawal waits for the record's member: each is answered once
    // its record was finished, wherever.
    for i in 0..n {
        let id = producer.submit_withdraw(&format!("rec/{i}")).unwrap();
        assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
    }
    stop.store(true, Ordering::SeqCst);
    let got: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let t = tally(&got);
    assert_eq!(t.len(), n, "every record received");
    assert!(t.values().all(|&k| k == 1), "once each: {t:?}");
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "every node's member took some: {:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        fa.status().forwarded_records,
        (got[1].len() + got[2].len()) as u64
    );
}

#[test]
fn records_a_node_s_leaving_members_did_not_finish_go_to_the_others() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let mut slow = member(&pb, "slow");
    let here = member(&pa, "here");
    eventually("each node has a proxy of the other", || {
        fa.status().group_proxies == 1 && fb.status().group_proxies == 1
    });
    let stop = Arc::new(AtomicBool::new(false));
    let fast = finishing(here, stop.clone());
    let mut producer = client(&pa, "producer");
    let n = 40;
    offer_all(&mut producer, n);
    // The remote member takes records and finishes none of them.
    let mut held = Vec::new();
    while let Some((name, _)) = next_record(&mut slow, Duration::from_secs(2)) {
        held.push(name);
    }
    assert!(!held.is_empty(), "the remote member got records");
    drop(slow);
    eventually("the remote node's proxy is gone", || {
        fa.status().group_proxies == 0
    });
    // Then every record is finished here, and withdrawable.
    for i in 0..n {
        let id = producer.submit_withdraw(&format!("rec/{i}")).unwrap();
        assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
    }
    stop.store(true, Ordering::SeqCst);
    let got = fast.join().unwrap();
    let t = tally(&[got]);
    assert_eq!(t.len(), n, "every record finished here");
    assert!(t.values().all(|&k| k == 1), "once each here: {t:?}");
}

#[test]
fn a_node_whose_members_leave_and_join_mid_stream_gets_each_record_once() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let mut churn = client(&pb, "churn");
    let mut sub = churn.join_group("g", "app.step >= 0").unwrap();
    let here = member(&pa, "here");
    eventually("each node has a proxy of the other", || {
        fa.status().group_proxies == 1 && fb.status().group_proxies == 1
    });
    let stop = Arc::new(AtomicBool::new(false));
    let fast = finishing(here, stop.clone());
    // The remote node's only member leaves and joins again every few
    // records, while records are on their way to it.
    let remote = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some((name, event)) = next_record(&mut churn, POLL) {
                    churn.ack(event).unwrap();
                    got.push(name);
                    if got.len() % 3 == 0 {
                        churn.unsubscribe(sub).unwrap();
                        sub = churn.join_group("g", "app.step >= 0").unwrap();
                    }
                }
            }
            got
        })
    };
    let mut producer = client(&pa, "producer");
    let n = 80;
    offer_all(&mut producer, n);
    for i in 0..n {
        let id = producer.submit_withdraw(&format!("rec/{i}")).unwrap();
        assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
    }
    stop.store(true, Ordering::SeqCst);
    let got = [fast.join().unwrap(), remote.join().unwrap()];
    let t = tally(&got);
    assert_eq!(t.len(), n, "every record finished");
    assert!(t.values().all(|&k| k == 1), "once each: {t:?}");
}

#[test]
fn a_record_s_object_is_not_withdrawn_before_the_remote_member_finished() {
    let (pa, fa) = node(&[]);
    let (pb, fb) = node(&[&fa]);
    let mut remote = member(&pb, "remote");
    eventually("the producer's node has the remote node's proxy", || {
        fa.status().group_proxies == 1
    });
    let mut producer = client(&pa, "producer");
    // Read remotely (record 4 is above the eager limit).
    let i = 4;
    let name = format!("rec/{i}");
    producer
        .offer(&name, &pattern(i as u64, size_of(i)), step(i))
        .unwrap();
    let (got, event) = next_record(&mut remote, PATIENT).expect("the record");
    assert_eq!(got, name);
    let id = producer.submit_withdraw(&name).unwrap();
    assert!(
        matches!(
            producer.wait_keeping(id, Some(Duration::from_millis(500))),
            Err(ClientError::Timeout)
        ),
        "the withdrawal waits for the remote member"
    );
    remote.ack(event).unwrap();
    assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
    assert_eq!(fa.status().forwarded_records, 1);
    assert_eq!(fb.status().pulls, 1);
}

#[test]
fn a_saturated_group_shares_records_by_member_count() {
    let (pb, fb) = node(&[]);
    // Three members on the remote node before the nodes link: it tells
    // its count once.
    let mut there: Vec<Client> = (0..3).map(|k| member(&pb, &format!("b{k}"))).collect();
    let (pa, fa) = node(&[&fb]);
    let mut here = member(&pa, "a0");
    eventually("each node has a proxy of the other", || {
        fa.status().group_proxies == 1 && fb.status().group_proxies == 1
    });
    let window = cdo::engine::GROUP_WINDOW as usize;
    let mut producer = client(&pa, "producer");
    // Nobody finishes: a window per member, wherever it is.
    let n = 4 * window;
    offer_all(&mut producer, n);
    let mut counts = Vec::new();
    for c in std::iter::once(&mut here).chain(there.iter_mut()) {
        let mut k = 0;
        while k < window {
            next_record(c, PATIENT).expect("a full window");
            k += 1;
        }
        assert!(
            next_record(c, Duration::from_millis(300)).is_none(),
            "no more than a window"
        );
        counts.push(k);
    }
    assert_eq!(counts, [window; 4]);
    assert_eq!(fa.status().forwarded_records, 3 * window as u64);
    assert_eq!(pa.stats().queued_records, 0);
}

/// The hand-shake hydro's consumers use across nodes: the producer
/// requires an acknowledgement, then offers a record and 32 more objects in
/// the same batch; the member on the other node finishes the record, offers
/// the acknowledgement and leaves at once. Each demand gets its
/// acknowledgement. The objects withdrawn after each round reach the
/// producer's federation after their withdrawal: its exports of them must
/// fail at once, not stall the node for a second each (which this test
/// catches). That the require reaches the member's node before the record
/// (so that the member's leave waits) is a race this test seldom loses;
/// hydro's federated test showed it under load.
#[test]
fn an_acknowledgement_required_before_its_record_is_held_until_read() {
    let (pa, fa) = node(&[]);
    let (pb, _fb) = node(&[&fa]);
    let mut producer = client(&pa, "producer");
    for i in 0..50 {
        let mut remote = member(&pb, &format!("remote{i}"));
        eventually("the producer's node has the remote node's proxy", || {
            fa.status().group_proxies == 1
        });
        let (name, ack) = (format!("rec/{i}"), format!("ack/{i}"));
        let (left_tx, left) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn({
            let ack = ack.clone();
            move || {
                let (got, event) = next_record(&mut remote, PATIENT).expect("the record");
                remote.ack(event).unwrap();
                remote.offer(&ack, &[i as u8], Attributes::new()).unwrap();
                remote.leave(PATIENT).unwrap();
                let _ = left_tx.send(());
                got
            }
        });
        let required = producer.submit_require(&ack).unwrap();
        let offered = producer
            .submit_offer(&name, size_of(i) as u64, step(i), |b| {
                b.copy_from_slice(&pattern(i as u64, size_of(i)))
            })
            .unwrap();
        // Offers right behind them keep the producer's federation busy
        // with notices (each one exported) as the require and the record
        // come.
        let busy: Vec<String> = (0..32).map(|k| format!("busy/{i}/{k}")).collect();
        let mut ids: Vec<_> = busy
            .iter()
            .map(|b| {
                producer
                    .submit_offer(b, 64, Attributes::new(), |bytes| bytes.fill(1))
                    .unwrap()
            })
            .collect();
        producer.flush().unwrap();
        ids.extend([required, offered]);
        for id in ids {
            assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
        }
        // The producer demands late, as hydro's does: after the member has
        // left or, held as it must be, has waited a while to.
        let _ = left.recv_timeout(Duration::from_millis(500));
        let view = producer
            .demand(&format!("ack/{i}"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("acknowledgement {i}: {e}"));
        assert_eq!(*view, [i as u8]);
        drop(view);
        assert_eq!(consumer.join().unwrap(), name);
        let names: Vec<&str> = busy.iter().chain([&name]).map(String::as_str).collect();
        producer.withdraw_many(&names).unwrap();
        eventually("the member's node has no member left", || {
            fa.status().group_proxies == 0
        });
    }
}

/// A record offered and withdrawn in one batch reaches the member on the
/// other node all the same, small (inline) or large (read remotely): the
/// producer's federation sees the offer's event only after the
/// withdrawal, so it exports the object from the record's own view, which
/// still holds it.
#[test]
fn a_record_withdrawn_before_its_export_still_reaches_the_remote_member() {
    let (pa, fa) = node(&[]);
    let (pb, _fb) = node(&[&fa]);
    let mut remote = member(&pb, "remote");
    eventually("the producer's node has the remote node's proxy", || {
        fa.status().group_proxies == 1
    });
    let mut producer = client(&pa, "producer");
    for i in 0..10 {
        let name = format!("rec/{i}");
        let offered = producer
            .submit_offer(&name, size_of(i) as u64, step(i), |b| {
                b.copy_from_slice(&pattern(i as u64, size_of(i)))
            })
            .unwrap();
        let withdrawn = producer.submit_withdraw(&name).unwrap();
        producer.flush().unwrap();
        assert!(matches!(
            producer.wait(offered, Some(PATIENT)),
            Ok(Reply::Ok)
        ));
        let (got, event) = next_record(&mut remote, PATIENT).expect("the record");
        assert_eq!(got, name);
        remote.ack(event).unwrap();
        assert!(matches!(
            producer.wait(withdrawn, Some(PATIENT)),
            Ok(Reply::Ok)
        ));
    }
    assert_eq!(fa.status().forwarded_records, 10);
}
