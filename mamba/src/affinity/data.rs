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

/// Pages queried on a range longer than that: spread evenly from the first
/// to the last, in one `move_pages` call (about half a microsecond plus a
/// quarter per page).
pub const SAMPLED_PAGES: usize = 4;

impl DataRange {
    /// Where its pages are: every page of a range of at most
    /// [`SAMPLED_PAGES`] pages, else [`SAMPLED_PAGES`] pages spread evenly
    /// from the first to the last; one query either way.
    ///
    /// # Errors
    /// When the kernel refuses the query.
    pub fn sample(&self) -> Result<PageLocation> {
        let page = crate::page_size();
        let first = self.addr / page;
        let pages = (self.addr + self.len).div_ceil(page) - first;
        if pages <= SAMPLED_PAGES {
            return Ok(crate::placement::locate(self.addr, self.len)?);
        }
        let sampled: Vec<usize> = (0..SAMPLED_PAGES)
            .map(|i| (first + i * (pages - 1) / (SAMPLED_PAGES - 1)) * page)
            .collect();
        Ok(crate::placement::locate_pages(&sampled)?)
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
