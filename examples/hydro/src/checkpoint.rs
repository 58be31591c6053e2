//! Checkpoints: the full state with the clock and the parameters, as a
//! file (`--checkpoint`) or as the bytes of an archived checkpoint CDO.
//!
//! Layout (little endian): the magic `HYDROCK1`; the parameters as input
//! text (u64 length, then UTF-8); step (u64), time, dt (f64); nx, ny (u64);
//! then the four conserved fields, interior cells only, x fastest. Ghost
//! cells are not stored: every sweep refills them before reading them.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::binary::{read_f64, read_f64s, read_u64, write_f64s};
use crate::params::{ParamError, Params};
use crate::state::{State, NVAR};

const MAGIC: &[u8; 8] = b"HYDROCK1";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened, read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a checkpoint of this program.
    #[error("checkpoint {0}: not a hydro checkpoint (bad magic)")]
    BadMagic(PathBuf),
    /// The embedded parameters do not parse.
    #[error("checkpoint {path}: bad parameters: {source}")]
    Params {
        /// The file.
        path: PathBuf,
        /// What is wrong with them.
        source: ParamError,
    },
    /// The archive of checkpoints failed.
    #[error("checkpoint archive: {0}")]
    Archive(#[from] cdo::archive::ArchiveError),
    /// The header is inconsistent.
    #[error("checkpoint {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
}

/// A run's state at the end of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Parameters of the run.
    pub params: Params,
    /// Conserved variables.
    pub state: State,
    /// Steps done.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// The last time step (reused by the next step when `step` is odd).
    pub dt: f64,
}

/// A checkpoint's contents, borrowed: what the solver hands over at a
/// checkpoint without copying its state first.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointRef<'a> {
    /// Parameters of the run.
    pub params: &'a Params,
    /// Conserved variables.
    pub state: &'a State,
    /// Steps done.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// The last time step.
    pub dt: f64,
}

impl CheckpointRef<'_> {
    /// The length of the encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        let header = MAGIC.len() + 8 + self.params.to_input().len() + 8 + 2 * 8 + 2 * 8;
        header + NVAR * self.state.nx() * self.state.ny() * std::mem::size_of::<f64>()
    }

    /// Writes the checkpoint in the format of the module docs.
    ///
    /// # Errors
    /// When `w` fails.
    pub fn encode(&self, w: &mut impl Write) -> io::Result<()> {
        let params = self.params.to_input();
        w.write_all(MAGIC)?;
        w.write_all(&(params.len() as u64).to_le_bytes())?;
        w.write_all(params.as_bytes())?;
        w.write_all(&self.step.to_le_bytes())?;
        write_f64s(w, &[self.time, self.dt])?;
        w.write_all(&(self.state.nx() as u64).to_le_bytes())?;
        w.write_all(&(self.state.ny() as u64).to_le_bytes())?;
        for var in 0..NVAR {
            write_f64s(w, &self.state.interior(var))?;
        }
        w.flush()
    }
}

impl Checkpoint {
    /// The checkpoint, borrowed.
    pub fn borrowed(&self) -> CheckpointRef<'_> {
        CheckpointRef {
            params: &self.params,
            state: &self.state,
            step: self.step,
            time: self.time,
            dt: self.dt,
        }
    }

    /// Writes the checkpoint to the file `path`.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.into(),
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        self.borrowed()
            .encode(&mut BufWriter::new(file))
            .map_err(io_err)
    }

    /// Reads a checkpoint file written by [`Checkpoint::write`].
    ///
    /// # Errors
    /// [`CheckpointError`] when the file cannot be read or is not a
    /// checkpoint.
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let file = File::open(path).map_err(|source| CheckpointError::Io {
            path: path.into(),
            source,
        })?;
        Checkpoint::decode(&mut BufReader::new(file), path)
    }

    /// Decodes a checkpoint encoded by [`CheckpointRef::encode`] from
    /// `bytes`, which come from `origin` (named in errors).
    ///
    /// # Errors
    /// As [`Checkpoint::read`]; [`CheckpointError::Corrupt`] for bytes
    /// past the end.
    pub fn from_bytes(mut bytes: &[u8], origin: &Path) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = Checkpoint::decode(&mut bytes, origin)?;
        match bytes.len() {
            0 => Ok(checkpoint),
            extra => Err(CheckpointError::Corrupt {
                path: origin.into(),
                reason: format!("{extra} bytes past the end"),
            }),
        }
    }

    /// Decodes a checkpoint from `r`, which reads `path`.
    fn decode(r: &mut impl Read, path: &Path) -> Result<Checkpoint, CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.into(),
            source,
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.into(),
            reason,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io_err)?;
        if &magic != MAGIC {
            return Err(CheckpointError::BadMagic(path.into()));
        }
        let text_len = read_u64(r).map_err(io_err)?;
        if text_len > 1 << 20 {
            return Err(corrupt(format!("parameter text of {text_len} bytes")));
        }
        let mut text = vec![0u8; text_len as usize];
        r.read_exact(&mut text).map_err(io_err)?;
        let text = String::from_utf8(text).map_err(|e| corrupt(e.to_string()))?;
        let params = Params::from_input(&text).map_err(|source| CheckpointError::Params {
            path: path.into(),
            source,
        })?;
        let step = read_u64(r).map_err(io_err)?;
        let time = read_f64(r).map_err(io_err)?;
        let dt = read_f64(r).map_err(io_err)?;
        let nx = read_u64(r).map_err(io_err)? as usize;
        let ny = read_u64(r).map_err(io_err)? as usize;
        if (nx, ny) != (params.nx, params.ny) {
            return Err(corrupt(format!(
                "grid {nx}x{ny} differs from its parameters' {}x{}",
                params.nx, params.ny
            )));
        }
        let mut state = State::new(nx, ny);
        for var in 0..NVAR {
            let values = read_f64s(r, nx * ny).map_err(io_err)?;
            state.set_interior(var, &values);
        }
        Ok(Checkpoint {
            params,
            state,
            step,
            time,
            dt,
        })
    }
}
