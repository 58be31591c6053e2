//! What the archiver ([`crate::app::Archiver`]) keeps and reports: the
//! [`Subsample`] of its stream it stores, the [`Outcome`] of each record,
//! and the [`Tally`] of them.

use super::Flushed;
use std::path::PathBuf;

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
        /// Its file in the archive ([`Stored::path`](super::Stored::path)).
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
    /// ([`Archive::dead_letter`](super::Archive::dead_letter)); done, so
    /// never given again.
    DeadLettered {
        /// The CDO name.
        name: String,
        /// Why the archive refused it.
        reason: String,
        /// The dead letter's note.
        note: PathBuf,
    },
}
