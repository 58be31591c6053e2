//! Subscriptions to pool events filtered by selectors, and the events.

use crate::errors::{cdo_err, client_err};
use crate::pool::{remote_wait, Backend, Remote};
use crate::values;
use crate::wait;
use cdo::{EventKind, EventMask, FlatAttributes};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

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
    /// Subscribes to `kinds` of the CDOs matching `selector`.
    ///
    /// # Errors
    /// `SelectorError` for a bad selector; the pool manager's errors.
    pub fn new(
        py: Python<'_>,
        backend: &Backend,
        selector: &str,
        kinds: EventMask,
    ) -> PyResult<Self> {
        let source = match backend {
            Backend::Local(pool) => {
                Source::Local(pool.subscribe(selector, kinds, false).map_err(cdo_err)?)
            }
            Backend::Remote(remote) => {
                let id = py
                    .detach(|| remote.link().client.subscribe(selector, kinds, false))
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
                Ok(got.unwrap_or_else(|never| match never {}).map(|e| Event {
                    kind: kind_name(e.kind),
                    name: e.name.to_string(),
                    attrs: e.attributes.flatten(),
                    id: e.seq,
                }))
            }
            Source::Remote(remote, id) => {
                let got = remote_wait(py, remote, timeout, |link, slice| {
                    link.next_event(*id, slice)
                })?;
                Ok(got.map(|e| Event {
                    kind: kind_name(e.kind),
                    name: e.name,
                    attrs: e.attrs,
                    id: e.event,
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

/// One event: `kind` (`"offer"`, ...), the CDO's `name` (the component's
/// for join and leave), its `attributes`, and `id` (the pool's sequence
/// number or the manager's event id).
#[pyclass(frozen, module = "mambatiers")]
pub struct Event {
    kind: &'static str,
    name: String,
    attrs: FlatAttributes,
    id: u64,
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

    fn __repr__(&self) -> String {
        format!("Event(kind={:?}, name={:?})", self.kind, self.name)
    }
}
