//! The data plane: how offered bytes reach a consumer.
//!
//! [`Transport`] is the seam for the multi-process pool manager: this crate
//! ships [`LocalTransport`] (threads of one process: hand over the same
//! bytes when the space matches, copy through mamba otherwise); a
//! shared-memory or RDMA transport implements the same trait.
//!
//! ## Device spaces
//!
//! [`LocalTransport`] delivers into and out of memory the CPU cannot
//! address (GPU spaces, real or the `SimDevice` test double):
//!
//! | offered | wanted | how |
//! |---|---|---|
//! | host | host | a memory copy (or the same bytes when the place matches) |
//! | host | device space or tier | host -> device on the device's copy stream (the allocation's `write_bytes`) |
//! | device | host | device -> host straight into the new buffer (`read_bytes`) |
//! | device | the same device space | the same bytes: zero-copy, [`Delivery::copied`] false |
//! | device | another device space | device -> host -> device through a host copy |
//!
//! A wanted order (`wanted_order`) with a device side is reordered **on
//! the host**: host data is reordered before its upload, device data after
//! its download (and uploaded again when the target is a device); no
//! device kernel runs. The reorder needs a host copy of the object's size.
//!
//! A producer's array that is not dense (padded or permuted rows given by
//! `strides`, tiles by `tile`) goes to a consumer that wants an order
//! dense in that order, with mamba-transforms' kernels (the padding left
//! behind); one that wants no order gets the bytes as offered. Records
//! (`fields`, stored as `records` says) go to a consumer that wants them
//! stored otherwise (`wanted_records`) split into one array per field or
//! joined back, with mamba-transforms' record kernels.

use crate::attrs::{Attributes, Layout, Order, Place, Records};
use crate::data::{Buffer, Data};
use crate::error::{Error, Result};
use mamba::{Mamba, Policy};
use mamba_transforms::{ExecOptions, RecordLayout};
use std::sync::Arc;

/// What a consumer asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want<'a> {
    /// Where the data should be.
    pub place: Option<Place>,
    /// Which storage order it should have.
    pub order: Option<Order>,
    /// The producer's layout and element size, needed to convert.
    pub layout: Option<(&'a Layout, usize)>,
    /// For records: their fields' sizes, how the producer stored them and
    /// how the consumer wants them.
    pub records: Option<RecordWant<'a>>,
}

/// What a consumer wants of an array of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordWant<'a> {
    /// Byte sizes of a record's fields (the producer's `fields`).
    pub fields: &'a [usize],
    /// How the producer stored them.
    pub from: Records,
    /// How the consumer wants them.
    pub to: Records,
}

impl<'a> RecordWant<'a> {
    /// What a consumer that wants `wanted` asks of an object offered with
    /// `offered` attributes: `None` unless both say something of records.
    pub fn of(offered: &'a Attributes, wanted: Option<Records>) -> Option<Self> {
        match (offered.fields.is_empty(), wanted) {
            (false, Some(to)) => Some(RecordWant {
                fields: &offered.fields,
                from: offered.records,
                to,
            }),
            _ => None,
        }
    }

    /// Whether the records change how they are stored.
    fn converts(&self) -> bool {
        self.from != self.to
    }
}

impl<'a> Want<'a> {
    /// What a consumer that wants `place`, `order` and `records` asks of
    /// an object offered with `offered` attributes, in either deployment.
    /// An array whose producer gave no element type is one of bytes.
    pub fn for_offer(
        offered: &'a Attributes,
        place: Option<Place>,
        order: Option<Order>,
        records: Option<Records>,
    ) -> Self {
        let elem = offered.element_type.map_or(1, |t| t.size());
        Want {
            place,
            order,
            layout: offered.layout.as_ref().map(|l| (l, elem)),
            records: RecordWant::of(offered, records),
        }
    }

    /// Whether the data must be converted: an order is wanted and the
    /// producer's layout is not dense in it (row-major when the producer
    /// gave no layout; padded, permuted or tiled data always converts), or
    /// records are wanted stored otherwise than the producer stored them.
    pub fn converts(&self) -> bool {
        self.reorders() || self.records.is_some_and(|r| r.converts())
    }

    /// Whether an array must change its layout (see [`Want::converts`]).
    fn reorders(&self) -> bool {
        match (self.order, self.layout) {
            (Some(o), Some((layout, _))) => o != layout.order || !layout.is_dense(),
            (Some(o), None) => o != Order::RowMajor,
            (None, _) => false,
        }
    }

    /// How many bytes the consumer gets of `len` offered ones: the dense
    /// array's when converted (a padded or tiled source is larger).
    fn delivered_len(&self, len: usize) -> usize {
        match (self.reorders(), self.layout) {
            (true, Some((layout, elem))) => layout
                .elements()
                .and_then(|n| n.checked_mul(elem))
                .unwrap_or(len),
            _ => len,
        }
    }
}

/// A hand-over: the consumer's data and whether bytes were copied.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The consumer's view.
    pub data: Data,
    /// False for a zero-copy hand-over.
    pub copied: bool,
}

/// Moves offered data to a consumer.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Delivers `offered` as `want` says, without copying when possible.
    ///
    /// # Errors
    /// Memory errors of the target space, [`Error::Layout`].
    fn deliver(&self, name: &Arc<str>, offered: &Data, want: &Want<'_>) -> Result<Delivery>;
}

/// In-process transport over one mamba allocator.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    mamba: Arc<Mamba>,
}

impl LocalTransport {
    /// A transport allocating copies from `mamba`.
    pub fn new(mamba: Arc<Mamba>) -> Self {
        LocalTransport { mamba }
    }
}

fn place_matches(offered: &Data, place: Option<Place>) -> bool {
    match (place, offered.place()) {
        (None, _) | (_, None) => true,
        (Some(Place::Space(s)), Some((have, _))) => s == have,
        (Some(Place::Tier(t)), Some((_, have))) => t == have,
    }
}

impl Transport for LocalTransport {
    fn deliver(&self, name: &Arc<str>, offered: &Data, want: &Want<'_>) -> Result<Delivery> {
        let Some(src) = offered.buffer() else {
            return Ok(Delivery {
                data: offered.clone(),
                copied: false,
            });
        };
        if !want.converts() && place_matches(offered, want.place) {
            return Ok(Delivery {
                data: offered.clone(),
                copied: false,
            });
        }
        let policy = match want.place {
            Some(Place::Space(s)) => Policy::require(s),
            Some(Place::Tier(t)) => Policy::require(t),
            None => Policy::require(src.space()),
        };
        let buf = if src.host_accessible() {
            copy_converted(&self.mamba, name, src.as_slice()?, &policy, want)?
        } else {
            copy_from_device(&self.mamba, name, src, &policy, want)?
        };
        Ok(Delivery {
            data: buf.into(),
            copied: true,
        })
    }
}

/// The error of a reorder asked without a usable shape.
fn layout_error(name: &Arc<str>, reason: String) -> Error {
    Error::Layout {
        name: name.clone(),
        reason,
    }
}

/// `src` as `want` asks for it, into `dst` (host memory of
/// [`Want::delivered_len`] bytes).
fn convert_into(name: &Arc<str>, src: &[u8], dst: &mut [u8], want: &Want<'_>) -> Result<()> {
    if !want.converts() {
        dst.copy_from_slice(src);
        return Ok(());
    }
    if let Some(records) = want.records.filter(RecordWant::converts) {
        if want.reorders() {
            let reason = "records are restored or reordered, not both at once".into();
            return Err(layout_error(name, reason));
        }
        return restore(records, src, dst).map_err(|reason| layout_error(name, reason));
    }
    let (Some((layout, elem)), Some(order)) = (want.layout, want.order) else {
        return Err(layout_error(name, "the producer gave no shape".into()));
    };
    convert(layout, elem, order, src, dst).map_err(|reason| layout_error(name, reason))
}

/// Copies `src` (the bytes of CDO `name`) into a new buffer of `mamba`
/// placed by `policy`, in the storage order `want` asks for: the copy both
/// [`LocalTransport`] and a cross-process consumer
/// ([`ipc::convert`](crate::ipc::convert)) make when the data is not where
/// or how the consumer wants it.
///
/// The target may be device memory: the bytes then go host -> device
/// through the device's copy stream (the allocation's `write_bytes`),
/// reordered first on the host when `want` asks for another order.
///
/// # Errors
/// Memory errors of the target space; the device's copy errors;
/// [`Error::Layout`] when a reorder is asked without a shape, or the
/// shape does not match the size.
pub fn copy_converted(
    mamba: &Arc<Mamba>,
    name: &Arc<str>,
    src: &[u8],
    policy: &Policy,
    want: &Want<'_>,
) -> Result<Buffer> {
    let mut buf = Buffer::allocate(mamba, want.delivered_len(src.len()), policy)?;
    if buf.host_accessible() {
        convert_into(name, src, buf.as_mut_slice()?, want)?;
    } else if want.converts() {
        // Converted on the host, then one copy to the device.
        let mut host = vec![0u8; buf.len()];
        convert_into(name, src, &mut host, want)?;
        buf.write_bytes(0, &host)?;
    } else {
        buf.write_bytes(0, src)?;
    }
    Ok(buf)
}

/// Copies device data `src` (of CDO `name`) into a new buffer of `mamba`
/// placed by `policy`, in the order `want` asks for: device -> host
/// straight into a host target (through a host copy when reordered, the
/// reorder running on the host); into another device space through a host
/// copy.
fn copy_from_device(
    mamba: &Arc<Mamba>,
    name: &Arc<str>,
    src: &Buffer,
    policy: &Policy,
    want: &Want<'_>,
) -> Result<Buffer> {
    let mut buf = Buffer::allocate(mamba, want.delivered_len(src.len()), policy)?;
    if buf.host_accessible() && !want.converts() {
        src.read_bytes(0, buf.as_mut_slice()?)?;
        return Ok(buf);
    }
    let mut host = vec![0u8; src.len()];
    src.read_bytes(0, &mut host)?;
    if buf.host_accessible() {
        convert_into(name, &host, buf.as_mut_slice()?, want)?;
    } else if want.converts() {
        let mut converted = vec![0u8; buf.len()];
        convert_into(name, &host, &mut converted, want)?;
        buf.write_bytes(0, &converted)?;
    } else {
        buf.write_bytes(0, &host)?;
    }
    Ok(buf)
}

/// Copies the records in `src`, stored as `records.from` says, into
/// `dst` stored as `records.to` says, with mamba-transforms' record
/// kernels.
fn restore(records: RecordWant<'_>, src: &[u8], dst: &mut [u8]) -> std::result::Result<(), String> {
    let layout = RecordLayout::packed(records.fields).map_err(|e| e.to_string())?;
    let size = layout.size();
    if src.len() % size != 0 || dst.len() != src.len() {
        return Err(format!(
            "{} bytes are no whole records of {size} bytes",
            src.len()
        ));
    }
    let count = src.len() / size;
    let opts = ExecOptions::default();
    match records.to {
        Records::Separate => {
            let mut arrays = split_by_fields(dst, records.fields, count);
            layout.split(src, count, &mut arrays, &opts)
        }
        Records::Together => {
            let arrays: Vec<&[u8]> = field_ranges(records.fields, count)
                .map(|r| &src[r])
                .collect();
            layout.join(&arrays, count, dst, &opts)
        }
    }
    .map_err(|e| e.to_string())
}

/// Where each field's array of `count` values lies in records stored
/// separate.
fn field_ranges(
    fields: &[usize],
    count: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    fields.iter().scan(0, move |at, &f| {
        let start = *at;
        *at += f * count;
        Some(start..*at)
    })
}

/// `bytes` cut into one array of `count` values per field.
fn split_by_fields<'b>(bytes: &'b mut [u8], fields: &[usize], count: usize) -> Vec<&'b mut [u8]> {
    let mut rest = bytes;
    field_ranges(fields, count)
        .map(|r| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
            rest = tail;
            head
        })
        .collect()
}

/// Copies an array stored as `layout` says (dense, padded, permuted or
/// tiled) into `dst`, dense in `order`, with the layout-converting kernels
/// of `mamba-transforms`.
fn convert(
    layout: &Layout,
    elem: usize,
    order: Order,
    src: &[u8],
    dst: &mut [u8],
) -> std::result::Result<(), String> {
    let bytes = layout.elements().and_then(|n| n.checked_mul(elem));
    let short_dense = layout.is_dense() && bytes != Some(src.len());
    if short_dense || bytes != Some(dst.len()) {
        return Err("shape and element type do not match the size".into());
    }
    let from = layout.strided(elem)?;
    from.check_source(src.len()).map_err(|e| e.to_string())?;
    let to = Layout {
        shape: layout.shape.clone(),
        order,
        ..Layout::default()
    };
    let to = to.strided(elem)?;
    mamba_transforms::copy(src, &from, dst, &to).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_and_join_and_refuse_a_partial_record() {
        let fields = [2, 1];
        let aos = [1, 2, 9, 3, 4, 8];
        let split = RecordWant {
            fields: &fields,
            from: Records::Together,
            to: Records::Separate,
        };
        let mut soa = [0; 6];
        restore(split, &aos, &mut soa).unwrap();
        assert_eq!(soa, [1, 2, 3, 4, 9, 8]);
        let join = RecordWant {
            from: Records::Separate,
            to: Records::Together,
            ..split
        };
        let mut back = [0; 6];
        restore(join, &soa, &mut back).unwrap();
        assert_eq!(back, aos);
        assert!(restore(split, &aos[..5], &mut soa[..5]).is_err());
    }

    #[test]
    fn two_by_three_transposes_both_ways_and_checks_sizes() {
        let src: Vec<u8> = (0..6).collect();
        let mut dst = vec![0; 6];
        let row = Layout {
            shape: vec![2, 3],
            ..Layout::default()
        };
        convert(&row, 1, Order::ColumnMajor, &src, &mut dst).unwrap();
        assert_eq!(dst, [0, 3, 1, 4, 2, 5]);
        let col = Layout {
            order: Order::ColumnMajor,
            ..row.clone()
        };
        let mut back = vec![0; 6];
        convert(&col, 1, Order::RowMajor, &dst, &mut back).unwrap();
        assert_eq!(back, src);
        let wrong = convert(&row, 2, Order::ColumnMajor, &src, &mut dst);
        assert!(wrong.is_err(), "size mismatch");
    }

    #[test]
    fn three_d_arrays_round_trip_and_index_correctly() {
        let shape = vec![2, 3, 4];
        let src: Vec<u8> = (0..24).collect();
        let row = Layout {
            shape: shape.clone(),
            ..Layout::default()
        };
        let mut col = vec![0; 24];
        convert(&row, 1, Order::ColumnMajor, &src, &mut col).unwrap();
        // Element (i, j, k) is at i*12 + j*4 + k row-major and at
        // i + j*2 + k*6 column-major.
        for (i, j, k) in [(1, 2, 3), (0, 1, 2), (1, 0, 0)] {
            assert_eq!(col[i + j * 2 + k * 6], src[i * 12 + j * 4 + k]);
        }
        let col_layout = Layout {
            shape,
            order: Order::ColumnMajor,
            ..Layout::default()
        };
        let mut back = vec![0; 24];
        convert(&col_layout, 1, Order::RowMajor, &col, &mut back).unwrap();
        assert_eq!(back, src);
    }
}
