//! `compare alloc`: alloc+free pairs of our pooled DRAM tier (a resolved
//! placement, so the tiered path is measured) against glibc malloc and
//! mimalloc, and for 64 MiB with the pages touched against mmap+munmap and
//! mimalloc (which, like ours, keeps memory), with the resident bytes each
//! keeps.
//!
//! The `mixed-16B-4MiB-remote-free` case runs one fixed sequence of sizes
//! from 16 B to 4 MiB (log-uniform, drawn from a fixed seed) through every
//! allocator: a thread allocates each block and writes its first and last
//! byte; half of the blocks (drawn from the same seed) go, in batches, to a
//! second thread that frees them, the others stay in a window of recent
//! blocks and are freed by the allocating thread when their slot is reused.
//! The time runs until the second thread has freed its last block.

use crate::{interleaved_medians, Better, Resident, Row};
use mamba::{Allocation, Config, Mamba, Placement, Policy, Tier};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::{mpsc, Barrier};
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

/// One block of the mixed case for every allocator.
trait MixedAlloc: Sync {
    /// A live block, sent to the freeing thread for half of them.
    type Block: Send;
    /// Allocates `size` bytes (16-byte aligned) and writes the first and
    /// the last byte.
    fn alloc(&self, size: usize) -> Self::Block;
    /// Frees a block from [`MixedAlloc::alloc`], on any thread.
    fn free(&self, block: Self::Block);
}

/// A raw block of the C allocators: address and size.
struct Raw(*mut u8, usize);

// SAFETY: the block is plain memory owned by whoever holds the `Raw`; both
// C allocators accept frees from any thread.
unsafe impl Send for Raw {}

/// Writes the first and the last byte of a live block of `size` bytes.
fn write_ends(ptr: *mut u8, size: usize) {
    // SAFETY: callers pass a live, writable block of `size` > 0 bytes.
    unsafe {
        ptr.write_volatile(1);
        ptr.add(size - 1).write_volatile(1);
    }
}

impl<'m> MixedAlloc for Ours<'m> {
    type Block = Allocation<'m>;
    fn alloc(&self, size: usize) -> Allocation<'m> {
        let a = self.0.allocate(size, 16).expect("DRAM allocation");
        write_ends(a.as_ptr().expect("host memory"), size);
        a
    }
    fn free(&self, block: Allocation<'m>) {
        drop(block);
    }
}

impl MixedAlloc for Glibc {
    type Block = Raw;
    fn alloc(&self, size: usize) -> Raw {
        // SAFETY: malloc of a size > 0; checked for null before use.
        let p = unsafe { libc::malloc(size) }.cast::<u8>();
        assert!(!p.is_null(), "malloc");
        write_ends(p, size);
        Raw(p, size)
    }
    fn free(&self, block: Raw) {
        // SAFETY: the pointer came from malloc and is freed once.
        unsafe { libc::free(block.0.cast()) }
    }
}

impl MixedAlloc for Mimalloc {
    type Block = Raw;
    fn alloc(&self, size: usize) -> Raw {
        let layout = Layout::from_size_align(size, 16).expect("valid layout");
        // SAFETY: a non-zero layout; checked for null before use.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        assert!(!p.is_null(), "mimalloc");
        write_ends(p, size);
        Raw(p, size)
    }
    fn free(&self, block: Raw) {
        let layout = Layout::from_size_align(block.1, 16).expect("valid layout");
        // SAFETY: allocated above with this very layout, freed once.
        unsafe { mimalloc::MiMalloc.dealloc(block.0, layout) }
    }
}

/// Blocks of the mixed sequence.
const MIXED_BLOCKS: usize = 100_000;
/// Blocks the allocating thread keeps before freeing the oldest.
const MIXED_WINDOW: usize = 32;
/// Blocks per batch sent to the freeing thread.
const MIXED_BATCH: usize = 32;

/// The mixed sequence: `(size, freed by the other thread)`, from a fixed
/// seed (splitmix64), sizes log-uniform from 16 B to 4 MiB.
fn mixed_sequence() -> Vec<(usize, bool)> {
    let mut state = 0x05ee_d0fa_110c_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..MIXED_BLOCKS)
        .map(|_| {
            let r = next();
            // 2^4 to 2^22 - 1 bytes: a power of two, then a uniform mantissa.
            let shift = 4 + (r % 18) as u32;
            let size = (1usize << shift) + ((r >> 8) as usize & ((1 << shift) - 1));
            (size, (r >> 63) == 1)
        })
        .collect()
}

/// Wall time of the mixed sequence through `a`, the remote frees included.
fn mixed_sample<A: MixedAlloc>(a: &A, seq: &[(usize, bool)]) -> Duration {
    let (tx, rx) = mpsc::sync_channel::<Vec<A::Block>>(4);
    std::thread::scope(|s| {
        let freer = s.spawn(move || {
            for batch in rx {
                batch.into_iter().for_each(|b| a.free(b));
            }
        });
        let start = Instant::now();
        let mut window: Vec<Option<A::Block>> = (0..MIXED_WINDOW).map(|_| None).collect();
        let mut batch = Vec::with_capacity(MIXED_BATCH);
        for (i, &(size, remote)) in seq.iter().enumerate() {
            let block = a.alloc(size);
            if remote {
                batch.push(block);
                if batch.len() == MIXED_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(MIXED_BATCH));
                    tx.send(full).expect("the freeing thread lives");
                }
            } else if let Some(old) = window[i % MIXED_WINDOW].replace(block) {
                a.free(old);
            }
        }
        window.into_iter().flatten().for_each(|b| a.free(b));
        tx.send(batch).expect("the freeing thread lives");
        drop(tx);
        freer.join().expect("freeing thread");
        start.elapsed()
    })
}

/// The mixed case's row of ours against `peer` (warmed once first).
fn mixed_row<P: MixedAlloc>(ours: &Ours<'_>, peer: &P, name: &str, seq: &[(usize, bool)]) -> Row {
    mixed_sample(peer, seq);
    let (o, p) = interleaved_medians(
        ROUNDS,
        || mixed_sample(ours, seq),
        || mixed_sample(peer, seq),
    );
    Row::compared(
        "alloc",
        "mixed-16B-4MiB-remote-free",
        "ns/op",
        Better::Lower,
        ns_per_pair(o, MIXED_BLOCKS as u64),
        ns_per_pair(p, MIXED_BLOCKS as u64),
        name,
    )
}

/// Bytes of this process's resident set.
fn resident_set() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's resident field");
    pages * mamba::page_size() as u64
}

extern "C" {
    /// mimalloc's collection of its freed memory (`force`: all of it).
    fn mi_collect(force: bool);
}

/// Resident bytes that `a` keeps after one touched alloc+free of `size`,
/// started from `trim` (which gives the allocator's free memory back).
fn kept_after_one(a: &dyn PairLoop, size: usize, trim: impl FnOnce()) -> u64 {
    trim();
    let before = resident_set();
    a.run(size, 1);
    resident_set().saturating_sub(before)
}

struct MimallocTouched;

impl PairLoop for MimallocTouched {
    fn run(&self, size: usize, iters: u64) {
        let layout = Layout::from_size_align(size, 4096).expect("valid layout");
        for _ in 0..iters {
            // SAFETY: alloc/dealloc pair with the same non-zero layout; the
            // block is touched while live, after the null check.
            unsafe {
                let p = mimalloc::MiMalloc.alloc(layout);
                assert!(!p.is_null(), "mimalloc");
                touch(p, size);
                mimalloc::MiMalloc.dealloc(p, layout);
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
    if "mixed-16B-4MiB-remote-free".contains(filter) {
        let seq = mixed_sequence();
        mixed_sample(&ours, &seq);
        rows.push(mixed_row(&ours, &Glibc, "glibc", &seq));
        rows.push(mixed_row(&ours, &Mimalloc, "mimalloc", &seq));
    }
    if !"64MiB-touched-1thread".contains(filter) {
        return rows;
    }
    // Resident bytes: what each allocator keeps after one touched
    // alloc+free, from a state where it has given back what it could.
    let size = 64 << 20;
    let touched = OursTouched(placement);
    let trim_ours = || {
        for pool in mamba.pools() {
            pool.trim();
        }
    };
    // SAFETY: mi_collect only walks mimalloc's own free lists.
    let trim_mimalloc = || unsafe { mi_collect(true) };
    let kept_ours = kept_after_one(&touched, size, trim_ours);
    let iters = 8;
    touched.run(size, 1);
    for (peer, name, trim) in [
        (&MmapTouched as &dyn PairLoop, "mmap+munmap", None),
        (&MimallocTouched, "mimalloc", Some(trim_mimalloc)),
    ] {
        let kept_peer = kept_after_one(peer, size, || trim.into_iter().for_each(|f| f()));
        peer.run(size, 1);
        let (o, p) = interleaved_medians(
            ROUNDS,
            || sample(&touched, size, iters, 1),
            || sample(peer, size, iters, 1),
        );
        rows.push(
            Row::compared(
                "alloc",
                "64MiB-touched-1thread",
                "ns/op",
                Better::Lower,
                ns_per_pair(o, iters),
                ns_per_pair(p, iters),
                name,
            )
            .with_resident(Resident {
                ours: kept_ours,
                peer: kept_peer,
            }),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_sequence_is_fixed_spans_16b_to_4mib_and_frees_half_remotely() {
        let seq = mixed_sequence();
        assert_eq!(seq, mixed_sequence(), "the same sequence every run");
        assert_eq!(seq.len(), MIXED_BLOCKS);
        assert!(seq.iter().all(|&(s, _)| (16..4 << 20).contains(&s)));
        assert!(seq.iter().any(|&(s, _)| s < 64));
        assert!(seq.iter().any(|&(s, _)| s >= 2 << 20));
        let remote = seq.iter().filter(|&&(_, r)| r).count();
        let half = MIXED_BLOCKS / 2;
        assert!(remote.abs_diff(half) < half / 20, "{remote} remote frees");
    }
}
