//! `cdo-pm`: runs a CDO pool manager until SIGINT or SIGTERM.
//!
//! On start the manager prints the two `export` lines that let clients find
//! it; on a signal it disconnects every client and removes its socket
//! directory. Logs go to standard error (`RUST_LOG` filters them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cdo::ipc::components::log_to_stderr;
use cdo::ipc::endpoint::TOKEN_ENV;
use cdo::ipc::manager::{
    self, FaultPolicy, ManagerConfig, ACK_TIMEOUT_ENV, LEASE_ENV, MAX_SEGMENT_ENV, POLICY_ENV,
};
use cdo::{PoolConfig, Schema};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

/// Runs a CDO pool manager.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Parent of the manager's private socket directory (default:
    /// `$XDG_RUNTIME_DIR` or the temporary directory).
    runtime_dir: Option<PathBuf>,
    /// The workflow token clients must present (default: a random one).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Pool configuration (YAML: `duplicates`, `unknown_attributes`,
    /// `schemas`): user attributes of offers are checked against its
    /// schemas, second offers of a name refused or versioned.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `fail-fast` or `best-effort`.
    #[arg(long, env = POLICY_ENV, default_value = "fail-fast")]
    policy: FaultPolicy,
    /// How long an operation waits for acknowledged subscribers, in ms.
    #[arg(long, env = ACK_TIMEOUT_ENV, default_value_t = manager::DEFAULT_ACK_TIMEOUT.as_millis() as u64)]
    ack_timeout_ms: u64,
    /// How long a client's heartbeat may stop before it is dropped as
    /// dead, in ms.
    #[arg(long, env = LEASE_ENV, default_value_t = manager::DEFAULT_LEASE.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    lease_ms: u64,
    /// Largest shared segment an offer may bring, in bytes.
    #[arg(long, env = MAX_SEGMENT_ENV, default_value_t = manager::DEFAULT_MAX_SEGMENT)]
    max_segment_bytes: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_to_stderr();
    let args = Args::parse();
    let mut config = ManagerConfig {
        runtime_dir: args.runtime_dir,
        token: args.token,
        policy: args.policy,
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        lease: Duration::from_millis(args.lease_ms),
        max_segment_bytes: args.max_segment_bytes,
        ..ManagerConfig::default()
    };
    if let Some(path) = &args.config {
        let pool = PoolConfig::from_file(path)?;
        let mut schema = Schema::default();
        for file in &pool.schemas {
            schema.add_file(file)?;
        }
        config.schema = Some(Arc::new(schema));
        config.unknown_attributes = pool.unknown_attributes;
        config.duplicates = pool.duplicates;
    }
    // Block the signals before any thread starts, so every thread inherits
    // the mask and only `wait` below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let handle = manager::start(config)?;
    for (key, value) in handle.endpoint().env() {
        println!("export {key}={value}");
    }
    let signal = signals.wait()?;
    tracing::info!(?signal, "stopping");
    handle.shutdown();
    Ok(())
}
