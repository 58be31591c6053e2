//! Helpers shared by the integration tests.

#![allow(dead_code)]

use hydro::{Params, ScopedThreads, Solver, State};

/// A point blast on an `n x n` grid of unit size with reflective walls.
pub fn blast(n: usize, nstepmax: u64) -> Params {
    Params {
        nx: n,
        ny: n,
        dx: 1.0 / n as f64,
        tend: 1e9,
        nstepmax,
        courant_factor: 0.8,
        slope_type: hydro::Limiter::MonotonizedCentral,
        nxystep: 8,
        ..Params::default()
    }
}

/// Runs `params` to completion on `workers` threads and returns the solver.
pub fn run(params: Params, workers: usize) -> Solver<ScopedThreads> {
    let mut solver = Solver::new(params, ScopedThreads::new(workers)).expect("valid params");
    solver.run().expect("run completes");
    solver
}

/// The four interior planes of a state.
pub fn planes(state: &State) -> Vec<Vec<f64>> {
    (0..hydro::NVAR).map(|v| state.interior(v)).collect()
}

/// The command line of a small run: `hydro` on an `nx` x `ny` blast
/// (dx 0.05, no time limit) with `extra` flags.
pub fn cli(nx: usize, ny: usize, extra: &[&str]) -> hydro::Cli {
    use clap::Parser;
    let (nx, ny) = (nx.to_string(), ny.to_string());
    let mut v = vec![
        "hydro", "--nx", &nx, "--ny", &ny, "--dx", "0.05", "--tend", "1e9",
    ];
    v.extend_from_slice(extra);
    hydro::Cli::try_parse_from(v).unwrap()
}

/// The flags of a small `hydro` process run in the multi-process tests: a
/// 32 x 24 blast with no time limit, two worker threads, two renderers and
/// a 20 s consumer timeout.
pub const SMALL_PROCESS_RUN: &[&str] = &[
    "--nx",
    "32",
    "--ny",
    "24",
    "--dx",
    "0.03",
    "--tend",
    "1e9",
    "--workers",
    "2",
    "--executor",
    "threads",
    "--renderers",
    "2",
    "--consumer-timeout",
    "20",
];
