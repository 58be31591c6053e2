//! mamba from Python: the node's tiers, placements by tier or policy, and
//! allocations whose bytes NumPy arrays view in place.

use crate::arrays::{Bytes, Owned};
use crate::errors::tier_err;
use crate::policy;
use mamba::{Allocation as RustAllocation, Config, Mamba as RustMamba, Policy, SpaceInfo};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// The memory tiers of a node (this machine, or one an hwloc XML file
/// describes), each pooled: `Mamba(topology=None, gpu=None)`. The
/// configuration comes from the `MAMBA_*` environment variables as in Rust;
/// `topology` and `gpu` override it.
#[pyclass(frozen, module = "mambatiers")]
pub struct Mamba {
    pub(crate) inner: Arc<RustMamba>,
}

#[pymethods]
impl Mamba {
    #[new]
    #[pyo3(signature = (topology = None, gpu = None))]
    fn new(py: Python<'_>, topology: Option<PathBuf>, gpu: Option<bool>) -> PyResult<Self> {
        let mut config = Config::from_env().map_err(tier_err)?;
        if topology.is_some() {
            config.topology = topology;
        }
        if let Some(gpu) = gpu {
            config.gpu = gpu;
        }
        let inner = py
            .detach(|| RustMamba::discover(&config))
            .map_err(tier_err)?;
        Ok(Mamba {
            inner: Arc::new(inner),
        })
    }

    /// Every memory space of the node (a tier on one NUMA node or device).
    fn tiers(&self) -> Vec<Tier> {
        self.inner.spaces().map(Tier::from).collect()
    }

    /// A placement: `tier` (a tier or space name, required; or a list of
    /// them, preferred in order) or `policy` (`"bandwidth"`, `"latency"`,
    /// `"capacity"`; the default is the highest bandwidth), optionally near
    /// NUMA node `near_node`.
    #[pyo3(signature = (tier = None, policy = None, near_node = None))]
    fn placement(
        &self,
        tier: Option<&Bound<'_, PyAny>>,
        policy: Option<&str>,
        near_node: Option<u32>,
    ) -> PyResult<Placement> {
        Placement::new(
            Arc::clone(&self.inner),
            policy::from_args(tier, policy, near_node)?,
        )
    }

    /// `nbytes` bytes placed as `placement` with the same arguments says,
    /// aligned to `align` bytes.
    #[pyo3(signature = (nbytes, tier = None, policy = None, near_node = None, align = 64))]
    fn allocate(
        &self,
        py: Python<'_>,
        nbytes: usize,
        tier: Option<&Bound<'_, PyAny>>,
        policy: Option<&str>,
        near_node: Option<u32>,
        align: usize,
    ) -> PyResult<Allocation> {
        self.placement(tier, policy, near_node)?
            .allocate(py, nbytes, align)
    }

    fn __repr__(&self) -> String {
        let names: Vec<&str> = self.inner.spaces().map(|s| s.name.as_str()).collect();
        format!("Mamba(spaces={names:?})")
    }
}

/// One memory space: its tier `kind` (`dram`, `hbm`, `nvdimm`, `gpu`,
/// `pinned`, `ssd`), `capacity` in bytes, `numa` node (or None), and what
/// else mamba knows of it.
#[pyclass(frozen, get_all, module = "mambatiers")]
#[derive(Clone)]
pub struct Tier {
    /// The space's name (`dram0`, `hbm1`, `ssd0`, ...).
    name: String,
    /// The tier.
    kind: &'static str,
    /// Bytes.
    capacity: usize,
    /// NUMA node, for node memory.
    numa: Option<u32>,
    /// GPU device index, for device memory.
    device: Option<u32>,
    /// The CPUs local to it.
    cpus: Vec<u32>,
    /// Bandwidth in MiB/s, when known.
    bandwidth_mib_s: Option<u64>,
    /// Latency in ns, when known.
    latency_ns: Option<u64>,
    /// Whether CPUs can address it.
    host_accessible: bool,
    /// Whether it persists.
    persistent: bool,
}

impl From<&SpaceInfo> for Tier {
    fn from(s: &SpaceInfo) -> Self {
        Tier {
            name: s.name.clone(),
            kind: s.tier.name(),
            capacity: s.capacity,
            numa: s.numa_node,
            device: s.device,
            cpus: s.cpus.clone(),
            bandwidth_mib_s: s.bandwidth_mib_s,
            latency_ns: s.latency_ns,
            host_accessible: s.host_accessible,
            persistent: s.persistent,
        }
    }
}

#[pymethods]
impl Tier {
    fn __repr__(&self) -> String {
        let numa = self.numa.map_or("None".into(), |n| n.to_string());
        format!(
            "Tier(name={:?}, kind={:?}, capacity={}, numa={numa})",
            self.name, self.kind, self.capacity
        )
    }
}

/// A policy resolved against the node: the spaces an allocation may land
/// in, in the order they are tried.
#[pyclass(frozen, module = "mambatiers")]
pub struct Placement {
    mamba: Arc<RustMamba>,
    policy: Policy,
}

impl Placement {
    fn new(mamba: Arc<RustMamba>, policy: Policy) -> PyResult<Self> {
        mamba.placement(&policy).map_err(tier_err)?;
        Ok(Placement { mamba, policy })
    }
}

#[pymethods]
impl Placement {
    /// The candidate spaces, in order.
    fn tiers(&self) -> PyResult<Vec<Tier>> {
        let placement = self.mamba.placement(&self.policy).map_err(tier_err)?;
        Ok(placement.spaces().map(Tier::from).collect())
    }

    /// `nbytes` bytes from the first candidate with room, aligned to
    /// `align` bytes.
    #[pyo3(signature = (nbytes, align = 64))]
    fn allocate(&self, py: Python<'_>, nbytes: usize, align: usize) -> PyResult<Allocation> {
        let allocation = py
            .detach(|| {
                self.mamba
                    .placement(&self.policy)?
                    .allocate(nbytes, align)
                    .map(RustAllocation::into_owned)
            })
            .map_err(tier_err)?;
        let tier = Tier::from(allocation.space());
        let (address, nbytes) = (allocation.addr(), allocation.len());
        Ok(Allocation {
            bytes: Py::new(py, Bytes::new(Owned::Allocation(allocation)))?,
            tier,
            address,
            nbytes,
        })
    }

    fn __repr__(&self) -> String {
        let names: Vec<String> = self
            .mamba
            .placement(&self.policy)
            .map(|p| p.spaces().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        format!("Placement(spaces={names:?})")
    }
}

/// Bytes in one memory space, freed when this object and every array
/// over it are gone.
#[pyclass(frozen, module = "mambatiers")]
pub struct Allocation {
    bytes: Py<Bytes>,
    tier: Tier,
    address: usize,
    nbytes: usize,
}

#[pymethods]
impl Allocation {
    /// Its size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// The space it landed in.
    #[getter]
    fn tier(&self) -> Tier {
        self.tier.clone()
    }

    /// The address of its first byte.
    #[getter]
    fn address(&self) -> usize {
        self.address
    }

    /// A writable NumPy array over the bytes, without a copy: as `dtype`
    /// (default `uint8`) with `shape` (default flat). Every array of one
    /// allocation sees the same bytes.
    ///
    /// Raises `TierError` for memory the CPU cannot address.
    #[pyo3(signature = (dtype = None, shape = None))]
    fn array<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Bytes::array(self.bytes.bind(py), dtype, shape)
    }

    fn __len__(&self) -> usize {
        self.nbytes
    }

    fn __repr__(&self) -> String {
        format!(
            "Allocation(nbytes={}, tier={:?})",
            self.nbytes, self.tier.name
        )
    }
}
