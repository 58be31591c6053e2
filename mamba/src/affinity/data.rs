//! Where data lives: the NUMA node holding most of a memory range's pages.

use super::error::Result;
use super::locality::Locality;
use crate::allocation::Allocation;
use crate::placement::PageLocation;

/// Anything whose NUMA node a task can be scheduled near.
pub trait DataLocation {
    /// The node holding most of the data's pages in `locality`'s
    /// numbering; `None` when no page exists yet.
    ///
    /// # Errors
    /// When the kernel refuses the page query.
    fn data_node(&self, locality: &Locality) -> Result<Option<u32>>;
}

/// A range of this process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRange {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

impl DataRange {
    /// The range `addr..addr + len`.
    pub fn new(addr: usize, len: usize) -> Self {
        DataRange { addr, len }
    }

    /// The memory of a slice.
    pub fn of<T>(slice: &[T]) -> Self {
        DataRange {
            addr: slice.as_ptr() as usize,
            len: std::mem::size_of_val(slice),
        }
    }
}

/// Pages queried, one query each, on a range longer than
/// [`WHOLE_RANGE_PAGES`]: a `move_pages` query costs about half a
/// microsecond plus a quarter per page, so long ranges are sampled.
pub const SAMPLED_PAGES: usize = 8;

/// Ranges of at most this many pages are queried whole, in one call (about
/// the cost of [`SAMPLED_PAGES`] single-page queries).
pub const WHOLE_RANGE_PAGES: usize = 24;

impl DataRange {
    /// Where its pages are: every page of a range of at most
    /// [`WHOLE_RANGE_PAGES`] pages, else [`SAMPLED_PAGES`] pages spread
    /// evenly from the first to the last.
    ///
    /// # Errors
    /// When the kernel refuses the query.
    pub fn sample(&self) -> Result<PageLocation> {
        let page = crate::page_size();
        let first = self.addr / page;
        let pages = (self.addr + self.len).div_ceil(page) - first;
        if pages <= WHOLE_RANGE_PAGES {
            return Ok(crate::placement::locate(self.addr, self.len)?);
        }
        let mut total = PageLocation::default();
        for i in 0..SAMPLED_PAGES {
            let p = first + i * (pages - 1) / (SAMPLED_PAGES - 1);
            let one = crate::placement::locate(p * page, 1)?;
            for (node, n) in one.pages_per_node {
                *total.pages_per_node.entry(node).or_default() += n;
            }
            total.untouched += one.untouched;
            total.unknown += one.unknown;
        }
        Ok(total)
    }
}

impl DataLocation for DataRange {
    /// The majority node of its pages ([`DataRange::sample`]), in this
    /// machine's numbering — also on a simulated topology, whose nodes are
    /// all backed by this machine's memory: there, locate an
    /// [`Allocation`] instead, whose space names its simulated node.
    fn data_node(&self, _locality: &Locality) -> Result<Option<u32>> {
        if self.len == 0 {
            return Ok(None);
        }
        Ok(self.sample()?.majority_node())
    }
}

impl<T> DataLocation for [T] {
    fn data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        DataRange::of(self).data_node(locality)
    }
}

impl DataLocation for Allocation<'_> {
    /// On this machine, the majority node of its pages (sampled as
    /// [`DataRange::sample`]), else (no page yet,
    /// or device memory) the node of the space holding it. On a simulated
    /// topology the pages say nothing about the simulated nodes: the node
    /// of the space holding it (after [`crate::Mamba::move_pages`], the
    /// target's).
    fn data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        let space_node = self.resident_space().numa_node;
        if !locality.is_real() || self.as_ptr().is_err() {
            return Ok(space_node);
        }
        let pages = DataRange::new(self.addr(), self.len()).data_node(locality)?;
        Ok(pages.or(space_node))
    }
}
