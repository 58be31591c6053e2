//! Redistribution of an N-dimensional field from one block decomposition to
//! another: a plan of region copies between blocks, computed once.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::options::{ExecOptions, Threads};
use crate::plan::CopyPlan;

/// A field of shape `shape` cut into a grid of blocks, each stored in its
/// own buffer with its own layout. Blocks are numbered in row-major order
/// of the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decomposition {
    elem_size: usize,
    shape: Vec<usize>,
    /// Per dimension, the block boundaries `0 = c0 < c1 < ... = extent`.
    cuts: Vec<Vec<usize>>,
    layouts: Vec<Layout>,
}

impl Decomposition {
    /// Cuts the field into `grid[d]` blocks along each dimension `d`, sizes
    /// differing by at most one, each block dense and row-major.
    pub fn blocks(elem_size: usize, shape: &[usize], grid: &[usize]) -> Result<Self> {
        if grid.len() != shape.len() {
            return Err(Error::RankMismatch {
                expected: shape.len(),
                found: grid.len(),
            });
        }
        let cuts = shape
            .iter()
            .zip(grid)
            .map(|(&n, &g)| {
                let g = g as u128;
                (0..=g)
                    .map(|k| (k * n as u128 / g.max(1)) as usize)
                    .collect()
            })
            .collect();
        Self::from_cuts(elem_size, shape, cuts)
    }

    /// A decomposition with explicit block boundaries per dimension (each
    /// list starts at 0, ends at the extent and increases strictly), each
    /// block dense and row-major.
    pub fn from_cuts(elem_size: usize, shape: &[usize], cuts: Vec<Vec<usize>>) -> Result<Self> {
        let whole = Layout::row_major(elem_size, shape)?;
        if cuts.len() != shape.len() {
            return Err(Error::RankMismatch {
                expected: shape.len(),
                found: cuts.len(),
            });
        }
        for (c, &n) in cuts.iter().zip(shape) {
            let ok = c.len() >= 2
                && c[0] == 0
                && c[c.len() - 1] == n
                && c.windows(2).all(|w| w[0] < w[1]);
            if !ok {
                return Err(Error::InvalidDecomposition(
                    "boundaries must rise strictly from 0 to the extent",
                ));
            }
        }
        let mut d = Decomposition {
            elem_size: whole.elem_size(),
            shape: shape.to_vec(),
            cuts,
            layouts: Vec::new(),
        };
        d.layouts = (0..d.block_count())
            .map(|b| Layout::row_major(elem_size, &d.shape_of(b)))
            .collect::<Result<_>>()?;
        Ok(d)
    }

    /// Replaces the block layouts (column-major blocks, blocks with halos
    /// described by [`Layout::view`] of a larger padded layout, ...). Each
    /// must have its block's shape and the field's element size.
    pub fn with_layouts(mut self, layouts: Vec<Layout>) -> Result<Self> {
        if layouts.len() != self.block_count() {
            return Err(Error::BufferCount {
                expected: self.block_count(),
                found: layouts.len(),
            });
        }
        for (b, l) in layouts.iter().enumerate() {
            if l.elem_size() != self.elem_size {
                return Err(Error::ElementSizeMismatch {
                    src: self.elem_size,
                    dst: l.elem_size(),
                });
            }
            if l.shape() != self.shape_of(b).as_slice() {
                return Err(Error::ShapeMismatch {
                    src: self.shape_of(b),
                    dst: l.shape().to_vec(),
                });
            }
        }
        self.layouts = layouts;
        Ok(self)
    }

    /// Shape of the whole field.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Blocks along each dimension.
    pub fn grid(&self) -> Vec<usize> {
        self.cuts.iter().map(|c| c.len() - 1).collect()
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.grid().iter().product()
    }

    /// Grid coordinates of block `b`.
    fn coords(&self, mut b: usize) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .grid()
            .iter()
            .rev()
            .map(|&g| {
                let i = b % g;
                b /= g;
                i
            })
            .collect();
        c.reverse();
        c
    }

    /// Global index of the first element of block `b` (`None` past the last
    /// block).
    pub fn block_start(&self, b: usize) -> Option<Vec<usize>> {
        (b < self.block_count()).then(|| self.start_of(b))
    }

    /// Shape of block `b` (`None` past the last block).
    pub fn block_shape(&self, b: usize) -> Option<Vec<usize>> {
        (b < self.block_count()).then(|| self.shape_of(b))
    }

    fn start_of(&self, b: usize) -> Vec<usize> {
        self.coords(b)
            .iter()
            .zip(&self.cuts)
            .map(|(&i, c)| c[i])
            .collect()
    }

    fn shape_of(&self, b: usize) -> Vec<usize> {
        self.coords(b)
            .iter()
            .zip(&self.cuts)
            .map(|(&i, c)| c[i + 1] - c[i])
            .collect()
    }

    /// Layout of block `b`.
    pub fn layout(&self, b: usize) -> Option<&Layout> {
        self.layouts.get(b)
    }
}

/// One copy of a redistribution: the region of extent `size` at global
/// index `start` moves from block `src_block` to block `dst_block`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Source block.
    pub src_block: usize,
    /// Destination block.
    pub dst_block: usize,
    /// Global index of the region's first element.
    pub start: Vec<usize>,
    /// Extent of the region.
    pub size: Vec<usize>,
}

/// The copies that move a field from one decomposition to another,
/// computed once and executed many times.
///
/// ```
/// use mamba_transforms::{Decomposition, ExecOptions, RedistributionPlan};
/// let rows = Decomposition::blocks(8, &[4, 4], &[4, 1]).unwrap();
/// let quads = Decomposition::blocks(8, &[4, 4], &[2, 2]).unwrap();
/// let plan = RedistributionPlan::new(&rows, &quads).unwrap();
/// assert_eq!(plan.transfers().len(), 8);
/// let src: Vec<Vec<f64>> = (0..4).map(|r| (0..4).map(|c| (4 * r + c) as f64).collect()).collect();
/// let mut dst = vec![vec![0.0f64; 4]; 4];
/// let src_bytes: Vec<&[u8]> = src.iter().map(|b| bytemuck::cast_slice(b)).collect();
/// let mut dst_bytes: Vec<&mut [u8]> = dst.iter_mut().map(|b| bytemuck::cast_slice_mut(b)).collect();
/// plan.execute(&src_bytes, &mut dst_bytes, &ExecOptions::default()).unwrap();
/// assert_eq!(dst[1], [2.0, 3.0, 6.0, 7.0]); // top-right quadrant
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedistributionPlan {
    transfers: Vec<Transfer>,
    plans: Vec<CopyPlan>,
    /// Transfer indices per destination block.
    by_dst: Vec<Vec<usize>>,
    src_blocks: usize,
    bytes: usize,
}

impl RedistributionPlan {
    /// Plans the redistribution of a field from `src` to `dst`, which must
    /// describe the same shape and element size.
    pub fn new(src: &Decomposition, dst: &Decomposition) -> Result<Self> {
        if src.shape != dst.shape {
            return Err(Error::ShapeMismatch {
                src: src.shape.clone(),
                dst: dst.shape.clone(),
            });
        }
        if src.elem_size != dst.elem_size {
            return Err(Error::ElementSizeMismatch {
                src: src.elem_size,
                dst: dst.elem_size,
            });
        }
        // Per dimension: (source piece, destination piece, start, size).
        let per_dim: Vec<Vec<(usize, usize, usize, usize)>> = src
            .cuts
            .iter()
            .zip(&dst.cuts)
            .map(|(a, b)| overlaps(a, b))
            .collect();
        let mut transfers = Vec::new();
        let mut plans = Vec::new();
        let mut by_dst = vec![Vec::new(); dst.block_count()];
        let (sg, dg) = (src.grid(), dst.grid());
        let mut idx = vec![0usize; per_dim.len()];
        loop {
            let pick: Vec<_> = idx.iter().zip(&per_dim).map(|(&i, p)| p[i]).collect();
            let flat = |grid: &[usize], f: fn(&(usize, usize, usize, usize)) -> usize| {
                pick.iter().zip(grid).fold(0, |acc, (p, &g)| acc * g + f(p))
            };
            let (sb, db) = (flat(&sg, |p| p.0), flat(&dg, |p| p.1));
            let start: Vec<usize> = pick.iter().map(|p| p.2).collect();
            let size: Vec<usize> = pick.iter().map(|p| p.3).collect();
            let local = |d: &Decomposition, b: usize| -> Vec<usize> {
                start
                    .iter()
                    .zip(d.start_of(b))
                    .map(|(g, o)| g - o)
                    .collect()
            };
            plans.push(CopyPlan::region(
                &src.layouts[sb],
                &local(src, sb),
                &dst.layouts[db],
                &local(dst, db),
                &size,
            )?);
            by_dst[db].push(transfers.len());
            transfers.push(Transfer {
                src_block: sb,
                dst_block: db,
                start,
                size,
            });
            // Odometer over the per-dimension pieces.
            let mut d = per_dim.len();
            loop {
                if d == 0 {
                    return Ok(RedistributionPlan {
                        bytes: plans.iter().map(CopyPlan::bytes).sum(),
                        transfers,
                        plans,
                        by_dst,
                        src_blocks: src.block_count(),
                    });
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < per_dim[d].len() {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// The copies, in planning order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// Moves the field: `src[b]` is the buffer of source block `b`, `dst[b]`
    /// that of destination block `b`. With [`Threads::Pool`], destination
    /// blocks are filled in parallel when there are enough of them, else
    /// each copy is split across the threads; each copy decides on
    /// streaming stores by its own size.
    pub fn execute(&self, src: &[&[u8]], dst: &mut [&mut [u8]], opts: &ExecOptions) -> Result<()> {
        for (expected, found) in [(self.src_blocks, src.len()), (self.by_dst.len(), dst.len())] {
            if expected != found {
                return Err(Error::BufferCount { expected, found });
            }
        }
        // With at least as many destination blocks as threads, blocks are
        // filled in parallel and each copy runs on one thread; otherwise the
        // blocks are filled in turn and each copy uses the threads.
        let by_block = opts.threads == Threads::Pool
            && self.bytes >= opts.min_parallel_bytes
            && dst.len() >= rayon::current_num_threads();
        let inner = if by_block {
            ExecOptions {
                threads: Threads::Serial,
                ..*opts
            }
        } else {
            *opts
        };
        let fill = |(buf, list): (&mut &mut [u8], &Vec<usize>)| {
            list.iter().try_for_each(|&t| {
                self.plans[t].execute_with(src[self.transfers[t].src_block], buf, &inner)
            })
        };
        if by_block {
            dst.par_iter_mut().zip(&self.by_dst).try_for_each(fill)
        } else {
            dst.iter_mut().zip(&self.by_dst).try_for_each(fill)
        }
    }
}

/// Intersections of two partitions of `0..n`: `(piece of a, piece of b,
/// start, size)`.
fn overlaps(a: &[usize], b: &[usize]) -> Vec<(usize, usize, usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i + 1 < a.len() && j + 1 < b.len() {
        let lo = a[i].max(b[j]);
        let hi = a[i + 1].min(b[j + 1]);
        if lo < hi {
            out.push((i, j, lo, hi - lo));
        }
        if a[i + 1] <= b[j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}
