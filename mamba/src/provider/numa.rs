//! Anonymous memory bound to NUMA nodes.

use super::{Access, Chunk, Provider};
use crate::error::Result;
use crate::hugepage::{self, HugePageSize, THP_SIZE};
use crate::sys::{self, Advice, NumaMode};
use std::ptr::NonNull;

/// Anonymous `mmap` memory, bound with `mbind` to a set of NUMA nodes (or
/// left to the default policy when the space is simulated), optionally
/// backed by transparent huge pages (chunks of 2 MiB and more are mapped
/// 2 MiB aligned, so that the kernel can use them) or by reserved
/// hugetlbfs pages ([`NumaProvider::with_hugetlb`]).
#[derive(Debug)]
pub struct NumaProvider {
    nodes: Option<Vec<u32>>,
    mode: NumaMode,
    huge_pages: bool,
    hugetlb: Option<HugePageSize>,
    page: usize,
}

impl NumaProvider {
    /// A provider for `nodes` of the real machine (`None`: default policy).
    pub fn new(nodes: Option<Vec<u32>>, mode: NumaMode, huge_pages: bool) -> Self {
        NumaProvider {
            nodes,
            mode,
            huge_pages,
            hugetlb: None,
            page: sys::page_size(),
        }
    }

    /// A provider of anonymous memory under the process's default NUMA
    /// policy, without huge pages: the host space of a [`Mamba`] assembled
    /// with [`Mamba::from_pools`] (beside the device spaces of a test
    /// double, for example).
    ///
    /// [`Mamba`]: crate::Mamba
    /// [`Mamba::from_pools`]: crate::Mamba::from_pools
    pub fn process_default() -> Self {
        Self::new(None, NumaMode::Default, false)
    }

    /// Takes every chunk from the reserved hugetlbfs pages of `size`
    /// (chunks become multiples of the page size); without enough free
    /// reserved pages an acquisition fails with
    /// [`Error::HugePagesUnavailable`](crate::Error::HugePagesUnavailable).
    pub fn with_hugetlb(mut self, size: HugePageSize) -> Self {
        self.hugetlb = Some(size);
        self.page = size.bytes();
        self
    }
}

impl Provider for NumaProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let ptr = match self.hugetlb {
            Some(size) => hugepage::map_hugetlb(len, size)?,
            None if len >= THP_SIZE => sys::map_anonymous_aligned(len, THP_SIZE)?,
            None => sys::map_anonymous(len)?,
        };
        let setup = || -> Result<()> {
            if let Some(nodes) = &self.nodes {
                sys::bind_range(ptr, len, nodes, self.mode, false)?;
            }
            if self.huge_pages && self.hugetlb.is_none() && len >= THP_SIZE {
                // SAFETY: the fresh mapping holds nothing yet.
                unsafe { sys::advise(ptr, len, Advice::HugePage)? };
            }
            Ok(())
        };
        if let Err(e) = setup() {
            // SAFETY: the mapping was never handed out.
            let _ = unsafe { sys::unmap(ptr, len) };
            return Err(e);
        }
        Ok(Chunk {
            addr: ptr.as_ptr() as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        if let Some(ptr) = NonNull::new(chunk.addr as *mut u8) {
            // SAFETY: the caller guarantees the chunk is ours and unused.
            if let Err(e) = unsafe { sys::unmap(ptr, chunk.len) } {
                tracing::error!(error = %e, "releasing a NUMA chunk");
            }
        }
    }

    fn granule(&self) -> usize {
        self.page
    }

    fn host_accessible(&self) -> bool {
        true
    }

    fn access(&self) -> Option<Access> {
        Some(match self.hugetlb {
            Some(size) => Access::HugeTlb { page_size: size },
            None if self.huge_pages => Access::TransparentHugePages,
            None => Access::Anonymous,
        })
    }

    fn rebind(&self, addr: usize, len: usize, migrate: bool) -> Result<()> {
        let Some(ptr) = NonNull::new(addr as *mut u8) else {
            return Ok(());
        };
        match &self.nodes {
            Some(nodes) => sys::bind_range(ptr, len, nodes, self.mode, migrate),
            None => sys::bind_range(ptr, len, &[], NumaMode::Default, migrate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_chunks_are_aligned_for_transparent_huge_pages() {
        let p = NumaProvider::new(None, NumaMode::Default, true);
        let chunks: Vec<Chunk> = (0..4)
            .map(|_| p.acquire(THP_SIZE + 4096 * 3).unwrap())
            .collect();
        for c in &chunks {
            assert_eq!(c.addr % THP_SIZE, 0);
            // SAFETY: the chunk is a live mapping of `c.len` bytes.
            unsafe { (c.addr as *mut u8).add(c.len - 1).write(1) };
        }
        for c in chunks {
            // SAFETY: the chunk came from `p` and is not used afterwards.
            unsafe { p.release(c) };
        }
        assert_eq!(p.access(), Some(Access::TransparentHugePages));
    }

    /// `THPeligible` of the mapping holding `addr`, from /proc/self/smaps.
    fn thp_eligible(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = (lo..hi).contains(&addr);
                        continue;
                    }
                }
            }
            if let Some(v) = line.strip_prefix("THPeligible:").filter(|_| inside) {
                return Some(v.trim() == "1");
            }
        }
        None
    }

    #[test]
    fn advised_chunks_are_eligible_for_transparent_huge_pages() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !mode.contains("[madvise]") {
            eprintln!("skipped: THP mode is not madvise here ({})", mode.trim());
            return;
        }
        for advise in [true, false] {
            let p = NumaProvider::new(None, NumaMode::Default, advise);
            let c = p.acquire(4 * THP_SIZE).unwrap();
            let Some(eligible) = thp_eligible(c.addr) else {
                eprintln!("skipped: no THPeligible in /proc/self/smaps");
                return;
            };
            assert_eq!(eligible, advise, "huge_pages = {advise}");
            // SAFETY: the chunk came from `p` and is not used afterwards.
            unsafe { p.release(c) };
        }
    }

    #[test]
    fn hugetlb_without_reserved_pages_is_a_typed_error() {
        let size = HugePageSize::Size1G;
        let p = NumaProvider::new(None, NumaMode::Default, true).with_hugetlb(size);
        assert_eq!(p.granule(), 1 << 30);
        let free = size.reserved().map_or(0, |r| r.free);
        let err = p.acquire((free + 1) << 30).unwrap_err();
        assert!(
            matches!(err, crate::Error::HugePagesUnavailable { page_size, .. } if page_size == 1 << 30),
            "{err}"
        );
    }
}
