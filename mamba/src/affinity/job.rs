//! Tasks as queued jobs, and the handles that wait for their results.
//!
//! A task is one allocation: the closure, what to call once it has run,
//! and the slot its outcome is delivered to. The queued job and the
//! [`JoinHandle`] are two views of it, shared by reference count.

use super::error::{AffinityError, Result};
use super::stats::{Execution, Origin};
use super::worker;
use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

/// Called by a job once the task has run, before its outcome is delivered,
/// with the panic message if it panicked: statistics are up to date when a
/// join returns.
pub(crate) type Record<'r> = &'r dyn Fn(Option<&str>);

/// A queued task.
pub(crate) struct Job {
    /// Task number.
    pub(crate) id: u64,
    /// The domain it was sent to (32 bits keep the job, queued by value,
    /// small).
    pub(crate) target: u32,
    /// Whether it counts as a task in the statistics (a scope's body sent
    /// into the pool does not).
    pub(crate) counted: bool,
    /// The task; taken by [`Job::run`], else by the drop.
    task: Option<Arc<dyn Run>>,
}

impl Job {
    /// Runs the task: records, delivers its outcome, then calls its
    /// completion.
    pub(crate) fn run(mut self, execution: &Execution, record: Record<'_>) {
        if let Some(task) = self.task.take() {
            task.run(execution, record);
        }
    }
}

impl Drop for Job {
    /// A job dropped unrun drops its closure and reports the task lost.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abandon();
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

/// A task's value or panic message, and where it ran (the handle knows the
/// task's number and target): kept small, so that a task with a small
/// closure and value takes one small allocation.
struct Outcome<T> {
    value: std::result::Result<T, Box<str>>,
    ran: Ran,
}

/// The part of an [`Execution`] that only the worker knows (worker and
/// domain indexes stored in 32 bits).
#[derive(Clone, Copy)]
struct Ran {
    worker: u32,
    domain: u32,
    cpu: Option<u32>,
    node: Option<u32>,
    origin: Origin,
}

impl Ran {
    fn of(execution: &Execution) -> Self {
        Ran {
            worker: execution.worker as u32,
            domain: execution.domain as u32,
            cpu: execution.cpu,
            node: execution.node,
            origin: execution.origin,
        }
    }
}

/// A task's outcome on its way from the worker to the handle.
enum State<T> {
    /// Not there yet; the handle's thread when it waits.
    Pending { waiter: Option<Thread> },
    /// Delivered.
    Done(Outcome<T>),
    /// The task was dropped without running.
    Lost,
}

/// The one-shot slot shared by a task and its handle.
struct Slot<T> {
    state: Mutex<State<T>>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, new: State<T>) {
        let old = std::mem::replace(&mut *self.lock(), new);
        if let State::Pending {
            waiter: Some(thread),
        } = old
        {
            thread.unpark();
        }
    }

    /// Whether the outcome was delivered (or the task lost).
    fn is_settled(&self) -> bool {
        !matches!(*self.lock(), State::Pending { .. })
    }

    fn take(&self) -> Result<Outcome<T>> {
        loop {
            let waiter = Some(std::thread::current());
            // Not in the `match` itself: the lock must be let go of before
            // parking.
            let state = std::mem::replace(&mut *self.lock(), State::Pending { waiter });
            match state {
                State::Done(o) => return Ok(o),
                State::Lost => return Err(AffinityError::TaskLost),
                // Woken by `put`, or spuriously: look again.
                State::Pending { .. } => std::thread::park(),
            }
        }
    }
}

/// The job's view of a task.
trait Run: Send + Sync {
    /// Runs the closure, records, delivers the outcome, lets go of the
    /// task, then calls the completion.
    fn run(self: Arc<Self>, execution: &Execution, record: Record<'_>);
    /// Drops the closure unrun, marks the outcome lost, lets go of the
    /// task, then calls the completion.
    fn abandon(self: Arc<Self>);
}

/// The handle's view of a task.
trait Deliver<T>: Send + Sync {
    fn slot(&self) -> &Slot<T>;
}

/// A task: its closure `F` with its completion `D`, and the slot for its
/// value `T`.
struct Task<F, T, D> {
    /// Taken once, by [`Run::run`] or [`Run::abandon`].
    work: UnsafeCell<Option<(F, D)>>,
    slot: Slot<T>,
}

// SAFETY: the handle's view touches only `slot` (a mutex); `work` is touched
// only through the task's one `Run` view, which its `Job` owns alone and
// consumes with one call of `run` or `abandon` (see `Task::take_work`), so
// never by two threads at once. `F` and `D` are `Send`: they may move to
// the thread that takes them.
unsafe impl<F: Send, T: Send, D: Send> Sync for Task<F, T, D> {}

impl<F, T, D> Task<F, T, D> {
    /// The closure and completion, the first time only.
    fn take_work(&self) -> Option<(F, D)> {
        // SAFETY: called only by `run` and `abandon`, which consume the one
        // `Arc<dyn Run>` of this task (owned by its `Job`, never cloned):
        // no other reference to `work` exists during the call.
        unsafe { (*self.work.get()).take() }
    }
}

impl<F, T, D> Run for Task<F, T, D>
where
    F: FnOnce() -> T + Send,
    T: Send,
    D: FnOnce(Option<String>) + Send,
{
    fn run(self: Arc<Self>, execution: &Execution, record: Record<'_>) {
        let Some((f, done)) = self.take_work() else {
            return;
        };
        let value = catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p));
        let panicked = value.as_ref().err().cloned();
        record(panicked.as_deref());
        // The value is dropped before `done`: here when the handle is gone
        // (this is the last reference, and none can come back), else with
        // the last reference.
        if Arc::strong_count(&self) == 1 {
            drop(value);
        } else {
            self.slot.put(State::Done(Outcome {
                value: value.map_err(String::into_boxed_str),
                ran: Ran::of(execution),
            }));
        }
        drop(self);
        done(panicked);
    }

    fn abandon(self: Arc<Self>) {
        let Some((f, done)) = self.take_work() else {
            return;
        };
        drop(f);
        self.slot.put(State::Lost);
        drop(self);
        done(None);
    }
}

impl<F, T, D> Deliver<T> for Task<F, T, D>
where
    F: Send,
    T: Send,
    D: Send,
{
    fn slot(&self) -> &Slot<T> {
        &self.slot
    }
}

/// Where a task was sent, for its handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// Identity of the pool (see `worker::Shared::id`).
    pub(crate) pool: u64,
    /// Task number.
    pub(crate) id: u64,
    /// The domain it goes to.
    pub(crate) target: usize,
    /// Whether it counts as a task (see [`Job::counted`]).
    pub(crate) counted: bool,
}

type Views<'a, T> = (Arc<dyn Run + 'a>, Arc<dyn Deliver<T> + 'a>);

fn views<'a, F, T, D>(f: F, done: D) -> Views<'a, T>
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
    D: FnOnce(Option<String>) + Send + 'a,
{
    let task = Arc::new(Task {
        work: UnsafeCell::new(Some((f, done))),
        slot: Slot {
            state: Mutex::new(State::Pending { waiter: None }),
        },
    });
    (task.clone(), task)
}

fn assemble<T>(ticket: Ticket, (run, slot): Views<'static, T>) -> (Job, JoinHandle<T>) {
    let job = Job {
        id: ticket.id,
        target: ticket.target as u32,
        counted: ticket.counted,
        task: Some(run),
    };
    let handle = JoinHandle {
        slot,
        pool: ticket.pool,
        task: ticket.id,
        target: ticket.target,
    };
    (job, handle)
}

/// Wraps a task into a job and the handle that receives its outcome (one
/// allocation). The job calls `done` last, with the panic message if the
/// task panicked, once everything the task captured or returned has left
/// it (the value stays only in the handle's view).
pub(crate) fn package<F, T, D>(ticket: Ticket, f: F, done: D) -> (Job, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    D: FnOnce(Option<String>) + Send + 'static,
{
    assemble(ticket, views(f, done))
}

/// [`package`] for a task that borrows for `'a`.
///
/// # Safety
/// Nothing `f` or `done` borrow may end before the job has called `done`
/// (or been dropped, which calls it too), and the job must be run or
/// dropped: after `done` the task holds neither (the handle keeps only the
/// value, whose type `T` it carries).
pub(crate) unsafe fn package_scoped<'a, F, T, D>(
    ticket: Ticket,
    f: F,
    done: D,
) -> (Job, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
    D: FnOnce(Option<String>) + Send + 'a,
{
    let (run, slot) = views(f, done);
    // SAFETY: only the lifetime bound of the two trait objects changes. The
    // task uses what `f` and `done` borrow only until `done` returns, which
    // the caller guarantees is within `'a`; afterwards the closures are gone
    // from the task (dropping `None` touches nothing), and the value is
    // reached only through the handle, whose type names `T`.
    let views = unsafe {
        (
            std::mem::transmute::<Arc<dyn Run + 'a>, Arc<dyn Run>>(run),
            std::mem::transmute::<Arc<dyn Deliver<T> + 'a>, Arc<dyn Deliver<T>>>(slot),
        )
    };
    assemble(ticket, views)
}

/// Waits for one task: its value, or its panic as an error. Dropping it
/// detaches the task (its panic then shows only in the statistics, or in
/// its scope's result).
pub struct JoinHandle<T> {
    slot: Arc<dyn Deliver<T>>,
    pool: u64,
    task: u64,
    target: usize,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("task", &self.task)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    /// The task's number.
    pub fn task(&self) -> u64 {
        self.task
    }

    /// The domain the task was sent to.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.slot.slot().is_settled()
    }

    fn wait(self) -> Result<Outcome<T>> {
        let slot = self.slot.slot();
        if worker::is_worker_of(self.pool) {
            // A worker waiting must keep the pool running: help meanwhile.
            worker::help_until(self.pool, || slot.is_settled());
        }
        slot.take()
    }

    /// Waits for the task and returns its value.
    ///
    /// # Errors
    /// [`AffinityError::TaskPanicked`] with the panic message.
    pub fn join(self) -> Result<T> {
        self.wait()?
            .value
            .map_err(|m| AffinityError::TaskPanicked(m.into()))
    }

    /// Waits for the task and returns its value (or panic) with the record
    /// of where it ran.
    ///
    /// # Errors
    /// [`AffinityError::TaskLost`] when the task never ran.
    pub fn join_with_execution(self) -> Result<(Result<T>, Execution)> {
        let (task, target) = (self.task, self.target);
        let Outcome { value, ran } = self.wait()?;
        let execution = Execution {
            task,
            worker: ran.worker as usize,
            domain: ran.domain as usize,
            target,
            cpu: ran.cpu,
            node: ran.node,
            origin: ran.origin,
        };
        Ok((
            value.map_err(|m| AffinityError::TaskPanicked(m.into())),
            execution,
        ))
    }
}
