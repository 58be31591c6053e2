//! What an archiver keeps and reports: the [`Subsample`] of its stream it
//! stores, the [`Outcome`] of each record, the [`Tally`] of them, and the
//! [`Ledger`] that keeps them.

use super::{Archive, Flushed, Result, Stored};
use std::path::PathBuf;
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

/// The bookkeeping of one archived stream of
/// [`app::Archiver`](crate::app::Archiver): which records the subsample
/// keeps, and what was stored or skipped.
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
