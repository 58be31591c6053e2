//! `mamba`: inspect a node's memory tiers and try the allocator on them.

use clap::{Parser, Subcommand};
use mamba::{Config, Mamba, Policy, SpaceInfo, Tier, Watermarks};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Memory tiers of a node, and a tiered allocator over them"
)]
struct Cli {
    /// An hwloc XML file describing the node (instead of this machine).
    #[arg(long, global = true, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// A TOML configuration file (see the `mamba::config` docs).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the discovered spaces, with the watermarks and movable bytes
    /// of the tiers that movable data moves between.
    Tiers {
        /// One JSON object per space instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Allocates on every tier by policy and reports where blocks landed.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAMBA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mamba: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> mamba::Result<()> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_env()?,
    };
    if let Some(t) = cli.topology {
        config.topology = Some(t);
        config.synthetic = None;
    }
    let mamba = Mamba::discover(&config)?;
    match cli.command {
        Command::Tiers { json } => print_tiers(&mamba, json),
        Command::Demo => demo(&mamba),
    }
}

fn gib(bytes: usize) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn print_tiers(mamba: &Mamba, json: bool) -> mamba::Result<()> {
    for (space, stats) in mamba.stats() {
        if json {
            let mut obj = serde_json::to_value(space).expect("SpaceInfo serialises");
            obj["free"] = stats.available().into();
            obj["cpuset"] = space.cpu_list().into();
            if let Some(access) = mamba.pool(space.id)?.access() {
                obj["access"] = serde_json::to_value(access).expect("Access serialises");
            }
            if mamba::tiering::level(space.tier).is_some() {
                obj["watermarks"] = serde_json::to_value(mamba.watermarks(space.id)?)
                    .expect("Watermarks serialise");
                obj["movable"] = mamba.movable_bytes(space.id).into();
            }
            println!("{obj}");
        }
    }
    if !json {
        println!(
            "{:<9} {:<7} {:>12} {:>12} {:>6} {:>10} {:>10} {:>8} {:>9} {:>12}  backing",
            "space",
            "tier",
            "capacity",
            "free",
            "node",
            "cpus",
            "MiB/s",
            "ns",
            "high/low",
            "movable"
        );
        for (s, stats) in mamba.stats() {
            let tiering = match mamba::tiering::level(s.tier) {
                Some(_) => {
                    let w = mamba.watermarks(s.id)?;
                    Some((w, mamba.movable_bytes(s.id)))
                }
                None => None,
            };
            print_row(s, stats.available(), mamba.pool(s.id)?.access(), tiering);
        }
        println!("topology: {:?}", mamba.source());
        print_costs(mamba);
    }
    Ok(())
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The cost figures derived from the topology, and where they come from.
fn print_costs(mamba: &Mamba) {
    use mamba::topology::costs::Origin;
    let (threshold, origin) = mamba.streaming_threshold();
    println!(
        "streaming stores: copies of {} and more ({})",
        mib(threshold),
        match origin {
            Origin::Topology => "the smallest package's last-level cache",
            Origin::Fallback => "fallback: hwloc reports no cache size",
        }
    );
    let (policy, origin) = mamba.migration_policy();
    let costs = mamba.machine_costs();
    let bandwidths = match origin {
        Origin::Topology => format!(
            "from DRAM bandwidth {} MiB/s local, {} remote",
            costs.local_bandwidth_mib_s.unwrap_or(0),
            costs
                .remote_bandwidth_mib_s
                .map_or("unknown (local used)".to_string(), |b| format!("{b} MiB/s"))
        ),
        Origin::Fallback => "fallback: hwloc reports no DRAM bandwidth".into(),
    };
    println!(
        "migration cost: {:.4} ns/B streamed, {:.4} ns/B migrated ({bandwidths}); cache {}",
        policy.local_ns_per_byte,
        policy.migrate_ns_per_byte,
        if policy.cache_bytes == 0 {
            "unknown".to_string()
        } else {
            mib(policy.cache_bytes)
        }
    );
}

fn print_row(
    s: &SpaceInfo,
    free: usize,
    access: Option<mamba::provider::Access>,
    tiering: Option<(Watermarks, usize)>,
) {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    // A GPU or pinned space shows the node nearest the GPU, or `any` when
    // the GPU is equally near every node (or its locality is unknown).
    let place = match (s.numa_node, s.device) {
        (Some(n), _) => n.to_string(),
        (None, Some(_)) => "any".into(),
        _ => "-".into(),
    };
    let backing = match &s.backing {
        mamba::Backing::NumaNodes { nodes } => format!("mbind {nodes:?}"),
        mamba::Backing::Unbound => "simulated (this machine's memory)".into(),
        mamba::Backing::Directory { path } | mamba::Backing::SpillFiles { path } => {
            path.display().to_string()
        }
        other => format!("{other:?}"),
    };
    let backing = match access {
        Some(access) => format!("{backing} ({access})"),
        None => backing,
    };
    // Watermarks in percent of the capacity; "-" for spaces movable data
    // never goes to (pinned host memory).
    let (marks, movable) = match tiering {
        Some((w, bytes)) => (
            format!("{:.0}/{:.0}%", w.high() * 100.0, w.low() * 100.0),
            gib(bytes),
        ),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<9} {:<7} {:>12} {:>12} {:>6} {:>10} {:>10} {:>8} {:>9} {:>12}  {}",
        s.name,
        s.tier,
        gib(s.capacity),
        gib(free),
        place,
        if s.cpus.is_empty() {
            "-".into()
        } else {
            s.cpu_list()
        },
        opt(s.bandwidth_mib_s),
        opt(s.latency_ns),
        marks,
        movable,
        backing
    );
}

fn demo(mamba: &Mamba) -> mamba::Result<()> {
    print_tiers(mamba, false)?;
    println!();
    let policies = [
        Policy::require(Tier::Dram),
        Policy::prefer(Tier::Hbm).or(Tier::Dram),
        Policy::highest_bandwidth(),
        Policy::largest_capacity(),
        Policy::prefer(Tier::Gpu).or(Tier::Pinned).or(Tier::Dram),
        Policy::prefer(Tier::Ssd).or(Tier::Nvdimm).or(Tier::Dram),
    ];
    for policy in &policies {
        for size in [64usize, 1 << 20] {
            match mamba.allocate(size, 64, policy) {
                Ok(mut a) => {
                    let touched = a.as_mut_slice().map(|s| s.fill(0xA5)).is_ok();
                    let where_ = match (touched, mamba.locate(&a)) {
                        (true, Ok(loc)) => match loc.majority_node() {
                            Some(n) => format!(", pages on NUMA node {n}"),
                            None => String::new(),
                        },
                        _ => String::new(),
                    };
                    println!(
                        "{:<44} {:>8} B -> {} ({}){}",
                        policy.to_string(),
                        size,
                        a.space().name,
                        a.tier(),
                        where_
                    );
                }
                Err(e) => println!("{:<44} {:>8} B -> error: {e}", policy.to_string(), size),
            }
        }
    }
    println!();
    for (s, st) in mamba.stats() {
        if st.allocations > 0 {
            println!(
                "{:<9} allocations {:>3}, frees {:>3}, in use {} B, reserved {} B in {} chunk(s), high water {} B",
                s.name, st.allocations, st.frees, st.in_use, st.reserved, st.chunks, st.high_water
            );
        }
    }
    let released: usize = mamba.pools().iter().map(|p| p.trim()).sum();
    println!("trim released {released} bytes back to the providers");
    Ok(())
}
