//! The crate's one error type.

use crate::lifecycle::{Op, State};
use crate::value::ValueType;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in the CDO layer.
///
/// An operation that fails leaves the CDO handle and the pool as they were.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation is not allowed in the handle's current state.
    #[error("{op} is not allowed on CDO {name:?} in state {state}")]
    InvalidState {
        /// The CDO.
        name: Arc<str>,
        /// What was attempted.
        op: Op,
        /// The state the handle is (still) in.
        state: State,
    },
    /// A CDO or group name that cannot be used.
    #[error("invalid CDO name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An attribute the schema does not know, with `unknown = reject`.
    #[error("unknown attribute {key:?}")]
    UnknownAttribute {
        /// The key.
        key: String,
    },
    /// A built-in attribute that only the pool sets.
    #[error("attribute {key:?} is read-only")]
    ReadOnlyAttribute {
        /// The key.
        key: String,
    },
    /// A value of the wrong type for its attribute.
    #[error("attribute {key:?} expects {expected}, got {got}")]
    TypeMismatch {
        /// The key.
        key: String,
        /// The type the schema or the built-in demands.
        expected: ValueType,
        /// The value that was given.
        got: String,
    },
    /// A required attribute was not set before the offer.
    #[error("CDO {name:?} lacks required attribute {key:?}")]
    MissingAttribute {
        /// The CDO.
        name: Arc<str>,
        /// The key.
        key: String,
    },
    /// Attributes that contradict each other or the data.
    #[error("CDO {name:?}: {reason}")]
    Inconsistent {
        /// The CDO.
        name: Arc<str>,
        /// What contradicts what.
        reason: String,
    },
    /// Offering, under the `reject` duplicate policy, a name already on offer.
    #[error("CDO {name:?} is already offered")]
    AlreadyOffered {
        /// The CDO.
        name: Arc<str>,
    },
    /// A blocking operation ran past its timeout; nothing changed.
    #[error("{op} on CDO {name:?} timed out after {timeout:?}")]
    Timeout {
        /// The CDO.
        name: Arc<str>,
        /// What was waiting.
        op: Op,
        /// How long it waited.
        timeout: Duration,
    },
    /// The operation took effect, but the acknowledged subscribers of its
    /// event did not acknowledge within the pool's acknowledgement timeout
    /// (fail-fast policy; under best effort the operation just succeeds).
    #[error("{kind:?} on CDO {name:?} done, but not acknowledged within {waited:?}")]
    AckTimeout {
        /// The CDO.
        name: Arc<str>,
        /// The event that was not acknowledged.
        kind: crate::EventKind,
        /// How long the operation waited.
        waited: Duration,
    },
    /// A selector that does not parse.
    #[error("selector error at byte {position}: {message}")]
    Selector {
        /// Byte offset in the selector text.
        position: usize,
        /// What was expected there.
        message: String,
    },
    /// An attribute schema that cannot be loaded.
    #[error("schema {origin}: {message}")]
    Schema {
        /// File name or `<inline>`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Bad pool configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Data that cannot be brought into the wanted layout.
    #[error("CDO {name:?}: cannot convert layout: {reason}")]
    Layout {
        /// The CDO.
        name: Arc<str>,
        /// Why.
        reason: String,
    },
    /// A CDO group or consumer group misuse.
    #[error("group {name:?}: {reason}")]
    Group {
        /// The group.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The memory layer failed (capacity, device memory, ...).
    #[error(transparent)]
    Memory(#[from] mamba::Error),
    /// A pool manager failed or refused an operation in a way no other
    /// variant describes (connection, shared memory, protocol).
    #[error("pool manager: {0}")]
    PoolManager(#[from] crate::ipc::client::ClientError),
    /// A pool manager could not be started.
    #[error("cannot start a pool manager: {0}")]
    ManagerStart(#[source] std::io::Error),
    /// The socket for `cdo-stat` could not be served
    /// ([`app::Pool::serve_stats`](crate::app::Pool::serve_stats)).
    #[error("cannot serve statistics: {0}")]
    StatServer(#[source] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
