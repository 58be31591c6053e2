//! The hand-off seam between the time loop and the in-transit consumers.
//!
//! The solver side only sees [`Outlet`]: it publishes output records (high
//! priority) and checkpoint requests (low priority, handled after the
//! records pending at the same time), then finishes. The channel-based
//! implementation lives in [`crate::analysis`]; a CDO pool can replace it.

use std::path::PathBuf;

use crate::record::{CheckpointJob, SharedRecord};

/// Why the consumers failed.
#[derive(Debug, thiserror::Error)]
pub enum OutletError {
    /// A file of an analysis could not be written.
    #[error("analysis output {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A consumer stopped taking records (it failed; `finish` says why).
    #[error("the {0} consumer stopped")]
    Closed(&'static str),
    /// A consumer thread panicked.
    #[error("the {0} consumer panicked")]
    Panicked(&'static str),
}

/// What the consumers did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutletReport {
    /// Records published.
    pub records: u64,
    /// Bytes of field data published.
    pub bytes: u64,
    /// Steps of the records the statistics consumer processed, in order.
    pub stats_steps: Vec<u64>,
    /// Steps of the records each renderer group member processed.
    pub rendered_steps: Vec<Vec<u64>>,
    /// Checkpoints written.
    pub checkpoints: Vec<PathBuf>,
    /// Wall time the consumers spent working on records and checkpoints
    /// (preemption included), in seconds, all consumers together.
    pub busy_seconds: f64,
}

/// Where the time loop hands its records.
pub trait Outlet {
    /// Hands over an output record; returns once it is queued.
    ///
    /// # Errors
    /// [`OutletError::Closed`] when a consumer has stopped.
    fn publish(&mut self, record: SharedRecord) -> Result<(), OutletError>;

    /// Hands over a checkpoint request, handled after output records.
    ///
    /// # Errors
    /// [`OutletError::Closed`] when the writers have stopped.
    fn checkpoint(&mut self, job: CheckpointJob) -> Result<(), OutletError>;

    /// Ends the stream, waits for the consumers and reports what they did.
    ///
    /// # Errors
    /// The first failure of a consumer.
    fn finish(self: Box<Self>) -> Result<OutletReport, OutletError>;
}
