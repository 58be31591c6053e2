//! Copy kernels on raw buffers. All `unsafe` code of the crate lives in this
//! module and its children; [`run`] is their only entry point and checks
//! every byte a job touches against the buffers before it starts.

mod gather;
mod records;
mod stream;
mod transpose;

#[cfg(test)]
mod tests;

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::layout::first_overlap;

pub(crate) use records::{join_records, split_records, RecordJob};

/// One dimension of a joint traversal: `n` indices, source and destination
/// byte strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JDim {
    /// Extent.
    pub n: usize,
    /// Source byte stride.
    pub s: isize,
    /// Destination byte stride.
    pub d: isize,
}

/// The innermost operation of a job, chosen from the strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Contiguous on both sides: a run of bytes (memcpy).
    Run { bytes: usize },
    /// Source contiguous along `a`, destination contiguous along `b`, for
    /// up to `block` neighbouring indices of the batch dimension `c` at once
    /// (`c.n == 1` when the job has no outer dimension to batch).
    Transpose {
        a: JDim,
        b: JDim,
        c: JDim,
        block: usize,
    },
    /// Anything else: element by element along one dimension.
    Gather(JDim),
}

/// A strided copy between two buffers, normalised and classified once so it
/// can run many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    elem: usize,
    src_off: usize,
    dst_off: usize,
    /// Dimensions looped around the kernel, outermost first (for a batched
    /// transpose, the innermost one steps over blocks of the batch).
    outer: Vec<JDim>,
    kind: Kind,
    outer_count: usize,
    /// Bytes copied.
    bytes: usize,
    /// One past the last source byte read.
    src_end: usize,
    /// One past the last destination byte written.
    dst_end: usize,
    /// Whether destination elements are provably disjoint (needed to split
    /// the job across threads).
    disjoint: bool,
}

impl Job {
    /// Normalises the traversal of `dims` from byte offsets `src_off` and
    /// `dst_off`: drops unit dimensions, makes destination strides
    /// non-negative, orders dimensions by destination stride, merges
    /// dimensions that are contiguous on both sides, and picks the kernel.
    pub(crate) fn new(elem: usize, src_off: isize, dst_off: isize, dims: &[JDim]) -> Result<Self> {
        let (mut so, mut dof) = (src_off, dst_off);
        let mut dims: Vec<JDim> = dims.iter().copied().filter(|g| g.n > 1).collect();
        for g in &mut dims {
            if g.d < 0 {
                let last = g.n as isize - 1;
                so += last * g.s;
                dof += last * g.d;
                g.s = -g.s;
                g.d = -g.d;
            }
        }
        dims.sort_by_key(|g| {
            (
                std::cmp::Reverse(g.d),
                std::cmp::Reverse(g.s.unsigned_abs()),
            )
        });
        let mut merged: Vec<JDim> = Vec::with_capacity(dims.len());
        for g in dims.into_iter().rev() {
            match merged.last_mut() {
                Some(inner)
                    if g.s == inner.s * inner.n as isize && g.d == inner.d * inner.n as isize =>
                {
                    inner.n *= g.n;
                }
                _ => merged.push(g),
            }
        }
        merged.reverse();
        let e = elem as isize;
        let (kind, outer) = match merged.last().copied() {
            None => (Kind::Run { bytes: elem }, merged),
            Some(g) if g.s == e && g.d == e => {
                merged.pop();
                (Kind::Run { bytes: g.n * elem }, merged)
            }
            Some(b) if b.d == e => match merged.iter().rposition(|g| g.s == e) {
                Some(k) => {
                    let a = merged.remove(k);
                    merged.pop();
                    let c = merged.pop().unwrap_or(JDim { n: 1, s: 0, d: 0 });
                    let block = batch_block(c);
                    (Kind::Transpose { a, b, c, block }, merged)
                }
                None => {
                    merged.pop();
                    (Kind::Gather(b), merged)
                }
            },
            Some(g) => {
                merged.pop();
                (Kind::Gather(g), merged)
            }
        };
        let all: Vec<JDim> = match kind {
            Kind::Run { bytes } => vec![JDim {
                n: bytes,
                s: 1,
                d: 1,
            }],
            Kind::Transpose { a, b, c, .. } => vec![a, b, c],
            Kind::Gather(g) => vec![g],
        }
        .into_iter()
        .chain(outer.iter().copied())
        .collect();
        let (src_lo, src_hi) = footprint(so, all.iter().map(|g| (g.n, g.s)))?;
        let (dst_lo, dst_hi) = footprint(dof, all.iter().map(|g| (g.n, g.d)))?;
        let unit = if matches!(kind, Kind::Run { .. }) {
            1
        } else {
            elem
        };
        let end = |hi: isize| {
            (hi as usize)
                .checked_add(unit)
                .filter(|&e| e <= isize::MAX as usize)
                .ok_or(Error::Overflow)
        };
        for lo in [src_lo, dst_lo] {
            if lo < 0 {
                return Err(Error::NegativeOffset {
                    below: lo.unsigned_abs(),
                });
            }
        }
        let disjoint = first_overlap(
            unit,
            all.iter()
                .enumerate()
                .map(|(i, g)| (g.d.unsigned_abs(), g.n, i)),
        )
        .is_none();
        let bytes = all.iter().map(|g| g.n).product::<usize>() * unit;
        let mut outer = outer;
        if let Kind::Transpose { c, block, .. } = kind {
            if c.n > 1 {
                let step = |x: isize| x * block as isize;
                outer.push(JDim {
                    n: c.n.div_ceil(block),
                    s: step(c.s),
                    d: step(c.d),
                });
            }
        }
        Ok(Job {
            elem,
            src_off: so as usize,
            dst_off: dof as usize,
            outer_count: outer.iter().map(|g| g.n).product(),
            bytes,
            outer,
            kind,
            src_end: end(src_hi)?,
            dst_end: end(dst_hi)?,
            disjoint,
        })
    }

    /// Bytes copied by the job.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The dimension the kernel can split across tasks: its extent and the
    /// smallest piece worth a task.
    fn splittable(&self) -> (usize, usize) {
        match self.kind {
            Kind::Run { bytes } => (bytes, 1 << 16),
            Kind::Transpose { b, .. } => (b.n, 64),
            Kind::Gather(g) => (g.n, 1 << 12),
        }
    }

    /// Byte offsets of the kernel for outer index `o` (flat, row-major).
    fn outer_offsets(&self, mut o: usize) -> (usize, usize) {
        let (mut s, mut d) = (self.src_off as isize, self.dst_off as isize);
        for g in self.outer.iter().rev() {
            let i = (o % g.n) as isize;
            o /= g.n;
            s += i * g.s;
            d += i * g.d;
        }
        (s as usize, d as usize)
    }

    /// Runs the kernel for outer index `o` over `range` of the splittable
    /// dimension.
    ///
    /// # Safety
    /// `src` and `dst` must point to buffers of at least `src_end` and
    /// `dst_end` bytes, and no other thread may touch the destination bytes
    /// of this `(o, range)` meanwhile.
    unsafe fn task(&self, src: *const u8, dst: *mut u8, o: usize, range: Range<usize>, nt: bool) {
        let (so, dof) = self.outer_offsets(o);
        let lo = range.start;
        // SAFETY: (all arms) every address formed below is an element of the
        // job, hence inside the footprint `new` computed from the same
        // dimensions, which the caller guarantees is inside the buffers.
        unsafe {
            let (src, dst) = (src.add(so), dst.add(dof));
            match self.kind {
                Kind::Run { .. } => {
                    let (s, d, len) = (src.add(lo), dst.add(lo), range.len());
                    if nt {
                        stream::stream_copy(d, s, len);
                    } else {
                        std::ptr::copy_nonoverlapping(s, d, len);
                    }
                }
                Kind::Transpose { a, b, c, block } => {
                    // The block of the batch is the innermost outer index.
                    let first = o % c.n.div_ceil(block) * block;
                    let t = transpose::Transpose {
                        elem: self.elem,
                        na: a.n,
                        nb: range.len(),
                        sb: b.s,
                        da: a.d,
                        nc: (c.n - first).min(block),
                        sc: c.s,
                        dc: c.d,
                    };
                    let s = src.offset(lo as isize * b.s);
                    let d = dst.offset(lo as isize * b.d);
                    transpose::transpose(t, s, d, nt);
                }
                Kind::Gather(g) => {
                    let s = src.offset(lo as isize * g.s);
                    let d = dst.offset(lo as isize * g.d);
                    if nt {
                        gather::gather_nt(self.elem, s, d, g, range.len());
                    } else {
                        gather::gather(self.elem, s, d, g, range.len());
                    }
                }
            }
        }
    }
}

/// A page: neighbouring transposes closer than this on one side share the
/// pages of their rows there.
const PAGE: usize = 4096;

/// Pages of each row that a batch of neighbouring transposes covers. A
/// 4-byte 512^3 axis reversal (rows of 2 KiB in 1 MiB planes) ran at medians
/// of 0.77, 0.77 and 0.80 of a memcpy with batches of 1, 2 and 4 slices
/// over eight to eleven alternating runs.
const BATCH_PAGES: usize = 2;

/// Most transposes batched together.
const MAX_BATCH: usize = 16;

/// How many neighbouring indices of `c` to transpose together: enough to
/// cover [`BATCH_PAGES`] along the smaller of its strides, 1 when
/// neighbours share no page on either side.
fn batch_block(c: JDim) -> usize {
    let step = c.s.unsigned_abs().min(c.d.unsigned_abs());
    if step == 0 || step >= PAGE {
        return 1;
    }
    (BATCH_PAGES * PAGE).div_ceil(step).min(MAX_BATCH).min(c.n)
}

/// Lowest and highest byte offsets of a traversal starting at `off`.
fn footprint(off: isize, dims: impl Iterator<Item = (usize, isize)>) -> Result<(isize, isize)> {
    let (mut lo, mut hi) = (off, off);
    for (n, s) in dims {
        let reach = isize::try_from(n - 1)
            .ok()
            .and_then(|k| k.checked_mul(s))
            .ok_or(Error::Overflow)?;
        if reach < 0 {
            lo = lo.checked_add(reach).ok_or(Error::Overflow)?;
        } else {
            hi = hi.checked_add(reach).ok_or(Error::Overflow)?;
        }
    }
    Ok((lo, hi))
}

/// How a job runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exec {
    /// Split across the threads of the current rayon pool.
    pub parallel: bool,
    /// Non-temporal stores.
    pub nt: bool,
}

/// A source pointer that may cross threads.
#[derive(Clone, Copy)]
struct SrcPtr(*const u8);
impl SrcPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *const u8 {
        self.0
    }
}
// SAFETY: the buffer behind it is a shared borrow that outlives the parallel
// section; threads only read through it.
unsafe impl Send for SrcPtr {}
// SAFETY: as above.
unsafe impl Sync for SrcPtr {}

/// A destination pointer that may cross threads.
#[derive(Clone, Copy)]
struct DstPtr(*mut u8);
impl DstPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut u8 {
        self.0
    }
}
// SAFETY: the buffer behind it is an exclusive borrow that outlives the
// parallel section, and tasks write disjoint elements (checked by
// `Job::disjoint` before splitting).
unsafe impl Send for DstPtr {}
// SAFETY: as above.
unsafe impl Sync for DstPtr {}

/// Runs `job` from `src` into `dst`.
pub(crate) fn run(job: &Job, src: &[u8], dst: &mut [u8], ex: Exec) -> Result<()> {
    if job.src_end > src.len() {
        return Err(Error::OutOfBounds {
            needed: job.src_end,
            len: src.len(),
        });
    }
    if job.dst_end > dst.len() {
        return Err(Error::OutOfBounds {
            needed: job.dst_end,
            len: dst.len(),
        });
    }
    let (sp, dp) = (SrcPtr(src.as_ptr()), DstPtr(dst.as_mut_ptr()));
    let (inner, grain) = job.splittable();
    // The pool is only asked (and so only started) for parallel jobs.
    let threads = if ex.parallel && job.disjoint {
        rayon::current_num_threads()
    } else {
        1
    };
    if threads < 2 {
        for o in 0..job.outer_count {
            // SAFETY: buffers checked above; one thread.
            unsafe { job.task(sp.0, dp.0, o, 0..inner, ex.nt) };
        }
        if ex.nt {
            stream::fence();
        }
        return Ok(());
    }
    let wanted = threads * 4;
    let pieces = if job.outer_count >= wanted {
        1
    } else {
        wanted
            .div_ceil(job.outer_count)
            .min(inner.div_ceil(grain))
            .max(1)
    };
    let chunk = inner.div_ceil(pieces).div_ceil(grain) * grain;
    for_each_group(
        job.outer_count * pieces,
        wanted,
        ex.nt,
        || (),
        |_, t| {
            let (o, p) = (t / pieces, t % pieces);
            let range = (p * chunk).min(inner)..((p + 1) * chunk).min(inner);
            // SAFETY: buffers checked above; tasks cover disjoint `(o, range)`
            // sets and the destination is disjoint.
            unsafe { job.task(sp.get(), dp.get(), o, range, ex.nt) };
        },
    );
    Ok(())
}

/// Runs `task(state, t)` for `t` in `0..tasks` across the current rayon
/// pool in about `groups` contiguous groups, each with its own `init()`
/// state and, when `nt`, one store fence at its end (a fence waits for the
/// streaming stores to drain, so not one per task).
fn for_each_group<S>(
    tasks: usize,
    groups: usize,
    nt: bool,
    init: impl Fn() -> S + Sync,
    task: impl Fn(&mut S, usize) + Sync,
) {
    let groups = groups.clamp(1, tasks.max(1));
    (0..groups).into_par_iter().for_each(|g| {
        let mut state = init();
        for t in g * tasks / groups..(g + 1) * tasks / groups {
            task(&mut state, t);
        }
        if nt {
            stream::fence();
        }
    });
}
