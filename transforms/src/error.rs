//! The crate's error type.

use thiserror::Error;

/// Everything that can be wrong with a layout, a buffer or a request.
///
/// Every public function of the crate reports problems through this type;
/// none of them panics on bad input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// An element size of zero bytes.
    #[error("element size must be at least one byte")]
    ZeroElementSize,
    /// A layout with no dimensions.
    #[error("a layout needs at least one dimension")]
    NoDimensions,
    /// A dimension of extent zero.
    #[error("dimension {dim} has extent zero")]
    ZeroExtent {
        /// The offending dimension.
        dim: usize,
    },
    /// Two lists that must have one entry per dimension do not.
    #[error("expected {expected} dimensions, found {found}")]
    RankMismatch {
        /// Rank of the layout.
        expected: usize,
        /// Length of the list given.
        found: usize,
    },
    /// Source and destination describe arrays of different shapes.
    #[error("shape mismatch: source {src:?}, destination {dst:?}")]
    ShapeMismatch {
        /// Source shape.
        src: Vec<usize>,
        /// Destination shape.
        dst: Vec<usize>,
    },
    /// Source and destination (or a typed slice) disagree on element size.
    #[error("element size mismatch: {src} bytes against {dst} bytes")]
    ElementSizeMismatch {
        /// Source element size in bytes.
        src: usize,
        /// Destination element size in bytes.
        dst: usize,
    },
    /// A layout reaches outside its buffer.
    #[error("layout needs {needed} bytes, buffer has {len}")]
    OutOfBounds {
        /// Bytes the layout needs (one past its highest byte).
        needed: usize,
        /// Length of the buffer.
        len: usize,
    },
    /// A layout reaches below the start of its buffer (negative strides with
    /// too small an offset).
    #[error("layout reaches {below} bytes before the start of its buffer")]
    NegativeOffset {
        /// How many bytes below offset zero the lowest element lies.
        below: usize,
    },
    /// A destination layout in which two elements share bytes (including
    /// zero strides, which are allowed only for sources).
    #[error("destination layout overlaps itself (dimension {dim})")]
    Overlap {
        /// A dimension whose stride is too small.
        dim: usize,
    },
    /// Offsets of the layout do not fit in the address space.
    #[error("layout offsets overflow the address space")]
    Overflow,
    /// A list that must be a permutation of the dimensions is not.
    #[error("{0:?} is not a permutation of the dimensions")]
    InvalidPermutation(Vec<usize>),
    /// An invalid tile shape (zero extent).
    #[error("tile extent of dimension {dim} is zero")]
    InvalidTile {
        /// The offending dimension.
        dim: usize,
    },
    /// A padded leading dimension shorter than the row it pads.
    #[error("leading dimension {ld} is shorter than the row length {len}")]
    InvalidPadding {
        /// Requested leading dimension.
        ld: usize,
        /// Row length.
        len: usize,
    },
    /// A region (sub-array) that does not fit in the array.
    #[error("region [{start}, {start}+{size}) of dimension {dim} exceeds extent {extent}")]
    RegionOutOfRange {
        /// The dimension.
        dim: usize,
        /// First index of the region.
        start: usize,
        /// Extent of the region.
        size: usize,
        /// Extent of the array.
        extent: usize,
    },
    /// The operation needs a strided layout and got a tiled one.
    #[error("operation needs a strided layout; this one is tiled")]
    NotStrided,
    /// A zero step in a strided view.
    #[error("view step of dimension {dim} is zero")]
    ZeroStep {
        /// The offending dimension.
        dim: usize,
    },
    /// An invalid record description.
    #[error("invalid record layout: {0}")]
    InvalidRecord(&'static str),
    /// A wrong number of buffers (fields of a record, blocks of a
    /// decomposition).
    #[error("expected {expected} buffers, found {found}")]
    BufferCount {
        /// Buffers needed.
        expected: usize,
        /// Buffers given.
        found: usize,
    },
    /// An invalid block decomposition.
    #[error("invalid decomposition: {0}")]
    InvalidDecomposition(&'static str),
}

/// Result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
