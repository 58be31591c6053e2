//! # mamba-capi: mamba and the CDO pool for C, C++ and Fortran
//!
//! `cargo build --release -p mamba-capi` builds `libmamba_capi.so` and
//! `libmamba_capi.a`; the headers are checked in under `capi/include/`
//! (generated from this crate with cbindgen, compared with the sources by
//! `cargo test -p mamba-capi --test headers`):
//!
//! | header | module | what |
//! |---|---|---|
//! | `maestro.h` | [`maestro`] | the core of Maestro's C API (`mstro_*`) over the CDO pool: one process, or several through a pool manager |
//! | `mamba.h` | [`mamba`](mod@mamba) | tiers and spaces, placements, allocate/free, whole-allocation copies |
//! | `cdo.h` | [`cdo`](mod@cdo) | the CDO pool's statistics and the pool manager's endpoint |
//!
//! Every function returns a status code; none lets a Rust panic cross into
//! C (each body runs under `catch_unwind`, a panic becomes the "failed"
//! code). Handles are opaque ids, never dereferenced: a disposed or made-up
//! handle is an error, not a crash.

pub mod cdo;
mod guard;
pub mod maestro;
mod maestro_backend;
pub mod mamba;
