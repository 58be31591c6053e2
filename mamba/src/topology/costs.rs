//! What moving bytes costs on this node, from what hwloc reports: the
//! last-level cache of each package, and the bandwidth of NUMA memory from
//! its own CPUs and from the others. Two figures derive from it:
//!
//! - the **streaming-store threshold**: copies writing at least the
//!   smallest package's last-level cache use non-temporal stores (the
//!   written bytes would evict the whole cache anyway);
//! - the **task-versus-data migration costs**
//!   ([`MigrationPolicy`]): streaming a byte locally costs
//!   `1 / local bandwidth`, migrating it `1 / remote bandwidth + 1 / local
//!   bandwidth` (read across, written here), and passes after the first
//!   over data that fits the last-level cache are served by the cache.
//!
//! Where hwloc reports nothing the documented constants apply
//! ([`FALLBACK_STREAMING_THRESHOLD`], [`MigrationPolicy::default`]), and
//! [`Origin`] says so.

use crate::affinity::MigrationPolicy;
use crate::tier::{SpaceInfo, Tier};
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::Topology;
use serde::Serialize;

use super::AttributeTable;

/// The streaming-store threshold when hwloc reports no cache size: 32 MiB,
/// a typical server last-level cache (the default of
/// [`mamba_transforms::ExecOptions`]).
pub const FALLBACK_STREAMING_THRESHOLD: usize = 32 << 20;

/// Where a derived figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Derived from what hwloc (or the configuration) reports.
    Topology,
    /// A documented constant: the topology reports nothing to derive from.
    Fallback,
}

/// The cache sizes and bandwidths of a node that the cost figures derive
/// from, as hwloc reports them (`None`: not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MachineCosts {
    /// The smallest package's last-level cache in bytes (the sum of the
    /// deepest data caches below it; the whole machine counts as one
    /// package when the topology has none).
    pub llc_bytes: Option<u64>,
    /// The slowest DRAM node's bandwidth from its own CPUs (MiB/s; a
    /// configured `bandwidth_mib_s` of the space overrides hwloc's).
    pub local_bandwidth_mib_s: Option<u64>,
    /// The slowest bandwidth at which CPUs of one package read a DRAM node
    /// of another (MiB/s).
    pub remote_bandwidth_mib_s: Option<u64>,
}

/// Nanoseconds to move one byte at `mib_s` MiB/s.
fn ns_per_byte(mib_s: u64) -> f64 {
    1e9 / (mib_s as f64 * (1u64 << 20) as f64)
}

impl MachineCosts {
    /// Reads the cache sizes of `topology`, and the bandwidths of its DRAM
    /// `spaces` (local: the space's own figure; remote: from `attributes`,
    /// the slowest initiator sharing no CPU with the node).
    pub fn read(topology: &Topology, spaces: &[SpaceInfo], attributes: &AttributeTable) -> Self {
        let dram = || {
            spaces
                .iter()
                .filter(|s| s.tier == Tier::Dram && s.is_node_memory() && !s.cpus.is_empty())
        };
        let local_bandwidth_mib_s = dram().filter_map(|s| s.bandwidth_mib_s).min();
        let remote_bandwidth_mib_s = dram()
            .filter_map(|s| {
                attributes
                    .seen_by_others(s.numa_node?, &s.cpus)
                    .filter_map(|seen| seen.bandwidth_mib_s)
                    .min()
            })
            .min();
        MachineCosts {
            llc_bytes: smallest_package_llc(topology),
            local_bandwidth_mib_s,
            remote_bandwidth_mib_s,
        }
    }

    /// The streaming-store threshold in bytes, and where it comes from:
    /// the smallest package's last-level cache, else
    /// [`FALLBACK_STREAMING_THRESHOLD`].
    pub fn streaming_threshold(&self) -> (usize, Origin) {
        match self.llc_bytes {
            Some(bytes) => (
                usize::try_from(bytes).unwrap_or(usize::MAX),
                Origin::Topology,
            ),
            None => (FALLBACK_STREAMING_THRESHOLD, Origin::Fallback),
        }
    }

    /// The migration cost model, and where its bandwidth figures come
    /// from. Without a local bandwidth the per-byte costs are
    /// [`MigrationPolicy::default`]'s; without a remote one, a migrated
    /// byte is read at the local bandwidth. The cache size is used
    /// whenever hwloc reports it.
    pub fn migration_policy(&self) -> (MigrationPolicy, Origin) {
        let mut policy = MigrationPolicy {
            cache_bytes: self
                .llc_bytes
                .map_or(0, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            ..MigrationPolicy::default()
        };
        let Some(local) = self.local_bandwidth_mib_s.filter(|&b| b > 0) else {
            return (policy, Origin::Fallback);
        };
        let remote = self
            .remote_bandwidth_mib_s
            .filter(|&b| b > 0)
            .unwrap_or(local);
        policy.local_ns_per_byte = ns_per_byte(local);
        policy.migrate_ns_per_byte = ns_per_byte(remote) + ns_per_byte(local);
        (policy, Origin::Topology)
    }
}

/// Bytes of the deepest data caches below `obj` (0 without any).
fn llc_below(obj: &TopologyObject) -> u64 {
    let mut caches: Vec<(usize, u64)> = Vec::new();
    let mut stack = vec![obj];
    while let Some(o) = stack.pop() {
        if o.object_type().is_cpu_data_cache() {
            if let Some(ObjectAttributes::Cache(c)) = o.attributes() {
                caches.push((c.depth(), c.size().map_or(0, |s| s.get())));
            }
        }
        stack.extend(o.normal_children());
    }
    let deepest = caches.iter().map(|&(d, _)| d).max().unwrap_or(0);
    caches
        .iter()
        .filter(|&&(d, _)| d == deepest)
        .map(|&(_, s)| s)
        .sum()
}

/// The smallest last-level cache of a package (of the machine when there
/// is no package); `None` when no size is reported.
fn smallest_package_llc(topology: &Topology) -> Option<u64> {
    let packages: Vec<&TopologyObject> = topology.objects_with_type(ObjectType::Package).collect();
    let sizes: Vec<u64> = if packages.is_empty() {
        vec![llc_below(topology.root_object())]
    } else {
        packages.into_iter().map(llc_below).collect()
    };
    sizes.into_iter().filter(|&s| s > 0).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn costs_of(synthetic: &str) -> MachineCosts {
        let config = Config {
            synthetic: Some(synthetic.into()),
            gpu: false,
            ..Config::default()
        };
        let (topo, source) = crate::topology::load(&config).unwrap();
        let spaces = crate::topology::discover_spaces(&config, &topo, &source).unwrap();
        MachineCosts::read(&topo, &spaces, &AttributeTable::read(&topo))
    }

    #[test]
    fn the_last_level_cache_is_the_deepest_data_caches_of_the_smallest_package() {
        let costs = costs_of("pack:2 numa:1 l3:2(size=8388608) l2:2(size=1048576) core:1 pu:1");
        assert_eq!(costs.llc_bytes, Some(2 * (8 << 20)));
        assert_eq!(costs.streaming_threshold(), (16 << 20, Origin::Topology));
        let no_packages = costs_of("numa:1 l2:4(size=2097152) core:1 pu:1");
        assert_eq!(no_packages.llc_bytes, Some(4 * (2 << 20)));
    }

    #[test]
    fn without_cache_sizes_the_threshold_is_the_documented_constant() {
        let costs = costs_of("pack:2 numa:1 core:2 pu:1");
        assert_eq!(costs.llc_bytes, None);
        assert_eq!(
            costs.streaming_threshold(),
            (FALLBACK_STREAMING_THRESHOLD, Origin::Fallback)
        );
        let (policy, origin) = costs.migration_policy();
        assert_eq!(
            (policy, origin),
            (MigrationPolicy::default(), Origin::Fallback)
        );
    }

    #[test]
    fn migration_costs_follow_the_bandwidths() {
        let costs = MachineCosts {
            llc_bytes: Some(4 << 20),
            local_bandwidth_mib_s: Some(100_000),
            remote_bandwidth_mib_s: Some(50_000),
        };
        let (policy, origin) = costs.migration_policy();
        assert_eq!(origin, Origin::Topology);
        let local = 1e9 / (100_000.0 * 1048576.0);
        assert!((policy.local_ns_per_byte - local).abs() < 1e-12);
        assert!((policy.migrate_ns_per_byte - 3.0 * local).abs() < 1e-12);
        assert_eq!(policy.cache_bytes, 4 << 20);
        let no_remote = MachineCosts {
            remote_bandwidth_mib_s: None,
            ..costs
        };
        assert!((no_remote.migration_policy().0.migrate_ns_per_byte - 2.0 * local).abs() < 1e-12);
    }
}
