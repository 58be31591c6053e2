//! `cdo-librarian`: joins the pool manager named by `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` and answers every require of an object its
//! selector picks by offering it from an archive (one written by
//! `cdo-archiver`: a directory, `--dir` or `CDO_ARCHIVE_DIR`, or persistent
//! memory, `--pmem` or `CDO_ARCHIVE_PMEM`; exactly one of them, else it
//! exits with status 2), until SIGINT or SIGTERM. It withdraws each object once
//! every consumer that required it has demanded it, retracted or left; an
//! entry it cannot serve is noted in the archive's dead letters and not
//! tried again. The librarian is [`cdo::app::Librarian`] on an
//! [`app::Pool`](cdo::app::Pool) joined to that manager.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cdo::app::{Librarian, Pool, Served};
use cdo::archive::Archive;
use cdo::ipc::client::ClientConfig;
use cdo::ipc::components::{log_to_stderr, stop_on_signals, ArchiveLocation, ComponentError};
use clap::error::ErrorKind::ArgumentConflict;
use clap::{CommandFactory, Parser};

/// Serves archived objects to a CDO pool.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    location: ArchiveLocation,
    /// Which requires to answer (selector grammar of the cdo crate).
    #[arg(long, default_value = "*")]
    selector: String,
    /// Component name in the pool.
    #[arg(long, default_value = "cdo-librarian")]
    name: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_to_stderr();
    let args = Args::parse();
    let backend = args
        .location
        .backend()
        .unwrap_or_else(|e| Args::command().error(ArgumentConflict, e).exit());
    let stop = stop_on_signals()?;
    let archive = Archive::open_backend(backend)?;
    let config = ClientConfig::from_env(&args.name).ok_or(ComponentError::NoPool)?;
    let pool = Pool::connect_with(&config)?;
    let mut librarian = Librarian::start(&pool, &args.selector, archive)?;
    println!("ready");
    while !stop.load(Ordering::SeqCst) {
        match librarian.next_timeout(Duration::from_millis(200))? {
            Some(Served::Offered { name, bytes }) => tracing::info!(%name, bytes, "offered"),
            Some(Served::Missing { name }) => tracing::debug!(%name, "not archived"),
            Some(Served::Withdrawn { name }) => tracing::info!(%name, "withdrawn"),
            // Logged where it was set aside.
            Some(Served::DeadLettered { .. } | Served::OnOffer { .. }) | None => {}
        }
    }
    // Gives up its offers, then leaves the pool once nobody requires them.
    drop(librarian);
    pool.leave(Duration::from_secs(10))?;
    Ok(())
}
