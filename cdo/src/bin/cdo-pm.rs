//! `cdo-pm`: runs a CDO pool manager until SIGINT or SIGTERM.
//!
//! Usage: `cdo-pm [RUNTIME_DIR]`. The workflow token is taken from
//! `CDO_WORKFLOW_TOKEN` (a random one is made if it is unset). On start the
//! manager prints the two `export` lines that let clients find it; on a
//! signal it disconnects every client and removes its socket directory.
//! Logs go to standard error (`RUST_LOG` filters them).

use cdo::ipc::endpoint::TOKEN_ENV;
use cdo::ipc::manager::{self, ManagerConfig};
use nix::sys::signal::{SigSet, Signal};

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Block the signals before any thread starts, so every thread inherits
    // the mask and only `wait` below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let config = ManagerConfig {
        runtime_dir: std::env::args_os().nth(1).map(Into::into),
        token: std::env::var(TOKEN_ENV).ok(),
        allowed_uid: None,
    };
    let handle = manager::start(config)?;
    for (key, value) in handle.endpoint().env() {
        println!("export {key}={value}");
    }
    let signal = signals.wait()?;
    tracing::info!(?signal, "stopping");
    handle.shutdown();
    Ok(())
}
