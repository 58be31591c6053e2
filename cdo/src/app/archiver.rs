//! [`Archiver`]: the consumer-group member that stores its records in an
//! [`Archive`], in either deployment.

use super::{Member, Pool, Record};
use crate::archive::{Archive, Outcome, Result, Stored, Subsample, Tally};
use crate::attrs::FlatAttributes;
use std::time::Duration;
use tracing::warn;

/// A member of a consumer group that stores each record it is given (or a
/// [`Subsample`]), with its flat attributes, in an archive (a directory or
/// persistent memory, as the [`Archive`]'s [`Backend`](crate::archive::Backend)
/// says), and marks it done only then, on an [`app::Pool`](Pool) of
/// either deployment. A record the archive refuses (a name or attribute
/// it cannot hold) is logged, set aside as a dead letter
/// ([`Archive::dead_letter`]) and done: never retried, never fatal. Only
/// an archive that cannot even take the dead letter stops it; a record
/// whose data cannot be read goes back to the group.
///
/// Drop it to leave the group: the records it held go to the other
/// members.
///
/// ```
/// use cdo::app::{Archiver, Pool};
/// use cdo::archive::Archive;
/// use std::sync::Arc;
///
/// let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config { gpu: false, ..Default::default() })?);
/// let pool = Pool::in_process(mamba, cdo::PoolConfig::default())?;
/// let dir = tempfile::tempdir()?;
/// let mut archiver = Archiver::join(&pool, "archive", "persist == true", Archive::open(dir.path())?)?;
///
/// let mut producer = pool.declare("run1/result")?;
/// producer.set("persist", true)?;
/// producer.write(b"kept")?;
/// producer.seal()?;
/// producer.offer()?;
///
/// assert_eq!(archiver.drain()?.stored, 1);
/// producer.withdraw()?; // the archiver marked the record done
/// assert_eq!(archiver.archive().load("run1/result")?.unwrap().data, b"kept");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Archiver<'p> {
    member: Member<'p>,
    archive: Archive,
    subsample: Subsample,
    /// Records of the stream seen so far (the subsample's index).
    seen: u64,
    tally: Tally,
}

impl<'p> Archiver<'p> {
    /// Joins the consumer group `group` of `pool` (formed with `selector`
    /// unless it exists) to store its records in `archive`.
    ///
    /// # Errors
    /// [`ArchiveError::Pool`](crate::archive::ArchiveError::Pool): a
    /// selector that does not parse or differs from the group's, or the
    /// manager's failure.
    pub fn join(pool: &'p Pool, group: &str, selector: &str, archive: Archive) -> Result<Self> {
        Ok(Archiver {
            member: pool.join_group(group, selector)?,
            archive,
            subsample: Subsample::default(),
            seen: 0,
            tally: Tally::default(),
        })
    }

    /// Keeps only the records `subsample` keeps (the others are done
    /// unstored).
    pub fn with_subsample(self, subsample: Subsample) -> Self {
        Archiver { subsample, ..self }
    }

    /// The archive records go to.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// What was done so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Takes the next record, waiting up to `timeout`, and stores, skips or
    /// sets it aside ([`Outcome::DeadLettered`]); `None` when none came.
    ///
    /// # Errors
    /// The pool's errors (the data cannot be read, the manager failed); the
    /// archive's when not even a dead letter can be written (the record
    /// then goes back to the group).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Outcome>> {
        match self.member.next_timeout(timeout)? {
            Some(record) => self.take(record).map(Some),
            None => Ok(None),
        }
    }

    /// Stores, skips or sets aside every record queued now; returns the
    /// tally so far.
    ///
    /// # Errors
    /// As [`Archiver::next_timeout`].
    pub fn drain(&mut self) -> Result<Tally> {
        while self.next_timeout(Duration::ZERO)?.is_some() {}
        Ok(self.tally)
    }

    fn take(&mut self, record: Record<'p>) -> Result<Outcome> {
        let name = record.name().to_owned();
        let keep = self.subsample.keeps(self.seen);
        self.seen += 1;
        if !keep {
            self.tally.skipped += 1;
            record.done()?;
            return Ok(Outcome::Skipped { name });
        }
        let outcome = self.store(name, record.attributes(), record.bytes()?)?;
        record.done()?;
        Ok(outcome)
    }

    /// Stores a kept record and counts it; a record the archive refuses is
    /// set aside as a dead letter instead (logged and counted), so that it
    /// is done and never retried.
    ///
    /// # Errors
    /// The archive's error when not even the dead letter can be written
    /// (the archive itself is broken, not the record).
    fn store(&mut self, name: String, attributes: &FlatAttributes, data: &[u8]) -> Result<Outcome> {
        let Stored { path, flushed } = match self.archive.store(&name, attributes, data) {
            Ok(stored) => stored,
            Err(refused) => {
                let reason = refused.to_string();
                let note = self
                    .archive
                    .dead_letter(&name, attributes, Some(data), &reason)?;
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
}
