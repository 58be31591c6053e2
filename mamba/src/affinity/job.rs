//! Tasks as queued jobs, and the handles that wait for their results.

use super::error::{AffinityError, Result};
use super::stats::Execution;
use super::worker::{self, Shared};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Called by a job's body once the task has run, before its outcome is
/// delivered, with the panic message if it panicked: statistics are up to
/// date when a join returns.
pub(crate) type Record<'r> = &'r dyn Fn(Option<&str>);

/// A job's body: runs the task, records, delivers its outcome.
pub(crate) type Body<'a> = Box<dyn FnOnce(&Execution, Record<'_>) + Send + 'a>;

/// A queued task.
pub(crate) struct Job {
    /// Task number.
    pub(crate) id: u64,
    /// The domain it was sent to.
    pub(crate) target: usize,
    /// What to run.
    pub(crate) body: Body<'static>,
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

struct Outcome<T> {
    value: std::result::Result<T, String>,
    execution: Execution,
}

/// A task's outcome on its way from the worker to the handle.
enum State<T> {
    /// Not there yet; whether the handle is waiting on the condition.
    Pending { waiting: bool },
    /// Delivered.
    Done(Outcome<T>),
    /// The task was dropped without running.
    Lost,
}

/// The one-shot slot shared by a task and its handle.
struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, new: State<T>) {
        let old = std::mem::replace(&mut *self.lock(), new);
        if matches!(old, State::Pending { waiting: true }) {
            self.ready.notify_one();
        }
    }

    /// The outcome if delivered (or lost), without waiting.
    fn try_take(&self) -> Option<Result<Outcome<T>>> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Pending { waiting: false }) {
            State::Done(o) => Some(Ok(o)),
            State::Lost => Some(Err(AffinityError::TaskLost)),
            pending => {
                *state = pending;
                None
            }
        }
    }

    fn take(&self) -> Result<Outcome<T>> {
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut *state, State::Pending { waiting: true }) {
                State::Done(o) => return Ok(o),
                State::Lost => return Err(AffinityError::TaskLost),
                State::Pending { .. } => {
                    state = self
                        .ready
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        }
    }
}

/// The task's end of the slot; marks the task lost if dropped unsent.
struct Sender<T>(Option<Arc<Slot<T>>>);

impl<T> Sender<T> {
    fn send(mut self, outcome: Outcome<T>) {
        if let Some(slot) = self.0.take() {
            slot.put(State::Done(outcome));
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.put(State::Lost);
        }
    }
}

/// Wraps a task into a job body and the handle that receives its outcome;
/// the body calls `done` last, with the panic message if it panicked, once
/// everything the task captured or returned has left the body.
pub(crate) fn package<'a, F, T, D>(
    shared: &Arc<Shared>,
    id: u64,
    target: usize,
    f: F,
    done: D,
) -> (Body<'a>, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
    D: FnOnce(Option<String>) + Send + 'a,
{
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Pending { waiting: false }),
        ready: Condvar::new(),
    });
    let tx = Sender(Some(Arc::clone(&slot)));
    let body: Body<'a> = Box::new(move |execution: &Execution, record: Record<'_>| {
        let value = catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p));
        let panicked = value.as_ref().err().cloned();
        record(panicked.as_deref());
        tx.send(Outcome {
            value,
            execution: *execution,
        });
        done(panicked);
    });
    let handle = JoinHandle {
        slot,
        shared: Arc::clone(shared),
        task: id,
        target,
    };
    (body, handle)
}

/// Waits for one task: its value, or its panic as an error. Dropping it
/// detaches the task (its panic then shows only in the statistics, or in
/// its scope's result).
pub struct JoinHandle<T> {
    slot: Arc<Slot<T>>,
    shared: Arc<Shared>,
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
        !matches!(*self.slot.lock(), State::Pending { .. })
    }

    fn wait(self) -> Result<Outcome<T>> {
        if worker::is_worker_of(&self.shared) {
            // A worker waiting must keep the pool running: help meanwhile.
            loop {
                if let Some(outcome) = self.slot.try_take() {
                    return outcome;
                }
                if !worker::help_once(&self.shared) {
                    std::thread::yield_now();
                }
            }
        }
        self.slot.take()
    }

    /// Waits for the task and returns its value.
    ///
    /// # Errors
    /// [`AffinityError::TaskPanicked`] with the panic message.
    pub fn join(self) -> Result<T> {
        self.wait()?.value.map_err(AffinityError::TaskPanicked)
    }

    /// Waits for the task and returns its value (or panic) with the record
    /// of where it ran.
    ///
    /// # Errors
    /// [`AffinityError::TaskLost`] when the task never ran.
    pub fn join_with_execution(self) -> Result<(Result<T>, Execution)> {
        let outcome = self.wait()?;
        Ok((
            outcome.value.map_err(AffinityError::TaskPanicked),
            outcome.execution,
        ))
    }
}
