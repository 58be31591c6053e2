//! Conversion on the consumer's side: a demanded [`View`] copied into a
//! mamba space or tier and storage order the consumer asks for, when the
//! zero-copy view of the producer's shared memory is not what it needs
//! (data for HBM or a GPU staging tier, a column-major solver).

use std::sync::Arc;

use mamba::{Mamba, Policy, SpaceId};

use crate::attrs::{Attributes, Order, Place, Records};
use crate::data::Buffer;
use crate::error::Result;
use crate::ipc::client::View;
use crate::transport::{copy_converted, Want};

/// Copies `view` into a new buffer of `mamba` at `place` (DRAM of the
/// first space when `None`), in `order` (the producer's when `None`), its
/// records stored as `records` says (the producer's way when `None`). The
/// producer's `shape`, `order`, `strides`, `tile` and `element_type`
/// attributes say how to reorder, its `fields` and `records` how to
/// restore records.
///
/// # Errors
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch) and the like for malformed built-in attributes;
/// [`Error::Layout`](crate::Error::Layout) for a reorder without a shape, or a shape and element
/// type (bytes when none is given) that do not match the size, as in
/// process; memory errors of the target space.
pub fn convert_view(
    mamba: &Arc<Mamba>,
    view: &View,
    place: Option<Place>,
    order: Option<Order>,
    records: Option<Records>,
) -> Result<Buffer> {
    let attrs = Attributes::from_flat(view.attrs())?;
    let name: Arc<str> = view.name().into();
    let want = Want::for_offer(&attrs, place, order, records);
    let policy = match place {
        Some(Place::Space(s)) => Policy::require(s),
        Some(Place::Tier(t)) => Policy::require(t),
        None => Policy::require(SpaceId(0)),
    };
    copy_converted(mamba, &name, view, &policy, &want)
}
