//! A persistent archive of CDOs: the storage behind an archiver
//! ([`crate::app::Archiver`]: it streams offers and writes them,
//! attributes beside the data) and a librarian ([`crate::app::Librarian`]:
//! it answers requires by offering what the archive holds).
//!
//! An [`Archive`] lives in one of two [`Backend`]s: a plain directory on a
//! file tier (an SSD directory; the layout below), or a persistent-memory
//! space of mamba's [`pmem`](mamba::pmem) module (an NVDIMM fsdax mount, or
//! a directory emulating one), where each CDO is a named object, flushed
//! on store and found again by name after the process is gone
//! ([`PersistentArchive`]). [`Archive::store`] says how the bytes were
//! made durable ([`Flushed`]: `fsync` of the files, `msync` of emulated
//! persistent memory, or a cache-line flush of a `MAP_SYNC` mapping).
//!
//! ## Layout
//!
//! The CDO `a/b/c` is the directory `a/b` under the archive's directory,
//! holding `c.cdo` (the bytes) and `c.json` (the name, the flat
//! [`attributes`](crate::FlatAttributes) as `serde_json` writes them, and
//! the length and FNV-1a checksum of the bytes). Each component is
//! percent-encoded: bytes other than `A-Z a-z 0-9 - _` become `%XX`, so no
//! encoded component is `.` or `..` or holds a dot.
//!
//! ## Atomicity
//!
//! [`Archive::store`] writes both files under temporary names, syncs them,
//! renames the JSON into place, then the data: the data file marks the
//! entry complete, so an interrupted store leaves no entry that looks
//! complete (only temporary files, which [`Archive::names`] skips). A
//! re-store keeps the description of the bytes it replaces in the new JSON
//! until the new data file is in place, so a reader (or a restart after a
//! crash) finds the old entry or the new one, never a mix. One writer per
//! name at a time.
//!
//! In persistent memory, a store writes a new generation of the object and
//! flushes it before the older one goes (see [`PersistentArchive`]).
//!
//! ## Dead letters
//!
//! A record the archive refuses (a name that maps to no path, an attribute
//! JSON cannot hold, a file the system will not create) is not retried:
//! the archiver sets it aside with [`Archive::dead_letter`], a note (its
//! name, attributes and why) and a copy of its bytes under the archive's
//! `.dead-letter` directory (plain files, whatever the backend), marks it
//! done and carries on. A librarian notes there the entries it cannot serve (corrupt, or refused by the pool).
//! [`Archive::dead_letters`] lists them; no CDO name encodes to that
//! directory, so they never show among [`Archive::names`].
//!
//! ```
//! use cdo::archive::Archive;
//! use cdo::{FlatAttributes, Value};
//!
//! let dir = tempfile::tempdir()?;
//! let archive = Archive::open(dir.path().join("archive"))?;
//! let attrs = FlatAttributes::from([("priority".to_owned(), Value::Str("checkpoint".into()))]);
//! archive.store("run1/checkpoint/40", &attrs, &[1, 2, 3])?;
//! let entry = archive.load("run1/checkpoint/40")?.expect("stored");
//! assert_eq!((entry.attributes, entry.data), (attrs, vec![1, 2, 3]));
//! assert_eq!(archive.names()?, ["run1/checkpoint/40"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archiver;
mod dead_letter;
mod name;
mod persistent;

pub use archiver::{Outcome, Subsample, Tally};
pub use dead_letter::DeadLetter;
pub use persistent::PersistentArchive;

use crate::attrs::FlatAttributes;
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of an entry's data file.
const DATA: &str = "cdo";
/// Suffix of an entry's attribute file.
const META: &str = "json";

/// Why the archive could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A file or directory of the archive could not be read or written.
    #[error("archive {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A CDO name that does not map to an archive path.
    #[error("CDO name {name:?} cannot be archived: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An attribute value JSON cannot hold.
    #[error("CDO {name:?}: attribute {key:?} cannot be archived: {reason}")]
    BadAttribute {
        /// The CDO.
        name: String,
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// An entry whose files do not agree (a truncated or altered data
    /// file, unreadable attributes).
    #[error("archived CDO {name:?} at {path} is corrupt: {reason}")]
    Corrupt {
        /// The CDO.
        name: String,
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The pool failed (the archiver's consumer group).
    #[error("CDO pool: {0}")]
    Pool(#[from] crate::Error),
    /// The persistent-memory space of a [`PersistentArchive`] failed.
    #[error("persistent memory: {0}")]
    Persistent(#[from] mamba::Error),
}

/// `Result` with [`ArchiveError`].
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// One archived CDO.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    /// The CDO name.
    pub name: String,
    /// Its attributes when it was stored.
    pub attributes: FlatAttributes,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// What the JSON file says about one version of the bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Description {
    len: u64,
    fnv1a64: u64,
    attributes: FlatAttributes,
}

impl Description {
    fn describes(&self, data: &[u8]) -> bool {
        self.len == data.len() as u64 && self.fnv1a64 == fnv1a64(data)
    }
}

/// The JSON file of an entry: the bytes in place, or (during a re-store)
/// about to be; and the bytes they replace.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    name: String,
    current: Description,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Description>,
}

/// The FNV-1a 64-bit hash of `bytes`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The paths of one entry.
struct Entry {
    dir: PathBuf,
    data: PathBuf,
    meta: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.into(),
        source,
    }
}

/// The bytes of `path`; `None` when there is no such file.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// A temporary name beside `path`, unique in this process.
fn temporary(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Rejects values JSON cannot round-trip (non-finite floats).
fn check_value(name: &str, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::Float(f) if !f.is_finite() => Err(ArchiveError::BadAttribute {
            name: name.into(),
            key: key.into(),
            reason: "not a finite number",
        }),
        Value::List(items) => items.iter().try_for_each(|v| check_value(name, key, v)),
        _ => Ok(()),
    }
}

/// Where an archive keeps its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A plain directory (on the SSD tier, say): two files per entry,
    /// synced with `fsync`.
    Directory(PathBuf),
    /// A persistent-memory space ([`mamba::pmem`]): an fsdax mount of an
    /// NVDIMM, or a directory emulating one; one flushed object per entry
    /// ([`PersistentArchive`]).
    Pmem(PathBuf),
}

impl Backend {
    /// The directory the backend lives in.
    pub fn dir(&self) -> &Path {
        match self {
            Backend::Directory(dir) | Backend::Pmem(dir) => dir,
        }
    }
}

/// How a store reached durable media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flushed {
    /// A directory archive: the files and their directory synced with
    /// `fsync`.
    Fsync,
    /// Persistent memory emulated by a page-cache file system: the mapped
    /// object written back with `msync`.
    Msync,
    /// Persistent memory mapped with `MAP_SYNC` (fsdax): the CPU cache
    /// lines of the object flushed, no page cache in between.
    CacheLines,
}

impl From<mamba::pmem::FlushMode> for Flushed {
    fn from(mode: mamba::pmem::FlushMode) -> Self {
        match mode {
            mamba::pmem::FlushMode::MapSync => Flushed::CacheLines,
            mamba::pmem::FlushMode::Msync => Flushed::Msync,
        }
    }
}

impl std::fmt::Display for Flushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flushed::Fsync => "fsync",
            Flushed::Msync => "msync (emulated persistent memory)",
            Flushed::CacheLines => "cache-line flush (MAP_SYNC)",
        })
    }
}

/// What a store wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The file that holds the entry: the data file of a directory
    /// archive, the object file (header and record) in persistent memory.
    pub path: PathBuf,
    /// How it was made durable.
    pub flushed: Flushed,
}

/// An archive of CDOs, in a directory or in persistent memory
/// ([`Backend`]).
#[derive(Debug, Clone)]
pub struct Archive {
    dir: PathBuf,
    /// The entries' store when it is persistent memory (else the files
    /// under `dir`).
    pmem: Option<PersistentArchive>,
}

impl Archive {
    /// The archive in the directory `dir`, created (with its parents) if
    /// needed: [`Archive::open_backend`] with [`Backend::Directory`].
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Archive> {
        Archive::open_backend(Backend::Directory(dir.into()))
    }

    /// The archive kept by `backend`, its directory created (with its
    /// parents) if needed.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when the directory cannot be created;
    /// [`ArchiveError::Persistent`] when it cannot hold persistent objects
    /// (not writable).
    pub fn open_backend(backend: Backend) -> Result<Archive> {
        let dir = backend.dir().to_owned();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let pmem = match backend {
            Backend::Directory(_) => None,
            Backend::Pmem(_) => Some(PersistentArchive::new(mamba::pmem::PmemSpace::new(&dir)?)),
        };
        Ok(Archive { dir, pmem })
    }

    /// The backend the archive lives in.
    pub fn backend(&self) -> Backend {
        match self.pmem {
            None => Backend::Directory(self.dir.clone()),
            Some(_) => Backend::Pmem(self.dir.clone()),
        }
    }

    /// The archive's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, name: &str) -> Result<Entry> {
        let mut components = name::encode(name)?;
        let last = components.pop().unwrap_or_default();
        let dir = components.iter().fold(self.dir.clone(), |d, c| d.join(c));
        Ok(Entry {
            data: dir.join(format!("{last}.{DATA}")),
            meta: dir.join(format!("{last}.{META}")),
            dir,
        })
    }

    /// The file that holds (or would hold) the bytes of `name`: its data
    /// file in a directory; in persistent memory, the object file of its
    /// newest generation (or of its first, when none is stored).
    ///
    /// # Errors
    /// [`ArchiveError::BadName`] when `name` cannot be archived;
    /// [`ArchiveError::Persistent`] when the space cannot be listed.
    pub fn data_path(&self, name: &str) -> Result<PathBuf> {
        match &self.pmem {
            Some(pmem) => pmem.object_path(name),
            None => Ok(self.entry(name)?.data),
        }
    }

    /// Stores `data` with `attributes` under `name`, atomically, replacing
    /// what was stored under it; says where, and how it was made durable.
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::BadAttribute`] (a
    /// non-finite float), [`ArchiveError::Io`] (a directory),
    /// [`ArchiveError::Persistent`] (persistent memory).
    pub fn store(&self, name: &str, attributes: &FlatAttributes, data: &[u8]) -> Result<Stored> {
        if let Some(pmem) = &self.pmem {
            return pmem.store(name, attributes, data);
        }
        let entry = self.entry(name)?;
        for (key, value) in attributes {
            check_value(name, key, value)?;
        }
        fs::create_dir_all(&entry.dir).map_err(io_error(&entry.dir))?;
        let meta = Meta {
            name: name.to_owned(),
            current: Description {
                len: data.len() as u64,
                fnv1a64: fnv1a64(data),
                attributes: attributes.clone(),
            },
            previous: self.describe_stored(name, &entry)?,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| io_error(&entry.meta)(e.into()))?;
        let (tmp_data, tmp_meta) = (temporary(&entry.data), temporary(&entry.meta));
        let result = write_synced(&tmp_data, data)
            .and_then(|()| write_synced(&tmp_meta, &json))
            .and_then(|()| fs::rename(&tmp_meta, &entry.meta).map_err(io_error(&entry.meta)))
            .and_then(|()| fs::rename(&tmp_data, &entry.data).map_err(io_error(&entry.data)));
        if result.is_err() {
            // Best effort: the error that matters is already in `result`.
            let _ = fs::remove_file(&tmp_data);
            let _ = fs::remove_file(&tmp_meta);
        }
        result?;
        File::open(&entry.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&entry.dir))?;
        Ok(Stored {
            path: entry.data,
            flushed: Flushed::Fsync,
        })
    }

    /// The description of the bytes stored under `name` now, if any.
    fn describe_stored(&self, name: &str, entry: &Entry) -> Result<Option<Description>> {
        Ok(self
            .read_entry(name, entry)?
            .map(|(_, description)| description))
    }

    /// The bytes of `entry` and the description that matches them.
    fn read_entry(&self, name: &str, entry: &Entry) -> Result<Option<(Vec<u8>, Description)>> {
        let Some(data) = read_if_present(&entry.data)? else {
            return Ok(None);
        };
        let corrupt = |path: &Path, reason: String| ArchiveError::Corrupt {
            name: name.into(),
            path: path.into(),
            reason,
        };
        let json = read_if_present(&entry.meta)?
            .ok_or_else(|| corrupt(&entry.meta, "no attribute file".into()))?;
        let meta: Meta = serde_json::from_slice(&json)
            .map_err(|e| corrupt(&entry.meta, format!("unreadable attributes: {e}")))?;
        if meta.name != name {
            return Err(corrupt(&entry.meta, format!("holds {:?}", meta.name)));
        }
        let Meta {
            current, previous, ..
        } = meta;
        if current.describes(&data) {
            return Ok(Some((data, current)));
        }
        if let Some(previous) = previous.filter(|p| p.describes(&data)) {
            return Ok(Some((data, previous)));
        }
        let reason = if current.len == data.len() as u64 {
            "the bytes do not match their checksum".to_owned()
        } else {
            format!("{} bytes, {} expected", data.len(), current.len)
        };
        Err(corrupt(&entry.data, reason))
    }

    /// The CDO stored under `name`, `None` when there is none.
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::Io`];
    /// [`ArchiveError::Corrupt`] when the bytes are not those stored (a
    /// truncated file) or the attributes are unreadable.
    pub fn load(&self, name: &str) -> Result<Option<Archived>> {
        if let Some(pmem) = &self.pmem {
            return pmem.load(name);
        }
        let entry = self.entry(name)?;
        Ok(self
            .read_entry(name, &entry)?
            .map(|(data, description)| Archived {
                name: name.to_owned(),
                attributes: description.attributes,
                data,
            }))
    }

    /// Whether a complete entry is stored under `name` (its contents are
    /// checked by [`Archive::load`]).
    ///
    /// # Errors
    /// [`ArchiveError::BadName`]; [`ArchiveError::Persistent`] when the
    /// space cannot be listed.
    pub fn contains(&self, name: &str) -> Result<bool> {
        if let Some(pmem) = &self.pmem {
            return pmem.contains(name);
        }
        Ok(self.entry(name)?.data.is_file())
    }

    /// Removes the entry `name`; false when there was none.
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::Io`],
    /// [`ArchiveError::Persistent`].
    pub fn remove(&self, name: &str) -> Result<bool> {
        if let Some(pmem) = &self.pmem {
            return pmem.remove(name);
        }
        let entry = self.entry(name)?;
        let remove = |path: &Path| match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(path)(e)),
        };
        // The data file first: the entry stops looking complete.
        let existed = remove(&entry.data)?;
        remove(&entry.meta)?;
        Ok(existed)
    }

    /// Sets the record `name` aside as a dead letter: a note of its
    /// `attributes` and `reason`, and a copy of `data` if given, as files
    /// under the archive's `.dead-letter` directory (whatever the backend)
    /// with names of their own (never derived from `name`); returns the
    /// note's path.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when the note or the copy cannot be written.
    pub fn dead_letter(
        &self,
        name: &str,
        attributes: &FlatAttributes,
        data: Option<&[u8]>,
        reason: &str,
    ) -> Result<PathBuf> {
        dead_letter::write(&self.dir, name, attributes, data, reason)
    }

    /// The dead letters, oldest first.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when the directory or a note cannot be read;
    /// [`ArchiveError::Corrupt`] for an unreadable note.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        dead_letter::list(&self.dir)
    }

    /// The names of the complete entries, in hierarchical order (a
    /// directory's entries, then its sub-directories', each by encoded
    /// name); files the archive did not write are skipped.
    ///
    /// In persistent memory, the names sorted.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when a directory cannot be read,
    /// [`ArchiveError::Persistent`] when the space cannot be listed.
    pub fn names(&self) -> Result<Vec<String>> {
        if let Some(pmem) = &self.pmem {
            return pmem.names();
        }
        let mut names = Vec::new();
        self.collect(&self.dir, "", &mut names)?;
        Ok(names)
    }

    fn collect(&self, dir: &Path, prefix: &str, names: &mut Vec<String>) -> Result<()> {
        let mut entries = fs::read_dir(dir)
            .and_then(|it| it.collect::<io::Result<Vec<_>>>())
            .map_err(io_error(dir))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        let mut subdirs = Vec::new();
        for e in entries {
            let Ok(file) = e.file_name().into_string() else {
                continue;
            };
            let kind = e.file_type().map_err(io_error(&e.path()))?;
            if kind.is_dir() {
                if let Some(component) = name::decode(&file) {
                    subdirs.push((e.path(), format!("{prefix}{component}/")));
                }
            } else if let Some(stem) = file.strip_suffix(&format!(".{DATA}")) {
                if let Some(component) = name::decode(stem) {
                    names.push(format!("{prefix}{component}"));
                }
            }
        }
        for (path, prefix) in subdirs {
            self.collect(&path, &prefix, names)?;
        }
        Ok(())
    }
}
