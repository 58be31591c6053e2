//! `hydro`: runs the solver the command line describes and prints a summary.
//!
//! Without an input file the built-in main job runs: a 500x500 point blast
//! for 300 steps with the analyses, fed through a CDO pool, writing to
//! `hydro-out/`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hydro::{run_app, Cli};
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
