//! A CDO pool from Python: in this process, or a pool manager's (joined
//! through `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN` as in Rust, through
//! an explicit socket and token, or started here). Either way a
//! [`cdo::app::Pool`]: the handles, subscriptions and errors are the same.

use crate::errors::{cdo_err, PoolManagerError};
use crate::events::{self, Subscription};
use crate::handle::Cdo;
use crate::tiers::Mamba;
use cdo::app::{self, Deployment};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::ManagerConfig;
use cdo::PoolConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;

/// A pool of Core Data Objects.
///
/// `Pool()` joins the pool manager that `CDO_POOL_SOCKET` and
/// `CDO_WORKFLOW_TOKEN` (or `CDO_WORKFLOW_TOKEN_FILE`) name, as the Rust
/// programs do, and otherwise makes a pool in this process (on `mamba`, or
/// on this node's tiers; `config`: a YAML pool configuration file).
/// `Pool.in_process`, `Pool.connect` and `Pool.start_manager` choose
/// explicitly.
#[pyclass(frozen, module = "mambatiers")]
pub struct Pool {
    pool: Arc<app::Pool>,
}

impl Pool {
    fn new_pool(pool: app::Pool) -> Self {
        Pool {
            pool: Arc::new(pool),
        }
    }

    /// A pool in this process on `mamba` (this node's tiers by default)
    /// with the configuration file `config`.
    fn local(mamba: Option<Arc<mamba::Mamba>>, config: Option<PathBuf>) -> cdo::Result<app::Pool> {
        let config = match config {
            Some(path) => PoolConfig::from_file(&path)?,
            None => PoolConfig::default(),
        };
        let mamba = match mamba {
            Some(m) => m,
            None => Arc::new(mamba::Mamba::discover(&mamba::Config::from_env()?)?),
        };
        app::Pool::in_process(mamba, config)
    }
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (mamba = None, config = None, component = "python"))]
    fn new(
        py: Python<'_>,
        mamba: Option<PyRef<'_, Mamba>>,
        config: Option<PathBuf>,
        component: &str,
    ) -> PyResult<Self> {
        let mamba = mamba.map(|m| Arc::clone(&m.inner));
        py.detach(|| app::Pool::from_env_or(component, || Pool::local(mamba, config)))
            .map(Pool::new_pool)
            .map_err(cdo_err)
    }

    /// A pool in this process (see the class).
    #[staticmethod]
    #[pyo3(signature = (mamba = None, config = None))]
    fn in_process(
        py: Python<'_>,
        mamba: Option<PyRef<'_, Mamba>>,
        config: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mamba = mamba.map(|m| Arc::clone(&m.inner));
        py.detach(|| Pool::local(mamba, config))
            .map(Pool::new_pool)
            .map_err(cdo_err)
    }

    /// Joins the pool manager listening on `socket` with workflow token
    /// `token` (each defaults to its environment variable).
    ///
    /// Raises `PoolManagerError` when neither names one, or on refusal.
    #[staticmethod]
    #[pyo3(signature = (socket = None, token = None, component = "python"))]
    fn connect(
        py: Python<'_>,
        socket: Option<PathBuf>,
        token: Option<String>,
        component: &str,
    ) -> PyResult<Self> {
        let from_env = Endpoint::from_env();
        let socket = socket.or_else(|| from_env.as_ref().map(|e| e.socket.clone()));
        let token = token.or_else(|| from_env.map(|e| e.token));
        let (Some(socket), Some(token)) = (socket, token) else {
            return Err(PoolManagerError::new_err(
                "no pool manager: give socket and token, or set CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN",
            ));
        };
        py.detach(|| app::Pool::connect(Endpoint { socket, token }, component))
            .map(Pool::new_pool)
            .map_err(cdo_err)
    }

    /// Starts a pool manager in this process (configured by the `CDO_*`
    /// variables, as `cdo-pm`) and joins it; it stops when this pool
    /// object is gone. Other processes join it through `environment`.
    #[staticmethod]
    #[pyo3(signature = (component = "python"))]
    fn start_manager(py: Python<'_>, component: &str) -> PyResult<Self> {
        let config = ManagerConfig::from_env().map_err(PoolManagerError::new_err)?;
        py.detach(|| app::Pool::start_manager(config, component))
            .map(Pool::new_pool)
            .map_err(cdo_err)
    }

    /// `"in-process"` or `"pool-manager"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.pool.deployment() {
            Deployment::InProcess => "in-process",
            Deployment::Manager => "pool-manager",
        }
    }

    /// The environment variables that make another process's `Pool()`
    /// (or Rust client) join this pool manager; None in process.
    #[getter]
    fn environment<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(endpoint) = self.pool.endpoint() else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (key, value) in endpoint.env() {
            dict.set_item(key, value)?;
        }
        Ok(Some(dict))
    }

    /// A new handle on the CDO `name`.
    fn declare(&self, name: &str) -> PyResult<Cdo> {
        Cdo::declare(&self.pool, name)
    }

    /// A subscription to the events of the kinds `events` (names such as
    /// `"offer"`, `"withdraw"`; default every kind) of the CDOs that
    /// match `selector` (the grammar of cdo's selectors; `""` matches all).
    /// With `ack`, each event holds up the operation that raised it until
    /// acknowledged (`Event.ack()`) or the acknowledgement timeout.
    #[pyo3(signature = (selector = "", events = None, ack = false))]
    fn subscribe(
        &self,
        py: Python<'_>,
        selector: &str,
        events: Option<Vec<String>>,
        ack: bool,
    ) -> PyResult<Subscription> {
        let kinds = events::mask(events.as_deref())?;
        Subscription::new(py, &self.pool, selector, kinds, ack)
    }

    /// The names on offer whose CDO matches `selector`, in guided-I/O
    /// order (by priority, then name).
    #[pyo3(signature = (selector = ""))]
    fn offers(&self, py: Python<'_>, selector: &str) -> PyResult<Vec<String>> {
        py.detach(|| self.pool.query(selector)).map_err(cdo_err)
    }

    fn __repr__(&self) -> String {
        match self.pool.endpoint() {
            None => "Pool(in-process)".into(),
            Some(e) => format!("Pool(pool-manager at {})", e.socket.display()),
        }
    }
}
