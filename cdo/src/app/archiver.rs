//! [`Archiver`]: the consumer-group member that stores its records in an
//! [`Archive`], in either deployment.

use super::{Member, Pool, Record};
use crate::archive::{Archive, Ledger, Outcome, Result, Subsample, Tally};
use std::time::Duration;

/// A member of a consumer group that stores each record it is given (or a
/// [`Subsample`]), with its flat attributes, in an archive, and marks it
/// done only then: a record the archive refuses is set aside as a dead
/// letter and done; one whose data cannot be read goes back to the group.
/// What [`crate::archive::Archiver`] and
/// [`ArchiverClient`](crate::ipc::components::ArchiverClient) do for one
/// deployment each, on an [`app::Pool`](Pool) of either.
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
    /// [`ArchiveError::Pool`](crate::archive::ArchiveError::Pool): a
    /// selector that does not parse or differs from the group's, or the
    /// manager's failure.
    pub fn join(pool: &'p Pool, group: &str, selector: &str, archive: Archive) -> Result<Self> {
        Ok(Archiver {
            member: pool.join_group(group, selector)?,
            archive,
            ledger: Ledger::default(),
        })
    }

    /// Keeps only the records `subsample` keeps (the others are done
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

    /// Takes the next record, waiting up to `timeout`, and stores, skips or
    /// sets it aside; `None` when none came.
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

    fn take(&mut self, record: Record<'p>) -> Result<Outcome> {
        let name = record.name().to_owned();
        if !self.ledger.admit() {
            record.done()?;
            return Ok(Outcome::Skipped { name });
        }
        let outcome =
            self.ledger
                .store(&self.archive, name, record.attributes(), record.bytes()?)?;
        record.done()?;
        Ok(outcome)
    }
}
