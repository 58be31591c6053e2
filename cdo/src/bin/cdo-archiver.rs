//! `cdo-archiver`: joins the pool manager named by `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN`, takes the offers its selector picks through a
//! consumer group and writes them, attributes beside the data, into an
//! archive: a directory (`--dir` or `CDO_ARCHIVE_DIR`: a file tier) or
//! persistent memory (`--pmem` or `CDO_ARCHIVE_PMEM`: an NVDIMM directory,
//! each object flushed before its record is marked done), exactly one of
//! them (else it exits with status 2), until SIGINT or SIGTERM; then
//! prints what it stored, and how the last store was flushed, as one JSON
//! line. A record the archive refuses is set
//! aside in the archive's dead letters, marked done and counted
//! (`dead_letters`); it never stops the archiver. The archiver is
//! [`cdo::app::Archiver`] on an [`app::Pool`](cdo::app::Pool) joined to
//! that manager.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cdo::app::{Archiver, Pool};
use cdo::archive::{Archive, Outcome, Subsample};
use cdo::ipc::client::ClientConfig;
use cdo::ipc::components::{log_to_stderr, stop_on_signals, ArchiveLocation, ComponentError};
use clap::error::ErrorKind::ArgumentConflict;
use clap::{CommandFactory, Parser};

/// Archives the objects of a CDO pool.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    location: ArchiveLocation,
    /// Which offers to keep (selector grammar of the cdo crate).
    #[arg(long, default_value = "persist == true")]
    selector: String,
    /// The consumer group the archivers of this selector share.
    #[arg(long, default_value = "cdo-archiver")]
    group: String,
    /// Keep one record in this many (1: all).
    #[arg(long, default_value_t = 1)]
    every: u64,
    /// Component name in the pool.
    #[arg(long, default_value = "cdo-archiver")]
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
    let mut archiver = Archiver::join(&pool, &args.group, &args.selector, archive)?
        .with_subsample(Subsample { every: args.every });
    println!("ready");
    let mut last_flush = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(Outcome::Stored {
            name,
            bytes,
            flushed,
            ..
        }) = archiver.next_timeout(Duration::from_millis(200))?
        {
            tracing::info!(%name, bytes, %flushed, "archived");
            last_flush = Some(flushed);
        }
    }
    let tally = archiver.tally();
    // Leaves the group, then the pool.
    drop(archiver);
    pool.leave(Duration::from_secs(10))?;
    println!(
        "{}",
        serde_json::json!({
            "stored": tally.stored,
            "bytes": tally.bytes,
            "skipped": tally.skipped,
            "dead_letters": tally.dead_letters,
            "flushed": last_flush,
        })
    );
    Ok(())
}
