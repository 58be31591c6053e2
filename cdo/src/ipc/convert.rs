//! Conversion on the consumer's side: a demanded [`View`] copied into a
//! mamba space or tier and storage order the consumer asks for, when the
//! zero-copy view of the producer's shared memory is not what it needs
//! (data for HBM or a GPU staging tier, a column-major solver).

use std::sync::Arc;

use mamba::{Mamba, SpaceId};

use crate::attrs::Attributes;
use crate::data::Buffer;
use crate::error::Result;
use crate::ipc::client::View;
use crate::transport::{copy_converted, Want};

/// Copies `view` into a new buffer of `mamba` as a consumer whose
/// attributes are `wanted` wants it: at its `wanted_space` or
/// `wanted_tier` (DRAM of the first space when neither is set), in its
/// `wanted_order`, `wanted_strides` and `wanted_tile` (the producer's
/// layout for what it does not name), its records stored as
/// `wanted_records` says (the producer's way when unset). The producer's
/// `shape`, `order`, `strides`, `tile` and `element_type` attributes say
/// how the array lies, its `fields` and `records` how the records do.
///
/// # Errors
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch) and the like for
/// malformed built-in attributes; [`Error::Layout`](crate::Error::Layout)
/// for a reorder without a shape, or a shape and element type (bytes when
/// none is given) that do not match the size, as in process; memory
/// errors of the target space.
pub fn convert_view(mamba: &Arc<Mamba>, view: &View, wanted: &Attributes) -> Result<Buffer> {
    let attrs = Attributes::from_flat(view.attrs())?;
    let name: Arc<str> = view.name().into();
    let want = Want::for_offer(&attrs, wanted);
    copy_converted(mamba, &name, view, &want.policy(SpaceId(0)), &want)
}
