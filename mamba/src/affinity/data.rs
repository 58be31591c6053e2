//! Where data lives: the NUMA node holding most of a memory range's pages.
//!
//! Locating pages is a `move_pages` query: 2.5 to 5 microseconds per spawn
//! in the `affinity` benchmark (`spawn_near_64KiB_query_each_task`, on a
//! busy two-CPU machine), thirty times and more the cost of the spawn. So
//! a range is queried once:
//! each thread keeps the node found for a range (see
//! [`super::forget_locations`]) and routes later spawns near the same range
//! with it. [`Fresh`] asks the kernel every time instead; [`DataSet`] holds
//! one answer explicitly until [`DataSet::refresh`] asks again.

use super::cache;
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

    /// [`DataLocation::data_node`] from a page query, not from a location
    /// cached by an earlier one (the query refreshes the cache). By default
    /// the same as `data_node`, for data that caches nothing.
    ///
    /// # Errors
    /// When the kernel refuses the page query.
    fn fresh_data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        self.data_node(locality)
    }
}

/// Data whose pages are queried on every spawn near it, bypassing the
/// locations cached per thread: for pages that move behind mamba's back
/// often. It costs a `move_pages` query per spawn (measured by the
/// `affinity` benchmark's `spawn_near_64KiB_query_each_task`).
#[derive(Debug, Clone, Copy)]
pub struct Fresh<'a, D: ?Sized>(pub &'a D);

impl<D: DataLocation + ?Sized> DataLocation for Fresh<'_, D> {
    fn data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        self.0.fresh_data_node(locality)
    }
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

    /// The majority node of its pages by a query, kept in this thread's
    /// cache (or dropped from it when there is none).
    fn query_node(&self) -> Result<Option<u32>> {
        if self.len == 0 {
            return Ok(None);
        }
        let epoch = cache::epoch();
        let node = self.sample()?.majority_node();
        cache::store(self.addr, self.len, epoch, node);
        Ok(node)
    }
}

impl DataLocation for DataRange {
    /// The majority node of its pages ([`DataRange::sample`]), in this
    /// machine's numbering — also on a simulated topology, whose nodes are
    /// all backed by this machine's memory: there, locate an
    /// [`Allocation`] instead, whose space names its simulated node.
    ///
    /// The node found for the same range by an earlier call on this thread
    /// is reused without a query until [`super::forget_locations`] (which
    /// [`crate::Mamba::move_pages`] calls); a range without pages is asked
    /// again each time.
    fn data_node(&self, _locality: &Locality) -> Result<Option<u32>> {
        match cache::lookup(self.addr, self.len) {
            Some(node) => Ok(Some(node)),
            None => self.query_node(),
        }
    }

    fn fresh_data_node(&self, _locality: &Locality) -> Result<Option<u32>> {
        self.query_node()
    }
}

impl<T> DataLocation for [T] {
    fn data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        DataRange::of(self).data_node(locality)
    }

    fn fresh_data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        DataRange::of(self).fresh_data_node(locality)
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
        self.node_by(locality, DataRange::data_node)
    }

    fn fresh_data_node(&self, locality: &Locality) -> Result<Option<u32>> {
        self.node_by(locality, DataRange::fresh_data_node)
    }
}

impl Allocation<'_> {
    /// [`DataLocation::data_node`] with `pages` locating its range.
    fn node_by(
        &self,
        locality: &Locality,
        pages: fn(&DataRange, &Locality) -> Result<Option<u32>>,
    ) -> Result<Option<u32>> {
        let space_node = self.resident_space().numa_node;
        if !locality.is_real() || self.as_ptr().is_err() {
            return Ok(space_node);
        }
        let found = pages(&DataRange::new(self.addr(), self.len()), locality)?;
        Ok(found.or(space_node))
    }
}

/// Data located once: tasks spawned near it
/// ([`super::AffinityPool::spawn_near`], [`super::Scope::spawn_near`]) go
/// to the node found then, without another page query. It holds the
/// answer, not the data. Pages move only when something moves them
/// ([`crate::Mamba::move_pages`], the kernel's NUMA balancing, the first
/// touch of pages not there yet): call [`DataSet::refresh`] after that.
/// Spawning near a range itself also queries once per thread and then
/// reuses the answer (see [`DataRange`]'s `data_node`); a data set makes
/// the answer explicit, shares it between threads and survives
/// [`super::forget_locations`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::{forget_locations, AffinityPool};
    use crate::Config;

    fn here() -> Locality {
        Locality::load(&Config::default()).unwrap()
    }

    #[test]
    fn a_range_is_routed_to_the_node_of_its_pages() {
        let locality = here();
        let pool = AffinityPool::builder()
            .workers_per_domain(1)
            .build(&locality)
            .unwrap();
        let v = vec![7u64; 1 << 14];
        let range = DataRange::of(&v[..]);
        let node = crate::locate(range.addr, range.len)
            .unwrap()
            .majority_node();
        assert!(node.is_some(), "touched pages are on a node");
        // Found by a query, then from the cache: the same node either way.
        assert_eq!(range.data_node(&locality).unwrap(), node);
        assert_eq!(range.data_node(&locality).unwrap(), node);
        assert_eq!(Fresh(&range).data_node(&locality).unwrap(), node);
        let route = pool.route_for(&v[..]).unwrap();
        assert_eq!(route.node, node);
        assert_eq!(route.domain, pool.domain_of(node.unwrap()).unwrap().index);
    }

    #[test]
    fn the_cache_answers_until_a_fresh_query_or_forgetting() {
        let locality = here();
        let v = vec![1u8; 1 << 16];
        let range = DataRange::of(&v[..]);
        let real = range.fresh_data_node(&locality).unwrap();
        assert!(real.is_some());
        // A node no query would give: only the cache can answer it.
        let planted = Some(9999);
        let answered = cache::undisturbed(|| {
            cache::store(range.addr, range.len, cache::epoch(), planted);
            (
                range.data_node(&locality).unwrap(),
                v[..].data_node(&locality).unwrap(),
            )
        });
        assert_eq!(answered, (planted, planted));
        // A fresh query asks the kernel and replaces the cached answer.
        let fresh = cache::undisturbed(|| {
            cache::store(range.addr, range.len, cache::epoch(), planted);
            let fresh = Fresh(&v[..]).data_node(&locality).unwrap();
            (fresh, cache::lookup(range.addr, range.len))
        });
        assert_eq!(fresh, (real, real));
        // Forgetting makes the next spawn near the range query again.
        cache::store(range.addr, range.len, cache::epoch(), planted);
        forget_locations();
        assert_eq!(cache::lookup(range.addr, range.len), None);
        assert_eq!(range.data_node(&locality).unwrap(), real);
    }

    #[test]
    fn moving_pages_forgets_cached_locations() {
        let page = crate::page_size();
        let v = vec![3u8; 4 * page];
        let addr = (v.as_ptr() as usize).next_multiple_of(page);
        let node = crate::sys::page_nodes(addr, page, None).unwrap()[0];
        assert!(node >= 0, "a touched page is on a node");
        let before = cache::epoch();
        // Moved where it already is: still a page move for the cache.
        crate::sys::page_nodes(addr, page, Some(node as u32)).unwrap();
        assert!(cache::epoch() > before);
    }
}
