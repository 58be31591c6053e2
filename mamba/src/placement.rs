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
    let end = (block.addr + block.block_len()) / page * page;
    (end > start).then(|| {
        (
            NonNull::new(start as *mut u8).expect("non-null"),
            end - start,
        )
    })
}

/// Called when a moved allocation is freed: its pages go back to the origin
/// space's placement policy and are dropped (so that the reused block is
/// faulted where its pool says), and the target space is no longer charged.
#[cold]
#[inline(never)]
pub(crate) fn return_moved_pages(origin: &Pool, resident: &Pool, block: &Block) {
    if let (Some(_), Some((ptr, len))) = (real_node(resident), page_span(block)) {
        if let Err(e) = origin.rebind(ptr.as_ptr() as usize, len, false) {
            tracing::warn!(error = %e, "restoring the placement of moved pages");
        }
        // SAFETY: the block is being freed: its contents no longer matter.
        if let Err(e) = unsafe { sys::advise(ptr, len, Advice::DontNeed) } {
            tracing::warn!(error = %e, "dropping moved pages");
        }
    }
    resident.uncharge_moved_in(block.block_len());
    origin.unnote_moved_out(block.block_len());
}

/// [`Mamba::move_pages`] to the space of `target_pool`: the pages move in
/// place, `target_pool` is charged and the origin pool no longer is.
pub(crate) fn move_pages_to(a: &mut Allocation<'_>, target_pool: &Pool) -> Result<()> {
    for p in [a.pool(), target_pool] {
        if !p.info().is_node_memory() {
            return Err(Error::Unsupported {
                operation: "moving pages",
                space: p.info().id,
                tier: p.info().tier,
            });
        }
    }
    let current = a.resident().unwrap_or(a.pool());
    if current.same(target_pool) {
        return Ok(());
    }
    let Some((ptr, len)) = page_span(&a.block()) else {
        // Its pages are shared with other blocks: they stay.
        return Ok(());
    };
    let home = target_pool.same(a.pool());
    if !home {
        target_pool.charge_moved_in(a.block_len())?;
    }
    let moved = match real_node(target_pool) {
        None => Ok(()),
        Some(_) if home => a.pool().rebind(ptr.as_ptr() as usize, len, true),
        Some(node) => sys::bind_range(ptr, len, &[node], NumaMode::Bind, true),
    };
    if let Err(e) = moved {
        if !home {
            target_pool.uncharge_moved_in(a.block_len());
        }
        return Err(e);
    }
    let was_home = a.resident().is_none();
    if let Some(previous) = a.take_resident() {
        previous.uncharge_moved_in(a.block_len());
    }
    match (was_home, home) {
        (true, false) => a.pool().note_moved_out(a.block_len()),
        (false, true) => a.pool().unnote_moved_out(a.block_len()),
        _ => {}
    }
    if !home {
        a.set_resident(target_pool.handle());
    }
    Ok(())
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
    /// address does not change), charging them to `target`'s capacity; the
    /// origin space no longer counts them against its own
    /// ([`PoolStats::moved_out`](crate::PoolStats::moved_out)). On a
    /// simulated topology only the accounting moves. The pages go back to
    /// the origin space's policy when the allocation is freed.
    ///
    /// Only whole pages of the allocation move: a block sharing a page with
    /// a neighbour leaves that page where it is, and a block holding no
    /// whole page does not move at all (nothing is charged, and
    /// [`Allocation::resident_space`] stays the origin).
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless both spaces are CPU-addressable NUMA
    /// memory; [`Error::OutOfCapacity`] when `target` is full (nothing
    /// moves); [`Error::Os`] when the kernel refuses.
    pub fn move_pages(&self, a: &mut Allocation<'_>, target: crate::SpaceId) -> Result<()> {
        move_pages_to(a, self.pool(target)?)
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

    /// Copies the data of `a` into a new allocation placed by `policy`,
    /// between any two spaces: host memory, GPU memory and SSD spill files
    /// alike, by the routes of [`copy_bytes`](crate::copy::copy_bytes).
    ///
    /// # Errors
    /// Placement errors; the device's or the disk's errors (the new
    /// allocation is given back); [`Error::NotHostAccessible`] for device
    /// memory without a runtime that reaches it.
    pub fn duplicate<'m>(&'m self, a: &Allocation<'m>, policy: &Policy) -> Result<Allocation<'m>> {
        let mut b = self.allocate(a.len(), 64.min(a.block_len().next_power_of_two()), policy)?;
        crate::copy::copy_bytes(a, &mut b)?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolSettings;
    use crate::provider::NumaProvider;
    use crate::tier::{SpaceId, SpaceInfo, Tier};

    /// The NUMA policy mode of the page at `addr` (`get_mempolicy` with
    /// `MPOL_F_ADDR`).
    fn policy_at(addr: usize) -> libc::c_int {
        let mut mode: libc::c_int = -1;
        // SAFETY: writes one int; no node mask asked for (null, 0).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode as *mut libc::c_int,
                std::ptr::null_mut::<libc::c_ulong>(),
                0 as libc::c_ulong,
                addr as *mut libc::c_void,
                2 as libc::c_ulong, // MPOL_F_ADDR
            )
        };
        assert_eq!(rc, 0, "get_mempolicy: {}", std::io::Error::last_os_error());
        mode
    }

    /// Two spaces on NUMA node 0 that place pages differently, so that one
    /// node shows whether a move and its undoing change the policy.
    fn two_spaces_on_node0() -> Mamba {
        let space = |id: u32, name: &str, mode| {
            Pool::new(
                SpaceInfo {
                    id: SpaceId(id),
                    name: name.into(),
                    tier: Tier::Dram,
                    capacity: 64 << 20,
                    numa_node: Some(0),
                    device: None,
                    cpus: Vec::new(),
                    bandwidth_mib_s: None,
                    latency_ns: None,
                    host_accessible: true,
                    persistent: false,
                    backing: Backing::NumaNodes { nodes: vec![0] },
                },
                Box::new(NumaProvider::new(Some(vec![0]), mode, false)),
                PoolSettings {
                    chunk_size: 4 << 20,
                    ..PoolSettings::default()
                },
            )
        };
        Mamba::from_pools(vec![
            space(0, "preferring", NumaMode::Preferred),
            space(1, "binding", NumaMode::Bind),
        ])
        .unwrap()
    }

    const MPOL_PREFERRED: libc::c_int = 1;
    const MPOL_BIND: libc::c_int = 2;

    #[test]
    fn freeing_moved_pages_restores_the_origin_policy() {
        if sys::page_nodes(0, 0, None).is_err() {
            eprintln!("skipped: no NUMA system calls here");
            return;
        }
        let m = two_spaces_on_node0();
        let origin = m.pool(SpaceId(0)).unwrap();
        let mut a = match origin.allocate(1 << 20, 4096) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("skipped: cannot bind memory to node 0 here: {e}");
                return;
            }
        };
        a.as_mut_slice().unwrap().fill(3);
        let addr = a.addr();
        assert_eq!(policy_at(addr), MPOL_PREFERRED);
        m.move_pages(&mut a, SpaceId(1)).unwrap();
        assert_eq!(policy_at(addr), MPOL_BIND);
        assert_eq!(a.resident_space().name, "binding");
        // Moving home restores the origin's policy, keeping the data.
        m.move_pages(&mut a, SpaceId(0)).unwrap();
        assert_eq!(policy_at(addr), MPOL_PREFERRED);
        assert!(a.as_slice().unwrap().iter().all(|&b| b == 3));
        m.move_pages(&mut a, SpaceId(1)).unwrap();
        assert_eq!(policy_at(addr), MPOL_BIND);
        drop(a);
        // The freed block (still mapped, cached for reuse) is the origin's
        // again, and so is the block that reuses it.
        assert_eq!(policy_at(addr), MPOL_PREFERRED);
        assert_eq!(m.pool(SpaceId(1)).unwrap().stats().moved_in, 0);
        let b = origin.allocate(1 << 20, 4096).unwrap();
        assert_eq!(policy_at(b.addr()), MPOL_PREFERRED);
    }

    #[test]
    fn a_block_within_one_page_is_not_moved() {
        let m = two_spaces_on_node0();
        let origin = m.pool(SpaceId(0)).unwrap();
        let Ok(mut a) = origin.allocate(100, 8) else {
            eprintln!("skipped: cannot bind memory to node 0 here");
            return;
        };
        m.move_pages(&mut a, SpaceId(1)).unwrap();
        assert_eq!(a.resident_space().name, "preferring");
        assert_eq!(m.pool(SpaceId(1)).unwrap().stats().moved_in, 0);
    }
}
