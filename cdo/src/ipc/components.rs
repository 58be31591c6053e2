//! What the `cdo-archiver` and `cdo-librarian` binaries share: the
//! archive's location, the errors of a component, logging and stopping on
//! signals. The components themselves are [`app`](crate::app) types, the
//! same in process and through a pool manager:
//!
//! - [`app::Archiver`](crate::app::Archiver): a consumer-group member whose
//!   selector picks the objects to keep (say `persist == true` or
//!   `priority == 'checkpoint'`), which stores each record and only then
//!   marks it done.
//! - [`app::Librarian`](crate::app::Librarian): subscribes to require
//!   events and answers each require of an archived object that is not on
//!   offer by offering it from the archive. Consumers must require before
//!   they demand (as in Maestro) for a librarian to see them. It withdraws
//!   what it offered once every consumer that required it has demanded it,
//!   retracted or left (a view taken stays valid). An entry it cannot
//!   serve (corrupt, or refused by the pool) is noted as a dead letter and
//!   not tried again.
//!
//! Together they give persistence across runs: one run's archiver writes,
//! a later run's librarian serves the same names. Both keep the archive in
//! a directory or in persistent memory ([`Backend`]), as their
//! [`ArchiveLocation`] says.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

use crate::archive::Backend;

/// Why an archiver or librarian could not start.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The environment names no pool manager.
    #[error("CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN must name the pool manager")]
    NoPool,
    /// The archive's location was not given exactly once.
    #[error("{0}")]
    ArchiveLocation(&'static str),
}

/// Where the archiver and librarian binaries keep their archive: a
/// directory, or a persistent-memory space; exactly one of them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ArchiveLocation {
    /// The archive directory (on the SSD tier, say).
    #[arg(long, env = "CDO_ARCHIVE_DIR")]
    pub dir: Option<PathBuf>,
    /// The archive in persistent memory: an NVDIMM fsdax mount, or a
    /// directory emulating one (flushed with msync).
    #[arg(long, env = "CDO_ARCHIVE_PMEM")]
    pub pmem: Option<PathBuf>,
}

impl ArchiveLocation {
    /// The backend given.
    ///
    /// # Errors
    /// [`ComponentError::ArchiveLocation`] when both or neither of the
    /// directory and the persistent-memory space are given.
    pub fn backend(self) -> Result<Backend, ComponentError> {
        match (self.dir, self.pmem) {
            (Some(dir), None) => Ok(Backend::Directory(dir)),
            (None, Some(pmem)) => Ok(Backend::Pmem(pmem)),
            (None, None) => Err(ComponentError::ArchiveLocation(
                "no archive: give --dir (CDO_ARCHIVE_DIR) or --pmem (CDO_ARCHIVE_PMEM)",
            )),
            (Some(_), Some(_)) => Err(ComponentError::ArchiveLocation(
                "two archives: give only one of --dir (CDO_ARCHIVE_DIR) and --pmem (CDO_ARCHIVE_PMEM)",
            )),
        }
    }
}

/// For the crate's binaries: logs to standard error, filtered by
/// `RUST_LOG` (default `info`).
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// For component binaries: blocks SIGINT and SIGTERM in this thread (call
/// it before starting any other thread, which inherit the mask) and returns
/// a flag that a watcher thread sets when one arrives.
///
/// # Errors
/// When the mask cannot be set or the watcher not started.
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                tracing::info!(?signal, "stopping");
            }
            flag.store(true, Ordering::SeqCst);
        })?;
    Ok(stop)
}
