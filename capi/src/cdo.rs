//! `cdo.h`: what a C program may ask the CDO pool beside `maestro.h`:
//! which deployment it runs on, how many CDO handles are open, and
//! whether a string can name a CDO.
#![allow(non_camel_case_types)]

use crate::guard::{boundary, text};
use crate::maestro_backend as backend;
use std::ffi::c_char;

/// Where the CDOs of this process go.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cdo_deployment {
    /// `mstro_init` has not been called (or `mstro_finalize` has).
    CDO_NOT_INITIALIZED = 0,
    /// A pool in this process: its threads are the components.
    CDO_IN_PROCESS,
    /// A pool manager in another process (`MSTRO_POOL_MANAGER_INFO`).
    CDO_POOL_MANAGER_CLIENT,
    /// A pool manager in this process (`mstro_pm_start`).
    CDO_POOL_MANAGER_HERE,
}

/// The deployment `maestro.h` uses now.
#[no_mangle]
pub extern "C" fn cdo_deployment_get() -> cdo_deployment {
    boundary(cdo_deployment::CDO_NOT_INITIALIZED, backend::deployment)
}

/// The number of CDO handles declared and not yet disposed (0 before
/// `mstro_init`).
#[no_mangle]
pub extern "C" fn cdo_open_handles() -> u64 {
    boundary(0, backend::open_handles)
}

/// Whether `name` can name a CDO: a non-empty `/`-separated path without
/// empty segments or control characters, at most 4096 bytes of UTF-8.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cdo_name_valid(name: *const c_char) -> bool {
    boundary(false, || {
        // SAFETY: NULL or NUL-terminated by the contract.
        unsafe { text(name) }.is_some_and(|n| cdo::engine::names::invalid(n).is_none())
    })
}
