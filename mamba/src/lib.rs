//! # mamba: a tiered memory allocator
//!
//! mamba finds every memory tier of a node — DRAM per NUMA node, HBM,
//! persistent memory, GPU memory, SSD-backed files — pools each of them,
//! and places data by policy: a required tier, a preferred tier with a
//! fallback chain, or "highest bandwidth", "lowest latency", "largest
//! capacity", optionally near some CPUs. Every allocation says where it
//! landed.
//!
//! | layer | module | job |
//! |---|---|---|
//! | discovery | [`topology`], [`config`] | spaces from hwloc plus configuration; cache sizes and bandwidths for the cost figures ([`topology::costs`]) |
//! | providers | [`provider`], [`hugepage`] | raw chunks: mbind'ed mmap (THP-aligned, or hugetlbfs), files, spill files, CUDA, HIP |
//! | disk and persistence | [`spill`], [`pmem`] | O_DIRECT spill files (io_uring or pread), named persistent objects with a consistency check |
//! | pools | [`pool`] | size classes, thread caches, best-fit arena, trim, statistics |
//! | allocator | [`Mamba`], [`Policy`] | placement by policy with fallback |
//! | locality | [`placement`] | where pages are, moving them |
//! | tiering | [`tiering`] | movable data demoted and promoted between tiers by watermarks |
//! | arrays | [`mod@array`], [`copy`] | n-d arrays in any space, tiles, layout-converting copies |
//! | GPU data plane | [`gpu`] | device runtime (CUDA, test double), streams, events, copies, device pool |
//! | affinity | [`affinity`] | pinning, NUMA-aware worker pool, move task or data |
//!
//! ```
//! use mamba::{Config, Mamba, Policy, Tier};
//!
//! let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
//! for space in mamba.spaces() {
//!     println!("{} {} {} bytes", space.name, space.tier, space.capacity);
//! }
//! let mut a = mamba.allocate(1 << 20, 4096, &Policy::highest_bandwidth())?;
//! a.as_mut_slice()?.fill(1);
//! assert_eq!(a.tier(), Tier::Dram); // on a plain DRAM node
//! # Ok::<(), mamba::Error>(())
//! ```
//!
//! Nodes this machine is not — several NUMA nodes, HBM, NVDIMM — are
//! described with an hwloc XML file ([`Config::topology`]); their spaces are
//! then backed by this machine's memory, with the simulated capacities.

pub mod adapters;
pub mod affinity;
pub mod allocation;
pub mod allocator;
pub mod array;
pub mod config;
pub mod copy;
pub mod error;
pub mod gpu;
pub mod hugepage;
pub mod placement;
pub mod pmem;
pub mod policy;
pub mod pool;
pub mod provider;
pub mod spill;
mod sys;
pub mod tier;
pub mod tiering;
pub mod topology;

pub use allocation::{Allocation, RawAllocation};
pub use allocator::{Mamba, Placement};
pub use array::{Array, ArrayView, Tiles};
pub use config::{ByteSize, Config};
pub use copy::{copy_array, copy_async, copy_into_tile, copy_tile, CopyHandle};
pub use error::{Error, Result};
pub use placement::{locate, locate_pages, PageLocation};
pub use policy::{Criterion, Near, Policy, Rule, Target};
pub use pool::{Pool, PoolSettings, PoolStats};
pub use sys::page_size;
pub use tier::{Backing, SpaceId, SpaceInfo, Tier};
pub use tiering::{Movable, Mover, Pinned, TieringStats, Watermarks};
