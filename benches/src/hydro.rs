//! `compare hydro`: throughput of the hydro example's solver, and what its
//! in-transit analyses cost.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hydro::analysis::{AnalysisOptions, ChannelOutlet};
use hydro::driver::{drive, Transit};
use hydro::progress::Progress;
use hydro::record::RecordRing;
use hydro::{Limiter, Memory, Params, ScopedThreads, Solver};
use mamba::{Config, Mamba, Policy};

use crate::{interleaved_medians, Better, Row};

/// Grid size of the timed point blast.
const N: usize = 500;
/// Steps timed.
const STEPS: u64 = 100;
/// Worker threads.
const WORKERS: usize = 2;
/// Steps between output records when the analyses are on.
const NOUTPUT: u64 = 10;
/// Timed runs of each variant.
const ROUNDS: usize = 5;

/// The timed point blast.
fn params() -> Params {
    Params {
        nx: N,
        ny: N,
        dx: 1.0 / N as f64,
        tend: f64::MAX,
        nstepmax: STEPS,
        courant_factor: 0.8,
        slope_type: Limiter::MonotonizedCentral,
        nxystep: 16,
        noutput: NOUTPUT,
        ..Params::default()
    }
}

/// Wall time of one run, analyses drained, with the state, scratch and
/// record buffers in the highest-bandwidth space; with analyses writing to
/// `out` when given.
fn timed_run(memory: &Memory, out: Option<&Path>) -> Duration {
    let p = params();
    let mut solver = Solver::new_in(p.clone(), ScopedThreads::new(WORKERS), memory)
        .expect("benchmark parameters are valid");
    let transit = out.map(|dir| Transit {
        ring: RecordRing::new(N, N, 3, 0, memory).expect("record buffers"),
        outlet: Box::new(
            ChannelOutlet::start(&AnalysisOptions {
                dir: dir.into(),
                renderers: 1,
                vtk: false,
                analyses: true,
                resume_after: None,
            })
            .expect("the analyses start"),
        ),
        checkpoint_every: 0,
        records: true,
    });
    let mut progress = Progress::new(p.nstepmax, p.tend);
    let report = drive(&mut solver, transit, &mut progress).expect("the point blast runs");
    Duration::from_secs_f64(report.total_seconds)
}

/// Million cell updates per second of a 500x500 point blast run for 100
/// steps on 2 workers (as HydroC reports it: nx * ny * steps / wall time),
/// and the wall time of the same run with the in-transit analyses on (a
/// record every 10 steps) against without, measured interleaved.
pub fn run() -> Vec<Row> {
    let config = Config {
        gpu: false,
        ..Config::default()
    };
    let mamba = Arc::new(Mamba::discover(&config).expect("this node is discoverable"));
    let memory = Memory::pooled(mamba, Policy::highest_bandwidth()).expect("a CPU memory space");
    let out = std::env::temp_dir().join(format!("hydro-bench-{}", std::process::id()));
    let (with, without) = interleaved_medians(
        ROUNDS,
        || timed_run(&memory, Some(&out)),
        || timed_run(&memory, None),
    );
    // Best effort: the images are not needed once timed.
    let _ = std::fs::remove_dir_all(&out);
    let mcs = (N * N) as f64 * STEPS as f64 / without.as_secs_f64() / 1e6;
    vec![
        Row::alone("hydro", "mcs-500x500-2w", "MC/s", Better::Higher, mcs),
        Row::compared(
            "hydro",
            "analysis-overhead",
            "s",
            Better::Lower,
            with.as_secs_f64(),
            without.as_secs_f64(),
            "no analyses",
        ),
    ]
}
