//! `affinity`: the NUMA-aware pool against rayon's default pool.
//!
//! * STREAM triad `a = b + s * c` over three f64 arrays in mamba DRAM, cut
//!   into chunks; ours sends each chunk to the domain holding its pages
//!   (`spawn_near`, workers pinned; each chunk's node is queried on its
//!   first pass and cached per thread afterwards), rayon runs the same
//!   chunks unpinned (scope spawns, and `par_chunks`). Ours also with the
//!   chunks' domains located once before timing (`prerouted`). GB/s counts
//!   24 bytes per element.
//! * Spawn overhead, ns per task, all against rayon's scope spawning the
//!   same empty tasks: ours through a scope; ours through `spawn_near` a
//!   64 KiB buffer whose cached location is forgotten at the start of each
//!   sample (`forget_locations`, inside the timed region: one page query
//!   per sample, the route cached for the other tasks); and ours through
//!   `spawn_near` the buffer wrapped in `Fresh`, a page-location query per
//!   task (what locating costs).

use crate::{interleaved_medians, Better, Row};
use mamba::affinity::{forget_locations, AffinityPool, DataRange, Fresh, Locality};
use mamba::{Allocation, Config, Mamba, Policy, Tier};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// f64 elements per array.
    pub elements: usize,
    /// Elements per task.
    pub chunk: usize,
    /// Timed samples of each side.
    pub rounds: usize,
    /// Tasks per spawn-overhead sample.
    pub tasks: usize,
}

impl Default for Sizes {
    /// 3 x 64 MiB arrays in 512 KiB chunks, 21 samples; 10 000 tasks per
    /// spawn sample.
    fn default() -> Self {
        Sizes {
            elements: 8 << 20,
            chunk: 64 << 10,
            rounds: 21,
            tasks: 10_000,
        }
    }
}

const SCALAR: f64 = 3.0;

fn triad(a: &mut [f64], b: &[f64], c: &[f64]) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + SCALAR * c;
    }
}

fn dram_array(mamba: &Mamba, elements: usize) -> Allocation<'_> {
    mamba
        .allocate(elements * 8, 4096, &Policy::require(Tier::Dram))
        .expect("DRAM for the triad arrays")
}

/// Runs the family with the default sizes.
pub fn run() -> Vec<Row> {
    run_with(Sizes::default())
}

/// Runs the family with the given sizes.
pub fn run_with(sizes: Sizes) -> Vec<Row> {
    let config = Config {
        gpu: false,
        ..Config::default()
    };
    let mamba = Mamba::discover(&config).expect("this machine's spaces");
    let locality = Locality::load(&config).expect("this machine's topology");
    let pool = AffinityPool::new(&locality).expect("a pinned pool");
    let mut rows = stream_triad(&mamba, &pool, sizes);
    rows.extend(spawn_overhead(&pool, sizes));
    rows
}

fn stream_triad(mamba: &Mamba, pool: &AffinityPool, sizes: Sizes) -> Vec<Row> {
    let (mut a, mut b, mut c) = (
        dram_array(mamba, sizes.elements),
        dram_array(mamba, sizes.elements),
        dram_array(mamba, sizes.elements),
    );
    let a = a.as_typed_mut::<f64>().expect("f64-aligned");
    let b = b.as_typed_mut::<f64>().expect("f64-aligned");
    let c = c.as_typed_mut::<f64>().expect("f64-aligned");
    // First touch by the pool, chunk by chunk across its domains.
    pool.scope(|s| {
        for ((a, b), c) in a
            .chunks_mut(sizes.chunk)
            .zip(b.chunks_mut(sizes.chunk))
            .zip(c.chunks_mut(sizes.chunk))
        {
            s.spawn(move || {
                a.fill(0.0);
                b.fill(1.0);
                c.fill(2.0);
            });
        }
    })
    .expect("first touch");
    let (b, c) = (&*b, &*c);
    let chunk = sizes.chunk;
    let ours_near = |a: &mut [f64]| {
        let start = Instant::now();
        pool.scope(|s| {
            for ((a, b), c) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                let near = DataRange::of(a);
                s.spawn_near(&near, move || triad(a, b, c))
                    .expect("pages located");
            }
        })
        .expect("no task panics");
        start.elapsed()
    };
    // The same placement, located once: the data does not move between
    // passes.
    let routes: Vec<usize> = a
        .chunks(chunk)
        .map(|a| pool.route_for(a).expect("pages located").domain)
        .collect();
    let ours_routed = |a: &mut [f64]| {
        let start = Instant::now();
        pool.scope(|s| {
            let chunks = a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk));
            for (((a, b), c), &domain) in chunks.zip(&routes) {
                s.spawn_in_domain(domain, move || triad(a, b, c))
                    .expect("the domain exists");
            }
        })
        .expect("no task panics");
        start.elapsed()
    };
    let rayon_scope = |a: &mut [f64]| {
        let start = Instant::now();
        rayon::scope(|s| {
            for ((a, b), c) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                s.spawn(move |_| triad(a, b, c));
            }
        });
        start.elapsed()
    };
    let rayon_iter = |a: &mut [f64]| {
        let start = Instant::now();
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk))
            .zip(c.par_chunks(chunk))
            .for_each(|((a, b), c)| triad(a, b, c));
        start.elapsed()
    };
    let gbs = |d: Duration| (24 * sizes.elements) as f64 / d.as_secs_f64() / 1e9;
    let a = std::cell::RefCell::new(a);
    let mib = (sizes.elements * 8) >> 20;
    let mut rows = Vec::new();
    type Pass<'p> = &'p dyn Fn(&mut [f64]) -> Duration;
    let pairs: [(&str, Pass<'_>, &str, Pass<'_>); 3] = [
        (
            "spawn_near",
            &ours_near,
            "rayon-scope-unpinned",
            &rayon_scope,
        ),
        (
            "spawn_near",
            &ours_near,
            "rayon-par_chunks-unpinned",
            &rayon_iter,
        ),
        (
            "prerouted",
            &ours_routed,
            "rayon-scope-unpinned",
            &rayon_scope,
        ),
    ];
    for (ours_name, ours, peer_name, peer) in pairs {
        let (o, p) = interleaved_medians(
            sizes.rounds,
            || ours(&mut a.borrow_mut()),
            || peer(&mut a.borrow_mut()),
        );
        rows.push(Row::compared(
            "affinity",
            &format!("stream_triad_{mib}MiB_x3_{ours_name}"),
            "GB/s",
            Better::Higher,
            gbs(o),
            gbs(p),
            peer_name,
        ));
    }
    let expected = 1.0 + SCALAR * 2.0;
    assert!(
        a.borrow().iter().all(|&x| x == expected),
        "triad result is wrong"
    );
    rows
}

fn spawn_overhead(pool: &AffinityPool, sizes: Sizes) -> Vec<Row> {
    let n = sizes.tasks;
    let per_task = |d: Duration| d.as_nanos() as f64 / n as f64;
    let rayon_scope = || {
        let start = Instant::now();
        rayon::scope(|s| {
            for i in 0..n {
                s.spawn(move |_| {
                    black_box(i);
                });
            }
        });
        start.elapsed()
    };
    let ours_scope = || {
        let start = Instant::now();
        pool.scope(|s| {
            for i in 0..n {
                s.spawn(move || black_box(i));
            }
        })
        .expect("no task panics");
        start.elapsed()
    };
    let buffer = vec![1u8; 1 << 16];
    let ours_near = || {
        let start = Instant::now();
        forget_locations();
        pool.scope(|s| {
            for i in 0..n {
                s.spawn_near(&buffer[..], move || black_box(i))
                    .expect("pages located");
            }
        })
        .expect("no task panics");
        start.elapsed()
    };
    let ours_query = || {
        let start = Instant::now();
        let fresh = Fresh(&buffer[..]);
        pool.scope(|s| {
            for i in 0..n {
                s.spawn_near(&fresh, move || black_box(i))
                    .expect("pages located");
            }
        })
        .expect("no task panics");
        start.elapsed()
    };
    let (o1, p1) = interleaved_medians(sizes.rounds, ours_scope, rayon_scope);
    let (o2, p2) = interleaved_medians(sizes.rounds, ours_near, rayon_scope);
    let (o3, p3) = interleaved_medians(sizes.rounds, ours_query, rayon_scope);
    vec![
        Row::compared(
            "affinity",
            "spawn_scope_empty_task",
            "ns/task",
            Better::Lower,
            per_task(o1),
            per_task(p1),
            "rayon-scope",
        ),
        Row::compared(
            "affinity",
            "spawn_near_64KiB_empty_task",
            "ns/task",
            Better::Lower,
            per_task(o2),
            per_task(p2),
            "rayon-scope",
        ),
        Row::compared(
            "affinity",
            "spawn_near_64KiB_query_each_task",
            "ns/task",
            Better::Lower,
            per_task(o3),
            per_task(p3),
            "rayon-scope",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_gives_every_row() {
        let rows = run_with(Sizes {
            elements: 1 << 16,
            chunk: 1 << 12,
            rounds: 1,
            tasks: 100,
        });
        assert_eq!(rows.len(), 6);
        assert!(rows
            .iter()
            .all(|r| r.ours > 0.0 && r.peer.is_some_and(|p| p > 0.0)));
    }

    /// `cargo test --release -p mamba-benches --lib affinity -- --ignored
    /// --nocapture` prints the full run's rows.
    #[test]
    #[ignore = "full-size benchmark; run in release"]
    fn full_run() {
        for row in run() {
            row.print();
        }
    }
}
