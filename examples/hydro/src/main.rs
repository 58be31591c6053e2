//! `hydro`: runs the solver the command line describes and prints a summary.

use std::process::ExitCode;

use clap::Parser;
use hydro::{run_app, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run_app(&cli) {
        Ok(s) => {
            println!("steps          {}", s.total_steps);
            println!("final time     {:.6e}", s.time);
            println!("average MC/s   {:.3}", s.mcells_per_second);
            println!("wall time (s)  {:.3}", s.wall_seconds);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hydro: {e}");
            ExitCode::FAILURE
        }
    }
}
