//! Raw bindings to libfabric, generated at build time from the system headers,
//! plus the `mfi_*` shim functions (out-of-line copies of the headers'
//! static-inline calls). Only this crate's safe wrapper uses them.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
