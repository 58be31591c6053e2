//! Demotion and promotion of movable data between tiers.
//!
//! Data allocated with [`Mamba::movable`] is a [`Movable`]: a handle that
//! reads, writes, touches and pins it, while mamba is free to move it
//! between the spaces of the node. Each space has [`Watermarks`] (shares of
//! its capacity, 0.9 and 0.8 by default; see the `[watermarks]` section of
//! [`crate::config`]). A rebalancing pass ([`Mamba::rebalance`], or the
//! background [`Mover`]):
//!
//! 1. **demotes**: every space above its high watermark sends its coldest
//!    unpinned movable data one or more tiers down, in [`TIER_ORDER`]
//!    (GPU, HBM, DRAM, NVDIMM, SSD), until it is below its low watermark;
//! 2. **promotes**: hot movable data (not just demoted) moves to the
//!    fastest tier with room under its low watermark; when that tier is
//!    full, data there that is colder than the candidate is demoted to make
//!    the room.
//!
//! Heat is the number of accesses through the handle (reads, writes,
//! touches, pins), halved every second; data is hot from two accesses on,
//! so that data read once (a scan of cold data) is not promoted. Among
//! data of equal heat the least recently used is the coldest.
//!
//! Heat comes from the API only ([`Movable::touch`], [`Movable::pin`] and
//! the handle's reads and writes), not from the kernel, because on the
//! nodes this runs on the kernel's sources are missing or too dear: there
//! is no idle page tracking (`/sys/kernel/mm/page_idle` is absent unless
//! the kernel is built with it); writing `/proc/self/clear_refs` and
//! reading the referenced bits back from `/proc/self/smaps` cost about
//! 15 to 20 ms per GiB each (4 KiB pages), per pass, and clearing those
//! bits takes from page reclaim the recency it ages pages by; DAMON needs
//! root (`CAP_SYS_ADMIN`) and a kernel built with it, which jobs on shared
//! nodes do not have; NUMA hinting faults come only with automatic NUMA
//! balancing, which is off (`/proc/sys/kernel/numa_balancing` is 0). GPU
//! memory has no kernel-visible access bits at all.
//!
//! How data moves depends on the two spaces:
//! - between two NUMA spaces (DRAM, HBM, kmem NVDIMM) the pages move in
//!   place (`mbind` with `MPOL_MF_MOVE`, as [`Mamba::move_pages`]): the
//!   address does not change, and the origin space stops counting them;
//! - otherwise (an SSD spill file, a page-cache SSD directory, GPU device
//!   memory) the data is copied into a new block of the target space, and
//!   the old block is freed; where the CPU cannot load a side, the copy
//!   goes through its provider's block reads and writes
//!   ([`BlockIo`](crate::provider::BlockIo): `O_DIRECT` file I/O, or the
//!   GPU's copy stream), so the data's address changes.
//!
//! Pinned data ([`Movable::pin`]) never moves: its pointer is stable while
//! the [`Pinned`] guard lives. Pinning data that lies in a space the CPU
//! cannot address (an `O_DIRECT` spill file) first brings it up to the
//! fastest CPU-addressable space with room.
//!
//! ## GPU spaces
//!
//! GPU device memory is the top of the order. Movable data allocated in a
//! GPU space is demoted to host memory when that space passes its high
//! watermark, and promoted back when hot, but only to **its own** GPU (the
//! one it was allocated on: its kernels and streams are there); data
//! allocated in host memory is never promoted to a GPU. Pinning GPU data
//! brings it to host memory like SSD data (a CPU pointer), and a later
//! pass returns it if it stays hot. Device spaces whose provider cannot
//! read and write by address (a plain [`DevicePool`](crate::gpu::DevicePool))
//! refuse movable data; pinned-host spaces take no part.
//! [`Mamba::is_tiered`] says whether a node has two levels to move between.
//!
//! ```
//! use mamba::{Config, Mamba, Policy, Tier};
//! let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
//! let mut data = mamba.movable(1 << 20, &Policy::require(Tier::Dram))?;
//! data.write(0, b"hello")?;
//! let report = mamba.rebalance(); // nothing is over its watermark here
//! assert_eq!(report.moves, 0);
//! let pinned = data.pin()?;
//! assert_eq!(&pinned.as_slice()?[..5], b"hello");
//! # Ok::<(), mamba::Error>(())
//! ```

mod engine;
mod movable;
mod mover;
mod stats;

pub use movable::{Movable, Pinned};
pub use mover::Mover;
pub use stats::{Direction, PairStats, PassReport, TieringStats};

pub(crate) use engine::Tiering;

use crate::allocator::Mamba;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::tier::{SpaceId, Tier};
use serde::{Deserialize, Deserializer, Serialize};

/// The tiers that movable data moves between, fastest first: demotion goes
/// right, promotion left.
pub const TIER_ORDER: [Tier; 5] = [Tier::Gpu, Tier::Hbm, Tier::Dram, Tier::Nvdimm, Tier::Ssd];

/// The position of `tier` in [`TIER_ORDER`], if it takes part in tiering.
pub fn level(tier: Tier) -> Option<usize> {
    TIER_ORDER.iter().position(|&t| t == tier)
}

/// A space's watermarks, as shares of its capacity: above `high`, its
/// coldest movable data is demoted until it is at or below `low`;
/// promotion fills it up to `low` (leaving room for new allocations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Watermarks {
    high: f64,
    low: f64,
}

impl Watermarks {
    /// The default: demote above 90 % of the capacity, down to 80 %.
    pub const DEFAULT: Watermarks = Watermarks {
        high: 0.9,
        low: 0.8,
    };

    /// Watermarks at these shares of the capacity.
    ///
    /// # Errors
    /// [`Error::Config`] unless `0 < low <= high <= 1`.
    pub fn new(high: f64, low: f64) -> Result<Self> {
        if low > 0.0 && low <= high && high <= 1.0 {
            Ok(Watermarks { high, low })
        } else {
            Err(Error::Config(format!(
                "watermarks high {high} and low {low}: expected 0 < low <= high <= 1"
            )))
        }
    }

    /// The high watermark, as a share of the capacity.
    pub fn high(&self) -> f64 {
        self.high
    }

    /// The low watermark, as a share of the capacity.
    pub fn low(&self) -> f64 {
        self.low
    }

    /// The high watermark of a space of `capacity` bytes, in bytes.
    pub fn high_bytes(&self, capacity: usize) -> usize {
        (capacity as f64 * self.high) as usize
    }

    /// The low watermark of a space of `capacity` bytes, in bytes.
    pub fn low_bytes(&self, capacity: usize) -> usize {
        (capacity as f64 * self.low) as usize
    }
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks::DEFAULT
    }
}

impl std::fmt::Display for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.high, self.low)
    }
}

/// `HIGH,LOW`, e.g. `0.9,0.8` (the form of `MAMBA_WATERMARKS_<TIER>`).
impl std::str::FromStr for Watermarks {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "watermarks {text:?}: expected HIGH,LOW, e.g. 0.9,0.8"
            ))
        };
        let (high, low) = text.split_once(',').ok_or_else(bad)?;
        let share = |s: &str| s.trim().parse::<f64>().map_err(|_| bad());
        Watermarks::new(share(high)?, share(low)?)
    }
}

/// In TOML, `{ high = 0.9, low = 0.8 }` or `"0.9,0.8"`.
impl<'de> Deserialize<'de> for Watermarks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            high: f64,
            low: f64,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Table(Table),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse(),
            Raw::Table(t) => Watermarks::new(t.high, t.low),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Mamba {
    /// Allocates `len` bytes of movable data, placed first by `policy`
    /// (falling back as [`Mamba::allocate`] does); rebalancing may then
    /// move it between tiers (see [`crate::tiering`]).
    ///
    /// # Errors
    /// As [`Mamba::allocate`]; [`Error::Unsupported`] when the policy
    /// places it in a space outside [`TIER_ORDER`] (pinned host memory) or
    /// one whose bytes cannot be moved (device memory whose provider
    /// offers no reads and writes by address).
    pub fn movable(&self, len: usize, policy: &Policy) -> Result<Movable> {
        self.tiering().movable(self.placement(policy)?, len)
    }

    /// Runs one rebalancing pass now (waiting for a pass of a [`Mover`]
    /// in progress) and reports what it moved.
    pub fn rebalance(&self) -> PassReport {
        self.tiering().rebalance()
    }

    /// Whether movable data can move at all here: the node has spaces on
    /// at least two levels of [`TIER_ORDER`] (a GPU and DRAM, say).
    pub fn is_tiered(&self) -> bool {
        self.tiering().is_tiered()
    }

    /// Bytes demoted and promoted so far, per pair of spaces, and the time
    /// spent moving.
    pub fn tiering_stats(&self) -> TieringStats {
        self.tiering().stats()
    }

    /// The watermarks of a space.
    ///
    /// # Errors
    /// [`Error::UnknownSpace`].
    pub fn watermarks(&self, space: SpaceId) -> Result<Watermarks> {
        self.tiering().watermarks(space)
    }

    /// Changes the watermarks of a space (they apply from the next pass).
    ///
    /// # Errors
    /// [`Error::UnknownSpace`].
    pub fn set_watermarks(&self, space: SpaceId, marks: Watermarks) -> Result<()> {
        self.tiering().set_watermarks(space, marks)
    }

    /// Bytes of live movable data held in a space now (0 for an unknown
    /// space).
    pub fn movable_bytes(&self, space: SpaceId) -> usize {
        self.tiering().movable_bytes(space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_parse_and_check_their_order() {
        let w: Watermarks = "0.7, 0.5".parse().unwrap();
        assert_eq!((w.high(), w.low()), (0.7, 0.5));
        assert_eq!(w.to_string(), "0.7,0.5");
        assert_eq!((w.high_bytes(1000), w.low_bytes(1000)), (700, 500));
        for bad in ["0.5,0.7", "1.1,0.5", "0.5,0", "0.5", "x,0.1", "NaN,0.5"] {
            assert!(bad.parse::<Watermarks>().is_err(), "{bad}");
        }
        assert_eq!(Watermarks::new(1.0, 1.0).unwrap().high_bytes(10), 10);
    }

    #[test]
    fn the_tier_order_runs_from_fast_to_slow() {
        assert_eq!(level(Tier::Gpu), Some(0));
        assert!(level(Tier::Gpu) < level(Tier::Hbm));
        assert!(level(Tier::Hbm) < level(Tier::Dram));
        assert!(level(Tier::Dram) < level(Tier::Ssd));
        assert_eq!(level(Tier::Pinned), None);
    }
}

#[cfg(test)]
mod gpu_tests;

#[cfg(test)]
mod numa_tests {
    use crate::pool::{Pool, PoolSettings};
    use crate::provider::NumaProvider;
    use crate::sys::NumaMode;
    use crate::tier::{Backing, SpaceId, SpaceInfo, Tier};
    use crate::{Mamba, Policy, Watermarks};

    /// A fast and a slow tier that are both bound to NUMA node 0 of this
    /// machine, so that moves between them go through the kernel.
    fn two_tiers_on_node0() -> Mamba {
        let space = |id: u32, tier: Tier, capacity: usize| {
            Pool::new(
                SpaceInfo {
                    id: SpaceId(id),
                    name: format!("{tier}0"),
                    tier,
                    capacity,
                    numa_node: Some(0),
                    device: None,
                    cpus: Vec::new(),
                    bandwidth_mib_s: None,
                    latency_ns: None,
                    host_accessible: true,
                    persistent: false,
                    backing: Backing::NumaNodes { nodes: vec![0] },
                },
                Box::new(NumaProvider::new(Some(vec![0]), NumaMode::Bind, false)),
                PoolSettings {
                    chunk_size: 1 << 20,
                    ..PoolSettings::default()
                },
            )
        };
        Mamba::from_pools(vec![
            space(0, Tier::Hbm, 4 << 20),
            space(1, Tier::Dram, 64 << 20),
        ])
        .unwrap()
    }

    #[test]
    fn moves_between_numa_spaces_go_through_the_kernel_in_place() {
        let m = two_tiers_on_node0();
        let (hbm, dram) = (SpaceId(0), SpaceId(1));
        m.set_watermarks(hbm, Watermarks::new(0.5, 0.25).unwrap())
            .unwrap();
        let mut data = match (0..3)
            .map(|_| m.movable(1 << 20, &Policy::require(hbm)))
            .collect::<crate::Result<Vec<_>>>()
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: cannot bind memory to node 0 here: {e}");
                return;
            }
        };
        for (i, d) in data.iter().enumerate() {
            d.write(0, &vec![i as u8 + 1; 1 << 20]).unwrap();
        }
        let addrs: Vec<usize> = data.iter().map(|d| d.addr()).collect();
        // 3 MiB over the 2 MiB high watermark: two go down to reach 1 MiB.
        let report = m.rebalance();
        assert_eq!((report.moves, report.failed), (2, 0), "{report:?}");
        let down: Vec<usize> = (0..3).filter(|&i| data[i].space_id() == dram).collect();
        assert_eq!(down.len(), 2);
        for (i, d) in data.iter_mut().enumerate() {
            assert_eq!(d.addr(), addrs[i]);
            let pinned = d.pin().unwrap();
            assert!(pinned.as_slice().unwrap().iter().all(|&b| b == i as u8 + 1));
            // Every page is still mapped and on the (only) node.
            let loc = crate::locate(pinned.as_ptr().unwrap() as usize, 1 << 20).unwrap();
            assert_eq!(
                loc.pages_per_node.get(&0),
                Some(&((1 << 20) / crate::page_size()))
            );
        }
        let stats = m.tiering_stats();
        assert_eq!(stats.pairs.len(), 1);
        assert_eq!(stats.pairs[0].in_place, 2);
        assert_eq!(m.pool(hbm).unwrap().stats().moved_out, 2 << 20);
    }
}
