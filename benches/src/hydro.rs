//! `compare hydro`: throughput of the hydro example's solver, and what its
//! in-transit analyses cost.
//!
//! Every timed run is a separate process (this very binary, re-executed with
//! [`CHILD_ENV`] set; the binary's `main` must call
//! [`child_main_if_requested`] first), the runs with and without analyses
//! alternating: in one process the variant that runs second finds the
//! allocator, the page tables and the worker pool warm, which favoured it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use hydro::{run_app, Cli};

use crate::{interleaved_medians, Better, Row};

/// Environment variable that turns this binary into one timed hydro run; its
/// value is the output directory; `HYDRO_BENCH_NO_ANALYSES`, when set, adds
/// `--no-analyses`.
pub const CHILD_ENV: &str = "HYDRO_BENCH_CHILD";
/// Set (to anything) in a child that runs with `--no-analyses`.
const NO_ANALYSES_ENV: &str = "HYDRO_BENCH_NO_ANALYSES";

/// Grid size of the timed point blast.
const N: usize = 500;
/// Steps timed.
const STEPS: u64 = 100;
/// Timed runs (processes) of each variant.
const ROUNDS: usize = 7;

/// Runs one timed hydro run and exits if [`CHILD_ENV`] is set; returns
/// otherwise. The child prints the run's wall time in seconds.
pub fn child_main_if_requested() {
    if let Some(out) = std::env::var_os(CHILD_ENV) {
        let seconds = timed_run(Path::new(&out), std::env::var_os(NO_ANALYSES_ENV).is_none());
        println!("{}", seconds.as_secs_f64());
        std::process::exit(0);
    }
}

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

/// [`timed_run`] in a fresh process; returns the time the child reports.
fn timed_process(out: &Path, with_analyses: bool) -> Duration {
    let mut cmd = Command::new(std::env::current_exe().expect("our own path"));
    cmd.env(CHILD_ENV, out).stderr(Stdio::inherit());
    if !with_analyses {
        cmd.env(NO_ANALYSES_ENV, "1");
    }
    let output = cmd.output().expect("run the hydro child");
    assert!(output.status.success(), "hydro child: {}", output.status);
    let text = String::from_utf8_lossy(&output.stdout);
    let seconds: f64 = text.trim().parse().expect("the child prints seconds");
    Duration::from_secs_f64(seconds)
}

/// Million cell updates per second of a 500x500 point blast run for 100
/// steps on 2 workers (as HydroC reports it: nx * ny * steps / wall time of
/// the runs without analyses), and the wall time of the same run with the
/// in-transit analyses on (a record every 10 steps, drained at the end)
/// against without. Each run is its own process, the two variants
/// alternating; the medians are reported.
pub fn run() -> Vec<Row> {
    let out = std::env::temp_dir().join(format!("hydro-bench-{}", std::process::id()));
    // One untimed run of each: the binary and its inputs in the page cache.
    timed_process(&out, true);
    timed_process(&out, false);
    let (with, without) = interleaved_medians(
        ROUNDS,
        || timed_process(&out, true),
        || timed_process(&out, false),
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
