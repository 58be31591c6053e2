//! A handle on one CDO: attributes, the producer's calls (write, seal,
//! offer, withdraw) and the consumer's (require, demand, retract): a
//! [`cdo::app::Cdo`], the same in a process and through a pool manager.

use crate::arrays::{Bytes, Owned};
use crate::errors::{cdo_err, CdoTimeoutError};
use crate::local::Lent;
use crate::source::with_bytes;
use crate::values;
use crate::wait;
use cdo::app;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One handle on the CDO `name` (`Pool.declare`). A producer sets
/// attributes, writes its bytes, seals, offers, withdraws and disposes; a
/// consumer requires, demands (a read-only NumPy array over the
/// producer's bytes, no copy) and disposes. Calls out of this order raise
/// `InvalidStateError`.
#[pyclass(frozen, module = "mambatiers")]
pub struct Cdo {
    name: String,
    cdo: Mutex<Lent<app::Cdo<'static>>>,
}

/// The time-out error of `op` on `name` after `timeout`.
fn timed_out(name: &str, op: &str, timeout: Option<Duration>) -> PyErr {
    let waited = timeout.unwrap_or_default().as_secs_f64();
    CdoTimeoutError::new_err(format!("{op} of CDO {name:?} timed out after {waited} s"))
}

impl Cdo {
    /// A new handle on `name` in `pool`.
    ///
    /// # Errors
    /// `InvalidNameError`.
    pub fn declare(pool: &Arc<app::Pool>, name: &str) -> PyResult<Self> {
        let cdo = Lent::new(pool, |p| p.declare(name)).map_err(cdo_err)?;
        Ok(Cdo {
            name: name.into(),
            cdo: Mutex::new(cdo),
        })
    }

    /// The handle, locked. Never held while the GIL is taken again, so
    /// taking it with or without the GIL cannot deadlock.
    fn cdo(&self) -> MutexGuard<'_, Lent<app::Cdo<'static>>> {
        self.cdo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a call that waits for no consumer (at most for acknowledged
    /// subscribers, up to the pool's acknowledgement timeout), with the
    /// GIL released.
    fn call(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut app::Cdo<'static>) -> cdo::Result<()> + Send,
    ) -> PyResult<()> {
        py.detach(|| f(self.cdo().get_mut())).map_err(cdo_err)
    }
}

#[pymethods]
impl Cdo {
    /// The CDO's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The handle's state: `declared`, `sealed`, `offered`, `withdrawn`,
    /// `required`, `demanded`, `retracted` or `disposed`.
    #[getter]
    fn state(&self) -> String {
        format!("{:?}", self.cdo().get().state()).to_lowercase()
    }

    /// The attributes: those set on this handle, or once offered or
    /// demanded those of the offer.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let flat = {
            let cdo = self.cdo();
            let cdo = cdo.get();
            cdo.offered_attributes()
                .unwrap_or_else(|| cdo.attributes().flatten())
        };
        values::to_dict(py, &flat)
    }

    /// Sets attribute `key` (a built-in such as `priority`, or
    /// `namespace.key`) before the seal; False when an in-process pool's
    /// configuration drops keys no schema knows.
    fn set(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let value = values::to_value(value)?;
        py.detach(|| self.cdo().get_mut().set(key, value))
            .map_err(cdo_err)
    }

    /// The producer's bytes (`bytes`, `bytearray`, a NumPy array, ...),
    /// copied once into the pool's memory.
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        with_bytes(data, |bytes| self.cdo().get_mut().write(bytes))?.map_err(cdo_err)
    }

    /// Freezes the attributes.
    fn seal(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, app::Cdo::seal)
    }

    /// Puts the data on offer.
    fn offer(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, app::Cdo::offer)
    }

    /// Announces that this consumer will demand the CDO.
    fn require(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, app::Cdo::require)
    }

    /// Cancels the require.
    fn retract(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, app::Cdo::retract)
    }

    /// Ends the handle (a consumer's arrays stay valid).
    fn dispose(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, app::Cdo::dispose)
    }

    /// Waits up to `timeout` seconds (for ever for None) for the data and
    /// returns it as a read-only NumPy array over the producer's bytes, no
    /// copy: as `dtype` (default `uint8`) with `shape` (default flat).
    /// Raises `CdoTimeoutError` when the time is up (still required).
    #[pyo3(signature = (timeout = None, dtype = None, shape = None))]
    fn demand<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        dtype: Option<&Bound<'py, PyAny>>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = wait::timeout(timeout)?;
        let view = wait::in_slices(py, timeout, |slice| {
            let mut cdo = self.cdo();
            match cdo.get_mut().demand_timeout(slice) {
                Ok(view) => Ok(Some(cdo.keep(view))),
                Err(cdo::Error::Timeout { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?
        .map_err(cdo_err)?
        .ok_or_else(|| timed_out(&self.name, "demand", timeout))?;
        let bytes = Bound::new(py, Bytes::new(Owned::View(view)))?;
        Bytes::array(&bytes, dtype, shape)
    }

    /// Takes the offer back, waiting up to `timeout` seconds (for ever for
    /// None) while consumers that required it have not demanded it.
    /// Raises `CdoTimeoutError` when the time is up (still offered).
    #[pyo3(signature = (timeout = None))]
    fn withdraw(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = wait::timeout(timeout)?;
        wait::in_slices(py, timeout, |slice| {
            match self.cdo().get_mut().withdraw_timeout(slice) {
                Ok(()) => Ok(Some(())),
                Err(cdo::Error::Timeout { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?
        .map_err(cdo_err)?
        .ok_or_else(|| timed_out(&self.name, "withdraw", timeout))
    }

    fn __repr__(&self) -> String {
        format!("Cdo({:?}, state={:?})", self.name, self.state())
    }
}
