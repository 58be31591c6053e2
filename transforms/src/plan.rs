//! Copy plans: a copy between two layouts, decomposed once into normalised
//! strided jobs, run as often as needed.

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::kernels::{self, JDim, Job};
use crate::layout::{Layout, Map};
use crate::options::ExecOptions;

/// A copy of a logical array (or of a region of it) from one layout to
/// another, validated and decomposed once.
///
/// Tiled layouts are split into pieces in which both sides are strided;
/// each piece is normalised (unit dimensions dropped, dimensions sorted and
/// merged) and given a kernel: a plain memcpy of runs contiguous on both
/// sides, a register-blocked transpose when one dimension is contiguous in
/// the source and another in the destination, or an element-by-element copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    jobs: Vec<Job>,
    src_len: usize,
    dst_len: usize,
    bytes: usize,
}

/// One piece of one dimension: offsets relative to the layouts and the
/// joint dimensions it adds.
struct Seg {
    s: isize,
    d: isize,
    dims: Vec<JDim>,
}

impl CopyPlan {
    /// Plans a copy of a whole array from layout `src` to layout `dst`.
    pub fn new(src: &Layout, dst: &Layout) -> Result<Self> {
        if src.shape() != dst.shape() {
            return Err(Error::ShapeMismatch {
                src: src.shape().to_vec(),
                dst: dst.shape().to_vec(),
            });
        }
        let zero = vec![0; src.rank()];
        Self::region(src, &zero, dst, &zero, src.shape())
    }

    /// Plans a copy of the region of extent `size` starting at `src_start`
    /// in `src` to the region starting at `dst_start` in `dst`.
    pub fn region(
        src: &Layout,
        src_start: &[usize],
        dst: &Layout,
        dst_start: &[usize],
        size: &[usize],
    ) -> Result<Self> {
        if src.elem_size() != dst.elem_size() {
            return Err(Error::ElementSizeMismatch {
                src: src.elem_size(),
                dst: dst.elem_size(),
            });
        }
        src.check_region(src_start, size)?;
        dst.check_region(dst_start, size)?;
        dst.check_destination(dst.required_len())?;
        let mut combos = vec![Seg {
            s: src.raw_offset(),
            d: dst.raw_offset(),
            dims: Vec::new(),
        }];
        for dim in 0..size.len() {
            let segs = dim_segments(
                src.maps()[dim],
                src_start[dim],
                dst.maps()[dim],
                dst_start[dim],
                size[dim],
            );
            combos = combos
                .iter()
                .flat_map(|c| {
                    segs.iter().map(move |g| Seg {
                        s: c.s + g.s,
                        d: c.d + g.d,
                        dims: c.dims.iter().chain(&g.dims).copied().collect(),
                    })
                })
                .collect();
        }
        let elem = src.elem_size();
        let jobs = combos
            .iter()
            .map(|c| Job::new(elem, c.s, c.d, &c.dims))
            .collect::<Result<Vec<_>>>()?;
        Ok(CopyPlan {
            bytes: jobs.iter().map(Job::bytes).sum(),
            jobs,
            src_len: src.required_len(),
            dst_len: dst.required_len(),
        })
    }

    /// Runs the copy with the default options.
    pub fn execute(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        self.execute_with(src, dst, &ExecOptions::default())
    }

    /// Runs the copy with the given options.
    pub fn execute_with(&self, src: &[u8], dst: &mut [u8], opts: &ExecOptions) -> Result<()> {
        if src.len() < self.src_len {
            return Err(Error::OutOfBounds {
                needed: self.src_len,
                len: src.len(),
            });
        }
        if dst.len() < self.dst_len {
            return Err(Error::OutOfBounds {
                needed: self.dst_len,
                len: dst.len(),
            });
        }
        let ex = opts.exec(self.bytes);
        self.jobs
            .iter()
            .try_for_each(|job| kernels::run(job, src, dst, ex))
    }

    /// Bytes of elements the copy moves.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of strided jobs the copy was decomposed into.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Splits indices `0..len` of one dimension (starting at `sa` in the
/// source, `da` in the destination) into pieces that are strided on both
/// sides. Tile boundaries repeat with the least common multiple `p` of the
/// tile extents, so each piece between two boundaries becomes two joint
/// dimensions: the periods and the run inside one period.
fn dim_segments(sm: Map, sa: usize, dm: Map, da: usize, len: usize) -> Vec<Seg> {
    let at = |x: usize| (sm.at(sa + x), dm.at(da + x));
    let tiles: Vec<(usize, usize)> = [(sm, sa), (dm, da)]
        .into_iter()
        .filter_map(|(m, a)| match m {
            Map::Tiled { tile, phase, .. } => Some((tile, phase + a)),
            Map::Linear { .. } => None,
        })
        .collect();
    let run = |x: usize, n: usize| {
        let (s, d) = at(x);
        Seg {
            s,
            d,
            dims: vec![JDim {
                n,
                s: sm.step(),
                d: dm.step(),
            }],
        }
    };
    if tiles.is_empty() {
        return vec![run(0, len)];
    }
    let p = tiles
        .iter()
        .try_fold(1usize, |acc, &(t, _)| (acc / gcd(acc, t)).checked_mul(t))
        .filter(|&p| p < len);
    let limit = p.unwrap_or(len);
    let mut cuts = vec![0, limit];
    for &(t, j0) in &tiles {
        cuts.extend(((t - j0 % t) % t..limit).step_by(t));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let periods = p.map_or(0, |p| len / p);
    let delta = |m: Map| match (m, p) {
        (Map::Linear { stride }, Some(p)) => p as isize * stride,
        (
            Map::Tiled {
                tile, tile_stride, ..
            },
            Some(p),
        ) => (p / tile) as isize * tile_stride,
        (_, None) => 0,
    };
    let mut segs = Vec::new();
    for w in cuts.windows(2) {
        let (c0, c1) = (w[0], w[1]);
        if periods > 0 {
            let (s, d) = at(c0);
            segs.push(Seg {
                s,
                d,
                dims: vec![
                    JDim {
                        n: periods,
                        s: delta(sm),
                        d: delta(dm),
                    },
                    JDim {
                        n: c1 - c0,
                        s: sm.step(),
                        d: dm.step(),
                    },
                ],
            });
        }
        let base = periods * limit;
        if base + c0 < len {
            segs.push(run(base + c0, c1.min(len - base) - c0));
        }
    }
    segs
}

/// Copies a whole array between two layouts (plan and run once).
///
/// ```
/// use mamba_transforms::{copy, Layout};
/// let src: Vec<u8> = (0..6).collect(); // 2 x 3, row-major
/// let mut dst = vec![0u8; 6];
/// let c = Layout::row_major(1, &[2, 3]).unwrap();
/// let f = Layout::column_major(1, &[2, 3]).unwrap();
/// copy(&src, &c, &mut dst, &f).unwrap();
/// assert_eq!(dst, [0, 3, 1, 4, 2, 5]);
/// ```
pub fn copy(src: &[u8], src_layout: &Layout, dst: &mut [u8], dst_layout: &Layout) -> Result<()> {
    CopyPlan::new(src_layout, dst_layout)?.execute(src, dst)
}

/// [`copy`] on typed slices; both layouts must have elements of
/// `size_of::<T>()` bytes.
pub fn copy_typed<T: Pod>(
    src: &[T],
    src_layout: &Layout,
    dst: &mut [T],
    dst_layout: &Layout,
) -> Result<()> {
    check_elem::<T>(src_layout)?;
    check_elem::<T>(dst_layout)?;
    copy(
        bytemuck::cast_slice(src),
        src_layout,
        bytemuck::cast_slice_mut(dst),
        dst_layout,
    )
}

/// Transposes a row-major `rows x cols` matrix into a row-major
/// `cols x rows` one.
///
/// ```
/// let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let mut t = [0.0; 6];
/// mamba_transforms::transpose(&a, 2, 3, &mut t).unwrap();
/// assert_eq!(t, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// ```
pub fn transpose<T: Pod>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) -> Result<()> {
    let e = std::mem::size_of::<T>();
    let from = Layout::row_major(e, &[rows, cols])?.permute_axes(&[1, 0])?;
    let to = Layout::row_major(e, &[cols, rows])?;
    copy_typed(src, &from, dst, &to)
}

/// Copies the region of `src` that starts at `start` and has the shape of
/// `dst_layout` into the whole of `dst` (fragment or halo extraction).
pub fn extract(
    src: &[u8],
    src_layout: &Layout,
    start: &[usize],
    dst: &mut [u8],
    dst_layout: &Layout,
) -> Result<()> {
    let zero = vec![0; dst_layout.rank()];
    CopyPlan::region(src_layout, start, dst_layout, &zero, dst_layout.shape())?.execute(src, dst)
}

/// Copies the whole of `src` into the region of `dst` that starts at
/// `start` (fragment or halo insertion).
pub fn insert(
    src: &[u8],
    src_layout: &Layout,
    dst: &mut [u8],
    dst_layout: &Layout,
    start: &[usize],
) -> Result<()> {
    let zero = vec![0; src_layout.rank()];
    CopyPlan::region(src_layout, &zero, dst_layout, start, src_layout.shape())?.execute(src, dst)
}

/// Checks that a layout's elements are `T`s.
pub(crate) fn check_elem<T>(layout: &Layout) -> Result<()> {
    let size = std::mem::size_of::<T>();
    if layout.elem_size() != size {
        return Err(Error::ElementSizeMismatch {
            src: layout.elem_size(),
            dst: size,
        });
    }
    Ok(())
}
