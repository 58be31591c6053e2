//! What `maestro.h` runs on: one process-wide "world" (the component and
//! its pool) and the CDO handles, over the in-process [`cdo::Pool`] or,
//! after joining a pool manager, a [`cdo::ipc::client::Client`] per thread.

use crate::guard::lock;
use crate::maestro::mstro_status;
use cdo::ipc::client::{Client, ClientConfig, ClientError, Reply, View};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::{self, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::ErrorCode;
use cdo::{Cdo, Data, Op, PoolConfig, State};
use mamba::{Config, Mamba, Policy};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// The environment variable that makes `mstro_init` join a pool manager.
pub(crate) const INFO_ENV: &str = "MSTRO_POOL_MANAGER_INFO";
/// `MSTRO_ATTR_CORE_CDO_RAW_PTR`.
pub(crate) const RAW_PTR_KEY: &str = ".maestro.core.cdo.raw-ptr";
/// `MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE`.
pub(crate) const LOCAL_SIZE_KEY: &str = ".maestro.core.cdo.scope.local-size";

/// A status other than `MSTRO_OK`.
pub(crate) type Outcome<T = ()> = Result<T, mstro_status>;

/// Where the CDOs of this process go.
enum Pool {
    /// The in-process pool (leaked while in use, reclaimed by `finalize`).
    Local(&'static cdo::Pool),
    /// A pool manager, through one client per thread.
    Remote {
        config: ClientConfig,
        clients: HashMap<ThreadId, Arc<Mutex<Client>>>,
    },
}

/// The component's state between `mstro_init` and `mstro_finalize`.
struct World {
    component: String,
    pool: Pool,
    /// The pool manager this process runs (`mstro_pm_start`).
    manager: Option<ManagerHandle>,
    handles: HashMap<u64, Arc<Mutex<Handle>>>,
    next_handle: u64,
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// A byte count given as `MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE`.
#[derive(Clone, Copy)]
enum Size {
    /// Copied when set.
    Value(i64),
    /// Read at seal from the caller's `int64_t` (`copy_value == false`).
    At(usize),
}

/// One `mstro_cdo`.
pub(crate) struct Handle {
    name: String,
    /// The producer's buffer (`MSTRO_ATTR_CORE_CDO_RAW_PTR`).
    raw_ptr: Option<usize>,
    size: Option<Size>,
    /// The size as sealed.
    sealed_size: Option<usize>,
    side: Side,
}

enum Side {
    Local {
        cdo: Cdo<'static>,
        received: Option<Data>,
    },
    Remote {
        client: Arc<Mutex<Client>>,
        state: State,
        /// The pool's buffer of a producer that set no raw pointer.
        staged: Option<Vec<u8>>,
        view: Option<View>,
    },
}

fn cdo_status(e: &cdo::Error) -> mstro_status {
    use cdo::Error as E;
    match e {
        E::InvalidState { .. } | E::AlreadyOffered { .. } => mstro_status::MSTRO_INVSTATE,
        E::InvalidName { .. }
        | E::UnknownAttribute { .. }
        | E::ReadOnlyAttribute { .. }
        | E::TypeMismatch { .. }
        | E::MissingAttribute { .. }
        | E::Inconsistent { .. } => mstro_status::MSTRO_INVARG,
        E::Timeout { .. } => mstro_status::MSTRO_TIMEOUT,
        E::Memory(mamba::Error::OutOfCapacity { .. }) => mstro_status::MSTRO_NOMEM,
        _ => mstro_status::MSTRO_FAIL,
    }
}

fn client_status(e: &ClientError) -> mstro_status {
    match e {
        ClientError::Timeout => mstro_status::MSTRO_TIMEOUT,
        ClientError::Pool { code, .. } => match code {
            ErrorCode::UnknownName => mstro_status::MSTRO_NOENT,
            ErrorCode::InvalidName | ErrorCode::BadAttributes => mstro_status::MSTRO_INVARG,
            ErrorCode::QuotaExceeded => mstro_status::MSTRO_NOMEM,
            ErrorCode::NotOwner | ErrorCode::DuplicateName | ErrorCode::Retracted => {
                mstro_status::MSTRO_INVSTATE
            }
            _ => mstro_status::MSTRO_FAIL,
        },
        ClientError::Shm(_) => mstro_status::MSTRO_NOMEM,
        _ => mstro_status::MSTRO_FAIL,
    }
}

fn local(e: cdo::Error) -> mstro_status {
    cdo_status(&e)
}

fn remote(e: ClientError) -> mstro_status {
    client_status(&e)
}

/// The string `mstro_pm_getinfo` returns: the workflow token, a colon,
/// the manager's socket.
fn info_of(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.token, endpoint.socket.display())
}

fn endpoint_of(info: &str) -> Outcome<Endpoint> {
    let (token, socket) = info.split_once(':').ok_or(mstro_status::MSTRO_INVARG)?;
    if token.is_empty() || socket.is_empty() {
        return Err(mstro_status::MSTRO_INVARG);
    }
    Ok(Endpoint {
        socket: socket.into(),
        token: token.into(),
    })
}

/// `mstro_init`.
pub(crate) fn init(workflow: &str, component: &str, index: i64) -> Outcome {
    let mut world = lock(&WORLD);
    if world.is_some() {
        return Err(mstro_status::MSTRO_INVSTATE);
    }
    let component = format!("{workflow}/{component}#{index}");
    let pool = match std::env::var(INFO_ENV) {
        Ok(info) => join(&component, endpoint_of(&info)?)?,
        Err(_) => Pool::Local(local_pool()?),
    };
    *world = Some(World {
        component,
        pool,
        manager: None,
        handles: HashMap::new(),
        next_handle: 1,
    });
    Ok(())
}

fn local_pool() -> Outcome<&'static cdo::Pool> {
    let config = Config::from_env().map_err(|_| mstro_status::MSTRO_INVARG)?;
    let mamba = Mamba::discover(&config).map_err(|_| mstro_status::MSTRO_FAIL)?;
    let pool = cdo::Pool::new(Arc::new(mamba), PoolConfig::default()).map_err(local)?;
    Ok(Box::leak(Box::new(pool)))
}

/// Connects this thread's client (which also checks the endpoint).
fn join(component: &str, endpoint: Endpoint) -> Outcome<Pool> {
    let mut config = ClientConfig::new(endpoint, component);
    if let Some(from_env) = ClientConfig::from_env(component) {
        config.op_timeout = from_env.op_timeout;
    }
    let client = Client::connect(&config).map_err(remote)?;
    let clients = HashMap::from([(std::thread::current().id(), Arc::new(Mutex::new(client)))]);
    Ok(Pool::Remote { config, clients })
}

/// Frees the in-process pool.
///
/// # Safety
/// No handle of `pool` exists any more.
unsafe fn free_local(pool: &'static cdo::Pool) {
    // SAFETY: `pool` came from `Box::leak` in `local_pool`, and by the
    // contract nothing borrows it any more.
    drop(unsafe { Box::from_raw(std::ptr::from_ref(pool).cast_mut()) });
}

/// Ends every handle of `world`; `MSTRO_INVSTATE` (nothing ended) while a
/// call on one of them runs in another thread.
fn end_handles(world: &mut World) -> Outcome {
    if world.handles.values().any(|h| Arc::strong_count(h) > 1) {
        return Err(mstro_status::MSTRO_INVSTATE);
    }
    world.handles.clear();
    Ok(())
}

/// `mstro_finalize`: ends the handles left (an offer is withdrawn at once,
/// a require retracted), leaves the pool, stops a manager started here.
pub(crate) fn finalize() -> Outcome {
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    end_handles(world)?;
    let world = guard.take().expect("checked above");
    match world.pool {
        // SAFETY: every handle was dropped by `end_handles`.
        Pool::Local(pool) => unsafe { free_local(pool) },
        Pool::Remote { clients, .. } => {
            for client in clients.into_values() {
                let _ = lock(&client).leave(std::time::Duration::from_secs(5));
            }
        }
    }
    drop(world.manager);
    Ok(())
}

/// `mstro_pm_start`: a pool manager in this process, which this component
/// then uses too (no CDO may be declared yet).
pub(crate) fn pm_start() -> Outcome {
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    if world.manager.is_some() || !world.handles.is_empty() {
        return Err(mstro_status::MSTRO_INVSTATE);
    }
    let config = ManagerConfig::from_env().map_err(|_| mstro_status::MSTRO_INVARG)?;
    let handle = manager::start(config).map_err(|_| mstro_status::MSTRO_FAIL)?;
    let pool = join(&world.component, handle.endpoint().clone())?;
    if let Pool::Local(old) = std::mem::replace(&mut world.pool, pool) {
        // SAFETY: no handle exists (checked above).
        unsafe { free_local(old) }
    }
    world.manager = Some(handle);
    Ok(())
}

/// `mstro_pm_getinfo`: what `MSTRO_POOL_MANAGER_INFO` must hold to join
/// the pool manager this component uses.
pub(crate) fn pm_info() -> Outcome<String> {
    let guard = lock(&WORLD);
    let world = guard.as_ref().ok_or(mstro_status::MSTRO_INVSTATE)?;
    match &world.pool {
        Pool::Remote { config, .. } => Ok(info_of(&config.endpoint)),
        Pool::Local(_) => Err(mstro_status::MSTRO_INVSTATE),
    }
}

/// `mstro_cdo_declare`: a new handle's id.
pub(crate) fn declare(name: &str) -> Outcome<u64> {
    if cdo::engine::names::invalid(name).is_some() {
        return Err(mstro_status::MSTRO_INVARG);
    }
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    let side = match &mut world.pool {
        Pool::Local(pool) => Side::Local {
            cdo: pool.declare(name).map_err(local)?,
            received: None,
        },
        Pool::Remote { config, clients } => {
            let client = match clients.entry(std::thread::current().id()) {
                std::collections::hash_map::Entry::Occupied(e) => Arc::clone(e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let client = Client::connect(config).map_err(remote)?;
                    Arc::clone(e.insert(Arc::new(Mutex::new(client))))
                }
            };
            Side::Remote {
                client,
                state: State::Declared,
                staged: None,
                view: None,
            }
        }
    };
    let id = world.next_handle;
    world.next_handle += 1;
    let handle = Handle {
        name: name.into(),
        raw_ptr: None,
        size: None,
        sealed_size: None,
        side,
    };
    world.handles.insert(id, Arc::new(Mutex::new(handle)));
    Ok(id)
}

/// Runs `op` on handle `id` (without holding the world's lock, so that
/// blocking calls on other handles go on).
pub(crate) fn with_handle<T>(id: u64, op: impl FnOnce(&mut Handle) -> Outcome<T>) -> Outcome<T> {
    let handle = {
        let guard = lock(&WORLD);
        let world = guard.as_ref().ok_or(mstro_status::MSTRO_INVSTATE)?;
        Arc::clone(world.handles.get(&id).ok_or(mstro_status::MSTRO_INVARG)?)
    };
    let mut handle = lock(&handle);
    op(&mut handle)
}

/// `mstro_cdo_dispose`: ends the handle; its id is invalid from here on.
pub(crate) fn dispose(id: u64) -> Outcome {
    with_handle(id, Handle::dispose)?;
    let mut guard = lock(&WORLD);
    if let Some(world) = guard.as_mut() {
        world.handles.remove(&id);
    }
    Ok(())
}

/// The attribute keys `mstro_cdo_attribute_set` knows.
pub(crate) enum Key {
    RawPtr,
    LocalSize,
}

impl Handle {
    fn state(&self) -> State {
        match &self.side {
            Side::Local { cdo, .. } => cdo.state(),
            Side::Remote { state, .. } => *state,
        }
    }

    /// The state `op` leads to, or `MSTRO_INVSTATE`.
    fn next(&self, op: Op) -> Outcome<State> {
        self.state().after(op).ok_or(mstro_status::MSTRO_INVSTATE)
    }

    /// `mstro_cdo_attribute_set`.
    ///
    /// # Safety
    /// For [`Key::LocalSize`], `value` points to an `int64_t` (until seal
    /// when `copy` is false).
    pub(crate) unsafe fn set(&mut self, key: Key, value: usize, copy: bool) -> Outcome {
        self.next(Op::SetAttribute)?;
        if value == 0 {
            return Err(mstro_status::MSTRO_INVARG);
        }
        match key {
            Key::RawPtr => self.raw_ptr = Some(value),
            Key::LocalSize if copy => {
                // SAFETY: a non-NULL `int64_t *` by the contract.
                let size = unsafe { std::ptr::read_unaligned(value as *const i64) };
                if size < 0 {
                    return Err(mstro_status::MSTRO_INVARG);
                }
                self.size = Some(Size::Value(size));
            }
            Key::LocalSize => self.size = Some(Size::At(value)),
        }
        Ok(())
    }

    /// `mstro_cdo_seal`.
    ///
    /// # Safety
    /// A size given by reference still points to an `int64_t`.
    pub(crate) unsafe fn seal(&mut self) -> Outcome {
        let next = self.next(Op::Seal)?;
        let size = match self.size {
            None => None,
            Some(Size::Value(v)) => Some(v),
            // SAFETY: still valid by the contract of `set`.
            Some(Size::At(p)) => Some(unsafe { std::ptr::read_unaligned(p as *const i64) }),
        };
        let size = size
            .map(usize::try_from)
            .transpose()
            .map_err(|_| mstro_status::MSTRO_INVARG)?;
        if self.raw_ptr.is_some() && size.is_none() {
            return Err(mstro_status::MSTRO_INVARG);
        }
        match &mut self.side {
            Side::Local { cdo, .. } => {
                if let Some(size) = size {
                    cdo.set_size(size as u64).map_err(local)?;
                }
                cdo.seal().map_err(local)?;
            }
            Side::Remote { state, .. } => *state = next,
        }
        self.sealed_size = size;
        Ok(())
    }

    /// The producer's bytes at `raw_ptr`.
    ///
    /// # Safety
    /// `raw_ptr` (set) points to `sealed_size` readable bytes.
    unsafe fn raw_bytes(&self) -> Option<&[u8]> {
        let ptr = self.raw_ptr?;
        let len = self.sealed_size.unwrap_or(0);
        // SAFETY: by the contract.
        Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }

    /// `mstro_cdo_offer`: the producer's bytes go into the pool (copied once
    /// from a raw pointer; the pool's own buffer as it is).
    ///
    /// # Safety
    /// A raw pointer set points to the sealed size of readable bytes.
    pub(crate) unsafe fn offer(&mut self) -> Outcome {
        let next = self.next(Op::Offer)?;
        // SAFETY: by the contract.
        let raw = unsafe { self.raw_bytes() }.map(<[u8]>::to_vec);
        let name = self.name.clone();
        match &mut self.side {
            Side::Local { cdo, .. } => {
                if let Some(bytes) = &raw {
                    if cdo.buffer_mut().is_none() {
                        cdo.write(bytes).map_err(local)?;
                    }
                }
                cdo.offer().map_err(local)
            }
            Side::Remote {
                client,
                state,
                staged,
                ..
            } => {
                let empty = Vec::new();
                let bytes = raw.as_ref().or(staged.as_ref()).unwrap_or(&empty);
                lock(client)
                    .offer(&name, bytes, Default::default())
                    .map_err(remote)?;
                *staged = None;
                *state = next;
                Ok(())
            }
        }
    }

    /// `mstro_cdo_require`.
    pub(crate) fn require(&mut self) -> Outcome {
        let next = self.next(Op::Require)?;
        match &mut self.side {
            Side::Local { cdo, .. } => cdo.require().map_err(local),
            Side::Remote { client, state, .. } => {
                lock(client).require(&self.name).map_err(remote)?;
                *state = next;
                Ok(())
            }
        }
    }

    /// `mstro_cdo_demand`: requires first if not done, then waits for the
    /// data.
    pub(crate) fn demand(&mut self) -> Outcome {
        if matches!(self.state(), State::Declared | State::Sealed) {
            self.require()?;
        }
        let next = self.next(Op::Demand)?;
        match &mut self.side {
            Side::Local { cdo, received } => {
                *received = Some(cdo.demand().map_err(local)?);
            }
            Side::Remote {
                client,
                state,
                view,
                ..
            } => {
                let mut client = lock(client);
                let timeout = client.op_timeout();
                let got = loop {
                    match client.demand(&self.name, timeout) {
                        Err(ClientError::Timeout) => continue,
                        other => break other.map_err(remote)?,
                    }
                };
                *view = Some(got);
                *state = next;
            }
        }
        Ok(())
    }

    /// `mstro_cdo_withdraw`: waits while consumers that required the CDO
    /// have not demanded it.
    pub(crate) fn withdraw(&mut self) -> Outcome {
        let next = self.next(Op::Withdraw)?;
        match &mut self.side {
            Side::Local { cdo, .. } => cdo.withdraw().map_err(local),
            Side::Remote { client, state, .. } => {
                let mut client = lock(client);
                let id = client.submit_withdraw(&self.name).map_err(remote)?;
                match client.wait(id, None).map_err(remote)? {
                    Reply::Ok => {
                        *state = next;
                        Ok(())
                    }
                    _ => Err(mstro_status::MSTRO_FAIL),
                }
            }
        }
    }

    /// `mstro_cdo_retract`.
    pub(crate) fn retract(&mut self) -> Outcome {
        let next = self.next(Op::Retract)?;
        match &mut self.side {
            Side::Local { cdo, .. } => cdo.retract().map_err(local),
            Side::Remote { client, state, .. } => {
                lock(client).retract(&self.name).map_err(remote)?;
                *state = next;
                Ok(())
            }
        }
    }

    fn dispose(&mut self) -> Outcome {
        let next = self.next(Op::Dispose)?;
        match &mut self.side {
            Side::Local { cdo, received } => {
                cdo.dispose().map_err(local)?;
                *received = None;
            }
            Side::Remote {
                client,
                state,
                view,
                ..
            } => {
                if view.take().is_some() {
                    // Tell the manager now, so that the producer's
                    // withdraw can complete.
                    lock(client).flush().map_err(remote)?;
                }
                *state = next;
            }
        }
        Ok(())
    }

    /// `mstro_cdo_access_ptr`: a consumer's data after demand; a producer's
    /// buffer after seal (its raw pointer, or a buffer of the pool, taken
    /// here, that the offer hands over without a copy).
    pub(crate) fn access(&mut self) -> Outcome<(*mut u8, usize)> {
        let size = self.sealed_size.unwrap_or(0);
        match (self.state(), self.raw_ptr) {
            (State::Demanded, _) => {}
            (State::Sealed, Some(ptr)) => return Ok((ptr as *mut u8, size)),
            (State::Sealed, None) if size == 0 => return Ok((std::ptr::null_mut(), 0)),
            (State::Sealed, None) => {}
            _ => return Err(mstro_status::MSTRO_INVSTATE),
        }
        match &mut self.side {
            Side::Local { received, .. } if received.is_some() => {
                let data = received.as_ref().expect("checked");
                let bytes = data.as_slice().map_err(local)?;
                Ok((bytes.as_ptr().cast_mut(), bytes.len()))
            }
            Side::Local { cdo, .. } => {
                if cdo.buffer_mut().is_none() {
                    cdo.allocate(&Policy::highest_bandwidth()).map_err(local)?;
                }
                let buffer = cdo.buffer_mut().ok_or(mstro_status::MSTRO_FAIL)?;
                let bytes = buffer.as_mut_slice().map_err(local)?;
                Ok((bytes.as_mut_ptr(), bytes.len()))
            }
            Side::Remote { view: Some(v), .. } => Ok((v.as_ptr().cast_mut(), v.len())),
            Side::Remote { staged, .. } => {
                let buffer = staged.get_or_insert_with(|| vec![0; size]);
                Ok((buffer.as_mut_ptr(), buffer.len()))
            }
        }
    }
}

/// The deployment in use (`cdo.h`).
pub(crate) fn deployment() -> crate::cdo::cdo_deployment {
    use crate::cdo::cdo_deployment as D;
    match &*lock(&WORLD) {
        None => D::CDO_NOT_INITIALIZED,
        Some(World {
            pool: Pool::Local(_),
            ..
        }) => D::CDO_IN_PROCESS,
        Some(World {
            manager: Some(_), ..
        }) => D::CDO_POOL_MANAGER_HERE,
        Some(_) => D::CDO_POOL_MANAGER_CLIENT,
    }
}

/// Handles declared and not disposed (`cdo.h`).
pub(crate) fn open_handles() -> u64 {
    lock(&WORLD).as_ref().map_or(0, |w| w.handles.len() as u64)
}
