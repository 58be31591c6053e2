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
//!
//! A receiver (the manager, a consumer) trusts a descriptor only once
//! [`check_seals`] found it sealed against resizing *and* against new
//! writers, and a consumer maps only the pages of the object it was given
//! ([`PageMap`], [`ReadOnlyMap`]): it never sees a neighbouring object of the same
//! segment, and a tiny object in a huge sparse segment costs it one page.

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

/// Seals of which a receiver requires one before it trusts a segment's
/// bytes to stay as offered: no new writer (`F_SEAL_FUTURE_WRITE`, what
/// [`Segment`] uses), or no writer at all (`F_SEAL_WRITE`).
pub const WRITE_SEALS: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE;

/// The page size the mappings are aligned to.
const PAGE: u64 = 4096;

/// Rounds `len` up to whole pages.
pub fn page_round(len: u64) -> u64 {
    len.div_ceil(PAGE).max(1) * PAGE
}

/// Checks that `fd` is a memfd sealed against resizing and against new
/// writers ([`REQUIRED_SEALS`] and one of [`WRITE_SEALS`]).
///
/// # Errors
/// [`io::ErrorKind::InvalidData`] naming the missing seal; the error of
/// `F_GET_SEALS` for a descriptor that is not a memfd.
pub fn check_seals(fd: BorrowedFd<'_>) -> io::Result<()> {
    let s = seals(fd)?;
    let missing = if s & REQUIRED_SEALS != REQUIRED_SEALS {
        "segment is not sealed against resizing"
    } else if s & WRITE_SEALS == 0 {
        "segment is not sealed against writing"
    } else {
        return Ok(());
    };
    Err(io::Error::new(io::ErrorKind::InvalidData, missing))
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

/// A segment a consumer received, checked once: its seals
/// ([`check_seals`]) and its size, which the seals keep as it is.
#[derive(Debug)]
pub struct ReceivedSegment {
    fd: OwnedFd,
    size: u64,
}

impl ReceivedSegment {
    /// Takes `fd` once it is sealed against resizing and new writers.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] for a segment without the seals; the
    /// errors of `F_GET_SEALS` and `fstat`.
    pub fn new(fd: OwnedFd) -> io::Result<ReceivedSegment> {
        check_seals(fd.as_fd())?;
        let size = file_size(fd.as_fd())?;
        Ok(ReceivedSegment { fd, size })
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Checks that `offset..offset + len` lies inside the segment.
    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{len} bytes at {offset} lie outside a segment of {}",
                    self.size
                ),
            ));
        }
        Ok(())
    }
}

/// The whole pages around `offset..offset + len`: `(first byte, end)`.
pub fn page_span(offset: u64, len: u64) -> (u64, u64) {
    let first = offset / PAGE * PAGE;
    (first, (offset + len).div_ceil(PAGE) * PAGE)
}

/// A read-only, pre-faulted mapping of whole pages of a received segment,
/// shared by the views of the objects on those pages.
#[derive(Debug)]
pub struct PageMap {
    segment: Arc<ReceivedSegment>,
    map: Mmap,
    /// File offset of the first mapped byte.
    first: u64,
}

impl PageMap {
    /// Maps and pre-faults the pages holding `offset..offset + len`
    /// (`len > 0`) of `segment`, and nothing more.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] for an empty or outside range; the
    /// errors of `mmap`.
    pub fn new(segment: Arc<ReceivedSegment>, offset: u64, len: u64) -> io::Result<PageMap> {
        segment.check_range(offset, len)?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no pages to map for an empty range",
            ));
        }
        let (first, end) = page_span(offset, len);
        let map_len = usize::try_from(end - first).map_err(io::Error::other)?;
        // SAFETY: the memfd is sealed against shrinking and writing (checked
        // when it was received), and the range lies inside it, so the mapping
        // never faults and its bytes never change; the last page may extend
        // past the file's end only within that page (zero-filled, never a
        // SIGBUS).
        let map = unsafe {
            MmapOptions::new()
                .offset(first)
                .len(map_len)
                .populate()
                .map(&segment.fd)?
        };
        Ok(PageMap {
            segment,
            map,
            first,
        })
    }

    /// Bytes mapped (whole pages).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a mapping holds at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A consumer's read-only view of one object of a received segment: its
/// bytes in a [`PageMap`] of the whole pages around it, nothing more.
#[derive(Debug)]
pub struct ReadOnlyMap {
    segment: Arc<ReceivedSegment>,
    /// `None` for an empty object (nothing to map).
    pages: Option<Arc<PageMap>>,
    /// Where the object starts in the mapping.
    start: usize,
    len: usize,
}

impl ReadOnlyMap {
    /// Maps the pages holding `offset..offset + len` of `segment` and
    /// returns the view of those bytes.
    ///
    /// # Errors
    /// As [`PageMap::new`], for a range outside the segment.
    pub fn range(segment: &Arc<ReceivedSegment>, offset: u64, len: u64) -> io::Result<ReadOnlyMap> {
        segment.check_range(offset, len)?;
        if len == 0 {
            return Ok(ReadOnlyMap {
                segment: Arc::clone(segment),
                pages: None,
                start: 0,
                len: 0,
            });
        }
        let pages = Arc::new(PageMap::new(Arc::clone(segment), offset, len)?);
        ReadOnlyMap::within(pages, offset, len)
    }

    /// The view of `offset..offset + len` of the segment in `pages`, which
    /// must map those bytes.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] when `pages` does not hold the range.
    pub fn within(pages: Arc<PageMap>, offset: u64, len: u64) -> io::Result<ReadOnlyMap> {
        let inside = offset >= pages.first
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= pages.first + pages.len() as u64);
        if !inside {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len} bytes at {offset} lie outside the mapped pages"),
            ));
        }
        Ok(ReadOnlyMap {
            segment: Arc::clone(&pages.segment),
            start: (offset - pages.first) as usize,
            len: len as usize,
            pages: Some(pages),
        })
    }

    /// The object's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.pages {
            Some(p) => &p.map[self.start..self.start + self.len],
            None => &[],
        }
    }

    /// Bytes mapped: the object rounded out to whole pages.
    pub fn mapped_len(&self) -> usize {
        self.pages.as_ref().map_or(0, |p| p.len())
    }

    /// The descriptor behind the mapping.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.segment.fd()
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
        let ro = ReadOnlyMap::range(&received(seg.fd()), 0, seg.len()).unwrap();
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

    /// A received copy of a producer's segment descriptor.
    fn received(fd: &Arc<OwnedFd>) -> Arc<ReceivedSegment> {
        Arc::new(ReceivedSegment::new(fd.try_clone().unwrap()).unwrap())
    }

    /// A memfd of `len` bytes (sparse) with `seals` added.
    fn sealed_memfd(len: u64, seals: libc::c_int) -> Arc<OwnedFd> {
        let fd = memfd(c"t").unwrap();
        File::from(fd.try_clone().unwrap()).set_len(len).unwrap();
        add_seals(fd.as_fd(), seals).unwrap();
        Arc::new(fd)
    }

    #[test]
    fn unsealed_or_writable_memfds_are_refused() {
        let grow_shrink = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
        for (seals, missing) in [
            (0, "resizing"),
            (libc::F_SEAL_GROW, "resizing"),
            (grow_shrink, "writing"),
        ] {
            let fd = sealed_memfd(4096, seals);
            let err = check_seals(fd.as_fd()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(missing), "{err}");
            assert!(ReceivedSegment::new(Arc::into_inner(fd).unwrap()).is_err());
        }
        for write in [libc::F_SEAL_WRITE, libc::F_SEAL_FUTURE_WRITE] {
            let fd = sealed_memfd(4096, grow_shrink | write);
            check_seals(fd.as_fd()).unwrap();
            let segment = Arc::new(ReceivedSegment::new(Arc::into_inner(fd).unwrap()).unwrap());
            assert_eq!(
                ReadOnlyMap::range(&segment, 0, 16).unwrap().bytes(),
                [0; 16]
            );
        }
        let file = tempfile::tempfile().unwrap();
        assert!(check_seals(file.as_fd()).is_err(), "not a memfd");
    }

    #[test]
    fn a_view_maps_only_the_pages_of_its_object() {
        let seg = Segment::create(4 * 4096).unwrap();
        // SAFETY: the only slice of this segment in this test.
        let bytes = unsafe { seg.bytes_mut(0, seg.len()) };
        bytes[100..200].fill(1);
        bytes[2 * 4096 + 10..2 * 4096 + 20].fill(2);
        let segment = received(seg.fd());
        let a = ReadOnlyMap::range(&segment, 100, 100).unwrap();
        let b = ReadOnlyMap::range(&segment, 2 * 4096 + 10, 10).unwrap();
        assert_eq!(a.bytes(), [1; 100]);
        assert_eq!(b.bytes(), [2; 10]);
        assert_eq!((a.mapped_len(), b.mapped_len()), (4096, 4096));
        // The process's mapping that holds A covers the segment's first
        // page only: B's page (the third) is not reachable through it.
        assert_eq!(mapping_of(a.bytes().as_ptr()), (4096, 0));
        assert_eq!(mapping_of(b.bytes().as_ptr()), (4096, 2 * 4096));
        let straddling = ReadOnlyMap::range(&segment, 4096 - 8, 16).unwrap();
        assert_eq!(straddling.mapped_len(), 2 * 4096);
        assert!(ReadOnlyMap::range(&segment, seg.len() - 8, 16).is_err());
        assert!(ReadOnlyMap::range(&segment, u64::MAX, 2).is_err());
        let empty = ReadOnlyMap::range(&segment, seg.len(), 0).unwrap();
        assert_eq!((empty.bytes().len(), empty.mapped_len()), (0, 0));
        // A second object on A's page shares its mapping; one on B's page
        // does not fit in it.
        let pages = Arc::new(PageMap::new(Arc::clone(&segment), 100, 100).unwrap());
        let near = ReadOnlyMap::within(Arc::clone(&pages), 300, 10).unwrap();
        assert_eq!(near.bytes(), [0; 10]);
        assert!(ReadOnlyMap::within(pages, 2 * 4096 + 10, 10).is_err());
    }

    #[test]
    fn a_tiny_object_in_a_huge_sparse_segment_costs_one_page() {
        let fd = sealed_memfd(
            1 << 40,
            libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_WRITE,
        );
        let segment = Arc::new(ReceivedSegment::new(Arc::into_inner(fd).unwrap()).unwrap());
        let view = ReadOnlyMap::range(&segment, (1 << 39) + 5, 8).unwrap();
        assert_eq!(view.bytes(), [0; 8]);
        assert_eq!(view.mapped_len(), 4096);
        assert_eq!(mapping_of(view.bytes().as_ptr()), (4096, 1 << 39));
    }

    /// Length and file offset of the mapping of this process that holds
    /// `addr`, from `/proc/self/maps`.
    fn mapping_of(addr: *const u8) -> (u64, u64) {
        let addr = addr as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (range, offset) = (fields.next().unwrap(), fields.nth(1).unwrap());
            let (start, end) = range.split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            if (start..end).contains(&addr) {
                return (end - start, u64::from_str_radix(offset, 16).unwrap());
            }
        }
        panic!("{addr:#x} is not mapped");
    }
}
