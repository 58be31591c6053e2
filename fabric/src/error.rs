//! Typed errors of the fabric crate.

use std::time::Duration;

use thiserror::Error;

/// Result of the fabric crate's calls.
pub type Result<T> = std::result::Result<T, FabricError>;

/// What went wrong in a fabric call.
#[derive(Debug, Error)]
pub enum FabricError {
    /// A libfabric call returned an error code.
    #[error("{call} failed: {text} (errno {errno})")]
    Call {
        /// The libfabric call (`fi_getinfo`, `fi_read`, ...).
        call: &'static str,
        /// The positive libfabric error number.
        errno: i32,
        /// `fi_strerror` of `errno`.
        text: String,
    },
    /// An operation completed with an error entry on a completion queue.
    #[error("{op} completed with an error: {text} (errno {errno}; provider says: {detail})")]
    Completion {
        /// The operation (`fi_read`, `fi_tsend`, `fi_trecv`).
        op: &'static str,
        /// The positive libfabric error number of the completion.
        errno: i32,
        /// `fi_strerror` of `errno`.
        text: String,
        /// The provider's own explanation (`fi_cq_strerror`).
        detail: String,
    },
    /// The requested provider is not offered here (unknown name, filtered out
    /// by `FI_PROVIDER`, or lacking the capabilities asked for).
    #[error("libfabric provider {requested:?} is not available with {caps} (available here: {available})")]
    ProviderUnavailable {
        /// The provider asked for.
        requested: String,
        /// The capabilities asked for.
        caps: String,
        /// The providers that would have answered, comma-separated.
        available: String,
    },
    /// No provider at all offers the capabilities asked for.
    #[error("no libfabric provider offers {caps}: {text}")]
    NoProvider {
        /// The capabilities asked for.
        caps: String,
        /// `fi_strerror` of what `fi_getinfo` returned.
        text: String,
    },
    /// Memory registration failed where the locked-memory limit is the likely
    /// cause.
    #[error(
        "registering {len} bytes failed ({text}) and RLIMIT_MEMLOCK is {limit}: \
         raise the locked-memory limit (`ulimit -l unlimited` in the job script, \
         `memlock` in /etc/security/limits.conf, `LimitMEMLOCK=infinity` for a \
         systemd service, or the container runtime's `--ulimit memlock=-1`)"
    )]
    Memlock {
        /// Bytes being registered.
        len: usize,
        /// The soft limit, human-readable (`8388608 bytes`, `unlimited`).
        limit: String,
        /// `fi_strerror` of the registration's error.
        text: String,
    },
    /// Operations did not complete within the configured timeout; the
    /// endpoint was closed so that nothing can touch the caller's buffers
    /// afterwards.
    #[error("{op} timed out after {timeout:?} with {pending} operations pending; the endpoint was closed")]
    Timeout {
        /// What was waited for.
        op: &'static str,
        /// The configured timeout.
        timeout: Duration,
        /// Operations still in flight when the wait gave up.
        pending: usize,
    },
    /// The endpoint was closed (explicitly, or after a timeout).
    #[error("the fabric endpoint is closed")]
    Closed,
    /// The destination buffer and the remote region differ in length.
    #[error("the destination holds {dst} bytes but the remote region has {remote}")]
    LengthMismatch {
        /// Bytes in the destination.
        dst: usize,
        /// Bytes in the remote region.
        remote: u64,
    },
    /// A sub-range lies outside its region.
    #[error("range of {len} bytes at offset {offset} lies beyond the region of {region} bytes")]
    OutOfRange {
        /// Start of the range within the region.
        offset: u64,
        /// Bytes in the range.
        len: u64,
        /// Bytes in the region.
        region: u64,
    },
    /// The producer refused a message-path request.
    #[error("the producer refused the request: {0}")]
    Refused(String),
    /// A message-path message was malformed or unexpected.
    #[error("fabric protocol error: {0}")]
    Protocol(String),
    /// A region descriptor could not be parsed or does not fit this transport.
    #[error("bad region descriptor: {0}")]
    Descriptor(String),
    /// The configuration is unusable.
    #[error("invalid fabric configuration: {0}")]
    Config(String),
}

impl FabricError {
    /// The error of `call` returning `-errno`.
    pub(crate) fn call(call: &'static str, errno: i32) -> Self {
        FabricError::Call {
            call,
            errno,
            text: crate::raw::strerror(errno),
        }
    }
}

impl FabricError {
    /// A completion error attributed to the operation `op`.
    pub(crate) fn in_op(self, op: &'static str) -> Self {
        match self {
            FabricError::Completion {
                errno,
                text,
                detail,
                ..
            } => FabricError::Completion {
                op,
                errno,
                text,
                detail,
            },
            other => other,
        }
    }
}
