//! Domains: the groups of CPUs a pool runs one group of workers on, which
//! NUMA node belongs to which domain, the order in which an idle domain
//! steals from the others, and routing a data node to a domain.

use super::cpuset::{CpuSet, NodeSet};
use super::error::{AffinityError, Result};
use super::locality::Locality;
use serde::Serialize;
use std::collections::BTreeMap;

/// The locality level that makes one domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One domain per distinct set of NUMA-local CPUs: nodes sharing their
    /// CPUs (a package's DRAM and HBM nodes) share a domain.
    #[default]
    NumaNode,
    /// One domain per package.
    Package,
    /// One domain for the whole machine.
    Machine,
}

/// One domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// Index in [`Domains::list`].
    pub index: usize,
    /// The CPUs its workers run on.
    pub cpus: CpuSet,
    /// Nodes whose CPUs lie inside the domain.
    pub nodes: NodeSet,
    /// Nodes without a domain of their own (no CPUs, or CPUs spanning
    /// several domains) that the domain serves as the nearest one.
    pub adopted: NodeSet,
}

impl Domain {
    /// The node that names the domain: its first own node, else its first
    /// adopted one.
    pub fn primary_node(&self) -> Option<u32> {
        self.nodes.first().or_else(|| self.adopted.first())
    }
}

/// How a node belongs to its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// The node's CPUs are inside the domain.
    Own,
    /// The domain is the nearest one to a node without its own.
    Adopted,
}

/// Why a task went to a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// The domain of the data's node.
    DataNode,
    /// The data's node has no domain of its own: the nearest one.
    NearestToDataNode,
    /// The data has no pages yet: the fallback domain (first touch will
    /// happen there).
    NoPages,
    /// The data is on a node this topology does not have (a simulated
    /// topology over real memory): the fallback domain.
    UnknownNode,
}

/// Where a task goes and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Domain index.
    pub domain: usize,
    /// The data's node, when known.
    pub node: Option<u32>,
    /// Why.
    pub reason: RouteReason,
}

/// The domains of a topology at one level.
#[derive(Debug, Clone)]
pub struct Domains {
    locality: Locality,
    list: Vec<Domain>,
    home: BTreeMap<u32, (usize, Membership)>,
    steal_order: Vec<Vec<usize>>,
}

/// Candidate CPU sets: distinct, non-empty, and (for NUMA level) minimal,
/// so that a machine-wide node does not make a domain over the others.
fn candidates(locality: &Locality, level: Level) -> Vec<CpuSet> {
    let mut sets: Vec<CpuSet> = match level {
        Level::NumaNode => {
            let all: Vec<CpuSet> = locality
                .nodes()
                .iter()
                .map(|n| n.cpus.clone())
                .filter(|c| !c.is_empty())
                .collect();
            all.iter()
                .filter(|c| !all.iter().any(|o| o != *c && o.is_subset(c)))
                .cloned()
                .collect()
        }
        Level::Package => locality.packages().iter().map(|p| p.cpus.clone()).collect(),
        Level::Machine => vec![locality.cpus().clone()],
    };
    if sets.is_empty() && !locality.cpus().is_empty() {
        sets.push(locality.cpus().clone());
    }
    sets.sort();
    sets.dedup();
    sets
}

impl Domains {
    /// Groups the topology's CPUs into domains at `level` and assigns every
    /// NUMA node to one.
    ///
    /// # Errors
    /// [`AffinityError::EmptyCpuSet`] when the topology has no CPU.
    pub fn new(locality: &Locality, level: Level) -> Result<Self> {
        let mut list: Vec<Domain> = candidates(locality, level)
            .into_iter()
            .enumerate()
            .map(|(index, cpus)| Domain {
                index,
                cpus,
                nodes: NodeSet::new(),
                adopted: NodeSet::new(),
            })
            .collect();
        if list.is_empty() {
            return Err(AffinityError::EmptyCpuSet);
        }
        let mut home = BTreeMap::new();
        let mut homeless = Vec::new();
        for node in locality.nodes() {
            let own = list
                .iter()
                .position(|d| !node.cpus.is_empty() && node.cpus.is_subset(&d.cpus));
            match own {
                Some(d) => {
                    list[d].nodes.insert(node.os_index);
                    home.insert(node.os_index, (d, Membership::Own));
                }
                None => homeless.push(node.os_index),
            }
        }
        let own_nodes: Vec<NodeSet> = list.iter().map(|d| d.nodes.clone()).collect();
        for node in homeless {
            let nearest = (0..list.len())
                .min_by_key(|&d| (min_distance(locality, [node], &own_nodes[d]), d))
                .unwrap_or(0);
            list[nearest].adopted.insert(node);
            home.insert(node, (nearest, Membership::Adopted));
        }
        let served: Vec<NodeSet> = list
            .iter()
            .map(|d| d.nodes.iter().chain(d.adopted.iter()).collect())
            .collect();
        let steal_order = (0..list.len())
            .map(|d| {
                let mut others: Vec<usize> = (0..list.len()).filter(|&o| o != d).collect();
                others.sort_by_key(|&o| (min_distance(locality, served[d].iter(), &served[o]), o));
                others
            })
            .collect();
        Ok(Domains {
            locality: locality.clone(),
            list,
            home,
            steal_order,
        })
    }

    /// The topology the domains come from.
    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// Every domain, ordered by their CPU sets.
    pub fn list(&self) -> &[Domain] {
        &self.list
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Always false: there is at least one domain.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The domain at `index`.
    ///
    /// # Errors
    /// [`AffinityError::UnknownDomain`].
    pub fn get(&self, index: usize) -> Result<&Domain> {
        self.list.get(index).ok_or(AffinityError::UnknownDomain {
            domain: index,
            count: self.list.len(),
        })
    }

    /// The domain serving a node, and how.
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`].
    pub fn home_of(&self, node: u32) -> Result<(usize, Membership)> {
        self.home
            .get(&node)
            .copied()
            .ok_or(AffinityError::UnknownNode(node))
    }

    /// The other domains, nearest first (ties: lower index): where an idle
    /// domain steals.
    pub fn steal_order(&self, domain: usize) -> &[usize] {
        self.steal_order.get(domain).map_or(&[], Vec::as_slice)
    }

    /// The domain for data on `node` (`None`: no page yet); `fallback` (taken
    /// modulo the number of domains) when the node says nothing.
    pub fn route(&self, node: Option<u32>, fallback: usize) -> Route {
        let fallback = fallback % self.list.len();
        match node {
            None => Route {
                domain: fallback,
                node,
                reason: RouteReason::NoPages,
            },
            Some(n) => match self.home_of(n) {
                Ok((domain, Membership::Own)) => Route {
                    domain,
                    node,
                    reason: RouteReason::DataNode,
                },
                Ok((domain, Membership::Adopted)) => Route {
                    domain,
                    node,
                    reason: RouteReason::NearestToDataNode,
                },
                Err(_) => Route {
                    domain: fallback,
                    node,
                    reason: RouteReason::UnknownNode,
                },
            },
        }
    }
}

/// Smallest distance from any of `from` to any of `to` (`u64::MAX` when
/// either is empty).
fn min_distance(locality: &Locality, from: impl IntoIterator<Item = u32>, to: &NodeSet) -> u64 {
    from.into_iter()
        .flat_map(|a| to.iter().map(move |b| (a, b)))
        .filter_map(|(a, b)| locality.distance(a, b).ok())
        .min()
        .unwrap_or(u64::MAX)
}
