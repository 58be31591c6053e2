//! A proxy of the SIRIUS DFT loop whose memory pool and GPU staging are
//! replaced by mamba's.
//!
//! This crate is a placeholder in the workspace layout: the proxy is not
//! built yet and the crate exports nothing.
