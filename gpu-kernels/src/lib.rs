//! GPU versions of the `mamba-transforms` layout kernels.
//!
//! This crate is a placeholder in the workspace layout: no kernel is built
//! yet and the crate exports nothing.
