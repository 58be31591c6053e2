//! The command line and the run parameters it yields.

use clap::Parser;

use crate::device::DeviceKind;

/// Bad command-line values.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    /// A number that does not parse.
    #[error("{what}: {value:?} is not a number")]
    Number {
        /// The option.
        what: &'static str,
        /// The text.
        value: String,
    },
    /// A list of the wrong length.
    #[error("{what}: expected {expected} values, got {got}")]
    Count {
        /// The option.
        what: &'static str,
        /// Values expected.
        expected: String,
        /// Values given.
        got: usize,
    },
    /// A value outside its range.
    #[error("{what}: {reason}")]
    Range {
        /// The option.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// `sirius`: a plane-wave DFT loop (block Davidson per k-point) whose
/// buffers and device staging go through mamba.
#[derive(Debug, Clone, Parser)]
#[command(name = "sirius", version)]
pub struct Cli {
    /// Side of the cubic cell (bohr).
    #[arg(long, default_value_t = 10.0)]
    pub a: f64,
    /// Fourier components of the potential along x, y, z (Hartree).
    #[arg(long, default_value = "0.05,0.03,0.02", allow_hyphen_values = true)]
    pub v: String,
    /// Plane-wave cutoff per direction, one for all k-points or one each.
    #[arg(long, default_value = "4")]
    pub nmax: String,
    /// Fractional k-points, `x,y,z` separated by `;`.
    #[arg(
        long,
        default_value = "0,0,0;0.25,0.25,0;0.5,0.5,0.5",
        allow_hyphen_values = true
    )]
    pub kpoints: String,
    /// Eigenpairs per k-point.
    #[arg(long, default_value_t = 8)]
    pub bands: usize,
    /// SCF steps (the potential ramps up to full over them).
    #[arg(long, default_value_t = 4)]
    pub iterations: usize,
    /// Residual norm every eigenpair is converged to.
    #[arg(long, default_value_t = 1e-7)]
    pub tolerance: f64,
    /// Where H is applied: auto, cpu, gpu, or sim (the test double).
    #[arg(long, default_value = "auto")]
    pub device: DeviceKind,
    /// Device memory for the wave-function block (bytes); smaller than a
    /// block streams it in chunks.
    #[arg(long)]
    pub device_budget: Option<u64>,
    /// One JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

/// One k-point: fractional coordinates and cutoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KPoint {
    /// k = (2π/a)·kappa.
    pub kappa: [f64; 3],
    /// |n_d| <= nmax.
    pub nmax: usize,
}

/// Checked run parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Cell side (bohr).
    pub a: f64,
    /// Full potential components.
    pub v: [f64; 3],
    /// The k-points.
    pub kpoints: Vec<KPoint>,
    /// Eigenpairs per k-point.
    pub bands: usize,
    /// SCF steps.
    pub iterations: usize,
    /// Residual tolerance.
    pub tolerance: f64,
    /// Where H is applied.
    pub device: DeviceKind,
    /// Device memory budget (bytes).
    pub device_budget: Option<u64>,
}

fn numbers<T: std::str::FromStr>(what: &'static str, s: &str) -> Result<Vec<T>, ParamError> {
    s.split(',')
        .map(|x| {
            x.trim().parse().map_err(|_| ParamError::Number {
                what,
                value: x.into(),
            })
        })
        .collect()
}

fn range(what: &'static str, ok: bool, reason: &str) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError::Range {
            what,
            reason: reason.into(),
        })
    }
}

impl TryFrom<&Cli> for Params {
    type Error = ParamError;

    fn try_from(cli: &Cli) -> Result<Params, ParamError> {
        range("--a", cli.a.is_finite() && cli.a > 0.0, "must be > 0")?;
        let v: Vec<f64> = numbers("--v", &cli.v)?;
        let v: [f64; 3] = v.as_slice().try_into().map_err(|_| ParamError::Count {
            what: "--v",
            expected: "3".into(),
            got: v.len(),
        })?;
        range("--v", v.iter().all(|x| x.is_finite()), "must be finite")?;
        let mut kappas = Vec::new();
        for k in cli.kpoints.split(';') {
            let k: Vec<f64> = numbers("--kpoints", k)?;
            let k: [f64; 3] = k.as_slice().try_into().map_err(|_| ParamError::Count {
                what: "--kpoints",
                expected: "3 per k-point".into(),
                got: k.len(),
            })?;
            range(
                "--kpoints",
                k.iter().all(|x| x.is_finite()),
                "must be finite",
            )?;
            kappas.push(k);
        }
        let nmax: Vec<usize> = numbers("--nmax", &cli.nmax)?;
        let nmax = match nmax.len() {
            1 => vec![nmax[0]; kappas.len()],
            n if n == kappas.len() => nmax,
            got => {
                return Err(ParamError::Count {
                    what: "--nmax",
                    expected: format!("1 or {}", kappas.len()),
                    got,
                })
            }
        };
        range("--nmax", nmax.iter().all(|&n| n <= 64), "must be <= 64")?;
        range("--bands", cli.bands > 0, "must be > 0")?;
        for &n in &nmax {
            let basis = (2 * n + 1).pow(3);
            range(
                "--bands",
                cli.bands <= basis,
                &format!(
                    "{} bands exceed the {basis} plane waves of nmax {n}",
                    cli.bands
                ),
            )?;
        }
        range("--iterations", cli.iterations > 0, "must be > 0")?;
        range(
            "--tolerance",
            cli.tolerance.is_finite() && cli.tolerance > 0.0,
            "must be > 0",
        )?;
        Ok(Params {
            a: cli.a,
            v,
            kpoints: kappas
                .into_iter()
                .zip(nmax)
                .map(|(kappa, nmax)| KPoint { kappa, nmax })
                .collect(),
            bands: cli.bands,
            iterations: cli.iterations,
            tolerance: cli.tolerance,
            device: cli.device,
            device_budget: cli.device_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Params, ParamError> {
        let cli =
            Cli::try_parse_from(std::iter::once("sirius").chain(args.iter().copied())).unwrap();
        Params::try_from(&cli)
    }

    #[test]
    fn lists_parse_and_one_nmax_serves_every_kpoint() {
        let p = parse(&[
            "--kpoints",
            "0,0,0;0.5,-0.25,0",
            "--nmax",
            "3",
            "--v",
            "-1,2,3",
        ])
        .unwrap();
        assert_eq!(p.kpoints.len(), 2);
        assert_eq!(p.kpoints[1].kappa, [0.5, -0.25, 0.0]);
        assert!(p.kpoints.iter().all(|k| k.nmax == 3));
        assert_eq!(p.v, [-1.0, 2.0, 3.0]);
        let p = parse(&["--kpoints", "0,0,0;0.5,0,0", "--nmax", "2,3"]).unwrap();
        assert_eq!(p.kpoints[1].nmax, 3);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            parse(&["--v", "1,2"]),
            Err(ParamError::Count { .. })
        ));
        assert!(matches!(
            parse(&["--v", "1,x,2"]),
            Err(ParamError::Number { .. })
        ));
        assert!(matches!(
            parse(&["--kpoints", "0,0,0;1,1", "--nmax", "2"]),
            Err(ParamError::Count { .. })
        ));
        assert!(matches!(
            parse(&["--kpoints", "0,0,0", "--nmax", "2,3"]),
            Err(ParamError::Count { .. })
        ));
        assert!(matches!(
            parse(&["--nmax", "0", "--bands", "2"]),
            Err(ParamError::Range { .. })
        ));
        assert!(matches!(
            parse(&["--tolerance", "0"]),
            Err(ParamError::Range { .. })
        ));
        assert!(matches!(parse(&["--a=-1"]), Err(ParamError::Range { .. })));
    }
}
