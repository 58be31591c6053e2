//! The workers: where each finds its next task (own deque, its domain's
//! queue, its siblings, then other domains nearest first), how idle workers
//! sleep and wake, and the state they share.

use super::bind::{self, BindGuard};
use super::cpuset::CpuSet;
use super::domain::Domains;
use super::job::Job;
use super::stats::{Execution, Origin, WorkerCounters};
use crossbeam::deque::{Injector, Stealer, Worker};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Rounds of searching (with a yield between) before a worker sleeps.
const SPIN_ROUNDS: usize = 16;
/// Idle rounds before a worker looks at other domains: time for the
/// target domain's own workers to wake and take their work.
const REMOTE_AFTER: usize = SPIN_ROUNDS / 2;

/// A worker as the others see it.
pub(crate) struct WorkerMeta {
    /// Its domain.
    pub(crate) domain: usize,
    /// The CPUs it is bound to (empty when unpinned).
    pub(crate) cpus: CpuSet,
    /// Where to steal from it.
    pub(crate) stealer: Stealer<Job>,
}

/// Idle workers, per domain, and the wake-up protocol: a worker announces
/// itself as a sleeper and then re-checks the epoch, a spawner bumps the
/// epoch and then looks for searchers and sleepers, so one of the two sees
/// the other. Awake workers without a task count as searching: they will
/// find new work without being woken.
pub(crate) struct Sleep {
    epoch: AtomicU64,
    sleepers: AtomicUsize,
    searching: Vec<AtomicUsize>,
    per_domain: Mutex<Vec<usize>>,
    wake: Vec<Condvar>,
}

impl Sleep {
    pub(crate) fn new(domains: usize) -> Self {
        Sleep {
            epoch: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            searching: (0..domains).map(|_| AtomicUsize::new(0)).collect(),
            per_domain: Mutex::new(vec![0; domains]),
            wake: (0..domains).map(|_| Condvar::new()).collect(),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn start_searching(&self, domain: usize) {
        self.searching[domain].fetch_add(1, Ordering::SeqCst);
    }

    fn stop_searching(&self, domain: usize) {
        self.searching[domain].fetch_sub(1, Ordering::SeqCst);
    }

    fn sleep(&self, domain: usize, seen: u64, shutdown: &AtomicBool) {
        let mut counts = self
            .per_domain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts[domain] += 1;
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.epoch() == seen && !shutdown.load(Ordering::SeqCst) {
            counts = self.wake[domain]
                .wait(counts)
                .unwrap_or_else(PoisonError::into_inner);
        }
        counts[domain] -= 1;
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// New work for `domain`: nothing to do when one of its workers is
    /// searching; else wakes a sleeper there; else, unless a worker of
    /// another domain is searching (it will steal), the nearest domain's
    /// sleeper (`order`).
    pub(crate) fn notify(&self, domain: usize, order: &[usize]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.searching[domain].load(Ordering::SeqCst) > 0
            || self.sleepers.load(Ordering::SeqCst) == 0
        {
            return;
        }
        let counts = self
            .per_domain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts[domain] > 0 {
            self.wake[domain].notify_one();
            return;
        }
        if self.searching.iter().any(|s| s.load(Ordering::SeqCst) > 0) {
            return;
        }
        if let Some(&d) = order.iter().find(|&&d| counts[d] > 0) {
            self.wake[d].notify_one();
        }
    }

    /// Wakes everybody (shutdown).
    pub(crate) fn notify_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let _counts = self
            .per_domain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for c in &self.wake {
            c.notify_all();
        }
    }
}

/// What the pool's threads share.
pub(crate) struct Shared {
    pub(crate) domains: Domains,
    pub(crate) queues: Vec<Injector<Job>>,
    pub(crate) workers: Vec<WorkerMeta>,
    /// Worker indexes of each domain.
    pub(crate) members: Vec<Vec<usize>>,
    pub(crate) counters: Vec<WorkerCounters>,
    pub(crate) sleep: Sleep,
    pub(crate) shutdown: AtomicBool,
    pub(crate) next_task: AtomicU64,
    pub(crate) log: Option<Mutex<Vec<Execution>>>,
}

/// The worker running on this thread.
struct Ctx {
    shared: Arc<Shared>,
    index: usize,
    domain: usize,
    local: Worker<Job>,
}

thread_local! {
    static CURRENT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// A worker of some pool, as seen from inside one of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WorkerId {
    /// Worker index in its pool.
    pub worker: usize,
    /// Its domain.
    pub domain: usize,
}

/// The pool worker running the calling code, if any.
pub fn current_worker() -> Option<WorkerId> {
    CURRENT.with(|c| {
        c.borrow().as_ref().map(|ctx| WorkerId {
            worker: ctx.index,
            domain: ctx.domain,
        })
    })
}

/// Whether the calling thread is a worker of this pool.
pub(crate) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|ctx| Arc::ptr_eq(&ctx.shared, shared))
    })
}

/// The domain of the calling worker of this pool.
pub(crate) fn current_domain(shared: &Arc<Shared>) -> Option<usize> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|ctx| Arc::ptr_eq(&ctx.shared, shared))
            .map(|ctx| ctx.domain)
    })
}

/// Queues a job: on the calling worker's own deque when it is a worker of
/// the target domain, else on the domain's queue; then wakes someone.
pub(crate) fn push(shared: &Arc<Shared>, job: Job) {
    let target = job.target;
    let job = CURRENT.with(|c| match c.borrow().as_ref() {
        Some(ctx) if Arc::ptr_eq(&ctx.shared, shared) && ctx.domain == target => {
            ctx.local.push(job);
            None
        }
        _ => Some(job),
    });
    if let Some(job) = job {
        shared.queues[target].push(job);
    }
    shared
        .sleep
        .notify(target, shared.domains.steal_order(target));
}

fn steal_from(stealer: &Stealer<Job>) -> Option<Job> {
    loop {
        match stealer.steal() {
            crossbeam::deque::Steal::Success(job) => return Some(job),
            crossbeam::deque::Steal::Empty => return None,
            crossbeam::deque::Steal::Retry => {}
        }
    }
}

fn steal_queue(queue: &Injector<Job>, local: Option<&Worker<Job>>) -> Option<Job> {
    loop {
        let attempt = match local {
            Some(local) => queue.steal_batch_and_pop(local),
            None => queue.steal(),
        };
        match attempt {
            crossbeam::deque::Steal::Success(job) => return Some(job),
            crossbeam::deque::Steal::Empty => return None,
            crossbeam::deque::Steal::Retry => {}
        }
    }
}

/// The next job for a worker, and where it came from. Other domains are
/// searched only when the worker's own domain has nothing, and only with
/// `remote` (the worker has been idle a while, or was woken for them).
fn find_job(ctx: &Ctx, remote: bool) -> Option<(Job, Origin)> {
    let shared = &*ctx.shared;
    if let Some(job) = ctx.local.pop() {
        return Some((job, Origin::Own));
    }
    if let Some(job) = steal_queue(&shared.queues[ctx.domain], Some(&ctx.local)) {
        return Some((job, Origin::Own));
    }
    for &w in &shared.members[ctx.domain] {
        if w != ctx.index {
            if let Some(job) = steal_from(&shared.workers[w].stealer) {
                return Some((job, Origin::StolenInDomain));
            }
        }
    }
    if !remote {
        return None;
    }
    for &d in shared.domains.steal_order(ctx.domain) {
        // One job at a time across domains: batches would drag the other
        // domain's work here.
        if let Some(job) = steal_queue(&shared.queues[d], None) {
            return Some((job, Origin::StolenAcrossDomains));
        }
        for &w in &shared.members[d] {
            if let Some(job) = steal_from(&shared.workers[w].stealer) {
                return Some((job, Origin::StolenAcrossDomains));
            }
        }
    }
    None
}

fn run_job(shared: &Shared, index: usize, domain: usize, job: Job, origin: Origin) {
    let cpu = bind::current_cpu();
    let locality = shared.domains.locality();
    let node = if locality.is_real() {
        cpu.and_then(|c| locality.node_of_cpu(c))
    } else {
        shared.domains.list()[domain].primary_node()
    };
    let execution = Execution {
        task: job.id,
        worker: index,
        domain,
        target: job.target,
        cpu,
        node,
        origin,
    };
    let record = |panic: Option<&str>| {
        shared.counters[index].record(&execution, panic.is_some());
        if let Some(log) = &shared.log {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(execution);
        }
    };
    (job.body)(&execution, &record);
}

/// Runs one job of this pool on the calling worker (one waiting for a task
/// or a scope); false when it is not a worker of this pool or found
/// nothing.
pub(crate) fn help_once(shared: &Arc<Shared>) -> bool {
    run_one(shared, true)
}

fn run_one(shared: &Arc<Shared>, remote: bool) -> bool {
    match find_own(shared, remote) {
        Some((job, origin)) => {
            let (index, domain) = CURRENT.with(|c| {
                let ctx = c.borrow();
                let ctx = ctx.as_ref().expect("found by a worker");
                (ctx.index, ctx.domain)
            });
            run_job(shared, index, domain, job, origin);
            true
        }
        None => false,
    }
}

/// A job for the calling thread when it is a worker of this pool.
fn find_own(shared: &Arc<Shared>, remote: bool) -> Option<(Job, Origin)> {
    CURRENT.with(|c| {
        let ctx = c.borrow();
        let ctx = ctx
            .as_ref()
            .filter(|ctx| Arc::ptr_eq(&ctx.shared, shared))?;
        find_job(ctx, remote)
    })
}

/// A worker thread's life: keep its binding, run jobs until shutdown and
/// empty queues.
pub(crate) fn main_loop(
    shared: Arc<Shared>,
    index: usize,
    local: Worker<Job>,
    guard: Option<BindGuard>,
) {
    let domain = shared.workers[index].domain;
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(Ctx {
            shared: Arc::clone(&shared),
            index,
            domain,
            local,
        })
    });
    let sleep = &shared.sleep;
    let mut idle_rounds = 0;
    let mut woken = false;
    sleep.start_searching(domain);
    loop {
        let seen = sleep.epoch();
        if let Some((job, origin)) = find_own(&shared, woken || idle_rounds >= REMOTE_AFTER) {
            sleep.stop_searching(domain);
            run_job(&shared, index, domain, job, origin);
            sleep.start_searching(domain);
            idle_rounds = 0;
            woken = false;
            continue;
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        if idle_rounds < SPIN_ROUNDS {
            idle_rounds += 1;
            std::thread::yield_now();
            continue;
        }
        sleep.stop_searching(domain);
        sleep.sleep(domain, seen, &shared.shutdown);
        sleep.start_searching(domain);
        idle_rounds = 0;
        woken = true;
    }
    sleep.stop_searching(domain);
    CURRENT.with(|c| c.borrow_mut().take());
    drop(guard);
}
