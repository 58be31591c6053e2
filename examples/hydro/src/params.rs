//! Run parameters and the HydroC-compatible `key=value` input format.
//!
//! An input file is a list of `key=value` lines. HydroC's namelist framing
//! (`&RUN`, `&MESH`, `&HYDRO` and the closing `/`), blank lines and comments
//! starting with `#` or `!` are ignored, as is a trailing comma after a value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Boundary condition on one side of the domain, with HydroC's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Code 1: mirror, normal velocity flipped (a wall).
    Reflective,
    /// Code 2: zero-gradient copy of the edge cell (absorbing).
    Outflow,
    /// Code 3: wraps around to the opposite side.
    Periodic,
}

impl Boundary {
    /// HydroC's numeric code of the condition.
    pub fn code(self) -> u8 {
        match self {
            Boundary::Reflective => 1,
            Boundary::Outflow => 2,
            Boundary::Periodic => 3,
        }
    }
}

impl FromStr for Boundary {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "reflective" | "reflexive" => Ok(Boundary::Reflective),
            "2" | "outflow" | "absorbing" => Ok(Boundary::Outflow),
            "3" | "periodic" => Ok(Boundary::Periodic),
            _ => Err("expected 1 (reflexive), 2 (absorbing) or 3 (periodic)".into()),
        }
    }
}

impl fmt::Display for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Slope limiter, HydroC's `slope_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// `slope_type=1`: minmod.
    Minmod,
    /// `slope_type=2`: monotonized central.
    MonotonizedCentral,
}

impl Limiter {
    /// The factor HydroC applies to one-sided differences (its `slope_type`).
    pub fn factor(self) -> f64 {
        match self {
            Limiter::Minmod => 1.0,
            Limiter::MonotonizedCentral => 2.0,
        }
    }
}

impl FromStr for Limiter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "minmod" => Ok(Limiter::Minmod),
            "2" | "mc" => Ok(Limiter::MonotonizedCentral),
            _ => Err("expected 1 (minmod) or 2 (monotonized central)".into()),
        }
    }
}

impl fmt::Display for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self {
            Limiter::Minmod => 1,
            Limiter::MonotonizedCentral => 2,
        };
        write!(f, "{code}")
    }
}

/// Initial condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCase {
    /// HydroC's `testcase=0`: rho = 1, u = v = 0, E = 1e-5 everywhere except
    /// the cell (nx/2, ny/2), where E = 1/dx^2.
    PointBlast,
    /// `testcase=sod`: Sod's shock tube along x (left rho = 1, p = 1; right
    /// rho = 0.125, p = 0.1), the discontinuity at the middle of the domain.
    Sod,
}

impl FromStr for TestCase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" | "blast" => Ok(TestCase::PointBlast),
            "sod" => Ok(TestCase::Sod),
            _ => Err("expected 0 (centred point blast) or sod".into()),
        }
    }
}

impl fmt::Display for TestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestCase::PointBlast => write!(f, "0"),
            TestCase::Sod => write!(f, "sod"),
        }
    }
}

/// Why parameters could not be read or are not usable.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// The input file could not be read.
    #[error("cannot read input file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not of the form `key=value`.
    #[error("line {line}: expected key=value, found {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A key this program does not know.
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse or is out of range.
    #[error("bad value {value:?} for {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// Parameters that parse but do not make a runnable set together.
    #[error("invalid parameters: {0}")]
    Invalid(String),
}

/// Every parameter of a run. [`Params::default`] gives HydroC-like defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Interior cells along x.
    pub nx: usize,
    /// Interior cells along y.
    pub ny: usize,
    /// Cell size (the same along x and y).
    pub dx: f64,
    /// End time: the run stops at the first step ending at or after it.
    pub tend: f64,
    /// Maximum number of steps (counted from step 0, restarts included).
    pub nstepmax: u64,
    /// CFL number.
    pub courant_factor: f64,
    /// Maximum Newton iterations of the Riemann solver.
    pub niter_riemann: u32,
    /// Slope limiter.
    pub slope_type: Limiter,
    /// Condition at x = 0.
    pub boundary_left: Boundary,
    /// Condition at x = nx*dx.
    pub boundary_right: Boundary,
    /// Condition at y = 0.
    pub boundary_down: Boundary,
    /// Condition at y = ny*dx.
    pub boundary_up: Boundary,
    /// Initial condition.
    pub testcase: TestCase,
    /// Simulated time between output points (0: none).
    pub dtoutput: f64,
    /// Steps between output points (0: none).
    pub noutput: u64,
    /// Rows (x sweep) or columns (y sweep) per band of work.
    pub nxystep: usize,
    /// Density floor.
    pub smallr: f64,
    /// Sound-speed floor (the pressure floor is `smallc^2 / gamma`).
    pub smallc: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            nx: 20,
            ny: 20,
            dx: 1.0,
            tend: 100.0,
            nstepmax: 1_000_000,
            courant_factor: 0.5,
            niter_riemann: 10,
            slope_type: Limiter::Minmod,
            boundary_left: Boundary::Reflective,
            boundary_right: Boundary::Reflective,
            boundary_down: Boundary::Reflective,
            boundary_up: Boundary::Reflective,
            testcase: TestCase::PointBlast,
            dtoutput: 0.0,
            noutput: 0,
            nxystep: 16,
            smallr: 1e-10,
            smallc: 1e-10,
        }
    }
}

/// Parses `value` for `key` with `FromStr`, wrapping the failure.
fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T, ParamError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ParamError::BadValue {
            key: key.into(),
            value: value.into(),
            reason: e.to_string(),
        })
}

impl Params {
    /// Sets one parameter from its HydroC key and textual value.
    ///
    /// Returns `Ok(false)` when the key is unknown. `iorder` and `scheme` are
    /// accepted only with the values this solver implements (2 and `muscl`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ParamError> {
        match key {
            "nx" => self.nx = parse_value(key, value)?,
            "ny" => self.ny = parse_value(key, value)?,
            "dx" => self.dx = parse_value(key, value)?,
            "tend" => self.tend = parse_value(key, value)?,
            "nstepmax" => self.nstepmax = parse_value(key, value)?,
            "courant_factor" => self.courant_factor = parse_value(key, value)?,
            "niter_riemann" => self.niter_riemann = parse_value(key, value)?,
            "slope_type" => self.slope_type = parse_value(key, value)?,
            "boundary_left" => self.boundary_left = parse_value(key, value)?,
            "boundary_right" => self.boundary_right = parse_value(key, value)?,
            "boundary_down" => self.boundary_down = parse_value(key, value)?,
            "boundary_up" => self.boundary_up = parse_value(key, value)?,
            "testcase" => self.testcase = parse_value(key, value)?,
            "dtoutput" => self.dtoutput = parse_value(key, value)?,
            "noutput" => self.noutput = parse_value(key, value)?,
            "nxystep" => self.nxystep = parse_value(key, value)?,
            "smallr" => self.smallr = parse_value(key, value)?,
            "smallc" => self.smallc = parse_value(key, value)?,
            "iorder" | "scheme" => {
                let expected = if key == "iorder" { "2" } else { "muscl" };
                if !value.trim().eq_ignore_ascii_case(expected) {
                    return Err(ParamError::BadValue {
                        key: key.into(),
                        value: value.into(),
                        reason: format!("only {expected} is implemented"),
                    });
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies the `key=value` lines of `text` (HydroC's input format) on top
    /// of `self`. Does not validate; see [`Params::validate`].
    pub fn apply_input(&mut self, text: &str) -> Result<(), ParamError> {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(['&', '/', '#', '!']) {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ParamError::Syntax {
                    line: index + 1,
                    text: raw.into(),
                });
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim().trim_end_matches(',');
            if !self.set(&key, value)? {
                return Err(ParamError::UnknownKey {
                    line: index + 1,
                    key,
                });
            }
        }
        Ok(())
    }

    /// Reads an input file on top of `self`.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ParamError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParamError::Io {
            path: path.into(),
            source,
        })?;
        self.apply_input(&text)
    }

    /// Parses and validates a complete input text over the defaults.
    pub fn from_input(text: &str) -> Result<Params, ParamError> {
        let mut params = Params::default();
        params.apply_input(text)?;
        params.validate()?;
        Ok(params)
    }

    /// Checks that the parameters make a runnable set.
    pub fn validate(&self) -> Result<(), ParamError> {
        let fail = |why: String| Err(ParamError::Invalid(why));
        if self.nx == 0 || self.ny == 0 {
            return fail(format!(
                "nx and ny must be positive (got {}x{})",
                self.nx, self.ny
            ));
        }
        if !(self.dx.is_finite() && self.dx > 0.0) {
            return fail(format!("dx must be positive and finite (got {})", self.dx));
        }
        if !(self.courant_factor > 0.0 && self.courant_factor <= 1.0) {
            return fail(format!(
                "courant_factor must lie in (0, 1] (got {})",
                self.courant_factor
            ));
        }
        if self.tend.is_nan() || self.tend < 0.0 {
            return fail(format!("tend must be non-negative (got {})", self.tend));
        }
        if self.niter_riemann == 0 {
            return fail("niter_riemann must be at least 1".into());
        }
        if self.nxystep == 0 {
            return fail("nxystep must be at least 1".into());
        }
        if self.dtoutput.is_nan() || self.dtoutput < 0.0 {
            return fail(format!(
                "dtoutput must be non-negative (got {})",
                self.dtoutput
            ));
        }
        if !(self.smallr > 0.0 && self.smallc > 0.0) {
            return fail("smallr and smallc must be positive".into());
        }
        let x_periodic = [self.boundary_left, self.boundary_right].map(|b| b == Boundary::Periodic);
        let y_periodic = [self.boundary_down, self.boundary_up].map(|b| b == Boundary::Periodic);
        if x_periodic[0] != x_periodic[1] || y_periodic[0] != y_periodic[1] {
            return fail("a periodic boundary needs a periodic opposite side".into());
        }
        Ok(())
    }

    /// The parameters in the input format, one `key=value` line each, values
    /// written so that they read back exactly.
    pub fn to_input(&self) -> String {
        format!(
            "&RUN\ntend={:?}\nnstepmax={}\nnoutput={}\ndtoutput={:?}\n/\n\
             &MESH\nnx={}\nny={}\nnxystep={}\ndx={:?}\n\
             boundary_left={}\nboundary_right={}\nboundary_down={}\nboundary_up={}\n/\n\
             &HYDRO\ncourant_factor={:?}\nniter_riemann={}\nslope_type={}\n\
             testcase={}\nsmallr={:?}\nsmallc={:?}\n/\n",
            self.tend,
            self.nstepmax,
            self.noutput,
            self.dtoutput,
            self.nx,
            self.ny,
            self.nxystep,
            self.dx,
            self.boundary_left,
            self.boundary_right,
            self.boundary_down,
            self.boundary_up,
            self.courant_factor,
            self.niter_riemann,
            self.slope_type,
            self.testcase,
            self.smallr,
            self.smallc,
        )
    }
}
