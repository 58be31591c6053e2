//! A shared, writable file mapping that asks for `MAP_SYNC` first.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// The mapping of a whole file.
#[derive(Debug)]
pub(super) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    map_sync: bool,
}

// SAFETY: the mapping is plain memory owned by this value; access goes
// through `&self`/`&mut self` like a `Vec<u8>`.
unsafe impl Send for SharedMap {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` (its whole length) shared.
    pub(super) fn new(file: &File, len: usize) -> Result<SharedMap> {
        let map = |flags: libc::c_int| {
            // SAFETY: a fresh mapping at an address of the kernel's choice
            // cannot alias any Rust object; the file is ours and its length
            // stays fixed while mapped.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    file.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(p)
            }
        };
        let (p, map_sync) = match map(libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC) {
            Ok(p) => (p, true),
            // No DAX on this file system: MAP_SYNC is refused.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                tracing::debug!("no MAP_SYNC here: persistent objects flush with msync");
                (
                    map(libc::MAP_SHARED).map_err(|e| Error::os("mmap", e))?,
                    false,
                )
            }
            Err(e) => return Err(Error::os("mmap", e)),
        };
        let ptr = NonNull::new(p.cast()).ok_or_else(|| Error::last_os("mmap"))?;
        Ok(SharedMap { ptr, len, map_sync })
    }

    pub(super) fn map_sync(&self) -> bool {
        self.map_sync
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, and file-backed
        // pages always hold initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, writable, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Makes `offset..offset+len` durable (`msync(MS_SYNC)` over the pages
    /// covering it; on a `MAP_SYNC` mapping this flushes CPU caches).
    pub(super) fn sync(&self, offset: usize, len: usize) -> Result<()> {
        let page = crate::sys::page_size();
        let start = offset / page * page;
        let end = (offset + len).min(self.len);
        // SAFETY: the page-aligned range lies inside our mapping; msync
        // does not change its contents.
        let rc = unsafe {
            libc::msync(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                libc::MS_SYNC,
            )
        };
        if rc != 0 {
            return Err(Error::last_os("msync"));
        }
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: nothing borrows the mapping once its owner is dropped.
        if unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) } != 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "unmapping a persistent object");
        }
    }
}
