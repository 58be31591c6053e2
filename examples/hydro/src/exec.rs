//! How bands of work are spread over threads.
//!
//! The solver only sees the [`BandExecutor`] seam: [`NumaBands`] runs the
//! bands on mamba's NUMA-aware worker pool (pinned workers, one group per
//! NUMA domain), [`ScopedThreads`] on plain scoped threads.

use mamba::affinity::{AffinityError, AffinityPool, Locality};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs independent bands of work on a fixed set of workers.
pub trait BandExecutor: Sync {
    /// Number of workers; `f` is called with worker ids below it.
    fn workers(&self) -> usize;

    /// Calls `f(worker, band)` once for every band in `0..nbands`, in any
    /// order and concurrently, and returns when all calls have returned.
    /// Calls with the same worker id never overlap, so `worker` can index
    /// per-worker scratch.
    fn run_bands(&self, nbands: usize, f: &(dyn Fn(usize, usize) + Sync));
}

/// Spawns `workers - 1` scoped threads for each batch of bands (the calling
/// thread is worker 0); the workers take bands from a shared counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopedThreads {
    workers: usize,
}

impl ScopedThreads {
    /// An executor of `workers` threads (at least one).
    pub fn new(workers: usize) -> ScopedThreads {
        ScopedThreads {
            workers: workers.max(1),
        }
    }
}

impl BandExecutor for ScopedThreads {
    fn workers(&self) -> usize {
        self.workers
    }

    fn run_bands(&self, nbands: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let next = AtomicUsize::new(0);
        let work = |worker: usize| claim_bands(worker, nbands, &next, f);
        let threads = self.workers.min(nbands);
        if threads <= 1 {
            work(0);
            return;
        }
        std::thread::scope(|scope| {
            for worker in 1..threads {
                let work = &work;
                scope.spawn(move || work(worker));
            }
            work(0);
        });
    }
}

/// Claims bands from `next` and runs them as `worker` until none is left.
fn claim_bands(
    worker: usize,
    nbands: usize,
    next: &AtomicUsize,
    f: &(dyn Fn(usize, usize) + Sync),
) {
    loop {
        let band = next.fetch_add(1, Ordering::Relaxed);
        if band >= nbands {
            break;
        }
        f(worker, band);
    }
}

/// Runs the bands on mamba's NUMA-aware worker pool: one task per worker
/// slot, the slots spread over the pool's NUMA domains, each claiming bands
/// from a shared counter. Which slot runs a band never changes the result.
#[derive(Debug)]
pub struct NumaBands {
    pool: AffinityPool,
    workers: usize,
}

impl NumaBands {
    /// A pool over the node `locality` describes (workers pinned to their
    /// CPUs on this machine), feeding `workers` band slots.
    ///
    /// # Errors
    /// When the pool cannot start or bind its workers.
    pub fn new(locality: &Locality, workers: usize) -> Result<NumaBands, AffinityError> {
        Ok(NumaBands {
            pool: AffinityPool::builder().name("hydro").build(locality)?,
            workers: workers.max(1),
        })
    }

    /// The worker pool.
    pub fn pool(&self) -> &AffinityPool {
        &self.pool
    }
}

impl BandExecutor for NumaBands {
    fn workers(&self) -> usize {
        self.workers
    }

    fn run_bands(&self, nbands: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let next = AtomicUsize::new(0);
        let domains = self.pool.domains().len().max(1);
        let finished = self.pool.scope(|s| {
            for slot in 0..self.workers.min(nbands) {
                let next = &next;
                s.spawn_in_domain(slot % domains, move || claim_bands(slot, nbands, next, f))
                    .expect("domain indexes below the domain count exist");
            }
        });
        // As with scoped threads, a panicking band panics the caller.
        if let Err(e) = finished {
            panic!("a band of work failed: {e}");
        }
    }
}

/// The executor the command line chose.
#[derive(Debug)]
pub enum Executor {
    /// mamba's NUMA-aware pool.
    Numa(NumaBands),
    /// Plain scoped threads.
    Threads(ScopedThreads),
}

impl BandExecutor for Executor {
    fn workers(&self) -> usize {
        match self {
            Executor::Numa(e) => e.workers(),
            Executor::Threads(e) => e.workers(),
        }
    }

    fn run_bands(&self, nbands: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        match self {
            Executor::Numa(e) => e.run_bands(nbands, f),
            Executor::Threads(e) => e.run_bands(nbands, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_band_runs_once() {
        let seen = Mutex::new(Vec::new());
        ScopedThreads::new(3).run_bands(10, &|worker, band| {
            assert!(worker < 3);
            seen.lock().unwrap().push(band);
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_numa_pool_runs_every_band_once_with_distinct_slots() {
        let locality = Locality::load(&mamba::Config::default()).unwrap();
        let exec = NumaBands::new(&locality, 2).unwrap();
        let seen = Mutex::new(Vec::new());
        exec.run_bands(9, &|worker, band| {
            assert!(worker < 2);
            seen.lock().unwrap().push(band);
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
        assert_eq!(exec.pool().stats().executed, 2, "one task per slot");
    }
}
