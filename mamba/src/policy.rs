//! Placement policies: which spaces an allocation may land in, in which
//! order.

use crate::tier::{SpaceId, Tier};
use std::fmt;

/// One step of a policy: a whole tier or one space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any space of the tier.
    Tier(Tier),
    /// This space only.
    Space(SpaceId),
    /// The space with this name (`dram0`, `ssd1`, ...).
    Named(String),
}

impl From<Tier> for Target {
    fn from(t: Tier) -> Self {
        Target::Tier(t)
    }
}

impl From<SpaceId> for Target {
    fn from(s: SpaceId) -> Self {
        Target::Space(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tier(t) => write!(f, "{t}"),
            Target::Space(s) => write!(f, "space {s}"),
            Target::Named(n) => write!(f, "{n}"),
        }
    }
}

/// Ranking of CPU-addressable memory spaces by their memory attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// Highest bandwidth first (HBM before DRAM before NVDIMM on a node that
    /// publishes bandwidths).
    HighestBandwidth,
    /// Lowest latency first.
    LowestLatency,
    /// Largest capacity first.
    LargestCapacity,
}

/// What a policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Only this target; fail when it is full.
    Require(Target),
    /// These targets in order: each is tried when the previous are full.
    Prefer(Vec<Target>),
    /// Every CPU-addressable NUMA space (DRAM, HBM, kmem NVDIMM), ranked.
    Best(Criterion),
}

/// Where CPU work that will use the data runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Near {
    /// These CPUs (OS indexes).
    Cpus(Vec<u32>),
    /// The CPUs of this NUMA node (OS index in the topology).
    NumaNode(u32),
}

/// A placement policy: a rule, optionally "near" some CPUs, which orders
/// the candidates of each step local-first (and, for [`Rule::Best`], ranks
/// by the attributes seen from there).
///
/// ```
/// use mamba::{Policy, Tier};
/// let p = Policy::prefer(Tier::Hbm).or(Tier::Dram).or(Tier::Ssd).near_node(0);
/// assert_eq!(p.to_string(), "prefer hbm, then dram, then ssd, near node 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rule.
    pub rule: Rule,
    /// Locality hint.
    pub near: Option<Near>,
}

impl Policy {
    /// Only `target`, never elsewhere.
    pub fn require(target: impl Into<Target>) -> Self {
        Policy {
            rule: Rule::Require(target.into()),
            near: None,
        }
    }

    /// `target` first; add fallbacks with [`Policy::or`].
    pub fn prefer(target: impl Into<Target>) -> Self {
        Policy {
            rule: Rule::Prefer(vec![target.into()]),
            near: None,
        }
    }

    /// Adds a fallback after the current ones (turns a `require` into a
    /// preference chain).
    pub fn or(mut self, target: impl Into<Target>) -> Self {
        self.rule = match self.rule {
            Rule::Require(first) => Rule::Prefer(vec![first, target.into()]),
            Rule::Prefer(mut chain) => {
                chain.push(target.into());
                Rule::Prefer(chain)
            }
            best @ Rule::Best(_) => best,
        };
        self
    }

    /// The CPU-addressable NUMA space with the highest bandwidth, then the
    /// next, ...
    pub fn highest_bandwidth() -> Self {
        Self::best(Criterion::HighestBandwidth)
    }

    /// The CPU-addressable NUMA space with the lowest latency first.
    pub fn lowest_latency() -> Self {
        Self::best(Criterion::LowestLatency)
    }

    /// The CPU-addressable NUMA space with the largest capacity first.
    pub fn largest_capacity() -> Self {
        Self::best(Criterion::LargestCapacity)
    }

    fn best(c: Criterion) -> Self {
        Policy {
            rule: Rule::Best(c),
            near: None,
        }
    }

    /// Prefer spaces local to these CPUs.
    pub fn near_cpus(mut self, cpus: &[u32]) -> Self {
        self.near = Some(Near::Cpus(cpus.to_vec()));
        self
    }

    /// Prefer spaces local to this NUMA node's CPUs.
    pub fn near_node(mut self, node: u32) -> Self {
        self.near = Some(Near::NumaNode(node));
        self
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Require(t) => write!(f, "require {t}")?,
            Rule::Prefer(chain) => {
                for (i, t) in chain.iter().enumerate() {
                    if i == 0 {
                        write!(f, "prefer {t}")?;
                    } else {
                        write!(f, ", then {t}")?;
                    }
                }
            }
            Rule::Best(Criterion::HighestBandwidth) => f.write_str("highest bandwidth")?,
            Rule::Best(Criterion::LowestLatency) => f.write_str("lowest latency")?,
            Rule::Best(Criterion::LargestCapacity) => f.write_str("largest capacity")?,
        }
        match &self.near {
            Some(Near::Cpus(c)) => write!(f, ", near cpus {}", crate::tier::compact_list(c)),
            Some(Near::NumaNode(n)) => write!(f, ", near node {n}"),
            None => Ok(()),
        }
    }
}
