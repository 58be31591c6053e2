//! `compare NAME`: runs one benchmark family, ours against its peers in the
//! same run, and prints one JSON object per case.

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "Benchmarks mamba against its peers, one JSON line per case")]
struct Cli {
    /// The benchmark family to run.
    #[arg(value_enum)]
    bench: Bench,
    /// Only the cases whose name contains this text.
    #[arg(long, default_value = "")]
    case: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Bench {
    /// Alloc+free pairs against glibc malloc, mimalloc and mmap.
    Alloc,
    /// Layout-transforming copies against memcpy and ndarray.
    Transforms,
    /// The hydro example's MC/s and the cost of its in-transit analyses, each
    /// run in its own process.
    Hydro,
    /// STREAM triad and task spawns on the NUMA-aware pool against rayon.
    Affinity,
    /// CDO cycles per second in one process.
    Cdo,
    /// Cross-process CDO hand-off through the pool manager against /dev/shm files.
    CdoIpc,
    /// CDOs demanded across two federated pool managers against raw fabric
    /// reads (fi_read) of the same bytes, same provider.
    Fabric,
    /// Host<->device copies of the GPU data plane against plain CUDA driver
    /// copies (one line and no rows without a CUDA GPU).
    Gpu,
    /// The sirius example's SCF step with mamba pools against a heap allocation per buffer.
    Sirius,
    /// Demotion and promotion between a capped DRAM tier and an SSD tier
    /// against the same allocations placed once.
    Tiering,
}

fn main() {
    // The cdo-ipc benchmark re-runs this binary as its consumer process,
    // the hydro benchmark as each of its timed runs.
    mamba_benches::cdo_ipc::child_main_if_requested();
    mamba_benches::hydro::child_main_if_requested();
    let cli = Cli::parse();
    let rows = match cli.bench {
        Bench::Alloc => mamba_benches::alloc::run_matching(&cli.case),
        Bench::Transforms => mamba_benches::transforms::run(),
        Bench::Hydro => mamba_benches::hydro::run(),
        Bench::Affinity => mamba_benches::affinity::run(),
        Bench::Cdo => mamba_benches::cdo::run(),
        Bench::CdoIpc => mamba_benches::cdo_ipc::run_matching(&cli.case),
        Bench::Fabric => mamba_benches::fabric::run_matching(&cli.case),
        Bench::Gpu => mamba_benches::gpu::run(),
        Bench::Sirius => mamba_benches::sirius::run(),
        Bench::Tiering => mamba_benches::tiering::run(),
    };
    for row in rows.iter().filter(|r| r.case.contains(&cli.case)) {
        row.print();
    }
}
