//! The placement vocabulary: NUMA nodes with their CPUs and packages, the
//! distances between nodes, and the CPUs nearest to any space of any tier.

use super::cpuset::{CpuSet, NodeSet};
use super::error::{AffinityError, Result};
use crate::config::Config;
use crate::tier::SpaceInfo;
use crate::topology::{self, Source};
use hwlocality::object::distance::DistancesKind;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::Topology;
use serde::Serialize;

/// Tree distance between a node and itself (the SLIT convention).
pub const LOCAL_DISTANCE: u64 = 10;
/// Tree distance between two nodes of one package.
pub const PACKAGE_DISTANCE: u64 = 12;
/// Tree distance between two nodes that share only the machine.
pub const MACHINE_DISTANCE: u64 = 20;

/// One NUMA node of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// OS index.
    pub os_index: u32,
    /// CPUs local to the node (empty for a CPU-less node).
    pub cpus: CpuSet,
    /// OS index of the package holding the node, when it hangs below one.
    pub package: Option<u32>,
    /// hwloc subtype (`HBM`, `NVM`, ...), when the topology says.
    pub subtype: Option<String>,
}

/// Where the node distances come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistanceOrigin {
    /// An hwloc distance matrix (ACPI SLIT, or one written in the XML).
    Hwloc,
    /// The topology tree: [`LOCAL_DISTANCE`], [`PACKAGE_DISTANCE`],
    /// [`MACHINE_DISTANCE`].
    Tree,
}

/// A package (socket) and its CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// OS index.
    pub os_index: u32,
    /// Its CPUs.
    pub cpus: CpuSet,
}

/// The locality facts of one topology, detached from hwloc: cheap to clone
/// and to share between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    source: Source,
    cpus: CpuSet,
    nodes: Vec<NumaNode>,
    packages: Vec<Package>,
    /// Row-major `nodes.len()` squared.
    distances: Vec<u64>,
    origin: DistanceOrigin,
}

fn cpus_of(obj: &TopologyObject) -> CpuSet {
    obj.cpuset()
        .map(|set| set.iter_set().map(|i| usize::from(i) as u32).collect())
        .unwrap_or_default()
}

fn hwloc_distances(topology: &Topology, objs: &[&TopologyObject]) -> Option<Vec<u64>> {
    let all = topology
        .distances_with_type(None, ObjectType::NUMANode)
        .ok()?;
    let matrix = all
        .iter()
        .find(|d| d.kind().contains(DistancesKind::MEANS_LATENCY))
        .or_else(|| all.first())?;
    let mut out = Vec::with_capacity(objs.len() * objs.len());
    for a in objs {
        for b in objs {
            out.push(matrix.object_pair_distance((a, b))?.0);
        }
    }
    Some(out)
}

impl Locality {
    /// Loads the topology named by `config` (this machine by default). With
    /// a [`crate::Mamba`] at hand, [`crate::Mamba::locality`] gives the one
    /// it discovered, without loading the topology again.
    ///
    /// # Errors
    /// An unreadable topology.
    pub fn load(config: &Config) -> Result<Self> {
        let (topology, source) = topology::load(config)?;
        Ok(Self::from_topology(&topology, source))
    }

    /// The locality facts of an hwloc topology that came from `source`.
    pub fn from_topology(topology: &Topology, source: Source) -> Self {
        let mut objs: Vec<&TopologyObject> =
            topology.objects_with_type(ObjectType::NUMANode).collect();
        objs.sort_by_key(|o| o.os_index());
        let nodes: Vec<NumaNode> = objs
            .iter()
            .map(|o| NumaNode {
                os_index: o.os_index().unwrap_or(0) as u32,
                cpus: cpus_of(o),
                package: o
                    .first_ancestor_with_type(ObjectType::Package)
                    .and_then(TopologyObject::os_index)
                    .map(|i| i as u32),
                subtype: o.subtype().map(|s| s.to_string_lossy().into_owned()),
            })
            .collect();
        let packages = topology
            .objects_with_type(ObjectType::Package)
            .map(|p| Package {
                os_index: p.os_index().unwrap_or(0) as u32,
                cpus: cpus_of(p),
            })
            .filter(|p| !p.cpus.is_empty())
            .collect();
        let (distances, origin) = match hwloc_distances(topology, &objs) {
            Some(d) => (d, DistanceOrigin::Hwloc),
            None => (tree_distances(&nodes), DistanceOrigin::Tree),
        };
        let cpus = topology
            .cpuset()
            .iter_set()
            .map(|i| usize::from(i) as u32)
            .collect();
        Locality {
            source,
            cpus,
            nodes,
            packages,
            distances,
            origin,
        }
    }

    /// Where the topology came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Whether the topology is this machine's, so that binding means
    /// something.
    pub fn is_real(&self) -> bool {
        self.source == Source::ThisMachine
    }

    /// Every CPU of the topology.
    pub fn cpus(&self) -> &CpuSet {
        &self.cpus
    }

    /// Every NUMA node, by OS index.
    pub fn nodes(&self) -> &[NumaNode] {
        &self.nodes
    }

    /// The packages with CPUs.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The set of every NUMA node.
    pub fn node_set(&self) -> NodeSet {
        self.nodes.iter().map(|n| n.os_index).collect()
    }

    fn position(&self, node: u32) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.os_index == node)
            .ok_or(AffinityError::UnknownNode(node))
    }

    /// The node with this OS index.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn node(&self, node: u32) -> Result<&NumaNode> {
        Ok(&self.nodes[self.position(node)?])
    }

    /// Where [`Locality::distance`] comes from.
    pub fn distance_origin(&self) -> DistanceOrigin {
        self.origin
    }

    /// Distance from node `a` to node `b` (relative, 10 = local).
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn distance(&self, a: u32, b: u32) -> Result<u64> {
        let (i, j) = (self.position(a)?, self.position(b)?);
        Ok(self.distances[i * self.nodes.len() + j])
    }

    /// Every node, nearest to `from` first (`from` itself leads); ties go to
    /// the lower OS index.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn nearest_nodes(&self, from: u32) -> Result<Vec<u32>> {
        let i = self.position(from)?;
        let n = self.nodes.len();
        let mut order: Vec<(u64, bool, u32)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(j, node)| (self.distances[i * n + j], j != i, node.os_index))
            .collect();
        order.sort_unstable();
        Ok(order.into_iter().map(|(_, _, node)| node).collect())
    }

    /// The CPUs nearest to a node: its own, or for a CPU-less node those of
    /// the nearest node that has CPUs.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`]; [`AffinityError::NoLocality`] when
    /// no node has CPUs.
    pub fn cpus_near_node(&self, node: u32) -> Result<CpuSet> {
        for candidate in self.nearest_nodes(node)? {
            let cpus = &self.node(candidate)?.cpus;
            if !cpus.is_empty() {
                return Ok(cpus.clone());
            }
        }
        Err(AffinityError::NoLocality(format!("NUMA node {node}")))
    }

    /// The node whose CPUs include `cpu`; with several (a DRAM and an HBM
    /// node of one package, a machine-wide NVM node) the one with the fewest
    /// CPUs, then the lowest OS index.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes
            .iter()
            .filter(|n| n.cpus.contains(cpu))
            .min_by_key(|n| (n.cpus.len(), n.os_index))
            .map(|n| n.os_index)
    }

    /// The CPUs nearest to a space of any tier: those of its NUMA node (DRAM,
    /// HBM, NVDIMM kmem nodes; the nearest node with CPUs for a CPU-less
    /// one), else the CPUs the space lists (a GPU's local CPUs).
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`] for a node this topology lacks;
    /// [`AffinityError::NoLocality`] for a space with neither (a directory
    /// tier), or whose CPUs are all outside the topology.
    pub fn cpus_near_space(&self, space: &SpaceInfo) -> Result<CpuSet> {
        if let Some(node) = space.numa_node {
            return self.cpus_near_node(node);
        }
        let listed: CpuSet = space.cpus.iter().copied().collect();
        let cpus = listed.intersection(&self.cpus);
        if cpus.is_empty() {
            return Err(AffinityError::NoLocality(format!("space {}", space.name)));
        }
        Ok(cpus)
    }

    /// The NUMA node nearest to a space: its own, else the node of its first
    /// local CPU (a GPU's local node).
    ///
    /// # Errors
    /// As [`Locality::cpus_near_space`].
    pub fn node_near_space(&self, space: &SpaceInfo) -> Result<u32> {
        if let Some(node) = space.numa_node {
            self.position(node)?;
            return Ok(node);
        }
        self.cpus_near_space(space)?
            .iter()
            .find_map(|cpu| self.node_of_cpu(cpu))
            .ok_or_else(|| AffinityError::NoLocality(format!("space {}", space.name)))
    }

    /// Checks that a CPU set is non-empty and inside the topology.
    ///
    /// # Errors
    /// [`AffinityError::EmptyCpuSet`], [`AffinityError::UnknownCpu`].
    pub fn check_cpus(&self, cpus: &CpuSet) -> Result<()> {
        if cpus.is_empty() {
            return Err(AffinityError::EmptyCpuSet);
        }
        match cpus.iter().find(|&c| !self.cpus.contains(c)) {
            Some(cpu) => Err(AffinityError::UnknownCpu(cpu)),
            None => Ok(()),
        }
    }
}

/// Distances from the tree: same node, same package, same machine.
fn tree_distances(nodes: &[NumaNode]) -> Vec<u64> {
    let mut out = Vec::with_capacity(nodes.len() * nodes.len());
    for a in nodes {
        for b in nodes {
            out.push(if a.os_index == b.os_index {
                LOCAL_DISTANCE
            } else if a.package.is_some() && a.package == b.package {
                PACKAGE_DISTANCE
            } else {
                MACHINE_DISTANCE
            });
        }
    }
    out
}
