//! `hydro`: runs the solver the command line describes and prints a summary.
//!
//! Without an input file the built-in main job runs (`inputs/main.nml`):
//! HydroC's point blast on 200x200 cells until t = 0.6, its shock reflected
//! from the walls, with the analyses fed through a CDO pool, writing frames,
//! `stats.png` and `summary.txt` to `hydro-out/`.
//!
//! With `--pool-manager` the analyses (and the checkpoint archiver) run as
//! separate processes (this binary again, with the hidden `--consumer`
//! flag) fed through a CDO pool manager instead of threads fed through a
//! pool in this process, the same code otherwise; see [`hydro::transit`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hydro::cli::ConsumerRole;
use hydro::{run_app, run_consumer, Cli};
use tracing_subscriber::EnvFilter;

/// The main job's parameters (also shipped as `inputs/main.nml`).
const MAIN_JOB: &str = include_str!("../inputs/main.nml");

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut cli = Cli::parse();
    if let Some(role) = cli.consumer {
        return consumer(&cli, role);
    }
    cli.base_input = Some(MAIN_JOB);
    match run_app(&cli) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hydro: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A consumer process of a `--pool-manager` run: its report is one JSON
/// line on standard output, for the solver process.
fn consumer(cli: &Cli, role: ConsumerRole) -> ExitCode {
    match run_consumer(cli, role) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hydro consumer: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("hydro {role:?} consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
