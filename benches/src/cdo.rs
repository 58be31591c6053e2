//! `compare cdo`: full in-process CDO cycles per second.
//!
//! One cycle: the producer declares, attaches a small payload (or none),
//! seals and offers; the consumer declares, requires, demands (zero-copy)
//! and disposes; the producer withdraws and disposes. Each thread runs its
//! own cycles on its own 1024 names; the figure is the total over all
//! threads. The main cases look the names up once ([`cdo::Pool::name`])
//! and declare through the handles; the `lookup` cases look the name text
//! up at every declare.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cdo::{Cdo, Pool, PoolConfig};
use mamba::{Config, Mamba};

use crate::{median, Better, Row};

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
    debug_assert_eq!(data.len(), payload.len());
    consumer.dispose()?;
    producer.withdraw()?;
    producer.dispose()
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

/// Median cycles per second of `threads` threads running `CYCLES` each;
/// the clock starts once every thread has looked its names up.
fn cycles_per_second(pool: &Pool, threads: usize, how: Declare, payload: usize) -> f64 {
    let bytes = vec![7u8; payload];
    let barrier = Barrier::new(threads + 1);
    let mut samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = std::thread::scope(|s| {
                for t in 0..threads {
                    let (bytes, barrier) = (&bytes, &barrier);
                    s.spawn(move || {
                        let texts: Vec<String> =
                            (0..NAMES).map(|i| format!("bench/t{t}/obj{i}")).collect();
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
        })
        .collect();
    (threads * CYCLES) as f64 / median(&mut samples).as_secs_f64()
}

/// Cycles per second with 1 and 2 threads: zero-length objects (tokens)
/// and 64-byte payloads through names looked up once, and tokens with a
/// lookup at every declare.
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
            rows.push(Row::alone(
                "cdo",
                &format!("{prefix}-{threads}t{suffix}"),
                "cycles/s",
                Better::Higher,
                cycles_per_second(&pool, threads, how, payload),
            ));
        }
    }
    rows
}
