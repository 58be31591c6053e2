//! `compare transforms`: layout conversions of `mamba-transforms` against a
//! memcpy of the same bytes measured in the same run, and against
//! `ndarray`'s transpose-and-copy for the transposes.
//!
//! Throughput counts bytes read plus bytes written (twice the array). All
//! sides run on the current rayon pool (the memcpy peer is split into one
//! contiguous chunk per thread); buffers are 64-byte aligned, asked for
//! transparent huge pages (every buffer of the family alike, ours and the
//! peers'), and written once before timing so no page faults are measured.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use mamba_transforms::{
    CopyPlan, Decomposition, ExecOptions, Layout, RecordLayout, RedistributionPlan,
};
use ndarray::{ArrayView2, ArrayViewMut2, Zip};
use rayon::prelude::*;

use crate::{interleaved_medians, Better, Row};

const BENCH: &str = "transforms";
const ROUNDS: usize = 11;

/// One cache line; buffers are vectors of them so they are line aligned.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A line-aligned, pre-faulted byte buffer.
struct Buf(Vec<Line>);

/// Huge-page size on x86_64 Linux.
const HUGE_PAGE: usize = 2 << 20;

impl Buf {
    /// `len` bytes (rounded up to a line), every page written. The whole
    /// huge pages inside the buffer are advised as such before the first
    /// write, so where the system grants transparent huge pages on request
    /// both sides of every comparison run on them.
    fn new(len: usize, seed: u8) -> Self {
        let lines = len.div_ceil(64);
        let mut v: Vec<Line> = Vec::with_capacity(lines);
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
        let end = (v.as_ptr() as usize + lines * 64) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: `start..end` lies inside the allocation `v` owns;
            // the advice changes how its pages are backed, not its contents
            // or validity. A refusal (no transparent huge pages) leaves
            // ordinary pages, so the result is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
        v.resize(lines, Line([0; 64]));
        let mut b = Buf(v);
        for (i, x) in b.bytes_mut().iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        b
    }

    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// Copies `src` to `dst` (same length) in one contiguous chunk per thread
/// of the current pool.
fn parallel_memcpy(src: &[u8], dst: &mut [u8]) {
    let chunk = src.len().div_ceil(rayon::current_num_threads()).max(1);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

fn timed(mut f: impl FnMut()) -> impl FnMut() -> Duration {
    move || {
        let t = Instant::now();
        f();
        t.elapsed()
    }
}

/// GB/s for moving `bytes` (read once, written once) in `t`.
fn gbps(bytes: usize, t: Duration) -> f64 {
    2.0 * bytes as f64 / t.as_secs_f64() / 1e9
}

/// Times `ours` against a parallel memcpy of `bytes` bytes and returns the
/// row.
fn against_memcpy(case: &str, bytes: usize, ours: impl FnMut()) -> Row {
    let src = Buf::new(bytes, 1);
    let mut dst = Buf::new(bytes, 2);
    let (o, p) = interleaved_medians(
        ROUNDS,
        timed(ours),
        timed(|| parallel_memcpy(&src.bytes()[..bytes], &mut dst.bytes_mut()[..bytes])),
    );
    Row::compared(
        BENCH,
        case,
        "GB/s",
        Better::Higher,
        gbps(bytes, o),
        gbps(bytes, p),
        "memcpy",
    )
}

/// A square f64 transpose: rows against memcpy and against ndarray.
fn transpose_f64(n: usize, threads: usize) -> Vec<Row> {
    let case = format!("transpose f64 {n}x{n} ({threads} threads)");
    let bytes = n * n * 8;
    let c = Layout::row_major(8, &[n, n]).expect("valid layout");
    let plan = CopyPlan::new(&c.permute_axes(&[1, 0]).expect("2-d"), &c).expect("valid plan");
    let src = Buf::new(bytes, 3);
    // Both sides write the same destination, one after the other.
    let dst = RefCell::new(Buf::new(bytes, 4));
    let opts = ExecOptions::default();
    let ours = || {
        plan.execute_with(src.bytes(), dst.borrow_mut().bytes_mut(), &opts)
            .expect("runs")
    };
    let mut rows = vec![against_memcpy(&case, bytes, ours)];
    let a = ArrayView2::from_shape((n, n), bytemuck::cast_slice::<u8, f64>(src.bytes()))
        .expect("shape");
    let (o, p) = interleaved_medians(
        ROUNDS,
        timed(ours),
        timed(|| {
            let mut d = dst.borrow_mut();
            let out = bytemuck::cast_slice_mut::<u8, f64>(d.bytes_mut());
            let mut b = ArrayViewMut2::from_shape((n, n), out).expect("shape");
            Zip::from(&mut b).and(a.t()).par_for_each(|x, &y| *x = y);
        }),
    );
    rows.push(Row::compared(
        BENCH,
        &case,
        "GB/s",
        Better::Higher,
        gbps(bytes, o),
        gbps(bytes, p),
        "ndarray",
    ));
    rows
}

/// Runs every case and returns one row per (case, peer).
pub fn run() -> Vec<Row> {
    let threads = rayon::current_num_threads();
    let opts = ExecOptions::default();
    let mut rows = transpose_f64(8192, threads);
    rows.extend(transpose_f64(4096, threads));

    {
        let n = 512;
        let bytes = n * n * n * 4;
        let plan = CopyPlan::new(
            &Layout::row_major(4, &[n, n, n]).expect("valid"),
            &Layout::column_major(4, &[n, n, n]).expect("valid"),
        )
        .expect("valid plan");
        let src = Buf::new(bytes, 5);
        let mut dst = Buf::new(bytes, 6);
        let case = format!("f32 512^3 row-major -> column-major ({threads} threads)");
        rows.push(against_memcpy(&case, bytes, || {
            plan.execute_with(src.bytes(), dst.bytes_mut(), &opts)
                .expect("runs")
        }));
    }

    {
        let count = 10_000_000;
        let rec = RecordLayout::packed(&[8; 4]).expect("valid record");
        let bytes = count * rec.size();
        let src = Buf::new(bytes, 7);
        let mut fields: Vec<Buf> = (0..4).map(|f| Buf::new(count * 8, f)).collect();
        let case = format!("AoS -> SoA 4 x f64, 1e7 records ({threads} threads)");
        rows.push(against_memcpy(&case, bytes, || {
            let mut views: Vec<&mut [u8]> = fields.iter_mut().map(Buf::bytes_mut).collect();
            rec.split(src.bytes(), count, &mut views, &opts)
                .expect("runs")
        }));
    }

    {
        let (r, c, ld) = (8192, 8000, 8192);
        let bytes = r * c * 8;
        let plan = CopyPlan::new(
            &Layout::padded_rows(8, &[r, c], ld).expect("valid"),
            &Layout::row_major(8, &[r, c]).expect("valid"),
        )
        .expect("valid plan");
        let src = Buf::new(r * ld * 8, 8);
        let mut dst = Buf::new(bytes, 9);
        let case = format!("padded f64 8192x8000 (ld 8192) -> dense ({threads} threads)");
        rows.push(against_memcpy(&case, bytes, || {
            plan.execute_with(src.bytes(), dst.bytes_mut(), &opts)
                .expect("runs")
        }));
    }

    {
        let shape = [4096, 4096];
        let bytes = shape[0] * shape[1] * 8;
        let from = Decomposition::blocks(8, &shape, &[4, 1]).expect("valid");
        let to = Decomposition::blocks(8, &shape, &[2, 2]).expect("valid");
        let plan = RedistributionPlan::new(&from, &to).expect("valid plan");
        let src: Vec<Buf> = (0..4).map(|b| Buf::new(bytes / 4, b)).collect();
        let mut dst: Vec<Buf> = (0..4).map(|b| Buf::new(bytes / 4, b + 4)).collect();
        let case = format!("redistribute f64 4096x4096 4x1 -> 2x2 blocks ({threads} threads)");
        rows.push(against_memcpy(&case, bytes, || {
            let s: Vec<&[u8]> = src.iter().map(Buf::bytes).collect();
            let mut d: Vec<&mut [u8]> = dst.iter_mut().map(Buf::bytes_mut).collect();
            plan.execute(&s, &mut d, &opts).expect("runs")
        }));
    }
    rows
}
