//! The pure planning layer: which kernel a pair of layouts maps to, its
//! launch geometry and its packed parameters. Nothing here touches a GPU.
//!
//! A copy is first normalised like the CPU planner does it: unit
//! dimensions are dropped, the rest are ordered by destination stride and
//! neighbours that are contiguous on both sides are merged. The result is
//! classified:
//!
//! * [`CopyKernel::Pitched`]: runs contiguous on both sides (a dense copy,
//!   padded <-> dense rows);
//! * [`CopyKernel::Transpose`]: one dimension contiguous in the source and
//!   another in the destination, elements of 1, 2, 4, 8 or 16 bytes (2D
//!   transposes, 3D axis permutations, batched transposes);
//! * [`CopyKernel::Strided`]: everything else, a gather/scatter over up to
//!   [`MAX_RANK`] dimensions of any signed byte strides.
//!
//! [`CopyKernel::launch`] then picks the widest access unit (1 to 16
//! bytes) the addresses and strides allow, and the geometry: pitched copies
//! of short rows ([`SHORT_RUN`]) and strided copies of long elements
//! ([`LONG_ELEMENT`]) run one thread per unit; every kernel loops over what
//! its grid does not cover, so extents past the grid limits and offsets
//! past 4 GiB need nothing special.

use mamba_transforms::{CopyPlan, Layout};

use crate::elem::ElemType;
use crate::error::KernelError;

/// Most dimensions a strided copy may keep after normalisation.
pub const MAX_RANK: usize = 8;
/// Most batch dimensions of a transpose (its two tiled dimensions aside).
pub const MAX_BATCH: usize = MAX_RANK - 2;
/// Edge of the square tile of the transpose kernel.
pub const TILE: u32 = 32;
/// Thread rows of a transpose block (each thread moves `TILE / BLOCK_ROWS`
/// elements per phase).
pub const BLOCK_ROWS: u32 = 8;
/// Threads per block of the one-dimensional kernels.
pub const THREADS: u32 = 256;
/// Rows of fewer units than this are copied by the strided kernel, one
/// thread per unit, rather than one block row per row.
pub const SHORT_RUN: u64 = 64;
/// Elements of at least this many units are split into units by the
/// strided kernel (when a dimension is left), one thread per unit.
pub const LONG_ELEMENT: u64 = 8;
/// Largest grid extent used along y and z (the hardware limit).
pub const MAX_GRID_YZ: u64 = 65_535;
/// Largest grid extent used along x (the kernels loop over the rest).
pub const MAX_GRID_X: u64 = 65_535;

/// One dimension of a copy: its extent and its signed byte strides in the
/// source and the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dim {
    /// Extent.
    pub n: u64,
    /// Source byte stride.
    pub src: i64,
    /// Destination byte stride.
    pub dst: i64,
}

/// The kernel a copy between two strided layouts maps to, with its
/// normalised dimensions. Byte offsets of the layouts are not part of it:
/// they are added to the base addresses at launch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CopyKernel {
    /// `rows` runs of `row_bytes` bytes, contiguous on both sides.
    Pitched {
        /// Number of runs.
        rows: u64,
        /// Bytes per run.
        row_bytes: u64,
        /// Source bytes between runs.
        src_pitch: i64,
        /// Destination bytes between runs.
        dst_pitch: i64,
    },
    /// A tiled transpose of dimension `p` (contiguous in the source) and
    /// `q` (contiguous in the destination), repeated over `batch`.
    Transpose {
        /// Element size in bytes (1, 2, 4, 8 or 16).
        elem: u64,
        /// The dimension contiguous in the source.
        p: Dim,
        /// The dimension contiguous in the destination.
        q: Dim,
        /// Remaining dimensions, outermost first.
        batch: Vec<Dim>,
    },
    /// A gather/scatter of elements of `elem` bytes over `dims`, outermost
    /// first.
    Strided {
        /// Bytes per element (possibly a whole contiguous run).
        elem: u64,
        /// Dimensions, outermost first.
        dims: Vec<Dim>,
    },
}

impl CopyKernel {
    /// Plans the copy of a whole array from `src` to `dst`.
    ///
    /// # Errors
    ///
    /// Everything [`CopyPlan::new`] refuses (shapes, element sizes,
    /// overlapping destinations), tiled layouts
    /// ([`mamba_transforms::Error::NotStrided`]) and copies that keep more
    /// than [`MAX_RANK`] dimensions after normalisation.
    pub fn plan(src: &Layout, dst: &Layout) -> Result<Self, KernelError> {
        CopyPlan::new(src, dst)?;
        let ss = src.byte_strides()?;
        let ds = dst.byte_strides()?;
        let elem = src.elem_size() as u64;
        let dims: Vec<Dim> = src
            .shape()
            .iter()
            .zip(ss.iter().zip(&ds))
            .filter(|(&n, _)| n > 1)
            .map(|(&n, (&s, &d))| Dim {
                n: n as u64,
                src: s as i64,
                dst: d as i64,
            })
            .collect();
        Self::classify(elem, normalise(dims))
    }

    /// Picks the kernel for normalised dimensions.
    fn classify(elem: u64, mut dims: Vec<Dim>) -> Result<Self, KernelError> {
        let e = elem as i64;
        match dims.last() {
            None => {
                return Ok(CopyKernel::Pitched {
                    rows: 1,
                    row_bytes: elem,
                    src_pitch: 0,
                    dst_pitch: 0,
                })
            }
            Some(last) if last.src == e && last.dst == e => {
                let row_bytes = last.n * elem;
                dims.pop();
                return match dims.as_slice() {
                    [] => Ok(CopyKernel::Pitched {
                        rows: 1,
                        row_bytes,
                        src_pitch: 0,
                        dst_pitch: 0,
                    }),
                    [outer] => Ok(CopyKernel::Pitched {
                        rows: outer.n,
                        row_bytes,
                        src_pitch: outer.src,
                        dst_pitch: outer.dst,
                    }),
                    _ => strided(row_bytes, dims),
                };
            }
            Some(_) => {}
        }
        if matches!(elem, 1 | 2 | 4 | 8 | 16) {
            let q = dims.iter().rposition(|d| d.dst == e);
            let p = dims.iter().rposition(|d| d.src == e);
            if let (Some(p), Some(q)) = (p, q) {
                if p != q && dims.len() - 2 <= MAX_BATCH {
                    let (pd, qd) = (dims[p], dims[q]);
                    let batch = dims
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| i != p && i != q)
                        .map(|(_, &d)| d)
                        .collect();
                    return Ok(CopyKernel::Transpose {
                        elem,
                        p: pd,
                        q: qd,
                        batch,
                    });
                }
            }
        }
        strided(elem, dims)
    }

    /// Short name of the kernel family, for logs.
    pub fn family(&self) -> &'static str {
        match self {
            CopyKernel::Pitched { .. } => "pitched",
            CopyKernel::Transpose { .. } => "transpose",
            CopyKernel::Strided { .. } => "strided",
        }
    }

    /// The launch of this copy from the byte address `src` to `dst` (the
    /// layouts' offsets already added). The widest access unit that every
    /// address and stride allows is used; a transpose whose addresses are
    /// not aligned to its element falls back to the strided kernel.
    pub fn launch(&self, src: u64, dst: u64) -> Launch {
        match self {
            CopyKernel::Pitched {
                rows,
                row_bytes,
                src_pitch,
                dst_pitch,
            } => {
                let mut values = vec![src, dst, *row_bytes];
                if *rows > 1 {
                    values.extend([*src_pitch as u64, *dst_pitch as u64]);
                }
                let unit = unit_for(&values);
                let row_units = row_bytes / unit;
                if *rows > 1 && row_units < SHORT_RUN {
                    // Short rows would leave most of a block idle: one
                    // thread per unit over both dimensions instead.
                    let dims = vec![
                        Dim {
                            n: *rows,
                            src: *src_pitch,
                            dst: *dst_pitch,
                        },
                        Dim {
                            n: row_units,
                            src: unit as i64,
                            dst: unit as i64,
                        },
                    ];
                    return CopyKernel::Strided { elem: unit, dims }.launch(src, dst);
                }
                Launch {
                    kernel: kernel_name(Family::Pitched, unit),
                    grid: [
                        clamp(row_units.div_ceil(u64::from(THREADS)), MAX_GRID_X),
                        clamp(*rows, MAX_GRID_YZ),
                        1,
                    ],
                    block: [THREADS, 1, 1],
                    params: vec![
                        src,
                        dst,
                        *rows,
                        row_units,
                        *src_pitch as u64,
                        *dst_pitch as u64,
                    ],
                }
            }
            CopyKernel::Transpose { elem, p, q, batch } => {
                let mut values = vec![src, dst];
                for d in batch.iter().chain([p, q]) {
                    values.extend([d.src as u64, d.dst as u64]);
                }
                if unit_for(&values) % elem != 0 {
                    let mut dims = batch.clone();
                    dims.extend([*p, *q]);
                    return CopyKernel::Strided { elem: *elem, dims }.launch(src, dst);
                }
                let count: u64 = batch.iter().map(|d| d.n).product();
                let mut params = vec![
                    src,
                    dst,
                    p.n,
                    q.n,
                    p.src as u64,
                    q.src as u64,
                    p.dst as u64,
                    q.dst as u64,
                    batch.len() as u64,
                    count,
                ];
                params.extend(padded(batch.iter().map(|d| d.n), MAX_BATCH));
                params.extend(padded(batch.iter().map(|d| d.src as u64), MAX_BATCH));
                params.extend(padded(batch.iter().map(|d| d.dst as u64), MAX_BATCH));
                let tile = u64::from(TILE);
                Launch {
                    kernel: kernel_name(Family::Transpose, *elem),
                    grid: [
                        clamp(p.n.div_ceil(tile), MAX_GRID_X),
                        clamp(q.n.div_ceil(tile), MAX_GRID_YZ),
                        clamp(count, MAX_GRID_YZ),
                    ],
                    block: [TILE, BLOCK_ROWS, 1],
                    params,
                }
            }
            CopyKernel::Strided { elem, dims } => {
                let mut values = vec![src, dst, *elem];
                for d in dims {
                    values.extend([d.src as u64, d.dst as u64]);
                }
                let unit = unit_for(&values);
                if elem / unit >= LONG_ELEMENT && dims.len() < MAX_RANK {
                    // Long elements (whole runs) are split into units, one
                    // per thread, as an innermost dimension.
                    let mut dims = dims.clone();
                    dims.push(Dim {
                        n: elem / unit,
                        src: unit as i64,
                        dst: unit as i64,
                    });
                    return CopyKernel::Strided { elem: unit, dims }.launch(src, dst);
                }
                let count: u64 = dims.iter().map(|d| d.n).product();
                let mut params = vec![src, dst, count, dims.len() as u64, elem / unit];
                params.extend(padded(dims.iter().map(|d| d.n), MAX_RANK));
                params.extend(padded(dims.iter().map(|d| d.src as u64), MAX_RANK));
                params.extend(padded(dims.iter().map(|d| d.dst as u64), MAX_RANK));
                Launch {
                    kernel: kernel_name(Family::Strided, unit),
                    grid: [grid_1d(count), 1, 1],
                    block: [THREADS, 1, 1],
                    params,
                }
            }
        }
    }
}

/// One kernel launch: the entry point, its geometry and its single
/// by-value parameter, a struct of 64-bit words (signed values in two's
/// complement) in the order the CUDA source declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Entry point name in the compiled module.
    pub kernel: &'static str,
    /// Blocks along x, y and z.
    pub grid: [u32; 3],
    /// Threads along x, y and z.
    pub block: [u32; 3],
    /// The parameter struct as 64-bit words.
    pub params: Vec<u64>,
}

/// The launch of the element conversion kernel over `count` elements from
/// address `src` (of type `from`) to `dst` (of type `to`).
pub fn convert_launch(src: u64, dst: u64, count: u64, from: ElemType, to: ElemType) -> Launch {
    Launch {
        kernel: "convert",
        grid: [grid_1d(count), 1, 1],
        block: [THREADS, 1, 1],
        params: vec![src, dst, count, from.code(), to.code()],
    }
}

/// Every entry point of the module, for eager lookup after loading.
pub(crate) const KERNELS: [&str; 16] = [
    "pitched_1",
    "pitched_2",
    "pitched_4",
    "pitched_8",
    "pitched_16",
    "strided_1",
    "strided_2",
    "strided_4",
    "strided_8",
    "strided_16",
    "transpose_1",
    "transpose_2",
    "transpose_4",
    "transpose_8",
    "transpose_16",
    "convert",
];

#[derive(Clone, Copy)]
enum Family {
    Pitched,
    Strided,
    Transpose,
}

fn kernel_name(family: Family, unit: u64) -> &'static str {
    let slot = match unit {
        1 => 0,
        2 => 1,
        4 => 2,
        8 => 3,
        _ => 4,
    };
    let base = match family {
        Family::Pitched => 0,
        Family::Strided => 5,
        Family::Transpose => 10,
    };
    KERNELS[base + slot]
}

/// Drops nothing, orders dimensions by decreasing destination stride
/// magnitude (outermost first) and merges neighbours contiguous on both
/// sides.
fn normalise(mut dims: Vec<Dim>) -> Vec<Dim> {
    dims.sort_by_key(|d| std::cmp::Reverse(d.dst.unsigned_abs()));
    let mut out: Vec<Dim> = Vec::with_capacity(dims.len());
    for d in dims {
        if let Some(last) = out.last_mut() {
            let n = d.n as i64;
            if d.src.checked_mul(n) == Some(last.src) && d.dst.checked_mul(n) == Some(last.dst) {
                *last = Dim {
                    n: last.n * d.n,
                    src: d.src,
                    dst: d.dst,
                };
                continue;
            }
        }
        out.push(d);
    }
    out
}

fn strided(elem: u64, dims: Vec<Dim>) -> Result<CopyKernel, KernelError> {
    if dims.len() > MAX_RANK {
        return Err(KernelError::Unsupported(format!(
            "a copy with {} dimensions after merging (at most {MAX_RANK})",
            dims.len()
        )));
    }
    Ok(CopyKernel::Strided { elem, dims })
}

/// The largest power of two up to 16 dividing every value.
fn unit_for(values: &[u64]) -> u64 {
    let bits = values.iter().fold(16u64, |acc, &v| acc | v);
    1 << bits.trailing_zeros().min(4)
}

/// Blocks of a grid-stride loop over `count` items.
fn grid_1d(count: u64) -> u32 {
    clamp(count.div_ceil(u64::from(THREADS)), MAX_GRID_X)
}

fn clamp(blocks: u64, max: u64) -> u32 {
    blocks.clamp(1, max) as u32
}

/// The values followed by zeros up to `len` words.
fn padded(values: impl Iterator<Item = u64>, len: usize) -> impl Iterator<Item = u64> {
    values.chain(std::iter::repeat(0)).take(len)
}

#[cfg(test)]
mod tests;
