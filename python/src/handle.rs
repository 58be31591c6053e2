//! A handle on one CDO: attributes, the producer's calls (write, seal,
//! offer, withdraw) and the consumer's (require, demand, retract), with
//! the same order of calls in a process and through a pool manager.

use crate::arrays::{Bytes, Owned};
use crate::errors::{cdo_err, client_err, CdoTimeoutError};
use crate::local::LocalCdo;
use crate::pool::{remote_wait, Backend, Remote};
use crate::source::with_bytes;
use crate::values;
use crate::wait;
use cdo::ipc::client::{ClientError, Reply};
use cdo::ipc::wire::RequestId;
use cdo::{FlatAttributes, Op, State};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The handle's side of the pool.
enum Side {
    Local(LocalCdo),
    Remote {
        remote: Arc<Remote>,
        state: State,
        /// The attributes set here.
        attrs: FlatAttributes,
        /// The producer's bytes, copied into shared memory at the offer.
        staged: Vec<u8>,
        /// The offer's attributes, once demanded.
        received: Option<FlatAttributes>,
        /// A withdrawal that has not been answered yet.
        withdrawing: Option<RequestId>,
    },
}

/// One handle on the CDO `name` (`Pool.declare`). A producer sets
/// attributes, writes its bytes, seals, offers, withdraws and disposes; a
/// consumer requires, demands (a read-only NumPy array over the
/// producer's bytes, no copy) and disposes. Calls out of this order raise
/// `InvalidStateError`.
#[pyclass(frozen, module = "mambatiers")]
pub struct Cdo {
    name: String,
    side: Mutex<Side>,
}

/// The state `op` leads to from `state`, or the error an in-process
/// handle would raise.
fn step(name: &str, state: State, op: Op) -> PyResult<State> {
    state.after(op).ok_or_else(|| {
        cdo_err(cdo::Error::InvalidState {
            name: name.into(),
            op,
            state,
        })
    })
}

/// The time-out error of `op` on `name` after `timeout`.
fn timed_out(name: &str, op: &str, timeout: Option<Duration>) -> PyErr {
    let waited = timeout.unwrap_or_default().as_secs_f64();
    CdoTimeoutError::new_err(format!("{op} of CDO {name:?} timed out after {waited} s"))
}

impl Cdo {
    /// A new handle on `name` in `backend`.
    ///
    /// # Errors
    /// `InvalidNameError`.
    pub fn declare(py: Python<'_>, backend: &Backend, name: &str) -> PyResult<Self> {
        let side = match backend {
            Backend::Local(pool) => Side::Local(
                py.detach(|| LocalCdo::declare(pool, name))
                    .map_err(cdo_err)?,
            ),
            Backend::Remote(remote) => {
                if let Some(reason) = cdo::engine::names::invalid(name) {
                    return Err(cdo_err(cdo::Error::InvalidName {
                        name: name.into(),
                        reason,
                    }));
                }
                Side::Remote {
                    remote: Arc::clone(remote),
                    state: State::Declared,
                    attrs: FlatAttributes::new(),
                    staged: Vec::new(),
                    received: None,
                    withdrawing: None,
                }
            }
        };
        Ok(Cdo {
            name: name.into(),
            side: Mutex::new(side),
        })
    }

    /// The side, locked. Never held while the GIL is taken again, so
    /// taking it with or without the GIL cannot deadlock.
    fn side(&self) -> MutexGuard<'_, Side> {
        self.side.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a call that waits for no consumer (at most for acknowledged
    /// subscribers, up to the pool's acknowledgement timeout): in process
    /// `local`; through the manager `remote`, then the state it leads to.
    /// The GIL is released.
    fn call(
        &self,
        py: Python<'_>,
        op: Op,
        local: impl for<'p> FnOnce(&mut cdo::Cdo<'p>) -> cdo::Result<()> + Send,
        remote: impl FnOnce(&Remote, &mut FlatAttributes, &mut Vec<u8>) -> Result<(), ClientError>
            + Send,
    ) -> PyResult<()> {
        py.detach(|| match &mut *self.side() {
            Side::Local(handle) => handle.with(local).map_err(cdo_err),
            Side::Remote {
                remote: r,
                state,
                attrs,
                staged,
                ..
            } => {
                let next = step(&self.name, *state, op)?;
                remote(r, attrs, staged).map_err(client_err)?;
                *state = next;
                Ok(())
            }
        })
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
        let state = match &*self.side() {
            Side::Local(handle) => handle.get().state(),
            Side::Remote { state, .. } => *state,
        };
        format!("{state:?}").to_lowercase()
    }

    /// The attributes: those set on this handle, or once demanded those
    /// of the offer.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let flat = match &*self.side() {
            Side::Local(handle) => {
                let cdo = handle.get();
                cdo.offered_attributes()
                    .unwrap_or(cdo.attributes())
                    .flatten()
            }
            Side::Remote {
                attrs, received, ..
            } => received.as_ref().unwrap_or(attrs).clone(),
        };
        values::to_dict(py, &flat)
    }

    /// Sets attribute `key` (a built-in such as `priority`, or
    /// `namespace.key`) before the seal; False when an in-process pool's
    /// configuration drops keys no schema knows.
    fn set(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let value = values::to_value(value)?;
        py.detach(|| match &mut *self.side() {
            Side::Local(handle) => handle.with(|c| c.set(key, value)).map_err(cdo_err),
            Side::Remote { state, attrs, .. } => {
                step(&self.name, *state, Op::SetAttribute)?;
                attrs.insert(key.into(), value);
                Ok(true)
            }
        })
    }

    /// The producer's bytes (`bytes`, `bytearray`, a NumPy array, ...),
    /// copied once into the pool's memory.
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        with_bytes(data, |bytes| match &mut *self.side() {
            Side::Local(handle) => handle.with(|c| c.write(bytes)).map_err(cdo_err),
            Side::Remote { state, staged, .. } => {
                step(&self.name, *state, Op::AttachData)?;
                *staged = bytes.to_vec();
                Ok(())
            }
        })?
    }

    /// Freezes the attributes.
    fn seal(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, Op::Seal, |c| c.seal(), |_, _, _| Ok(()))
    }

    /// Puts the data on offer.
    fn offer(&self, py: Python<'_>) -> PyResult<()> {
        let name = self.name.as_str();
        self.call(
            py,
            Op::Offer,
            |c| c.offer(),
            |remote, attrs, staged| {
                remote.link().client.offer(name, staged, attrs.clone())?;
                *staged = Vec::new();
                Ok(())
            },
        )
    }

    /// Announces that this consumer will demand the CDO.
    fn require(&self, py: Python<'_>) -> PyResult<()> {
        let name = self.name.as_str();
        self.call(
            py,
            Op::Require,
            |c| c.require(),
            |remote, _, _| remote.link().client.require(name),
        )
    }

    /// Cancels the require.
    fn retract(&self, py: Python<'_>) -> PyResult<()> {
        let name = self.name.as_str();
        self.call(
            py,
            Op::Retract,
            |c| c.retract(),
            |remote, _, _| remote.link().client.retract(name),
        )
    }

    /// Ends the handle (a consumer's arrays stay valid).
    fn dispose(&self, py: Python<'_>) -> PyResult<()> {
        self.call(
            py,
            Op::Dispose,
            |c| c.dispose(),
            |remote, _, _| {
                // Report dropped views now, so that the producer's withdrawal
                // can complete.
                remote.link().client.flush()
            },
        )
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
        let remote = match &*self.side() {
            Side::Local(_) => None,
            Side::Remote { remote, state, .. } => {
                step(&self.name, *state, Op::Demand)?;
                Some(Arc::clone(remote))
            }
        };
        let owned = match remote {
            None => {
                let got = wait::in_slices(py, timeout, |slice| {
                    let Side::Local(handle) = &mut *self.side() else {
                        return Ok(None);
                    };
                    match handle.with(|c| c.demand_timeout(slice)) {
                        Ok(data) => Ok(Some(data)),
                        Err(cdo::Error::Timeout { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?
                .map_err(cdo_err)?;
                Owned::Data(got.ok_or_else(|| timed_out(&self.name, "demand", timeout))?)
            }
            Some(remote) => {
                let name = self.name.as_str();
                let view = remote_wait(py, &remote, timeout, |link, slice| {
                    match link.client.demand(name, slice) {
                        Ok(view) => Ok(Some(view)),
                        Err(ClientError::Timeout) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?
                .ok_or_else(|| timed_out(&self.name, "demand", timeout))?;
                if let Side::Remote {
                    state, received, ..
                } = &mut *self.side()
                {
                    *state = State::Demanded;
                    *received = Some(view.attrs().clone());
                }
                Owned::View(Some(view), remote)
            }
        };
        let bytes = Bound::new(py, Bytes::new(owned))?;
        Bytes::array(&bytes, dtype, shape)
    }

    /// Takes the offer back, waiting up to `timeout` seconds (for ever for
    /// None) while consumers that required it have not demanded it.
    /// Raises `CdoTimeoutError` when the time is up (still offered).
    #[pyo3(signature = (timeout = None))]
    fn withdraw(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = wait::timeout(timeout)?;
        let pending = match &mut *self.side() {
            Side::Local(_) => None,
            Side::Remote {
                remote,
                state,
                withdrawing,
                ..
            } => {
                step(&self.name, *state, Op::Withdraw)?;
                let id = match *withdrawing {
                    Some(id) => id,
                    None => remote
                        .link()
                        .client
                        .submit_withdraw(&self.name)
                        .map_err(client_err)?,
                };
                *withdrawing = Some(id);
                Some((Arc::clone(remote), id))
            }
        };
        let done = match pending {
            None => wait::in_slices(py, timeout, |slice| {
                let Side::Local(handle) = &mut *self.side() else {
                    return Ok(None);
                };
                match handle.with(|c| c.withdraw_timeout(slice)) {
                    Ok(()) => Ok(Some(())),
                    Err(cdo::Error::Timeout { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })?
            .map_err(cdo_err)?,
            Some((remote, id)) => {
                let done = remote_wait(py, &remote, timeout, |link, slice| {
                    match link.client.wait_keeping(id, Some(slice)) {
                        Ok(Reply::Ok) => Ok(Some(())),
                        Ok(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
                        Err(ClientError::Timeout) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?;
                if done.is_some() {
                    if let Side::Remote {
                        state, withdrawing, ..
                    } = &mut *self.side()
                    {
                        *state = State::Withdrawn;
                        *withdrawing = None;
                    }
                }
                done
            }
        };
        done.ok_or_else(|| timed_out(&self.name, "withdraw", timeout))
    }

    fn __repr__(&self) -> String {
        format!("Cdo({:?}, state={:?})", self.name, self.state())
    }
}
