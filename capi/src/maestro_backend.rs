//! What `maestro.h` runs on: one process-wide "world" (the component and
//! its [`cdo::app::Pool`], in process or joined to a pool manager, which
//! is configuration only) and the CDO handles.

use crate::guard::lock;
use crate::maestro::mstro_status;
use cdo::app::{self, Deployment, View};
use cdo::ipc::client::ClientError;
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::ManagerConfig;
use cdo::ipc::wire::ErrorCode;
use cdo::{Op, PoolConfig, State};
use mamba::{Config, Mamba};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The environment variable that makes `mstro_init` join a pool manager.
pub(crate) const INFO_ENV: &str = "MSTRO_POOL_MANAGER_INFO";
/// `MSTRO_ATTR_CORE_CDO_RAW_PTR`.
pub(crate) const RAW_PTR_KEY: &str = ".maestro.core.cdo.raw-ptr";
/// `MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE`.
pub(crate) const LOCAL_SIZE_KEY: &str = ".maestro.core.cdo.scope.local-size";

/// A status other than `MSTRO_OK`.
pub(crate) type Outcome<T = ()> = Result<T, mstro_status>;

/// The component's state between `mstro_init` and `mstro_finalize`.
struct World {
    component: String,
    /// The pool (leaked while in use, reclaimed by `finalize`).
    pool: &'static app::Pool,
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
    /// The producer's buffer (`MSTRO_ATTR_CORE_CDO_RAW_PTR`).
    raw_ptr: Option<usize>,
    size: Option<Size>,
    /// The size as sealed.
    sealed_size: Option<usize>,
    cdo: app::Cdo<'static>,
    /// A consumer's data after demand.
    received: Option<View<'static>>,
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
        E::PoolManager(e) => client_status(e),
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

fn status(e: cdo::Error) -> mstro_status {
    cdo_status(&e)
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
        Ok(info) => app::Pool::connect(endpoint_of(&info)?, &component).map_err(status)?,
        Err(_) => local_pool()?,
    };
    *world = Some(World {
        component,
        pool: Box::leak(Box::new(pool)),
        handles: HashMap::new(),
        next_handle: 1,
    });
    Ok(())
}

fn local_pool() -> Outcome<app::Pool> {
    let config = Config::from_env().map_err(|_| mstro_status::MSTRO_INVARG)?;
    let mamba = Mamba::discover(&config).map_err(|_| mstro_status::MSTRO_FAIL)?;
    app::Pool::in_process(Arc::new(mamba), PoolConfig::default()).map_err(status)
}

/// Frees the pool.
///
/// # Safety
/// No handle or view of `pool` exists any more.
unsafe fn free_pool(pool: &'static app::Pool) {
    // SAFETY: `pool` came from `Box::leak` in `init` or `pm_start`, and by
    // the contract nothing borrows it any more.
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

/// `mstro_finalize`: ends the handles left (an offer is withdrawn, a
/// require retracted), leaves the pool, stops a manager started here.
pub(crate) fn finalize() -> Outcome {
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    end_handles(world)?;
    let world = guard.take().expect("checked above");
    // Leaving waits a while for consumers of our objects; a manager that
    // is gone already has nothing to wait for.
    let _ = world.pool.leave(std::time::Duration::from_secs(5));
    // SAFETY: every handle (and its view) was dropped by `end_handles`.
    unsafe { free_pool(world.pool) };
    Ok(())
}

/// `mstro_pm_start`: a pool manager in this process, which this component
/// then uses too (no CDO may be declared yet).
pub(crate) fn pm_start() -> Outcome {
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    if world.pool.runs_manager() || !world.handles.is_empty() {
        return Err(mstro_status::MSTRO_INVSTATE);
    }
    let config = ManagerConfig::from_env().map_err(|_| mstro_status::MSTRO_INVARG)?;
    let pool = app::Pool::start_manager(config, &world.component).map_err(|e| match e {
        cdo::Error::ManagerStart(_) => mstro_status::MSTRO_FAIL,
        other => status(other),
    })?;
    let old = std::mem::replace(&mut world.pool, Box::leak(Box::new(pool)));
    // SAFETY: no handle exists (checked above).
    unsafe { free_pool(old) };
    Ok(())
}

/// `mstro_pm_getinfo`: what `MSTRO_POOL_MANAGER_INFO` must hold to join
/// the pool manager this component uses.
pub(crate) fn pm_info() -> Outcome<String> {
    let guard = lock(&WORLD);
    let world = guard.as_ref().ok_or(mstro_status::MSTRO_INVSTATE)?;
    world
        .pool
        .endpoint()
        .map(info_of)
        .ok_or(mstro_status::MSTRO_INVSTATE)
}

/// `mstro_cdo_declare`: a new handle's id.
pub(crate) fn declare(name: &str) -> Outcome<u64> {
    let mut guard = lock(&WORLD);
    let world = guard.as_mut().ok_or(mstro_status::MSTRO_INVSTATE)?;
    let cdo = world.pool.declare(name).map_err(status)?;
    let id = world.next_handle;
    world.next_handle += 1;
    let handle = Handle {
        raw_ptr: None,
        size: None,
        sealed_size: None,
        cdo,
        received: None,
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
    /// The state `op` leads to, or `MSTRO_INVSTATE`.
    fn next(&self, op: Op) -> Outcome<State> {
        self.cdo
            .state()
            .after(op)
            .ok_or(mstro_status::MSTRO_INVSTATE)
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
        self.next(Op::Seal)?;
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
        if let Some(size) = size {
            self.cdo.set("size", size as u64).map_err(status)?;
        }
        self.cdo.seal().map_err(status)?;
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
        self.next(Op::Offer)?;
        // A raw pointer is the data: `access` handed out no buffer of the
        // pool then.
        // SAFETY: by the contract.
        if let Some(bytes) = unsafe { self.raw_bytes() } {
            let bytes = bytes.to_vec();
            self.cdo.write(&bytes).map_err(status)?;
        }
        self.cdo.offer().map_err(status)
    }

    /// `mstro_cdo_require`.
    pub(crate) fn require(&mut self) -> Outcome {
        self.cdo.require().map_err(status)
    }

    /// `mstro_cdo_demand`: requires first if not done, then waits for the
    /// data.
    pub(crate) fn demand(&mut self) -> Outcome {
        if matches!(self.cdo.state(), State::Declared | State::Sealed) {
            self.require()?;
        }
        self.received = Some(self.cdo.demand().map_err(status)?);
        Ok(())
    }

    /// `mstro_cdo_withdraw`: waits while consumers that required the CDO
    /// have not demanded it.
    pub(crate) fn withdraw(&mut self) -> Outcome {
        self.cdo.withdraw().map_err(status)
    }

    /// `mstro_cdo_retract`.
    pub(crate) fn retract(&mut self) -> Outcome {
        self.cdo.retract().map_err(status)
    }

    fn dispose(&mut self) -> Outcome {
        self.cdo.dispose().map_err(status)?;
        // Through a pool manager, dropping the view tells it at once, so
        // that the producer's withdrawal can complete.
        self.received = None;
        Ok(())
    }

    /// `mstro_cdo_access_ptr`: a consumer's data after demand; a producer's
    /// buffer after seal (its raw pointer, or a buffer of the pool, taken
    /// here, that the offer hands over).
    pub(crate) fn access(&mut self) -> Outcome<(*mut u8, usize)> {
        let size = self.sealed_size.unwrap_or(0);
        match (self.cdo.state(), self.raw_ptr) {
            (State::Demanded, _) => {
                let view = self.received.as_ref().ok_or(mstro_status::MSTRO_FAIL)?;
                let bytes = view.bytes().map_err(status)?;
                Ok((bytes.as_ptr().cast_mut(), bytes.len()))
            }
            (State::Sealed, Some(ptr)) => Ok((ptr as *mut u8, size)),
            (State::Sealed, None) if size == 0 => Ok((std::ptr::null_mut(), 0)),
            (State::Sealed, None) => {
                let bytes = self.cdo.buffer_mut().map_err(status)?;
                Ok((bytes.as_mut_ptr(), bytes.len()))
            }
            _ => Err(mstro_status::MSTRO_INVSTATE),
        }
    }
}

/// The deployment in use (`cdo.h`).
pub(crate) fn deployment() -> crate::cdo::cdo_deployment {
    use crate::cdo::cdo_deployment as D;
    match &*lock(&WORLD) {
        None => D::CDO_NOT_INITIALIZED,
        Some(world) => match world.pool.deployment() {
            Deployment::InProcess => D::CDO_IN_PROCESS,
            Deployment::Manager if world.pool.runs_manager() => D::CDO_POOL_MANAGER_HERE,
            Deployment::Manager => D::CDO_POOL_MANAGER_CLIENT,
        },
    }
}

/// Handles declared and not disposed (`cdo.h`).
pub(crate) fn open_handles() -> u64 {
    lock(&WORLD).as_ref().map_or(0, |w| w.handles.len() as u64)
}
