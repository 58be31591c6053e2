//! The CFL time step (HydroC's `compute_deltat`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::eos::{primitive, Gas};
use crate::exec::BandExecutor;
use crate::state::{State, ID, IP, IU, IV};

/// `courant * dx / max(smallc, max over interior cells of |u| + c, |v| + c)`,
/// computed over bands of `nxystep` rows in parallel.
///
/// The maximum does not depend on the order of the bands, so the result is
/// the same for any number of workers. A NaN anywhere gives a NaN step.
pub fn courant_dt(
    state: &State,
    gas: &Gas,
    courant: f64,
    dx: f64,
    nxystep: usize,
    exec: &dyn BandExecutor,
) -> f64 {
    let (nx, ny) = (state.nx(), state.ny());
    // Speeds are non-negative (or NaN), and the bit patterns of non-negative
    // doubles order like their values, so an integer maximum works.
    let fastest = AtomicU64::new(gas.smallc.to_bits());
    exec.run_bands(ny.div_ceil(nxystep), &|_, band| {
        let mut local = 0.0f64;
        for j in band * nxystep..((band + 1) * nxystep).min(ny) {
            let start = state.index(0, j);
            let row = |var: usize| &state.field(var)[start..start + nx];
            let cells = row(ID).iter().zip(row(IU)).zip(row(IV)).zip(row(IP));
            for (((&rho, &mu), &mv), &e) in cells {
                let q = primitive(gas, rho, mu, mv, e);
                let speed = (q.un.abs() + q.c).max(q.ut.abs() + q.c);
                // A NaN speed poisons the maximum, so a broken state shows.
                local = if speed.is_nan() || local.is_nan() {
                    f64::NAN
                } else {
                    local.max(speed)
                };
            }
        }
        fastest.fetch_max(local.to_bits(), Ordering::Relaxed);
    });
    courant * dx / f64::from_bits(fastest.into_inner())
}
