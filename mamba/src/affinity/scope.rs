//! Scoped tasks: tasks that borrow from the caller's stack, all finished
//! before [`AffinityPool::scope`] returns.
//!
//! A scope opened outside the pool runs its body on a worker, as rayon's
//! does, while the caller sleeps: the body's spawns then go to that
//! worker's own deque when they are for its domain (no shared queue, no
//! thread outside the pool competing for the CPUs), and the worker runs
//! its own tasks once the body has returned. Spawns without a location
//! still go to the domains in turn, as from outside.

use super::data::DataLocation;
use super::error::{AffinityError, Result};
use super::job::{self, JoinHandle};
use super::pool::AffinityPool;
use super::worker;
use crossbeam::utils::CachePadded;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A scope's count of tasks, and the panics of those that ended.
///
/// Spawning and ending write to different cache lines: `spawned` counts
/// the tasks spawned; `outstanding` goes down by one as each task ends and,
/// once the body has returned, up by `spawned`. It wraps below zero while
/// the body runs and reaches zero once, when the last task has ended and
/// the body has returned: whoever brings it there uses the state last.
struct ScopeState {
    spawned: CachePadded<AtomicUsize>,
    outstanding: CachePadded<AtomicUsize>,
    panics: Mutex<Vec<String>>,
}

impl ScopeState {
    /// Whether every task has ended, once the body has returned.
    fn finished(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) == 0
    }

    /// Tasks spawned and not yet ended, while the body runs.
    fn pending(&self) -> usize {
        let spawned = self.spawned.load(Ordering::Relaxed);
        spawned.wrapping_add(self.outstanding.load(Ordering::Relaxed))
    }

    /// One task ended: the last use of the state by a task. Once
    /// `outstanding` is zero the scope may return and the state be gone;
    /// the worker waiting for it polls, so nobody needs waking.
    ///
    /// # Safety
    /// `state` points to a live state whose `spawned` counts this task.
    unsafe fn complete(state: StatePtr, panicked: Option<String>) {
        // SAFETY: the scope keeps its state in place until `outstanding` is
        // zero, which it cannot be before the decrement below; the state is
        // not used after it.
        let state = unsafe { state.0.as_ref() };
        if let Some(message) = panicked {
            state
                .panics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
        }
        state.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A scope's state as its tasks hold it: a pointer, not a reference, since
/// the state may be gone as soon as a task's last decrement is done. Never
/// null, which keeps a queued task's closures one word smaller.
#[derive(Clone, Copy)]
struct StatePtr(NonNull<ScopeState>);

// SAFETY: it stands for a `&ScopeState`, which may be sent (the state is
// made of atomics and a mutex).
unsafe impl Send for StatePtr {}

/// Spawns tasks that may borrow anything that outlives the scope.
pub struct Scope<'scope> {
    pool: &'scope AffinityPool,
    state: ScopeState,
    /// Whether the scope was opened outside the pool: spawns without a
    /// location then go to the domains in turn.
    rotate: bool,
    /// Invariant in `'scope`, as `std::thread::Scope`.
    _scope: PhantomData<&'scope mut &'scope ()>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state.pending())
            .finish()
    }
}

impl<'scope> Scope<'scope> {
    /// Runs `f` on a worker of `domain`.
    ///
    /// # Errors
    /// [`AffinityError::UnknownDomain`].
    pub fn spawn_in_domain<F, T>(&self, domain: usize, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let ticket = self.pool.ticket(domain)?;
        let state = StatePtr(NonNull::from(&self.state));
        self.state.spawned.fetch_add(1, Ordering::Relaxed);
        let done = move |panicked| {
            // SAFETY: `spawned` counts this task from here on.
            unsafe { ScopeState::complete(state, panicked) }
        };
        // SAFETY: the task borrows data that lives for 'scope, this scope's
        // state. `AffinityPool::scope` keeps the state in place and does
        // not return before `outstanding` is zero, which happens in `done`'s
        // last step, after the task, its captures and its unclaimed value
        // have left the job. Every job is run or dropped (workers drain the
        // queues before stopping, and the pool cannot be dropped while this
        // scope borrows it), and either calls `done`.
        let (job, handle) = unsafe { job::package_scoped(ticket, f, done) };
        self.pool.enqueue(job);
        Ok(handle)
    }

    /// Runs `f` on the domain holding most pages of `data`, as
    /// [`AffinityPool::spawn_near`]: a page query the first time this
    /// thread meets a range, its cached node afterwards.
    ///
    /// # Errors
    /// When the pages cannot be located.
    pub fn spawn_near<D, F, T>(&self, data: &D, f: F) -> Result<JoinHandle<T>>
    where
        D: DataLocation + ?Sized,
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let route = self.pool.route_for(data)?;
        self.spawn_in_domain(route.domain, f)
    }

    /// Runs `f` on the domain serving NUMA node `node`.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn spawn_on<F, T>(&self, node: u32, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let (domain, _) = self.pool.domains().home_of(node)?;
        self.spawn_in_domain(domain, f)
    }

    /// Runs `f` on the domain of the worker that opened the scope, or, for
    /// a scope opened outside the pool, on the domains in turn.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let domain = if self.rotate {
            self.pool.next_domain()
        } else {
            self.pool.default_domain()
        };
        self.spawn_in_domain(domain, f)
            .expect("the default domain exists")
    }

    /// Once the body has returned (no more spawns): waits for every task,
    /// on a worker of the pool, running tasks meanwhile (see
    /// [`worker::help_until`]).
    fn wait(&self) {
        let state = &self.state;
        let spawned = state.spawned.load(Ordering::Relaxed);
        let before = state.outstanding.fetch_add(spawned, Ordering::AcqRel);
        if before.wrapping_add(spawned) == 0 {
            return;
        }
        worker::help_until(self.pool.shared().id, || state.finished());
    }
}

/// What a scope's body leaves: its value or its panic, and then the
/// scope's verdict on its tasks.
type BodyOutcome<R> = std::thread::Result<Result<R>>;

impl AffinityPool {
    /// Runs `op`, which may spawn tasks borrowing from the caller, and waits
    /// for all of them. Each task's value and panic come through its
    /// [`JoinHandle`]; a panic of `op` itself is resumed after the tasks end.
    ///
    /// Called outside the pool, `op` runs on one of its workers (the
    /// domains in turn) while the caller sleeps, hence `Send`; it is not
    /// counted as a task, and it starts once a worker is free: a body
    /// should not block on what the pool's running tasks wait for. Called
    /// from a task of the pool, it runs in place.
    ///
    /// # Errors
    /// [`AffinityError::ScopePanicked`] when any task panicked (whether or
    /// not its handle was joined).
    pub fn scope<'scope, R>(&'scope self, op: impl FnOnce(&Scope<'scope>) -> R + Send) -> Result<R>
    where
        R: Send,
    {
        let outcome = if worker::is_worker_of(self.shared().id) {
            self.scope_here(op, false)
        } else {
            let domain = self.next_domain();
            let body = move || self.scope_here(op, true);
            // SAFETY: the body borrows `op`'s captures and this pool, which
            // outlive this call; the handle is joined below before it
            // returns, and the join returns only once the body has run (its
            // completion borrows nothing), or once the job was dropped unrun,
            // which cannot happen while the pool is borrowed here.
            let (job, handle) = unsafe {
                job::package_scoped(self.body_ticket(domain), body, |_: Option<String>| {})
            };
            self.enqueue(job);
            handle.join()?
        };
        outcome.unwrap_or_else(|p| resume_unwind(p))
    }

    /// Runs a scope's body on the calling thread and waits for its tasks.
    fn scope_here<'scope, R>(
        &'scope self,
        op: impl FnOnce(&Scope<'scope>) -> R,
        rotate: bool,
    ) -> BodyOutcome<R> {
        let scope = Scope {
            pool: self,
            state: ScopeState {
                spawned: Default::default(),
                outstanding: Default::default(),
                panics: Mutex::new(Vec::new()),
            },
            rotate,
            _scope: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| op(&scope)));
        scope.wait();
        let panics = scope
            .state
            .panics
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        result.map(|value| match panics.first() {
            None => Ok(value),
            Some(first) => Err(AffinityError::ScopePanicked {
                count: panics.len(),
                first: first.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::affinity::{current_worker, AffinityError, AffinityPool, Locality};
    use crate::Config;

    /// Four simulated NUMA nodes with two CPUs each: four domains.
    fn four_domains() -> AffinityPool {
        let config = Config {
            synthetic: Some("pack:2 numa:2 core:2 pu:1".into()),
            gpu: false,
            ..Config::default()
        };
        AffinityPool::builder()
            .record_executions(true)
            .build(&Locality::load(&config).unwrap())
            .unwrap()
    }

    #[test]
    fn a_body_from_outside_runs_on_a_worker_and_is_not_a_task() {
        let pool = four_domains();
        assert_eq!(pool.domains().len(), 4);
        let (body_worker, values) = pool
            .scope(|s| {
                let handles: Vec<_> = (0..8u32).map(|i| s.spawn(move || i * 2)).collect();
                let values: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                (current_worker(), values)
            })
            .unwrap();
        assert!(body_worker.is_some(), "the body runs on a worker");
        assert_eq!(values, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        // Eight tasks ran, the body is not among them.
        assert_eq!(pool.stats().executed, 8);
        let executions = pool.executions();
        assert_eq!(executions.len(), 8);
        // Spawns without a location from outside went to the domains in
        // turn, two each, whichever worker ran the body.
        let mut per_domain = [0; 4];
        for e in &executions {
            per_domain[e.target] += 1;
        }
        assert_eq!(per_domain, [2; 4]);
    }

    #[test]
    fn a_body_from_a_task_runs_in_place_on_its_domain() {
        let pool = four_domains();
        let (outer, inner) = pool
            .scope(|outside| {
                outside
                    .spawn_in_domain(2, || {
                        let me = current_worker().unwrap();
                        let targets = pool.scope(|s| {
                            assert_eq!(current_worker(), Some(me));
                            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| ())).collect();
                            handles.iter().map(|h| h.target()).collect::<Vec<_>>()
                        });
                        (me, targets.unwrap())
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            })
            .unwrap();
        // The task may have been stolen by another domain's worker (idle
        // workers steal across domains after a few empty rounds): the inner
        // scope's spawns go to the domain of whichever worker runs it.
        assert_eq!(inner, vec![outer.domain; 4]);
    }

    #[test]
    fn a_panicking_body_panics_the_caller_after_its_tasks() {
        let pool = four_domains();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| done.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
                }
                panic!("body failed");
            })
        }));
        let payload = caught.expect_err("the body's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"body failed"));
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 4);
        // A task's panic is the scope's error.
        match pool.scope(|s| {
            s.spawn(|| panic!("task failed"));
        }) {
            Err(AffinityError::ScopePanicked { count: 1, first }) => {
                assert_eq!(first, "task failed")
            }
            other => panic!("expected the task's panic, got {other:?}"),
        }
    }
}
