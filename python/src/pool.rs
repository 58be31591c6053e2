//! A CDO pool from Python: in this process, or a pool manager's (joined
//! through `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN` as in Rust, through
//! an explicit socket and token, or started here).

use crate::errors::{cdo_err, client_err, tier_err, PoolManagerError};
use crate::events::{self, Subscription};
use crate::handle::Cdo;
use crate::tiers::Mamba;
use crate::wait;
use cdo::ipc::client::{Client, ClientConfig, ClientError, Notice};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::{self, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::EventRef;
use cdo::PoolConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Where the CDOs go.
pub enum Backend {
    /// A pool in this process.
    Local(Arc<cdo::Pool>),
    /// A pool manager.
    Remote(Arc<Remote>),
}

/// A joined pool manager.
pub struct Remote {
    link: Mutex<Link>,
    endpoint: Endpoint,
    /// The manager, when this process runs it (dropped after the link).
    _manager: Option<ManagerHandle>,
}

impl Remote {
    /// The connection (its calls are serialised).
    pub fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client and the events it received for subscriptions nobody waited on
/// yet.
pub struct Link {
    /// The client.
    pub client: Client,
    stash: HashMap<u64, VecDeque<EventRef>>,
}

impl Link {
    /// The next event of subscription `sub`, waiting up to `wait`.
    ///
    /// # Errors
    /// The client's.
    pub fn next_event(
        &mut self,
        sub: u64,
        wait: Duration,
    ) -> Result<Option<EventRef>, ClientError> {
        if let Some(e) = self.stash.get_mut(&sub).and_then(VecDeque::pop_front) {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.next_notice(Some(left))? {
                None => return Ok(None),
                Some(Notice::Event(e)) if e.subscription == sub => return Ok(Some(e)),
                Some(Notice::Event(e)) => {
                    self.stash.entry(e.subscription).or_default().push_back(e)
                }
                // These bindings join no consumer group; give it back.
                Some(Notice::Record(r)) => self.client.done(r)?,
            }
        }
    }

    /// Ends subscription `sub` and drops its stashed events.
    pub fn unsubscribe(&mut self, sub: u64) -> Result<(), ClientError> {
        self.stash.remove(&sub);
        self.client.unsubscribe(sub)
    }
}

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
    backend: Arc<Backend>,
}

impl Pool {
    fn local(py: Python<'_>, mamba: Option<&Mamba>, config: Option<PathBuf>) -> PyResult<Self> {
        let config = match config {
            Some(path) => PoolConfig::from_file(&path).map_err(cdo_err)?,
            None => PoolConfig::default(),
        };
        let mamba = match mamba {
            Some(m) => Arc::clone(&m.inner),
            None => {
                let config = mamba::Config::from_env().map_err(tier_err)?;
                Arc::new(
                    py.detach(|| mamba::Mamba::discover(&config))
                        .map_err(tier_err)?,
                )
            }
        };
        let pool = cdo::Pool::new(mamba, config).map_err(cdo_err)?;
        Ok(Pool {
            backend: Arc::new(Backend::Local(Arc::new(pool))),
        })
    }

    fn join(
        py: Python<'_>,
        config: ClientConfig,
        manager: Option<ManagerHandle>,
    ) -> PyResult<Self> {
        let client = py.detach(|| Client::connect(&config)).map_err(client_err)?;
        Ok(Pool {
            backend: Arc::new(Backend::Remote(Arc::new(Remote {
                link: Mutex::new(Link {
                    client,
                    stash: HashMap::new(),
                }),
                endpoint: config.endpoint,
                _manager: manager,
            }))),
        })
    }
}

/// A client configuration for `endpoint`, with `CDO_OP_TIMEOUT_MS` applied.
fn client_config(endpoint: Endpoint, component: &str) -> ClientConfig {
    ClientConfig::new(endpoint, component).with_env()
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
        match ClientConfig::from_env(component) {
            Some(client) => Pool::join(py, client, None),
            None => Pool::local(py, mamba.as_deref(), config),
        }
    }

    /// A pool in this process (see the class).
    #[staticmethod]
    #[pyo3(signature = (mamba = None, config = None))]
    fn in_process(
        py: Python<'_>,
        mamba: Option<PyRef<'_, Mamba>>,
        config: Option<PathBuf>,
    ) -> PyResult<Self> {
        Pool::local(py, mamba.as_deref(), config)
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
        Pool::join(
            py,
            client_config(Endpoint { socket, token }, component),
            None,
        )
    }

    /// Starts a pool manager in this process (configured by the `CDO_*`
    /// variables, as `cdo-pm`) and joins it; it stops when this pool
    /// object is gone. Other processes join it through `environment`.
    #[staticmethod]
    #[pyo3(signature = (component = "python"))]
    fn start_manager(py: Python<'_>, component: &str) -> PyResult<Self> {
        let config = ManagerConfig::from_env().map_err(PoolManagerError::new_err)?;
        let handle = manager::start(config)
            .map_err(|e| PoolManagerError::new_err(format!("cannot start a pool manager: {e}")))?;
        let config = client_config(handle.endpoint().clone(), component);
        Pool::join(py, config, Some(handle))
    }

    /// `"in-process"` or `"pool-manager"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match *self.backend {
            Backend::Local(_) => "in-process",
            Backend::Remote(_) => "pool-manager",
        }
    }

    /// The environment variables that make another process's `Pool()`
    /// (or Rust client) join this pool manager; None in process.
    #[getter]
    fn environment<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Backend::Remote(remote) = &*self.backend else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (key, value) in remote.endpoint.env() {
            dict.set_item(key, value)?;
        }
        Ok(Some(dict))
    }

    /// A new handle on the CDO `name`.
    fn declare(&self, py: Python<'_>, name: &str) -> PyResult<Cdo> {
        Cdo::declare(py, &self.backend, name)
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
        Subscription::new(py, &self.backend, selector, kinds, ack)
    }

    /// The names on offer whose CDO matches `selector`, in guided-I/O
    /// order (by priority, then name).
    #[pyo3(signature = (selector = ""))]
    fn offers(&self, py: Python<'_>, selector: &str) -> PyResult<Vec<String>> {
        match &*self.backend {
            Backend::Local(pool) => Ok(pool
                .offers(selector)
                .map_err(cdo_err)?
                .into_iter()
                .map(|o| o.name.to_string())
                .collect()),
            Backend::Remote(remote) => py
                .detach(|| remote.link().client.query(selector))
                .map_err(client_err),
        }
    }

    fn __repr__(&self) -> String {
        match &*self.backend {
            Backend::Local(_) => "Pool(in-process)".into(),
            Backend::Remote(r) => format!("Pool(pool-manager at {})", r.endpoint.socket.display()),
        }
    }
}

/// Waits in slices for the client of `remote` to answer `attempt`.
///
/// # Errors
/// As [`wait::in_slices`]; the client's error as its exception.
pub fn remote_wait<T: Send>(
    py: Python<'_>,
    remote: &Remote,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(&mut Link, Duration) -> Result<Option<T>, ClientError> + Send,
) -> PyResult<Option<T>> {
    wait::in_slices(py, timeout, |slice| attempt(&mut remote.link(), slice))?.map_err(client_err)
}
