//! The workers: where each finds its next task (own deque, its domain's
//! queue, its siblings, then other domains nearest first), how idle workers
//! sleep and wake, and the state they share.

use super::bind::{self, BindGuard};
use super::cpuset::CpuSet;
use super::domain::Domains;
use super::job::Job;
use super::locality::Locality;
use super::queue::DomainQueue;
use super::stats::{Execution, Origin, WorkerCounters};
use crossbeam::deque::{Stealer, Worker};
use crossbeam::utils::CachePadded;
use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// The CPU it is bound to, when that is one.
    pub(crate) only_cpu: Option<u32>,
    /// Where to steal from it.
    pub(crate) stealer: Stealer<Job>,
}

/// Idle workers, per domain, and the wake-up protocol: a spawner queues
/// its job and then looks for searchers and sleepers; a worker about to
/// sleep announces itself as a sleeper and then searches once more, under
/// the lock the spawner takes to wake it. With a full fence on both sides
/// between the write and the read, either the spawner sees the sleeper or
/// the sleeper finds the job. Workers idle but awake count as searching:
/// they will find new work without being woken; a worker running tasks one
/// after the other touches none of these counters.
///
/// A spawner that wakes a sleeper takes it off the counts itself and
/// leaves a wake token: the spawns that follow, before the sleeper is up,
/// see one sleeper fewer instead of each waking it again (a futex call
/// per spawn).
pub(crate) struct Sleep {
    sleepers: AtomicUsize,
    searching: Vec<CachePadded<AtomicUsize>>,
    per_domain: Mutex<Vec<Sleepers>>,
    wake: Vec<Condvar>,
}

/// The sleepers of one domain.
#[derive(Debug, Clone, Copy, Default)]
struct Sleepers {
    /// Asleep and not yet called.
    asleep: usize,
    /// Called and not yet up: each sleeper that wakes takes one.
    tokens: usize,
}

impl Sleep {
    pub(crate) fn new(domains: usize) -> Self {
        Sleep {
            sleepers: AtomicUsize::new(0),
            searching: (0..domains).map(|_| Default::default()).collect(),
            per_domain: Mutex::new(vec![Sleepers::default(); domains]),
            wake: (0..domains).map(|_| Condvar::new()).collect(),
        }
    }

    fn start_searching(&self, domain: usize) {
        self.searching[domain].fetch_add(1, Ordering::SeqCst);
    }

    fn stop_searching(&self, domain: usize) {
        self.searching[domain].fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps until woken, unless `search` (run once registered as a
    /// sleeper) finds a job, which is returned, or the pool shuts down.
    fn sleep<J>(
        &self,
        domain: usize,
        shutdown: &AtomicBool,
        search: impl FnOnce() -> Option<J>,
    ) -> Option<J> {
        let mut counts = self
            .per_domain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts[domain].asleep += 1;
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let found = search();
        if found.is_none() {
            loop {
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
                counts = self.wake[domain]
                    .wait(counts)
                    .unwrap_or_else(PoisonError::into_inner);
                if counts[domain].tokens > 0 {
                    // Called: the caller took this sleeper off the counts.
                    counts[domain].tokens -= 1;
                    return None;
                }
            }
        }
        counts[domain].asleep -= 1;
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Calls one sleeper of `domain` (there is one).
    fn call(&self, counts: &mut [Sleepers], domain: usize) {
        counts[domain].asleep -= 1;
        counts[domain].tokens += 1;
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.wake[domain].notify_one();
    }

    /// New work for `domain` (already queued): nothing to do when one of
    /// its workers is searching or nobody sleeps; else wakes a sleeper
    /// there; else, unless a worker of another domain is searching (it will
    /// steal), the nearest domain's sleeper (`order`).
    pub(crate) fn notify(&self, domain: usize, order: &[usize]) {
        fence(Ordering::SeqCst);
        if self.searching[domain].load(Ordering::SeqCst) > 0
            || self.sleepers.load(Ordering::SeqCst) == 0
        {
            return;
        }
        let mut counts = self
            .per_domain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts[domain].asleep > 0 {
            self.call(&mut counts, domain);
            return;
        }
        if self.searching.iter().any(|s| s.load(Ordering::SeqCst) > 0) {
            return;
        }
        if let Some(&d) = order.iter().find(|&&d| counts[d].asleep > 0) {
            self.call(&mut counts, d);
        }
    }

    /// Wakes everybody (shutdown, already flagged).
    pub(crate) fn notify_all(&self) {
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
    /// Identity of the pool, unique in the process (handles and scopes
    /// hold it instead of a reference).
    pub(crate) id: u64,
    pub(crate) domains: Domains,
    /// The node of each CPU of a real topology, by CPU number (looked up
    /// once, not per task).
    pub(crate) cpu_nodes: Vec<Option<u32>>,
    pub(crate) queues: Vec<DomainQueue>,
    pub(crate) workers: Vec<WorkerMeta>,
    /// Worker indexes of each domain.
    pub(crate) members: Vec<Vec<usize>>,
    pub(crate) counters: Vec<WorkerCounters>,
    pub(crate) sleep: Sleep,
    pub(crate) shutdown: AtomicBool,
    /// Task numbers; written by spawners only, on a line of its own.
    pub(crate) next_task: CachePadded<AtomicU64>,
    pub(crate) log: Option<Mutex<Vec<Execution>>>,
}

/// [`Locality::node_of_cpu`] for every CPU of `locality`, by CPU number.
pub(crate) fn cpu_nodes(locality: &Locality) -> Vec<Option<u32>> {
    let count = locality.cpus().iter().last().map_or(0, |c| c as usize + 1);
    (0..count).map(|c| locality.node_of_cpu(c as u32)).collect()
}

/// Source of pool identities.
static NEXT_POOL: AtomicU64 = AtomicU64::new(0);

/// A new pool identity.
pub(crate) fn new_pool_id() -> u64 {
    NEXT_POOL.fetch_add(1, Ordering::Relaxed)
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

/// Whether the calling thread is a worker of pool `pool`.
pub(crate) fn is_worker_of(pool: u64) -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|ctx| ctx.shared.id == pool))
}

/// The domain of the calling worker of this pool.
pub(crate) fn current_domain(shared: &Shared) -> Option<usize> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|ctx| ctx.shared.id == shared.id)
            .map(|ctx| ctx.domain)
    })
}

/// Queues a job: on the calling worker's own deque when it is a worker of
/// the target domain, else on the domain's queue; then wakes someone.
pub(crate) fn push(shared: &Shared, job: Job) {
    let target = job.target as usize;
    let job = CURRENT.with(|c| match c.borrow().as_ref() {
        Some(ctx) if ctx.shared.id == shared.id && ctx.domain == target => {
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

/// The next job for a worker, and where it came from. Other domains are
/// searched only when the worker's own domain has nothing, and only with
/// `remote` (the worker has been idle a while, or was woken for them).
fn find_job(ctx: &Ctx, remote: bool) -> Option<(Job, Origin)> {
    let shared = &*ctx.shared;
    if let Some(job) = ctx.local.pop() {
        return Some((job, Origin::Own));
    }
    if let Some(job) = shared.queues[ctx.domain].take(Some(&ctx.local)) {
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
        if let Some(job) = shared.queues[d].take(None) {
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
    // A worker bound to one CPU (verified when it started) runs there: no
    // system call per task to ask.
    let cpu = shared.workers[index].only_cpu.or_else(bind::current_cpu);
    let node = if shared.domains.locality().is_real() {
        cpu.and_then(|c| shared.cpu_nodes.get(c as usize).copied().flatten())
    } else {
        shared.domains.list()[domain].primary_node()
    };
    let execution = Execution {
        task: job.id,
        worker: index,
        domain,
        target: job.target as usize,
        cpu,
        node,
        origin,
    };
    let counted = job.counted;
    let record = |panic: Option<&str>| {
        if !counted {
            return;
        }
        shared.counters[index].record(&execution, panic.is_some());
        if let Some(log) = &shared.log {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(execution);
        }
    };
    job.run(&execution, &record);
}

/// Runs one job of pool `pool` on the calling worker (one waiting for a
/// task or a scope), from other domains too with `remote`; false when it
/// is not a worker of this pool or found nothing.
fn help_once(pool: u64, remote: bool) -> bool {
    CURRENT.with(|c| {
        let ctx = c.borrow();
        let Some(ctx) = ctx.as_ref().filter(|ctx| ctx.shared.id == pool) else {
            return false;
        };
        match find_job(ctx, remote) {
            Some((job, origin)) => {
                // The job may use `CURRENT` too: only shared borrows nest.
                run_job(&ctx.shared, ctx.index, ctx.domain, job, origin);
                true
            }
            None => false,
        }
    })
}

/// Runs jobs of pool `pool` on the calling worker until `finished` holds
/// (a scope waiting for its tasks); yields when it finds none. It helps
/// other domains only after [`REMOTE_AFTER`] empty rounds, as an idle
/// worker does, so that the tasks it waits for run in their own domains
/// first.
pub(crate) fn help_until(pool: u64, finished: impl Fn() -> bool) {
    let mut idle_rounds = 0;
    while !finished() {
        if help_once(pool, idle_rounds >= REMOTE_AFTER) {
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            std::thread::yield_now();
        }
    }
}

/// A job for the calling thread when it is a worker of this pool.
fn find_own(shared: &Shared, remote: bool) -> Option<(Job, Origin)> {
    CURRENT.with(|c| {
        let ctx = c.borrow();
        let ctx = ctx.as_ref().filter(|ctx| ctx.shared.id == shared.id)?;
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
    // Counted as searching only while idle and awake.
    let mut searching = false;
    let stop_searching = |searching: &mut bool| {
        if std::mem::take(searching) {
            sleep.stop_searching(domain);
        }
    };
    loop {
        let mut found = find_own(&shared, woken || idle_rounds >= REMOTE_AFTER);
        if found.is_none() {
            if shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            if idle_rounds < SPIN_ROUNDS {
                if !searching {
                    sleep.start_searching(domain);
                    searching = true;
                }
                idle_rounds += 1;
                std::thread::yield_now();
                continue;
            }
            stop_searching(&mut searching);
            found = sleep.sleep(domain, &shared.shutdown, || find_own(&shared, true));
            idle_rounds = 0;
            woken = true;
        }
        if let Some((job, origin)) = found {
            stop_searching(&mut searching);
            run_job(&shared, index, domain, job, origin);
            idle_rounds = 0;
            woken = false;
        }
    }
    stop_searching(&mut searching);
    CURRENT.with(|c| c.borrow_mut().take());
    drop(guard);
}
