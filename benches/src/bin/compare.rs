//! `compare NAME`: runs one benchmark family, ours against its peers in the
//! same run, and prints one JSON object per case.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks mamba against its peers, one JSON line per case")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {}

fn main() {
    let cli = Cli::parse();
    match cli.bench {}
}
