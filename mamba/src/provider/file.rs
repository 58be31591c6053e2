//! File-backed memory: files in a directory, allocated on disk up front
//! and mapped shared (SSD tiers, fsdax persistent memory).

use super::{Access, Chunk, Provider};
use crate::error::{Error, Result};
use memmap2::MmapMut;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Each chunk is a file `mamba-<pid>-<n>.chunk` in the directory, its
/// blocks allocated with `fallocate` (so that a full disk is an
/// [`Error::Exhausted`] at allocation, not a `SIGBUS` at first write to a
/// sparse hole), mapped read-write and removed when the chunk is released
/// (or, for a crashed process, left for an operator to clean up: the name
/// says whose it was). On a file system without `fallocate` the file is
/// sparse.
#[derive(Debug)]
pub struct FileProvider {
    dir: PathBuf,
    maps: Mutex<HashMap<usize, (MmapMut, PathBuf)>>,
}

impl FileProvider {
    /// Checks that `dir` exists, is a directory and is writable.
    pub fn new(dir: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadDirectory {
            path: dir.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(dir).map_err(|e| bad(format!("cannot be read: {e}")))?;
        if !meta.is_dir() {
            return Err(bad("is not a directory".into()));
        }
        let probe = dir.join(format!(".mamba-probe-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| bad(format!("is not writable: {e}")))?;
        let _ = std::fs::remove_file(&probe);
        Ok(FileProvider {
            dir: dir.to_owned(),
            maps: Mutex::new(HashMap::new()),
        })
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of free space the file system reports for the directory.
    pub fn filesystem_free(dir: &Path) -> Option<usize> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: statvfs writes into `st` and reads the NUL-terminated path.
        if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        Some((st.f_bavail as u128 * st.f_frsize as u128).min(usize::MAX as u128) as usize)
    }
}

/// Gives the fresh file `len` bytes of disk blocks; a sparse length where
/// the file system cannot allocate ahead.
pub(crate) fn allocate_file(file: &std::fs::File, len: usize) -> Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::off_t::try_from(len).map_err(|_| Error::SizeTooLarge { size: len })?;
    // SAFETY: fallocate on a descriptor we own; it touches no memory.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(Error::os("fallocate", e));
    }
    tracing::debug!("no fallocate on this file system: the chunk file is sparse");
    file.set_len(len as u64)
        .map_err(|source| Error::os("ftruncate", source))
}

impl Provider for FileProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        // Numbered across the process: providers may share a directory.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("mamba-{}-{n}.chunk", std::process::id()));
        let io = |call: &'static str| move |source| Error::os(call, source);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("open"))?;
        let mapped = allocate_file(&file, len)
            // SAFETY: the file was just created by us with a unique name and
            // nobody else maps it; its length stays fixed while mapped.
            .and_then(|()| unsafe { MmapMut::map_mut(&file) }.map_err(io("mmap")));
        let map = match mapped {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let addr = map.as_ptr() as usize;
        self.maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, (map, path));
        Ok(Chunk { addr, len })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let entry = self
            .maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&chunk.addr);
        match entry {
            Some((map, path)) => {
                drop(map);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing a chunk file");
                }
            }
            None => tracing::error!(addr = chunk.addr, "release of an unknown file chunk"),
        }
    }

    fn granule(&self) -> usize {
        crate::sys::page_size()
    }

    fn host_accessible(&self) -> bool {
        true
    }

    fn access(&self) -> Option<Access> {
        Some(Access::PageCache)
    }
}

impl Drop for FileProvider {
    fn drop(&mut self) {
        let maps = std::mem::take(self.maps.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (_, (map, path)) in maps {
            drop(map);
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_allocated_files_removed_on_release() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = FileProvider::new(dir.path()).unwrap();
        let c = p.acquire(1 << 20).unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 1 << 20);
        // Disk blocks are allocated up front, not left as a hole.
        assert!(meta.blocks() * 512 >= 1 << 20, "{} blocks", meta.blocks());
        // SAFETY: the chunk is a live 1 MiB mapping of ours.
        unsafe { (c.addr as *mut u8).add(4096).write(42) };
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // SAFETY: the chunk came from `p` and is not used afterwards.
        unsafe { p.release(c) };
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn providers_sharing_a_directory_pick_distinct_files() {
        let dir = tempfile::tempdir().unwrap();
        let (p, q) = (
            FileProvider::new(dir.path()).unwrap(),
            FileProvider::new(dir.path()).unwrap(),
        );
        let (a, b) = (p.acquire(4096).unwrap(), q.acquire(4096).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // SAFETY: each chunk came from its provider and is not used afterwards.
        unsafe {
            p.release(a);
            q.release(b);
        }
    }

    #[test]
    fn missing_and_plain_file_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            FileProvider::new(&missing),
            Err(Error::BadDirectory { .. })
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = FileProvider::new(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
