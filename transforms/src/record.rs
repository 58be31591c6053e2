//! Record layouts: arrays of structures <-> structures of arrays.

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::kernels::{join_records, split_records, RecordJob};
use crate::options::ExecOptions;

/// One field of a record: where it starts and how many bytes it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// Byte offset inside the record (`core::mem::offset_of!`).
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// The layout of one record (a `bytemuck::Pod` struct, or any fixed-size
/// byte record): its size and its fields. Fields must not overlap; bytes no
/// field covers (padding) are not copied out, and are written as zero when
/// records are joined.
///
/// ```
/// use mamba_transforms::{Field, RecordLayout};
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct P { x: f64, id: u32, w: f32 }
/// let rec = RecordLayout::new(
///     std::mem::size_of::<P>(),
///     &[
///         Field { offset: std::mem::offset_of!(P, x), size: 8 },
///         Field { offset: std::mem::offset_of!(P, id), size: 4 },
///         Field { offset: std::mem::offset_of!(P, w), size: 4 },
///     ],
/// )
/// .unwrap();
/// let aos = [P { x: 1.0, id: 7, w: 0.5 }, P { x: 2.0, id: 8, w: 1.5 }];
/// let (mut x, mut id, mut w) = ([0.0f64; 2], [0u32; 2], [0.0f32; 2]);
/// rec.split_records(
///     &aos,
///     &mut [
///         bytemuck::cast_slice_mut(&mut x),
///         bytemuck::cast_slice_mut(&mut id),
///         bytemuck::cast_slice_mut(&mut w),
///     ],
/// )
/// .unwrap();
/// assert_eq!((x, id, w), ([1.0, 2.0], [7, 8], [0.5, 1.5]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordLayout {
    size: usize,
    fields: Vec<Field>,
}

impl RecordLayout {
    /// A record of `size` bytes with the given fields.
    pub fn new(size: usize, fields: &[Field]) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidRecord("record size is zero"));
        }
        if fields.is_empty() {
            return Err(Error::InvalidRecord("no fields"));
        }
        let mut sorted = fields.to_vec();
        sorted.sort_unstable_by_key(|f| f.offset);
        let mut end = 0;
        for f in &sorted {
            if f.size == 0 {
                return Err(Error::InvalidRecord("field of size zero"));
            }
            if f.offset < end {
                return Err(Error::InvalidRecord("fields overlap"));
            }
            end = f
                .offset
                .checked_add(f.size)
                .filter(|&e| e <= size)
                .ok_or(Error::InvalidRecord("field outside the record"))?;
        }
        Ok(RecordLayout {
            size,
            fields: fields.to_vec(),
        })
    }

    /// A record whose fields of the given sizes follow each other without
    /// padding.
    pub fn packed(sizes: &[usize]) -> Result<Self> {
        let mut offset = 0usize;
        let mut fields = Vec::with_capacity(sizes.len());
        for &size in sizes {
            fields.push(Field { offset, size });
            offset = offset.checked_add(size).ok_or(Error::Overflow)?;
        }
        Self::new(offset, &fields)
    }

    /// Bytes per record.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The fields, in the order their arrays are passed.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    fn job(&self, count: usize) -> RecordJob {
        RecordJob {
            record: self.size,
            fields: self.fields.iter().map(|f| (f.offset, f.size)).collect(),
            n: count,
        }
    }

    /// Splits `count` records stored back to back in `aos` into one array
    /// per field (`fields[f]` holds `count` values of field `f`).
    pub fn split(
        &self,
        aos: &[u8],
        count: usize,
        fields: &mut [&mut [u8]],
        opts: &ExecOptions,
    ) -> Result<()> {
        let ex = opts.exec(count.saturating_mul(self.size));
        split_records(&self.job(count), aos, fields, ex)
    }

    /// Joins one array per field into `count` records in `aos`.
    pub fn join(
        &self,
        fields: &[&[u8]],
        count: usize,
        aos: &mut [u8],
        opts: &ExecOptions,
    ) -> Result<()> {
        let ex = opts.exec(count.saturating_mul(self.size));
        join_records(&self.job(count), fields, aos, ex)
    }

    /// [`RecordLayout::split`] of typed records with the default options.
    pub fn split_records<R: Pod>(&self, records: &[R], fields: &mut [&mut [u8]]) -> Result<()> {
        self.check_record::<R>()?;
        let opts = ExecOptions::default();
        self.split(bytemuck::cast_slice(records), records.len(), fields, &opts)
    }

    /// [`RecordLayout::join`] into typed records with the default options.
    pub fn join_records<R: Pod>(&self, fields: &[&[u8]], records: &mut [R]) -> Result<()> {
        self.check_record::<R>()?;
        let count = records.len();
        let opts = ExecOptions::default();
        self.join(fields, count, bytemuck::cast_slice_mut(records), &opts)
    }

    fn check_record<R>(&self) -> Result<()> {
        let size = std::mem::size_of::<R>();
        if size != self.size {
            return Err(Error::ElementSizeMismatch {
                src: size,
                dst: self.size,
            });
        }
        Ok(())
    }
}
