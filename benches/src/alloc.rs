//! `compare alloc`: alloc+free pairs of our pooled DRAM tier (a resolved
//! placement, so the tiered path is measured) against glibc malloc and
//! mimalloc, and for 64 MiB against mmap+munmap with the pages touched.

use crate::{interleaved_medians, Better, Row};
use mamba::{Config, Mamba, Placement, Policy, Tier};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const ROUNDS: usize = 11;

/// One allocator under test: allocate and free one block of `size`.
trait PairLoop: Sync {
    /// Runs `iters` alloc+free pairs of `size` bytes.
    fn run(&self, size: usize, iters: u64);
}

struct Ours<'m>(Placement<'m>);

impl PairLoop for Ours<'_> {
    fn run(&self, size: usize, iters: u64) {
        for _ in 0..iters {
            let a = self.0.allocate(size, 16).expect("DRAM allocation");
            black_box(a.addr());
        }
    }
}

struct Glibc;

impl PairLoop for Glibc {
    fn run(&self, size: usize, iters: u64) {
        for _ in 0..iters {
            // SAFETY: malloc/free pair on a size > 0; the pointer is only
            // passed to black_box and free.
            unsafe {
                let p = libc::malloc(size);
                black_box(p);
                libc::free(p);
            }
        }
    }
}

struct Mimalloc;

impl PairLoop for Mimalloc {
    fn run(&self, size: usize, iters: u64) {
        let layout = Layout::from_size_align(size, 16).expect("valid layout");
        for _ in 0..iters {
            // SAFETY: alloc/dealloc pair with the same non-zero layout.
            unsafe {
                let p = mimalloc::MiMalloc.alloc(layout);
                black_box(p);
                mimalloc::MiMalloc.dealloc(p, layout);
            }
        }
    }
}

/// Writes one byte per page, as a user of a fresh 64 MiB buffer would.
fn touch(ptr: *mut u8, len: usize) {
    let page = mamba::page_size();
    for off in (0..len).step_by(page) {
        // SAFETY: callers pass a live, writable mapping of `len` bytes.
        unsafe { ptr.add(off).write_volatile(1) };
    }
}

struct OursTouched<'m>(Placement<'m>);

impl PairLoop for OursTouched<'_> {
    fn run(&self, size: usize, iters: u64) {
        for _ in 0..iters {
            let a = self.0.allocate(size, 4096).expect("DRAM allocation");
            touch(a.as_ptr().expect("host memory"), size);
        }
    }
}

struct MmapTouched;

impl PairLoop for MmapTouched {
    fn run(&self, size: usize, iters: u64) {
        for _ in 0..iters {
            // SAFETY: a fresh private anonymous mapping, touched, then
            // unmapped; nothing else refers to it.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED, "mmap");
                touch(p.cast(), size);
                libc::munmap(p, size);
            }
        }
    }
}

/// Wall time for `threads` threads each running `iters` pairs at once.
fn sample(a: &dyn PairLoop, size: usize, iters: u64, threads: usize) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        a.run(size, iters);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // Warm this thread's caches outside the timed part.
                    a.run(size, iters / 10 + 1);
                    barrier.wait();
                    let start = Instant::now();
                    a.run(size, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .expect("threads > 0")
    })
}

fn ns_per_pair(d: Duration, iters: u64) -> f64 {
    d.as_nanos() as f64 / iters as f64
}

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

/// Runs every case and returns the rows.
pub fn run() -> Vec<Row> {
    run_matching("")
}

/// Runs the cases whose name contains `filter`.
pub fn run_matching(filter: &str) -> Vec<Row> {
    let mamba = Mamba::discover(&Config {
        gpu: false,
        ..Config::from_env().expect("MAMBA_* configuration")
    })
    .expect("topology");
    let placement = mamba
        .placement(&Policy::require(Tier::Dram))
        .expect("a DRAM tier");
    let ours = Ours(placement.clone());
    let mut rows = Vec::new();
    let cases: [(usize, u64); 4] = [
        (64, 2_000_000),
        (4096, 1_000_000),
        (1 << 20, 200_000),
        (64 << 20, 20_000),
    ];
    for (size, iters) in cases {
        for threads in [1usize, 2] {
            let case = format!("{}-{}thread", label(size), threads);
            if !case.contains(filter) {
                continue;
            }
            ours.run(size, iters / 10);
            for (peer, name) in [(&Glibc as &dyn PairLoop, "glibc"), (&Mimalloc, "mimalloc")] {
                peer.run(size, iters / 10);
                let (o, p) = interleaved_medians(
                    ROUNDS,
                    || sample(&ours, size, iters, threads),
                    || sample(peer, size, iters, threads),
                );
                rows.push(Row::compared(
                    "alloc",
                    &case,
                    "ns/op",
                    Better::Lower,
                    ns_per_pair(o, iters),
                    ns_per_pair(p, iters),
                    name,
                ));
            }
        }
    }
    if !"64MiB-touched-1thread".contains(filter) {
        return rows;
    }
    let size = 64 << 20;
    let touched = OursTouched(placement);
    let iters = 8;
    touched.run(size, 1);
    let (o, p) = interleaved_medians(
        ROUNDS,
        || sample(&touched, size, iters, 1),
        || sample(&MmapTouched, size, iters, 1),
    );
    rows.push(Row::compared(
        "alloc",
        "64MiB-touched-1thread",
        "ns/op",
        Better::Lower,
        ns_per_pair(o, iters),
        ns_per_pair(p, iters),
        "mmap+munmap",
    ));
    rows
}
