//! `cdo-librarian`: joins the pool manager named by `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` and answers every require of an object its
//! selector picks by offering it from an archive directory (one written by
//! `cdo-archiver`), until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cdo::archive::Archive;
use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::components::{stop_on_signals, Librarian, Served};
use clap::Parser;

/// Serves archived objects to a CDO pool.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The archive directory.
    #[arg(long, env = "CDO_ARCHIVE_DIR")]
    dir: PathBuf,
    /// Which requires to answer (selector grammar of the cdo crate).
    #[arg(long, default_value = "*")]
    selector: String,
    /// Component name in the pool.
    #[arg(long, default_value = "cdo-librarian")]
    name: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let stop = stop_on_signals()?;
    let config = ClientConfig::from_env(&args.name)
        .ok_or("CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN must name the pool manager")?;
    let archive = Archive::open(&args.dir)?;
    let mut librarian = Librarian::start(Client::connect(&config)?, &args.selector, archive)?;
    println!("ready");
    while !stop.load(Ordering::SeqCst) {
        match librarian.next_timeout(Duration::from_millis(200))? {
            Some(Served::Offered { name, bytes }) => tracing::info!(%name, bytes, "offered"),
            Some(Served::Missing { name }) => tracing::debug!(%name, "not archived"),
            Some(Served::OnOffer { .. }) | None => {}
        }
    }
    librarian.leave(Duration::from_secs(10))?;
    Ok(())
}
