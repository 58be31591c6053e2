//! Thin safe wrappers over the kernel calls mamba needs: anonymous mappings,
//! NUMA memory policy (`mbind`, the thread's `set_mempolicy`) and page
//! location/migration (`move_pages`).
//!
//! This is one of the two modules with raw-memory `unsafe` (the other is the
//! pool's block carving). Every wrapper checks its inputs and turns `errno`
//! into [`Error::Os`].

use crate::error::{Error, Result};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Size of a base page on this machine (asked once, then cached).
#[inline]
pub fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let size = if size > 0 { size as usize } else { 4096 };
            PAGE.store(size, Relaxed);
            size
        }
        size => size,
    }
}

/// Maps `len` bytes of private anonymous memory (not yet touched).
pub fn map_anonymous(len: usize) -> Result<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice
    // cannot alias any existing Rust object.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::last_os("mmap"));
    }
    NonNull::new(ptr.cast()).ok_or_else(|| Error::last_os("mmap"))
}

/// Maps `len` bytes of private anonymous memory whose start is a multiple
/// of `align` (a power of two; at least the page size): maps `align` bytes
/// more, then unmaps the misaligned head and the tail.
pub fn map_anonymous_aligned(len: usize, align: usize) -> Result<NonNull<u8>> {
    let page = page_size();
    if align <= page {
        return map_anonymous(len);
    }
    let span = len
        .checked_add(align)
        .ok_or(Error::SizeTooLarge { size: len })?;
    let base = map_anonymous(span)?;
    let start = (base.as_ptr() as usize).next_multiple_of(align);
    let head = start - base.as_ptr() as usize;
    let tail = span - head - len;
    let trim = |addr: usize, bytes: usize| -> Result<()> {
        match NonNull::new(addr as *mut u8) {
            // SAFETY: the trimmed ranges are parts of our fresh mapping that
            // nothing references; they stay page-aligned since `align`,
            // `len` and the mapping's start are multiples of the page.
            Some(p) if bytes > 0 => unsafe { unmap(p, bytes) },
            _ => Ok(()),
        }
    };
    trim(base.as_ptr() as usize, head)?;
    trim(start + len, tail)?;
    NonNull::new(start as *mut u8).ok_or_else(|| Error::last_os("mmap"))
}

/// Unmaps a mapping made by [`map_anonymous`] (or any mapping of `len`
/// bytes at `ptr`).
///
/// # Safety
/// `ptr..ptr+len` must be a mapping that nothing references any more.
pub unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> Result<()> {
    // SAFETY: the caller guarantees the range is an unused mapping.
    if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
        return Err(Error::last_os("munmap"));
    }
    Ok(())
}

/// `madvise` advice that mamba uses.
#[derive(Debug, Clone, Copy)]
pub enum Advice {
    /// Back the range with transparent huge pages when possible.
    HugePage,
    /// Drop the pages; the next touch faults in zeroed pages under the
    /// range's memory policy.
    DontNeed,
}

/// Gives the kernel advice about a page-aligned range.
///
/// # Safety
/// With [`Advice::DontNeed`] the contents of the range are lost: nothing may
/// rely on them afterwards.
pub unsafe fn advise(ptr: NonNull<u8>, len: usize, advice: Advice) -> Result<()> {
    let flag = match advice {
        Advice::HugePage => libc::MADV_HUGEPAGE,
        Advice::DontNeed => libc::MADV_DONTNEED,
    };
    // SAFETY: the range is a mapping of ours (caller); losing its contents
    // under DontNeed is the caller's stated intent.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, flag) } != 0 {
        return Err(Error::last_os("madvise"));
    }
    Ok(())
}

/// The NUMA policies mamba sets with `mbind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumaMode {
    /// `MPOL_DEFAULT`: the process's policy (give no nodes).
    Default,
    /// `MPOL_BIND`.
    Bind,
    /// `MPOL_PREFERRED`.
    Preferred,
}

const MPOL_DEFAULT: libc::c_int = 0;
const MPOL_PREFERRED: libc::c_int = 1;
const MPOL_BIND: libc::c_int = 2;
const MPOL_MF_STRICT: libc::c_uint = 1;
const MPOL_MF_MOVE: libc::c_uint = 2;
const MAX_NODES: usize = 1024;

/// A kernel node mask (`MAX_NODES` bits).
type NodeMask = [libc::c_ulong; MAX_NODES / libc::c_ulong::BITS as usize];

fn node_mask(nodes: &[u32]) -> Result<NodeMask> {
    let mut mask: NodeMask = [0; MAX_NODES / libc::c_ulong::BITS as usize];
    let bits = libc::c_ulong::BITS as usize;
    for &n in nodes {
        let n = n as usize;
        if n >= MAX_NODES {
            return Err(Error::UnknownNumaNode(n as u32));
        }
        mask[n / bits] |= 1 << (n % bits);
    }
    Ok(mask)
}

/// The calling thread prefers one NUMA node for the pages it allocates
/// (`set_mempolicy(MPOL_PREFERRED)`) until this is dropped, which gives the
/// thread its previous policy back. For memory that a library allocates
/// and locks on the calling thread (a GPU runtime's pinned host memory).
#[derive(Debug)]
#[doc(alias = "set_mempolicy")]
pub struct PreferNode {
    mode: libc::c_int,
    mask: NodeMask,
}

impl PreferNode {
    /// Saves the thread's policy, then prefers `node`.
    ///
    /// # Errors
    /// [`Error::UnknownNumaNode`] for a node beyond the kernel's limit;
    /// [`Error::Os`] when the kernel refuses (a node it does not have).
    pub fn set(node: u32) -> Result<Self> {
        let preferred = node_mask(&[node])?;
        let mut saved = PreferNode {
            mode: MPOL_DEFAULT,
            mask: [0; MAX_NODES / libc::c_ulong::BITS as usize],
        };
        // SAFETY: get_mempolicy writes one int and at most MAX_NODES bits
        // into our mask; with no address and no flags it reads the thread's
        // policy.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut saved.mode,
                saved.mask.as_mut_ptr(),
                MAX_NODES as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_ulong,
            )
        };
        if rc != 0 {
            return Err(Error::last_os("get_mempolicy"));
        }
        set_thread_policy(MPOL_PREFERRED, &preferred)?;
        Ok(saved)
    }
}

impl Drop for PreferNode {
    fn drop(&mut self) {
        // Only the modes other than DEFAULT take a mask.
        let mask = if self.mode == MPOL_DEFAULT {
            [0; MAX_NODES / libc::c_ulong::BITS as usize]
        } else {
            self.mask
        };
        if let Err(e) = set_thread_policy(self.mode, &mask) {
            tracing::error!(error = %e, "restoring the thread's NUMA policy");
        }
    }
}

fn set_thread_policy(mode: libc::c_int, mask: &NodeMask) -> Result<()> {
    let empty = mask.iter().all(|&w| w == 0);
    // SAFETY: set_mempolicy reads at most MAX_NODES bits of our mask and
    // changes only the calling thread's policy for future allocations.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode,
            if empty {
                std::ptr::null()
            } else {
                mask.as_ptr()
            },
            if empty {
                0
            } else {
                MAX_NODES as libc::c_ulong + 1
            },
        )
    };
    if rc != 0 {
        return Err(Error::last_os("set_mempolicy"));
    }
    Ok(())
}

/// Sets the NUMA policy of a page-aligned range to `nodes`; with `migrate`
/// pages already present move there (`MPOL_MF_MOVE`).
pub fn bind_range(
    ptr: NonNull<u8>,
    len: usize,
    nodes: &[u32],
    mode: NumaMode,
    migrate: bool,
) -> Result<()> {
    let mask = node_mask(nodes)?;
    let mode = match mode {
        NumaMode::Default => MPOL_DEFAULT,
        NumaMode::Bind => MPOL_BIND,
        NumaMode::Preferred => MPOL_PREFERRED,
    };
    let flags = if migrate {
        MPOL_MF_MOVE | MPOL_MF_STRICT
    } else {
        0
    };
    // SAFETY: mbind reads `mask` (maxnode bits, inside the array) and changes
    // only the policy of the given range, which is a mapping of ours; it does
    // not touch memory contents except to migrate them unchanged.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            ptr.as_ptr(),
            len,
            mode,
            mask.as_ptr(),
            MAX_NODES as libc::c_ulong + 1,
            flags,
        )
    };
    if migrate {
        // Some pages may have moved even when the call failed.
        crate::affinity::forget_locations();
    }
    if rc != 0 {
        return Err(Error::last_os("mbind"));
    }
    Ok(())
}

/// For each page of `addr..addr+len`, the NUMA node it lives on, or a
/// negative `errno` (`-ENOENT` for a page never touched, `-EFAULT` for an
/// address that is not mapped). With `target`, moves the pages there first
/// and reports where each ended up.
pub fn page_nodes(addr: usize, len: usize, target: Option<u32>) -> Result<Vec<i32>> {
    let page = page_size();
    let first = addr & !(page - 1);
    let end = addr
        .checked_add(len)
        .ok_or(Error::SizeTooLarge { size: len })?;
    let count = (end - first).div_ceil(page);
    let pages: Vec<usize> = (0..count).map(|i| first + i * page).collect();
    nodes_of_pages(&pages, target)
}

/// [`page_nodes`] for a list of page addresses, in one system call.
pub fn nodes_of_pages(pages: &[usize], target: Option<u32>) -> Result<Vec<i32>> {
    let count = pages.len();
    let addrs: Vec<*mut libc::c_void> = pages.iter().map(|&p| p as *mut libc::c_void).collect();
    let nodes: Option<Vec<libc::c_int>> = target.map(|n| vec![n as libc::c_int; count]);
    let mut status = vec![0 as libc::c_int; count];
    // SAFETY: move_pages reads `count` page addresses and (optionally) node
    // numbers from our vectors and writes `count` statuses; it validates the
    // addresses itself (EFAULT per page) and never writes to those pages.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            count as libc::c_ulong,
            addrs.as_ptr(),
            nodes.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
            status.as_mut_ptr(),
            MPOL_MF_MOVE as libc::c_int,
        )
    };
    if target.is_some() {
        // Some pages may have moved even when the call failed.
        crate::affinity::forget_locations();
    }
    if rc < 0 {
        return Err(Error::last_os("move_pages"));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_mappings_start_on_the_alignment() {
        for align in [page_size(), 2 << 20, 16 << 20] {
            let len = 3 * page_size();
            let ptr = map_anonymous_aligned(len, align).unwrap();
            assert_eq!(ptr.as_ptr() as usize % align, 0, "align {align}");
            // SAFETY: the mapping is ours and `len` bytes long.
            unsafe { ptr.as_ptr().add(len - 1).write(9) };
            assert!(page_nodes(ptr.as_ptr() as usize, len, None).unwrap()[2] >= 0);
            // SAFETY: nothing references the mapping any more.
            unsafe { unmap(ptr, len).unwrap() };
        }
    }

    #[test]
    fn a_touched_page_reports_a_node_and_an_untouched_one_does_not() {
        let page = page_size();
        let ptr = map_anonymous(2 * page).unwrap();
        // SAFETY: the mapping is ours and two pages long.
        unsafe { ptr.as_ptr().write(7) };
        let status = page_nodes(ptr.as_ptr() as usize, 2 * page, None).unwrap();
        assert_eq!(status.len(), 2);
        assert!(status[0] >= 0, "touched page: {}", status[0]);
        assert_eq!(status[1], -libc::ENOENT, "untouched page");
        // SAFETY: nothing references the mapping any more.
        unsafe { unmap(ptr, 2 * page).unwrap() };
    }

    fn thread_policy() -> (libc::c_int, NodeMask) {
        let mut mode = -1;
        let mut mask: NodeMask = [0; MAX_NODES / libc::c_ulong::BITS as usize];
        // SAFETY: as in PreferNode::set.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode,
                mask.as_mut_ptr(),
                MAX_NODES as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_ulong,
            )
        };
        assert_eq!(rc, 0);
        (mode, mask)
    }

    #[test]
    fn preferring_a_node_places_new_pages_and_gives_the_policy_back() {
        let before = thread_policy();
        let page = page_size();
        {
            let _prefer = PreferNode::set(0).unwrap();
            let (mode, mask) = thread_policy();
            assert_eq!((mode, mask[0]), (MPOL_PREFERRED, 1));
            let ptr = map_anonymous(page).unwrap();
            // SAFETY: the mapping is ours and one page long.
            unsafe { ptr.as_ptr().write(7) };
            assert_eq!(page_nodes(ptr.as_ptr() as usize, page, None).unwrap(), [0]);
            // SAFETY: nothing references the mapping any more.
            unsafe { unmap(ptr, page).unwrap() };
        }
        assert_eq!(thread_policy(), before);
        assert!(PreferNode::set(1000).is_err());
        assert!(matches!(
            PreferNode::set(5000),
            Err(Error::UnknownNumaNode(5000))
        ));
        assert_eq!(thread_policy(), before);
    }

    #[test]
    fn binding_to_a_node_that_does_not_exist_fails_cleanly() {
        let page = page_size();
        let ptr = map_anonymous(page).unwrap();
        assert!(bind_range(ptr, page, &[0], NumaMode::Bind, false).is_ok());
        assert!(bind_range(ptr, page, &[1000], NumaMode::Bind, false).is_err());
        assert!(matches!(
            bind_range(ptr, page, &[5000], NumaMode::Bind, false),
            Err(Error::UnknownNumaNode(5000))
        ));
        // SAFETY: nothing references the mapping any more.
        unsafe { unmap(ptr, page).unwrap() };
    }
}
