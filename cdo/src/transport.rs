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
//! An array goes to a consumer in the layout it wants: an order
//! (`wanted_order`), padded or permuted (`wanted_strides`) or tiled
//! (`wanted_tile`), from whatever layout its producer stored it in
//! (`order`, `strides`, `tile`), with mamba-transforms' kernels. A
//! consumer that names only an order gets the array dense in it (the
//! producer's padding left behind); one that names strides or a tile
//! without an order keeps the producer's order; one that names none of
//! them gets the bytes as offered. The padding of a padded delivery is
//! zero. Records (`fields`, stored as `records` says) go to a consumer
//! that wants them stored otherwise (`wanted_records`) split into one
//! array per field or joined back, with mamba-transforms' record kernels.
//! An array of records (`shape` counts records) is converted to the
//! wanted layout and the wanted way of storing records in one demand:
//! records stored together move whole, records stored separate move
//! field by field, each field's array in the wanted layout.

use crate::attrs::{Attributes, Layout, Order, Place, Records};
use crate::data::{Buffer, Data};
use crate::error::{Error, Result};
use mamba::{Mamba, Policy, SpaceId};
use mamba_transforms::{ExecOptions, RecordLayout};
use std::sync::Arc;

/// What a consumer asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want<'a> {
    /// Where the data should be.
    pub place: Option<Place>,
    /// Which storage order it should have.
    pub order: Option<Order>,
    /// Elements between neighbours along each dimension it should have
    /// (padded or permuted); empty: dense.
    pub strides: &'a [usize],
    /// The shape of the tiles it should be stored in; empty: not tiled.
    pub tile: &'a [usize],
    /// The producer's layout and the size of its elements (of its records
    /// when it holds records), needed to convert.
    pub layout: Option<(&'a Layout, usize)>,
    /// For records: their fields' sizes, how the producer stored them and
    /// how the consumer wants them.
    pub records: Option<RecordWant<'a>>,
}

/// How a producer stored records and how a consumer wants them.
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
    /// The records of an object offered with `offered` attributes, for a
    /// consumer that wants them stored as `wanted` says (as offered when
    /// `None`): `None` when the object holds no records.
    pub fn of(offered: &'a Attributes, wanted: Option<Records>) -> Option<Self> {
        (!offered.fields.is_empty()).then(|| RecordWant {
            fields: &offered.fields,
            from: offered.records,
            to: wanted.unwrap_or(offered.records),
        })
    }

    /// Whether the records change how they are stored.
    fn converts(&self) -> bool {
        self.from != self.to
    }
}

impl<'a> Want<'a> {
    /// What a consumer whose attributes are `wanted` (its `wanted_*`
    /// keys) asks of an object offered with `offered` attributes, in
    /// either deployment. An array whose producer gave no element type is
    /// one of bytes; one of records (`fields`) is one of records.
    pub fn for_offer(offered: &'a Attributes, wanted: &'a Attributes) -> Self {
        let elem = offered.element_size().unwrap_or(1);
        Want {
            place: wanted.wanted_place,
            order: wanted.wanted_order,
            strides: &wanted.wanted_strides,
            tile: &wanted.wanted_tile,
            layout: offered.layout.as_ref().map(|l| (l, elem)),
            records: RecordWant::of(offered, wanted.wanted_records),
        }
    }

    /// Whether the data must be converted: a layout is wanted that is not
    /// the producer's (row-major when the producer gave no layout), or
    /// records are wanted stored otherwise than the producer stored them.
    pub fn converts(&self) -> bool {
        self.reorders() || self.records.is_some_and(|r| r.converts())
    }

    /// Where a copy for the consumer goes: its wanted place, else
    /// `otherwise`.
    pub(crate) fn policy(&self, otherwise: SpaceId) -> Policy {
        match self.place {
            Some(Place::Space(s)) => Policy::require(s),
            Some(Place::Tier(t)) => Policy::require(t),
            None => Policy::require(otherwise),
        }
    }

    /// Whether the consumer names a layout (an order, strides or a tile).
    fn wants_layout(&self) -> bool {
        self.order.is_some() || !self.strides.is_empty() || !self.tile.is_empty()
    }

    /// Whether an array must change its layout (see [`Want::converts`]).
    fn reorders(&self) -> bool {
        if !self.wants_layout() {
            return false;
        }
        let same = |l: &Layout| {
            self.order.unwrap_or(l.order) == l.order
                && self.strides == l.strides.as_slice()
                && self.tile == l.tile.as_slice()
        };
        match self.layout {
            Some((layout, _)) => !same(layout),
            None => !same(&Layout::default()),
        }
    }

    /// The layout the consumer gets of an array stored as `source`: its
    /// shape, in the wanted order (the producer's when none is wanted),
    /// strides and tile.
    fn target(&self, source: &Layout) -> Layout {
        Layout {
            shape: source.shape.clone(),
            order: self.order.unwrap_or(source.order),
            strides: self.strides.to_vec(),
            tile: self.tile.to_vec(),
        }
    }

    /// How many bytes the consumer gets of `len` offered ones: those of the
    /// array in the layout it wants when converted (a padded or tiled
    /// source or target differs in size from a dense one).
    fn delivered_len(&self, len: usize) -> usize {
        match (self.reorders(), self.layout) {
            (true, Some((layout, elem))) => self
                .target(layout)
                .strided(elem)
                .map_or(len, |t| t.required_len()),
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
        let policy = want.policy(src.space());
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
    let converted = match (want.reorders(), want.layout, want.records) {
        (false, _, Some(records)) if records.converts() => restore(records, src, dst),
        (false, _, _) => {
            dst.copy_from_slice(src);
            Ok(())
        }
        (true, Some((layout, elem)), records) => {
            let target = want.target(layout);
            match records {
                Some(records) => convert_records(layout, elem, &target, records, src, dst),
                None => convert(layout, elem, &target, src, dst),
            }
        }
        (true, None, _) => Err("the producer gave no shape".into()),
    };
    converted.map_err(|reason| layout_error(name, reason))
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

/// Copies an array of records of `size` bytes stored as `layout` and
/// `records.from` say into `dst`, stored as `target` and `records.to`
/// say: records stored together are converted whole (and split after),
/// records stored separate field by field (or joined first).
fn convert_records(
    layout: &Layout,
    size: usize,
    target: &Layout,
    records: RecordWant<'_>,
    src: &[u8],
    dst: &mut [u8],
) -> std::result::Result<(), String> {
    match (records.from, records.to) {
        (Records::Together, Records::Together) => convert(layout, size, target, src, dst),
        (Records::Together, Records::Separate) => {
            let mut together = vec![0; dst.len()];
            convert(layout, size, target, src, &mut together)?;
            restore(records, &together, dst)
        }
        (Records::Separate, Records::Together) => {
            let mut together = vec![0; src.len()];
            let join = RecordWant {
                to: Records::Together,
                ..records
            };
            restore(join, src, &mut together)?;
            convert(layout, size, target, &together, dst)
        }
        (Records::Separate, Records::Separate) => {
            let (from, to) = (src.len() / size, dst.len() / size);
            let fields = field_ranges(records.fields, from).zip(field_ranges(records.fields, to));
            for (&field, (s, d)) in records.fields.iter().zip(fields) {
                convert(layout, field, target, &src[s], &mut dst[d])?;
            }
            Ok(())
        }
    }
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
/// tiled) into `dst`, stored as `target` says, with the layout-converting
/// kernels of `mamba-transforms`; the padding of a padded target is zero.
fn convert(
    layout: &Layout,
    elem: usize,
    target: &Layout,
    src: &[u8],
    dst: &mut [u8],
) -> std::result::Result<(), String> {
    let bytes = layout.elements().and_then(|n| n.checked_mul(elem));
    let to = target.strided(elem)?;
    if (layout.is_dense() && bytes != Some(src.len())) || to.required_len() != dst.len() {
        return Err("shape and element type do not match the size".into());
    }
    let from = layout.strided(elem)?;
    from.check_source(src.len()).map_err(|e| e.to_string())?;
    if !target.is_dense() {
        dst.fill(0);
    }
    mamba_transforms::copy(src, &from, dst, &to).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense layout of `shape` in `order`.
    fn dense(shape: &[usize], order: Order) -> Layout {
        Layout {
            shape: shape.to_vec(),
            order,
            ..Layout::default()
        }
    }

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
        convert(&row, 1, &dense(&[2, 3], Order::ColumnMajor), &src, &mut dst).unwrap();
        assert_eq!(dst, [0, 3, 1, 4, 2, 5]);
        let col = Layout {
            order: Order::ColumnMajor,
            ..row.clone()
        };
        let mut back = vec![0; 6];
        convert(&col, 1, &dense(&[2, 3], Order::RowMajor), &dst, &mut back).unwrap();
        assert_eq!(back, src);
        let wrong = convert(&row, 2, &dense(&[2, 3], Order::ColumnMajor), &src, &mut dst);
        assert!(wrong.is_err(), "size mismatch");
    }

    #[test]
    fn a_dense_array_is_padded_tiled_and_back_as_wanted() {
        // 3 x 4 elements of 2 bytes, row-major: element (i, j) is 4i + j.
        let src: Vec<u8> = (0..12u8).flat_map(|v| [v, 100 + v]).collect();
        let row = dense(&[3, 4], Order::RowMajor);
        let padded = Layout {
            strides: vec![6, 1],
            ..row.clone()
        };
        let mut dst = vec![7; padded.strided(2).unwrap().required_len()];
        assert_eq!(dst.len(), 2 * (2 * 6 + 4));
        convert(&row, 2, &padded, &src, &mut dst).unwrap();
        assert_eq!(&dst[2 * 6..2 * 10], &src[2 * 4..2 * 8], "row 1 starts at 6");
        assert_eq!(&dst[2 * 4..2 * 6], &[0; 4], "the padding is zero");
        let tiled = Layout {
            tile: vec![2, 2],
            ..row.clone()
        };
        // 2 x 2 tiles of 2 x 2, the storage ending at the last element,
        // (2, 3), third in the last tile.
        let mut tiles = vec![0; tiled.strided(2).unwrap().required_len()];
        assert_eq!(tiles.len(), 2 * 14);
        convert(&padded, 2, &tiled, &dst, &mut tiles).unwrap();
        // The first tile holds (0, 0), (0, 1), (1, 0), (1, 1).
        assert_eq!(&tiles[..8], &[0, 100, 1, 101, 4, 104, 5, 105]);
        let mut back = vec![0; src.len()];
        convert(&tiled, 2, &row, &tiles, &mut back).unwrap();
        assert_eq!(back, src);
        let short = convert(&row, 2, &padded, &src, &mut back);
        assert!(short.is_err(), "a padded target needs its whole extent");
    }

    #[test]
    fn records_are_split_into_padded_field_arrays_and_joined_back() {
        // 2 x 2 records of two one-byte fields, a and b, row-major.
        let fields = [1, 1];
        let aos = [1, 11, 2, 12, 3, 13, 4, 14];
        let row = dense(&[2, 2], Order::RowMajor);
        let padded = Layout {
            strides: vec![3, 1],
            ..row.clone()
        };
        let split = RecordWant {
            fields: &fields,
            from: Records::Together,
            to: Records::Separate,
        };
        // Each field's array padded as the records are: 5 elements.
        let mut soa = [9; 10];
        convert_records(&row, 2, &padded, split, &aos, &mut soa).unwrap();
        assert_eq!(soa, [1, 2, 0, 3, 4, 11, 12, 0, 13, 14]);
        let join = RecordWant {
            from: Records::Separate,
            to: Records::Together,
            ..split
        };
        let mut back = [0; 8];
        convert_records(&padded, 2, &row, join, &soa, &mut back).unwrap();
        assert_eq!(back, aos);
        let each = RecordWant {
            to: Records::Separate,
            ..join
        };
        let mut dense_soa = [0; 8];
        convert_records(&padded, 2, &row, each, &soa, &mut dense_soa).unwrap();
        assert_eq!(dense_soa, [1, 2, 3, 4, 11, 12, 13, 14]);
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
        convert(&row, 1, &dense(&shape, Order::ColumnMajor), &src, &mut col).unwrap();
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
        convert(
            &col_layout,
            1,
            &dense(&[2, 3, 4], Order::RowMajor),
            &col,
            &mut back,
        )
        .unwrap();
        assert_eq!(back, src);
    }
}
