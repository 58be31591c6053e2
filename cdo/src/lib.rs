//! Core Data Objects on top of `mamba`.
//!
//! This crate is a placeholder in the workspace layout: the CDO layer
//! (declare, offer, require, demand, the pool and the pool manager) is not
//! built yet and the crate exports nothing.
