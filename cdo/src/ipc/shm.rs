//! Shared-memory segments: anonymous memfds, pre-faulted, sealed, mapped.
//!
//! A producer creates a [`Segment`] (memfd, sized once, populated with
//! `MAP_POPULATE`), writes through its own shared writable mapping, and seals
//! it with `F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`
//! before its descriptor leaves the process: nobody can resize it (so no
//! consumer can take a `SIGBUS`), and nobody else can map it writable or
//! `write(2)` to it. `F_SEAL_WRITE` is not usable while the producer's own
//! writable mapping exists (`EBUSY`, see the tests), and dropping that mapping
//! would forbid reusing the segment; `F_SEAL_FUTURE_WRITE` (Linux 5.1) keeps
//! the producer's mapping and blocks every new writer. Consumers map received
//! descriptors read-only with [`ReadOnlyMap`]: no copy, whatever the size.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions, MmapRaw};

/// The seals every handed-over segment carries.
pub const HANDOVER_SEALS: libc::c_int =
    libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;

/// Seals a receiver requires before it trusts a segment's size.
pub const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;

/// Rounds `len` up to whole pages.
pub fn page_round(len: u64) -> u64 {
    len.div_ceil(4096).max(1) * 4096
}

/// Creates an empty memfd that allows sealing, closed on exec.
pub fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the flags are plain bits.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `seals` to the memfd `fd`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int argument; `fd` is open.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The seals of `fd` (an error for descriptors that are not memfds).
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument; `fd` is open.
    let s = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// `(st_dev, st_ino)` of `fd`: equal for two descriptors of the same memory.
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Size in bytes of the file behind `fd`.
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_size as u64)
}

/// A producer's shared segment: a sealed, pre-faulted memfd and its writable
/// mapping.
#[derive(Debug)]
pub struct Segment {
    fd: Arc<OwnedFd>,
    map: MmapRaw,
}

impl Segment {
    /// Creates a segment of `len` bytes (rounded up to pages), populated and
    /// sealed for hand-over.
    pub fn create(len: u64) -> io::Result<Segment> {
        let len = page_round(len);
        let fd = memfd(c"cdo-segment")?;
        let file = File::from(fd);
        file.set_len(len)?;
        let map = MmapOptions::new()
            .len(len as usize)
            .populate()
            .map_raw(&file)?;
        let fd = OwnedFd::from(file);
        add_seals(fd.as_fd(), HANDOVER_SEALS)?;
        Ok(Segment {
            fd: Arc::new(fd),
            map,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the segment has no bytes (never, segments are page-rounded).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The descriptor, shared with whoever sends it.
    pub fn fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    /// The writable bytes `offset..offset + len`.
    ///
    /// # Safety
    /// No other live slice may overlap this range, and consumers reading the
    /// range must be done with it (the pool hands out disjoint slots and
    /// reuses a slot only after its object was withdrawn).
    // The bytes are shared memory reached through a raw mapping, not data
    // owned by `self`; the exclusivity `&mut` promises is the caller's contract.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, offset: u64, len: u64) -> &mut [u8] {
        assert!(offset + len <= self.len(), "range outside the segment");
        // SAFETY: in bounds (checked above); exclusivity is the caller's
        // contract; the mapping lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset as usize), len as usize)
        }
    }
}

/// A consumer's read-only, populated mapping of a received segment.
#[derive(Debug)]
pub struct ReadOnlyMap {
    fd: OwnedFd,
    map: Mmap,
}

impl ReadOnlyMap {
    /// Maps all of `fd` read-only, after checking that it cannot shrink.
    pub fn new(fd: OwnedFd) -> io::Result<ReadOnlyMap> {
        let s = seals(fd.as_fd())?;
        if s & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "segment is not sealed against resizing",
            ));
        }
        let len = file_size(fd.as_fd())?;
        // SAFETY: the memfd is sealed against shrinking (checked above), so the
        // mapping never faults past the end; it is read-only on our side.
        let map = unsafe { MmapOptions::new().len(len as usize).populate().map(&fd)? };
        Ok(ReadOnlyMap { fd, map })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The descriptor behind the mapping.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_block_resizing_and_new_writers() {
        let seg = Segment::create(10_000).unwrap();
        assert_eq!(seg.len(), 12_288);
        // SAFETY: only slice of this segment in this test.
        let bytes = unsafe { seg.bytes_mut(0, seg.len()) };
        bytes.fill(7);
        let file = File::from(seg.fd().try_clone().unwrap());
        assert!(file.set_len(1 << 20).is_err(), "grow must be sealed");
        assert!(file.set_len(4096).is_err(), "shrink must be sealed");
        // SAFETY: the mapping is never written through (the call must fail).
        let writable = unsafe { MmapOptions::new().len(4096).map_mut(&file) };
        assert!(
            writable.is_err(),
            "F_SEAL_FUTURE_WRITE forbids new writable maps"
        );
        let ro = ReadOnlyMap::new(seg.fd().try_clone().unwrap()).unwrap();
        assert!(ro.bytes().iter().all(|&b| b == 7));
        assert_eq!(
            identity(ro.fd()).unwrap(),
            identity(seg.fd().as_fd()).unwrap()
        );
    }

    #[test]
    fn seal_write_is_busy_while_a_writable_mapping_exists() {
        let fd = memfd(c"t").unwrap();
        let file = File::from(fd);
        file.set_len(4096).unwrap();
        let map = MmapOptions::new().len(4096).map_raw(&file).unwrap();
        let err = add_seals(file.as_fd(), libc::F_SEAL_WRITE).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
        drop(map);
        add_seals(file.as_fd(), libc::F_SEAL_WRITE).unwrap();
    }

    #[test]
    fn unsealed_memfd_is_refused() {
        let fd = memfd(c"t").unwrap();
        File::from(fd.try_clone().unwrap()).set_len(4096).unwrap();
        assert!(ReadOnlyMap::new(fd).is_err());
    }
}
