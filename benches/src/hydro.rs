//! `compare hydro`: throughput of the hydro example's solver, and what its
//! in-transit analyses cost.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use hydro::{run_app, Cli};

use crate::{interleaved_medians, Better, Row};

/// Grid size of the timed point blast.
const N: usize = 500;
/// Steps timed.
const STEPS: u64 = 100;
/// Timed runs of each variant.
const ROUNDS: usize = 5;

/// Wall time of one run of the hydro application as its command line runs
/// it (NUMA-aware worker pool, memory in the highest-bandwidth space, output
/// records through the in-process CDO pool), analyses drained at the end;
/// `--no-analyses` when `with_analyses` is false.
fn timed_run(out: &Path, with_analyses: bool) -> Duration {
    let mut args: Vec<String> = [
        "hydro",
        "--nx",
        "500",
        "--ny",
        "500",
        "--nstepmax",
        "100",
        "--tend",
        "1e30",
        "--noutput",
        "10",
        "--workers",
        "2",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(out.display().to_string());
    if !with_analyses {
        args.push("--no-analyses".into());
    }
    let cli = Cli::parse_from(&args);
    let report = run_app(&cli).expect("the point blast runs");
    assert_eq!(report.steps, STEPS, "the benchmark runs {STEPS} steps");
    Duration::from_secs_f64(report.drive.total_seconds)
}

/// Million cell updates per second of a 500x500 point blast run for 100
/// steps on 2 workers (as HydroC reports it: nx * ny * steps / wall time),
/// and the wall time of the same run with the in-transit analyses on (a
/// record every 10 steps) against without, measured interleaved.
pub fn run() -> Vec<Row> {
    let out = std::env::temp_dir().join(format!("hydro-bench-{}", std::process::id()));
    let (with, without) =
        interleaved_medians(ROUNDS, || timed_run(&out, true), || timed_run(&out, false));
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
