//! Helpers shared by the integration tests.
#![allow(dead_code)]

use mamba::{Config, Mamba};
use std::path::PathBuf;

/// The hand-written two-socket HBM + NVDIMM node.
pub fn xeon_max_xml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/xeon-max-2s.xml")
}

/// A configuration for the simulated node, with small chunks so that tests
/// see several of them, and no GPU probing.
pub fn simulated(extra_toml: &str) -> Config {
    let mut c = Config::from_toml_str(extra_toml).expect("test configuration parses");
    c.topology = Some(xeon_max_xml());
    c.gpu = false;
    c
}

/// This machine, without GPU probing.
pub fn this_machine() -> Mamba {
    Mamba::discover(&Config {
        gpu: false,
        ..Config::default()
    })
    .expect("this machine's topology loads")
}

/// Helpers of the GPU data plane tests.
pub mod gpu;
