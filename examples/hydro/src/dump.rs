//! Final-state dumps for comparison with other codes.
//!
//! A dump is a one-line JSON header followed by the four conserved fields as
//! little-endian f64 planes, interior cells only, x fastest:
//!
//! ```text
//! {"nx":..,"ny":..,"dx":..,"steps":..,"t":..,"fields":["rho","rhou","rhov","E"]}\n
//! rho[ny][nx] rhou[ny][nx] rhov[ny][nx] E[ny][nx]
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::binary::{read_f64s, write_f64s};
use crate::state::{State, FIELD_NAMES, NVAR};

/// Why a dump could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The file could not be opened, read or written.
    #[error("dump {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The header is not the expected JSON.
    #[error("dump {path}: bad header: {source}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// The header line of a dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpHeader {
    /// Interior cells along x.
    pub nx: usize,
    /// Interior cells along y.
    pub ny: usize,
    /// Cell size.
    pub dx: f64,
    /// Steps done.
    pub steps: u64,
    /// Simulated time.
    pub t: f64,
    /// Names of the planes that follow, in order.
    pub fields: Vec<String>,
}

/// A dump read back: its header and its planes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// The header.
    pub header: DumpHeader,
    /// One plane of `nx * ny` values per field, x fastest.
    pub planes: Vec<Vec<f64>>,
}

impl Dump {
    /// Writes `state` to `path` with the given metadata.
    pub fn write(path: &Path, state: &State, dx: f64, steps: u64, t: f64) -> Result<(), DumpError> {
        let io_err = |source| DumpError::Io {
            path: path.into(),
            source,
        };
        let header = DumpHeader {
            nx: state.nx(),
            ny: state.ny(),
            dx,
            steps,
            t,
            fields: FIELD_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        let json = serde_json::to_string(&header).map_err(|source| DumpError::Header {
            path: path.into(),
            source,
        })?;
        let mut w = BufWriter::new(File::create(path).map_err(io_err)?);
        let write = |w: &mut BufWriter<File>| -> io::Result<()> {
            writeln!(w, "{json}")?;
            for var in 0..NVAR {
                write_f64s(w, &state.interior(var))?;
            }
            w.flush()
        };
        write(&mut w).map_err(io_err)
    }

    /// Reads a dump written by [`Dump::write`].
    pub fn read(path: &Path) -> Result<Dump, DumpError> {
        let io_err = |source| DumpError::Io {
            path: path.into(),
            source,
        };
        let mut r = BufReader::new(File::open(path).map_err(io_err)?);
        let mut line = String::new();
        r.read_line(&mut line).map_err(io_err)?;
        let header: DumpHeader =
            serde_json::from_str(line.trim_end()).map_err(|source| DumpError::Header {
                path: path.into(),
                source,
            })?;
        let n = header.nx * header.ny;
        let planes = (0..header.fields.len())
            .map(|_| read_f64s(&mut r, n))
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_err)?;
        Ok(Dump { header, planes })
    }
}
