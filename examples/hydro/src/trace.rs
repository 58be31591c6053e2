//! MUSCL-Hancock characteristic tracing (HydroC's `trace` with
//! `scheme=muscl`): half-step states at both faces of a cell.

use crate::eos::Primitive;

/// Primitive state at a cell face: density, normal velocity, transverse
/// velocity, pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceState {
    /// Density.
    pub rho: f64,
    /// Normal velocity.
    pub un: f64,
    /// Transverse velocity.
    pub ut: f64,
    /// Pressure.
    pub p: f64,
}

/// Limited slopes of the primitives of a cell, in the order of
/// [`FaceState`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slopes {
    /// Density slope.
    pub rho: f64,
    /// Normal velocity slope.
    pub un: f64,
    /// Transverse velocity slope.
    pub ut: f64,
    /// Pressure slope.
    pub p: f64,
}

/// States at the (low, high) faces of a cell at the half time step, traced
/// along the characteristics over `dtdx = dt / dx`.
///
/// Waves moving away from a face do not contribute to it; with MUSCL-Hancock
/// the cut-off speeds are `+-100 / dtdx`, which a stable run never reaches,
/// so every wave contributes, as in HydroC.
#[inline(always)]
pub fn trace_cell(q: &Primitive, dq: &Slopes, dtdx: f64) -> (FaceState, FaceState) {
    const PROJECT: f64 = 1.0;
    let zerol = -100.0 / dtdx;
    let zeror = 100.0 / dtdx;
    let (r, u, v, p, c) = (q.rho, q.un, q.ut, q.p, q.c);
    let csq = c * c;
    let alpham = 0.5 * (dq.p / (r * c) - dq.un) * r / c;
    let alphap = 0.5 * (dq.p / (r * c) + dq.un) * r / c;
    let alpha0r = dq.rho - dq.p / csq;
    let alpha0v = dq.ut;
    // The waves' projection onto a face, given their traced speeds.
    let face = |spminus: f64, spplus: f64, spzero: f64| {
        let ap = -0.5 * spplus * alphap;
        let am = -0.5 * spminus * alpham;
        let azr = -0.5 * spzero * alpha0r;
        let azv = -0.5 * spzero * alpha0v;
        FaceState {
            rho: r + (ap + am + azr),
            un: u + (ap - am) * c / r,
            ut: v + azv,
            p: p + (ap + am) * csq,
        }
    };

    // Low face (i - 1/2): the right state of that interface.
    let mut spminus = (u - c) * dtdx + 1.0;
    let mut spplus = (u + c) * dtdx + 1.0;
    let mut spzero = u * dtdx + 1.0;
    if u - c >= zeror {
        spminus = PROJECT;
    }
    if u + c >= zeror {
        spplus = PROJECT;
    }
    if u >= zeror {
        spzero = PROJECT;
    }
    let low = face(spminus, spplus, spzero);

    // High face (i + 1/2): the left state of that interface.
    let mut spminus = (u - c) * dtdx - 1.0;
    let mut spplus = (u + c) * dtdx - 1.0;
    let mut spzero = u * dtdx - 1.0;
    if u - c <= zerol {
        spminus = -PROJECT;
    }
    if u + c <= zerol {
        spplus = -PROJECT;
    }
    if u <= zerol {
        spzero = -PROJECT;
    }
    let high = face(spminus, spplus, spzero);
    (low, high)
}
