//! The librarian (the `cdo-librarian` binary), built only from the public
//! [`Client`] API and [`Archive`], and what it shares with the
//! `cdo-archiver` binary: the archive's location, the errors of a
//! component, logging and stopping on signals.
//!
//! - The archiver is [`app::Archiver`](crate::app::Archiver), the same in
//!   process and through a pool manager: a consumer-group member whose
//!   selector picks the objects to keep (say `persist == true` or
//!   `priority == 'checkpoint'`), which stores each record and only then
//!   marks it done.
//! - [`Librarian`] subscribes to require events and answers each require
//!   of an archived object that is not on offer by offering it from the
//!   archive. Consumers must require before they demand (as in Maestro)
//!   for a librarian to see them. It withdraws what it offered once every
//!   consumer that required it has demanded it, retracted or left (a view
//!   taken stays valid). An entry it cannot serve (corrupt, or refused by
//!   the pool) is noted as a dead letter and not tried again.
//!
//! Together they give persistence across runs: one run's archiver writes,
//! a later run's librarian serves the same names. Both keep the archive in
//! a directory or in persistent memory ([`Backend`]), as their
//! [`ArchiveLocation`] says.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use crate::archive::{Archive, ArchiveError, Backend};
use crate::events::{EventKind, EventMask};
use crate::ipc::client::{Client, ClientConfig, ClientError, Notice};
use crate::ipc::fasthash::{FastMap, FastSet};
use crate::ipc::wire::{Attributes, ErrorCode, RequestId};
use tracing::warn;

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

/// What a librarian did with one event.
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
    /// Could not be served (a corrupt entry, or one the pool refused): noted
    /// as a dead letter in the archive, and not tried again.
    DeadLettered {
        /// The object.
        name: String,
        /// Why.
        reason: String,
    },
    /// Withdrawn: every consumer that required it demanded it, retracted
    /// or left.
    Withdrawn {
        /// The object.
        name: String,
    },
}

/// Answers requires of archived objects by offering them, and withdraws
/// them once no longer needed.
pub struct Librarian {
    client: Client,
    archive: Archive,
    /// What it offers, with the clients that required it and have not
    /// yet demanded it, retracted or left.
    serving: FastMap<String, FastSet<u64>>,
    /// Names it could not serve.
    refused: FastSet<String>,
    /// Withdrawals waiting for their reply (for the views to go).
    withdrawing: Vec<RequestId>,
    /// What was done and not yet reported (one event may withdraw several
    /// objects).
    reports: VecDeque<Served>,
}

impl Librarian {
    /// Subscribes through `client` to the requires, demands and retracts
    /// of objects matching `selector` (and to every leave), to answer them
    /// from `archive`.
    ///
    /// # Errors
    /// A bad selector.
    pub fn start(
        mut client: Client,
        selector: &str,
        archive: Archive,
    ) -> Result<Self, ComponentError> {
        let kinds = EventMask::from(EventKind::Require) | EventKind::Demand | EventKind::Retract;
        client.subscribe(selector, kinds, false)?;
        client.subscribe("*", EventKind::Leave.into(), false)?;
        Ok(Librarian {
            client,
            archive,
            serving: FastMap::default(),
            refused: FastSet::default(),
            withdrawing: Vec::new(),
            reports: VecDeque::new(),
        })
    }

    /// Handles the next event, waiting up to `timeout`; `None` when none
    /// came or it needed nothing done.
    ///
    /// # Errors
    /// The connection's errors, or the archive's when a dead letter cannot
    /// be written.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Served>, ComponentError> {
        self.reap()?;
        if let Some(report) = self.reports.pop_front() {
            return Ok(Some(report));
        }
        let event = match self.client.next_notice(Some(timeout))? {
            Some(Notice::Event(e)) => e,
            Some(Notice::Record(_)) | None => return Ok(None),
        };
        match event.kind {
            EventKind::Require => self.require(event.name, event.client).map(Some),
            EventKind::Demand | EventKind::Retract => {
                let done = self
                    .serving
                    .get_mut(&event.name)
                    .is_some_and(|waiting| waiting.remove(&event.client) && waiting.is_empty());
                match done {
                    true => self.withdraw(event.name).map(Some),
                    false => Ok(None),
                }
            }
            EventKind::Leave => {
                let mut done = Vec::new();
                for (name, waiting) in &mut self.serving {
                    if waiting.remove(&event.client) && waiting.is_empty() {
                        done.push(name.clone());
                    }
                }
                for name in done {
                    let report = self.withdraw(name)?;
                    self.reports.push_back(report);
                }
                Ok(self.reports.pop_front())
            }
            _ => Ok(None),
        }
    }

    /// Answers `client`'s require of `name`.
    fn require(&mut self, name: String, client: u64) -> Result<Served, ComponentError> {
        if let Some(waiting) = self.serving.get_mut(&name) {
            waiting.insert(client);
            return Ok(Served::OnOffer { name });
        }
        if self.refused.contains(&name) {
            let reason = "refused before".to_owned();
            return Ok(Served::DeadLettered { name, reason });
        }
        let entry = match self.archive.load(&name) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(Served::Missing { name }),
            Err(e) => return self.set_aside(name, &Attributes::new(), e.to_string()),
        };
        let bytes = entry.data.len() as u64;
        match self
            .client
            .offer(&name, &entry.data, entry.attributes.clone())
        {
            Ok(()) => {
                self.serving
                    .insert(name.clone(), FastSet::from_iter([client]));
                Ok(Served::Offered { name, bytes })
            }
            Err(ClientError::Pool {
                code: ErrorCode::DuplicateName,
                ..
            }) => Ok(Served::OnOffer { name }),
            // The object's fault, not the pool's or the connection's.
            Err(
                e @ (ClientError::Shm(_)
                | ClientError::Pool {
                    code: ErrorCode::BadAttributes | ErrorCode::BadSegment | ErrorCode::Protocol,
                    ..
                }),
            ) => self.set_aside(name, &entry.attributes, e.to_string()),
            Err(e) => Err(e.into()),
        }
    }

    /// Notes `name` as a dead letter and never tries it again.
    fn set_aside(
        &mut self,
        name: String,
        attributes: &Attributes,
        reason: String,
    ) -> Result<Served, ComponentError> {
        let note = self.archive.dead_letter(&name, attributes, None, &reason)?;
        warn!(%name, %reason, note = %note.display(), "cannot serve; noted as a dead letter");
        self.refused.insert(name.clone());
        Ok(Served::DeadLettered { name, reason })
    }

    /// Withdraws `name`; its reply comes once no view of it is left.
    fn withdraw(&mut self, name: String) -> Result<Served, ComponentError> {
        self.serving.remove(&name);
        let id = self.client.submit_withdraw(&name)?;
        self.client.flush()?;
        self.withdrawing.push(id);
        Ok(Served::Withdrawn { name })
    }

    /// Collects the replies of finished withdrawals, without waiting.
    fn reap(&mut self) -> Result<(), ComponentError> {
        let mut pending = Vec::new();
        for id in std::mem::take(&mut self.withdrawing) {
            match self.client.wait_keeping(id, Some(Duration::ZERO)) {
                Ok(_) => {}
                Err(ClientError::Timeout) => pending.push(id),
                Err(ClientError::Pool { code, text }) => {
                    warn!(?code, %text, "a withdrawal failed");
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.withdrawing = pending;
        Ok(())
    }

    /// Objects offered and still required by someone.
    pub fn serving(&self) -> usize {
        self.serving.len()
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
