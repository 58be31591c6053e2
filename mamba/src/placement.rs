//! "Where is my memory": the NUMA nodes holding an address range, and
//! moving an allocation's pages to another NUMA space or its data to
//! another space.

use crate::allocation::Allocation;
use crate::allocator::Mamba;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::pool::{Block, Pool};
use crate::sys::{self, Advice, NumaMode};
use crate::tier::Backing;
use std::collections::BTreeMap;
use std::ptr::NonNull;

/// Where the pages of an address range are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLocation {
    /// NUMA node (OS index) -> pages on it.
    pub pages_per_node: BTreeMap<u32, usize>,
    /// Pages never touched (no physical page yet).
    pub untouched: usize,
    /// Pages the kernel could not report (not mapped, or another error).
    pub unknown: usize,
}

impl PageLocation {
    /// The node holding most of the touched pages.
    pub fn majority_node(&self) -> Option<u32> {
        self.pages_per_node
            .iter()
            .max_by_key(|&(node, pages)| (*pages, std::cmp::Reverse(*node)))
            .map(|(&node, _)| node)
    }
}

/// The NUMA nodes of the pages of any CPU-addressable range of this
/// process (`move_pages` with no target).
///
/// # Errors
/// [`Error::Os`] when the kernel refuses the query.
pub fn locate(addr: usize, len: usize) -> Result<PageLocation> {
    Ok(tally(sys::page_nodes(addr, len, None)?))
}

/// Where the pages at these addresses are, in one query (for sampling a
/// long range).
///
/// # Errors
/// [`Error::Os`] when the kernel refuses the query.
pub fn locate_pages(pages: &[usize]) -> Result<PageLocation> {
    Ok(tally(sys::nodes_of_pages(pages, None)?))
}

fn tally(statuses: Vec<i32>) -> PageLocation {
    let mut loc = PageLocation::default();
    for status in statuses {
        match status {
            n if n >= 0 => *loc.pages_per_node.entry(n as u32).or_default() += 1,
            n if n == -libc::ENOENT => loc.untouched += 1,
            _ => loc.unknown += 1,
        }
    }
    loc
}

fn real_node(pool: &Pool) -> Option<u32> {
    match &pool.info().backing {
        Backing::NumaNodes { nodes } if nodes.len() == 1 => Some(nodes[0]),
        _ => None,
    }
}

fn page_span(block: &Block) -> Option<(NonNull<u8>, usize)> {
    let page = sys::page_size();
    let start = block.addr.next_multiple_of(page);
    let end = (block.addr + block.block_len) / page * page;
    (end > start).then(|| {
        (
            NonNull::new(start as *mut u8).expect("non-null"),
            end - start,
        )
    })
}

/// Called when a moved allocation is freed: its pages return to the origin
/// space's policy (dropped, to be faulted there on next use) and the target
/// space is no longer charged.
#[cold]
#[inline(never)]
pub(crate) fn return_moved_pages(origin: &Pool, resident: &Pool, block: &Block) {
    if let (Some(_), Some((ptr, len))) = (real_node(origin), page_span(block)) {
        // SAFETY: the block is being freed: its contents no longer matter.
        if let Err(e) = unsafe { sys::advise(ptr, len, Advice::DontNeed) } {
            tracing::warn!(error = %e, "dropping moved pages");
        }
    }
    resident.uncharge_moved_in(block.block_len);
}

impl Mamba {
    /// Where the pages of an allocation are now.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn locate(&self, a: &Allocation<'_>) -> Result<PageLocation> {
        a.as_ptr()?;
        locate(a.addr(), a.len())
    }

    /// Moves the pages of `a` to the NUMA node of `target` in place (the
    /// address does not change), charging them to `target`'s capacity. On a
    /// simulated topology only the accounting moves. The pages go back to
    /// the origin space's policy when the allocation is freed.
    ///
    /// Only whole pages of the allocation move: a block sharing a page with
    /// a neighbour leaves that page where it is.
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless both spaces are CPU-addressable NUMA
    /// memory; [`Error::OutOfCapacity`] when `target` is full (nothing
    /// moves); [`Error::Os`] when the kernel refuses.
    pub fn move_pages(&self, a: &mut Allocation<'_>, target: crate::SpaceId) -> Result<()> {
        let target_pool = self.pool(target)?;
        for p in [a.pool(), target_pool] {
            if p.info().numa_node.is_none() {
                return Err(Error::Unsupported {
                    operation: "moving pages",
                    space: p.info().id,
                    tier: p.info().tier,
                });
            }
        }
        let current = a.resident.as_ref().unwrap_or(a.pool());
        if current.same(target_pool) {
            return Ok(());
        }
        let home = target_pool.same(a.pool());
        if !home {
            target_pool.charge_moved_in(a.block_len())?;
        }
        let block = a.block();
        if let (Some(node), Some((ptr, len))) = (real_node(target_pool), page_span(&block)) {
            if let Err(e) = sys::bind_range(ptr, len, &[node], NumaMode::Bind, true) {
                if !home {
                    target_pool.uncharge_moved_in(a.block_len());
                }
                return Err(e);
            }
        }
        if let Some(previous) = a.resident.take() {
            previous.uncharge_moved_in(a.block_len());
        }
        if !home {
            a.resident = Some(target_pool.handle());
        }
        Ok(())
    }

    /// Moves the data of `a` into a new allocation placed by `policy`; the
    /// old block goes back to its pool and `a` now owns the new one.
    ///
    /// # Errors
    /// As [`Mamba::duplicate`]; on error `a` is left as it was.
    pub fn migrate<'m>(&'m self, a: &mut Allocation<'m>, policy: &Policy) -> Result<()> {
        let moved = self.duplicate(a, policy)?;
        drop(std::mem::replace(a, moved));
        Ok(())
    }

    /// Copies the data of `a` into a new allocation placed by `policy`.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory (GPU copies come with
    /// the copy engine), placement errors.
    pub fn duplicate<'m>(&'m self, a: &Allocation<'m>, policy: &Policy) -> Result<Allocation<'m>> {
        let src = a.as_slice()?;
        let mut b = self.allocate(a.len(), 64.min(a.block_len().next_power_of_two()), policy)?;
        b.as_mut_slice()?.copy_from_slice(src);
        Ok(b)
    }
}
