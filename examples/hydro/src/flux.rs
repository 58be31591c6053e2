//! Interface fluxes from the Godunov state (HydroC's `cmpflx`).

use crate::trace::FaceState;

/// Fluxes of (rho, normal momentum, transverse momentum, E) through an
/// interface where the Riemann solution is `q`.
#[inline(always)]
pub fn interface_flux(q: &FaceState, gamma: f64) -> [f64; 4] {
    let mass = q.rho * q.un;
    let ekin = 0.5 * q.rho * (q.un * q.un + q.ut * q.ut);
    let entho = 1.0 / (gamma - 1.0);
    let etot = q.p * entho + ekin;
    [mass, mass * q.un + q.p, mass * q.ut, q.un * (etot + q.p)]
}
