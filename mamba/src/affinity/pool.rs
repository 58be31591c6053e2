//! The NUMA-aware worker pool: one group of workers per domain, each
//! pinned on this machine, fed by per-domain work-stealing deques.

use super::bind::{self, BindGuard};
use super::cpuset::CpuSet;
use super::data::{DataLocation, DataSet};
use super::domain::{Domain, Domains, Level, Route};
use super::error::{AffinityError, Result};
use super::job::{self, Job, JoinHandle, Ticket};
use super::locality::Locality;
use super::queue::DomainQueue;
use super::stats::{Execution, PoolStats, WorkerStats};
use super::worker::{self, Shared, Sleep, WorkerMeta};
use crossbeam::deque::Worker;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How workers are bound on this machine's topology (a simulated topology
/// never binds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Each worker to one CPU of its domain, in turn.
    #[default]
    Core,
    /// Each worker to all the CPUs of its domain.
    Domain,
    /// Not bound.
    Unpinned,
}

/// Settings of an [`AffinityPool`].
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    level: Level,
    workers_per_domain: Option<usize>,
    pinning: Pinning,
    record: bool,
    name: String,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            level: Level::default(),
            workers_per_domain: None,
            pinning: Pinning::default(),
            record: false,
            name: "mamba-affinity".into(),
        }
    }
}

impl PoolBuilder {
    /// The locality level of a domain (default: NUMA node).
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Workers per domain (default: one per CPU of the domain; at least 1).
    pub fn workers_per_domain(mut self, n: usize) -> Self {
        self.workers_per_domain = Some(n.max(1));
        self
    }

    /// How workers are bound (default: one CPU each).
    pub fn pinning(mut self, pinning: Pinning) -> Self {
        self.pinning = pinning;
        self
    }

    /// Keep a record of every execution (see [`AffinityPool::executions`]).
    pub fn record_executions(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Prefix of the worker threads' names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the workers; on this machine's topology each is bound and its
    /// binding verified before this returns.
    ///
    /// # Errors
    /// [`AffinityError::EmptyCpuSet`] for a topology without CPUs; binding
    /// errors ([`AffinityError::BindNotVerified`], [`AffinityError::Os`]).
    pub fn build(self, locality: &Locality) -> Result<AffinityPool> {
        let domains = Domains::new(locality, self.level)?;
        let pin = locality.is_real() && self.pinning != Pinning::Unpinned;
        let mut metas = Vec::new();
        let mut locals = Vec::new();
        let mut members = vec![Vec::new(); domains.len()];
        for domain in domains.list() {
            let n = self.workers_per_domain.unwrap_or(domain.cpus.len()).max(1);
            let cpus = domain.cpus.to_vec();
            for i in 0..n {
                let bound: CpuSet = match (pin, self.pinning) {
                    (false, _) | (_, Pinning::Unpinned) => CpuSet::new(),
                    (true, Pinning::Core) => std::iter::once(cpus[i % cpus.len()]).collect(),
                    (true, Pinning::Domain) => domain.cpus.clone(),
                };
                let local = Worker::new_lifo();
                members[domain.index].push(metas.len());
                metas.push(WorkerMeta {
                    domain: domain.index,
                    only_cpu: bound.first().filter(|_| bound.len() == 1),
                    cpus: bound,
                    stealer: local.stealer(),
                });
                locals.push(local);
            }
        }
        let count = metas.len();
        let shared = Arc::new(Shared {
            id: worker::new_pool_id(),
            cpu_nodes: worker::cpu_nodes(locality),
            queues: (0..domains.len()).map(|_| DomainQueue::new()).collect(),
            sleep: Sleep::new(domains.len()),
            domains,
            workers: metas,
            members,
            counters: (0..count).map(|_| Default::default()).collect(),
            shutdown: AtomicBool::new(false),
            next_task: Default::default(),
            log: self.record.then(|| Mutex::new(Vec::new())),
        });
        let mut pool = AffinityPool {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(count),
            round_robin: AtomicUsize::new(0),
            pinned: pin,
        };
        let (tx, rx) = crossbeam::channel::bounded::<Result<()>>(count);
        for (index, local) in locals.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            let name = format!("{}-d{}-w{index}", self.name, shared.workers[index].domain);
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let cpus = &shared.workers[index].cpus;
                    let guard: Option<BindGuard> = if cpus.is_empty() {
                        None
                    } else {
                        match bind::bind_verified(cpus) {
                            Ok(g) => Some(g),
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    };
                    let _ = tx.send(Ok(()));
                    drop(tx);
                    worker::main_loop(shared, index, local, guard);
                })
                .map_err(|source| AffinityError::Os {
                    call: "pthread_create",
                    source,
                })?;
            pool.threads.push(thread);
        }
        drop(tx);
        for _ in 0..count {
            // Dropping `pool` on error stops the workers already started.
            rx.recv().map_err(|_| AffinityError::TaskLost)??;
        }
        Ok(pool)
    }
}

/// A pool of workers grouped by NUMA domain. Tasks go to the domain of
/// their data ([`AffinityPool::spawn_near`]) or of a node
/// ([`AffinityPool::spawn_on`]); a domain whose workers run out of work
/// steals from the nearest domains first.
///
/// Do not move the pool into one of its own tasks: dropping it waits for
/// the workers.
pub struct AffinityPool {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    round_robin: AtomicUsize,
    pinned: bool,
}

impl std::fmt::Debug for AffinityPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AffinityPool")
            .field("domains", &self.shared.domains.list())
            .field("workers", &self.threads.len())
            .field("pinned", &self.pinned)
            .finish()
    }
}

impl AffinityPool {
    /// Settings to build a pool with.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool with the default settings: a domain per NUMA node, a worker
    /// per CPU, each bound to its CPU on this machine.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(locality: &Locality) -> Result<Self> {
        PoolBuilder::default().build(locality)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The domains.
    pub fn domains(&self) -> &Domains {
        &self.shared.domains
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Whether the workers are bound to CPUs.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Tasks queued and not yet started in a domain (its queue and its
    /// workers' deques).
    pub fn queued(&self, domain: usize) -> usize {
        let s = &self.shared;
        s.queues.get(domain).map_or(0, DomainQueue::len)
            + s.members
                .get(domain)
                .map_or(0, |m| m.iter().map(|&w| s.workers[w].stealer.len()).sum())
    }

    /// The domain for the calling thread's spawns without a location: its
    /// own when it is a worker, else the next one in turn.
    pub(crate) fn default_domain(&self) -> usize {
        worker::current_domain(&self.shared).unwrap_or_else(|| self.next_domain())
    }

    /// The next domain in turn.
    pub(crate) fn next_domain(&self) -> usize {
        match self.shared.domains.len() {
            1 => 0,
            n => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Where [`AffinityPool::spawn_near`] would send a task using `data`.
    ///
    /// # Errors
    /// When the pages cannot be located ([`AffinityError::Mamba`]).
    pub fn route_for<D: DataLocation + ?Sized>(&self, data: &D) -> Result<Route> {
        let node = data.data_node(self.shared.domains.locality())?;
        let fallback = match node {
            Some(_) => self.round_robin.load(Ordering::Relaxed),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed),
        };
        Ok(self.shared.domains.route(node, fallback))
    }

    /// Locates `data` once, for spawns near it that do not query again
    /// (see [`DataSet`]).
    ///
    /// # Errors
    /// When the pages cannot be located ([`AffinityError::Mamba`]).
    pub fn locate<D: DataLocation + ?Sized>(&self, data: &D) -> Result<DataSet> {
        DataSet::locate(data, self.shared.domains.locality())
    }

    /// The domain serving a node.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn domain_of(&self, node: u32) -> Result<&Domain> {
        let (d, _) = self.shared.domains.home_of(node)?;
        Ok(&self.shared.domains.list()[d])
    }

    /// Checks `domain` and numbers a task for it.
    pub(crate) fn ticket(&self, domain: usize) -> Result<Ticket> {
        self.shared.domains.get(domain)?;
        Ok(Ticket {
            pool: self.shared.id,
            id: self.shared.next_task.fetch_add(1, Ordering::Relaxed),
            target: domain,
            counted: true,
        })
    }

    /// A ticket for a scope's body sent to `domain` (an index of the pool's):
    /// no task number, not counted in the statistics.
    pub(crate) fn body_ticket(&self, domain: usize) -> Ticket {
        Ticket {
            pool: self.shared.id,
            id: u64::MAX,
            target: domain,
            counted: false,
        }
    }

    /// Queues a job on its domain and wakes a worker for it.
    pub(crate) fn enqueue(&self, job: Job) {
        worker::push(&self.shared, job);
    }

    /// Runs `f` on a worker of `domain`.
    ///
    /// # Errors
    /// [`AffinityError::UnknownDomain`].
    pub fn spawn_in_domain<F, T>(&self, domain: usize, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = job::package(self.ticket(domain)?, f, |_| {});
        self.enqueue(job);
        Ok(handle)
    }

    /// Runs `f` on the calling worker's domain, or on the domains in turn.
    #[must_use = "dropping the handle loses the task's result and panic"]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_in_domain(self.default_domain(), f)
            .expect("the default domain exists")
    }

    /// Runs `f` on the domain serving NUMA node `node`.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn spawn_on<F, T>(&self, node: u32, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (domain, _) = self.shared.domains.home_of(node)?;
        self.spawn_in_domain(domain, f)
    }

    /// Runs `f` on the domain holding most pages of `data` (a
    /// [`crate::locate`] query, sampled on long ranges as
    /// [`super::DataRange::sample`]); data without pages goes to the domains
    /// in turn. The query costs microseconds, thirty times and more the
    /// spawn (see [`super::data`]), so a range's node is kept per thread and later spawns near
    /// the same range route without a query (see
    /// [`super::forget_locations`]); [`super::Fresh`] queries every time,
    /// and a [`DataSet`] ([`AffinityPool::locate`]) holds one answer
    /// explicitly.
    ///
    /// # Errors
    /// When the pages cannot be located.
    pub fn spawn_near<D, F, T>(&self, data: &D, f: F) -> Result<JoinHandle<T>>
    where
        D: DataLocation + ?Sized,
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let route = self.route_for(data)?;
        self.spawn_in_domain(route.domain, f)
    }

    /// Counters of the pool and of every worker.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        let workers = s
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerStats::read(i, w.domain, w.cpus.clone(), &s.counters[i]))
            .collect();
        PoolStats::from_workers(workers, self.pinned)
    }

    /// Every execution so far, when built with
    /// [`PoolBuilder::record_executions`] (else empty).
    pub fn executions(&self) -> Vec<Execution> {
        self.shared.log.as_ref().map_or_else(Vec::new, |log| {
            log.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
    }
}

impl Drop for AffinityPool {
    /// Lets the workers finish every queued task, then stops them.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.sleep.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
