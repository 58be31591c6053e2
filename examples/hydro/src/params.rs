//! Run parameters and the HydroC-compatible `key=value` input format.
//!
//! An input file is a list of `key=value` lines, and HydroC's own input files
//! read unchanged:
//!
//! - a first line without `=` is the file's title (HydroC's files open with
//!   a sentence of prose) and is skipped;
//! - the namelist framing (`&RUN`, `&MESH`, `&HYDRO` and the closing `/`),
//!   blank lines and comments starting with `#` or `!` are skipped, as are
//!   a comment after a value (` # ...`, ` ! ...`), a trailing comma and
//!   quotes around a value;
//! - numbers may be written the Fortran way: `1.`, `.5`, `1.d-3`; an integer
//!   key takes any integral number (`nx=100.`), as HydroC's `sscanf` does;
//! - keys of other HydroC versions that this solver has no use for (`prt`,
//!   `tilesize`, `numa`, `morton`, `dtimage`, ...; see [`IGNORED_KEYS`])
//!   are skipped with a [`ParamWarning`] each; any other unknown key is an
//!   error, so that a misspelt key does not go unnoticed.

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
        match code_text(s).as_str() {
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
        match code_text(s).as_str() {
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
///
/// HydroC's three test cases share a background of rho = 1, u = v = 0,
/// E = 1e-5 and put a unit of energy (E = 1/dx^2) into one cell or, for
/// case 2, into each cell of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCase {
    /// HydroC's `testcase=0`: the blast cell is (nx/2, ny/2), the middle of
    /// the domain.
    PointBlast,
    /// HydroC's `testcase=1`: the blast cell is (0, 0), the lower left
    /// corner; with reflecting walls a quarter of a blast of four units.
    CornerBlast,
    /// HydroC's `testcase=2` (which HydroC prints as its "SOD tube" case):
    /// every cell of the first column, i = 0, holds a unit of energy, so a
    /// plane blast wave runs along x from the left wall.
    PlaneBlast,
    /// `testcase=sod`: Sod's shock tube along x (left rho = 1, p = 1; right
    /// rho = 0.125, p = 0.1), the discontinuity at the middle of the domain.
    Sod,
}

impl FromStr for TestCase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match code_text(s).as_str() {
            "0" | "blast" => Ok(TestCase::PointBlast),
            "1" | "corner" => Ok(TestCase::CornerBlast),
            "2" | "plane" => Ok(TestCase::PlaneBlast),
            "sod" => Ok(TestCase::Sod),
            _ => Err(
                "expected 0 (centred point blast), 1 (corner blast), 2 (plane blast) or sod".into(),
            ),
        }
    }
}

impl fmt::Display for TestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestCase::PointBlast => write!(f, "0"),
            TestCase::CornerBlast => write!(f, "1"),
            TestCase::PlaneBlast => write!(f, "2"),
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

/// Keys of HydroC's input files (across its versions) that this solver has
/// no use for: they are skipped with a [`ParamWarning`].
pub const IGNORED_KEYS: [&str; 13] = [
    "prt",
    "tilesize",
    "numa",
    "morton",
    "tasked",
    "taskeddep",
    "dtimage",
    "nimage",
    "chkpt",
    "forcestop",
    "forcesync",
    "fakeread",
    "fakereadsize",
];

/// A HydroC key that was read and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamWarning {
    /// 1-based line number.
    pub line: usize,
    /// The key, in lower case.
    pub key: String,
}

impl fmt::Display for ParamWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: HydroC key {:?} has no use here and is ignored",
            self.line, self.key
        )
    }
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

/// A number written the Fortran way (`1.`, `.5`, `1.d-3`, `2D0`) as Rust
/// reads it (`d` exponents become `e`); other text unchanged.
fn fortran_number(text: &str) -> String {
    let t = text.trim();
    let numeric = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E' | 'd' | 'D'));
    if numeric {
        t.replace(['d', 'D'], "e")
    } else {
        t.to_string()
    }
}

/// The text of an integer value: an integral number in any notation
/// (`3`, `3.`, `3.0e0`) as plain digits; other text (words, fractions)
/// lower-cased, for the caller to accept or reject.
fn code_text(text: &str) -> String {
    let t = fortran_number(text);
    match t.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 2f64.powi(53) => format!("{v:.0}"),
        _ => t.to_ascii_lowercase(),
    }
}

/// Parses `value` for `key` with `FromStr`, wrapping the failure. Integers
/// and enumerated codes go through [`code_text`] first, floats through
/// [`fortran_number`]: one of the two leaves any valid value as it was.
fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T, ParamError>
where
    T::Err: fmt::Display,
{
    let bad = |e: T::Err| ParamError::BadValue {
        key: key.into(),
        value: value.into(),
        reason: e.to_string(),
    };
    match code_text(value).parse() {
        Ok(v) => Ok(v),
        Err(_) => fortran_number(value).parse().map_err(bad),
    }
}

/// Strips a trailing comment (` # ...`, ` ! ...`), a trailing comma and
/// quotes from a value.
fn clean_value(value: &str) -> &str {
    let value = value.split(['#', '!']).next().unwrap_or_default().trim();
    let value = value.trim_end_matches(',').trim();
    value.trim_matches(['\'', '"'])
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
                if code_text(value) != expected {
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

    /// Applies the `key=value` lines of `text` (HydroC's input format, see
    /// the [module documentation](self)) on top of `self`, and returns the
    /// HydroC keys it skipped. Does not validate; see [`Params::validate`].
    pub fn apply_input(&mut self, text: &str) -> Result<Vec<ParamWarning>, ParamError> {
        let mut warnings = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(['&', '/', '#', '!']) {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                if index == 0 {
                    continue; // the title
                }
                return Err(ParamError::Syntax {
                    line: index + 1,
                    text: raw.into(),
                });
            };
            let key = key.trim().to_ascii_lowercase();
            if IGNORED_KEYS.contains(&key.as_str()) {
                warnings.push(ParamWarning {
                    line: index + 1,
                    key,
                });
            } else if !self.set(&key, clean_value(value))? {
                return Err(ParamError::UnknownKey {
                    line: index + 1,
                    key,
                });
            }
        }
        Ok(warnings)
    }

    /// Reads an input file on top of `self`; returns the HydroC keys it
    /// skipped.
    pub fn apply_file(&mut self, path: &Path) -> Result<Vec<ParamWarning>, ParamError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParamError::Io {
            path: path.into(),
            source,
        })?;
        self.apply_input(&text)
    }

    /// Parses and validates a complete input text over the defaults (the
    /// skipped HydroC keys are not reported; see [`Params::apply_input`]).
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
