//! Subscriptions to pool events filtered by selectors, and the events.

use crate::errors::cdo_err;
use crate::local::Lent;
use crate::values;
use crate::wait;
use cdo::app;
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

/// A stream of pool events (`Pool.subscribe`): `wait(timeout=None)` or
/// `poll()` for the next one, or iterate (which waits for ever).
#[pyclass(frozen, module = "mambatiers")]
pub struct Subscription {
    sub: Lent<app::Subscription<'static>>,
}

impl Subscription {
    /// Subscribes to `kinds` of the CDOs matching `selector`; with `ack`,
    /// each event holds up its operation until acknowledged.
    ///
    /// # Errors
    /// `SelectorError` for a bad selector; the pool manager's errors.
    pub fn new(
        py: Python<'_>,
        pool: &Arc<app::Pool>,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> PyResult<Self> {
        let sub = py
            .detach(|| Lent::new(pool, |p| p.subscribe(selector, kinds, ack)))
            .map_err(cdo_err)?;
        Ok(Subscription { sub })
    }
}

#[pymethods]
impl Subscription {
    /// The next event, waiting up to `timeout` seconds (for ever for
    /// None); None when none came in time.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Event>> {
        let timeout = wait::timeout(timeout)?;
        let got = wait::in_slices(py, timeout, |slice| self.sub.get().next_timeout(slice))?
            .map_err(cdo_err)?;
        Ok(got.map(|e| {
            let (kind, name, attrs, id) = (
                e.kind(),
                e.name().to_owned(),
                e.attributes().clone(),
                e.id(),
            );
            let ack = e.needs_ack().then(|| self.sub.keep(e));
            Event {
                kind: kind_name(kind),
                name,
                attrs,
                id,
                ack: Mutex::new(ack),
            }
        }))
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
    /// The event while its operation waits for the acknowledgement
    /// (dropping it acknowledges).
    ack: Mutex<Option<Lent<app::Event<'static>>>>,
}

impl Event {
    fn take_ack(&self) -> Option<Lent<app::Event<'static>>> {
        self.ack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
        self.ack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Acknowledges the event: its operation goes on (nothing happens for
    /// an event that needs none).
    fn ack(&self, py: Python<'_>) {
        let ack = self.take_ack();
        py.detach(|| drop(ack));
    }

    fn __repr__(&self) -> String {
        format!("Event(kind={:?}, name={:?})", self.kind, self.name)
    }
}
