//! Discovery: the node's spaces from the hwloc topology (this machine's, or
//! one described by an XML file or a synthetic description) plus
//! configuration.

use crate::config::{Config, DirectoryTier};
use crate::error::{Error, Result};
use crate::provider::{cuda_devices, hip_devices, FileProvider};
use crate::tier::{Backing, SpaceId, SpaceInfo, Tier};
use hwlocality::memory::attribute::{Initiator, MemoryAttribute};
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::Topology;

/// Where the topology came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This machine, as hwloc sees it.
    ThisMachine,
    /// An hwloc XML file.
    Xml(std::path::PathBuf),
    /// An hwloc synthetic description.
    Synthetic(String),
    /// Pools assembled by the caller ([`Mamba::from_pools`](crate::Mamba::from_pools)).
    Assembled,
}

/// Loads the topology named by the configuration (this machine by default).
pub fn load(config: &Config) -> Result<(Topology, Source)> {
    let topo_err = |e: String| Error::Topology(e);
    if let Some(path) = &config.topology {
        // hwlocality panics on some file errors: read the file here.
        let xml = std::fs::read_to_string(path)
            .map_err(|e| topo_err(format!("cannot read {}: {e}", path.display())))?;
        let t = Topology::builder()
            .from_xml(&xml)
            .map_err(|e| topo_err(format!("{} is not an hwloc topology: {e}", path.display())))?
            .build()
            .map_err(|e| topo_err(e.to_string()))?;
        return Ok((t, Source::Xml(path.clone())));
    }
    if let Some(desc) = &config.synthetic {
        let t = Topology::builder()
            .from_synthetic(desc)
            .map_err(|e| topo_err(format!("bad synthetic description {desc:?}: {e}")))?
            .build()
            .map_err(|e| topo_err(e.to_string()))?;
        return Ok((t, Source::Synthetic(desc.clone())));
    }
    let t = Topology::new().map_err(|e| topo_err(e.to_string()))?;
    Ok((t, Source::ThisMachine))
}

fn cpus_of(obj: &TopologyObject) -> Vec<u32> {
    obj.cpuset()
        .map(|set| set.iter_set().map(|i| usize::from(i) as u32).collect())
        .unwrap_or_default()
}

fn attribute(attr: MemoryAttribute<'_>, node: &TopologyObject) -> Option<u64> {
    let cpuset = node.cpuset()?;
    if cpuset.is_empty() {
        return None;
    }
    attr.value(Some(Initiator::CpuSet(cpuset.into())), node)
        .ok()
        .flatten()
}

/// A discovered NUMA node before tier classification.
struct NumaNode {
    os_index: u32,
    subtype: Option<String>,
    memory: u64,
    cpus: Vec<u32>,
    bandwidth: Option<u64>,
    latency: Option<u64>,
}

/// Tier of a NUMA node: by hwloc subtype, else HBM when it has clearly more
/// bandwidth (1.5x) than another node local to the same CPUs (KNL MCDRAM or
/// Xeon Max flat mode without subtypes).
fn classify(node: &NumaNode, slowest_sibling_bandwidth: Option<u64>) -> Tier {
    match node
        .subtype
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("HBM" | "MCDRAM") => Tier::Hbm,
        Some("NVM" | "SPM" | "NVDIMM" | "PMEM") => Tier::Nvdimm,
        Some(_) => Tier::Dram,
        None => match (node.bandwidth, slowest_sibling_bandwidth) {
            (Some(bw), Some(slow)) if bw as f64 > 1.5 * slow as f64 => Tier::Hbm,
            _ => Tier::Dram,
        },
    }
}

/// The capacity of a NUMA node of this machine: its memory, but no more
/// than the kernel says it can give now (free pages plus inactive page
/// cache, from `/sys/devices/system/node/node<N>/meminfo`). Simulated
/// topologies keep the capacities they describe.
fn capacity_now(node: &NumaNode) -> usize {
    let path = format!("/sys/devices/system/node/node{}/meminfo", node.os_index);
    let available = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| node_available(&text));
    match available {
        Some(a) => (node.memory as usize).min(a),
        None => {
            tracing::debug!(%path, "no free-memory figure: capacity is the node's memory");
            node.memory as usize
        }
    }
}

/// Bytes a node's `meminfo` reports as obtainable without swapping:
/// `MemFree` plus `Inactive(file)`.
fn node_available(meminfo: &str) -> Option<usize> {
    let field = |name: &str| -> Option<usize> {
        meminfo.lines().find_map(|line| {
            let mut words = line.split_whitespace().skip(2);
            if words.next()? != name {
                return None;
            }
            let kib: usize = words.next()?.parse().ok()?;
            (words.next() == Some("kB")).then_some(kib.checked_mul(1024)?)
        })
    };
    field("MemFree:")?.checked_add(field("Inactive(file):").unwrap_or(0))
}

/// The spaces of a node: NUMA nodes of the topology, GPUs, then configured
/// directories, with the configuration's caps and overrides applied.
pub fn discover_spaces(
    config: &Config,
    topology: &Topology,
    source: &Source,
) -> Result<Vec<SpaceInfo>> {
    let real = *source == Source::ThisMachine;
    let nodes: Vec<NumaNode> = topology
        .objects_with_type(ObjectType::NUMANode)
        .map(|obj| {
            let memory = match obj.attributes() {
                Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map_or(0, |m| m.get()),
                _ => 0,
            };
            NumaNode {
                os_index: obj.os_index().unwrap_or(0) as u32,
                subtype: obj.subtype().map(|s| s.to_string_lossy().into_owned()),
                memory,
                cpus: cpus_of(obj),
                bandwidth: attribute(MemoryAttribute::bandwidth(topology), obj),
                latency: attribute(MemoryAttribute::latency(topology), obj),
            }
        })
        .collect();

    let mut spaces = Vec::new();
    let mut counts = std::collections::BTreeMap::<Tier, u32>::new();
    let mut push = |tier: Tier, mut info: SpaceInfo| {
        let n = counts.entry(tier).or_default();
        info.name = format!("{}{}", tier.name(), n);
        *n += 1;
        info.id = SpaceId(spaces.len() as u32);
        spaces.push(info);
    };
    for node in &nodes {
        let slowest_sibling = nodes
            .iter()
            .filter(|n| n.cpus == node.cpus)
            .filter_map(|n| n.bandwidth)
            .min();
        let tier = classify(node, slowest_sibling);
        push(
            tier,
            SpaceInfo {
                id: SpaceId(0),
                name: String::new(),
                tier,
                capacity: if real {
                    capacity_now(node)
                } else {
                    node.memory as usize
                },
                numa_node: Some(node.os_index),
                device: None,
                cpus: node.cpus.clone(),
                bandwidth_mib_s: node.bandwidth,
                latency_ns: node.latency,
                host_accessible: true,
                persistent: tier == Tier::Nvdimm,
                backing: if real {
                    Backing::NumaNodes {
                        nodes: vec![node.os_index],
                    }
                } else {
                    Backing::Unbound
                },
            },
        );
    }
    if config.gpu {
        discover_gpus(&mut push, &nodes);
    }
    for (tier, dirs) in [(Tier::Nvdimm, &config.nvdimm), (Tier::Ssd, &config.ssd)] {
        for dir in dirs {
            push(tier, directory_space(tier, dir)?);
        }
    }
    apply_overrides(config, &mut spaces)?;
    Ok(spaces)
}

fn discover_gpus(push: &mut impl FnMut(Tier, SpaceInfo), nodes: &[NumaNode]) {
    let host_dram: u64 = nodes.iter().map(|n| n.memory).sum();
    let all_cpus: Vec<u32> = {
        let mut c: Vec<u32> = nodes.iter().flat_map(|n| n.cpus.iter().copied()).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut add = |tier, device, capacity: usize, backing| {
        let info = SpaceInfo {
            id: SpaceId(0),
            name: String::new(),
            tier,
            capacity,
            numa_node: None,
            device: Some(device),
            cpus: all_cpus.clone(),
            bandwidth_mib_s: None,
            latency_ns: None,
            host_accessible: tier == Tier::Pinned,
            persistent: false,
            backing,
        };
        push(tier, info);
    };
    match cuda_devices() {
        Ok(devices) => {
            for d in devices {
                let device = d.ordinal;
                add(Tier::Gpu, device, d.total_memory, Backing::Cuda { device });
                let pinned = (host_dram / 4) as usize;
                add(Tier::Pinned, device, pinned, Backing::CudaPinned { device });
            }
        }
        Err(e) => tracing::debug!(reason = %e, "no CUDA tier"),
    }
    match hip_devices() {
        Ok(devices) => {
            for d in devices {
                let device = d.ordinal;
                add(Tier::Gpu, device, d.total_memory, Backing::Hip { device });
            }
        }
        Err(e) => tracing::debug!(reason = %e, "no HIP tier"),
    }
}

fn directory_space(tier: Tier, dir: &DirectoryTier) -> Result<SpaceInfo> {
    // Validates existence and writability now, with a clear error.
    let provider = FileProvider::new(&dir.path)?;
    let capacity = match dir.capacity {
        Some(c) => c.0,
        None => FileProvider::filesystem_free(provider.dir()).unwrap_or(0),
    };
    Ok(SpaceInfo {
        id: SpaceId(0),
        name: String::new(),
        tier,
        capacity,
        numa_node: None,
        device: None,
        cpus: Vec::new(),
        bandwidth_mib_s: dir.bandwidth_mib_s,
        latency_ns: dir.latency_ns,
        host_accessible: true,
        persistent: true,
        backing: Backing::Directory {
            path: dir.path.clone(),
        },
    })
}

fn apply_overrides(config: &Config, spaces: &mut [SpaceInfo]) -> Result<()> {
    for s in spaces.iter_mut() {
        if let Some(cap) = config.caps.get(&s.tier) {
            s.capacity = s.capacity.min(cap.0);
        }
    }
    for o in &config.space {
        let s = spaces
            .iter_mut()
            .find(|s| s.name == o.name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "[[space]] names {:?}, which this node does not have",
                    o.name
                ))
            })?;
        if let Some(c) = o.capacity {
            s.capacity = c.0;
        }
        if let Some(b) = o.bandwidth_mib_s {
            s.bandwidth_mib_s = Some(b);
        }
        if let Some(l) = o.latency_ns {
            s.latency_ns = Some(l);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_meminfo_gives_free_plus_inactive_file_pages() {
        let meminfo = "Node 1 MemTotal:       24683792 kB\n\
                       Node 1 MemFree:         4534056 kB\n\
                       Node 1 Active(file):    4929396 kB\n\
                       Node 1 Inactive(file): 13270028 kB\n";
        assert_eq!(node_available(meminfo), Some((4534056 + 13270028) * 1024));
        assert_eq!(node_available("Node 0 MemFree: 10 kB\n"), Some(10 * 1024));
        assert_eq!(node_available("Node 0 MemTotal: 10 kB\n"), None);
        assert_eq!(node_available("Node 0 MemFree: ten kB\n"), None);
    }

    #[test]
    fn real_numa_capacities_stay_within_the_node_and_simulated_ones_are_kept() {
        let config = Config {
            gpu: false,
            ..Config::default()
        };
        let (topo, source) = load(&config).unwrap();
        for space in discover_spaces(&config, &topo, &source).unwrap() {
            let Some(node) = space.numa_node else {
                continue;
            };
            let total = topo
                .objects_with_type(ObjectType::NUMANode)
                .find(|o| o.os_index() == Some(node as usize))
                .and_then(|o| match o.attributes() {
                    Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(|m| m.get()),
                    _ => None,
                })
                .unwrap_or(0) as usize;
            assert!(space.capacity <= total, "{space:?}");
            assert!(space.capacity > 0, "{space:?}");
        }
        let sim = Config {
            gpu: false,
            synthetic: Some("pack:2 numa:1 core:1 pu:1".into()),
            ..Config::default()
        };
        let (topo, source) = load(&sim).unwrap();
        for space in discover_spaces(&sim, &topo, &source).unwrap() {
            let node = topo
                .objects_with_type(ObjectType::NUMANode)
                .find(|o| o.os_index() == space.numa_node.map(|n| n as usize))
                .unwrap();
            let described = match node.attributes() {
                Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map_or(0, |m| m.get()),
                _ => 0,
            };
            assert_eq!(space.capacity, described as usize);
        }
    }
}
