//! The model: plane waves in a cubic cell with a separable cosine
//! potential, so that every Hamiltonian is a Kronecker sum of three
//! tridiagonal matrices with exactly known eigenvalues.
//!
//! Plane waves G = (2π/a)(n1, n2, n3) with |n_d| <= nmax form a box of
//! L = 2·nmax+1 values per direction; basis index
//! `i1 + L·(i2 + L·i3)` with `n_d = i_d - nmax`. At k = (2π/a)κ,
//!
//! H(k)[G, G] = ½|G+k|², H(k)[G, G ± (2π/a)e_d] = V_d,
//!
//! the Fourier components of V(r) = Σ_d 2 V_d cos(2π x_d / a).

use faer::c64;
use faer::{Mat, Side};

use crate::memory::{Buf, Memory, MemoryError};

/// Why the exact reference could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PhysicsError {
    /// The dense solver of a 1D matrix failed.
    #[error("reference eigen-solve failed: {0:?}")]
    Eigen(faer::linalg::evd::EvdError),
    /// Fewer plane waves than bands.
    #[error("{bands} bands need at least as many plane waves ({basis})")]
    TooManyBands {
        /// Bands asked for.
        bands: usize,
        /// Plane waves of the k-point.
        basis: usize,
    },
}

/// One k-point's Hamiltonian, applied through its structure and never
/// stored: the kinetic diagonal (from a [`Memory`]) and the three
/// potential couplings.
#[derive(Debug)]
pub struct Hamiltonian {
    nmax: usize,
    diagonal: Buf<f64>,
    v: [f64; 3],
}

/// Plane waves per direction for `nmax`.
pub fn side(nmax: usize) -> usize {
    2 * nmax + 1
}

/// ½ (2π/a)² (n + κ)², the kinetic energy of one direction.
fn kinetic_1d(a: f64, n: i64, kappa: f64) -> f64 {
    let g = 2.0 * std::f64::consts::PI / a * (n as f64 + kappa);
    0.5 * g * g
}

impl Hamiltonian {
    /// H(k) for k = (2π/a)κ with potential components `v`.
    ///
    /// # Errors
    /// The memory's errors for the kinetic diagonal.
    pub fn new(
        memory: &Memory,
        a: f64,
        kappa: [f64; 3],
        nmax: usize,
        v: [f64; 3],
    ) -> Result<Hamiltonian, MemoryError> {
        let l = side(nmax);
        let mut diagonal = memory.buf::<f64>(l * l * l)?;
        let t = |d: usize, i: usize| kinetic_1d(a, i as i64 - nmax as i64, kappa[d]);
        for i3 in 0..l {
            for i2 in 0..l {
                for i1 in 0..l {
                    diagonal[i1 + l * (i2 + l * i3)] = t(0, i1) + t(1, i2) + t(2, i3);
                }
            }
        }
        Ok(Hamiltonian { nmax, diagonal, v })
    }

    /// The plane-wave cutoff: |n_d| <= nmax.
    pub fn nmax(&self) -> usize {
        self.nmax
    }

    /// Number of plane waves.
    pub fn dim(&self) -> usize {
        self.diagonal.len()
    }

    /// The kinetic diagonal.
    pub fn diagonal(&self) -> &[f64] {
        &self.diagonal
    }

    /// Sets the potential's components (the SCF loop ramps them).
    pub fn set_potential(&mut self, v: [f64; 3]) {
        self.v = v;
    }

    /// The potential's components.
    pub fn potential(&self) -> [f64; 3] {
        self.v
    }

    /// `y = H x` for a block of vectors stored one after the other
    /// (`x.len()` a multiple of [`Hamiltonian::dim`]; `y` as long).
    pub fn apply(&self, x: &[c64], y: &mut [c64]) {
        apply_block(self.nmax, &self.diagonal, self.v, x, y);
    }

    /// An owned copy of H that can travel to a device's stream (the
    /// kinetic diagonal copied to the heap): applies the same bits as
    /// [`Hamiltonian::apply`].
    pub fn kernel(&self) -> Kernel {
        Kernel {
            nmax: self.nmax,
            diagonal: self.diagonal.to_vec(),
            v: self.v,
        }
    }
}

/// H(k) as an owned value, for an apply enqueued on a device stream
/// ([`Hamiltonian::kernel`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    nmax: usize,
    diagonal: Vec<f64>,
    v: [f64; 3],
}

impl Kernel {
    /// `y = H x`, as [`Hamiltonian::apply`].
    pub fn apply(&self, x: &[c64], y: &mut [c64]) {
        apply_block(self.nmax, &self.diagonal, self.v, x, y);
    }
}

/// `y = H x` for a block of vectors of `diagonal.len()` values each.
fn apply_block(nmax: usize, diagonal: &[f64], v: [f64; 3], x: &[c64], y: &mut [c64]) {
    let n = diagonal.len();
    debug_assert_eq!(x.len(), y.len());
    debug_assert_eq!(x.len() % n.max(1), 0);
    for (xv, yv) in x.chunks_exact(n.max(1)).zip(y.chunks_exact_mut(n.max(1))) {
        apply_one(nmax, diagonal, v, xv, yv);
    }
}

fn apply_one(nmax: usize, diagonal: &[f64], v: [f64; 3], x: &[c64], y: &mut [c64]) {
    let l = side(nmax);
    for ((yi, xi), d) in y.iter_mut().zip(x).zip(diagonal) {
        *yi = xi * *d;
    }
    let strides = [1, l, l * l];
    for (&stride, &v) in strides.iter().zip(&v) {
        if v == 0.0 {
            continue;
        }
        for (i, yi) in y.iter_mut().enumerate() {
            let pos = i / stride % l;
            let mut acc = c64::new(0.0, 0.0);
            if pos > 0 {
                acc += x[i - stride];
            }
            if pos + 1 < l {
                acc += x[i + stride];
            }
            *yi += acc * v;
        }
    }
}

/// The lowest `bands` eigenvalues of H(k), ascending, from the three 1D
/// tridiagonal matrices: every eigenvalue of the Kronecker sum is
/// `e1_i + e2_j + e3_l`.
///
/// # Errors
/// [`PhysicsError::TooManyBands`], [`PhysicsError::Eigen`].
pub fn exact_eigenvalues(
    a: f64,
    kappa: [f64; 3],
    nmax: usize,
    v: [f64; 3],
    bands: usize,
) -> Result<Vec<f64>, PhysicsError> {
    let l = side(nmax);
    if bands > l * l * l {
        return Err(PhysicsError::TooManyBands {
            bands,
            basis: l * l * l,
        });
    }
    let mut e = Vec::with_capacity(3);
    for d in 0..3 {
        let m = Mat::<f64>::from_fn(l, l, |i, j| {
            if i == j {
                kinetic_1d(a, i as i64 - nmax as i64, kappa[d])
            } else if i.abs_diff(j) == 1 {
                v[d]
            } else {
                0.0
            }
        });
        e.push(
            m.self_adjoint_eigenvalues(Side::Lower)
                .map_err(PhysicsError::Eigen)?,
        );
    }
    let mut all = Vec::with_capacity(l * l * l);
    for x in &e[0] {
        for y in &e[1] {
            for z in &e[2] {
                all.push(x + y + z);
            }
        }
    }
    all.sort_by(f64::total_cmp);
    all.truncate(bands);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_matches_a_dense_kronecker_sum() {
        let memory = Memory::heap();
        let (a, kappa, nmax, v) = (7.0, [0.1, -0.2, 0.3], 1, [0.3, -0.5, 0.7]);
        let h = Hamiltonian::new(&memory, a, kappa, nmax, v).unwrap();
        let n = h.dim();
        assert_eq!(n, 27);
        let l = side(nmax);
        let idx = |i: [usize; 3]| i[0] + l * (i[1] + l * i[2]);
        // Dense H from the definition.
        let mut dense = vec![0.0; n * n];
        for i3 in 0..l {
            for i2 in 0..l {
                for i1 in 0..l {
                    let g = [i1, i2, i3];
                    let row = idx(g);
                    dense[row * n + row] = (0..3)
                        .map(|d| kinetic_1d(a, g[d] as i64 - 1, kappa[d]))
                        .sum();
                    for d in 0..3 {
                        for step in [-1i64, 1] {
                            let p = g[d] as i64 + step;
                            if (0..l as i64).contains(&p) {
                                let mut h2 = g;
                                h2[d] = p as usize;
                                dense[row * n + idx(h2)] = v[d];
                            }
                        }
                    }
                }
            }
        }
        let x: Vec<c64> = (0..2 * n)
            .map(|i| c64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
            .collect();
        let mut y = vec![c64::new(0.0, 0.0); 2 * n];
        h.apply(&x, &mut y);
        for b in 0..2 {
            for r in 0..n {
                let want: c64 = (0..n).map(|c| x[b * n + c] * dense[r * n + c]).sum();
                assert!((y[b * n + r] - want).norm() < 1e-12, "{b} {r}");
            }
        }
    }

    #[test]
    fn free_electron_eigenvalues_are_the_sorted_kinetic_energies() {
        let e = exact_eigenvalues(5.0, [0.0; 3], 1, [0.0; 3], 7).unwrap();
        let unit = kinetic_1d(5.0, 1, 0.0);
        assert!(e[0].abs() < 1e-12);
        for x in &e[1..7] {
            assert!((x - unit).abs() < 1e-12, "{e:?}");
        }
        assert!(matches!(
            exact_eigenvalues(5.0, [0.0; 3], 1, [0.0; 3], 28),
            Err(PhysicsError::TooManyBands { .. })
        ));
    }
}
