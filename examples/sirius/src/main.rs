//! `sirius`: the DFT-loop proxy's command line.

use clap::Parser;
use sirius::counting::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = sirius::Cli::parse();
    match sirius::run_app(&cli) {
        Ok(report) if cli.json => match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("sirius: {e}");
                std::process::exit(1);
            }
        },
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("sirius: {e}");
            std::process::exit(1);
        }
    }
}
