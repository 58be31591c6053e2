//! The in-process archiver: a consumer-group member that stores every
//! record it is given (or a subsample) in an [`Archive`].

use super::{Archive, Flushed, Result, Stored};
use crate::pool::Pool;
use crate::stream::{Member, Record};
use std::path::PathBuf;
use std::time::Duration;
use tracing::warn;

/// Which records of a stream to keep: the 1st, the (`every`+1)th, the
/// (2`every`+1)th, …, counted per stream (per archiver). `every` 0 or 1
/// keeps all.
///
/// ```
/// use cdo::archive::Subsample;
/// let kept: Vec<u64> = (0..7).filter(|&i| Subsample { every: 3 }.keeps(i)).collect();
/// assert_eq!(kept, [0, 3, 6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subsample {
    /// Keep one record in this many.
    pub every: u64,
}

impl Subsample {
    /// Whether the record at `index` (0 for the first) of a stream is kept.
    pub fn keeps(&self, index: u64) -> bool {
        self.every <= 1 || index % self.every == 0
    }
}

/// What an archiver did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Records stored.
    pub stored: u64,
    /// Bytes of data stored.
    pub bytes: u64,
    /// Records the subsample skipped.
    pub skipped: u64,
    /// Records the archive refused, set aside as dead letters.
    pub dead_letters: u64,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored.
    Stored {
        /// The CDO name.
        name: String,
        /// Its file in the archive ([`Stored::path`]).
        path: PathBuf,
        /// Bytes of data.
        bytes: u64,
        /// How it was made durable.
        flushed: Flushed,
    },
    /// Skipped by the subsample.
    Skipped {
        /// The CDO name.
        name: String,
    },
    /// Refused by the archive and set aside as a dead letter
    /// ([`Archive::dead_letter`]); done, so never given again.
    DeadLettered {
        /// The CDO name.
        name: String,
        /// Why the archive refused it.
        reason: String,
        /// The dead letter's note.
        note: PathBuf,
    },
}

/// The bookkeeping of one archived stream, shared by the in-process
/// [`Archiver`] and the pool-manager client
/// ([`ArchiverClient`](crate::ipc::components::ArchiverClient)): which
/// records the subsample keeps, and what was stored or skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ledger {
    subsample: Subsample,
    seen: u64,
    tally: Tally,
}

impl Ledger {
    /// A ledger keeping what `subsample` keeps.
    pub fn new(subsample: Subsample) -> Self {
        Ledger {
            subsample,
            ..Ledger::default()
        }
    }

    /// Counts the next record of the stream; whether it is to be stored
    /// (a skipped one is counted as such).
    pub fn admit(&mut self) -> bool {
        let keep = self.subsample.keeps(self.seen);
        self.seen += 1;
        self.tally.skipped += u64::from(!keep);
        keep
    }

    /// Stores an admitted record in `archive` and counts it; a record the
    /// archive refuses is set aside as a dead letter instead (logged and
    /// counted), so that it is done and never retried.
    ///
    /// # Errors
    /// The archive's error when not even the dead letter can be written
    /// (the archive itself is broken, not the record).
    pub fn store(
        &mut self,
        archive: &Archive,
        name: String,
        attributes: &crate::FlatAttributes,
        data: &[u8],
    ) -> Result<Outcome> {
        let Stored { path, flushed } = match archive.store(&name, attributes, data) {
            Ok(stored) => stored,
            Err(refused) => {
                let reason = refused.to_string();
                let note = archive.dead_letter(&name, attributes, Some(data), &reason)?;
                warn!(%name, %reason, note = %note.display(), "record set aside as a dead letter");
                self.tally.dead_letters += 1;
                return Ok(Outcome::DeadLettered { name, reason, note });
            }
        };
        let bytes = data.len() as u64;
        self.tally.stored += 1;
        self.tally.bytes += bytes;
        Ok(Outcome::Stored {
            name,
            path,
            bytes,
            flushed,
        })
    }

    /// What was done so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }
}

/// A member of a consumer group that stores its records, with their
/// flattened attributes, in an archive; a record is completed once stored,
/// or set aside as a dead letter when the archive refuses it (a record
/// whose data cannot be read goes back to the group).
///
/// ```
/// use cdo::archive::{Archive, Archiver};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config { gpu: false, ..Default::default() })?);
/// let pool = cdo::Pool::new(mamba, cdo::PoolConfig::default())?;
/// let dir = tempfile::tempdir()?;
/// let mut archiver = Archiver::join(&pool, "archive", "persist == true", Archive::open(dir.path())?)?;
///
/// let mut producer = pool.declare("run1/result")?;
/// producer.set_persist(true)?;
/// producer.write(b"kept")?;
/// producer.seal()?;
/// producer.offer()?;
///
/// assert_eq!(archiver.drain()?.stored, 1);
/// producer.withdraw()?; // the archiver completed the record
/// assert_eq!(archiver.archive().load("run1/result")?.unwrap().data, b"kept");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Archiver<'p> {
    member: Member<'p>,
    archive: Archive,
    ledger: Ledger,
}

impl<'p> Archiver<'p> {
    /// Joins the consumer group `group` of `pool` (formed with `selector`
    /// unless it exists) to store its records in `archive`.
    ///
    /// # Errors
    /// [`ArchiveError::Pool`](super::ArchiveError::Pool): a selector that
    /// does not parse or differs from the group's.
    pub fn join(pool: &'p Pool, group: &str, selector: &str, archive: Archive) -> Result<Self> {
        Ok(Archiver {
            member: pool.join(group, selector)?,
            archive,
            ledger: Ledger::default(),
        })
    }

    /// Keeps only the records `subsample` keeps (the others are completed
    /// unstored).
    pub fn with_subsample(self, subsample: Subsample) -> Self {
        Archiver {
            ledger: Ledger::new(subsample),
            ..self
        }
    }

    /// The archive records go to.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// What was done so far.
    pub fn tally(&self) -> Tally {
        self.ledger.tally()
    }

    /// Takes the next record, waiting up to `timeout`, and stores or skips
    /// it; `None` when none came.
    ///
    /// # Errors
    /// The archive's errors, or the pool's when the data cannot be read.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Outcome>> {
        match self.member.next_timeout(timeout) {
            Some(record) => self.take(record).map(Some),
            None => Ok(None),
        }
    }

    /// Stores or skips every record queued now; returns the tally so far.
    ///
    /// # Errors
    /// As [`Archiver::next_timeout`].
    pub fn drain(&mut self) -> Result<Tally> {
        while let Some(record) = self.member.try_next() {
            self.take(record)?;
        }
        Ok(self.ledger.tally())
    }

    fn take(&mut self, record: Record) -> Result<Outcome> {
        let name = record.name().to_owned();
        if !self.ledger.admit() {
            record.complete();
            return Ok(Outcome::Skipped { name });
        }
        let attributes = record
            .attributes()
            .map(crate::Attributes::flatten)
            .unwrap_or_default();
        let data = record.data();
        let outcome = self
            .ledger
            .store(&self.archive, name, &attributes, data.as_slice()?)?;
        drop(data);
        record.complete();
        Ok(outcome)
    }
}
