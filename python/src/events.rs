//! Subscriptions to pool events filtered by selectors, and the events.

use crate::errors::{cdo_err, client_err};
use crate::pool::{remote_wait, Backend, Remote};
use crate::values;
use crate::wait;
use cdo::ipc::client::ClientError;
use cdo::{EventKind, EventMask, FlatAttributes};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Arc, Mutex, PoisonError};

/// Every event kind, with its name in Python.
const KINDS: [(EventKind, &str); 10] = [
    (EventKind::Declare, "declare"),
    (EventKind::Seal, "seal"),
    (EventKind::Offer, "offer"),
    (EventKind::Require, "require"),
    (EventKind::Demand, "demand"),
    (EventKind::Retract, "retract"),
    (EventKind::Withdraw, "withdraw"),
    (EventKind::Dispose, "dispose"),
    (EventKind::Join, "join"),
    (EventKind::Leave, "leave"),
];

/// The name of `kind`.
fn kind_name(kind: EventKind) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("unknown", |(_, n)| n)
}

/// The set of the kinds named (every kind for `None`).
///
/// # Errors
/// `ValueError` for a name of no kind.
pub fn mask(names: Option<&[String]>) -> PyResult<EventMask> {
    let Some(names) = names else {
        return Ok(EventMask::ALL);
    };
    names.iter().try_fold(EventMask::NONE, |mask, name| {
        let (kind, _) = KINDS.iter().find(|(_, n)| n == name).ok_or_else(|| {
            let known: Vec<&str> = KINDS.iter().map(|(_, n)| *n).collect();
            PyValueError::new_err(format!("unknown event {name:?} (one of {known:?})"))
        })?;
        Ok(mask | *kind)
    })
}

enum Source {
    Local(cdo::Subscription),
    Remote(Arc<Remote>, u64),
}

/// A stream of pool events (`Pool.subscribe`): `wait(timeout=None)` or
/// `poll()` for the next one, or iterate (which waits for ever).
#[pyclass(frozen, module = "mambatiers")]
pub struct Subscription {
    source: Source,
}

impl Subscription {
    /// Subscribes to `kinds` of the CDOs matching `selector`; with `ack`,
    /// each event holds up its operation until acknowledged.
    ///
    /// # Errors
    /// `SelectorError` for a bad selector; the pool manager's errors.
    pub fn new(
        py: Python<'_>,
        backend: &Backend,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> PyResult<Self> {
        let source = match backend {
            Backend::Local(pool) => {
                Source::Local(pool.subscribe(selector, kinds, ack).map_err(cdo_err)?)
            }
            Backend::Remote(remote) => {
                let id = py
                    .detach(|| remote.link().client.subscribe(selector, kinds, ack))
                    .map_err(client_err)?;
                Source::Remote(Arc::clone(remote), id)
            }
        };
        Ok(Subscription { source })
    }
}

#[pymethods]
impl Subscription {
    /// The next event, waiting up to `timeout` seconds (for ever for
    /// None); None when none came in time.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Event>> {
        let timeout = wait::timeout(timeout)?;
        match &self.source {
            Source::Local(sub) => {
                let got = wait::in_slices(py, timeout, |slice| {
                    Ok::<_, std::convert::Infallible>(sub.wait(slice))
                })?;
                Ok(got.unwrap_or_else(|never| match never {}).map(|e| {
                    let (kind, name, attrs, id) =
                        (e.kind, e.name.to_string(), e.attributes.flatten(), e.seq);
                    let ack = if e.needs_ack() {
                        Ack::Local(e)
                    } else {
                        Ack::Done
                    };
                    Event::new(kind, name, attrs, id, ack)
                }))
            }
            Source::Remote(remote, id) => {
                let got = remote_wait(py, remote, timeout, |link, slice| {
                    link.next_event(*id, slice)
                })?;
                Ok(got.map(|e| {
                    let ack = if e.needs_ack {
                        Ack::Remote(Arc::clone(remote), e.event)
                    } else {
                        Ack::Done
                    };
                    Event::new(e.kind, e.name, e.attrs, e.event, ack)
                }))
            }
        }
    }

    /// The next event already received, without waiting.
    fn poll(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.wait(py, Some(0.0))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.wait(py, None)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Source::Remote(remote, id) = &self.source {
            // The connection may be gone already; nothing to report then.
            let _ = remote.link().unsubscribe(*id);
        }
    }
}

/// What acknowledges an event.
enum Ack {
    /// Nothing waits (or it was acknowledged).
    Done,
    /// The in-process event.
    Local(cdo::Event),
    /// The manager's event id.
    Remote(Arc<Remote>, u64),
}

impl Ack {
    /// Acknowledges the event.
    fn send(self) -> Result<(), ClientError> {
        match self {
            Ack::Done => Ok(()),
            Ack::Local(event) => {
                event.ack();
                Ok(())
            }
            Ack::Remote(remote, id) => remote.link().client.ack(id),
        }
    }
}

/// One event: `kind` (`"offer"`, ...), the CDO's `name` (the component's
/// for join and leave), its `attributes`, and `id` (the pool's sequence
/// number or the manager's event id). An event of an acknowledged
/// subscription holds up its operation until `ack()` (or until the event
/// is garbage-collected, or the pool's acknowledgement timeout).
#[pyclass(frozen, module = "mambatiers")]
pub struct Event {
    kind: &'static str,
    name: String,
    attrs: FlatAttributes,
    id: u64,
    ack: Mutex<Ack>,
}

impl Event {
    fn new(kind: EventKind, name: String, attrs: FlatAttributes, id: u64, ack: Ack) -> Self {
        Event {
            kind: kind_name(kind),
            name,
            attrs,
            id,
            ack: Mutex::new(ack),
        }
    }

    fn take_ack(&self) -> Ack {
        let mut ack = self.ack.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *ack, Ack::Done)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // Dropped unacknowledged: acknowledge, as an in-process event
        // does; a connection gone already has nothing to acknowledge.
        let _ = self.take_ack().send();
    }
}

#[pymethods]
impl Event {
    /// What happened.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// The CDO.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Its attributes.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        values::to_dict(py, &self.attrs)
    }

    /// The event's number.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Whether its operation still waits for `ack()`.
    #[getter]
    fn needs_ack(&self) -> bool {
        !matches!(
            *self.ack.lock().unwrap_or_else(PoisonError::into_inner),
            Ack::Done
        )
    }

    /// Acknowledges the event: its operation goes on (nothing happens for
    /// an event that needs none).
    fn ack(&self, py: Python<'_>) -> PyResult<()> {
        let ack = self.take_ack();
        py.detach(|| ack.send()).map_err(client_err)
    }

    fn __repr__(&self) -> String {
        format!("Event(kind={:?}, name={:?})", self.kind, self.name)
    }
}
