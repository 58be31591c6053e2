//! Discovery: the node's spaces from the hwloc topology (this machine's, or
//! one described by an XML file or a synthetic description) plus
//! configuration.
//!
//! GPUs come from the CUDA and HIP runtimes (device queries only: no
//! context is created) and are placed by their PCI bus id in hwloc's I/O
//! tree: the NUMA node and CPUs of the device's first non-I/O ancestor are
//! those of its `gpu` and `pinned` spaces (every node, logged, when hwloc
//! does not tell). A pinned space is locked DRAM of those nodes: its
//! capacity is their free memory at discovery, within `[caps] pinned`.

use crate::config::{Config, DirectoryTier, SsdIo};
use crate::error::{Error, Result};
use crate::provider::{cuda_devices, hip_devices, FileProvider};
use crate::tier::{Backing, SpaceId, SpaceInfo, Tier};
use hwlocality::memory::attribute::{Initiator, MemoryAttribute};
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::{TopologyBuilder, TypeFilter};
use hwlocality::Topology;

pub mod costs;
mod initiators;
mod pci;

pub use costs::MachineCosts;
pub use initiators::{AttributeTable, Seen};

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

/// hwloc discovery components that talk to GPU runtimes (and may initialise
/// them or create contexts): mamba asks the runtimes itself, lazily, and
/// needs only the PCI tree from hwloc.
const GPU_RUNTIME_COMPONENTS: [&str; 6] = ["cuda", "nvml", "opencl", "rsmi", "levelzero", "gl"];

/// A topology builder that keeps important I/O objects (PCI devices, so that
/// GPUs can be placed) and leaves the GPU runtimes alone.
fn builder() -> Result<TopologyBuilder> {
    let topo_err = |e: String| Error::Topology(e);
    let mut b = Topology::builder()
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| topo_err(format!("keeping PCI devices: {e}")))?;
    // hwloc refuses to disable a component that this installation lacks
    // (and consumes the builder doing so): try each on a scratch builder.
    let installed = |component: &str| Topology::builder().without_component(component).is_ok();
    for component in GPU_RUNTIME_COMPONENTS.into_iter().filter(|c| installed(c)) {
        b = b
            .without_component(component)
            .map_err(|e| topo_err(format!("disabling hwloc component {component}: {e}")))?;
    }
    Ok(b)
}

/// Loads the topology named by the configuration (this machine by default),
/// with its PCI devices.
pub fn load(config: &Config) -> Result<(Topology, Source)> {
    let topo_err = |e: String| Error::Topology(e);
    if let Some(path) = &config.topology {
        // hwlocality panics on some file errors: read the file here.
        let xml = std::fs::read_to_string(path)
            .map_err(|e| topo_err(format!("cannot read {}: {e}", path.display())))?;
        let t = builder()?
            .from_xml(&xml)
            .map_err(|e| topo_err(format!("{} is not an hwloc topology: {e}", path.display())))?
            .build()
            .map_err(|e| topo_err(e.to_string()))?;
        return Ok((t, Source::Xml(path.clone())));
    }
    if let Some(desc) = &config.synthetic {
        let t = builder()?
            .from_synthetic(desc)
            .map_err(|e| topo_err(format!("bad synthetic description {desc:?}: {e}")))?
            .build()
            .map_err(|e| topo_err(e.to_string()))?;
        return Ok((t, Source::Synthetic(desc.clone())));
    }
    let t = builder()?.build().map_err(|e| topo_err(e.to_string()))?;
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
    spaces_with_gpus(config, topology, source, runtime_gpus)
}

/// [`discover_spaces`] with the GPUs that `gpus` reports (the runtimes'
/// in discovery), asked only when the configuration looks for GPUs.
fn spaces_with_gpus(
    config: &Config,
    topology: &Topology,
    source: &Source,
    gpus: impl FnOnce() -> Vec<FoundGpu>,
) -> Result<Vec<SpaceInfo>> {
    let real = *source == Source::ThisMachine;
    let node_capacity = |node: &NumaNode| {
        if real {
            capacity_now(node)
        } else {
            node.memory as usize
        }
    };
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
                capacity: node_capacity(node),
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
        gpu_spaces(&gpus(), topology, &nodes, node_capacity, &mut push);
    }
    for (tier, dirs) in [(Tier::Nvdimm, &config.nvdimm), (Tier::Ssd, &config.ssd)] {
        for dir in dirs {
            push(tier, directory_space(tier, dir, config)?);
        }
    }
    apply_overrides(config, &mut spaces)?;
    Ok(spaces)
}

/// A GPU a runtime reported, before it becomes spaces.
struct FoundGpu {
    /// Backing of its device memory.
    device: Backing,
    /// Backing of page-locked host memory registered with it.
    pinned: Backing,
    ordinal: u32,
    total_memory: usize,
    pci_bus_id: Option<String>,
}

/// The GPUs the CUDA and HIP runtimes report (device queries only: no
/// context is created here).
fn runtime_gpus() -> Vec<FoundGpu> {
    let mut gpus = Vec::new();
    match cuda_devices() {
        Ok(devices) => gpus.extend(devices.into_iter().map(|d| FoundGpu {
            device: Backing::Cuda { device: d.ordinal },
            pinned: Backing::CudaPinned { device: d.ordinal },
            ordinal: d.ordinal,
            total_memory: d.total_memory,
            pci_bus_id: Some(d.pci_bus_id),
        })),
        Err(e) => tracing::debug!(reason = %e, "no CUDA tier"),
    }
    match hip_devices() {
        Ok(devices) => gpus.extend(devices.into_iter().map(|d| FoundGpu {
            device: Backing::Hip { device: d.ordinal },
            pinned: Backing::HipPinned { device: d.ordinal },
            ordinal: d.ordinal,
            total_memory: d.total_memory,
            pci_bus_id: d.pci_bus_id,
        })),
        Err(e) => tracing::debug!(reason = %e, "no HIP tier"),
    }
    gpus
}

/// A device space and a pinned space per GPU, placed by the GPU's PCI
/// locality. The pinned space is page-locked DRAM of the GPU's NUMA nodes:
/// its capacity is theirs (`node_capacity`; the `pinned` cap of the
/// configuration limits it further).
fn gpu_spaces(
    gpus: &[FoundGpu],
    topology: &Topology,
    nodes: &[NumaNode],
    node_capacity: impl Fn(&NumaNode) -> usize,
    push: &mut impl FnMut(Tier, SpaceInfo),
) {
    let all_nodes: Vec<u32> = nodes.iter().map(|n| n.os_index).collect();
    let all_cpus: Vec<u32> = {
        let mut c: Vec<u32> = nodes.iter().flat_map(|n| n.cpus.iter().copied()).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    for gpu in gpus {
        let near = pci::device_locality(topology, gpu.pci_bus_id.as_deref(), &all_nodes, &all_cpus);
        match (&near.fallback, near.node()) {
            (Some(reason), _) => {
                tracing::info!(device = gpu.ordinal, %reason, "GPU locality unknown: near every NUMA node");
            }
            (None, None) => tracing::info!(
                device = gpu.ordinal,
                nodes = ?near.nodes,
                "GPU equally near several NUMA nodes (its PCI device hangs off an object \
                 spanning them, as in a VM whose sysfs numa_node is -1): pinned memory is unbound"
            ),
            (None, Some(_)) => {}
        }
        let pinned_capacity: usize = nodes
            .iter()
            .filter(|n| near.nodes.contains(&n.os_index))
            .map(&node_capacity)
            .sum();
        for (tier, backing, capacity) in [
            (Tier::Gpu, gpu.device.clone(), gpu.total_memory),
            (Tier::Pinned, gpu.pinned.clone(), pinned_capacity),
        ] {
            push(
                tier,
                SpaceInfo {
                    id: SpaceId(0),
                    name: String::new(),
                    tier,
                    capacity,
                    numa_node: near.node(),
                    device: Some(gpu.ordinal),
                    cpus: near.cpus.clone(),
                    bandwidth_mib_s: None,
                    latency_ns: None,
                    host_accessible: tier == Tier::Pinned,
                    persistent: false,
                    backing,
                },
            );
        }
    }
}

fn directory_space(tier: Tier, dir: &DirectoryTier, config: &Config) -> Result<SpaceInfo> {
    let spill = tier == Tier::Ssd && config.ssd_io == SsdIo::Direct;
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
        host_accessible: !spill,
        persistent: true,
        backing: if spill {
            Backing::SpillFiles {
                path: dir.path.clone(),
            }
        } else {
            Backing::Directory {
                path: dir.path.clone(),
            }
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

    fn cuda_gpu(ordinal: u32, bus_id: &str) -> FoundGpu {
        FoundGpu {
            device: Backing::Cuda { device: ordinal },
            pinned: Backing::CudaPinned { device: ordinal },
            ordinal,
            total_memory: 80 << 30,
            pci_bus_id: Some(bus_id.into()),
        }
    }

    fn gpu_node(caps: &[(Tier, usize)]) -> Vec<SpaceInfo> {
        let config = Config {
            topology: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gpus-2s.xml").into()),
            caps: caps
                .iter()
                .map(|&(t, c)| (t, crate::config::ByteSize(c)))
                .collect(),
            ..Config::default()
        };
        let (topo, source) = load(&config).unwrap();
        let gpus = || {
            vec![
                cuda_gpu(0, "0000:17:00.0"),
                cuda_gpu(1, "0000:CA:00.0"),
                cuda_gpu(2, "0000:e1:00.0"),
            ]
        };
        spaces_with_gpus(&config, &topo, &source, gpus).unwrap()
    }

    fn named<'s>(spaces: &'s [SpaceInfo], name: &str) -> &'s SpaceInfo {
        spaces.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn gpu_and_pinned_spaces_take_the_node_and_cpus_of_the_gpus_pci_locality() {
        let spaces = gpu_node(&[]);
        for (name, node, cpus) in [
            ("gpu0", Some(0), vec![0, 1]),
            ("pinned0", Some(0), vec![0, 1]),
            ("gpu1", Some(1), vec![2, 3]),
            ("pinned1", Some(1), vec![2, 3]),
            ("gpu2", None, vec![0, 1, 2, 3]),
            ("pinned2", None, vec![0, 1, 2, 3]),
        ] {
            let s = named(&spaces, name);
            assert_eq!((s.numa_node, &s.cpus), (node, &cpus), "{s:?}");
            assert!(!s.is_node_memory(), "{s:?}");
        }
        assert_eq!(named(&spaces, "gpu1").capacity, 80 << 30);
        assert_eq!(
            named(&spaces, "pinned1").backing,
            Backing::CudaPinned { device: 1 }
        );
        assert!(named(&spaces, "dram0").is_node_memory());
    }

    #[test]
    fn pinned_capacity_is_the_near_nodes_memory_within_the_configured_cap() {
        let spaces = gpu_node(&[]);
        // Simulated nodes keep their described memory: 8 GiB and 4 GiB.
        assert_eq!(named(&spaces, "pinned0").capacity, 8 << 30);
        assert_eq!(named(&spaces, "pinned1").capacity, 4 << 30);
        assert_eq!(named(&spaces, "pinned2").capacity, 12 << 30);
        let capped = gpu_node(&[(Tier::Pinned, 6 << 30)]);
        assert_eq!(named(&capped, "pinned0").capacity, 6 << 30);
        assert_eq!(named(&capped, "pinned1").capacity, 4 << 30);
        assert_eq!(named(&capped, "dram0").capacity, 8 << 30);
    }

    #[test]
    fn near_policies_and_affinity_follow_the_gpus_locality() {
        use crate::affinity::Locality;
        use crate::gpu::{DevicePool, DevicePoolSettings, SimDevice};
        use crate::pool::{Pool, PoolSettings};
        use crate::provider::{NumaProvider, Provider};
        use crate::sys::NumaMode;
        use crate::{Mamba, Policy};

        let spaces = gpu_node(&[]);
        let sim = std::sync::Arc::new(SimDevice::new());
        // The discovered spaces, on stand-in memory: simulated device
        // memory for the GPUs, this machine's for the rest.
        let pools = spaces
            .iter()
            .map(|info| {
                let provider: Box<dyn Provider> = if info.tier == Tier::Gpu {
                    Box::new(DevicePool::new(sim.clone(), DevicePoolSettings::default()).unwrap())
                } else {
                    Box::new(NumaProvider::new(None, NumaMode::Default, false))
                };
                Pool::new(info.clone(), provider, PoolSettings::default())
            })
            .collect();
        let m = Mamba::from_pools(pools).unwrap();
        let order = |policy: Policy| -> Vec<String> {
            m.placement(&policy)
                .unwrap()
                .spaces()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(
            order(Policy::prefer(Tier::Gpu).near_node(1)),
            ["gpu1", "gpu2", "gpu0"]
        );
        assert_eq!(
            order(Policy::prefer(Tier::Gpu).near_cpus(&[0])),
            ["gpu0", "gpu2", "gpu1"]
        );
        // near_node names node memory, and ranked policies keep to it.
        assert_eq!(order(Policy::largest_capacity()), ["dram0", "dram1"]);

        let locality = Locality::load(&Config {
            topology: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gpus-2s.xml").into()),
            ..Config::default()
        })
        .unwrap();
        let gpu1 = named(&spaces, "gpu1");
        assert_eq!(locality.node_near_space(gpu1).unwrap(), 1);
        assert_eq!(
            locality
                .cpus_near_space(gpu1)
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn without_gpu_lookup_the_runtimes_are_not_asked() {
        let config = Config {
            gpu: false,
            synthetic: Some("pack:2 numa:1 core:1 pu:1".into()),
            ..Config::default()
        };
        let (topo, source) = load(&config).unwrap();
        let spaces = spaces_with_gpus(&config, &topo, &source, || {
            unreachable!("GPUs looked up although the configuration says not to")
        });
        assert_eq!(spaces.unwrap().len(), 2);
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
