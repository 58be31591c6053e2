//! One directional sweep: bands of rows (x) or columns (y) are gathered into
//! contiguous per-worker buffers, updated by the 1D Godunov kernel, and
//! scattered back.
//!
//! A band reads only its own rows or columns (ghost cells included, filled
//! beforehand by [`crate::boundary`]) and writes only their interior cells,
//! so bands are independent and the result does not depend on how many
//! there are or which worker runs them.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use crate::eos::{primitive, Gas, Primitive};
use crate::exec::BandExecutor;
use crate::flux::interface_flux;
use crate::memory::{Buffer, Memory, MemoryError};
use crate::riemann::{RiemannScratch, RiemannSolver};
use crate::slope::limited_slope;
use crate::state::{Direction, State, GHOSTS, ID, IP, IU, IV, NVAR};
use crate::trace::{trace_cell, FaceState, Slopes};

/// The 1D update of a sweep for one time step.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    gas: Gas,
    riemann: RiemannSolver,
    slope_factor: f64,
    dtdx: f64,
}

impl Kernel {
    /// A kernel advancing by `dtdx = dt / dx` with the given limiter factor
    /// and Riemann iteration cap.
    pub fn new(gas: Gas, slope_factor: f64, niter_riemann: u32, dtdx: f64) -> Kernel {
        Kernel {
            gas,
            riemann: RiemannSolver::new(&gas, niter_riemann),
            slope_factor,
            dtdx,
        }
    }

    /// Advances `lanes` interleaved pencils of `n` cells (two ghosts at each
    /// end) stored cell-major, lane fastest, so that a cell's neighbours along
    /// the pencil are `lanes` apart. `u` holds density, normal momentum,
    /// transverse momentum and total energy; the `n - 4` interior cells of
    /// each pencil are updated in place.
    ///
    /// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2: wider
    /// vectors, the same IEEE operations, hence the same results.
    pub fn update_pencils(
        &self,
        u: [&mut [f64]; NVAR],
        n: usize,
        lanes: usize,
        s: &mut PencilScratch,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.update_pencils_avx2(u, n, lanes, s) };
            return;
        }
        self.update_pencils_portable(u, n, lanes, s);
    }

    /// [`Kernel::update_pencils`] compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn update_pencils_avx2(
        &self,
        u: [&mut [f64]; NVAR],
        n: usize,
        lanes: usize,
        s: &mut PencilScratch,
    ) {
        self.update_pencils_portable(u, n, lanes, s);
    }

    /// The body of [`Kernel::update_pencils`], inlined into each variant.
    #[inline(always)]
    fn update_pencils_portable(
        &self,
        u: [&mut [f64]; NVAR],
        n: usize,
        lanes: usize,
        s: &mut PencilScratch,
    ) {
        debug_assert!(n > 2 * GHOSTS);
        let len = n * lanes;
        let [u_rho, u_mn, u_mt, u_e] = u.map(|a| &mut a[..len]);

        // Conservative to primitive, every cell.
        {
            let [r, un, ut, p, c] = s.prim.each_mut().map(|a| &mut a[..len]);
            for k in 0..len {
                let q = primitive(&self.gas, u_rho[k], u_mn[k], u_mt[k], u_e[k]);
                r[k] = q.rho;
                un[k] = q.un;
                ut[k] = q.ut;
                p[k] = q.p;
                c[k] = q.c;
            }
        }

        // Slopes and half-step face states of cells 1 ..= n - 2.
        {
            let m = (n - 2) * lanes;
            let shifted = |shift: usize| s.prim.each_ref().map(|a| &a[shift..shift + m]);
            let [rl, ul, vl, pl, _] = shifted(0);
            let [rc, uc, vc, pc, cc] = shifted(lanes);
            let [rr, ur, vr, pr, _] = shifted(2 * lanes);
            let [lo_r, lo_u, lo_v, lo_p] = s.low.each_mut().map(|a| &mut a[lanes..lanes + m]);
            let [hi_r, hi_u, hi_v, hi_p] = s.high.each_mut().map(|a| &mut a[lanes..lanes + m]);
            let f = self.slope_factor;
            for k in 0..m {
                let q = Primitive {
                    rho: rc[k],
                    un: uc[k],
                    ut: vc[k],
                    p: pc[k],
                    c: cc[k],
                };
                let dq = Slopes {
                    rho: limited_slope(rl[k], rc[k], rr[k], f),
                    un: limited_slope(ul[k], uc[k], ur[k], f),
                    ut: limited_slope(vl[k], vc[k], vr[k], f),
                    p: limited_slope(pl[k], pc[k], pr[k], f),
                };
                let (low, high) = trace_cell(&q, &dq, self.dtdx);
                lo_r[k] = low.rho;
                lo_u[k] = low.un;
                lo_v[k] = low.ut;
                lo_p[k] = low.p;
                hi_r[k] = high.rho;
                hi_u[k] = high.un;
                hi_v[k] = high.ut;
                hi_p[k] = high.p;
            }
        }

        // Riemann problems and fluxes on the faces between cells 1 ..= n - 2;
        // the face above cell k is stored at k: its left state is the high
        // face of cell k, its right state the low face of cell k + 1.
        {
            let m = (n - 3) * lanes;
            let first = lanes;
            let next = first + lanes;
            let left = s.high.each_ref().map(|a| &a[first..first + m]);
            let right = s.low.each_ref().map(|a| &a[next..next + m]);
            let [f_r, f_u, f_v, f_e] = s.flux.each_mut().map(|a| &mut a[first..first + m]);
            self.riemann
                .solve_faces(left, right, [f_r, f_u, f_v, f_e], &mut s.riemann);
            for k in 0..m {
                let g = FaceState {
                    rho: f_r[k],
                    un: f_u[k],
                    ut: f_v[k],
                    p: f_e[k],
                };
                [f_r[k], f_u[k], f_v[k], f_e[k]] = interface_flux(&g, self.gas.gamma);
            }
        }

        // Conservative update of the interior cells 2 ..= n - 3.
        let m = (n - 2 * GHOSTS) * lanes;
        let first = GHOSTS * lanes;
        for (u, flux) in [u_rho, u_mn, u_mt, u_e].into_iter().zip(&s.flux) {
            let below = &flux[first - lanes..first - lanes + m];
            let above = &flux[first..first + m];
            for ((u, &fb), &fa) in u[first..first + m].iter_mut().zip(below).zip(above) {
                *u += (fb - fa) * self.dtdx;
            }
        }
    }
}

/// Work arrays of [`Kernel::update_pencils`].
#[derive(Debug, Clone)]
pub struct PencilScratch {
    prim: [Buffer; 5],
    low: [Buffer; 4],
    high: [Buffer; 4],
    flux: [Buffer; 4],
    riemann: RiemannScratch,
}

impl PencilScratch {
    /// Arrays for pencil sets of up to `len` cells in all, on the heap.
    pub fn new(len: usize) -> PencilScratch {
        PencilScratch::new_in(len, &Memory::heap()).expect("heap buffers do not fail")
    }

    /// Arrays for pencil sets of up to `len` cells in all, from `memory`
    /// (the Riemann solver's small work arrays stay on the heap).
    ///
    /// # Errors
    /// When `memory` cannot provide the arrays.
    pub fn new_in(len: usize, memory: &Memory) -> Result<PencilScratch, MemoryError> {
        fn arrays<const K: usize>(len: usize, memory: &Memory) -> Result<[Buffer; K], MemoryError> {
            let buffers = (0..K)
                .map(|_| memory.buffer(len))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(buffers
                .try_into()
                .unwrap_or_else(|_| unreachable!("K buffers were made")))
        }
        Ok(PencilScratch {
            prim: arrays(len, memory)?,
            low: arrays(len, memory)?,
            high: arrays(len, memory)?,
            flux: arrays(len, memory)?,
            riemann: RiemannScratch::new(len),
        })
    }
}

/// A worker's buffers: the gathered band of columns and the kernel's work
/// arrays.
#[derive(Debug, Clone)]
pub struct Scratch {
    band: [Buffer; NVAR],
    pencil: PencilScratch,
}

impl Scratch {
    /// Buffers large enough for bands of `nxystep` rows or columns of
    /// `state`, the gathered band from `memory`.
    ///
    /// # Errors
    /// When `memory` cannot provide the band buffers.
    pub fn new_in(state: &State, nxystep: usize, memory: &Memory) -> Result<Scratch, MemoryError> {
        let cols = nxystep.min(state.nx());
        let band = cols * state.rows();
        let pencil = state.row_len().max(band);
        let [a, b, c, d] = [(); NVAR].map(|()| memory.buffer(band));
        Ok(Scratch {
            band: [a?, b?, c?, d?],
            pencil: PencilScratch::new_in(pencil, memory)?,
        })
    }
}

/// One buffer of scratch per worker of `exec`, from `memory`.
///
/// # Errors
/// When `memory` cannot provide the band buffers.
pub fn worker_scratch(
    state: &State,
    nxystep: usize,
    exec: &dyn BandExecutor,
    memory: &Memory,
) -> Result<Vec<Mutex<Scratch>>, MemoryError> {
    (0..exec.workers())
        .map(|_| Scratch::new_in(state, nxystep, memory).map(Mutex::new))
        .collect()
}

/// The state's planes, shared by concurrent bands that touch disjoint cells.
struct SharedPlanes {
    ptrs: [*mut f64; NVAR],
    len: usize,
}

// SAFETY: the pointers come from a `&mut State` that outlives every use (see
// `sweep`), and concurrent users only touch disjoint cells.
unsafe impl Sync for SharedPlanes {}

impl SharedPlanes {
    fn new(state: &mut State) -> SharedPlanes {
        let mut fields = state.fields_mut();
        let len = fields[0].len();
        SharedPlanes {
            ptrs: std::array::from_fn(|v| fields[v].as_mut_ptr()),
            len,
        }
    }

    /// Calls `f` with the cells `range` of the planes `vars`, mutably.
    ///
    /// # Safety
    /// No other thread may access these cells during the call.
    unsafe fn with_cells<R>(
        &self,
        vars: [usize; NVAR],
        range: Range<usize>,
        f: impl FnOnce([&mut [f64]; NVAR]) -> R,
    ) -> R {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "cells out of the plane"
        );
        assert!(
            (0..NVAR).all(|v| vars.contains(&v)),
            "each plane exactly once"
        );
        // SAFETY: in bounds (checked above); the planes are distinct
        // allocations, each taken once (checked above); exclusive access to
        // the cells (caller).
        let cells = vars.map(|var| unsafe {
            std::slice::from_raw_parts_mut(self.ptrs[var].add(range.start), range.len())
        });
        f(cells)
    }

    /// Copies `dst.len()` values of `var` starting at `start` into `dst`.
    ///
    /// # Safety
    /// No other thread may write these cells during the call.
    unsafe fn read(&self, var: usize, start: usize, dst: &mut [f64]) {
        assert!(start + dst.len() <= self.len, "read out of the plane");
        // SAFETY: in bounds (checked above); no concurrent writer (caller).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptrs[var].add(start), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Copies `src` into `var` starting at `start`.
    ///
    /// # Safety
    /// No other thread may read or write these cells during the call.
    unsafe fn write(&self, var: usize, start: usize, src: &[f64]) {
        assert!(start + src.len() <= self.len, "write out of the plane");
        // SAFETY: in bounds (checked above); exclusive access (caller).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptrs[var].add(start), src.len()) }
    }
}

/// The storage order of the kernel's variables for a sweep direction:
/// density, normal momentum, transverse momentum, energy.
fn kernel_vars(dir: Direction) -> [usize; NVAR] {
    match dir {
        Direction::X => [ID, IU, IV, IP],
        Direction::Y => [ID, IV, IU, IP],
    }
}

/// Runs one sweep of `kernel` in direction `dir` over the interior of
/// `state`, whose ghost cells must be filled for that direction, in bands of
/// `nxystep` rows (x) or columns (y).
///
/// # Panics
/// If `scratch` has fewer buffers than `exec` has workers, or buffers made
/// for a smaller `nxystep` or grid.
pub fn sweep(
    state: &mut State,
    dir: Direction,
    kernel: &Kernel,
    nxystep: usize,
    exec: &dyn BandExecutor,
    scratch: &[Mutex<Scratch>],
) {
    assert!(scratch.len() >= exec.workers(), "one scratch per worker");
    let (nx, ny) = (state.nx(), state.ny());
    let row_len = state.row_len();
    let rows = state.rows();
    let vars = kernel_vars(dir);
    let interior = match dir {
        Direction::X => ny,
        Direction::Y => nx,
    };
    let nbands = interior.div_ceil(nxystep);
    let planes = SharedPlanes::new(state);
    let planes = &planes;

    // Rows are contiguous: the x sweep updates them in place.
    let band_x = |s: &mut Scratch, band: usize| {
        let j0 = GHOSTS + band * nxystep;
        let j1 = GHOSTS + ((band + 1) * nxystep).min(ny);
        // SAFETY: rows j0..j1 belong to this band alone during the sweep.
        unsafe {
            planes.with_cells(vars, j0 * row_len..j1 * row_len, |[a, b, c, d]| {
                for row in 0..j1 - j0 {
                    let r = row * row_len..(row + 1) * row_len;
                    let u = [
                        &mut a[r.clone()],
                        &mut b[r.clone()],
                        &mut c[r.clone()],
                        &mut d[r],
                    ];
                    kernel.update_pencils(u, row_len, 1, &mut s.pencil);
                }
            })
        };
    };

    let band_y = |s: &mut Scratch, band: usize| {
        let i0 = GHOSTS + band * nxystep;
        let i1 = GHOSTS + ((band + 1) * nxystep).min(nx);
        let w = i1 - i0;
        let Scratch { band: buf, pencil } = s;
        for (b, &var) in buf.iter_mut().zip(&vars) {
            for j in 0..rows {
                // SAFETY: columns i0..i1 belong to this band alone.
                unsafe { planes.read(var, j * row_len + i0, &mut b[j * w..(j + 1) * w]) };
            }
        }
        let [a, b, c, d] = buf;
        let cells = rows * w;
        let u = [
            &mut a[..cells],
            &mut b[..cells],
            &mut c[..cells],
            &mut d[..cells],
        ];
        kernel.update_pencils(u, rows, w, pencil);
        for (b, &var) in buf.iter().zip(&vars) {
            for j in GHOSTS..rows - GHOSTS {
                // SAFETY: as above, the band's own columns.
                unsafe { planes.write(var, j * row_len + i0, &b[j * w..(j + 1) * w]) };
            }
        }
    };

    exec.run_bands(nbands, &|worker, band| {
        let mut s = scratch[worker]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match dir {
            Direction::X => band_x(&mut s, band),
            Direction::Y => band_y(&mut s, band),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    /// Irregular but physical conserved states: `lanes` pencils of `n` cells.
    fn pencils(n: usize, lanes: usize) -> [Vec<f64>; NVAR] {
        let len = n * lanes;
        let wave = |k: usize, f: f64| (k as f64 * f).sin();
        let rho: Vec<f64> = (0..len).map(|k| 1.0 + 0.5 * wave(k, 0.37)).collect();
        let mn: Vec<f64> = (0..len).map(|k| rho[k] * wave(k, 0.91)).collect();
        let mt: Vec<f64> = (0..len).map(|k| rho[k] * 0.3 * wave(k, 1.7)).collect();
        let e: Vec<f64> = (0..len)
            .map(|k| 2.0 + wave(k, 0.23) + 0.5 * (mn[k] * mn[k] + mt[k] * mt[k]) / rho[k])
            .collect();
        [rho, mn, mt, e]
    }

    #[test]
    fn vector_variants_give_identical_bits() {
        let (n, lanes) = (40, 3);
        let kernel = Kernel::new(Gas::new(&Params::default()), 2.0, 10, 0.1);
        let run = |avx2: bool| {
            let mut u = pencils(n, lanes);
            let mut s = PencilScratch::new(n * lanes);
            let [a, b, c, d] = &mut u;
            let slices = [&mut a[..], &mut b[..], &mut c[..], &mut d[..]];
            if avx2 {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present, checked just above.
                    unsafe { kernel.update_pencils_avx2(slices, n, lanes, &mut s) };
                    return Some(u);
                }
                return None;
            }
            kernel.update_pencils_portable(slices, n, lanes, &mut s);
            Some(u)
        };
        let portable = run(false).unwrap();
        assert_ne!(portable, pencils(n, lanes), "the kernel changed the state");
        if let Some(avx2) = run(true) {
            let bits = |u: &[Vec<f64>; NVAR]| -> Vec<u64> {
                u.iter().flatten().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(&portable), bits(&avx2));
        }
    }
}
