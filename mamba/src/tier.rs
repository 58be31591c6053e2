//! Tiers (kinds of memory) and spaces (concrete places of a tier).

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A kind of memory.
///
/// The order of the variants carries no meaning; placement by speed goes
/// through [`SpaceInfo::bandwidth_mib_s`] and [`SpaceInfo::latency_ns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Ordinary DRAM of a NUMA node.
    Dram,
    /// High-bandwidth memory exposed as a NUMA node (Xeon Max flat mode,
    /// KNL MCDRAM).
    Hbm,
    /// Persistent memory: a kmem NUMA node, or an fsdax/devdax mapping.
    Nvdimm,
    /// GPU device memory.
    Gpu,
    /// Page-locked host memory registered with a GPU runtime.
    Pinned,
    /// A directory on a solid-state drive, used through file mappings or,
    /// with `ssd_io = "direct"`, through `O_DIRECT` spill files.
    Ssd,
}

impl Tier {
    /// Every tier, in display order.
    pub const ALL: [Tier; 6] = [
        Tier::Dram,
        Tier::Hbm,
        Tier::Nvdimm,
        Tier::Gpu,
        Tier::Pinned,
        Tier::Ssd,
    ];

    /// The lower-case name used in configuration, JSON and space names.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Dram => "dram",
            Tier::Hbm => "hbm",
            Tier::Nvdimm => "nvdimm",
            Tier::Gpu => "gpu",
            Tier::Pinned => "pinned",
            Tier::Ssd => "ssd",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text was not the name of a tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?} (expected one of dram, hbm, nvdimm, gpu, pinned, ssd)")]
pub struct ParseTierError(pub String);

impl FromStr for Tier {
    type Err = ParseTierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseTierError(s.to_owned()))
    }
}

/// Identifies a space within one [`Mamba`](crate::Mamba) allocator: its
/// index in [`Mamba::spaces`](crate::Mamba::spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SpaceId(pub u32);

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where the memory of a space physically comes from on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Backing {
    /// Anonymous memory bound to these NUMA nodes of the real machine.
    NumaNodes {
        /// OS indexes of the nodes.
        nodes: Vec<u32>,
    },
    /// Anonymous memory with the process's default policy: used when the
    /// topology describes another machine than this one (a simulation), so
    /// that its spaces land on whatever memory this machine has.
    Unbound,
    /// Sparse files in a directory (SSD, fsdax persistent memory).
    Directory {
        /// The directory.
        path: PathBuf,
    },
    /// Preallocated spill files in a directory, read and written with
    /// `O_DIRECT` (an SSD space with `ssd_io = "direct"`): not
    /// CPU-addressable.
    SpillFiles {
        /// The directory.
        path: PathBuf,
    },
    /// Device memory of a CUDA GPU.
    Cuda {
        /// Device ordinal.
        device: u32,
    },
    /// Page-locked host memory registered with CUDA.
    CudaPinned {
        /// Device ordinal whose context registers it.
        device: u32,
    },
    /// Device memory of a HIP (ROCm) GPU.
    Hip {
        /// Device ordinal.
        device: u32,
    },
    /// Page-locked host memory allocated through HIP (`hipHostMalloc`).
    HipPinned {
        /// Device ordinal current while it is allocated.
        device: u32,
    },
}

/// Static description of one space: what it is, where, how big, how fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceInfo {
    /// Index of the space in its allocator.
    pub id: SpaceId,
    /// Unique name, e.g. `dram0`, `hbm1`, `ssd0`, `gpu0`.
    pub name: String,
    /// Kind of memory.
    pub tier: Tier,
    /// Capacity limit in bytes that the allocator enforces.
    pub capacity: usize,
    /// NUMA node (OS index, in the topology's numbering): the node of a NUMA
    /// space, or for a GPU and its pinned space the node nearest the GPU
    /// (`None` when several nodes are equally near or none is known).
    pub numa_node: Option<u32>,
    /// GPU device ordinal for GPU and pinned spaces.
    pub device: Option<u32>,
    /// CPUs local to this space (OS indexes).
    pub cpus: Vec<u32>,
    /// Bandwidth from its local CPUs in MiB/s, when the platform or the
    /// configuration tells.
    pub bandwidth_mib_s: Option<u64>,
    /// Latency from its local CPUs in nanoseconds, when known.
    pub latency_ns: Option<u64>,
    /// Whether the CPU can load and store this memory directly.
    pub host_accessible: bool,
    /// Whether data survives a restart (NVDIMM, SSD).
    pub persistent: bool,
    /// Where the memory comes from on this machine.
    pub backing: Backing,
}

impl SpaceInfo {
    /// A space bound to no NUMA node and no file, with no CPUs and no
    /// measured costs: what a simulated topology or the memory of a test
    /// double is made of (`device`: a GPU's ordinal, if any;
    /// `host_accessible`: whether the CPU can address it).
    ///
    /// ```
    /// use mamba::{SpaceInfo, Tier};
    /// let gpu = SpaceInfo::unbound(1, "gpu0", Tier::Gpu, Some(0), false, 1 << 30);
    /// assert_eq!((gpu.device, gpu.numa_node), (Some(0), None));
    /// ```
    pub fn unbound(
        id: u32,
        name: &str,
        tier: Tier,
        device: Option<u32>,
        host_accessible: bool,
        capacity: usize,
    ) -> SpaceInfo {
        SpaceInfo {
            id: SpaceId(id),
            name: name.into(),
            tier,
            capacity,
            numa_node: None,
            device,
            cpus: Vec::new(),
            bandwidth_mib_s: None,
            latency_ns: None,
            host_accessible,
            persistent: false,
            backing: Backing::Unbound,
        }
    }

    /// Whether this space is a NUMA node's own memory (DRAM, HBM, kmem
    /// NVDIMM), as opposed to device or pinned memory that is merely near a
    /// node.
    pub fn is_node_memory(&self) -> bool {
        self.numa_node.is_some() && self.device.is_none()
    }

    /// The CPU set as a compact list, e.g. `0-3,8`.
    pub fn cpu_list(&self) -> String {
        compact_list(&self.cpus)
    }
}

/// Formats sorted integers as ranges: `[0,1,2,5]` -> `0-2,5`.
pub(crate) fn compact_list(values: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < values.len() {
        let start = values[i];
        let mut end = start;
        while i + 1 < values.len() && values[i + 1] == end + 1 {
            i += 1;
            end = values[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_from_their_names_in_any_case() {
        for t in Tier::ALL {
            assert_eq!(t.name().parse::<Tier>(), Ok(t));
            assert_eq!(t.name().to_uppercase().parse::<Tier>(), Ok(t));
        }
        assert!("tape".parse::<Tier>().is_err());
    }

    #[test]
    fn cpu_lists_are_compacted_into_ranges() {
        assert_eq!(compact_list(&[]), "");
        assert_eq!(compact_list(&[3]), "3");
        assert_eq!(compact_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }
}
