//! One page of shared memory holding atomic words, shared by the manager
//! and a client: a client's lease counter ([`lease`](super::lease)) and the
//! pool's event interest ([`interest`](super::interest)).
//!
//! The creator maps the page read-write; the other side checks that it is
//! sealed against resizing before mapping it, so that its pages cannot
//! vanish under a load.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU64;

use memmap2::{MmapOptions, MmapRaw};

use super::shm::{add_seals, file_size, memfd, seals, REQUIRED_SEALS};

/// Bytes of a shared page.
const PAGE_LEN: u64 = 4096;

/// Words of a shared page.
pub const WORDS: usize = (PAGE_LEN / 8) as usize;

/// A mapped page of atomic words.
#[derive(Debug)]
pub struct SharedPage {
    map: MmapRaw,
}

impl SharedPage {
    /// A new page named `name`, mapped read-write here, and the descriptor
    /// to send. It is sealed against resizing, against `seals` (added after
    /// this side mapped it: `F_SEAL_FUTURE_WRITE` keeps the other side from
    /// writing) and against further seals.
    ///
    /// # Errors
    /// The errors of `memfd_create`, `ftruncate`, sealing and `mmap`.
    pub fn create(name: &CStr, seals: libc::c_int) -> io::Result<(SharedPage, OwnedFd)> {
        let file = File::from(memfd(name)?);
        file.set_len(PAGE_LEN)?;
        let map = MmapOptions::new().len(PAGE_LEN as usize).map_raw(&file)?;
        add_seals(file.as_fd(), REQUIRED_SEALS | seals | libc::F_SEAL_SEAL)?;
        Ok((SharedPage { map }, file.into()))
    }

    /// Maps the page the other side sent (read-only unless `writable`),
    /// once it is known not to shrink.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] for a descriptor without the seals or
    /// too small; the errors of `fstat` and `mmap` (a page sealed against
    /// writing cannot be mapped `writable`).
    pub fn open(fd: OwnedFd, writable: bool) -> io::Result<SharedPage> {
        let sealed = seals(fd.as_fd())? & REQUIRED_SEALS == REQUIRED_SEALS;
        if !sealed || file_size(fd.as_fd())? < PAGE_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared page not sealed against resizing, or too small",
            ));
        }
        let options = MmapOptions::new().len(PAGE_LEN as usize).clone();
        let file = File::from(fd);
        let map = if writable {
            options.map_raw(&file)?
        } else {
            options.map_raw_read_only(&file)?
        };
        Ok(SharedPage { map })
    }

    /// Word `i` of the page (`i < WORDS`). Writing through a read-only
    /// mapping faults: only the side that may write stores to it.
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "word {i} of a {WORDS}-word page");
        // SAFETY: the mapping is page-aligned and PAGE_LEN long, so word `i`
        // is aligned and in bounds; it lives as long as `self` and cannot
        // lose its pages (sealed against shrinking); both sides only ever
        // touch it atomically.
        unsafe { &*self.map.as_mut_ptr().cast::<AtomicU64>().add(i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn both_sides_see_the_same_words() {
        let (page, fd) = SharedPage::create(c"t", 0).unwrap();
        let other = SharedPage::open(fd, true).unwrap();
        page.word(3).store(7, Ordering::Relaxed);
        other.word(WORDS - 1).store(9, Ordering::Relaxed);
        assert_eq!(other.word(3).load(Ordering::Relaxed), 7);
        assert_eq!(page.word(WORDS - 1).load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_page_sealed_against_writing_opens_read_only_only() {
        let (page, fd) = SharedPage::create(c"t", libc::F_SEAL_FUTURE_WRITE).unwrap();
        let again = fd.try_clone().unwrap();
        assert!(SharedPage::open(fd, true).is_err(), "no writable mapping");
        let reader = SharedPage::open(again, false).unwrap();
        page.word(0).store(5, Ordering::Relaxed);
        assert_eq!(reader.word(0).load(Ordering::Relaxed), 5);
    }

    #[test]
    fn an_unsealed_page_is_refused() {
        let fd = memfd(c"t").unwrap();
        File::from(fd.try_clone().unwrap())
            .set_len(PAGE_LEN)
            .unwrap();
        assert_eq!(
            SharedPage::open(fd, false).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
