//! Ideal-gas equation of state and the conservative-to-primitive conversion.

use crate::params::Params;

/// Ratio of specific heats.
pub const GAMMA: f64 = 1.4;

/// Gas constants and floors shared by the kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gas {
    /// Ratio of specific heats.
    pub gamma: f64,
    /// Density floor.
    pub smallr: f64,
    /// Sound-speed floor.
    pub smallc: f64,
    /// Specific pressure floor, `smallc^2 / gamma` (multiplied by rho).
    pub smallp: f64,
}

impl Gas {
    /// The gas of a run: gamma = 1.4 and the run's floors.
    pub fn new(params: &Params) -> Gas {
        Gas {
            gamma: GAMMA,
            smallr: params.smallr,
            smallc: params.smallc,
            smallp: params.smallc * params.smallc / GAMMA,
        }
    }
}

/// Primitive variables of one cell, with the sound speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Primitive {
    /// Density (floored at `smallr`).
    pub rho: f64,
    /// Velocity normal to the sweep's interfaces.
    pub un: f64,
    /// Transverse velocity.
    pub ut: f64,
    /// Pressure (floored at `rho * smallp`).
    pub p: f64,
    /// Sound speed.
    pub c: f64,
}

/// Converts conserved variables (density, normal and transverse momenta,
/// total energy) to primitives, as HydroC's `constoprim` followed by
/// `equation_of_state`.
#[inline(always)]
pub fn primitive(gas: &Gas, rho: f64, mn: f64, mt: f64, energy: f64) -> Primitive {
    let rho = rho.max(gas.smallr);
    let un = mn / rho;
    let ut = mt / rho;
    let ekin = 0.5 * (un * un + ut * ut);
    let eint = energy / rho - ekin;
    let p = ((gas.gamma - 1.0) * rho * eint).max(rho * gas.smallp);
    let c = (gas.gamma * p / rho).sqrt();
    Primitive { rho, un, ut, p, c }
}
