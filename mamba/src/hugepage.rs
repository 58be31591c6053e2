//! Huge pages: transparent huge pages for large anonymous chunks (which
//! only apply to 2 MiB-aligned ranges, so such chunks are mapped 2 MiB
//! aligned) and explicit hugetlbfs pages (`MAP_HUGETLB`, 2 MiB or 1 GiB)
//! taken from the pool the administrator reserved (`vm.nr_hugepages`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ptr::NonNull;

/// The size of a transparent huge page on x86-64 and of the smaller
/// hugetlbfs page: chunks this large or larger are mapped aligned to it.
pub const THP_SIZE: usize = 2 << 20;

/// A hugetlbfs page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HugePageSize {
    /// 2 MiB pages.
    #[serde(rename = "2MiB")]
    Size2M,
    /// 1 GiB pages.
    #[serde(rename = "1GiB")]
    Size1G,
}

impl HugePageSize {
    /// Bytes of one page.
    pub fn bytes(self) -> usize {
        match self {
            HugePageSize::Size2M => 2 << 20,
            HugePageSize::Size1G => 1 << 30,
        }
    }

    /// The name used in configuration and display (`2MiB`, `1GiB`).
    pub fn name(self) -> &'static str {
        match self {
            HugePageSize::Size2M => "2MiB",
            HugePageSize::Size1G => "1GiB",
        }
    }

    /// The system's pool of reserved pages of this size (read from sysfs),
    /// or `None` when the kernel does not offer the size.
    pub fn reserved(self) -> Option<HugePagePool> {
        let dir = format!(
            "/sys/kernel/mm/hugepages/hugepages-{}kB",
            self.bytes() / 1024
        );
        let read = |name: &str| -> Option<usize> {
            std::fs::read_to_string(format!("{dir}/{name}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(HugePagePool {
            total: read("nr_hugepages")?,
            free: read("free_hugepages")?,
        })
    }
}

impl std::fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HugePageSize {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "2m" | "2mib" | "2mb" => Ok(HugePageSize::Size2M),
            "1g" | "1gib" | "1gb" => Ok(HugePageSize::Size1G),
            other => Err(Error::Config(format!(
                "huge page size {other:?}: expected 2MiB or 1GiB"
            ))),
        }
    }
}

/// Counts of a size's reserved huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePagePool {
    /// Pages reserved (`nr_hugepages`).
    pub total: usize,
    /// Pages not in use.
    pub free: usize,
}

/// Maps `len` bytes (a multiple of `size`) of private hugetlbfs memory.
///
/// # Errors
/// [`Error::HugePagesUnavailable`] when the system has too few free pages
/// of that size reserved (or does not offer the size); [`Error::Os`] for
/// other refusals.
pub fn map_hugetlb(len: usize, size: HugePageSize) -> Result<NonNull<u8>> {
    let unavailable = |reason: String| Error::HugePagesUnavailable {
        page_size: size.bytes(),
        requested: len,
        reason,
    };
    let Some(pool) = size.reserved() else {
        return Err(unavailable(format!(
            "the kernel offers no {size} huge pages"
        )));
    };
    let log2 = size.bytes().trailing_zeros() as libc::c_int;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice
    // cannot alias any existing Rust object.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_HUGETLB
                | (log2 << libc::MAP_HUGE_SHIFT),
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOMEM | libc::EINVAL) => unavailable(format!(
                "{} of {} reserved {size} pages are free, {} needed (raise vm.nr_hugepages): {e}",
                pool.free,
                pool.total,
                len.div_ceil(size.bytes())
            )),
            _ => Error::os("mmap(MAP_HUGETLB)", e),
        });
    }
    NonNull::new(ptr.cast()).ok_or_else(|| Error::last_os("mmap"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `vm.nr_hugepages` and gives the old value back on drop.
    struct Reserve {
        old: String,
    }

    const NR: &str = "/proc/sys/vm/nr_hugepages";

    impl Reserve {
        fn raise(pages: usize) -> std::result::Result<Reserve, String> {
            let old = std::fs::read_to_string(NR).map_err(|e| e.to_string())?;
            let want = old.trim().parse::<usize>().map_err(|e| e.to_string())? + pages;
            std::fs::write(NR, want.to_string()).map_err(|e| format!("writing {NR}: {e}"))?;
            Ok(Reserve { old })
        }
    }

    impl Drop for Reserve {
        fn drop(&mut self) {
            let _ = std::fs::write(NR, self.old.trim());
        }
    }

    #[test]
    fn sizes_parse_and_report_their_bytes() {
        assert_eq!("2MiB".parse::<HugePageSize>().unwrap().bytes(), 2 << 20);
        assert_eq!("1g".parse::<HugePageSize>().unwrap().bytes(), 1 << 30);
        assert!("3MiB".parse::<HugePageSize>().is_err());
    }

    #[test]
    fn without_free_reserved_pages_the_error_says_so() {
        // 1 GiB pages are never reserved on a machine that has too few of
        // them for 64 GiB; asking for more than exist must be a typed error.
        let size = HugePageSize::Size1G;
        let free = size.reserved().map_or(0, |p| p.free);
        let len = (free + 64) * size.bytes();
        match map_hugetlb(len, size) {
            Err(Error::HugePagesUnavailable {
                page_size,
                requested,
                reason,
            }) => {
                assert_eq!((page_size, requested), (1 << 30, len));
                assert!(
                    reason.contains("nr_hugepages") || reason.contains("offers no"),
                    "{reason}"
                );
            }
            other => panic!("expected HugePagesUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn reserved_pages_back_a_mapping_when_root_can_reserve_them() {
        let size = HugePageSize::Size2M;
        let reserve = match Reserve::raise(2) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipped: cannot reserve huge pages ({e})");
                return;
            }
        };
        let Some(pool) = size.reserved().filter(|p| p.free >= 2) else {
            eprintln!("skipped: the kernel did not reserve the 2 MiB pages asked for");
            return;
        };
        let ptr = map_hugetlb(2 * size.bytes(), size).unwrap();
        assert_eq!(ptr.as_ptr() as usize % size.bytes(), 0);
        // SAFETY: the mapping is ours and 4 MiB long.
        unsafe {
            ptr.as_ptr().write(1);
            ptr.as_ptr().add(size.bytes()).write(2);
        }
        let after = size.reserved().unwrap();
        assert_eq!(after.free + 2, pool.free, "both pages came from the pool");
        // SAFETY: nothing references the mapping any more.
        unsafe { crate::sys::unmap(ptr, 2 * size.bytes()).unwrap() };
        drop(reserve);
    }
}
