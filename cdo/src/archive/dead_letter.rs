//! Dead letters: the records an archive refused, set aside under its
//! `.dead-letter` directory as a JSON note (name, attributes, why) and, if
//! given, a copy of the bytes, each under a name of its own (never derived
//! from the CDO name). Both backends keep them there, as plain files.

use super::{io_error, write_synced, ArchiveError, Result, DATA, META};
use crate::attrs::FlatAttributes;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of the dead letters, under the archive's.
const DEAD_LETTERS: &str = ".dead-letter";

/// A record set aside: the note [`Archive::dead_letter`](super::Archive::dead_letter)
/// wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The CDO name, as the record had it.
    pub name: String,
    /// Why it was set aside.
    pub reason: String,
    /// Its attributes (a non-finite float reads back as `null`).
    pub attributes: serde_json::Value,
    /// Where a copy of its bytes lies, if one was kept.
    pub data: Option<PathBuf>,
}

/// Writes the note (and the copy of `data`) of a refused record under
/// `root`'s dead-letter directory; returns the note's path.
pub(super) fn write(
    root: &Path,
    name: &str,
    attributes: &FlatAttributes,
    data: Option<&[u8]>,
    reason: &str,
) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = root.join(DEAD_LETTERS);
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stem = format!(
        "{}-{}-{}",
        since_epoch.as_nanos(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let copy = match data {
        Some(bytes) => {
            let path = dir.join(format!("{stem}.{DATA}"));
            write_synced(&path, bytes)?;
            Some(path)
        }
        None => None,
    };
    let note_path = dir.join(format!("{stem}.{META}"));
    let note = DeadLetter {
        name: name.to_owned(),
        reason: reason.to_owned(),
        // serde_json writes a non-finite float as null, never fails.
        attributes: serde_json::to_value(attributes).unwrap_or_default(),
        data: copy,
    };
    let json = serde_json::to_vec_pretty(&note).map_err(|e| io_error(&note_path)(e.into()))?;
    write_synced(&note_path, &json)?;
    Ok(note_path)
}

/// The dead letters under `root`, oldest first.
pub(super) fn list(root: &Path) -> Result<Vec<DeadLetter>> {
    let dir = root.join(DEAD_LETTERS);
    let mut notes: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(it) => it
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(io_error(&dir))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(&dir)(e)),
    };
    notes.retain(|p| p.extension().is_some_and(|x| x == META));
    // Named `<ns since the epoch>-<pid>-<count>`: oldest first.
    notes.sort_by_key(|p| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let mut fields = stem.split('-').map(|f| f.parse::<u128>().ok());
        (fields.next().flatten(), fields.nth(1).flatten())
    });
    notes
        .into_iter()
        .map(|path| {
            let json = fs::read(&path).map_err(io_error(&path))?;
            serde_json::from_slice(&json).map_err(|e| ArchiveError::Corrupt {
                name: String::new(),
                path,
                reason: format!("unreadable dead letter: {e}"),
            })
        })
        .collect()
}
