//! Pool statistics: per-thread counters, so that threads do not fight over
//! one cache line (or even a locked instruction) on every operation.

use crate::registry::lock;
use crossbeam_utils::CachePadded;
use mamba::SpaceId;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counted pool operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Declared,
    Sealed,
    Offered,
    Required,
    Demanded,
    Retracted,
    Withdrawn,
    Disposed,
    Streamed,
}

const COUNTERS: usize = 9;

/// Bytes moved from one space to another (`from == to` for zero-copy
/// hand-overs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PathStats {
    /// Space of the offered data.
    pub from: SpaceId,
    /// Space of the consumer's data.
    pub to: SpaceId,
    /// Hand-overs on this path.
    pub transfers: u64,
    /// Bytes handed over without copying.
    pub bytes_zero_copy: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
}

/// A snapshot of a pool's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// CDO handles declared.
    pub declared: u64,
    /// Handles sealed (explicitly or by `require`).
    pub sealed: u64,
    /// Offers made.
    pub offered: u64,
    /// Requires made.
    pub required: u64,
    /// Demands satisfied.
    pub demanded: u64,
    /// Requires retracted.
    pub retracted: u64,
    /// Offers withdrawn.
    pub withdrawn: u64,
    /// Handles disposed.
    pub disposed: u64,
    /// Records delivered to consumer-group members.
    pub streamed: u64,
    /// Bytes handed over without copying, all paths.
    pub bytes_zero_copy: u64,
    /// Bytes copied, all paths.
    pub bytes_copied: u64,
    /// Per path between spaces, only paths that were used.
    pub paths: Vec<PathStats>,
}

/// One thread's counters for one pool. Only that thread writes them
/// (plain loads and stores, no read-modify-write); snapshots read them all.
struct Block {
    counters: [AtomicU64; COUNTERS],
    /// `[transfers, zero-copy bytes, copied bytes]` per (from, to).
    paths: Box<[[AtomicU64; 3]]>,
}

/// Adds to a counter that only the calling thread writes.
#[inline]
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

/// The live counters of a pool; a clone counts into the same ones.
#[derive(Clone)]
pub(crate) struct Counters {
    /// Tells this pool's blocks apart in the threads' lists.
    id: u64,
    spaces: usize,
    blocks: Arc<Mutex<Vec<Arc<CachePadded<Block>>>>>,
    /// When counting began (the pool was made).
    started: Instant,
}

type Mine = RefCell<Vec<(u64, Arc<CachePadded<Block>>)>>;

thread_local!(static MINE: Mine = const { RefCell::new(Vec::new()) });

impl Counters {
    pub(crate) fn new(spaces: usize) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Counters {
            id: NEXT_ID.fetch_add(1, Relaxed),
            spaces,
            blocks: Arc::default(),
            started: Instant::now(),
        }
    }

    /// How long the counters have counted.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `f` on the calling thread's block, creating it on first use.
    #[inline(always)]
    fn with_block(&self, f: impl FnOnce(&Block)) {
        MINE.with(|mine| {
            if let Some((_, b)) = mine.borrow().iter().find(|(id, _)| *id == self.id) {
                return f(b);
            }
            self.first_use(mine, f);
        })
    }

    /// The slow path of [`Counters::with_block`]: makes the calling thread's
    /// block, registers it and runs `f` on it.
    #[cold]
    #[inline(never)]
    fn first_use(&self, mine: &Mine, f: impl FnOnce(&Block)) {
        let block = Arc::new(CachePadded::new(Block {
            counters: Default::default(),
            paths: (0..self.spaces * self.spaces)
                .map(|_| Default::default())
                .collect(),
        }));
        lock(&self.blocks).push(Arc::clone(&block));
        f(&block);
        let mut mine = mine.borrow_mut();
        // Forgets the blocks of pools that are gone (only this list
        // still holds them).
        mine.retain(|(_, b)| Arc::strong_count(b) > 1);
        mine.push((self.id, block));
    }

    #[inline]
    pub(crate) fn bump(&self, c: Counter) {
        self.with_block(|b| add(&b.counters[c as usize], 1));
    }

    pub(crate) fn transfer(&self, from: SpaceId, to: SpaceId, bytes: usize, copied: bool) {
        let (f, t) = (from.0 as usize, to.0 as usize);
        if f >= self.spaces || t >= self.spaces {
            return;
        }
        self.with_block(|b| {
            let cell = &b.paths[f * self.spaces + t];
            add(&cell[0], 1);
            add(&cell[if copied { 2 } else { 1 }], bytes as u64);
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let blocks = lock(&self.blocks);
        let sum = |c: Counter| {
            blocks
                .iter()
                .map(|b| b.counters[c as usize].load(Relaxed))
                .sum::<u64>()
        };
        let mut stats = Stats {
            declared: sum(Counter::Declared),
            sealed: sum(Counter::Sealed),
            offered: sum(Counter::Offered),
            required: sum(Counter::Required),
            demanded: sum(Counter::Demanded),
            retracted: sum(Counter::Retracted),
            withdrawn: sum(Counter::Withdrawn),
            disposed: sum(Counter::Disposed),
            streamed: sum(Counter::Streamed),
            ..Stats::default()
        };
        for p in 0..self.spaces * self.spaces {
            let get = |k: usize| {
                blocks
                    .iter()
                    .map(|b| b.paths[p][k].load(Relaxed))
                    .sum::<u64>()
            };
            let path = PathStats {
                from: SpaceId((p / self.spaces) as u32),
                to: SpaceId((p % self.spaces) as u32),
                transfers: get(0),
                bytes_zero_copy: get(1),
                bytes_copied: get(2),
            };
            if path.transfers > 0 {
                stats.bytes_zero_copy += path.bytes_zero_copy;
                stats.bytes_copied += path.bytes_copied;
                stats.paths.push(path);
            }
        }
        stats
    }
}
