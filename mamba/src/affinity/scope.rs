//! Scoped tasks: tasks that borrow from the caller's stack, all finished
//! before [`AffinityPool::scope`] returns.

use super::data::DataLocation;
use super::error::{AffinityError, Result};
use super::job::{self, JoinHandle};
use super::pool::AffinityPool;
use super::worker::{self, ScopeWake};
use crossbeam::utils::CachePadded;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
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
    /// Whether the caller of the scope is outside the pool: it then sleeps
    /// on the pool's scope wake-up rather than helping.
    outside: bool,
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

    /// One task ended: the last use of the state by a task. Once `outstanding`
    /// is zero the scope may return and the state be gone, so the wake-up
    /// goes through the pool, which outlives the task.
    ///
    /// # Safety
    /// `state` points to a live state whose `spawned` counts this task.
    unsafe fn complete(state: StatePtr, wake: &ScopeWake, panicked: Option<String>) {
        // SAFETY: the scope keeps its state in place until `outstanding` is
        // zero, which it cannot be before the decrement below; the state is
        // not used after it.
        let state = unsafe { &*state.0 };
        if let Some(message) = panicked {
            state
                .panics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
        }
        let outside = state.outside;
        if state.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 && outside {
            wake.notify();
        }
    }
}

/// A scope's state as its tasks hold it: a pointer, not a reference, since
/// the state may be gone as soon as a task's last decrement is done.
#[derive(Clone, Copy)]
struct StatePtr(*const ScopeState);

// SAFETY: it stands for a `&ScopeState`, which may be sent (the state is
// made of atomics, a mutex and a flag).
unsafe impl Send for StatePtr {}

/// Spawns tasks that may borrow anything that outlives the scope.
pub struct Scope<'scope> {
    pool: &'scope AffinityPool,
    state: ScopeState,
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
        let state = StatePtr(&self.state);
        let wake = &self.pool.shared().scopes;
        self.state.spawned.fetch_add(1, Ordering::Relaxed);
        let done = move |panicked| {
            // SAFETY: `spawned` counts this task from here on.
            unsafe { ScopeState::complete(state, wake, panicked) }
        };
        // SAFETY: the task borrows data that lives for 'scope, this scope's
        // state and the pool. `AffinityPool::scope` keeps the state in place
        // and does not return before `outstanding` is zero, which
        // happens in `done`'s last step, after the task, its captures and
        // its unclaimed value have left the job; `done` then touches only
        // the pool, which outlives every job: workers drain the queues
        // before stopping, and the pool cannot be dropped while this scope
        // borrows it. Every job is run or dropped, and either calls `done`.
        let (job, handle) = unsafe { job::package_scoped(ticket, f, done) };
        self.pool.enqueue(job);
        Ok(handle)
    }

    /// Runs `f` on the domain holding most pages of `data`: a page query
    /// per call, unless `data` is a [`super::DataSet`] located once
    /// ([`AffinityPool::locate`]).
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

    /// Runs `f` on the calling worker's domain, or on the domains in turn.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.spawn_in_domain(self.pool.default_domain(), f)
            .expect("the default domain exists")
    }

    /// Once the body has returned (no more spawns): waits for every task;
    /// a worker of the pool helps meanwhile, another thread sleeps.
    fn wait(&self) {
        let state = &self.state;
        let spawned = state.spawned.load(Ordering::Relaxed);
        let before = state.outstanding.fetch_add(spawned, Ordering::AcqRel);
        if before.wrapping_add(spawned) == 0 {
            return;
        }
        if state.outside {
            self.pool.shared().scopes.wait_until(|| state.finished());
            return;
        }
        let pool = self.pool.shared().id;
        while !state.finished() {
            if !worker::help_once(pool) {
                std::thread::yield_now();
            }
        }
    }
}

impl AffinityPool {
    /// Runs `op`, which may spawn tasks borrowing from the caller, and waits
    /// for all of them. Each task's value and panic come through its
    /// [`JoinHandle`]; a panic of `op` itself is resumed after the tasks end.
    ///
    /// # Errors
    /// [`AffinityError::ScopePanicked`] when any task panicked (whether or
    /// not its handle was joined).
    pub fn scope<'scope, R>(&'scope self, op: impl FnOnce(&Scope<'scope>) -> R) -> Result<R> {
        let scope = Scope {
            pool: self,
            state: ScopeState {
                spawned: Default::default(),
                outstanding: Default::default(),
                panics: Mutex::new(Vec::new()),
                outside: !worker::is_worker_of(self.shared().id),
            },
            _scope: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| op(&scope)));
        scope.wait();
        let value = result.unwrap_or_else(|p| resume_unwind(p));
        let panics = scope
            .state
            .panics
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        match panics.first() {
            None => Ok(value),
            Some(first) => Err(AffinityError::ScopePanicked {
                count: panics.len(),
                first: first.clone(),
            }),
        }
    }
}
