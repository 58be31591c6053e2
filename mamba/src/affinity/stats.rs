//! Who ran what where: per-task execution records and per-worker counters.

use super::cpuset::CpuSet;
use crossbeam::utils::CachePadded;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a worker found the task it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Its own deque or its domain's queue.
    Own,
    /// The deque of another worker of its domain.
    StolenInDomain,
    /// Another domain's queue or deques (its domain was idle).
    StolenAcrossDomains,
}

/// One task run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Execution {
    /// Task number, in spawn order across the pool.
    pub task: u64,
    /// The worker that ran it.
    pub worker: usize,
    /// The worker's domain.
    pub domain: usize,
    /// The domain the task was sent to.
    pub target: usize,
    /// The CPU it started on (`sched_getcpu`).
    pub cpu: Option<u32>,
    /// The NUMA node it ran on: the node of `cpu` on this machine's topology;
    /// on a simulated one, the domain's primary node.
    pub node: Option<u32>,
    /// Where the worker found it.
    pub origin: Origin,
}

impl Execution {
    /// Whether it ran in the domain it was sent to.
    pub fn is_local(&self) -> bool {
        self.domain == self.target
    }
}

/// Counters of one worker, written by that worker only (so a plain load
/// and store count, without a locked instruction), read by anyone.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    executed: AtomicU64,
    remote: AtomicU64,
    steals: AtomicU64,
    panics: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, execution: &Execution, panicked: bool) {
        let bump = |c: &AtomicU64| c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
        // `executed` first: a reader that sees a task in `remote` sees it
        // in `executed` too.
        bump(&self.executed);
        match execution.origin {
            Origin::Own => {}
            Origin::StolenInDomain => bump(&self.steals),
            Origin::StolenAcrossDomains => bump(&self.remote),
        }
        if panicked {
            bump(&self.panics);
        }
    }
}

/// Per-worker counters, padded against false sharing.
pub(crate) type WorkerCounters = CachePadded<Counters>;

/// Statistics of one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Its domain.
    pub domain: usize,
    /// The CPUs it is bound to (empty when unpinned).
    pub cpus: CpuSet,
    /// Tasks it ran.
    pub executed: u64,
    /// Of those, tasks of its own domain.
    pub local: u64,
    /// Of those, tasks of another domain, stolen while its domain was idle.
    pub remote: u64,
    /// Tasks it stole from workers of its own domain (counted as local).
    pub steals: u64,
    /// Tasks that panicked.
    pub panics: u64,
}

impl WorkerStats {
    pub(crate) fn read(worker: usize, domain: usize, cpus: CpuSet, c: &Counters) -> Self {
        let remote = c.remote.load(Ordering::Acquire);
        let executed = c.executed.load(Ordering::Acquire);
        WorkerStats {
            worker,
            domain,
            cpus,
            executed,
            local: executed - remote,
            remote,
            steals: c.steals.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
        }
    }
}

/// Statistics of a pool: totals and every worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Tasks run.
    pub executed: u64,
    /// Tasks run in the domain they were sent to.
    pub local: u64,
    /// Tasks run by another domain (stolen across domains).
    pub remote: u64,
    /// Steals between workers of one domain.
    pub steals: u64,
    /// Tasks that panicked.
    pub panics: u64,
    /// Whether the workers are bound to their CPUs.
    pub pinned: bool,
    /// Every worker.
    pub workers: Vec<WorkerStats>,
}

impl PoolStats {
    pub(crate) fn from_workers(workers: Vec<WorkerStats>, pinned: bool) -> Self {
        let sum = |f: fn(&WorkerStats) -> u64| workers.iter().map(f).sum();
        PoolStats {
            executed: sum(|w| w.executed),
            local: sum(|w| w.local),
            remote: sum(|w| w.remote),
            steals: sum(|w| w.steals),
            panics: sum(|w| w.panics),
            pinned,
            workers,
        }
    }
}
