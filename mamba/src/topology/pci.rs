//! Where a GPU sits: the NUMA nodes and CPUs nearest its PCI device, from
//! hwloc's I/O discovery (the device's first non-I/O ancestor).

use super::cpus_of;
use hwlocality::Topology;

/// The NUMA nodes and CPUs near a PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceLocality {
    /// NUMA nodes (OS indexes) near the device, sorted; every node of the
    /// topology when it does not tell.
    pub nodes: Vec<u32>,
    /// CPUs (OS indexes) near the device, sorted.
    pub cpus: Vec<u32>,
    /// Why the locality is the whole node rather than what hwloc placed the
    /// device under; `None` when hwloc placed it.
    pub fallback: Option<String>,
}

impl DeviceLocality {
    /// The one NUMA node near the device, when there is exactly one.
    pub fn node(&self) -> Option<u32> {
        match self.nodes.as_slice() {
            [n] => Some(*n),
            _ => None,
        }
    }
}

/// The locality of the PCI device with bus id `bus_id` (`"0000:17:00.0"`,
/// any case, domain optional) in `topology`, whose NUMA nodes are
/// `all_nodes` and CPUs `all_cpus`. A device that is missing from the
/// topology, a malformed bus id, or an ancestor without NUMA nodes (a VM or
/// firmware that reports none: sysfs `numa_node` is -1) gives every node and
/// every CPU, with the reason in [`DeviceLocality::fallback`].
pub(crate) fn device_locality(
    topology: &Topology,
    bus_id: Option<&str>,
    all_nodes: &[u32],
    all_cpus: &[u32],
) -> DeviceLocality {
    let whole = |reason: String| DeviceLocality {
        nodes: all_nodes.to_vec(),
        cpus: all_cpus.to_vec(),
        fallback: Some(reason),
    };
    let Some(bus_id) = bus_id else {
        return whole("the GPU runtime gave no PCI bus id".into());
    };
    let device = match topology.pci_device_by_bus_id_string(bus_id.trim()) {
        Ok(Some(device)) => device,
        Ok(None) => return whole(format!("PCI device {bus_id} is not in the topology")),
        Err(_) => return whole(format!("{bus_id:?} is not a PCI bus id")),
    };
    let Some(ancestor) = device.first_non_io_ancestor() else {
        return whole(format!("PCI device {bus_id} has no non-I/O ancestor"));
    };
    let nodes: Vec<u32> = ancestor
        .nodeset()
        .map(|set| {
            set.iter_set()
                .map(|i| usize::from(i) as u32)
                .filter(|n| all_nodes.contains(n))
                .collect()
        })
        .unwrap_or_default();
    let cpus = cpus_of(ancestor);
    if nodes.is_empty() {
        return DeviceLocality {
            cpus: if cpus.is_empty() {
                all_cpus.to_vec()
            } else {
                cpus
            },
            ..whole(format!(
                "hwloc reports no NUMA node for PCI device {bus_id} \
                 (e.g. a VM whose sysfs numa_node is -1): every node counts as near"
            ))
        };
    }
    DeviceLocality {
        nodes,
        cpus,
        fallback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::topology::load;

    fn two_socket() -> Topology {
        let config = Config {
            topology: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gpus-2s.xml").into()),
            ..Config::default()
        };
        load(&config).unwrap().0
    }

    #[test]
    fn a_gpu_under_a_package_is_near_that_packages_node_and_cpus() {
        let topo = two_socket();
        let all = ([0, 1], [0, 1, 2, 3]);
        let first = device_locality(&topo, Some("0000:17:00.0"), &all.0, &all.1);
        assert_eq!(first.nodes, [0]);
        assert_eq!(first.cpus, [0, 1]);
        assert_eq!(first.node(), Some(0));
        assert_eq!(first.fallback, None);
        // CUDA writes the domain with eight digits and the bus in capitals.
        let second = device_locality(&topo, Some("00000000:CA:00.0"), &all.0, &all.1);
        assert_eq!((second.nodes, second.cpus), (vec![1], vec![2, 3]));
    }

    #[test]
    fn a_gpu_under_the_machine_is_near_every_node() {
        let topo = two_socket();
        let loc = device_locality(&topo, Some("0000:e1:00.0"), &[0, 1], &[0, 1, 2, 3]);
        assert_eq!(loc.nodes, [0, 1]);
        assert_eq!(loc.cpus, [0, 1, 2, 3]);
        assert_eq!(loc.node(), None);
    }

    #[test]
    fn unknown_or_malformed_bus_ids_fall_back_to_the_whole_node_with_a_reason() {
        let topo = two_socket();
        for bus_id in [Some("0000:99:00.0"), Some("gpu zero"), None] {
            let loc = device_locality(&topo, bus_id, &[0, 1], &[0, 1, 2, 3]);
            assert_eq!(loc.nodes, [0, 1], "{bus_id:?}");
            assert_eq!(loc.cpus, [0, 1, 2, 3], "{bus_id:?}");
            assert!(loc.fallback.is_some(), "{bus_id:?}");
        }
    }
}
