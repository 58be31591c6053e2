//! What a run shows physically, from its statistics: how well mass and
//! energy are conserved, and how the blast's shock radius compares with
//! Sedov's; drawn as `stats.png` and told in the summary.

use std::fmt;
use std::path::Path;

use crate::analysis::plot::plot_stats;
use crate::analysis::stats::{rows_up_to, StatsRow};
use crate::analysis::{STATS_CSV, STATS_PNG};
use crate::params::{Params, TestCase};
use crate::sedov::Reference;
use crate::state::ID;

/// Name of the summary file in the output directory.
pub const SUMMARY_TXT: &str = "summary.txt";

/// Fraction of the distance to the nearest wall up to which the front
/// runs free: the shock radius is compared with Sedov's at the last record
/// before Sedov's front passes it.
const FREE: f64 = 0.8;

/// The shock radius at one record against Sedov's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShockCheck {
    /// Sedov's blast for the run.
    pub reference: Reference,
    /// Time of the record.
    pub time: f64,
    /// The radius of the region the blast swept.
    pub measured: f64,
    /// Sedov's radius at that time.
    pub sedov: f64,
}

impl ShockCheck {
    /// `measured / sedov - 1`.
    pub fn relative_error(&self) -> f64 {
        self.measured / self.sedov - 1.0
    }
}

/// The physics of a run, from its statistics rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Physics {
    /// The initial condition.
    pub testcase: TestCase,
    /// Statistics rows (records) it is drawn from.
    pub records: usize,
    /// Time of the last record.
    pub last_time: f64,
    /// Relative change of the total mass from the first record to the last.
    pub mass_drift: f64,
    /// Relative change of the total energy from the first record to the
    /// last.
    pub energy_drift: f64,
    /// Smallest and largest density over all records.
    pub density_range: (f64, f64),
    /// The shock radius against Sedov's, for the blasts with a reference
    /// and a record while the front runs free.
    pub shock: Option<ShockCheck>,
}

/// `(last - first) / |first|` (0 when `first` is 0).
fn relative_change(first: f64, last: f64) -> f64 {
    if first == 0.0 {
        0.0
    } else {
        (last - first) / first.abs()
    }
}

impl Physics {
    /// The physics of `rows` of a run with `params` (`None` without rows).
    pub fn of(rows: &[StatsRow], params: &Params) -> Option<Physics> {
        let (first, last) = (rows.first()?, rows.last()?);
        let reference = Reference::of(params);
        let shock = reference.and_then(|sedov| {
            rows.iter()
                .rev()
                .find(|r| r.time > 0.0 && sedov.radius(r.time) <= FREE * sedov.wall_distance)
                .map(|r| ShockCheck {
                    reference: sedov,
                    time: r.time,
                    measured: sedov.radius_of_area(r.blast_area),
                    sedov: sedov.radius(r.time),
                })
        });
        let density_range = rows.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
            (lo.min(r.min[ID]), hi.max(r.max[ID]))
        });
        Some(Physics {
            testcase: params.testcase,
            records: rows.len(),
            last_time: last.time,
            mass_drift: relative_change(first.mass, last.mass),
            energy_drift: relative_change(first.energy, last.energy),
            density_range,
            shock,
        })
    }

    /// Reads the statistics CSV in `dir`, draws `stats.png` there and
    /// returns the physics (`None` when the CSV has no rows).
    ///
    /// # Errors
    /// When the CSV cannot be read or the plot written.
    pub fn report(dir: &Path, params: &Params) -> std::io::Result<Option<Physics>> {
        let rows = rows_up_to(&dir.join(STATS_CSV), u64::MAX)?;
        let reference = Reference::of(params);
        if !rows.is_empty() {
            plot_stats(&dir.join(STATS_PNG), &rows, reference.as_ref())?;
        }
        Ok(Physics::of(&rows, params))
    }
}

/// The name of a test case in the summary.
fn describe(testcase: TestCase) -> &'static str {
    match testcase {
        TestCase::PointBlast => "point blast in the middle (HydroC testcase 0)",
        TestCase::CornerBlast => "blast in the lower left corner (HydroC testcase 1)",
        TestCase::PlaneBlast => "plane blast from the left wall (HydroC testcase 2)",
        TestCase::Sod => "Sod's shock tube",
    }
}

impl fmt::Display for Physics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "physics          {}, gamma {}",
            describe(self.testcase),
            crate::eos::GAMMA
        )?;
        writeln!(
            f,
            "  conservation   mass drift {:+.2e}, energy drift {:+.2e} (relative, first to last of {} records, t = 0 to {:.4})",
            self.mass_drift, self.energy_drift, self.records, self.last_time
        )?;
        writeln!(
            f,
            "  density        between {:.3e} and {:.3e}",
            self.density_range.0, self.density_range.1
        )?;
        match &self.shock {
            Some(s) => {
                let r = &s.reference;
                writeln!(
                    f,
                    "  shock radius   {:.4} at t = {:.4}, Sedov's {:.4} ({:+.1}%): R = xi0 (E t^2 / rho)^(1/{}), xi0 = {:.4} (gamma {}, {}), E = {}, rho = {}",
                    s.measured,
                    s.time,
                    s.sedov,
                    100.0 * s.relative_error(),
                    r.geometry.nu() + 2,
                    r.xi0,
                    crate::eos::GAMMA,
                    r.geometry.name(),
                    r.energy,
                    r.density
                )?;
                writeln!(
                    f,
                    "  walls          Sedov's front reaches the nearest wall ({:.3} away) at t = {:.4}; reflected shocks follow",
                    r.wall_distance,
                    r.wall_time()
                )
            }
            None => writeln!(
                f,
                "  shock radius   no comparison (no Sedov reference for this case, or no record while the front ran free)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::plot::STATS_SIZE;
    use crate::analysis::stats::StatsCsv;
    use crate::state::{FIELD_NAMES, NVAR};

    fn row(step: u64, time: f64, mass: f64, energy: f64) -> StatsRow {
        StatsRow {
            step,
            time,
            mass,
            energy,
            min: [0.125; NVAR],
            max: [1.0; NVAR],
            blast_area: 0.0,
        }
    }

    #[test]
    fn sod_has_drifts_and_a_plot_but_no_sedov_reference() {
        let params = Params {
            testcase: TestCase::Sod,
            ..Params::default()
        };
        let rows = [row(0, 0.0, 2.0, 4.0), row(5, 0.1, 2.002, 3.996)];
        let dir = tempfile::tempdir().unwrap();
        let mut csv = StatsCsv::create(&dir.path().join(STATS_CSV), FIELD_NAMES, &rows).unwrap();
        csv.write(&row(9, 0.2, 2.004, 3.992)).unwrap();
        csv.finish().unwrap();

        let physics = Physics::report(dir.path(), &params).unwrap().unwrap();
        assert_eq!(physics.records, 3);
        assert!((physics.mass_drift - 2e-3).abs() < 1e-12);
        assert!((physics.energy_drift + 2e-3).abs() < 1e-12);
        assert_eq!(physics.density_range, (0.125, 1.0));
        assert_eq!(physics.shock, None);
        assert!(physics.to_string().contains("no comparison"));
        let png = png::Decoder::new(std::fs::File::open(dir.path().join(STATS_PNG)).unwrap());
        let info = png.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), STATS_SIZE);
    }

    #[test]
    fn no_rows_no_physics_and_no_plot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Physics::report(dir.path(), &Params::default()).unwrap(),
            None
        );
        assert!(!dir.path().join(STATS_PNG).exists());
    }
}
