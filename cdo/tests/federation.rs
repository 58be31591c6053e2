//! Pool managers on two nodes as one pool: a consumer on one node demands
//! what a producer on the other offered, with the same client code as on
//! one node. The nodes are two managers on 127.0.0.1 (in this process, or
//! one in a child process that the test can stop), and two network
//! namespaces joined by a bridge (as root with `ip`; skipped with a
//! printed reason otherwise). Fabric provider: tcp (`tcp;ofi_rxm`).

mod ipc_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdo::app::{Librarian, Pool, Served};
use cdo::archive::Archive;
use cdo::ipc::client::{Client, ClientConfig, ClientError, Notice, Reply};
use cdo::ipc::federation::{self, Federation, FederationConfig};
use cdo::ipc::manager::{FaultPolicy, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{Attributes, ErrorCode};
use cdo::{DuplicateOffers, EventKind, Value};
use ipc_common::{
    client, code, eventually, federated_node, federated_node_with, linked, manager_with, pattern,
};
use netns_cluster::{skip_reason, Cluster};

const TOKEN: &str = "federation-test-token";
/// Long enough never to expire in a test that does not want it to.
const PATIENT: Duration = Duration::from_secs(60);

fn node(peers: Vec<String>, token: &str, remote_timeout: Duration) -> (ManagerHandle, Federation) {
    federated_node(FaultPolicy::FailFast, peers, token, remote_timeout)
}

fn data(reply: Result<Reply, ClientError>) -> cdo::ipc::client::View {
    match reply {
        Ok(Reply::Data(v)) => v,
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn a_consumer_demands_what_a_producer_on_another_node_offers() {
    let (pa, fa) = node(vec![], TOKEN, PATIENT);
    let (pb, fb) = node(vec![fa.local_addr().to_string()], TOKEN, PATIENT);
    linked(&[&fa, &fb]);
    assert!(fa.status().fabric.contains("tcp"), "{}", fa.status().fabric);
    let mut producer = client(&pa, "producer");
    let mut consumer = client(&pb, "consumer");

    // Demanded before anything is offered anywhere: served once it is.
    let early = consumer.submit_demand("early").unwrap();
    consumer.flush().unwrap();
    let sizes = [1usize, 4096, (3 << 20) + 5];
    let mut attrs = Attributes::new();
    attrs.insert("app.step".into(), Value::Int(7));
    for (i, &n) in sizes.iter().enumerate() {
        producer
            .offer(&format!("obj/{i}"), &pattern(i as u64, n), attrs.clone())
            .unwrap();
    }
    producer
        .offer("early", &pattern(99, 10_000), Attributes::new())
        .unwrap();
    let v = data(consumer.wait(early, Some(PATIENT)));
    assert!(*v == pattern(99, 10_000)[..]);
    drop(v);

    // Known here by now or not: every byte arrives, with the attributes.
    for (i, &n) in sizes.iter().enumerate() {
        let v = consumer.demand(&format!("obj/{i}"), PATIENT).unwrap();
        assert!(*v == pattern(i as u64, n)[..], "object {i} differs");
        assert_eq!(v.attrs().get("app.step"), Some(&Value::Int(7)));
    }
    eventually("the reads are counted", || fb.status().pulls == 4);
    let s = fb.status();
    assert_eq!(s.pulled_bytes, sizes.iter().sum::<usize>() as u64 + 10_000);
    assert_eq!(s.failed_pulls, 0);
    assert_eq!(fa.status().exported, 4);

    // The bytes crossed once: a second demand is served by the copy here.
    let held = consumer.demand("obj/2", PATIENT).unwrap();
    assert_eq!(fb.status().pulls, 4);

    // The producer's withdrawal completes (the consumer's copy is its own
    // node's business), and the name leaves the other node too.
    producer.withdraw("obj/2").unwrap();
    eventually("the withdrawal reaches the other node", || {
        fb.status().imported == 3
    });
    assert!(
        *held == pattern(2, sizes[2])[..],
        "a held view never changes"
    );
    drop(held);
    consumer.flush().unwrap();
    eventually("the copy is withdrawn once released", || {
        pb.stats().objects == 3
    });
    let e = consumer
        .demand("obj/2", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
    assert_eq!(fa.status().exported, 3);
}

#[test]
fn small_objects_travel_inline_and_large_ones_by_remote_read() {
    let (pa, fa) = node(vec![], TOKEN, PATIENT);
    let (pb, fb) = node(vec![fa.local_addr().to_string()], TOKEN, PATIENT);
    linked(&[&fa, &fb]);
    let mut producer = client(&pa, "producer");
    let mut consumer = client(&pb, "consumer");
    let limit = federation::DEFAULT_EAGER_MAX;
    // Both sides of the eager limit; the last ones are read remotely.
    let sizes = [0, 1, 4096, limit - 1, limit, limit + 1, 1 << 20];
    let mut attrs = Attributes::new();
    attrs.insert("app.kind".into(), Value::Str("eager".into()));
    for (i, &n) in sizes.iter().enumerate() {
        producer
            .offer(&format!("o/{i}"), &pattern(i as u64 + 5, n), attrs.clone())
            .unwrap();
    }
    for (i, &n) in sizes.iter().enumerate() {
        let v = consumer.demand(&format!("o/{i}"), PATIENT).unwrap();
        assert_eq!(v.len(), n);
        assert!(*v == pattern(i as u64 + 5, n)[..], "object {i} differs");
        assert_eq!(v.attrs().get("app.kind"), attrs.get("app.kind"));
    }
    eventually("the reads are counted", || {
        fb.status().pulls == sizes.len() as u64
    });
    let s = fb.status();
    assert_eq!(s.inline_pulls, 5, "{s:?}");
    assert_eq!(s.pulled_bytes, sizes.iter().sum::<usize>() as u64);
    assert_eq!(s.failed_pulls, 0);

    // An inline object's withdrawal takes the copy on the other node with
    // it (and nothing here waits for that).
    consumer.flush().unwrap();
    producer.withdraw("o/2").unwrap();
    eventually("the federation forgets the export", || {
        fa.status().exported == sizes.len() - 1
    });
    eventually("the copy is withdrawn there too", || {
        fb.status().imported == sizes.len() - 1 && pb.stats().objects == sizes.len() as u64 - 1
    });
    let e = consumer
        .demand("o/2", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
}

/// A name withdrawn and offered again at once, in one batch, reaches the
/// other node in that order (the offer is handed to the federation in the
/// manager's request path, the withdrawal on its connection): each round
/// the consumer there reads the newest bytes.
#[test]
fn a_name_withdrawn_and_offered_again_at_once_reaches_the_other_node_anew() {
    let (pa, fa) = node(vec![], TOKEN, PATIENT);
    let (pb, fb) = node(vec![fa.local_addr().to_string()], TOKEN, PATIENT);
    linked(&[&fa, &fb]);
    let mut producer = client(&pa, "producer");
    let mut consumer = client(&pb, "consumer");
    // Small ones, then a large one (after a large one, the federation
    // exports the name again only once the peers answered its withdrawal).
    for (round, size) in [64usize, 4096, 64, 100_000].into_iter().enumerate() {
        let bytes = pattern(round as u64 + 40, size);
        let mut ids = Vec::new();
        if round > 0 {
            ids.push(producer.submit_withdraw("again").unwrap());
        }
        ids.push(
            producer
                .submit_offer("again", size as u64, Attributes::new(), |dst| {
                    dst.copy_from_slice(&bytes)
                })
                .unwrap(),
        );
        producer.flush().unwrap();
        for id in ids {
            assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
        }
        // The older copy there goes when the withdrawal arrives.
        eventually("the older copy is withdrawn", || pb.stats().objects == 0);
        let v = consumer.demand("again", PATIENT).unwrap();
        assert!(
            *v == bytes[..],
            "round {round}: the bytes of an older offer"
        );
        drop(v);
        consumer.flush().unwrap();
    }
    assert_eq!(fa.status().exported, 1);
}

/// Under versions, the other node sees the newest version on offer here,
/// and the one left when the newest is withdrawn: bytes sent inline and
/// bytes read remotely alike.
///
/// Before, the first version's export stood for the name: the other node
/// got it after a newer one was offered, and lost the name when it was
/// withdrawn although another version was still on offer.
#[test]
fn the_other_node_sees_the_newest_version_on_offer() {
    let versions = || cdo::PoolConfig {
        duplicates: DuplicateOffers::Version,
        ..Default::default()
    };
    let (pa, fa) = federated_node_with(versions(), vec![], TOKEN, PATIENT);
    let peers = vec![fa.local_addr().to_string()];
    let (pb, fb) = federated_node_with(versions(), peers, TOKEN, PATIENT);
    linked(&[&fa, &fb]);
    let mut consumer = client(&pb, "consumer");
    // What the consumer gets of `name` within a short wait.
    let mut demanded = |name: &str| {
        let got = consumer
            .demand(name, Duration::from_millis(200))
            .map(|v| v.to_vec());
        consumer.flush().unwrap();
        got.ok()
    };
    for size in [64, federation::DEFAULT_EAGER_MAX + 1] {
        let name = format!("v/{size}");
        let (old, new) = (pattern(1, size), pattern(2, size));
        let mut first = client(&pa, "first");
        let mut second = client(&pa, "second");
        first.offer(&name, &old, Attributes::new()).unwrap();
        second.offer(&name, &new, Attributes::new()).unwrap();
        eventually("the newest version reaches the other node", || {
            demanded(&name).as_ref() == Some(&new)
        });
        second.withdraw(&name).unwrap();
        eventually("the version left reaches the other node", || {
            demanded(&name).as_ref() == Some(&old)
        });
        first.withdraw(&name).unwrap();
        eventually("the name leaves the other node", || {
            demanded(&name).is_none()
        });
    }
    assert_eq!(fa.status().exported, 0);
    drop(pb);
}

#[test]
fn a_require_of_a_name_offered_nowhere_holds_its_later_offer_on_another_node() {
    let (pa, fa) = node(Vec::new(), TOKEN, PATIENT);
    let (pb, fb) = node(vec![fa.local_addr().to_string()], TOKEN, PATIENT);
    linked(&[&fa, &fb]);
    // Small (inline) and large (read remotely).
    for (name, size) in [("later/small", 100), ("later/large", 200_000)] {
        let mut consumer = client(&pb, "consumer");
        consumer.require(name).unwrap();
        eventually("the producer's node holds the name", || {
            pa.stats().requires == 1
        });
        let mut producer = client(&pa, "producer");
        producer
            .offer(name, &pattern(7, size), Attributes::new())
            .unwrap();
        // Withdrawn at once, before anyone here demanded it: the require
        // kept it for the consumer's node, which read it.
        producer.withdraw(name).unwrap();
        assert_eq!(pa.stats().requires, 0, "the hold ended");
        let v = consumer.demand(name, PATIENT).unwrap();
        assert!(*v == pattern(7, size)[..], "{name}");
        drop(v);
        consumer.leave(PATIENT).unwrap();
        producer.leave(PATIENT).unwrap();
    }
    assert_eq!(fb.status().pulls, 2);
}

/// Three nodes of `policy`: A, B dialling A, C dialling both.
fn three_nodes(
    policy: FaultPolicy,
    first: Option<String>,
    remote_timeout: Duration,
) -> Vec<(ManagerHandle, Federation)> {
    let mut nodes = Vec::new();
    let mut peers: Vec<String> = first.into_iter().collect();
    for _ in 0..3 - peers.len() {
        let n = federated_node(policy, peers.clone(), TOKEN, remote_timeout);
        peers.push(n.1.local_addr().to_string());
        nodes.push(n);
    }
    nodes
}

/// A large object (read remotely) and a small one (inline).
const COPIED: [(&str, usize); 2] = [("copied/large", (2 << 20) + 7), ("copied/small", 3000)];

#[test]
fn a_lost_node_s_objects_come_from_a_second_replica_under_best_effort_only() {
    for policy in [FaultPolicy::BestEffort, FaultPolicy::FailFast] {
        let nodes = three_nodes(policy, None, PATIENT);
        let [(pa, fa), (pb, fb), (pc, fc)] = <[_; 3]>::try_from(nodes).ok().unwrap();
        linked(&[&fa, &fb, &fc]);
        let mut watch = client(&pc, "watch");
        watch
            .subscribe("*", EventKind::Offer | EventKind::Withdraw, false)
            .unwrap();
        let mut producer = client(&pa, "producer");
        for (i, (name, size)) in COPIED.into_iter().enumerate() {
            producer
                .offer(name, &pattern(i as u64, size), Attributes::new())
                .unwrap();
        }
        // B reads its copies.
        let mut reader = client(&pb, "reader");
        for (i, (name, size)) in COPIED.into_iter().enumerate() {
            let v = reader.demand(name, PATIENT).unwrap();
            assert!(*v == pattern(i as u64, size)[..]);
        }
        reader.flush().unwrap();
        eventually("B counts its reads", || fb.status().pulls == 2);
        eventually("C heard of both", || fc.status().imported == 2);

        // A's node leaves the federation (its links end); its manager
        // and producer stay, alone.
        fa.shutdown();
        eventually("B and C forget A", || {
            [&fb, &fc]
                .iter()
                .all(|f| f.status().peers.len() == 1 && f.status().imported == 0)
        });
        let mut consumer = client(&pc, "consumer");
        for (i, (name, size)) in COPIED.into_iter().enumerate() {
            match policy {
                FaultPolicy::BestEffort => {
                    let v = consumer.demand(name, PATIENT).unwrap();
                    assert!(*v == pattern(i as u64, size)[..], "{name} differs");
                }
                FaultPolicy::FailFast => {
                    let e = consumer.demand(name, PATIENT).unwrap_err();
                    assert_eq!(code(e), ErrorCode::RemoteFailed, "{name}");
                }
            }
        }
        match policy {
            FaultPolicy::BestEffort => {
                eventually("C counts its reads", || fc.status().pulls == 2);
                let s = fc.status();
                assert_eq!((s.replica_pulls, s.failed_pulls), (2, 0));
                assert_eq!(s.inline_pulls, 1);
                // B kept its copies; C's copies are its own now.
                assert_eq!(pb.stats().objects, 2);
                assert_eq!(pc.stats().objects, 2);
            }
            FaultPolicy::FailFast => {
                assert_eq!(fc.status().pulls, 0);
                eventually("B withdrew the copies of A's objects", || {
                    pb.stats().objects == 0
                });
                assert_eq!(pc.stats().objects, 0);
            }
        }
        // C heard of A's objects once, offered and then withdrawn with
        // A's links; of the copies, nothing.
        let mut heard = Vec::new();
        for _ in 0..4 {
            match watch.next_notice(Some(PATIENT)) {
                Ok(Some(Notice::Event(e))) => heard.push((e.kind, e.name)),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        let more = watch.next_notice(Some(Duration::from_millis(100)));
        assert!(
            matches!(more, Ok(None) | Err(ClientError::Timeout)),
            "{more:?}"
        );
        heard.sort_by_key(|(kind, name)| (*kind == EventKind::Withdraw, name.clone()));
        let want: Vec<(EventKind, String)> = [EventKind::Offer, EventKind::Withdraw]
            .into_iter()
            .flat_map(|k| COPIED.map(|(name, _)| (k, name.to_string())))
            .collect();
        assert_eq!(heard, want, "{policy:?}");
        drop((producer, pa));
    }
}

#[test]
fn a_require_of_a_lost_node_s_object_takes_a_peer_s_copy_under_best_effort() {
    let nodes = three_nodes(FaultPolicy::BestEffort, None, PATIENT);
    let [(pa, fa), (pb, fb), (pc, fc)] = <[_; 3]>::try_from(nodes).ok().unwrap();
    linked(&[&fa, &fb, &fc]);
    let (name, size) = ("required/large", 300_000);
    let mut producer = client(&pa, "producer");
    producer
        .offer(name, &pattern(5, size), Attributes::new())
        .unwrap();
    let mut reader = client(&pb, "reader");
    drop(reader.demand(name, PATIENT).unwrap());
    reader.flush().unwrap();
    eventually("B counts its read", || fb.status().pulls == 1);
    fa.shutdown();
    eventually("C forgets A", || {
        fc.status().peers.len() == 1 && fc.status().imported == 0
    });
    // The require alone takes the copy here, before any demand.
    let mut consumer = client(&pc, "consumer");
    consumer.require(name).unwrap();
    eventually("C reads B's copy", || fc.status().replica_pulls == 1);
    let v = consumer.demand(name, PATIENT).unwrap();
    assert!(*v == pattern(5, size)[..]);
    drop((producer, pa));
}

#[test]
fn a_stopped_node_s_large_object_is_read_from_a_second_replica_under_best_effort() {
    let sizes = [8 << 20, 3000];
    let (mut child, addr) = producer_child(&sizes);
    let nodes = three_nodes(
        FaultPolicy::BestEffort,
        Some(addr),
        Duration::from_millis(1500),
    );
    let [(pb, fb), (pc, fc)] = <[_; 2]>::try_from(nodes).ok().unwrap();
    assert_eq!(child.recv(), "offered");
    eventually("both know the offers", || {
        fb.status().imported == 2 && fc.status().imported == 2
    });
    let mut reader = client(&pb, "reader");
    for (i, &n) in sizes.iter().enumerate() {
        let v = reader.demand(&format!("obj/{i}"), PATIENT).unwrap();
        assert!(*v == pattern(i as u64, n)[..]);
    }
    reader.flush().unwrap();
    eventually("B counts its reads", || fb.status().pulls == 2);

    // A stops: its links stay up, its memory cannot be read. C's read of
    // the large object fails within the remote timeout; B's copy serves
    // it. The small one came with its offer.
    child.stop();
    let mut consumer = client(&pc, "consumer");
    for (i, &n) in sizes.iter().enumerate() {
        let v = consumer.demand(&format!("obj/{i}"), PATIENT).unwrap();
        assert!(*v == pattern(i as u64, n)[..], "object {i} differs");
    }
    // Counted once the copy is offered, maybe just after it served.
    eventually("C counts its reads", || fc.status().pulls == 2);
    let s = fc.status();
    assert_eq!((s.replica_pulls, s.failed_pulls), (1, 1), "{s:?}");
    child.signal(nix::sys::signal::Signal::SIGCONT);
    drop(pc);
}

#[test]
fn a_lost_node_s_object_comes_from_a_librarian_s_archive_under_best_effort_only() {
    let (name, size) = ("archived/large", (1 << 20) + 3);
    let bytes = pattern(11, size);
    for policy in [FaultPolicy::BestEffort, FaultPolicy::FailFast] {
        let nodes = three_nodes(policy, None, PATIENT);
        let [(pa, fa), (pb, fb), (pc, fc)] = <[_; 3]>::try_from(nodes).ok().unwrap();
        linked(&[&fa, &fb, &fc]);
        // A librarian on B, whose archive holds the object; nobody copied it.
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        archive.store(name, &Attributes::new(), &bytes).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, served) = std::sync::mpsc::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let serving = {
            let stop = stop.clone();
            let config = ClientConfig::new(pb.endpoint().clone(), "librarian");
            std::thread::spawn(move || {
                let pool = Pool::connect_with(&config).unwrap();
                let mut librarian =
                    Librarian::start(&pool, "name ~ '^archived/'", archive).unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    if let Some(s) = librarian.next_timeout(Duration::from_millis(50)).unwrap() {
                        tx.send(s).unwrap();
                    }
                }
            })
        };
        ready.recv_timeout(PATIENT).unwrap();
        let mut producer = client(&pa, "producer");
        producer.offer(name, &bytes, Attributes::new()).unwrap();
        eventually("C heard of it", || fc.status().imported == 1);
        fa.shutdown();
        eventually("B and C forget A", || {
            [&fb, &fc]
                .iter()
                .all(|f| f.status().peers.len() == 1 && f.status().imported == 0)
        });
        let mut consumer = client(&pc, "consumer");
        match policy {
            FaultPolicy::BestEffort => {
                let v = consumer.demand(name, PATIENT).unwrap();
                assert!(*v == bytes[..], "the archived bytes differ");
                // Offered on B for C's seek, withdrawn once C had its copy.
                let offered = Served::Offered {
                    name: name.into(),
                    bytes: size as u64,
                };
                assert_eq!(served.recv_timeout(PATIENT).unwrap(), offered);
                let withdrawn = Served::Withdrawn { name: name.into() };
                assert_eq!(served.recv_timeout(PATIENT).unwrap(), withdrawn);
                eventually("the copy on C goes with it", || pc.stats().objects == 0);
                assert_eq!(*v, bytes[..], "a held view never changes");
            }
            FaultPolicy::FailFast => {
                let e = consumer.demand(name, PATIENT).unwrap_err();
                assert_eq!(code(e), ErrorCode::RemoteFailed);
                assert_eq!(pb.stats().objects, 0, "the librarian offered nothing");
            }
        }
        stop.store(true, Ordering::SeqCst);
        serving.join().unwrap();
        drop((producer, pa));
    }
}

#[test]
fn a_read_cut_by_a_stopped_node_shows_the_consumer_no_partial_object() {
    let sizes = [64 << 20];
    for policy in [FaultPolicy::BestEffort, FaultPolicy::FailFast] {
        let (mut child, addr) = producer_child(&sizes);
        let nodes = three_nodes(policy, Some(addr), Duration::from_millis(1500));
        let [(pb, fb), (pc, fc)] = <[_; 2]>::try_from(nodes).ok().unwrap();
        assert_eq!(child.recv(), "offered");
        eventually("both know the offer", || {
            fb.status().imported == 1 && fc.status().imported == 1
        });
        let mut reader = client(&pb, "reader");
        let v = reader.demand("obj/0", PATIENT).unwrap();
        assert!(*v == pattern(0, sizes[0])[..]);
        drop(v);
        reader.flush().unwrap();
        // The producer's node stops while C reads (or is about to, or has
        // just read: whichever it is, C's consumer sees the whole object
        // or, under fail-fast, a typed error, never part of it).
        let mut consumer = client(&pc, "consumer");
        let id = consumer.submit_demand("obj/0").unwrap();
        consumer.flush().unwrap();
        child.stop();
        match (policy, consumer.wait(id, Some(PATIENT))) {
            (_, Ok(Reply::Data(v))) => {
                assert!(
                    *v == pattern(0, sizes[0])[..],
                    "{policy:?}: the bytes differ"
                );
                assert_eq!(pc.stats().objects, 1);
            }
            (FaultPolicy::FailFast, Err(e)) => {
                assert_eq!(code(e), ErrorCode::RemoteFailed);
                assert_eq!(pc.stats().objects, 0, "nothing of it is on offer here");
            }
            (policy, other) => panic!("{policy:?}: {other:?}"),
        }
        child.signal(nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn an_eager_limit_beyond_one_peer_message_is_refused() {
    let pm = manager_with(ManagerConfig {
        token: Some(TOKEN.into()),
        ..ManagerConfig::default()
    });
    let mut config = FederationConfig::new("127.0.0.1:0".parse().unwrap(), vec![], TOKEN.into());
    config.eager_max = federation::EAGER_MAX_LIMIT + 1;
    let e = federation::start(config, &pm).err().expect("refused");
    assert!(
        matches!(e, federation::FederationError::Config { .. }),
        "{e}"
    );
}

#[test]
fn a_peer_without_the_token_is_refused_and_says_why() {
    let (_pa, fa) = node(vec![], TOKEN, PATIENT);
    let (_pc, fc) = node(vec![fa.local_addr().to_string()], "not-the-token", PATIENT);
    eventually("both sides log the refusal", || {
        !fa.status().refused.is_empty() && !fc.status().refused.is_empty()
    });
    let a = fa.status();
    assert!(a.refused[0].contains("token"), "{:?}", a.refused);
    assert!(a.peers.is_empty());
    let c = fc.status();
    // The listener proves itself first: the dialler finds it cannot.
    assert!(c.refused[0].contains("did not prove"), "{:?}", c.refused);
    assert!(c.peers.is_empty());
}

#[test]
fn a_garbage_speaking_peer_is_refused() {
    let (_pa, fa) = node(vec![], TOKEN, PATIENT);
    let mut s = std::net::TcpStream::connect(fa.local_addr()).unwrap();
    s.write_all(&[5, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    eventually("the refusal is logged", || !fa.status().refused.is_empty());
    assert!(fa.status().peers.is_empty());
}

/// A node in a child process: this test binary run as `federation_child`.
struct ChildNode {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

const ROLE: &str = "CDO_FEDERATION_TEST_ROLE";

impl ChildNode {
    /// Runs `role` with `env`, here or in node `(cluster, i)`.
    fn spawn(node: Option<(&Cluster, usize)>, role: &str, env: &[(&str, String)]) -> ChildNode {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match node {
            Some((cluster, i)) => cluster.command(i, exe),
            None => Command::new(exe),
        };
        cmd.args([
            "federation_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env("CDO_WORKFLOW_TOKEN", TOKEN)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("the child starts");
        ChildNode {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn recv(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the child ended early");
            if let Some(at) = line.find("@@") {
                return line[at + 2..].trim().to_string();
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Stops the child and waits until every thread of it has stopped.
    fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        eventually("every thread of the child stops", || {
            std::fs::read_dir(&tasks).unwrap().all(|t| {
                let stat =
                    std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                // The state follows the command's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        });
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sizes the producer child offers, as `name=bytes` pairs.
fn sizes_env(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The child's side: `producer` offers `obj/i` of each size in
/// `FED_SIZES` and withdraws on command; `consumer` demands them all and
/// checks every byte. Both run a manager and its federation (from the
/// `CDO_FEDERATION_*` variables) and use the ordinary client calls.
#[test]
fn federation_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let token = std::env::var("CDO_WORKFLOW_TOKEN").unwrap();
    let pm = manager_with(ManagerConfig {
        token: Some(token.clone()),
        ..ManagerConfig::default()
    });
    let mut config = FederationConfig::from_env(Some(&token)).unwrap().unwrap();
    config.fabric.provider = Some("tcp".into());
    let fed = federation::start(config, &pm).unwrap();
    let sizes: Vec<usize> = std::env::var("FED_SIZES")
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let mut c: Client = client(&pm, &role);
    ipc_common::say(&format!("listening {}", fed.local_addr()));
    match role.as_str() {
        "producer" => {
            for (i, &n) in sizes.iter().enumerate() {
                c.offer(
                    &format!("obj/{i}"),
                    &pattern(i as u64, n),
                    Attributes::new(),
                )
                .unwrap();
            }
            if std::env::var_os("FED_CUT").is_some() {
                c.offer("cut", &pattern(77, 1 << 20), Attributes::new())
                    .unwrap();
            }
            eventually("a peer links", || !fed.status().peers.is_empty());
            ipc_common::say("offered");
            loop {
                let line = ipc_common::hear();
                let Some(name) = line.strip_prefix("withdraw ") else {
                    break;
                };
                c.withdraw(name).unwrap();
                ipc_common::say(&format!("withdrawn {name}"));
            }
        }
        "consumer" => {
            for (i, &n) in sizes.iter().enumerate() {
                let v = c.demand(&format!("obj/{i}"), PATIENT).unwrap();
                assert!(*v == pattern(i as u64, n)[..], "object {i} differs");
            }
            // The node counts a read once its copy is offered, which may
            // be just after the demand was served.
            eventually("the reads are counted", || {
                fed.status().pulls == sizes.len() as u64
            });
            let s = fed.status();
            ipc_common::say(&format!(
                "pulled {} objects, {} bytes over {}",
                s.pulls, s.pulled_bytes, s.fabric
            ));
            loop {
                let line = ipc_common::hear();
                if let Some(n) = line.strip_prefix("wait-imports ") {
                    let n: usize = n.parse().unwrap();
                    eventually("the offers are known", || fed.status().imported >= n);
                    ipc_common::say("imported");
                } else if let Some(name) = line.strip_prefix("demand ") {
                    match c.demand(name, PATIENT) {
                        Ok(v) => ipc_common::say(&format!("got {}", v.len())),
                        Err(ClientError::Pool { code, .. }) => {
                            ipc_common::say(&format!("error {code:?}"))
                        }
                        Err(e) => ipc_common::say(&format!("failed {e}")),
                    }
                } else {
                    break;
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A producer node in a child process on 127.0.0.1 and a consumer node
/// here, linked.
fn producer_child(sizes: &[usize]) -> (ChildNode, String) {
    let mut child = ChildNode::spawn(
        None,
        "producer",
        &[
            ("CDO_FEDERATION_LISTEN", "127.0.0.1:0".into()),
            ("FED_SIZES", sizes_env(sizes)),
        ],
    );
    let addr = child
        .recv()
        .strip_prefix("listening ")
        .expect("the child says where it listens")
        .to_string();
    (child, addr)
}

#[test]
fn a_stopped_peer_fails_the_demand_with_a_typed_error_and_no_partial_object() {
    let sizes = [8 << 20];
    let (mut child, addr) = producer_child(&sizes);
    let (pb, fb) = node(vec![addr], TOKEN, Duration::from_millis(1500));
    assert_eq!(child.recv(), "offered");
    eventually("the offer is known here", || fb.status().imported == 1);
    child.stop();
    let mut consumer = client(&pb, "consumer");
    // The consumer would wait a minute; the remote timeout fails it first.
    let e = consumer.demand("obj/0", PATIENT).unwrap_err();
    assert_eq!(code(e), ErrorCode::RemoteFailed);
    assert_eq!(fb.status().failed_pulls, 1);
    assert_eq!(pb.stats().objects, 0, "nothing of it is on offer here");
    // Again, with a fresh fabric endpoint: the same typed error.
    let e = consumer.demand("obj/0", PATIENT).unwrap_err();
    assert_eq!(code(e), ErrorCode::RemoteFailed);
    assert_eq!(pb.stats().objects, 0);
    child.signal(nix::sys::signal::Signal::SIGCONT);
    // Awake again, the producer's node serves the same demand.
    let v = consumer.demand("obj/0", PATIENT).unwrap();
    assert!(*v == pattern(0, sizes[0])[..]);
}

#[test]
fn a_withdrawal_waits_until_the_other_node_is_done_reading() {
    let (pa, fa) = node(vec![], TOKEN, PATIENT);
    // Read remotely (beyond the eager limit), and inline.
    let sizes = [federation::DEFAULT_EAGER_MAX + 1, 4096];
    let mut consumer_node = ChildNode::spawn(
        None,
        "consumer",
        &[
            ("CDO_FEDERATION_LISTEN", "127.0.0.1:0".into()),
            ("CDO_FEDERATION_PEERS", fa.local_addr().to_string()),
            ("FED_SIZES", sizes_env(&sizes)),
        ],
    );
    assert!(consumer_node.recv().starts_with("listening"));
    eventually("the other node links", || fa.status().peers.len() == 1);
    let mut producer = client(&pa, "producer");
    for (i, &n) in sizes.iter().enumerate() {
        producer
            .offer(
                &format!("obj/{i}"),
                &pattern(i as u64, n),
                Attributes::new(),
            )
            .unwrap();
    }
    let total = sizes.iter().sum::<usize>();
    assert!(consumer_node
        .recv()
        .starts_with(&format!("pulled 2 objects, {total} bytes")));
    consumer_node.stop();
    // Nothing of this node's memory is read for an inline object: its
    // withdrawal waits for no peer, even a stopped one.
    producer.withdraw("obj/1").unwrap();
    // The other node is stopped: it cannot say that no read is in flight,
    // so the withdrawal waits (the remote timeout is a minute).
    let id = producer.submit_withdraw("obj/0").unwrap();
    let waited = producer.wait_keeping(id, Some(Duration::from_millis(300)));
    assert!(matches!(waited, Err(ClientError::Timeout)), "{waited:?}");
    consumer_node.signal(nix::sys::signal::Signal::SIGCONT);
    assert!(matches!(producer.wait(id, Some(PATIENT)), Ok(Reply::Ok)));
    consumer_node.send("");
}

#[test]
fn a_consumer_in_one_namespace_reads_from_a_producer_in_another_until_the_link_is_cut() {
    if let Some(reason) = skip_reason(&[]) {
        eprintln!("skipped: {reason}");
        return;
    }
    // The producer's node and the consumer's.
    let cluster = Cluster::new("cdofed", 2);
    let (ap, ac) = (cluster.addr(0), cluster.addr(1));
    let sizes = [1, 4096, (16 << 20) + 3];
    let port = 7400 + (std::process::id() % 500) as u16;
    let mut producer = ChildNode::spawn(
        Some((&cluster, 0)),
        "producer",
        &[
            ("CDO_FEDERATION_LISTEN", format!("{ap}:{port}")),
            ("FED_SIZES", sizes_env(&sizes)),
            ("FED_CUT", "1".into()),
        ],
    );
    assert!(producer.recv().starts_with("listening"));
    let mut consumer = ChildNode::spawn(
        Some((&cluster, 1)),
        "consumer",
        &[
            ("CDO_FEDERATION_LISTEN", format!("{ac}:{port}")),
            ("CDO_FEDERATION_PEERS", format!("{ap}:{port}")),
            ("CDO_REMOTE_TIMEOUT_MS", "2000".into()),
            ("FED_SIZES", sizes_env(&sizes)),
        ],
    );
    assert!(consumer.recv().starts_with("listening"));
    assert_eq!(producer.recv(), "offered");
    let report = consumer.recv();
    let total: usize = sizes.iter().sum();
    assert!(
        report.starts_with(&format!(
            "pulled 3 objects, {total} bytes over provider tcp"
        )),
        "{report}"
    );
    // The link cut (no reset, no answer): the demand of the object still
    // on offer over there fails with a typed error within the remote
    // timeout (2 s; the consumer itself would wait a minute).
    consumer.send(&format!("wait-imports {}", sizes.len() + 1));
    assert_eq!(consumer.recv(), "imported");
    cluster.cut(1);
    consumer.send("demand cut");
    assert_eq!(consumer.recv(), "error RemoteFailed");
    consumer.send("");
    producer.send("");
    for mut node in [consumer, producer] {
        let status = node.child.wait().unwrap();
        assert!(status.success(), "a node failed: {status}");
    }
    cluster.remove();
}
