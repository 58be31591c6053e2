//! Scoped tasks: tasks that borrow from the caller's stack, all finished
//! before [`AffinityPool::scope`] returns.

use super::data::DataLocation;
use super::error::{AffinityError, Result};
use super::job::{Body, JoinHandle};
use super::pool::AffinityPool;
use super::worker;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Tasks of a scope still running, and the panics of those that ended.
#[derive(Default)]
struct ScopeState {
    pending: AtomicUsize,
    lock: Mutex<Vec<String>>,
    done: Condvar,
}

impl ScopeState {
    fn complete(&self, panicked: Option<String>) {
        if let Some(message) = panicked {
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The waiter checks `pending` under the lock: taking it here
            // means it is either not yet checking or already waiting.
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.done.notify_all();
        }
    }
}

/// Spawns tasks that may borrow anything that outlives the scope.
pub struct Scope<'scope> {
    pool: &'scope AffinityPool,
    state: Arc<ScopeState>,
    /// Invariant in `'scope`, as `std::thread::Scope`.
    _scope: PhantomData<&'scope mut &'scope ()>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state.pending.load(Ordering::Relaxed))
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
        let state = Arc::clone(&self.state);
        let (body, handle, id) = self
            .pool
            .submit(domain, f, move |panicked| state.complete(panicked))?;
        self.state.pending.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the body borrows data that lives for 'scope. The scope
        // does not return before `pending` is back to zero, which happens in
        // the body's last step (`complete`, after the task, its captures and
        // its result have left the body); the pool runs every queued job
        // (workers drain the queues before stopping, and the pool cannot be
        // dropped while this scope borrows it). So the body never uses what
        // it borrows after 'scope.
        let body: Body<'static> =
            unsafe { std::mem::transmute::<Body<'scope>, Body<'static>>(body) };
        self.pool.enqueue(id, domain, body);
        Ok(handle)
    }

    /// Runs `f` on the domain holding most pages of `data`.
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

    fn wait(&self) {
        let shared = self.pool.shared();
        if worker::is_worker_of(shared) {
            while self.state.pending.load(Ordering::Acquire) > 0 {
                if !worker::help_once(shared) {
                    std::thread::yield_now();
                }
            }
            return;
        }
        let mut panics = self
            .state
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while self.state.pending.load(Ordering::Acquire) > 0 {
            panics = self
                .state
                .done
                .wait(panics)
                .unwrap_or_else(PoisonError::into_inner);
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
            state: Arc::default(),
            _scope: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| op(&scope)));
        scope.wait();
        let value = result.unwrap_or_else(|p| resume_unwind(p));
        let panics = std::mem::take(
            &mut *scope
                .state
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        match panics.first() {
            None => Ok(value),
            Some(first) => Err(AffinityError::ScopePanicked {
                count: panics.len(),
                first: first.clone(),
            }),
        }
    }
}
