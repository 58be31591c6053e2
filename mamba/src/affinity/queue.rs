//! A domain's queue for jobs sent from outside its workers: a ring of fixed
//! size first, so queueing allocates nothing, overflowing into an unbounded
//! injector.

use super::job::Job;
use crossbeam::deque::{Injector, Steal, Worker};
use crossbeam::queue::ArrayQueue;

/// Jobs the ring holds before new ones overflow.
const RING: usize = 1024;
/// Jobs a worker takes from the ring at once (one to run, the rest to its
/// deque, where its siblings may steal them).
const BATCH: usize = 8;

/// Jobs for one domain, queued by threads other than its workers.
pub(crate) struct DomainQueue {
    ring: ArrayQueue<Job>,
    overflow: Injector<Job>,
}

impl DomainQueue {
    pub(crate) fn new() -> Self {
        DomainQueue {
            ring: ArrayQueue::new(RING),
            overflow: Injector::new(),
        }
    }

    /// Queues a job.
    pub(crate) fn push(&self, job: Job) {
        if let Err(job) = self.ring.push(job) {
            self.overflow.push(job);
        }
    }

    /// Jobs queued.
    pub(crate) fn len(&self) -> usize {
        self.ring.len() + self.overflow.len()
    }

    /// Takes a job; `local` (a worker's deque) also gets a batch, so that
    /// the worker comes back to the shared queue less often.
    pub(crate) fn take(&self, local: Option<&Worker<Job>>) -> Option<Job> {
        if let Some(job) = self.ring.pop() {
            if let Some(local) = local {
                for _ in 1..BATCH {
                    match self.ring.pop() {
                        Some(more) => local.push(more),
                        None => break,
                    }
                }
            }
            return Some(job);
        }
        loop {
            let attempt = match local {
                Some(local) => self.overflow.steal_batch_and_pop(local),
                None => self.overflow.steal(),
            };
            match attempt {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }
}
