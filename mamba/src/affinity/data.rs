//! Where data lives: the NUMA node holding most of a memory range's pages.
//!
//! Locating pages is a `move_pages` query: one to two microseconds per
//! spawn in the `affinity` benchmark (`spawn_near_64KiB_query_each_task`),
//! ten times and more the cost of the spawn. [`DataSet`] locates data once and lets every
//! spawn near it reuse the answer until [`DataSet::refresh`] asks again.

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

/// Data located once: tasks spawned near it
/// ([`super::AffinityPool::spawn_near`], [`super::Scope::spawn_near`]) go
/// to the node found then, without another page query. It holds the
/// answer, not the data. Pages move only when something moves them
/// ([`crate::Mamba::move_pages`], the kernel's NUMA balancing, the first
/// touch of pages not there yet): call [`DataSet::refresh`] after that.
/// Spawning near the data itself queries every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSet {
    node: Option<u32>,
}

impl DataSet {
    /// Locates `data` (one query) in `locality`'s numbering.
    ///
    /// # Errors
    /// When the pages cannot be located.
    pub fn locate<D: DataLocation + ?Sized>(data: &D, locality: &Locality) -> Result<Self> {
        Ok(DataSet {
            node: data.data_node(locality)?,
        })
    }

    /// The node found by the last query (`None`: no page then).
    pub fn node(&self) -> Option<u32> {
        self.node
    }

    /// Locates `data` (the data set's) again; returns the node found.
    ///
    /// # Errors
    /// When the pages cannot be located; the previous answer stays.
    pub fn refresh<D: DataLocation + ?Sized>(
        &mut self,
        data: &D,
        locality: &Locality,
    ) -> Result<Option<u32>> {
        self.node = data.data_node(locality)?;
        Ok(self.node)
    }
}

impl DataLocation for DataSet {
    /// The node found by the last query: no query here.
    fn data_node(&self, _locality: &Locality) -> Result<Option<u32>> {
        Ok(self.node)
    }
}
