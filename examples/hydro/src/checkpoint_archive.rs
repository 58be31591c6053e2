//! Checkpoints in a [`cdo::archive::Archive`], on the SSD tier by default:
//! one entry per checkpoint CDO `hydro/checkpoint/<step>`, its bytes in
//! the [checkpoint format](crate::checkpoint), its attributes those of the
//! CDO (`checkpoint` priority, `hydro.step`, `hydro.time`, ...). Whoever
//! receives a checkpoint CDO (an archiver in this process or another)
//! stores its bytes and flat attributes as they are; `--restart` continues
//! from the highest step.

use std::path::{Path, PathBuf};

use cdo::archive::Archive;
use mamba::{Backing, Mamba, Tier};

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointRef};
use crate::record::RecordMeta;
use crate::transit::attributes::checkpoint_attributes;
use crate::transit::{checkpoint_name, checkpoint_step};

/// The archive directory's name in an SSD directory.
const ON_SSD: &str = "hydro-archive";

/// Where checkpoints are archived: `flag` (`--archive`), else
/// `hydro-archive` in the directory of the first SSD space of `mamba`,
/// else `archive` in the output directory; logs the choice.
pub fn archive_dir(flag: Option<&Path>, mamba: Option<&Mamba>, output: &Path) -> PathBuf {
    if let Some(dir) = flag {
        tracing::info!(dir = %dir.display(), "checkpoint archive (--archive)");
        return dir.into();
    }
    let ssd = mamba.and_then(|m| {
        m.spaces().find_map(|s| match (&s.tier, &s.backing) {
            (Tier::Ssd, Backing::Directory { path }) => Some((s.name.clone(), path.join(ON_SSD))),
            _ => None,
        })
    });
    match ssd {
        Some((space, dir)) => {
            tracing::info!(dir = %dir.display(), space, "checkpoint archive on the SSD tier");
            dir
        }
        None => {
            let dir = output.join("archive");
            tracing::info!(dir = %dir.display(), "checkpoint archive in the output directory (mamba has no SSD space)");
            dir
        }
    }
}

/// Archives `checkpoint`, the state the record `meta` describes, as the
/// checkpoint CDO would be archived; returns its data file.
///
/// # Errors
/// [`CheckpointError::Archive`] when it cannot be stored.
pub fn store(
    archive: &Archive,
    meta: &RecordMeta,
    checkpoint: CheckpointRef<'_>,
) -> Result<PathBuf, CheckpointError> {
    let name = checkpoint_name(meta.step);
    let mut bytes = Vec::with_capacity(checkpoint.encoded_len());
    checkpoint
        .encode(&mut bytes)
        .map_err(|source| CheckpointError::Io {
            path: name.clone().into(),
            source,
        })?;
    let attrs = checkpoint_attributes(meta, bytes.len()).flatten();
    Ok(archive.store(&name, &attrs, &bytes)?.path)
}

/// The checkpoint of the highest step in `archive`, with its data file;
/// `None` when it holds none.
///
/// # Errors
/// When the archive cannot be read or the entry is not a checkpoint.
pub fn newest(archive: &Archive) -> Result<Option<(PathBuf, Checkpoint)>, CheckpointError> {
    let names = archive.names()?;
    let Some(name) = names
        .iter()
        .filter_map(|n| Some((checkpoint_step(n)?, n)))
        .max()
    else {
        return Ok(None);
    };
    let name = name.1;
    let path = archive.data_path(name)?;
    let entry = archive
        .load(name)?
        .ok_or_else(|| CheckpointError::Corrupt {
            path: path.clone(),
            reason: "removed while reading".into(),
        })?;
    let checkpoint = Checkpoint::from_bytes(&entry.data, &path)?;
    Ok(Some((path, checkpoint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::state::State;

    #[test]
    fn the_newest_is_the_highest_step() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        assert!(newest(&archive).unwrap().is_none());
        let params = Params {
            nx: 3,
            ny: 2,
            ..Params::default()
        };
        let state = State::new(3, 2);
        for step in [5, 40, 7] {
            let meta = RecordMeta {
                step,
                time: step as f64,
                dt: 0.5,
                producer: 0,
                nx: 3,
                ny: 2,
                dx: 1.0,
            };
            let checkpoint = CheckpointRef {
                params: &params,
                state: &state,
                step,
                time: meta.time,
                dt: meta.dt,
            };
            store(&archive, &meta, checkpoint).unwrap();
        }
        archive
            .store("hydro/checkpoint/x", &Default::default(), b"")
            .unwrap();
        let (path, checkpoint) = newest(&archive).unwrap().unwrap();
        assert_eq!(path, archive.data_path(&checkpoint_name(40)).unwrap());
        assert_eq!((checkpoint.step, checkpoint.time), (40, 40.0));
    }
}
