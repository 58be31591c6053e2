//! `compare cdo`: full in-process CDO cycles per second.
//!
//! One cycle: the producer declares, attaches a small payload (or none),
//! seals and offers; the consumer declares, requires, demands (zero-copy)
//! and disposes; the producer withdraws and disposes. Each thread runs its
//! own cycles on its own 1024 names; the figure is the total over all
//! threads. The main cases look the names up once ([`cdo::Pool::name`])
//! and declare through the handles; the `lookup` cases look the name text
//! up at every declare.
//!
//! Every case is compared with what a user would write instead of a pool
//! (`map+channel`): a concurrent map of names to `Arc<[u8]>` (16 shards of a
//! mutex-guarded `HashMap`, keys `Arc<str>` made before timing) shared by all
//! threads, plus a channel per thread that hands the names to the consumer.
//! Per cycle it does the same work as ours: the producer writes the payload
//! into a fresh `Arc<[u8]>`, inserts it and sends the name; the consumer
//! receives the name, takes the object from the map and reads every byte,
//! then removes the name. Ours reads every byte of its view too.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use cdo::{Cdo, Pool, PoolConfig};
use mamba::{Config, Mamba};

use crate::{interleaved_medians, Better, Row};

/// Cycles per timed sample and thread.
const CYCLES: usize = 200_000;
/// Samples; the median is reported.
const ROUNDS: usize = 5;
/// Distinct names each thread cycles through.
const NAMES: usize = 1024;

/// How a cycle declares its two handles.
#[derive(Clone, Copy)]
enum Declare {
    /// Through names looked up before timing.
    Handle,
    /// By the name's text, looked up at every declare.
    Lookup,
}

/// One full cycle: `declare` makes the producer's and the consumer's
/// handles.
fn cycle<'p>(mut declare: impl FnMut() -> Cdo<'p>, payload: &[u8]) -> cdo::Result<()> {
    let mut producer = declare();
    producer.write(payload)?;
    producer.seal()?;
    producer.offer()?;
    let mut consumer = declare();
    consumer.require()?;
    let data = consumer.demand()?;
    assert_eq!(
        sum(data.as_slice()?),
        sum(payload),
        "the consumer reads what was written"
    );
    consumer.dispose()?;
    producer.withdraw()?;
    producer.dispose()
}

/// Reads every byte.
fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Shards of the peer's map: enough that two threads rarely meet on a lock.
const SHARDS: usize = 16;

/// One shard of the peer's map.
type Shard = HashMap<Arc<str>, Arc<[u8]>>;

/// The peer's concurrent map of names to objects.
struct ShardedMap {
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl ShardedMap {
    fn new() -> Self {
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, name: &str) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(name) as usize % SHARDS]
    }

    fn lock(&self, name: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shard(name)
            .lock()
            .expect("no thread panics holding a shard")
    }
}

/// One thread's loop of the peer over its names: write, insert, send;
/// receive, look up, read every byte, remove.
fn run_peer(map: &ShardedMap, names: &[Arc<str>], payload: &[u8]) {
    let (tx, rx) = mpsc::channel::<Arc<str>>();
    for i in 0..CYCLES {
        let name = &names[i % NAMES];
        let object: Arc<[u8]> = Arc::from(payload);
        map.lock(name).insert(Arc::clone(name), object);
        tx.send(Arc::clone(name)).expect("the receiver lives");
        let got = rx.recv().expect("a name was sent");
        let data = map.lock(&got).get(&got).cloned().expect("inserted above");
        assert_eq!(
            sum(&data),
            sum(payload),
            "the consumer reads what was written"
        );
        drop(data);
        map.lock(&got).remove(&got);
    }
}

/// One thread's loop over its names (`texts`, looked up as `names`).
fn run_names(pool: &Pool, texts: &[String], names: &[cdo::Name<'_>], how: Declare, payload: &[u8]) {
    for i in 0..CYCLES {
        let k = i % NAMES;
        let result = match how {
            Declare::Handle => cycle(|| names[k].declare(), payload),
            Declare::Lookup => cycle(|| pool.declare(&texts[k]).expect("valid name"), payload),
        };
        result.expect("cdo cycle");
    }
}

/// One timed sample of ours: `threads` threads running `CYCLES` each; the
/// clock starts once every thread has looked its names up.
fn sample_ours(pool: &Pool, threads: usize, how: Declare, bytes: &[u8]) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let (bytes, barrier) = (&bytes, &barrier);
            s.spawn(move || {
                let texts: Vec<String> = (0..NAMES).map(|i| format!("bench/t{t}/obj{i}")).collect();
                let names = texts
                    .iter()
                    .map(|t| pool.name(t))
                    .collect::<cdo::Result<Vec<_>>>()
                    .expect("valid names");
                barrier.wait();
                run_names(pool, &texts, &names, how, bytes);
            });
        }
        barrier.wait();
        Instant::now()
    });
    // The scope has joined every thread.
    start.elapsed()
}

/// One timed sample of the peer, as [`sample_ours`] (a fresh map).
fn sample_peer(threads: usize, bytes: &[u8]) -> Duration {
    let map = ShardedMap::new();
    let barrier = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let (map, barrier) = (&map, &barrier);
            s.spawn(move || {
                let names: Vec<Arc<str>> = (0..NAMES)
                    .map(|i| Arc::from(format!("bench/t{t}/obj{i}")))
                    .collect();
                barrier.wait();
                run_peer(map, &names, bytes);
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

/// Median cycles per second of ours and of the peer, `threads` threads
/// each, samples interleaved.
fn cycles_per_second(pool: &Pool, threads: usize, how: Declare, payload: usize) -> (f64, f64) {
    let bytes = vec![7u8; payload];
    let (ours, peer) = interleaved_medians(
        ROUNDS,
        || sample_ours(pool, threads, how, &bytes),
        || sample_peer(threads, &bytes),
    );
    let rate = |d: Duration| (threads * CYCLES) as f64 / d.as_secs_f64();
    (rate(ours), rate(peer))
}

/// Cycles per second with 1 and 2 threads, against the map+channel peer:
/// zero-length objects (tokens) and 64-byte payloads through names looked
/// up once, and tokens with a lookup at every declare.
pub fn run() -> Vec<Row> {
    let mamba = Mamba::discover(&Config {
        gpu: false,
        ..Config::default()
    })
    .expect("this machine's memory is discoverable");
    let pool = Pool::new(Arc::new(mamba), PoolConfig::default()).expect("default pool");
    let mut rows = Vec::new();
    for (how, payload, prefix, suffix) in [
        (Declare::Handle, 0, "cycles-inprocess", ""),
        (Declare::Handle, 64, "cycles-inprocess", "-64b"),
        (Declare::Lookup, 0, "cycles-inprocess-lookup", ""),
    ] {
        for threads in [1, 2] {
            let (ours, peer) = cycles_per_second(&pool, threads, how, payload);
            rows.push(Row::compared(
                "cdo",
                &format!("{prefix}-{threads}t{suffix}"),
                "cycles/s",
                Better::Higher,
                ours,
                peer,
                "map+channel",
            ));
        }
    }
    rows
}
