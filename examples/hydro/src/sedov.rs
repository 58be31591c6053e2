//! The Sedov-Taylor blast wave: the reference the blast test cases are
//! measured against.
//!
//! A strong explosion of energy `E` in a gas of density `rho` at rest drives
//! a shock whose radius grows as `R(t) = xi0 (E t^2 / rho)^(1 / (nu + 2))`,
//! with `nu` = 1, 2, 3 for planar, cylindrical and spherical symmetry (`E`
//! per unit area, per unit length, or in total). The constant `xi0` depends
//! on `gamma` and `nu`; [`xi0`] computes it from the self-similar solution
//! instead of quoting a table: it integrates the similarity equations from
//! the strong-shock jump conditions at the front down to the centre and
//! evaluates the energy integral. For `gamma` = 1.4 it gives 1.033 in 3D
//! (Taylor's value), 1.004 in 2D and 0.975 in 1D (with `E` the energy on both sides of the plane).

use std::f64::consts::PI;

use crate::params::{Boundary, Params, TestCase};

/// Symmetry of a blast wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// A plane front (`nu` = 1); energy per unit area.
    Planar,
    /// A cylindrical front (`nu` = 2), as a point blast in 2D; energy per
    /// unit length.
    Cylindrical,
    /// A spherical front (`nu` = 3).
    Spherical,
}

impl Geometry {
    /// The dimension `nu` of the symmetry.
    pub fn nu(self) -> u32 {
        match self {
            Geometry::Planar => 1,
            Geometry::Cylindrical => 2,
            Geometry::Spherical => 3,
        }
    }

    /// The symmetry's name in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Geometry::Planar => "planar",
            Geometry::Cylindrical => "cylindrical",
            Geometry::Spherical => "spherical",
        }
    }

    /// Measure of the unit sphere in `nu` dimensions (2, 2 pi, 4 pi): the
    /// factor from `lambda^(nu-1) d lambda` to the volume element.
    fn sphere(self) -> f64 {
        match self {
            Geometry::Planar => 2.0,
            Geometry::Cylindrical => 2.0 * PI,
            Geometry::Spherical => 4.0 * PI,
        }
    }
}

/// Similarity variables at one point: velocity `U = u / R'`, density
/// `G = rho / rho0`, pressure `P = p / (rho0 R'^2)`, and the energy
/// integral accumulated so far.
type Point = [f64; 4];

/// The right-hand side of the similarity equations, as derivatives with
/// respect to `s = ln(lambda)`, `lambda = r / R`.
fn slope(y: Point, s: f64, gamma: f64, geometry: Geometry) -> Point {
    let [u, g, p, _] = y;
    let lambda = s.exp();
    let nu = f64::from(geometry.nu());
    let delta = 2.0 / (nu + 2.0);
    let k = (delta - 1.0) / delta;
    // Continuity, momentum and entropy along particle paths:
    //   a G' + G U'            = r1,  r1 = -(nu - 1) G U / lambda
    //   a U' + P' / G          = r2,  r2 = -k U
    //   a (P'/P - gamma G'/G)  = r3,  r3 = -2 k
    // with a = U - lambda and ' = d/d lambda.
    let a = u - lambda;
    let (r1, r2, r3) = (-(nu - 1.0) * g * u / lambda, -k * u, -2.0 * k);
    let du = (r2 - p * (r3 + gamma * r1 / g) / (g * a)) / (a - gamma * p / (g * a));
    let dg = (r1 - g * du) / a;
    let dp = p * (r3 + gamma * r1 / g - gamma * du) / a;
    let energy = (0.5 * g * u * u + p / (gamma - 1.0)) * lambda.powf(nu - 1.0);
    [du, dg, dp, energy].map(|d| d * lambda)
}

/// Steps of the integration from the front to the centre.
const STEPS: usize = 20_000;
/// Where the integration stops, as `ln(lambda)`: the rest of the energy
/// integral, below `lambda` = 1e-6, is negligible.
const S_END: f64 = -13.8;

/// The constant `xi0` of Sedov's radius `R = xi0 (E t^2 / rho)^(1/(nu+2))`
/// for the ratio of specific heats `gamma` (> 1) in `geometry`.
pub fn xi0(gamma: f64, geometry: Geometry) -> f64 {
    let nu = f64::from(geometry.nu());
    // Strong-shock jump conditions at the front, lambda = 1.
    let mut y: Point = [
        2.0 / (gamma + 1.0),
        (gamma + 1.0) / (gamma - 1.0),
        2.0 / (gamma + 1.0),
        0.0,
    ];
    let h = S_END / STEPS as f64;
    let add = |y: Point, d: Point, f: f64| -> Point { std::array::from_fn(|i| y[i] + f * d[i]) };
    for n in 0..STEPS {
        let s = n as f64 * h;
        let k1 = slope(y, s, gamma, geometry);
        let k2 = slope(add(y, k1, h / 2.0), s + h / 2.0, gamma, geometry);
        let k3 = slope(add(y, k2, h / 2.0), s + h / 2.0, gamma, geometry);
        let k4 = slope(add(y, k3, h), s + h, gamma, geometry);
        y = std::array::from_fn(|i| y[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]));
    }
    // The integral ran from lambda = 1 down, so it is negative.
    let integral = -y[3];
    let delta = 2.0 / (nu + 2.0);
    let alpha = geometry.sphere() * delta * delta * integral;
    alpha.powf(-1.0 / (nu + 2.0))
}

/// The shape of the region a blast has disturbed in the domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Front {
    /// A disc around the blast (a point blast in the domain).
    Disc,
    /// A quarter disc in the corner of two walls.
    QuarterDisc,
    /// A strip along a wall, `height` long.
    Strip {
        /// Length of the wall.
        height: f64,
    },
}

/// The blast wave of a run and Sedov's prediction for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Symmetry of the front.
    pub geometry: Geometry,
    /// Shape of the disturbed region.
    pub front: Front,
    /// Energy of the equivalent free blast: the blast's own, doubled for
    /// each reflecting wall through its origin (the mirror images).
    pub energy: f64,
    /// Density of the gas at rest.
    pub density: f64,
    /// The constant of [`xi0`] for the run's `gamma`.
    pub xi0: f64,
    /// Distance from the blast's origin to the first wall the front meets.
    pub wall_distance: f64,
}

impl Reference {
    /// The reference of a run with `params`, `None` for the test cases that
    /// are no free blast (Sod's tube, or a corner or plane blast whose walls
    /// through the origin do not reflect).
    ///
    /// HydroC's blasts put a unit of energy into one cell (into every cell
    /// of the first column for the plane blast, so `1 / dx` per unit length
    /// of the wall) of a gas with rho = 1.
    pub fn of(params: &Params) -> Option<Reference> {
        let gamma = crate::eos::GAMMA;
        let (lx, ly) = (params.nx as f64 * params.dx, params.ny as f64 * params.dx);
        let walls = |sides: &[Boundary]| sides.iter().all(|&b| b == Boundary::Reflective);
        let (geometry, front, energy, wall_distance) = match params.testcase {
            TestCase::PointBlast => (Geometry::Cylindrical, Front::Disc, 1.0, 0.5 * lx.min(ly)),
            TestCase::CornerBlast if walls(&[params.boundary_left, params.boundary_down]) => {
                (Geometry::Cylindrical, Front::QuarterDisc, 4.0, lx.min(ly))
            }
            TestCase::PlaneBlast if walls(&[params.boundary_left]) => {
                let front = Front::Strip { height: ly };
                (Geometry::Planar, front, 2.0 / params.dx, lx)
            }
            _ => return None,
        };
        Some(Reference {
            geometry,
            front,
            energy,
            density: 1.0,
            xi0: xi0(gamma, geometry),
            wall_distance,
        })
    }

    /// The exponent `1 / (nu + 2)` of the radius's law.
    fn exponent(&self) -> f64 {
        1.0 / f64::from(self.geometry.nu() + 2)
    }

    /// Sedov's shock radius at time `t`.
    pub fn radius(&self, t: f64) -> f64 {
        self.xi0 * (self.energy * t * t / self.density).powf(self.exponent())
    }

    /// When Sedov's front reaches the first wall.
    pub fn wall_time(&self) -> f64 {
        let nu2 = f64::from(self.geometry.nu() + 2);
        (self.density * (self.wall_distance / self.xi0).powf(nu2) / self.energy).sqrt()
    }

    /// The radius of a front that encloses `area` of the domain (the area
    /// the blast has disturbed), for the shape of the front.
    pub fn radius_of_area(&self, area: f64) -> f64 {
        match self.front {
            Front::Disc => (area / PI).sqrt(),
            Front::QuarterDisc => (4.0 * area / PI).sqrt(),
            Front::Strip { height } => area / height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_constants() {
        // Taylor's and Sedov's spherical constants for air and a monatomic gas.
        assert!((xi0(1.4, Geometry::Spherical) - 1.033).abs() < 2e-3);
        assert!((xi0(5.0 / 3.0, Geometry::Spherical) - 1.152).abs() < 2e-3);
        // The 2D constant lies between the 1D and 3D ones.
        let c = xi0(1.4, Geometry::Cylindrical);
        assert!(xi0(1.4, Geometry::Planar) < c && c < xi0(1.4, Geometry::Spherical));
    }

    #[test]
    fn radius_and_wall_time_agree() {
        let params = Params {
            nx: 200,
            ny: 100,
            dx: 0.005,
            ..Params::default()
        };
        let r = Reference::of(&params).unwrap();
        assert_eq!(r.wall_distance, 0.25);
        assert!((r.radius(r.wall_time()) - 0.25).abs() < 1e-12);
        let sod = Params {
            testcase: TestCase::Sod,
            ..params
        };
        assert!(Reference::of(&sod).is_none());
    }
}
