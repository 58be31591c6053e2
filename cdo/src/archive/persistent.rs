//! The archive in persistent memory: each CDO is a named persistent object
//! of an NVDIMM space ([`mamba::pmem`]), written, flushed, and found again
//! by name after the process is gone.
//!
//! ## Layout
//!
//! The CDO `a/b` with generation `g` is the object `c-<stem>.<g>`, where
//! the stem keeps the name's bytes `A-Z a-z 0-9 -` and writes every other
//! byte as `_XX` (upper-case hex). Its data is the name's length (8 bytes,
//! little-endian), the name, the attributes' JSON length and the JSON,
//! then the CDO's bytes.
//!
//! ## Atomicity
//!
//! [`PersistentArchive::store`] writes the next generation as a new object
//! and flushes it (the object's header, made durable after the data,
//! vouches for it), then removes the older generations. A reader takes the
//! newest generation that reopens whole: a store cut short leaves a torn
//! object, which [`mamba::pmem::PmemSpace::open`] refuses, and the previous
//! generation is read instead.
//!
//! ```
//! use cdo::archive::PersistentArchive;
//! use cdo::FlatAttributes;
//! use mamba::pmem::PmemSpace;
//!
//! let dir = tempfile::tempdir()?;
//! let archive = PersistentArchive::new(PmemSpace::new(dir.path())?);
//! archive.store("run1/checkpoint/40", &FlatAttributes::new(), &[1, 2, 3])?;
//! drop(archive);
//! let again = PersistentArchive::new(PmemSpace::new(dir.path())?);
//! assert_eq!(again.load("run1/checkpoint/40")?.expect("stored").data, [1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{check_value, name, ArchiveError, Archived, Flushed, Result, Stored};
use crate::attrs::FlatAttributes;
use mamba::pmem::PmemSpace;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Prefix of every object of the archive.
const PREFIX: &str = "c-";

/// A CDO archive held in persistent memory.
#[derive(Debug, Clone)]
pub struct PersistentArchive {
    space: PmemSpace,
}

/// The object stem of a CDO name.
fn stem(name: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + name.len());
    out.push_str(PREFIX);
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// The CDO name and generation of an object name, when it is one of the
/// archive's.
fn parse(object: &str) -> Option<(String, u64)> {
    let (stem, generation) = object.strip_prefix(PREFIX)?.rsplit_once('.')?;
    let generation = generation.parse().ok()?;
    let mut bytes = Vec::with_capacity(stem.len());
    let mut rest = stem.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    Some((String::from_utf8(bytes).ok()?, generation))
}

/// Splits `len`-prefixed fields off `bytes`.
fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let rest = &bytes[8..];
    Some((rest.get(..len)?, &rest[len..]))
}

impl PersistentArchive {
    /// The archive held in `space` (for instance
    /// `mamba.persistent_objects(nvdimm_space)`).
    pub fn new(space: PmemSpace) -> Self {
        PersistentArchive { space }
    }

    /// The persistent-memory space.
    pub fn space(&self) -> &PmemSpace {
        &self.space
    }

    /// Generations of each stored CDO, oldest first.
    fn generations(&self) -> Result<BTreeMap<String, Vec<u64>>> {
        let mut all: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for object in self.space.names()? {
            if let Some((name, generation)) = parse(&object) {
                all.entry(name).or_default().push(generation);
            }
        }
        for generations in all.values_mut() {
            generations.sort_unstable();
        }
        Ok(all)
    }

    fn generations_of(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self.generations()?.remove(name).unwrap_or_default())
    }

    /// Stores `data` with `attributes` under `name`, replacing what was
    /// stored under it; returns the object's file and how the flush
    /// reached the media ([`Flushed::Msync`] where there is no real NVDIMM,
    /// [`Flushed::CacheLines`] on fsdax with `MAP_SYNC`).
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::BadAttribute`] (a
    /// non-finite float), [`ArchiveError::Persistent`] (the object could
    /// not be created or flushed; what was stored stays readable).
    pub fn store(&self, name: &str, attributes: &FlatAttributes, data: &[u8]) -> Result<Stored> {
        name::encode(name)?;
        for (key, value) in attributes {
            check_value(name, key, value)?;
        }
        let json = serde_json::to_vec(attributes).map_err(|e| ArchiveError::BadAttribute {
            name: name.into(),
            key: String::new(),
            reason: if e.is_data() {
                "not representable as JSON"
            } else {
                "cannot be written"
            },
        })?;
        let older = self.generations_of(name)?;
        let generation = older.last().map_or(0, |g| g + 1);
        let mut record = Vec::with_capacity(16 + name.len() + json.len() + data.len());
        for part in [name.as_bytes(), &json] {
            record.extend_from_slice(&(part.len() as u64).to_le_bytes());
            record.extend_from_slice(part);
        }
        record.extend_from_slice(data);
        let object_name = format!("{}.{generation}", stem(name));
        let mut object = self.space.create(&object_name, record.len())?;
        object.as_mut_slice().copy_from_slice(&record);
        if let Err(e) = object.flush() {
            drop(object);
            // Best effort: the flush error is the one that matters.
            let _ = self.space.remove(&object_name);
            return Err(e.into());
        }
        let stored = Stored {
            path: object.path().to_owned(),
            flushed: Flushed::from(object.flush_mode()),
        };
        for g in older {
            self.space.remove(&format!("{}.{g}", stem(name)))?;
        }
        Ok(stored)
    }

    /// The file of the newest generation of `name` (of its first when
    /// none is stored).
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::Persistent`].
    pub fn object_path(&self, name: &str) -> Result<PathBuf> {
        name::encode(name)?;
        let generation = self.generations_of(name)?.last().copied().unwrap_or(0);
        Ok(self
            .space
            .path_of(&format!("{}.{generation}", stem(name)))?)
    }

    /// Whether a generation of `name` is stored (its contents are checked
    /// by [`PersistentArchive::load`]).
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::Persistent`].
    pub fn contains(&self, name: &str) -> Result<bool> {
        name::encode(name)?;
        Ok(!self.generations_of(name)?.is_empty())
    }

    /// The CDO stored under `name` (its newest generation that reopens
    /// whole), `None` when there is none.
    ///
    /// # Errors
    /// [`ArchiveError::BadName`]; [`ArchiveError::Corrupt`] when every
    /// generation is torn or its record unreadable;
    /// [`ArchiveError::Persistent`] for other failures to reopen.
    pub fn load(&self, name: &str) -> Result<Option<Archived>> {
        name::encode(name)?;
        let mut last_reason = None;
        for generation in self.generations_of(name)?.into_iter().rev() {
            let object_name = format!("{}.{generation}", stem(name));
            let object = match self.space.open(&object_name) {
                Ok(object) => object,
                Err(mamba::Error::TornObject { reason, .. }) => {
                    last_reason = Some((object_name, reason));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let bytes = object.as_slice();
            let decoded = field(bytes).and_then(|(stored, rest)| {
                let (json, data) = field(rest)?;
                let attributes: FlatAttributes = serde_json::from_slice(json).ok()?;
                (stored == name.as_bytes()).then(|| (attributes, data.to_vec()))
            });
            match decoded {
                Some((attributes, data)) => {
                    return Ok(Some(Archived {
                        name: name.to_owned(),
                        attributes,
                        data,
                    }))
                }
                None => last_reason = Some((object_name, "unreadable record".into())),
            }
        }
        match last_reason {
            None => Ok(None),
            Some((object, reason)) => Err(ArchiveError::Corrupt {
                name: name.into(),
                path: self.space.dir().join(object),
                reason,
            }),
        }
    }

    /// The names of the stored CDOs, sorted.
    ///
    /// # Errors
    /// [`ArchiveError::Persistent`] when the space cannot be listed.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.generations()?.into_keys().collect())
    }

    /// Removes every generation of `name`; false when there was none.
    ///
    /// # Errors
    /// [`ArchiveError::BadName`], [`ArchiveError::Persistent`].
    pub fn remove(&self, name: &str) -> Result<bool> {
        name::encode(name)?;
        let generations = self.generations_of(name)?;
        for g in &generations {
            self.space.remove(&format!("{}.{g}", stem(name)))?;
        }
        Ok(!generations.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip_and_stay_in_the_allowed_alphabet() {
        for name in ["run1/checkpoint/40", "a_b.c/d-e", "ünï/çødé", "x"] {
            let object = format!("{}.7", stem(name));
            assert!(object
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            assert_eq!(parse(&object), Some((name.to_owned(), 7)));
        }
        assert_eq!(parse("other.3"), None);
        assert_eq!(parse("c-a_2"), None);
        assert_eq!(parse("c-a_2.1"), None);
    }
}
