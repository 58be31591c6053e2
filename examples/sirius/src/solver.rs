//! Block Davidson for the lowest eigenpairs of a [`Hamiltonian`],
//! matrix-free: H only ever acts on blocks of vectors through the
//! [`Offload`] seam.
//!
//! One call holds a search basis `V` and `HV` of up to `4·bands` columns,
//! the Ritz vectors `X`, `HX`, the subspace matrix, its eigenvectors and
//! the dense solver's workspace: all taken from the caller's [`Memory`]
//! at the start of the call and dropped in reverse order at its end, so a
//! pool sees a LIFO pattern and the steady state makes no heap
//! allocation. The subspace problem is solved by `faer`'s self-adjoint
//! eigen-solver on that workspace.
//!
//! Each iteration: Rayleigh-Ritz on `V`; residuals `r = HX - Xθ`;
//! corrections `r / p(diag(H) - θ)` for the unconverged bands (`p`
//! bounds the denominator below by about 1 Ha, as SIRIUS does),
//! orthonormalised against `V` (two Gram-Schmidt passes) and appended;
//! when the basis is full it restarts from the Ritz vectors.

use faer::dyn_stack::MemStack;
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::{c64, Par};
use std::mem::MaybeUninit;

use crate::device::{DeviceError, Offload};
use crate::memory::{Memory, MemoryError};
use crate::physics::Hamiltonian;

/// Why the eigensolver stopped without an answer.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// Scratch memory could not be obtained.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device seam failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The subspace eigen-solver failed.
    #[error("subspace eigen-solve failed: {0:?}")]
    Subspace(evd::EvdError),
    /// The residuals stayed above the tolerance.
    #[error("not converged after {iterations} iterations (largest residual {residual:e})")]
    NotConverged {
        /// Davidson iterations made.
        iterations: usize,
        /// The largest residual norm at the end.
        residual: f64,
    },
    /// No new direction survived orthogonalisation.
    #[error("search space collapsed (largest residual {residual:e})")]
    Stagnated {
        /// The largest residual norm then.
        residual: f64,
    },
    /// Bad sizes.
    #[error(
        "{bands} bands need at least as many plane waves ({basis}) and wave functions of that size"
    )]
    BadShape {
        /// Bands asked for.
        bands: usize,
        /// Plane waves.
        basis: usize,
    },
}

/// What one eigensolver call did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveStats {
    /// Davidson iterations (Rayleigh-Ritz steps).
    pub iterations: usize,
    /// Largest residual norm of the returned pairs.
    pub residual: f64,
}

/// Solver settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolverOptions {
    /// Residual norm ‖Hx − θx‖ every returned pair is below.
    pub tolerance: f64,
    /// Iterations before [`SolverError::NotConverged`].
    pub max_iterations: usize,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            tolerance: 1e-7,
            max_iterations: 500,
        }
    }
}

fn dot(a: &[c64], b: &[c64]) -> c64 {
    a.iter().zip(b).map(|(x, y)| x.conj() * y).sum()
}

fn norm(a: &[c64]) -> f64 {
    a.iter().map(|x| x.norm_sqr()).sum::<f64>().sqrt()
}

/// Orthonormalises column `j` of `v` (columns of `n` values) against
/// columns `0..j`; false when nothing is left of it.
fn orthonormalise(v: &mut [c64], n: usize, j: usize) -> bool {
    let (done, rest) = v.split_at_mut(j * n);
    let col = &mut rest[..n];
    let before = norm(col);
    if before == 0.0 || !before.is_finite() {
        return false;
    }
    for _ in 0..2 {
        for q in done.chunks_exact(n) {
            let c = dot(q, col);
            for (x, qi) in col.iter_mut().zip(q) {
                *x -= qi * c;
            }
        }
    }
    let after = norm(col);
    if after <= 1e-10 * before {
        return false;
    }
    let s = 1.0 / after;
    for x in col.iter_mut() {
        *x *= s;
    }
    true
}

/// `out[:, b] = Σ_i basis[:, i] · coef[i + b·m]` for `b < nb`.
fn combine(basis: &[c64], n: usize, m: usize, coef: &[c64], nb: usize, out: &mut [c64]) {
    for (b, o) in out.chunks_exact_mut(n).take(nb).enumerate() {
        o.fill(c64::new(0.0, 0.0));
        for (i, col) in basis.chunks_exact(n).take(m).enumerate() {
            let c = coef[i + b * m];
            for (oi, vi) in o.iter_mut().zip(col) {
                *oi += vi * c;
            }
        }
    }
}

/// The lowest `eigenvalues.len()` eigenpairs of `h`, starting from (and
/// returning in) `psi`: that many vectors of `h.dim()` values, one after
/// the other. Returns when the lowest `wanted` pairs have residuals below
/// `options.tolerance`; the pairs above them are guard bands (they keep
/// the search space wide enough not to miss a wanted state) and are less
/// converged. Eigenvalues ascending.
///
/// # Errors
/// [`SolverError`]: bad shapes, memory or device errors, no convergence.
pub fn davidson(
    h: &Hamiltonian,
    psi: &mut [c64],
    eigenvalues: &mut [f64],
    wanted: usize,
    options: &SolverOptions,
    memory: &Memory,
    offload: &mut Offload,
) -> Result<SolveStats, SolverError> {
    let n = h.dim();
    let nb = eigenvalues.len();
    if nb == 0 || nb > n || wanted > nb || psi.len() != n * nb {
        return Err(SolverError::BadShape {
            bands: nb,
            basis: n,
        });
    }
    let mmax = n.min(4 * nb);
    // Ritz vectors kept at a restart: twice the bands where room allows.
    let nx = (2 * nb).min(mmax);
    let req = evd::self_adjoint_evd_scratch::<c64>(
        mmax,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Default::default(),
    );
    // Scratch in allocation order; dropped in reverse (LIFO).
    let mut v = memory.buf::<c64>(n * mmax)?;
    let mut hv = memory.buf::<c64>(n * mmax)?;
    let mut x = memory.buf::<c64>(n * nx)?;
    let mut hx = memory.buf::<c64>(n * nx)?;
    let mut hs = memory.buf::<c64>(mmax * mmax)?;
    let mut evec = memory.buf::<c64>(mmax * mmax)?;
    let mut eval = memory.buf::<c64>(mmax)?;
    let mut residuals = memory.buf::<f64>(nb)?;
    let mut stack = memory.buf::<MaybeUninit<u8>>(req.unaligned_bytes_required())?;

    // Device slots last: released first.
    offload.reserve(n, mmax)?;
    v[..n * nb].copy_from_slice(psi);
    for j in 0..nb {
        if !orthonormalise(&mut v, n, j) {
            return Err(SolverError::Stagnated { residual: f64::NAN });
        }
    }
    let mut m = nb;
    offload.apply(h, &v[..m * n], &mut hv[..m * n])?;

    let diag = h.diagonal();
    let mut worst = f64::INFINITY;
    for iteration in 1..=options.max_iterations {
        // Rayleigh-Ritz on V.
        for j in 0..m {
            for i in 0..=j {
                let z = dot(&v[i * n..(i + 1) * n], &hv[j * n..(j + 1) * n]);
                let w = dot(&hv[i * n..(i + 1) * n], &v[j * n..(j + 1) * n]);
                // <v_i, H v_j> and <H v_i, v_j> agree for Hermitian H.
                let s = (z + w) * 0.5;
                hs[i + j * m] = s;
                hs[j + i * m] = s.conj();
            }
        }
        {
            let a = faer::MatRef::from_column_major_slice(&hs[..m * m], m, m);
            let s = faer::diag::DiagMut::from_slice_mut(&mut eval[..m]);
            let u = faer::MatMut::from_column_major_slice_mut(&mut evec[..m * m], m, m);
            evd::self_adjoint_evd(
                a,
                s,
                Some(u),
                Par::Seq,
                MemStack::new(&mut stack),
                Default::default(),
            )
            .map_err(SolverError::Subspace)?;
        }
        let mx = m.min(nx);
        combine(&v, n, m, &evec, mx, &mut x);
        combine(&hv, n, m, &evec, mx, &mut hx);
        worst = 0.0;
        for b in 0..nb {
            let theta = eval[b].re;
            eigenvalues[b] = theta;
            let r: f64 = x[b * n..(b + 1) * n]
                .iter()
                .zip(&hx[b * n..(b + 1) * n])
                .map(|(xi, hi)| (hi - xi * theta).norm_sqr())
                .sum::<f64>()
                .sqrt();
            residuals[b] = r;
            if b < wanted {
                worst = worst.max(r);
            }
        }
        if worst <= options.tolerance {
            psi.copy_from_slice(&x[..n * nb]);
            offload.release();
            return Ok(SolveStats {
                iterations: iteration,
                residual: worst,
            });
        }
        let open = residuals.iter().filter(|r| **r > options.tolerance).count();
        if m + open > mmax {
            // Thick restart on the lowest Ritz vectors, leaving room for
            // the corrections.
            let keep = mx.min(mmax.saturating_sub(open)).max(nb);
            v[..n * keep].copy_from_slice(&x[..n * keep]);
            hv[..n * keep].copy_from_slice(&hx[..n * keep]);
            m = keep;
        }
        let first = m;
        for b in 0..nb {
            if residuals[b] <= options.tolerance || m == mmax {
                continue;
            }
            let theta = eigenvalues[b];
            let xb = &x[b * n..(b + 1) * n];
            let hxb = &hx[b * n..(b + 1) * n];
            // SIRIUS's preconditioner: diag(H) − θ, smoothly bounded below
            // by 1 Ha, so near-degenerate plane waves are not amplified.
            let col = &mut v[m * n..(m + 1) * n];
            for (i, t) in col.iter_mut().enumerate() {
                let p = diag[i] - theta;
                let p = 0.5 * (1.0 + p + (1.0 + (p - 1.0) * (p - 1.0)).sqrt());
                *t = (hxb[i] - xb[i] * theta) / p;
            }
            if orthonormalise(&mut v, n, m) {
                m += 1;
            }
        }
        if m == first {
            offload.release();
            return Err(SolverError::Stagnated { residual: worst });
        }
        offload.apply(h, &v[first * n..m * n], &mut hv[first * n..m * n])?;
    }
    offload.release();
    Err(SolverError::NotConverged {
        iterations: options.max_iterations,
        residual: worst,
    })
}
