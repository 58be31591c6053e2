//! Persistent memory that persists: named objects in an NVDIMM directory
//! (an fsdax mount, or any directory emulating one) that survive the
//! process.
//!
//! An object is a file `<name>.pmem`: a 4 KiB header (magic, version,
//! data length, a checksum of the data as of the last flush, a flush
//! count, and a checksum of the header itself) followed by the data,
//! mapped shared. [`PmemObject::flush`] makes the data durable, then
//! writes and makes durable the header that vouches for it; reopening by
//! name ([`PmemSpace::open`]) checks both checksums, so an object whose
//! data changed after its last flush, or whose flush was cut short, is
//! reported as [`Error::TornObject`] instead of being returned.
//!
//! The mapping asks for `MAP_SYNC` (file-system metadata durable on page
//! fault, so a CPU cache flush is enough: real fsdax persistent memory);
//! where the file system does not support it (page-cache file systems, no
//! NVDIMM) it falls back to a plain shared mapping whose flush is `msync`,
//! and [`PmemObject::flush_mode`] says which.
//!
//! ```
//! use mamba::pmem::PmemSpace;
//! let dir = tempfile::tempdir().unwrap();
//! let space = PmemSpace::new(dir.path())?;
//! let mut obj = space.create("state", 100)?;
//! obj.as_mut_slice()[..5].copy_from_slice(b"hello");
//! obj.flush()?;
//! drop(obj);
//! let again = space.open("state")?;
//! assert_eq!(&again.as_slice()[..5], b"hello");
//! # Ok::<(), mamba::Error>(())
//! ```

mod map;

use crate::error::{Error, Result};
use map::SharedMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Bytes before the data (one page, so the data is page-aligned).
const HEADER: usize = 4096;
const MAGIC: [u8; 8] = *b"MAMBAPM\x01";
const VERSION: u32 = 1;

/// How a flush reaches the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// The file is mapped with `MAP_SYNC` (fsdax persistent memory).
    MapSync,
    /// A shared page-cache mapping flushed with `msync` (no NVDIMM, or a
    /// file system without DAX).
    Msync,
}

impl std::fmt::Display for FlushMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlushMode::MapSync => "MAP_SYNC",
            FlushMode::Msync => "msync (emulated persistent memory)",
        })
    }
}

/// A directory holding persistent objects.
#[derive(Debug, Clone)]
pub struct PmemSpace {
    dir: PathBuf,
}

impl PmemSpace {
    /// A space over an existing, writable directory.
    ///
    /// # Errors
    /// [`Error::BadDirectory`].
    pub fn new(dir: &Path) -> Result<Self> {
        // Same checks as every directory tier.
        crate::provider::FileProvider::new(dir)?;
        Ok(PmemSpace {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of object `name`, whether it exists or not.
    ///
    /// # Errors
    /// [`Error::Config`] for a name other than letters, digits, `.`, `_`
    /// and `-` (not starting with `.`).
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.starts_with('.');
        if !ok {
            return Err(Error::Config(format!(
                "persistent object name {name:?}: use letters, digits, '.', '_' and '-'"
            )));
        }
        Ok(self.dir.join(format!("{name}.pmem")))
    }

    /// Creates object `name` of `len` zero bytes (its blocks allocated up
    /// front) and flushes it once, so it reopens as a valid empty object.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad name, [`Error::ZeroSize`],
    /// [`Error::Os`] when it exists, [`Error::Exhausted`] for a full file
    /// system.
    pub fn create(&self, name: &str, len: usize) -> Result<PmemObject> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        let path = self.path_of(name)?;
        let total = len
            .checked_add(HEADER)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or(Error::SizeTooLarge { size: len })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::os("open", e))?;
        let made = crate::provider::allocate_file(&file, total)
            .and_then(|()| SharedMap::new(&file, total));
        let map = match made {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let mut obj = PmemObject {
            name: name.to_owned(),
            path,
            len,
            flushes: 0,
            map,
        };
        obj.flush()?;
        Ok(obj)
    }

    /// Reopens object `name` and checks it.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`]; [`Error::TornObject`] when the header is
    /// damaged or the data differs from what the last flush vouched for.
    pub fn open(&self, name: &str) -> Result<PmemObject> {
        let path = self.path_of(name)?;
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ObjectNotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => return Err(Error::os("open", e)),
        };
        let torn = |reason: String| Error::TornObject {
            name: name.to_owned(),
            reason,
        };
        let size = file.metadata().map_err(|e| Error::os("fstat", e))?.len() as usize;
        if size < HEADER {
            return Err(torn(format!("{size} bytes: shorter than its header")));
        }
        let map = SharedMap::new(&file, size)?;
        let header = Header::decode(&map.bytes()[..HEADER]).map_err(torn)?;
        if header.len + HEADER != size {
            return Err(torn(format!(
                "header says {} data bytes, the file holds {}",
                header.len,
                size - HEADER
            )));
        }
        let sum = checksum(&map.bytes()[HEADER..]);
        if sum != header.checksum {
            return Err(torn(format!(
                "the data changed after flush {} (checksum {sum:#018x}, flushed {:#018x})",
                header.flushes, header.checksum
            )));
        }
        Ok(PmemObject {
            name: name.to_owned(),
            path,
            len: header.len,
            flushes: header.flushes,
            map,
        })
    }

    /// Deletes object `name`.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`], or the system's error.
    pub fn remove(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.path_of(name)?) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ObjectNotFound {
                name: name.to_owned(),
            }),
            other => other.map_err(|e| Error::os("unlink", e)),
        }
    }

    /// Names of the objects in the space, sorted.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::os("readdir", e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".pmem").map(str::to_owned)
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A named persistent object, mapped. Dropping it closes it without a
/// flush: changes since the last [`PmemObject::flush`] make the object
/// read as torn on reopening.
#[derive(Debug)]
pub struct PmemObject {
    name: String,
    path: PathBuf,
    len: usize,
    flushes: u64,
    map: SharedMap,
}

impl PmemObject {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no data (never: objects have at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes so far, over the object's whole life.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// How a flush reaches the media.
    pub fn flush_mode(&self) -> FlushMode {
        if self.map.map_sync() {
            FlushMode::MapSync
        } else {
            FlushMode::Msync
        }
    }

    /// The data.
    pub fn as_slice(&self) -> &[u8] {
        &self.map.bytes()[HEADER..]
    }

    /// The data, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map.bytes_mut()[HEADER..]
    }

    /// Makes the data durable, then the header that vouches for it.
    ///
    /// # Errors
    /// The system's refusal of `msync`.
    pub fn flush(&mut self) -> Result<()> {
        self.map.sync(HEADER, self.len)?;
        let header = Header {
            len: self.len,
            checksum: checksum(self.as_slice()),
            flushes: self.flushes + 1,
        };
        header.encode(&mut self.map.bytes_mut()[..HEADER]);
        self.map.sync(0, HEADER)?;
        self.flushes += 1;
        Ok(())
    }
}

/// The decoded header.
struct Header {
    len: usize,
    checksum: u64,
    flushes: u64,
}

/// Header field offsets: magic 0..8, version 8..12, reserved 12..16,
/// length 16..24, data checksum 24..32, flushes 32..40, header checksum
/// 40..48.
const SEALED: usize = 40;

impl Header {
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].fill(0);
        out[16..24].copy_from_slice(&(self.len as u64).to_le_bytes());
        out[24..32].copy_from_slice(&self.checksum.to_le_bytes());
        out[32..40].copy_from_slice(&self.flushes.to_le_bytes());
        let seal = checksum(&out[..SEALED]);
        out[SEALED..SEALED + 8].copy_from_slice(&seal.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Header, String> {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if bytes[..8] != MAGIC {
            return Err("no persistent-object header (bad magic)".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!(
                "format version {version}, this build reads {VERSION}"
            ));
        }
        if checksum(&bytes[..SEALED]) != word(SEALED) {
            return Err("the header is damaged (its checksum does not match)".into());
        }
        Ok(Header {
            len: usize::try_from(word(16)).map_err(|_| "length out of range".to_string())?,
            checksum: word(24),
            flushes: word(32),
        })
    }
}

/// FNV-1a over 64-bit little-endian words (the tail zero-padded), with the
/// length mixed in: detects changed, swapped and truncated data.
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(PRIME);
        h ^= h >> 29;
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(PRIME);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
