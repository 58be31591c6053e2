//! The FFI boundary: no panic crosses it, and C strings are read safely.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Runs `body`, turning a panic into `failed`.
pub(crate) fn boundary<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(failed)
}

/// Locks `m`, also after a panic elsewhere (the state stays consistent:
/// every change under these locks is a single insert or remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The UTF-8 text of a C string, `None` for NULL or invalid UTF-8.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn text<'a>(s: *const c_char) -> Option<&'a str> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }.to_str().ok()
}
