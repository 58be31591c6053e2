//! The hand-off seam between the time loop and the in-transit consumers.
//!
//! The solver side only sees [`Outlet`]: it hands over its state as output
//! records (high priority) and checkpoints (low priority, handled after the
//! records pending at the same time), then finishes. Two transports
//! implement it: crossbeam channels in process
//! ([`crate::analysis::ChannelOutlet`]) and a CDO pool
//! ([`crate::transit::TransitOutlet`]), in process or in a pool manager.

use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::{CheckpointError, CheckpointRef};
use crate::params::Params;
use crate::record::RecordMeta;
use crate::state::State;

/// The solver's state at a hand-off point and what it is due for.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    /// The state (its interior cells are handed over).
    pub state: &'a State,
    /// The record's attributes.
    pub meta: RecordMeta,
    /// The run's parameters (for checkpoints).
    pub params: &'a Params,
    /// Whether an output record is due.
    pub output: bool,
    /// Whether a checkpoint is due.
    pub checkpoint: bool,
}

impl<'a> Capture<'a> {
    /// The checkpoint of this state (its bytes are what a checkpoint CDO
    /// holds).
    pub fn checkpoint_ref(&self) -> CheckpointRef<'a> {
        CheckpointRef {
            params: self.params,
            state: self.state,
            step: self.meta.step,
            time: self.meta.time,
            dt: self.meta.dt,
        }
    }
}

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
    /// A checkpoint could not be encoded or archived.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A consumer stopped taking records (it failed; `finish` says why).
    #[error("the {0} consumer stopped")]
    Closed(&'static str),
    /// A consumer thread panicked.
    #[error("the {0} consumer panicked")]
    Panicked(&'static str),
    /// The CDO pool failed.
    #[error("CDO pool: {0}")]
    Cdo(#[from] cdo::Error),
    /// The pool manager could not be started.
    #[error("could not start the pool manager: {0}")]
    Manager(#[source] std::io::Error),
    /// A consumer process failed.
    #[error("consumer process {label}: {reason}")]
    Process {
        /// Which one.
        label: String,
        /// What happened.
        reason: String,
    },
    /// An object did not come in time.
    #[error("{what} did not come within {seconds:.1} s")]
    Timeout {
        /// The object waited for.
        what: String,
        /// How long it was waited for.
        seconds: f64,
    },
    /// A CDO lacks what a record needs.
    #[error("CDO {name}: {reason}")]
    Record {
        /// The CDO.
        name: String,
        /// What is wrong.
        reason: String,
    },
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
    /// The data files of the checkpoints archived, in step order.
    pub checkpoints: Vec<PathBuf>,
    /// What went through the CDO pool (the CDO transport only).
    pub transit: Option<TransitReport>,
    /// Wall time the consumers spent working on records and checkpoints
    /// (preemption included), in seconds, all consumers together.
    pub busy_seconds: f64,
}

/// What went through the CDO pool of a run, in process or in a pool
/// manager.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransitReport {
    /// The pool manager used (`None`: the pool was in process).
    pub manager: Option<ManagerUse>,
    /// Consumers run: threads in process, processes with a manager.
    pub consumers: usize,
    /// Objects the solver offered (fields, indexes, end markers and
    /// checkpoints).
    pub offered: u64,
    /// Objects it withdrew once consumed.
    pub withdrawn: u64,
    /// The pool's counters once the consumers had left, before the solver
    /// did.
    pub left: cdo::app::PoolStats,
}

/// The pool manager of a `--pool-manager` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerUse {
    /// Whether this run started the manager (else it joined one).
    pub started: bool,
    /// The manager's socket.
    pub socket: String,
}

/// Where the time loop hands its records.
pub trait Outlet {
    /// Hands over the state as an output record and/or a checkpoint (the
    /// latter handled after pending records); returns once it is queued,
    /// with the time spent waiting for room (consumers behind: records are
    /// never dropped).
    ///
    /// # Errors
    /// [`OutletError::Closed`] when a consumer has stopped; the transport's
    /// errors.
    fn hand_off(&mut self, capture: Capture<'_>) -> Result<Duration, OutletError>;

    /// Ends the stream, waits for the consumers and reports what they did.
    ///
    /// # Errors
    /// The first failure of a consumer.
    fn finish(self: Box<Self>) -> Result<OutletReport, OutletError>;
}
