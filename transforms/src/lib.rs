//! Array layouts and layout-converting copy kernels.
//!
//! Codes that exchange data rarely agree on layout: C against Fortran order,
//! padded rows, tiles, structures of arrays against arrays of structures,
//! different block decompositions of one field. This crate describes such
//! layouts and copies logical arrays between them. It is pure: descriptors
//! and kernels on byte slices, no allocation policy.
//!
//! * [`Layout`]: element size, shape and, per dimension, a byte stride (any
//!   permutation, padding, sub-array views, negative strides for reversal,
//!   zero strides for replication in sources) or a tiling ([`Layout::tiled`]).
//! * [`CopyPlan`], [`copy`], [`copy_typed`], [`transpose`], [`extract`],
//!   [`insert`]: validated copies between any two layouts, with a memcpy
//!   fast path, a register-blocked transpose, non-temporal stores for large
//!   copies and rayon threads ([`ExecOptions`]).
//! * [`RecordLayout`]: arrays of structures to structures of arrays and back.
//! * [`Decomposition`], [`RedistributionPlan`]: moving a field between block
//!   decompositions.
//!
//! Every check happens before any byte moves; problems are reported as
//! [`Error`], never as panics or undefined behaviour.
//!
//! ```
//! use mamba_transforms::{copy_typed, Layout};
//! // A 2 x 3 matrix in C order, copied to Fortran order and reversed rows.
//! let a = [1, 2, 3, 4, 5, 6u32];
//! let c = Layout::row_major(4, &[2, 3])?;
//! let mut f = [0u32; 6];
//! copy_typed(&a, &c, &mut f, &Layout::column_major(4, &[2, 3])?)?;
//! assert_eq!(f, [1, 4, 2, 5, 3, 6]);
//! let mut r = [0u32; 6];
//! copy_typed(&a, &c.reversed(0)?, &mut r, &c)?;
//! assert_eq!(r, [4, 5, 6, 1, 2, 3]);
//! # Ok::<(), mamba_transforms::Error>(())
//! ```

mod error;
mod kernels;
mod layout;
mod options;
mod plan;
mod record;
mod redistribute;

pub use error::{Error, Result};
pub use layout::{Layout, Order};
pub use options::{ExecOptions, Streaming, Threads};
pub use plan::{copy, copy_typed, extract, insert, transpose, CopyPlan};
pub use record::{Field, RecordLayout};
pub use redistribute::{Decomposition, RedistributionPlan, Transfer};
