//! hwloc loads plugins (its libxml2 XML reader among them) that resolve
//! hwloc's own symbols in the global scope, but Python loads an extension
//! and the libraries it links with `RTLD_LOCAL`: without this, reading a
//! topology from an XML file falls back to hwloc's minimal parser, which
//! rejects files it did not write itself.

/// The soname of hwloc 2.x.
const HWLOC: &std::ffi::CStr = c"libhwloc.so.15";

/// Makes the hwloc this extension links visible to hwloc's plugins.
pub fn expose_to_plugins() {
    // SAFETY: `RTLD_NOLOAD` only looks up a library already loaded (by
    // this extension's link) under a NUL-terminated name and widens its
    // scope to global; no code of it runs. The handle is closed again at
    // once, which leaves the load that brought the library in.
    unsafe {
        let handle = libc::dlopen(
            HWLOC.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        );
        if !handle.is_null() {
            libc::dlclose(handle);
        }
    }
}
