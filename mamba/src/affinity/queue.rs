//! A domain's queue for jobs sent from outside its workers: a ring of fixed
//! size first, so queueing allocates nothing, overflowing into an unbounded
//! injector.

use super::job::Job;
use crossbeam::deque::{Injector, Steal, Worker};
use crossbeam::queue::ArrayQueue;

/// Jobs the ring holds before new ones overflow.
const RING: usize = 1024;

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

    /// Takes a job; from the overflow, `local` (a worker's deque) also gets
    /// a batch.
    pub(crate) fn take(&self, local: Option<&Worker<Job>>) -> Option<Job> {
        if let Some(job) = self.ring.pop() {
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
