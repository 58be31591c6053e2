//! The crate's one error type.

use crate::tier::{SpaceId, Tier};
use std::path::PathBuf;

/// Everything that can go wrong in `mamba`, each with enough context for a
/// user to act on it. No operation that returns an error leaves a pool in an
/// inconsistent state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request for zero bytes.
    #[error("cannot allocate zero bytes")]
    ZeroSize,
    /// A size that no space could ever satisfy (larger than `isize::MAX`, or
    /// overflowing once rounded up).
    #[error("size {size} bytes is too large to allocate")]
    SizeTooLarge {
        /// The requested size.
        size: usize,
    },
    /// An alignment that is not a power of two.
    #[error("alignment {align} is not a power of two")]
    BadAlignment {
        /// The requested alignment.
        align: usize,
    },
    /// An alignment larger than the space supports (its page size).
    #[error("alignment {align} exceeds the largest supported alignment {max} of space {space}")]
    AlignmentTooLarge {
        /// The requested alignment.
        align: usize,
        /// The largest alignment the space supports.
        max: usize,
        /// The space that was asked.
        space: SpaceId,
    },
    /// The space has no room left under its capacity limit, or the system
    /// refused it more memory (then `available` is 0: see
    /// [`Error::Exhausted`]). Placement policies fall back on it.
    #[error(
        "space {name} ({tier}) is out of capacity: {requested} bytes requested, \
         {available} of {capacity} bytes available"
    )]
    OutOfCapacity {
        /// The full space.
        space: SpaceId,
        /// Its name.
        name: String,
        /// Its tier.
        tier: Tier,
        /// Bytes the request needed (rounded to the pool's granularity).
        requested: usize,
        /// Bytes still unreserved in the space.
        available: usize,
        /// The space's capacity limit.
        capacity: usize,
    },
    /// No space matched a placement policy, or every candidate was full.
    #[error("no space satisfies the policy {policy}: {reason}")]
    NoSpace {
        /// The policy, as text.
        policy: String,
        /// Why each candidate was rejected.
        reason: String,
    },
    /// A space identifier that this allocator does not have.
    #[error("unknown space {0}")]
    UnknownSpace(SpaceId),
    /// A tier that this node does not have.
    #[error("this node has no {0} tier")]
    UnknownTier(Tier),
    /// A NUMA node that does not exist in the topology.
    #[error("NUMA node {0} does not exist")]
    UnknownNumaNode(u32),
    /// A block handed back to a pool it does not come from.
    #[error("block at {addr:#x} does not belong to space {space}")]
    ForeignBlock {
        /// Address of the block.
        addr: usize,
        /// The pool's space.
        space: SpaceId,
    },
    /// The memory of this space cannot be reached by the CPU.
    #[error("space {0} is not CPU-addressable")]
    NotHostAccessible(SpaceId),
    /// The operation does not apply to this tier.
    #[error("{operation} is not supported on space {space} ({tier})")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
        /// The space.
        space: SpaceId,
        /// Its tier.
        tier: Tier,
    },
    /// A GPU was requested but no GPU runtime or device is present.
    #[error("no GPU available: {0}")]
    NoGpu(String),
    /// A GPU driver call failed.
    #[error("GPU driver call {call} failed: {message}")]
    Gpu {
        /// The driver function.
        call: &'static str,
        /// The driver's message.
        message: String,
    },
    /// A directory for a file-backed tier is missing, not a directory, or not
    /// writable.
    #[error("file tier directory {path}: {reason}")]
    BadDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A provider found no memory left in the system: `mmap` out of memory,
    /// a full disk or quota for a file tier, a GPU out of memory. Pools turn
    /// it into [`Error::OutOfCapacity`], so that placement falls back as for
    /// a configured cap.
    #[error("{call} found no memory left: {reason}")]
    Exhausted {
        /// The call that failed.
        call: &'static str,
        /// What the system said.
        reason: String,
    },
    /// The topology could not be read or built.
    #[error("topology: {0}")]
    Topology(String),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A layout or a layout-converting copy is invalid.
    #[error("layout: {0}")]
    Layout(#[from] mamba_transforms::Error),
    /// A copy longer than the memory it reads or writes.
    #[error("a copy of {requested} bytes does not fit in {available} bytes")]
    OutOfBounds {
        /// Bytes the copy needs.
        requested: usize,
        /// Bytes the memory has.
        available: usize,
    },
    /// An asynchronous copy's worker went away before finishing.
    #[error("the asynchronous copy was lost: {0}")]
    CopyLost(String),
}

impl Error {
    /// Wraps the current `errno` after a failed system call.
    pub(crate) fn last_os(call: &'static str) -> Self {
        Self::os(call, std::io::Error::last_os_error())
    }

    /// Wraps an operating system error; out-of-memory and out-of-space
    /// errors become [`Error::Exhausted`].
    pub(crate) fn os(call: &'static str, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOMEM | libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => Error::Exhausted {
                call,
                reason: source.to_string(),
            },
            _ => Error::Os { call, source },
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_and_space_are_exhaustion_other_errors_stay_os_errors() {
        for errno in [libc::ENOMEM, libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            let e = Error::os("mmap", std::io::Error::from_raw_os_error(errno));
            assert!(matches!(e, Error::Exhausted { call: "mmap", .. }), "{e}");
        }
        let e = Error::os("open", std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, Error::Os { call: "open", .. }), "{e}");
    }
}
