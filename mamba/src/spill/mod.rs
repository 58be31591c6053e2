//! SSD spill: data kept on the disk itself, not in the page cache.
//!
//! A [`SpillFile`] is a named file in a directory, its blocks allocated up
//! front with `fallocate` (a full disk is an [`Error::Exhausted`] when the
//! file is made, never a `SIGBUS` later), opened with `O_DIRECT` and moved
//! through aligned bounce buffers by io_uring or, where the kernel offers
//! no ring, by `pread`/`pwrite`. It is not CPU-addressable memory: data
//! goes in with [`SpillFile::write`] and comes back with
//! [`SpillFile::read`], at any offset and length (unaligned edges are read,
//! patched and written back). [`SpillFile::stage_out`] and
//! [`SpillFile::stage_in`] move the bytes of a host allocation.
//!
//! On a file system without `O_DIRECT` the file is opened buffered and
//! [`SpillFile::io`] says so ([`SpillIo::direct`] is false).
//!
//! ```
//! use mamba::spill::SpillFile;
//! let dir = tempfile::tempdir().unwrap();
//! let spill = SpillFile::create(dir.path(), "halo", 1 << 20, None)?;
//! spill.write(4093, b"cold data")?;
//! let mut back = [0u8; 9];
//! spill.read(4093, &mut back)?;
//! assert_eq!(&back, b"cold data");
//! println!("{}", spill.io()); // e.g. O_DIRECT/io_uring
//! # Ok::<(), mamba::Error>(())
//! ```

mod engine;

pub use engine::IoEngine;

use crate::allocation::Allocation;
use crate::error::{Error, Result};
use engine::{Dir, Engine};
use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Alignment and size unit of direct transfers (covers 512-byte and
/// 4 KiB logical blocks).
pub const BLOCK: usize = 4096;

/// Largest bounce buffer of one transfer.
const WINDOW: usize = 1 << 20;

/// How a spill file reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpillIo {
    /// The system interface of reads and writes.
    pub engine: IoEngine,
    /// Whether the file bypasses the page cache (`O_DIRECT`); false where
    /// the file system refused it.
    pub direct: bool,
}

impl std::fmt::Display for SpillIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.direct { "O_DIRECT" } else { "buffered" };
        write!(f, "{mode}/{}", self.engine.name())
    }
}

/// A named, preallocated file on a disk, read and written by offset. The
/// file is removed when the handle is dropped.
#[derive(Debug)]
pub struct SpillFile {
    file: File,
    path: PathBuf,
    capacity: usize,
    engine: Engine,
    direct: bool,
}

impl SpillFile {
    /// Creates `<name>.spill` in `dir` with `capacity` bytes of disk
    /// blocks (rounded up to [`BLOCK`]), using `engine` (`None`: io_uring
    /// where available, else `pread`).
    ///
    /// # Errors
    /// [`Error::Config`] for a name that is empty or holds a `/`;
    /// [`Error::Exhausted`] when the file system has no room;
    /// [`Error::Os`] when the file exists or cannot be made, or the engine
    /// asked for is unavailable.
    pub fn create(
        dir: &Path,
        name: &str,
        capacity: usize,
        engine: Option<IoEngine>,
    ) -> Result<SpillFile> {
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(Error::Config(format!("spill file name {name:?}")));
        }
        let capacity = capacity
            .checked_next_multiple_of(BLOCK)
            .filter(|&c| c > 0 && c <= isize::MAX as usize)
            .ok_or(Error::SizeTooLarge { size: capacity })?;
        let path = dir.join(format!("{name}.spill"));
        let engine = Engine::open(engine).map_err(|e| Error::os("io_uring_setup", e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::os("open", e))?;
        let direct = match set_direct(&file) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(path = %path.display(), "no O_DIRECT on this file system: the spill file goes through the page cache");
                false
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(Error::os("fcntl(O_DIRECT)", e));
            }
        };
        if let Err(e) = crate::provider::allocate_file(&file, capacity) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(SpillFile {
            file,
            path,
            capacity,
            engine,
            direct,
        })
    }

    /// Bytes the file holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it reaches the disk.
    pub fn io(&self) -> SpillIo {
        SpillIo {
            engine: self.engine.kind(),
            direct: self.direct,
        }
    }

    /// Writes `bytes` at `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the capacity; the system's error
    /// ([`Error::Exhausted`] for a full disk under a sparse file).
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.windows(offset, bytes.len(), |bounce, win, data| {
            let (lo, hi) = data;
            if lo > 0 || hi < bounce.len() {
                // A partial edge: keep the bytes around it.
                self.io_block(Dir::Read, bounce, win)?;
            }
            let from = win + lo - offset;
            bounce[lo..hi].copy_from_slice(&bytes[from..from + hi - lo]);
            self.io_block(Dir::Write, bounce, win)
        })
    }

    /// Reads `buf.len()` bytes at `offset` (zeros where nothing was
    /// written).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the capacity; the system's error.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.windows(offset, buf.len(), |bounce, win, (lo, hi)| {
            self.io_block(Dir::Read, bounce, win)?;
            let to = win + lo - offset;
            buf[to..to + hi - lo].copy_from_slice(&bounce[lo..hi]);
            Ok(())
        })
    }

    /// Writes the bytes of a host allocation at `offset`.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory, else as
    /// [`SpillFile::write`].
    pub fn stage_out(&self, offset: usize, src: &Allocation<'_>) -> Result<()> {
        self.write(offset, src.as_slice()?)
    }

    /// Fills a host allocation with the bytes at `offset`.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory, else as
    /// [`SpillFile::read`].
    pub fn stage_in(&self, offset: usize, dst: &mut Allocation<'_>) -> Result<()> {
        self.read(offset, dst.as_mut_slice()?)
    }

    /// Runs `step(bounce, window_offset, (lo, hi))` over the block-aligned
    /// windows covering `offset..offset+len`, where `lo..hi` is the part of
    /// the bounce buffer holding the caller's bytes.
    fn windows(
        &self,
        offset: usize,
        len: usize,
        mut step: impl FnMut(&mut [u8], usize, (usize, usize)) -> Result<()>,
    ) -> Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.capacity)
            .ok_or_else(|| Error::OutOfBounds {
                requested: offset.saturating_add(len),
                available: self.capacity,
            })?;
        if len == 0 {
            return Ok(());
        }
        let first = offset / BLOCK * BLOCK;
        let last = end.next_multiple_of(BLOCK);
        let mut bounce = Bounce::new((last - first).min(WINDOW));
        let mut win = first;
        while win < last {
            let win_end = (win + WINDOW).min(last);
            let lo = offset.max(win) - win;
            let hi = end.min(win_end) - win;
            step(&mut bounce.as_mut()[..win_end - win], win, (lo, hi))?;
            win = win_end;
        }
        Ok(())
    }

    /// Moves a block-aligned bounce buffer to or from the file.
    fn io_block(&self, dir: Dir, bounce: &mut [u8], offset: usize) -> Result<()> {
        // SAFETY: `bounce` is an exclusively borrowed, block-aligned buffer
        // of its length, valid in both directions.
        unsafe {
            self.engine.transfer_all(
                self.file.as_raw_fd(),
                dir,
                bounce.as_mut_ptr(),
                bounce.len(),
                offset as u64,
            )
        }
        .map_err(|e| {
            Error::os(
                match dir {
                    Dir::Read => "spill read",
                    Dir::Write => "spill write",
                },
                e,
            )
        })
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing a spill file");
        }
    }
}

/// Switches an open file to `O_DIRECT` (`EINVAL` where the file system
/// refuses it).
fn set_direct(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A zeroed, [`BLOCK`]-aligned heap buffer.
struct Bounce {
    ptr: std::ptr::NonNull<u8>,
    layout: Layout,
}

impl Bounce {
    fn new(len: usize) -> Bounce {
        let layout = Layout::from_size_align(len.max(BLOCK), BLOCK).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Bounce { ptr, layout }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the buffer is ours, initialised (zeroed) and `size` long.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
pub(crate) mod tests;
