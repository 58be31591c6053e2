//! The archiver and the librarian as pool-manager clients (the
//! `cdo-archiver` and `cdo-librarian` binaries), built only from the
//! public [`Client`] API and [`Archive`].
//!
//! - [`ArchiverClient`] joins a consumer group whose selector picks the
//!   objects to keep (say `persist == true` or `priority == 'checkpoint'`),
//!   stores each record it is given (or a [`Subsample`] of them) with its
//!   attributes beside it, and only then marks it done, so a record whose
//!   store failed, or that a killed archiver held, goes to another member.
//! - [`Librarian`] subscribes to require events and answers each require
//!   of an archived object that is not on offer by offering it from the
//!   archive. Consumers must require before they demand (as in Maestro)
//!   for a librarian to see them.
//!
//! Together they give persistence across runs: one run's archiver writes,
//! a later run's librarian serves the same names.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use crate::archive::{Archive, ArchiveError, Ledger, Outcome, Subsample, Tally};
use crate::events::EventKind;
use crate::ipc::client::{Client, ClientConfig, ClientError, Notice};
use crate::ipc::fasthash::FastSet;
use crate::ipc::wire::ErrorCode;

/// Why an archiver or librarian stopped.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The pool manager connection or a request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The archive could not be read or written.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The environment names no pool manager.
    #[error("CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN must name the pool manager")]
    NoPool,
}

/// Joins the pool manager that `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN`
/// name, as `component`.
///
/// # Errors
/// [`ComponentError::NoPool`] when they are unset; the connection's errors.
pub fn connect_from_env(component: &str) -> Result<Client, ComponentError> {
    let config = ClientConfig::from_env(component).ok_or(ComponentError::NoPool)?;
    Ok(Client::connect(&config)?)
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

/// A consumer-group member storing its records in an [`Archive`].
pub struct ArchiverClient {
    client: Client,
    archive: Archive,
    ledger: Ledger,
}

impl ArchiverClient {
    /// Joins consumer group `group` (formed with `selector` unless it
    /// exists) through `client`, to store its records in `archive`.
    ///
    /// # Errors
    /// A bad selector, or a group formed with another one.
    pub fn join(
        mut client: Client,
        group: &str,
        selector: &str,
        archive: Archive,
    ) -> Result<Self, ComponentError> {
        client.join_group(group, selector)?;
        Ok(ArchiverClient {
            client,
            archive,
            ledger: Ledger::default(),
        })
    }

    /// Keeps only the records `subsample` keeps (the others are done
    /// unstored).
    pub fn with_subsample(self, subsample: Subsample) -> Self {
        ArchiverClient {
            ledger: Ledger::new(subsample),
            ..self
        }
    }

    /// What was done so far.
    pub fn tally(&self) -> Tally {
        self.ledger.tally()
    }

    /// The archiver's connection, for its own offers (a ready signal, say).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Takes the next record, waiting up to `timeout`, and stores or skips
    /// it; `None` when none came.
    ///
    /// # Errors
    /// The connection's or the archive's errors (the record then goes back
    /// to the group when this member leaves).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Outcome>, ComponentError> {
        let record = match self.client.next_notice(Some(timeout))? {
            Some(Notice::Record(r)) => r,
            Some(Notice::Event(_)) | None => return Ok(None),
        };
        let name = record.view.name().to_owned();
        if !self.ledger.admit() {
            self.client.done(record)?;
            return Ok(Some(Outcome::Skipped { name }));
        }
        let outcome = self
            .ledger
            .store(&self.archive, name, record.view.attrs(), &record.view)?;
        self.client.done(record)?;
        Ok(Some(outcome))
    }

    /// Leaves the pool (waiting up to `timeout`) and returns the tally.
    ///
    /// # Errors
    /// When the manager does not confirm in time.
    pub fn leave(mut self, timeout: Duration) -> Result<Tally, ComponentError> {
        self.client.leave(timeout)?;
        Ok(self.ledger.tally())
    }
}

/// What a librarian did with one require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Offered from the archive.
    Offered {
        /// The object.
        name: String,
        /// Its size.
        bytes: u64,
    },
    /// Not in the archive.
    Missing {
        /// The object.
        name: String,
    },
    /// Already on offer (by its producer or by this librarian).
    OnOffer {
        /// The object.
        name: String,
    },
}

/// Answers requires of archived objects by offering them.
pub struct Librarian {
    client: Client,
    archive: Archive,
    offered: FastSet<String>,
}

impl Librarian {
    /// Subscribes through `client` to the requires of objects matching
    /// `selector`, to answer them from `archive`.
    ///
    /// # Errors
    /// A bad selector.
    pub fn start(
        mut client: Client,
        selector: &str,
        archive: Archive,
    ) -> Result<Self, ComponentError> {
        client.subscribe(selector, EventKind::Require.into(), false)?;
        Ok(Librarian {
            client,
            archive,
            offered: FastSet::default(),
        })
    }

    /// Handles the next require, waiting up to `timeout`; `None` when none
    /// came.
    ///
    /// # Errors
    /// The connection's or the archive's errors (a corrupt entry included).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Served>, ComponentError> {
        let name = match self.client.next_notice(Some(timeout))? {
            Some(Notice::Event(e)) if e.kind == EventKind::Require => e.name,
            Some(_) | None => return Ok(None),
        };
        if self.offered.contains(&name) {
            return Ok(Some(Served::OnOffer { name }));
        }
        let Some(entry) = self.archive.load(&name)? else {
            return Ok(Some(Served::Missing { name }));
        };
        match self.client.offer(&name, &entry.data, entry.attributes) {
            Ok(()) => {
                self.offered.insert(name.clone());
                let bytes = entry.data.len() as u64;
                Ok(Some(Served::Offered { name, bytes }))
            }
            Err(ClientError::Pool {
                code: ErrorCode::DuplicateName,
                ..
            }) => Ok(Some(Served::OnOffer { name })),
            Err(e) => Err(e.into()),
        }
    }

    /// Leaves the pool once nobody requires what it offered (waiting up to
    /// `timeout`).
    ///
    /// # Errors
    /// When others still require its objects after `timeout`.
    pub fn leave(mut self, timeout: Duration) -> Result<(), ComponentError> {
        Ok(self.client.leave(timeout)?)
    }
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
