//! Layout descriptors: where each element of a logical N-dimensional array
//! lives in a byte buffer.

use crate::error::{Error, Result};

/// Order in which a set of dimensions is traversed in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// The last dimension varies fastest (C order).
    RowMajor,
    /// The first dimension varies fastest (Fortran order).
    ColumnMajor,
}

/// How the index along one dimension contributes to a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Map {
    /// `i * stride`.
    Linear {
        /// Byte stride, any sign, zero for replication.
        stride: isize,
    },
    /// With `j = i + phase`: `(j / tile) * tile_stride + (j % tile) * stride`.
    Tiled {
        /// Tile extent along this dimension.
        tile: usize,
        /// Bytes between neighbouring tiles along this dimension.
        tile_stride: isize,
        /// Bytes between neighbouring elements inside a tile.
        stride: isize,
        /// Index of logical element 0 inside the tiled grid (views).
        phase: usize,
    },
}

impl Map {
    /// Byte offset of index `i` (no overflow: checked when the layout was
    /// built, for every index below the extent).
    pub(crate) fn at(self, i: usize) -> isize {
        match self {
            Map::Linear { stride } => i as isize * stride,
            Map::Tiled {
                tile,
                tile_stride,
                stride,
                phase,
            } => {
                let j = i + phase;
                (j / tile) as isize * tile_stride + (j % tile) as isize * stride
                    - ((phase / tile) as isize * tile_stride + (phase % tile) as isize * stride)
            }
        }
    }

    /// Bytes between neighbouring indices that share a tile.
    pub(crate) fn step(self) -> isize {
        match self {
            Map::Linear { stride } | Map::Tiled { stride, .. } => stride,
        }
    }

    /// Checked lowest and highest offsets over `0..n`.
    fn range(self, n: usize) -> Option<(isize, isize)> {
        let last = isize::try_from(n - 1).ok()?;
        match self {
            Map::Linear { stride } => {
                let end = last.checked_mul(stride)?;
                Some((end.min(0), end.max(0)))
            }
            Map::Tiled {
                tile,
                tile_stride,
                stride,
                phase,
            } => {
                // Tiled maps are built with positive strides and
                // tile_stride >= tile * stride, so they increase with i.
                let j = phase.checked_add(n - 1)?;
                let hi = isize::try_from(j / tile)
                    .ok()?
                    .checked_mul(tile_stride)?
                    .checked_add(isize::try_from(j % tile).ok()?.checked_mul(stride)?)?;
                let lo = isize::try_from(phase / tile)
                    .ok()?
                    .checked_mul(tile_stride)?
                    .checked_add(isize::try_from(phase % tile).ok()?.checked_mul(stride)?)?;
                Some((0, hi - lo))
            }
        }
    }
}

/// Where each element of a logical N-dimensional array lives in a buffer.
///
/// Logical element `[i0, i1, ...]` starts at byte
/// `offset + Σ_d map_d(i_d)`, where each dimension's map is either linear
/// (a byte stride of any sign, zero for replication) or tiled (blocked
/// layouts). Every constructor validates its input and precomputes the byte
/// range the layout touches, so checking a buffer later is one comparison.
///
/// ```
/// use mamba_transforms::{Layout, Order};
/// let c = Layout::row_major(8, &[3, 4]).unwrap();
/// assert_eq!(c.byte_offset(&[1, 2]), Some(8 * (4 + 2)));
/// let f = Layout::column_major(8, &[3, 4]).unwrap();
/// assert_eq!(f.byte_offset(&[1, 2]), Some(8 * (1 + 2 * 3)));
/// let t = Layout::tiled(8, &[4, 4], &[2, 2], Order::RowMajor, Order::RowMajor).unwrap();
/// assert_eq!(t.byte_offset(&[0, 2]), Some(8 * 4)); // first element of the second tile
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    elem_size: usize,
    shape: Vec<usize>,
    maps: Vec<Map>,
    /// Byte offset of logical element zero.
    offset: isize,
    /// One past the highest byte touched.
    end: usize,
    /// A dimension along which two elements share bytes, if any.
    overlap: Option<usize>,
}

impl Layout {
    /// Builds a layout from its parts, checking everything.
    fn build(elem_size: usize, shape: Vec<usize>, maps: Vec<Map>, offset: isize) -> Result<Self> {
        if elem_size == 0 {
            return Err(Error::ZeroElementSize);
        }
        if shape.is_empty() {
            return Err(Error::NoDimensions);
        }
        if let Some(dim) = shape.iter().position(|&n| n == 0) {
            return Err(Error::ZeroExtent { dim });
        }
        let mut lo = offset;
        let mut hi = offset;
        for (&n, &m) in shape.iter().zip(&maps) {
            let (a, b) = m.range(n).ok_or(Error::Overflow)?;
            lo = lo.checked_add(a).ok_or(Error::Overflow)?;
            hi = hi.checked_add(b).ok_or(Error::Overflow)?;
        }
        if lo < 0 {
            return Err(Error::NegativeOffset {
                below: lo.unsigned_abs(),
            });
        }
        let end = (hi as usize)
            .checked_add(elem_size)
            .filter(|&e| e <= isize::MAX as usize)
            .ok_or(Error::Overflow)?;
        let overlap = overlap_dim(elem_size, &shape, &maps);
        Ok(Layout {
            elem_size,
            shape,
            maps,
            offset,
            end,
            overlap,
        })
    }

    /// Dense layout with the dimensions laid out in `order`, listed from the
    /// slowest-varying to the fastest-varying (`[0, 1, ..]` is row-major).
    pub fn permuted(elem_size: usize, shape: &[usize], order: &[usize]) -> Result<Self> {
        check_permutation(shape.len(), order)?;
        let mut strides = vec![0isize; shape.len()];
        let mut stride = elem_size as isize;
        for &d in order.iter().rev() {
            strides[d] = stride;
            stride = stride
                .checked_mul(isize::try_from(shape[d]).map_err(|_| Error::Overflow)?)
                .ok_or(Error::Overflow)?;
        }
        Self::from_byte_strides(elem_size, shape, &strides, 0)
    }

    /// Dense C-order (row-major) layout.
    pub fn row_major(elem_size: usize, shape: &[usize]) -> Result<Self> {
        let order: Vec<usize> = (0..shape.len()).collect();
        Self::permuted(elem_size, shape, &order)
    }

    /// Dense Fortran-order (column-major) layout.
    pub fn column_major(elem_size: usize, shape: &[usize]) -> Result<Self> {
        let order: Vec<usize> = (0..shape.len()).rev().collect();
        Self::permuted(elem_size, shape, &order)
    }

    /// Row-major layout whose last dimension is padded to `ld` elements (the
    /// leading dimension of BLAS/LAPACK, the pitch of images).
    pub fn padded_rows(elem_size: usize, shape: &[usize], ld: usize) -> Result<Self> {
        let last = *shape.last().ok_or(Error::NoDimensions)?;
        if ld < last {
            return Err(Error::InvalidPadding { ld, len: last });
        }
        let mut padded = shape.to_vec();
        *padded.last_mut().expect("non-empty") = ld;
        let full = Self::row_major(elem_size, &padded)?;
        full.view(&vec![0; shape.len()], shape)
    }

    /// Layout with strides and offset counted in elements.
    pub fn from_strides(
        elem_size: usize,
        shape: &[usize],
        strides: &[isize],
        offset: usize,
    ) -> Result<Self> {
        let es = isize::try_from(elem_size).map_err(|_| Error::Overflow)?;
        let bytes = strides
            .iter()
            .map(|&s| s.checked_mul(es).ok_or(Error::Overflow))
            .collect::<Result<Vec<_>>>()?;
        let off = offset.checked_mul(elem_size).ok_or(Error::Overflow)?;
        Self::from_byte_strides(elem_size, shape, &bytes, off)
    }

    /// Layout with strides and offset counted in bytes. Strides may be
    /// negative (reversal; the offset must then point past the start) or zero
    /// (replication; such a layout can only be a source).
    pub fn from_byte_strides(
        elem_size: usize,
        shape: &[usize],
        strides: &[isize],
        offset: usize,
    ) -> Result<Self> {
        check_rank(shape.len(), strides.len())?;
        let offset = isize::try_from(offset).map_err(|_| Error::Overflow)?;
        let maps = strides
            .iter()
            .map(|&stride| Map::Linear { stride })
            .collect();
        Self::build(elem_size, shape.to_vec(), maps, offset)
    }

    /// Blocked layout: the array is cut into tiles of shape `tile`, the tiles
    /// are stored whole one after the other in `tile_order`, and the elements
    /// inside each tile in `elem_order`. Tiles at the upper edges are stored
    /// full size (padded) when the shape is not a multiple of the tile.
    pub fn tiled(
        elem_size: usize,
        shape: &[usize],
        tile: &[usize],
        tile_order: Order,
        elem_order: Order,
    ) -> Result<Self> {
        check_rank(shape.len(), tile.len())?;
        if let Some(dim) = tile.iter().position(|&t| t == 0) {
            return Err(Error::InvalidTile { dim });
        }
        if let Some(dim) = shape.iter().position(|&n| n == 0) {
            return Err(Error::ZeroExtent { dim });
        }
        let inner = order_strides(tile, elem_order, elem_size)?;
        let tile_bytes = tile
            .iter()
            .try_fold(elem_size, |acc, &t| acc.checked_mul(t))
            .ok_or(Error::Overflow)?;
        let grid: Vec<usize> = shape
            .iter()
            .zip(tile)
            .map(|(&n, &t)| n.div_ceil(t))
            .collect();
        let outer = order_strides(&grid, tile_order, tile_bytes)?;
        let maps = tile
            .iter()
            .zip(inner.iter().zip(&outer))
            .map(|(&tile, (&stride, &tile_stride))| Map::Tiled {
                tile,
                tile_stride,
                stride,
                phase: 0,
            })
            .collect();
        Self::build(elem_size, shape.to_vec(), maps, 0)
    }

    /// The sub-array of extent `size` starting at index `start` (a fragment,
    /// the interior of a halo-padded block). Works for every layout.
    pub fn view(&self, start: &[usize], size: &[usize]) -> Result<Self> {
        self.check_region(start, size)?;
        let mut offset = self.offset;
        let maps = self
            .maps
            .iter()
            .zip(start)
            .map(|(&m, &s)| match m {
                Map::Linear { .. } => {
                    offset += m.at(s);
                    m
                }
                Map::Tiled {
                    tile,
                    tile_stride,
                    stride,
                    phase,
                } => {
                    offset += m.at(s);
                    Map::Tiled {
                        tile,
                        tile_stride,
                        stride,
                        phase: phase + s,
                    }
                }
            })
            .collect();
        Self::build(self.elem_size, size.to_vec(), maps, offset)
    }

    /// Strided sub-array (an ESDM dataspace: offset, size and stride per
    /// dimension): index `i` of dimension `d` of the result is index
    /// `start[d] + i * step[d]` of `self`. Strided layouts only.
    pub fn strided_view(&self, start: &[usize], size: &[usize], step: &[usize]) -> Result<Self> {
        check_rank(self.rank(), step.len())?;
        if let Some(dim) = step.iter().position(|&s| s == 0) {
            return Err(Error::ZeroStep { dim });
        }
        let reach: Vec<usize> = size
            .iter()
            .zip(step)
            .map(|(&n, &s)| (n.max(1) - 1).saturating_mul(s).saturating_add(1))
            .collect();
        let base = self.view(start, &reach)?;
        let strides = base.byte_strides()?;
        let maps = strides
            .iter()
            .zip(step)
            .map(|(&stride, &s)| {
                isize::try_from(s)
                    .ok()
                    .and_then(|s| stride.checked_mul(s))
                    .map(|stride| Map::Linear { stride })
                    .ok_or(Error::Overflow)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::build(self.elem_size, size.to_vec(), maps, base.offset)
    }

    /// The same elements with dimension `dim` traversed backwards. Strided
    /// layouts only.
    pub fn reversed(&self, dim: usize) -> Result<Self> {
        let mut strides = self.byte_strides()?;
        if dim >= self.rank() {
            return Err(Error::RankMismatch {
                expected: self.rank(),
                found: dim + 1,
            });
        }
        let offset = self.offset + (self.shape[dim] as isize - 1) * strides[dim];
        strides[dim] = -strides[dim];
        let maps = strides
            .into_iter()
            .map(|stride| Map::Linear { stride })
            .collect();
        Self::build(self.elem_size, self.shape.clone(), maps, offset)
    }

    /// The logical transpose: dimension `d` of the result is dimension
    /// `perm[d]` of `self`. The bytes do not move; copying from the result
    /// to a dense layout performs the transpose.
    pub fn permute_axes(&self, perm: &[usize]) -> Result<Self> {
        check_permutation(self.rank(), perm)?;
        let shape = perm.iter().map(|&d| self.shape[d]).collect();
        let maps = perm.iter().map(|&d| self.maps[d]).collect();
        Self::build(self.elem_size, shape, maps, self.offset)
    }

    /// Element size in bytes.
    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    /// Logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (saturating at `usize::MAX`, which only a
    /// replicating source layout can reach).
    pub fn len(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |acc, &n| acc.saturating_mul(n))
    }

    /// Always false: layouts have no zero extents. Present for symmetry with
    /// [`Layout::len`].
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Byte offset of logical element zero.
    pub fn offset(&self) -> usize {
        self.offset as usize
    }

    /// Byte strides of a strided layout ([`Error::NotStrided`] for tiled
    /// ones).
    pub fn byte_strides(&self) -> Result<Vec<isize>> {
        self.maps
            .iter()
            .map(|m| match *m {
                Map::Linear { stride } => Ok(stride),
                Map::Tiled { .. } => Err(Error::NotStrided),
            })
            .collect()
    }

    /// Bytes a buffer must hold for this layout (one past its highest byte).
    pub fn required_len(&self) -> usize {
        self.end
    }

    /// Whether every element has bytes of its own, so the layout can be a
    /// destination. The test for strided layouts is the usual sufficient
    /// one (sorted by stride, each stride exceeds the span of the smaller
    /// ones), so some interleaved but injective layouts are refused.
    pub fn is_injective(&self) -> bool {
        self.overlap.is_none()
    }

    /// Byte offset of the element at `index`, or `None` if the index is out
    /// of the shape.
    pub fn byte_offset(&self, index: &[usize]) -> Option<usize> {
        if index.len() != self.rank() || index.iter().zip(&self.shape).any(|(i, n)| i >= n) {
            return None;
        }
        let off = self
            .maps
            .iter()
            .zip(index)
            .fold(self.offset, |acc, (m, &i)| acc + m.at(i));
        Some(off as usize)
    }

    /// Checks that a buffer of `len` bytes can hold this layout as a source.
    pub fn check_source(&self, len: usize) -> Result<()> {
        if self.end > len {
            return Err(Error::OutOfBounds {
                needed: self.end,
                len,
            });
        }
        Ok(())
    }

    /// Checks that a buffer of `len` bytes can hold this layout as a
    /// destination: in bounds and without overlapping elements.
    pub fn check_destination(&self, len: usize) -> Result<()> {
        if let Some(dim) = self.overlap {
            return Err(Error::Overlap { dim });
        }
        self.check_source(len)
    }

    /// Checks that `start .. start + size` is a non-empty region of the
    /// array.
    pub(crate) fn check_region(&self, start: &[usize], size: &[usize]) -> Result<()> {
        check_rank(self.rank(), start.len())?;
        check_rank(self.rank(), size.len())?;
        for (dim, ((&s, &z), &n)) in start.iter().zip(size).zip(&self.shape).enumerate() {
            if z == 0 {
                return Err(Error::ZeroExtent { dim });
            }
            if s.checked_add(z).is_none_or(|e| e > n) {
                return Err(Error::RegionOutOfRange {
                    dim,
                    start: s,
                    size: z,
                    extent: n,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn maps(&self) -> &[Map] {
        &self.maps
    }

    pub(crate) fn raw_offset(&self) -> isize {
        self.offset
    }
}

/// The first dimension that makes a layout overlap itself, if any.
fn overlap_dim(elem_size: usize, shape: &[usize], maps: &[Map]) -> Option<usize> {
    // Tiles never share bytes: the constructor places them apart.
    let linear = shape
        .iter()
        .zip(maps)
        .enumerate()
        .filter_map(|(d, (&n, m))| match *m {
            Map::Linear { stride } => Some((stride.unsigned_abs(), n, d)),
            Map::Tiled { .. } => None,
        });
    first_overlap(elem_size, linear)
}

/// The usual sufficient test that a strided map is injective: sorted by
/// stride, each stride is at least the span of the smaller ones. Takes
/// `(|stride|, extent, id)` triples and returns the id of the first
/// dimension that fails.
pub(crate) fn first_overlap(
    elem_size: usize,
    dims: impl Iterator<Item = (usize, usize, usize)>,
) -> Option<usize> {
    let mut dims: Vec<_> = dims.filter(|&(_, n, _)| n > 1).collect();
    dims.sort_unstable();
    let mut span = elem_size;
    for (stride, n, d) in dims {
        if stride < span {
            return Some(d);
        }
        span = span.saturating_add(stride.saturating_mul(n - 1));
    }
    None
}

fn check_rank(expected: usize, found: usize) -> Result<()> {
    if expected != found {
        return Err(Error::RankMismatch { expected, found });
    }
    Ok(())
}

fn check_permutation(rank: usize, perm: &[usize]) -> Result<()> {
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || !perm
            .iter()
            .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true))
    {
        return Err(Error::InvalidPermutation(perm.to_vec()));
    }
    Ok(())
}

/// Dense strides (in units of `unit` bytes) of `shape` traversed in `order`.
fn order_strides(shape: &[usize], order: Order, unit: usize) -> Result<Vec<isize>> {
    let mut strides = vec![0isize; shape.len()];
    let mut stride = isize::try_from(unit).map_err(|_| Error::Overflow)?;
    let dims: Vec<usize> = match order {
        Order::RowMajor => (0..shape.len()).rev().collect(),
        Order::ColumnMajor => (0..shape.len()).collect(),
    };
    for d in dims {
        strides[d] = stride;
        stride = isize::try_from(shape[d])
            .ok()
            .and_then(|n| stride.checked_mul(n))
            .ok_or(Error::Overflow)?;
    }
    Ok(strides)
}
