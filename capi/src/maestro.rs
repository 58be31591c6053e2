//! `maestro.h`: the core of Maestro's C API over the CDO pool.
//!
//! A component calls `mstro_init`, declares CDOs by name, and either
//! produces (attributes, `seal`, `offer`, later `withdraw`) or consumes
//! (`require`, `demand`, `access_ptr`), then `dispose`s each CDO and calls
//! `mstro_finalize`. Without `MSTRO_POOL_MANAGER_INFO` the pool is in this
//! process (threads are the components); `mstro_pm_start` starts a pool
//! manager in this process and `mstro_pm_getinfo` gives the string that,
//! in `MSTRO_POOL_MANAGER_INFO` of another process before its
//! `mstro_init`, joins it. Both deployments behave the same way.
//!
//! Differences from Maestro: the producer's bytes at
//! `MSTRO_ATTR_CORE_CDO_RAW_PTR` are copied into the pool once, at offer
//! (the buffer is still the pool's until withdraw: the caller must not
//! free it before); a producer that sets a size but no raw pointer gets a
//! pool buffer from `mstro_cdo_access_ptr` after seal, which the offer
//! hands over without a copy.
#![allow(non_camel_case_types)]

use crate::guard::{boundary, text};
use crate::maestro_backend::{self as backend, Handle, Key};
use std::ffi::{c_char, c_int, c_void};

/// The status of every `mstro_` call (`MSTRO_OK` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mstro_status {
    /// Done.
    MSTRO_OK = 0,
    /// Failed for a reason not listed below (a pool manager gone, a panic
    /// caught at the boundary).
    MSTRO_FAIL,
    /// Out of memory (pool capacity, shared memory, a quota).
    MSTRO_NOMEM,
    /// An invalid argument: NULL, an unknown handle, a bad name or value.
    MSTRO_INVARG,
    /// Not allowed now: a call out of order, `mstro_init` twice, any call
    /// before `mstro_init`.
    MSTRO_INVSTATE,
    /// Timed out.
    MSTRO_TIMEOUT,
    /// No such entry: an unknown attribute key, a name the pool does not
    /// know.
    MSTRO_NOENT,
    /// Not implemented.
    MSTRO_UNIMPL,
}

/// The opaque object behind an `mstro_cdo` handle (never dereferenced:
/// a handle is an id).
#[repr(C)]
pub struct mstro_cdo_ {
    _private: [u8; 0],
}

/// A handle on a declared CDO.
pub type mstro_cdo = *mut mstro_cdo_;

fn status(outcome: backend::Outcome) -> mstro_status {
    match outcome {
        Ok(()) => mstro_status::MSTRO_OK,
        Err(s) => s,
    }
}

fn handle_id(cdo: mstro_cdo) -> u64 {
    cdo as usize as u64
}

fn on_handle(cdo: mstro_cdo, op: impl FnOnce(&mut Handle) -> backend::Outcome) -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || {
        if cdo.is_null() {
            return mstro_status::MSTRO_INVARG;
        }
        status(backend::with_handle(handle_id(cdo), op))
    })
}

/// An `mstro_status` as a C caller passes it: the header declares the
/// parameter as `mstro_status`, but C lets any `int` through an enum, and a
/// Rust enum holding a value outside its variants is undefined behaviour,
/// so the value is taken as the integer it is.
pub type mstro_status_value = c_int;

/// A static description of `s` (never NULL; "unknown status" for a value
/// outside the enumeration).
#[no_mangle]
pub extern "C" fn mstro_status_description(s: mstro_status_value) -> *const c_char {
    let text: &'static [u8] = match s {
        0 => b"success\0",
        1 => b"operation failed\0",
        2 => b"out of memory\0",
        3 => b"invalid argument\0",
        4 => b"invalid state for this operation\0",
        5 => b"timed out\0",
        6 => b"no such entry\0",
        7 => b"not implemented\0",
        _ => b"unknown status\0",
    };
    text.as_ptr().cast()
}

/// Starts this component: `workflow_name` and `component_name` (non-NULL)
/// and `component_index` name it. Joins the pool manager that
/// `MSTRO_POOL_MANAGER_INFO` names if set, else uses a pool in this process
/// over the node mamba discovers (`MAMBA_*` variables).
/// `MSTRO_INVSTATE` if already initialized.
///
/// # Safety
/// The names are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn mstro_init(
    workflow_name: *const c_char,
    component_name: *const c_char,
    component_index: i64,
) -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || {
        // SAFETY: NULL or NUL-terminated by the contract.
        let names = unsafe { (text(workflow_name), text(component_name)) };
        match names {
            (Some(w), Some(c)) => status(backend::init(w, c, component_index)),
            _ => mstro_status::MSTRO_INVARG,
        }
    })
}

/// Ends this component: disposes of the CDOs left (an offer is withdrawn
/// at once, a require retracted), leaves the pool, and stops the pool
/// manager `mstro_pm_start` started here (finalize that process last).
/// `MSTRO_INVSTATE` before `mstro_init`, or while another thread is inside
/// a call on one of the CDOs.
#[no_mangle]
pub extern "C" fn mstro_finalize() -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || status(backend::finalize()))
}

/// Starts a pool manager inside this process (after `mstro_init`, before
/// any CDO is declared); this component then uses it too. Its settings come
/// from the `CDO_*` variables of the pool manager.
#[no_mangle]
pub extern "C" fn mstro_pm_start() -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || status(backend::pm_start()))
}

/// Sets `*info` to a string (release it with `free`) that, put in
/// `MSTRO_POOL_MANAGER_INFO` of another process before its `mstro_init`,
/// makes it join the pool manager this component uses. `MSTRO_INVSTATE`
/// when it uses no pool manager.
///
/// # Safety
/// `info` is NULL or points to a writable `char *`.
#[no_mangle]
pub unsafe extern "C" fn mstro_pm_getinfo(info: *mut *mut c_char) -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || {
        if info.is_null() {
            return mstro_status::MSTRO_INVARG;
        }
        let text = match backend::pm_info() {
            Ok(t) => t,
            Err(s) => return s,
        };
        let Ok(text) = std::ffi::CString::new(text) else {
            return mstro_status::MSTRO_FAIL;
        };
        let bytes = text.as_bytes_with_nul();
        // SAFETY: malloc of a non-zero size; NULL is checked.
        let copy = unsafe { libc::malloc(bytes.len()) }.cast::<c_char>();
        if copy.is_null() {
            return mstro_status::MSTRO_NOMEM;
        }
        // SAFETY: `copy` has room for `bytes`; `info` is writable by the
        // contract.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), copy, bytes.len());
            *info = copy;
        }
        mstro_status::MSTRO_OK
    })
}

/// Declares the CDO `name` (a non-empty `/`-separated path without control
/// characters); `attributes` must be `MSTRO_ATTR_DEFAULT` (NULL). Sets
/// `*result` to its handle.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `result` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mstro_cdo_declare(
    name: *const c_char,
    attributes: *mut c_void,
    result: *mut mstro_cdo,
) -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || {
        // SAFETY: NULL or NUL-terminated by the contract.
        let Some(name) = (unsafe { text(name) }) else {
            return mstro_status::MSTRO_INVARG;
        };
        if result.is_null() || !attributes.is_null() {
            return mstro_status::MSTRO_INVARG;
        }
        match backend::declare(name) {
            Ok(id) => {
                // SAFETY: non-NULL and writable by the contract.
                unsafe { *result = id as usize as mstro_cdo };
                mstro_status::MSTRO_OK
            }
            Err(s) => s,
        }
    })
}

/// Sets attribute `key` of a declared (not yet sealed) CDO:
/// `MSTRO_ATTR_CORE_CDO_RAW_PTR` (`value`: the producer's buffer, which
/// must stay valid and unchanged from offer to withdraw) or
/// `MSTRO_ATTR_CORE_CDO_SCOPE_LOCAL_SIZE` (`value`: an `int64_t *`, read
/// now when `copy_value`, else at seal). `user_owned_value` is accepted
/// and ignored (the library never frees values). Unknown keys give
/// `MSTRO_NOENT`, a NULL value `MSTRO_INVARG`.
///
/// # Safety
/// `key` is NULL or NUL-terminated; a size value points to an `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn mstro_cdo_attribute_set(
    cdo: mstro_cdo,
    key: *const c_char,
    value: *mut c_void,
    copy_value: bool,
    user_owned_value: bool,
) -> mstro_status {
    let _ = user_owned_value;
    // SAFETY: NULL or NUL-terminated by the contract.
    let key = match unsafe { text(key) } {
        Some(backend::RAW_PTR_KEY) => Key::RawPtr,
        Some(backend::LOCAL_SIZE_KEY) => Key::LocalSize,
        Some(_) if !cdo.is_null() => return mstro_status::MSTRO_NOENT,
        _ => return mstro_status::MSTRO_INVARG,
    };
    // SAFETY: a size value points to an `int64_t` by the contract.
    on_handle(cdo, |h| unsafe { h.set(key, value as usize, copy_value) })
}

/// Freezes the CDO's attributes.
///
/// # Safety
/// A size set by reference still points to an `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn mstro_cdo_seal(cdo: mstro_cdo) -> mstro_status {
    // SAFETY: by the contract.
    on_handle(cdo, |h| unsafe { h.seal() })
}

/// Offers a sealed CDO: consumers can demand it from now on.
///
/// # Safety
/// A raw pointer set points to the sealed size of readable bytes.
#[no_mangle]
pub unsafe extern "C" fn mstro_cdo_offer(cdo: mstro_cdo) -> mstro_status {
    // SAFETY: by the contract.
    on_handle(cdo, |h| unsafe { h.offer() })
}

/// Declares that this component will demand the CDO (seals it): its
/// producer cannot withdraw before this handle demands or retracts.
#[no_mangle]
pub extern "C" fn mstro_cdo_require(cdo: mstro_cdo) -> mstro_status {
    on_handle(cdo, Handle::require)
}

/// Blocks until the CDO is offered and its data is here (requires it first
/// if needed); then `mstro_cdo_access_ptr` gives the data.
#[no_mangle]
pub extern "C" fn mstro_cdo_demand(cdo: mstro_cdo) -> mstro_status {
    on_handle(cdo, Handle::demand)
}

/// Takes an offer back, waiting while a consumer that required it has not
/// demanded or retracted; the producer's buffer is its own again.
#[no_mangle]
pub extern "C" fn mstro_cdo_withdraw(cdo: mstro_cdo) -> mstro_status {
    on_handle(cdo, Handle::withdraw)
}

/// Gives up a require.
#[no_mangle]
pub extern "C" fn mstro_cdo_retract(cdo: mstro_cdo) -> mstro_status {
    on_handle(cdo, Handle::retract)
}

/// Ends the handle (after withdraw, demand, retract, or before offer or
/// require); a consumer's data pointer is invalid from here on, and so is
/// the handle.
#[no_mangle]
pub extern "C" fn mstro_cdo_dispose(cdo: mstro_cdo) -> mstro_status {
    boundary(mstro_status::MSTRO_FAIL, || {
        if cdo.is_null() {
            return mstro_status::MSTRO_INVARG;
        }
        status(backend::dispose(handle_id(cdo)))
    })
}

/// Sets `*data` and `*data_len` to the CDO's bytes: after demand, the
/// consumer's read-only view; after seal, the producer's buffer (its raw
/// pointer, or a pool buffer of the sealed size to fill before offer).
/// `MSTRO_INVSTATE` in other states.
///
/// # Safety
/// `data` and `data_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mstro_cdo_access_ptr(
    cdo: mstro_cdo,
    data: *mut *mut c_void,
    data_len: *mut i64,
) -> mstro_status {
    if data.is_null() || data_len.is_null() {
        return mstro_status::MSTRO_INVARG;
    }
    on_handle(cdo, |h| {
        let (ptr, len) = h.access()?;
        // SAFETY: both non-NULL and writable by the contract.
        unsafe {
            *data = ptr.cast();
            *data_len = len as i64;
        }
        Ok(())
    })
}
