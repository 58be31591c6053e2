//! Checkpoints in an output directory: one file per step, written
//! atomically, the newest found by step number.

use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::params::Params;
use crate::record::RecordView;

/// File name prefix of checkpoints.
const PREFIX: &str = "checkpoint_";
/// File name suffix of checkpoints.
const SUFFIX: &str = ".chk";

/// The checkpoint file of `step` in `dir`.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{step:010}{SUFFIX}"))
}

/// Writes a checkpoint of the run with `params` at the state `record` holds
/// into `dir`, through a temporary file renamed into place so that a
/// partial file is never taken for a checkpoint; returns its path.
pub fn write_checkpoint(
    dir: &Path,
    params: &Params,
    record: &RecordView<'_>,
) -> Result<PathBuf, CheckpointError> {
    let m = record.meta();
    let checkpoint = Checkpoint {
        params: params.clone(),
        state: record.to_state(),
        step: m.step,
        time: m.time,
        dt: m.dt,
    };
    let path = checkpoint_path(dir, m.step);
    let tmp = path.with_extension("chk.tmp");
    checkpoint.write(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(|source| CheckpointError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The checkpoint of the highest step in `dir`, if any.
pub fn newest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CheckpointError::Io {
        path: dir.into(),
        source,
    })?;
    let step_of = |name: &str| {
        name.strip_prefix(PREFIX)?
            .strip_suffix(SUFFIX)?
            .parse::<u64>()
            .ok()
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((step_of(e.file_name().to_str()?)?, e.path())))
        .max_by_key(|(step, _)| *step)
        .map(|(_, path)| path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_the_highest_step() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_checkpoint(dir.path()).unwrap(), None);
        for step in [5, 40, 7] {
            std::fs::write(checkpoint_path(dir.path(), step), b"").unwrap();
        }
        std::fs::write(dir.path().join("checkpoint_x.chk"), b"").unwrap();
        assert_eq!(
            newest_checkpoint(dir.path()).unwrap(),
            Some(checkpoint_path(dir.path(), 40))
        );
    }
}
