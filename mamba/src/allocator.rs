//! The tiered front door: spaces, their pools, and allocation by policy.

use crate::affinity::{Locality, MigrationPolicy};
use crate::allocation::{Allocation, RawAllocation};
use crate::config::{BindPolicy, Config};
use crate::error::{Error, Result};
use crate::policy::{Criterion, Near, Policy, Rule, Target};
use crate::pool::{Block, Pool, PoolSettings, PoolStats};
use crate::provider::{
    CudaProvider, FileProvider, HipProvider, NearNode, NumaProvider, Provider, SpillProvider,
};
use crate::sys::NumaMode;
use crate::tier::{Backing, SpaceId, SpaceInfo, Tier};
use crate::tiering::{Tiering, Watermarks};
use crate::topology::costs::Origin;
use crate::topology::{self, MachineCosts, Source};
use mamba_transforms::ExecOptions;
use std::sync::Arc;

/// A node's memory: one pool per discovered space, and allocation by
/// placement policy.
///
/// ```
/// use mamba::{Config, Mamba, Policy, Tier};
/// let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
/// let a = mamba.allocate(4096, 64, &Policy::prefer(Tier::Hbm).or(Tier::Dram))?;
/// println!("landed in {} ({})", a.space().name, a.tier());
/// # Ok::<(), mamba::Error>(())
/// ```
pub struct Mamba {
    pools: Vec<Pool>,
    source: Source,
    /// Attributes per initiator, for policies with a `near` vantage.
    attributes: topology::AttributeTable,
    /// The locality facts of the topology loaded at discovery, shared with
    /// [`crate::affinity`] (`None` for assembled pools).
    locality: Option<Locality>,
    /// Cache sizes and bandwidths the cost figures derive from.
    costs: MachineCosts,
    /// Movable data and watermarks ([`crate::tiering`]).
    tiering: Arc<Tiering>,
}

impl std::fmt::Debug for Mamba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mamba")
            .field("source", &self.source)
            .field(
                "spaces",
                &self
                    .pools
                    .iter()
                    .map(|p| &p.info().name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A policy resolved against a node: the candidate pools in order. Resolve
/// once, allocate many times (the hot path of a tiered allocation).
#[derive(Debug, Clone)]
pub struct Placement<'m> {
    pools: Vec<&'m Pool>,
    policy: String,
}

impl<'m> Placement<'m> {
    /// Allocates from the first candidate with room, falling back in order.
    ///
    /// # Errors
    /// The first candidate's [`Error::OutOfCapacity`] when every candidate is
    /// full; argument errors as for [`Pool::allocate`].
    #[inline(always)]
    pub fn allocate(&self, len: usize, align: usize) -> Result<Allocation<'m>> {
        // The two paths meet on (pool, block), not on an allocation inside
        // a `Result`, so that the hot path's handle stays in registers.
        let hit = self
            .pools
            .first()
            .and_then(|&p| Some((p, p.allocate_cached(len, align)?)));
        let (pool, block) = match hit {
            Some(hit) => hit,
            None => self.allocate_checked(len, align)?,
        };
        Ok(Allocation::new(block, pool))
    }

    #[cold]
    fn allocate_checked(&self, len: usize, align: usize) -> Result<(&'m Pool, Block)> {
        let mut first_error = None;
        for &pool in &self.pools {
            match pool.allocate_block(len, align) {
                Ok(b) => return Ok((pool, b)),
                Err(e @ Error::OutOfCapacity { .. }) => {
                    tracing::debug!(space = %pool.info().name, "full, falling back");
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.unwrap_or_else(|| Error::NoSpace {
            policy: self.policy.clone(),
            reason: "no candidate space".into(),
        }))
    }

    /// The candidate spaces, in the order they are tried.
    pub fn spaces(&self) -> impl Iterator<Item = &'m SpaceInfo> + '_ {
        self.pools.iter().map(|p| p.info())
    }
}

impl Mamba {
    /// Discovers the node described by `config` (this machine by default)
    /// and creates a pool per space.
    ///
    /// # Errors
    /// Unreadable topology, bad configuration, unusable directories.
    pub fn discover(config: &Config) -> Result<Self> {
        // The one load of the topology: spaces, attributes, locality and
        // costs all come from it.
        let (topo, source) = topology::load(config)?;
        let spaces = topology::discover_spaces(config, &topo, &source)?;
        let attributes = topology::AttributeTable::read(&topo);
        let costs = MachineCosts::read(&topo, &spaces, &attributes);
        let locality = Locality::from_topology(&topo, source.clone());
        let mut mamba = Self::from_spaces(config, spaces, source)?;
        mamba.attributes = attributes;
        mamba.costs = costs;
        mamba.locality = Some(locality);
        Ok(mamba)
    }

    /// [`Mamba::discover`] with [`Config::from_env`].
    pub fn from_env() -> Result<Self> {
        Self::discover(&Config::from_env()?)
    }

    fn from_spaces(config: &Config, spaces: Vec<SpaceInfo>, source: Source) -> Result<Self> {
        let settings = PoolSettings {
            chunk_size: config.chunk_size.0,
            ..PoolSettings::default()
        };
        let mode = match config.bind {
            BindPolicy::Bind => NumaMode::Bind,
            BindPolicy::Preferred => NumaMode::Preferred,
        };
        let numa = |p: NumaProvider| -> Box<dyn Provider> {
            match config.hugetlb {
                Some(size) => Box::new(p.with_hugetlb(size)),
                None => Box::new(p),
            }
        };
        let pools = spaces
            .into_iter()
            .map(|info| {
                let mut provider: Box<dyn Provider> = match &info.backing {
                    Backing::NumaNodes { nodes } => numa(NumaProvider::new(
                        Some(nodes.clone()),
                        mode,
                        config.huge_pages,
                    )),
                    Backing::Unbound => numa(NumaProvider::new(None, mode, config.huge_pages)),
                    Backing::Directory { path } => Box::new(FileProvider::new(path)?),
                    Backing::SpillFiles { path } => {
                        Box::new(SpillProvider::new(path, config.spill_engine)?)
                    }
                    Backing::Cuda { device } => Box::new(CudaProvider::new(*device, false)?),
                    Backing::CudaPinned { device } => Box::new(CudaProvider::new(*device, true)?),
                    Backing::Hip { device } => Box::new(HipProvider::new(*device, false)?),
                    Backing::HipPinned { device } => Box::new(HipProvider::new(*device, true)?),
                };
                // Pinned memory of this machine comes from the GPU's node.
                if let (Tier::Pinned, Some(node), Source::ThisMachine) =
                    (info.tier, info.numa_node, &source)
                {
                    provider = Box::new(NearNode::new(provider, node));
                }
                Ok(Pool::new(info, provider, settings))
            })
            .collect::<Result<Vec<_>>>()?;
        let tiering = Tiering::new(
            pools
                .iter()
                .map(|p| (p.handle(), config.watermarks_of(p.info().tier))),
        );
        Ok(Mamba {
            pools,
            source,
            attributes: topology::AttributeTable::default(),
            locality: None,
            costs: MachineCosts::default(),
            tiering: Arc::new(tiering),
        })
    }

    /// An allocator over pools the caller built (spaces of its own, or
    /// pools over custom [`Provider`]s); pool `i` must serve the space with
    /// id `i`.
    ///
    /// # Errors
    /// [`Error::Config`] when the space ids are not `0..pools.len()` in
    /// order.
    pub fn from_pools(pools: Vec<Pool>) -> Result<Self> {
        if let Some((i, p)) = pools
            .iter()
            .enumerate()
            .find(|(i, p)| p.info().id.0 as usize != *i)
        {
            return Err(Error::Config(format!(
                "pool {i} serves space {} ({}): space ids must be 0, 1, ... in order",
                p.info().id,
                p.info().name
            )));
        }
        let tiering = Tiering::new(pools.iter().map(|p| (p.handle(), Watermarks::DEFAULT)));
        Ok(Mamba {
            pools,
            source: Source::Assembled,
            attributes: topology::AttributeTable::default(),
            locality: None,
            costs: MachineCosts::default(),
            tiering: Arc::new(tiering),
        })
    }

    /// The named persistent objects of an NVDIMM directory space (see
    /// [`crate::pmem`]).
    ///
    /// # Errors
    /// [`Error::UnknownSpace`]; [`Error::Unsupported`] for a space that is
    /// not an NVDIMM directory.
    pub fn persistent_objects(&self, space: SpaceId) -> Result<crate::pmem::PmemSpace> {
        let info = self.pool(space)?.info();
        match (&info.backing, info.tier) {
            (Backing::Directory { path }, Tier::Nvdimm) => crate::pmem::PmemSpace::new(path),
            _ => Err(Error::Unsupported {
                operation: "persistent objects",
                space,
                tier: info.tier,
            }),
        }
    }

    /// The tiering state (movable data, watermarks).
    pub(crate) fn tiering(&self) -> &Arc<Tiering> {
        &self.tiering
    }

    /// Where the topology came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The locality facts (nodes, packages, distances) of the topology
    /// loaded at discovery, for [`crate::affinity`]: pools and domains
    /// built from it agree with the spaces, and nothing loads the topology
    /// again. `None` for an allocator over assembled pools
    /// ([`Mamba::from_pools`]).
    pub fn locality(&self) -> Option<&Locality> {
        self.locality.as_ref()
    }

    /// The cache sizes and bandwidths of the node that the cost figures
    /// below derive from (all `None` for assembled pools).
    pub fn machine_costs(&self) -> &MachineCosts {
        &self.costs
    }

    /// Copies writing at least this many bytes use non-temporal stores:
    /// the smallest package's last-level cache, or the documented
    /// fallback ([`topology::costs::FALLBACK_STREAMING_THRESHOLD`]) when
    /// hwloc reports no cache size; the [`Origin`] says which.
    pub fn streaming_threshold(&self) -> (usize, Origin) {
        self.costs.streaming_threshold()
    }

    /// Copy options for this node: [`ExecOptions::default`] with the
    /// [`Mamba::streaming_threshold`].
    pub fn exec_options(&self) -> ExecOptions {
        ExecOptions {
            streaming_threshold: self.streaming_threshold().0,
            ..ExecOptions::default()
        }
    }

    /// The task-versus-data migration cost model of this node, from its
    /// bandwidths and cache sizes ([`MachineCosts::migration_policy`]), and
    /// where its per-byte costs come from.
    pub fn migration_policy(&self) -> (MigrationPolicy, Origin) {
        self.costs.migration_policy()
    }

    /// Every space, in discovery order (DRAM/HBM/NVDIMM NUMA nodes, GPUs,
    /// directories).
    pub fn spaces(&self) -> impl Iterator<Item = &SpaceInfo> {
        self.pools.iter().map(Pool::info)
    }

    /// Every pool.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pool of a space.
    ///
    /// # Errors
    /// [`Error::UnknownSpace`].
    pub fn pool(&self, id: SpaceId) -> Result<&Pool> {
        self.pools.get(id.0 as usize).ok_or(Error::UnknownSpace(id))
    }

    /// The pool of the space with this name.
    ///
    /// # Errors
    /// [`Error::Config`] naming the unknown space.
    pub fn pool_named(&self, name: &str) -> Result<&Pool> {
        self.pools
            .iter()
            .find(|p| p.info().name == name)
            .ok_or_else(|| Error::Config(format!("no space named {name:?}")))
    }

    /// The first pool of a tier.
    ///
    /// # Errors
    /// [`Error::UnknownTier`].
    pub fn pool_of(&self, tier: Tier) -> Result<&Pool> {
        self.pools
            .iter()
            .find(|p| p.info().tier == tier)
            .ok_or(Error::UnknownTier(tier))
    }

    /// Allocates `len` bytes aligned to `align` where `policy` allows.
    ///
    /// # Errors
    /// As [`Mamba::placement`] and [`Placement::allocate`].
    pub fn allocate(&self, len: usize, align: usize, policy: &Policy) -> Result<Allocation<'_>> {
        self.placement(policy)?.allocate(len, align)
    }

    /// [`Mamba::allocate`], returning an owned allocation (see
    /// [`Allocation::into_owned`]): it keeps its pool alive and does not
    /// borrow `self`.
    ///
    /// # Errors
    /// As [`Mamba::allocate`].
    pub fn allocate_owned(
        &self,
        len: usize,
        align: usize,
        policy: &Policy,
    ) -> Result<Allocation<'static>> {
        self.allocate(len, align, policy)
            .map(Allocation::into_owned)
    }

    /// Resolves a policy into the ordered candidate spaces.
    ///
    /// # Errors
    /// [`Error::UnknownTier`], [`Error::UnknownSpace`],
    /// [`Error::UnknownNumaNode`], or [`Error::NoSpace`] when nothing
    /// matches.
    pub fn placement(&self, policy: &Policy) -> Result<Placement<'_>> {
        let near_cpus = self.near_cpus(policy.near.as_ref())?;
        let mut pools: Vec<&Pool> = Vec::new();
        match &policy.rule {
            Rule::Require(target) => self.add_target(target, near_cpus.as_deref(), &mut pools)?,
            Rule::Prefer(chain) => {
                let mut missing = Vec::new();
                for target in chain {
                    match self.add_target(target, near_cpus.as_deref(), &mut pools) {
                        Ok(()) => {}
                        // A preference for a tier the node lacks just skips it.
                        Err(Error::UnknownTier(t)) => missing.push(t),
                        Err(e) => return Err(e),
                    }
                }
                if pools.is_empty() {
                    return Err(Error::NoSpace {
                        policy: policy.to_string(),
                        reason: format!("this node has none of {missing:?}"),
                    });
                }
            }
            Rule::Best(criterion) => {
                pools = self
                    .pools
                    .iter()
                    .filter(|p| p.info().host_accessible && p.info().is_node_memory())
                    .collect();
                order_by_locality(&mut pools, near_cpus.as_deref());
                // Bandwidth and latency from the policy's vantage: what hwloc
                // reports for the initiator holding the `near` CPUs (unknown,
                // so ranked last, when it reports the node only from others).
                let seen = |info: &SpaceInfo| match (near_cpus.as_deref(), info.numa_node) {
                    (Some(near), Some(node)) if self.attributes.knows(node) => self
                        .attributes
                        .seen_from(node, near)
                        .map_or((None, None), |s| (s.bandwidth_mib_s, s.latency_ns)),
                    _ => (info.bandwidth_mib_s, info.latency_ns),
                };
                rank(&mut pools, *criterion, seen);
            }
        }
        if pools.is_empty() {
            return Err(Error::NoSpace {
                policy: policy.to_string(),
                reason: "no space matches".into(),
            });
        }
        Ok(Placement {
            pools,
            policy: policy.to_string(),
        })
    }

    fn add_target<'m>(
        &'m self,
        target: &Target,
        near: Option<&[u32]>,
        pools: &mut Vec<&'m Pool>,
    ) -> Result<()> {
        let mut matched: Vec<&Pool> = match target {
            Target::Tier(t) => {
                let m: Vec<&Pool> = self.pools.iter().filter(|p| p.info().tier == *t).collect();
                if m.is_empty() {
                    return Err(Error::UnknownTier(*t));
                }
                m
            }
            Target::Space(id) => vec![self.pool(*id)?],
            Target::Named(name) => vec![self.pool_named(name)?],
        };
        order_by_locality(&mut matched, near);
        for p in matched {
            if !pools.iter().any(|q| std::ptr::eq(*q, p)) {
                pools.push(p);
            }
        }
        Ok(())
    }

    fn near_cpus(&self, near: Option<&Near>) -> Result<Option<Vec<u32>>> {
        Ok(match near {
            None => None,
            Some(Near::Cpus(c)) => Some(c.clone()),
            Some(Near::NumaNode(n)) => Some(
                self.pools
                    .iter()
                    .find(|p| p.info().is_node_memory() && p.info().numa_node == Some(*n))
                    .ok_or(Error::UnknownNumaNode(*n))?
                    .info()
                    .cpus
                    .clone(),
            ),
        })
    }

    /// Gives back a block released with [`Allocation::into_raw`].
    ///
    /// A [`RawAllocation`] can be neither copied nor made up, so each block
    /// comes back at most once; one of another allocator, or of a pool that
    /// no longer exists, is refused.
    ///
    /// # Errors
    /// [`Error::UnknownSpace`], or [`Error::ForeignBlock`] when the block is
    /// not memory of that space's pool (another [`Mamba`], or a pool dropped
    /// since); the pool is left untouched and the block is not freed.
    pub fn free_raw(&self, raw: RawAllocation) -> Result<()> {
        let pool = self.pool(raw.space())?;
        let block = raw.block();
        if pool.generation() != raw.generation() || !pool.owns(block.addr, block.block_len()) {
            return Err(Error::ForeignBlock {
                addr: block.addr,
                space: raw.space(),
            });
        }
        pool.free_block(&block);
        Ok(())
    }

    /// Every space with its pool's statistics.
    pub fn stats(&self) -> Vec<(&SpaceInfo, PoolStats)> {
        self.pools.iter().map(|p| (p.info(), p.stats())).collect()
    }
}

/// Stable sort: spaces local to `near` first.
fn order_by_locality(pools: &mut [&Pool], near: Option<&[u32]>) {
    if let Some(near) = near {
        pools.sort_by_key(|p| !p.info().cpus.iter().any(|c| near.contains(c)));
    }
}

/// Stable sort by a criterion, with (bandwidth, latency) of each space
/// from `seen`; spaces without the attribute go last.
fn rank(
    pools: &mut [&Pool],
    criterion: Criterion,
    seen: impl Fn(&SpaceInfo) -> (Option<u64>, Option<u64>),
) {
    match criterion {
        Criterion::HighestBandwidth => {
            pools.sort_by_key(|p| std::cmp::Reverse(seen(p.info()).0.unwrap_or(0)))
        }
        Criterion::LowestLatency => pools.sort_by_key(|p| seen(p.info()).1.unwrap_or(u64::MAX)),
        Criterion::LargestCapacity => pools.sort_by_key(|p| std::cmp::Reverse(p.info().capacity)),
    }
}
