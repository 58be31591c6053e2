//! Memory attributes as each group of CPUs sees them: hwloc reports a
//! node's bandwidth and latency per initiator (a CPU set), so "fastest
//! memory near CPU 3" must be read from CPU 3's vantage, where a remote
//! node's HBM is slower than the local DRAM.

use hwlocality::memory::attribute::{Initiator, MemoryAttribute};
use hwlocality::object::types::ObjectType;
use hwlocality::Topology;
use std::collections::BTreeMap;

/// A NUMA node's bandwidth and latency from one initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The initiator's CPUs (OS indexes).
    pub from: Vec<u32>,
    /// Bandwidth in MiB/s, when hwloc tells.
    pub bandwidth_mib_s: Option<u64>,
    /// Latency in ns, when hwloc tells.
    pub latency_ns: Option<u64>,
}

/// Every NUMA node's attributes from every initiator hwloc knows, by the
/// node's OS index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeTable {
    by_node: BTreeMap<u32, Vec<Seen>>,
}

impl AttributeTable {
    /// Reads the table from a topology (empty when it has no memory
    /// attributes).
    pub fn read(topology: &Topology) -> AttributeTable {
        let mut by_node: BTreeMap<u32, Vec<Seen>> = BTreeMap::new();
        for node in topology.objects_with_type(ObjectType::NUMANode) {
            let Some(index) = node.os_index() else {
                continue;
            };
            let entry = by_node.entry(index as u32).or_default();
            for (attr, is_bandwidth) in [
                (MemoryAttribute::bandwidth(topology), true),
                (MemoryAttribute::latency(topology), false),
            ] {
                let Ok((initiators, values)) = attr.initiators(node) else {
                    continue;
                };
                for (initiator, value) in initiators.iter().zip(values) {
                    let Initiator::CpuSet(set) = initiator else {
                        continue;
                    };
                    let from: Vec<u32> = set.iter_set().map(|i| usize::from(i) as u32).collect();
                    let seen = match entry.iter_mut().position(|s| s.from == from) {
                        Some(i) => &mut entry[i],
                        None => {
                            entry.push(Seen {
                                from,
                                bandwidth_mib_s: None,
                                latency_ns: None,
                            });
                            entry.last_mut().expect("just pushed")
                        }
                    };
                    if is_bandwidth {
                        seen.bandwidth_mib_s = Some(value);
                    } else {
                        seen.latency_ns = Some(value);
                    }
                }
            }
        }
        by_node.retain(|_, seen| !seen.is_empty());
        AttributeTable { by_node }
    }

    /// Whether hwloc gave any attribute of `node`.
    pub fn knows(&self, node: u32) -> bool {
        self.by_node.contains_key(&node)
    }

    /// `node`'s attributes from the smallest initiator holding every one
    /// of `cpus`; `None` when no initiator does (unknown from there).
    pub fn seen_from(&self, node: u32, cpus: &[u32]) -> Option<&Seen> {
        self.by_node
            .get(&node)?
            .iter()
            .filter(|s| cpus.iter().all(|c| s.from.contains(c)))
            .min_by_key(|s| s.from.len())
    }

    /// `node`'s attributes from the initiators sharing no CPU with `cpus`
    /// (the node as remote CPUs see it).
    pub fn seen_by_others<'t>(
        &'t self,
        node: u32,
        cpus: &'t [u32],
    ) -> impl Iterator<Item = &'t Seen> + 't {
        self.by_node
            .get(&node)
            .into_iter()
            .flatten()
            .filter(move |s| !s.from.iter().any(|c| cpus.contains(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn attributes_are_read_per_initiator() {
        let config = Config {
            topology: Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xeon-max-2s.xml"),
            ),
            gpu: false,
            ..Config::default()
        };
        let (topo, _) = crate::topology::load(&config).unwrap();
        let table = AttributeTable::read(&topo);
        let local = table.seen_from(0, &[1]).unwrap();
        assert_eq!(
            (
                local.from.as_slice(),
                local.bandwidth_mib_s,
                local.latency_ns
            ),
            (&[0, 1][..], Some(100_000), Some(90))
        );
        let remote = table.seen_from(0, &[3]).unwrap();
        assert_eq!(
            (remote.bandwidth_mib_s, remote.latency_ns),
            (Some(50_000), Some(150))
        );
        // No initiator holds CPUs of both sockets for node 0.
        assert!(table.seen_from(0, &[0, 3]).is_none());
        // Node 4's only initiator is the whole machine.
        assert_eq!(table.seen_from(4, &[0, 3]).unwrap().latency_ns, Some(350));
        assert!(table.knows(4) && !table.knows(9));
        let others: Vec<&[u32]> = table
            .seen_by_others(0, &[0, 1])
            .map(|s| s.from.as_slice())
            .collect();
        assert_eq!(others, [&[2, 3][..]]);
    }
}
