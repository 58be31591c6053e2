//! SSD spill spaces: chunks that are preallocated files on the disk, read
//! and written with `O_DIRECT` (see [`crate::spill`]), not mapped.

use super::{Access, BlockIo, Chunk, Provider};
use crate::error::{Error, Result};
use crate::spill::{IoEngine, SpillFile, SpillIo, BLOCK};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Numbers the files of every spill provider of the process, so that
/// providers sharing a directory never pick the same name.
static NAMES: AtomicU64 = AtomicU64::new(0);

/// First address of the spill address space. Spill addresses name bytes
/// of spill files (chunk start plus offset); the CPU cannot load them.
const BASE: usize = 1 << 46;

/// Each chunk is a [`SpillFile`] `mamba-<pid>-<n>.spill` in the directory;
/// its bytes are reached through [`BlockIo`] (what
/// [`Allocation::write_bytes`](crate::Allocation::write_bytes) and
/// [`Allocation::read_bytes`](crate::Allocation::read_bytes) use).
#[derive(Debug)]
pub struct SpillProvider {
    dir: PathBuf,
    engine: Option<IoEngine>,
    io: SpillIo,
    next: AtomicUsize,
    files: Mutex<BTreeMap<usize, SpillFile>>,
}

impl SpillProvider {
    /// A provider in `dir`, using `engine` (`None`: io_uring where the
    /// kernel has it). Makes and removes a one-block probe file to learn
    /// whether the file system takes `O_DIRECT`.
    ///
    /// # Errors
    /// As [`SpillFile::create`].
    pub fn new(dir: &Path, engine: Option<IoEngine>) -> Result<Self> {
        let n = NAMES.fetch_add(1, Ordering::Relaxed);
        let probe = SpillFile::create(
            dir,
            &format!(".mamba-probe-{}-{n}", std::process::id()),
            BLOCK,
            engine,
        )?;
        let io = probe.io();
        if !io.direct {
            tracing::warn!(dir = %dir.display(), "SSD spill without O_DIRECT: this file system refuses it, data goes through the page cache");
        }
        Ok(SpillProvider {
            dir: dir.to_owned(),
            engine: Some(io.engine),
            io,
            next: AtomicUsize::new(BASE),
            files: Mutex::new(BTreeMap::new()),
        })
    }

    /// How the chunks reach the disk.
    pub fn io(&self) -> SpillIo {
        self.io
    }

    /// Runs `f` on the file holding `addr..addr+len` and the offset of
    /// `addr` in it.
    fn with_file<T>(
        &self,
        addr: usize,
        len: usize,
        f: impl FnOnce(&SpillFile, usize) -> Result<T>,
    ) -> Result<T> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match files.range(..=addr).next_back() {
            Some((&start, file)) if addr + len <= start + file.capacity() => f(file, addr - start),
            _ => Err(Error::OutOfBounds {
                requested: len,
                available: 0,
            }),
        }
    }
}

impl Provider for SpillProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let n = NAMES.fetch_add(1, Ordering::Relaxed);
        let name = format!("mamba-{}-{n}", std::process::id());
        let file = SpillFile::create(&self.dir, &name, len, self.engine)?;
        let addr = self.next.fetch_add(file.capacity(), Ordering::Relaxed);
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, file);
        Ok(Chunk { addr, len })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let removed = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&chunk.addr);
        if removed.is_none() {
            tracing::error!(addr = chunk.addr, "release of an unknown spill chunk");
        }
    }

    fn granule(&self) -> usize {
        BLOCK
    }

    fn host_accessible(&self) -> bool {
        false
    }

    fn access(&self) -> Option<Access> {
        Some(Access::Spill { io: self.io })
    }

    fn block_io(&self) -> Option<&dyn BlockIo> {
        Some(self)
    }
}

impl BlockIo for SpillProvider {
    fn write_at(&self, addr: usize, bytes: &[u8]) -> Result<()> {
        self.with_file(addr, bytes.len(), |file, offset| file.write(offset, bytes))
    }

    fn read_at(&self, addr: usize, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.with_file(addr, len, |file, offset| file.read(offset, buf))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{DirectoryTier, SsdIo};
    use crate::{Backing, ByteSize, Config, Error, Mamba, Policy, Tier};

    fn spill_config(dir: &std::path::Path) -> Config {
        Config {
            gpu: false,
            chunk_size: ByteSize(1 << 20),
            ssd: vec![DirectoryTier {
                path: dir.to_owned(),
                capacity: Some(ByteSize(8 << 20)),
                bandwidth_mib_s: None,
                latency_ns: None,
            }],
            ssd_io: SsdIo::Direct,
            ..Config::default()
        }
    }

    #[test]
    fn ssd_spaces_with_direct_io_spill_allocations_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let mamba = Mamba::discover(&spill_config(dir.path())).unwrap();
        let ssd = mamba.spaces().find(|s| s.tier == Tier::Ssd).unwrap();
        assert!(!ssd.host_accessible);
        assert!(matches!(ssd.backing, Backing::SpillFiles { .. }));
        let access = mamba.pool(ssd.id).unwrap().access().unwrap();
        assert!(access.to_string().contains("/"), "{access}");
        eprintln!("spill space: {access}");

        let policy = Policy::require(Tier::Ssd);
        let mut a = mamba.allocate(5000, 8, &policy).unwrap();
        let mut b = mamba.allocate(3 << 20, 8, &policy).unwrap();
        assert!(matches!(a.as_slice(), Err(Error::NotHostAccessible(_))));
        let data: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 251) as u8).collect();
        b.write_bytes(4095, &data).unwrap();
        a.write_bytes(1, b"spilled").unwrap();
        let mut back = vec![0; data.len()];
        b.read_bytes(4095, &mut back).unwrap();
        assert!(back == data);
        let mut small = [0u8; 7];
        a.read_bytes(1, &mut small).unwrap();
        assert_eq!(&small, b"spilled");
        assert!(matches!(
            a.write_bytes(4999, b"xy"),
            Err(Error::OutOfBounds { .. })
        ));
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files >= 2, "one file per chunk: {files}");
        drop((a, b));
        drop(mamba);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn two_allocators_share_a_spill_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            Mamba::discover(&spill_config(dir.path())).unwrap(),
            Mamba::discover(&spill_config(dir.path())).unwrap(),
        );
        let policy = Policy::require(Tier::Ssd);
        let mut x = a.allocate(4096, 8, &policy).unwrap();
        let mut y = b.allocate(4096, 8, &policy).unwrap();
        x.write_bytes(0, b"a").unwrap();
        y.write_bytes(0, b"b").unwrap();
        let mut back = [0u8; 1];
        x.read_bytes(0, &mut back).unwrap();
        assert_eq!(&back, b"a");
    }

    #[test]
    fn a_full_spill_file_system_makes_the_space_full_not_a_crash() {
        let mount = match crate::spill::tests::TinyMount::new("1m") {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skipped: cannot mount a tiny tmpfs ({e})");
                return;
            }
        };
        // The configuration promises more than the file system holds.
        let mamba = Mamba::discover(&spill_config(mount.dir.path())).unwrap();
        let policy = Policy::require(Tier::Ssd);
        let mut a = mamba.allocate(256 << 10, 8, &policy).unwrap();
        a.write_bytes(0, b"fits").unwrap();
        let err = mamba.allocate(4 << 20, 8, &policy).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OutOfCapacity { available: 0, .. } | Error::NoSpace { .. }
            ),
            "{err}"
        );
        let mut back = [0u8; 4];
        a.read_bytes(0, &mut back).unwrap();
        assert_eq!(&back, b"fits", "the space still works");
    }
}
