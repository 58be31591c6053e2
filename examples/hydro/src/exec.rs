//! How bands of work are spread over threads.
//!
//! The solver only sees the [`BandExecutor`] seam, so that a NUMA-aware
//! worker pool can replace [`ScopedThreads`] later.

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
        let work = |worker: usize| loop {
            let band = next.fetch_add(1, Ordering::Relaxed);
            if band >= nbands {
                break;
            }
            f(worker, band);
        };
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
}
