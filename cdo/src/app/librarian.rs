//! [`Librarian`]: serves archived objects back to the consumers that
//! require them, in either deployment.

use super::{Cdo, Event, Pool, Subscription};
use crate::archive::{Archive, Archived, Result};
use crate::attrs::FlatAttributes;
use crate::error::Error;
use crate::events::{EventKind, EventMask, Participant};
use crate::ipc::client::ClientError;
use crate::ipc::fasthash::{FastMap, FastSet};
use crate::ipc::wire::ErrorCode;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::warn;

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

/// How long one wait for a require leaves the leaves unread.
const SLICE: Duration = Duration::from_millis(20);

/// Answers each require of an archived object that is not on offer by
/// offering it from an [`Archive`] (one an
/// [`Archiver`](super::Archiver) wrote, in this run or an earlier one), on
/// an [`app::Pool`](Pool) of either deployment. Consumers must require
/// before they demand for a librarian to see them. It withdraws what it
/// offered once every consumer that required it (every
/// [participant](Event::origin) that raised a require) has demanded it,
/// retracted or left; a view taken stays valid. An entry it cannot serve
/// (corrupt, or refused by the pool) is noted as a dead letter in the
/// archive and not tried again.
///
/// Dropping it gives up what it still offers (see [`Cdo`]'s drop).
///
/// ```
/// use cdo::app::{Librarian, Pool, Served};
/// use cdo::archive::Archive;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config { gpu: false, ..Default::default() })?);
/// let shared = Arc::new(cdo::Pool::new(mamba, cdo::PoolConfig::default())?);
/// let dir = tempfile::tempdir()?;
/// let archive = Archive::open(dir.path())?;
/// archive.store("run1/result", &Default::default(), b"kept")?;
///
/// let serving = Pool::join_local(shared.clone(), "librarian");
/// let mut librarian = Librarian::start(&serving, "*", archive)?;
/// let consumer = Pool::join_local(shared, "consumer");
/// let mut c = consumer.declare("run1/result")?;
/// c.require()?;
/// let offered = librarian.next_timeout(Duration::from_secs(10))?;
/// assert_eq!(offered, Some(Served::Offered { name: "run1/result".into(), bytes: 4 }));
/// assert_eq!(c.demand()?.bytes()?, b"kept");
/// let withdrawn = librarian.next_timeout(Duration::from_secs(10))?;
/// assert_eq!(withdrawn, Some(Served::Withdrawn { name: "run1/result".into() }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Librarian<'p> {
    pool: &'p Pool,
    archive: Archive,
    /// The requires, demands and retracts its selector picks.
    requires: Subscription<'p>,
    /// Every application's leave.
    leaves: Subscription<'p>,
    /// What it offers, with the participants that required it and have not
    /// yet demanded it, retracted or left.
    serving: FastMap<String, Serving<'p>>,
    /// The participants that left (their requires, read after their
    /// leave, need no answer).
    gone: FastSet<Participant>,
    /// Names it could not serve.
    refused: FastSet<String>,
    /// Offers being withdrawn (waiting for the views of them to go).
    withdrawing: Vec<Cdo<'p>>,
    /// What was done and not yet reported (one leave may withdraw several
    /// objects).
    reports: VecDeque<Served>,
}

/// One object a librarian offers.
struct Serving<'p> {
    offer: Cdo<'p>,
    /// Who still requires it.
    waiting: FastSet<Participant>,
}

impl std::fmt::Debug for Librarian<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Librarian")
            .field("archive", &self.archive)
            .field("serving", &self.serving.len())
            .field("withdrawing", &self.withdrawing.len())
            .finish()
    }
}

impl<'p> Librarian<'p> {
    /// Subscribes on `pool` to the requires, demands and retracts of the
    /// objects matching `selector` (and to every leave), to answer them from
    /// `archive`.
    ///
    /// # Errors
    /// [`ArchiveError::Pool`](crate::archive::ArchiveError::Pool): a
    /// selector that does not parse, or the manager's failure.
    pub fn start(pool: &'p Pool, selector: &str, archive: Archive) -> Result<Self> {
        let kinds = EventMask::from(EventKind::Require) | EventKind::Demand | EventKind::Retract;
        Ok(Librarian {
            pool,
            archive,
            requires: pool.subscribe(selector, kinds, false)?,
            leaves: pool.subscribe("*", EventKind::Leave.into(), false)?,
            serving: FastMap::default(),
            gone: FastSet::default(),
            refused: FastSet::default(),
            withdrawing: Vec::new(),
            reports: VecDeque::new(),
        })
    }

    /// The archive it serves from.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Objects offered and still required by someone.
    pub fn serving(&self) -> usize {
        self.serving.len()
    }

    /// Handles the next event, waiting up to `timeout`; `None` when none
    /// came or it needed nothing done.
    ///
    /// # Errors
    /// The pool's (the manager failed); the archive's when a dead letter
    /// cannot be written.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Served>> {
        self.reap();
        if let Some(report) = self.reports.pop_front() {
            return Ok(Some(report));
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Requires first: a require read after its participant's leave
            // is answered knowing it left.
            if let Some(event) = self.requires.next_timeout(Duration::ZERO)? {
                return self.consume(&event);
            }
            if let Some(event) = self.leaves.next_timeout(Duration::ZERO)? {
                return Ok(self.left(event.origin()));
            }
            let left = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(event) = self.requires.next_timeout(left.min(SLICE))? {
                return self.consume(&event);
            }
        }
    }

    /// Handles a consumer's require, demand or retract.
    fn consume(&mut self, event: &Event<'_>) -> Result<Option<Served>> {
        let (name, origin) = (event.name(), event.origin());
        match event.kind() {
            EventKind::Require => self.require(name, origin),
            EventKind::Demand | EventKind::Retract => Ok(self.served(name, origin)),
            _ => Ok(None),
        }
    }

    /// Answers `origin`'s require of `name`.
    fn require(&mut self, name: &str, origin: Participant) -> Result<Option<Served>> {
        // A participant that left has no require left to answer (another
        // node's, never seen leaving, may still be waiting).
        if origin != Participant::NONE && self.gone.contains(&origin) {
            return Ok(None);
        }
        let name = name.to_owned();
        if let Some(serving) = self.serving.get_mut(&name) {
            serving.waiting.insert(origin);
            return Ok(Some(Served::OnOffer { name }));
        }
        if self.refused.contains(&name) {
            let reason = "refused before".to_owned();
            return Ok(Some(Served::DeadLettered { name, reason }));
        }
        let entry = match self.archive.load(&name) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(Some(Served::Missing { name })),
            Err(e) => return self.set_aside(name, &FlatAttributes::new(), e.to_string()),
        };
        let bytes = entry.data.len() as u64;
        match self.offer(&name, &entry) {
            Ok(offer) => {
                let waiting = FastSet::from_iter([origin]);
                self.serving
                    .insert(name.clone(), Serving { offer, waiting });
                Ok(Some(Served::Offered { name, bytes }))
            }
            Err(Error::AlreadyOffered { .. }) => Ok(Some(Served::OnOffer { name })),
            Err(e) if refuses_object(&e) => self.set_aside(name, &entry.attributes, e.to_string()),
            Err(e) => Err(e.into()),
        }
    }

    /// Offers `entry` as `name`.
    fn offer(&self, name: &str, entry: &Archived) -> crate::Result<Cdo<'p>> {
        let mut offer = self.pool.declare(name)?;
        offer.restore_attributes(&entry.attributes)?;
        offer.write(&entry.data)?;
        offer.seal()?;
        offer.offer()?;
        Ok(offer)
    }

    /// `origin` demanded or retracted `name`: withdrawn when nobody else
    /// waits for it.
    fn served(&mut self, name: &str, origin: Participant) -> Option<Served> {
        let done = self
            .serving
            .get_mut(name)
            .is_some_and(|s| s.waiting.remove(&origin) && s.waiting.is_empty());
        done.then(|| self.withdraw(name))
    }

    /// `origin` left: what only it still required is withdrawn.
    fn left(&mut self, origin: Participant) -> Option<Served> {
        if origin != Participant::NONE {
            self.gone.insert(origin);
        }
        let mut done = Vec::new();
        for (name, serving) in &mut self.serving {
            if serving.waiting.remove(&origin) && serving.waiting.is_empty() {
                done.push(name.clone());
            }
        }
        for name in done {
            let report = self.withdraw(&name);
            self.reports.push_back(report);
        }
        self.reports.pop_front()
    }

    /// Notes `name` as a dead letter and never tries it again.
    fn set_aside(
        &mut self,
        name: String,
        attributes: &FlatAttributes,
        reason: String,
    ) -> Result<Option<Served>> {
        let note = self.archive.dead_letter(&name, attributes, None, &reason)?;
        warn!(%name, %reason, note = %note.display(), "cannot serve; noted as a dead letter");
        self.refused.insert(name.clone());
        Ok(Some(Served::DeadLettered { name, reason }))
    }

    /// Starts withdrawing `name`; it finishes once no view of it is left.
    fn withdraw(&mut self, name: &str) -> Served {
        if let Some(serving) = self.serving.remove(name) {
            self.withdrawing.push(serving.offer);
            self.reap();
        }
        Served::Withdrawn {
            name: name.to_owned(),
        }
    }

    /// Finishes the withdrawals that can finish now, without waiting.
    fn reap(&mut self) {
        self.withdrawing
            .retain_mut(|offer| match offer.withdraw_timeout(Duration::ZERO) {
                Ok(()) => {
                    if let Err(e) = offer.dispose() {
                        warn!(name = %offer.name(), error = %e, "a withdrawn offer was not disposed");
                    }
                    false
                }
                Err(Error::Timeout { .. }) => true,
                // Given up: dropping the handle gives up its offer.
                Err(e) => {
                    warn!(name = %offer.name(), error = %e, "a withdrawal failed");
                    false
                }
            });
    }
}

/// Whether the pool refused an object for what it is (its attributes, its
/// data), not because the pool or the connection to it failed.
fn refuses_object(e: &Error) -> bool {
    match e {
        Error::InvalidName { .. }
        | Error::UnknownAttribute { .. }
        | Error::ReadOnlyAttribute { .. }
        | Error::TypeMismatch { .. }
        | Error::MissingAttribute { .. }
        | Error::Inconsistent { .. }
        | Error::Schema { .. }
        | Error::Layout { .. } => true,
        Error::PoolManager(c) => matches!(
            c,
            ClientError::Shm(_)
                | ClientError::Pool {
                    code: ErrorCode::BadAttributes | ErrorCode::BadSegment | ErrorCode::Protocol,
                    ..
                }
        ),
        _ => false,
    }
}
