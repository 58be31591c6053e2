//! The `fabric` family: CDOs across two federated pool managers against
//! raw fabric reads, both on the same provider in the same run.
//!
//! The two nodes are two pool managers (with their federations) in this
//! process, linked over 127.0.0.1: the bytes go through the provider's
//! whole stack (for tcp, the kernel's loopback), as between two network
//! namespaces, without needing root.
//!
//! - `remote-1MiB`, `remote-64MiB`: µs per object. Ours: a consumer on
//!   node B demands an object that a producer on node A offered (already
//!   announced to B), and reads every byte of its view; B's federation
//!   reads the bytes with `fi_read` into its own segment first. Peer: one
//!   transport reads the same number of bytes from another's registered
//!   buffer with the same pipelined `fi_read`, then the same read pass.
//!   Untimed between samples: the producer's offer and withdrawal.
//! - `remote-cycles`: offer on A + demand on B + withdraw on A of 4 KiB
//!   objects, one after the other, per second. Peer: the same cycles with
//!   the consumer on A, through A's manager alone (what the nodes add).
//! - `remote-cycles-pipelined`: the same cycles per second in batches of
//!   256: A offers a batch (pipelined), B demands it in one round trip and
//!   reads every byte, A withdraws it (pipelined). Peer: the same batches
//!   with the consumer on A.
//!
//! The provider is `FI_PROVIDER`'s, `tcp` when unset; each row names it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::federation::{self, Federation, FederationConfig};
use cdo::ipc::manager::{self, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::Attributes;
use mamba_fabric::{Config, RegionDescriptor, Transport};

use crate::{interleaved_medians, Better, Row};

const TOKEN: &str = "bench-fabric";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The provider of both sides.
fn provider() -> String {
    std::env::var("FI_PROVIDER").unwrap_or_else(|_| "tcp".into())
}

fn fabric_config() -> Config {
    Config {
        provider: Some(provider()),
        node: Some("127.0.0.1".into()),
        timeout: TIMEOUT,
        ..Config::default()
    }
}

/// A node: its client, federation and manager (dropped in that order).
struct Node {
    client: Client,
    fed: Federation,
    pm: ManagerHandle,
}

fn node(peers: Vec<String>, name: &str) -> Node {
    let pm = manager::start(ManagerConfig {
        token: Some(TOKEN.into()),
        ..ManagerConfig::default()
    })
    .expect("start a pool manager");
    let mut config = FederationConfig::new(
        "127.0.0.1:0".parse().expect("an address"),
        peers,
        TOKEN.into(),
    );
    config.fabric = fabric_config();
    config.remote_timeout = TIMEOUT;
    let fed = federation::start(config, &pm).expect("start the federation");
    let client =
        Client::connect(&ClientConfig::new(pm.endpoint().clone(), name)).expect("join the pool");
    Node { client, fed, pm }
}

/// Polls `cond` (a few µs apart) until it holds.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// Reads every byte as a consumer would (a sum the compiler must keep).
fn read_pass(bytes: &[u8]) -> u64 {
    bytes
        .chunks(8)
        .map(|c| c.iter().map(|&b| b as u64).sum::<u64>())
        .fold(0, u64::wrapping_add)
}

/// One remote object: offered on A, announced to B (untimed); demanded
/// and read on B (timed); withdrawn (untimed).
fn remote_object(a: &mut Node, b: &mut Node, name: &str, size: usize) -> Duration {
    let imported = b.fed.status().imported;
    a.client
        .offer_with(name, size as u64, Attributes::new(), |dst| dst.fill(7))
        .expect("offer");
    until("the offer reaches the other node", || {
        b.fed.status().imported > imported
    });
    let start = Instant::now();
    let view = b.client.demand(name, TIMEOUT).expect("demand");
    std::hint::black_box(read_pass(&view));
    let took = start.elapsed();
    drop(view);
    b.client.flush().expect("release");
    a.client.withdraw(name).expect("withdraw");
    until("the copy is withdrawn", || b.pm.stats().objects == 0);
    took
}

/// Cycles per second of `producer` offering a 4 KiB object, `consumer`
/// demanding it and reading every byte, `producer` withdrawing it, one
/// after the other.
fn sequential_cycles(producer: &mut Client, consumer: &mut Client, seq: &mut u64) -> f64 {
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        *seq += 1;
        let name = format!("cycle/{seq}");
        producer
            .offer_with(&name, 4096, Attributes::new(), |dst| dst.fill(1))
            .expect("offer");
        let view = consumer.demand(&name, TIMEOUT).expect("demand");
        assert_eq!(
            read_pass(&view),
            4096,
            "the consumer reads what was written"
        );
        drop(view);
        consumer.flush().expect("release");
        producer.withdraw(&name).expect("withdraw");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A cycle case: cycles per second of a producer and a consumer.
type CycleFn = fn(&mut Client, &mut Client, &mut u64) -> f64;

/// Objects per batch of the `remote-cycles-pipelined` case.
const PIPELINED_BATCH: usize = 256;

/// Cycles per second in batches of [`PIPELINED_BATCH`] 4 KiB objects:
/// `producer` offers a batch and waits for every reply, `consumer`
/// demands it in one round trip and reads every byte, `producer`
/// withdraws it and waits for every reply. Each phase is pipelined, the
/// phases follow one another, as a producer and consumer exchanging
/// batches would.
fn pipelined_cycles(producer: &mut Client, consumer: &mut Client, seq: &mut u64) -> f64 {
    let rounds = 8;
    let start = Instant::now();
    for _ in 0..rounds {
        *seq += 1;
        let batch = *seq;
        let names: Vec<String> = (0..PIPELINED_BATCH)
            .map(|i| format!("batch/{batch}/{i}"))
            .collect();
        let ids = names
            .iter()
            .map(|n| {
                producer
                    .submit_offer(n, 4096, Attributes::new(), |dst| dst.fill(batch as u8))
                    .expect("offer")
            })
            .collect::<Vec<_>>();
        producer.flush().expect("flush");
        for id in ids {
            producer.wait(id, None).expect("offer reply");
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let views = consumer.demand_many(&refs, TIMEOUT).expect("demand");
        let sum = views.iter().fold(0u64, |s, v| s.wrapping_add(read_pass(v)));
        assert_eq!(
            sum,
            (PIPELINED_BATCH * 4096) as u64 * u64::from(batch as u8),
            "the consumer reads what the producer wrote"
        );
        drop(views);
        consumer.flush().expect("release");
        producer.withdraw_many(&refs).expect("withdraw");
    }
    (rounds * PIPELINED_BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// The peer: a producer transport on its own thread exposing `size`
/// bytes, read by `read` on this thread.
fn with_raw_region<R>(size: usize, read: impl FnOnce(&Transport, &RegionDescriptor) -> R) -> R {
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = Transport::open(fabric_config()).expect("open the producer transport");
            let buf = vec![7u8; size];
            let exposed = t.expose(&buf).expect("expose");
            tx.send(exposed.descriptor().clone()).expect("send");
            t.serve(|| stop.load(Ordering::Acquire)).expect("serve");
        });
        let d = rx.recv().expect("the producer exposes its buffer");
        let t = Transport::open(fabric_config()).expect("open the consumer transport");
        let out = read(&t, &d);
        stop.store(true, Ordering::Release);
        out
    })
}

/// Runs the family's cases whose name contains `filter`.
pub fn run_matching(filter: &str) -> Vec<Row> {
    let mut a = node(vec![], "bench-producer");
    let mut b = node(vec![a.fed.local_addr().to_string()], "bench-consumer");
    until("the two nodes link", || !b.fed.status().peers.is_empty());
    let chosen = a.fed.status().fabric;
    eprintln!("fabric: {chosen}");
    let provider = chosen
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_string();
    let mut rows = Vec::new();
    let mut seq = 0u64;
    for (case, size, rounds) in [
        ("remote-1MiB", 1usize << 20, 41),
        ("remote-64MiB", 64 << 20, 7),
    ] {
        if !case.contains(filter) {
            continue;
        }
        let (ours, raw) = with_raw_region(size, |t, d| {
            let remote = t.connect(d).expect("connect");
            let mut dst = vec![0u8; size];
            // Warm both paths: segments, registrations, connections.
            for _ in 0..2 {
                seq += 1;
                remote_object(&mut a, &mut b, &format!("warm/{seq}"), size);
                t.read_into(remote, &mut dst).expect("read");
            }
            interleaved_medians(
                rounds,
                || {
                    seq += 1;
                    remote_object(&mut a, &mut b, &format!("obj/{seq}"), size)
                },
                || {
                    let start = Instant::now();
                    t.read_into(remote, &mut dst).expect("read");
                    std::hint::black_box(read_pass(&dst));
                    start.elapsed()
                },
            )
        });
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        rows.push(Row::compared(
            "fabric",
            case,
            "us/object",
            Better::Lower,
            us(ours),
            us(raw),
            &format!("fi_read of a registered buffer + read pass ({provider})"),
        ));
    }
    // The peer of the cycle cases: the same cycles with the consumer on
    // the producer's node, through its one pool manager.
    let mut local = Client::connect(&ClientConfig::new(a.pm.endpoint().clone(), "local"))
        .expect("join the pool");
    let cycle_cases: [(&str, CycleFn); 2] = [
        ("remote-cycles", sequential_cycles),
        ("remote-cycles-pipelined", pipelined_cycles),
    ];
    for (case, cycles) in cycle_cases {
        if !case.contains(filter) {
            continue;
        }
        let (mut remote, mut same_node) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            remote.push(cycles(&mut a.client, &mut b.client, &mut seq));
            same_node.push(cycles(&mut a.client, &mut local, &mut seq));
        }
        for rates in [&mut remote, &mut same_node] {
            rates.sort_by(f64::total_cmp);
        }
        rows.push(Row::compared(
            "fabric",
            case,
            "cycles/s",
            Better::Higher,
            remote[remote.len() / 2],
            same_node[same_node.len() / 2],
            &format!("the same cycles within one node (target 50000/s; {provider})"),
        ));
    }
    drop(b);
    drop(a);
    rows
}
