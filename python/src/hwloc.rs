//! hwloc loads plugins (its libxml2 XML reader among them) that resolve
//! hwloc's own symbols in the global scope, but Python loads an extension
//! and the libraries it links with `RTLD_LOCAL`: without this, reading a
//! topology from an XML file falls back to hwloc's minimal parser, which
//! rejects files it did not write itself.

use std::ffi::{c_uint, c_void};

extern "C" {
    /// Any function of the hwloc this extension links: its address names
    /// the library (whatever its version or soname).
    fn hwloc_get_api_version() -> c_uint;
}

/// Makes the hwloc this extension links visible to hwloc's plugins.
pub fn expose_to_plugins() {
    let hwloc_function = hwloc_get_api_version as unsafe extern "C" fn() -> c_uint;
    // SAFETY: `Dl_info` is plain data (pointers and NULLs), all-zero valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables for an address of
    // this process's code and writes `info`.
    let found = unsafe { libc::dladdr(hwloc_function as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return;
    }
    // SAFETY: `dli_fname` is the NUL-terminated path of a library already
    // loaded; `RTLD_NOLOAD` only widens its scope to global, no code of it
    // runs. The handle is closed again at once, which leaves the load that
    // brought the library in.
    unsafe {
        let handle = libc::dlopen(
            info.dli_fname,
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        );
        if !handle.is_null() {
            libc::dlclose(handle);
        }
    }
}
