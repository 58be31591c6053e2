//! NUMA-aware thread pinning and data-aware task placement.
//!
//! Find where data lives, and run the work that uses it on cores of that
//! NUMA domain — or move the data when that is cheaper.
//!
//! | file | job |
//! |---|---|
//! | [`cpuset`] | CPU and node sets, as `0-3,8` lists |
//! | [`locality`] | nodes, packages, distances, the CPUs nearest any space |
//! | [`domain`] | worker domains, node-to-domain mapping, steal order, routing |
//! | [`bind`] | pinning threads, verified, restored on drop |
//! | [`data`] | the node holding a range's or an allocation's pages, cached per thread; data sets located once |
//! | [`pool`] | the worker pool: spawn near data, on a node, in a domain |
//! | [`scope`] | tasks borrowing from the caller |
//! | [`job`] | join handles: the task's value or its panic |
//! | [`decide`] | move the task or the data: the pure decision |
//! | [`place`] | carrying the decision out with [`crate::Mamba::move_pages`] |
//! | [`stats`] | who ran what where; local, remote, steals, panics |
//!
//! With a [`crate::Mamba`], take its topology ([`crate::Mamba::locality`])
//! and its cost model ([`crate::Mamba::migration_policy`]) rather than
//! loading them again with [`Locality::load`]: the domains then agree with
//! the allocator's spaces.
//!
//! Binding happens only through this machine's topology: on a simulated
//! one (XML, synthetic) binding is refused with
//! [`AffinityError::SimulatedTopology`] and pool workers run unpinned, with
//! the same domains and routing.
//!
//! ```
//! use mamba::affinity::{AffinityPool, Locality};
//! use mamba::Config;
//!
//! let locality = Locality::load(&Config::default())?;
//! let pool = AffinityPool::new(&locality)?;
//! let data = vec![1.0f64; 1 << 16];
//! let sums = pool.scope(|s| {
//!     let handles: Vec<_> = data
//!         .chunks(1 << 12)
//!         .map(|chunk| s.spawn_near(chunk, move || chunk.iter().sum::<f64>()))
//!         .collect::<Result<_, _>>()?;
//!     handles.into_iter().map(|h| h.join()).sum::<Result<f64, _>>()
//! })??;
//! assert_eq!(sums, (1 << 16) as f64);
//! # Ok::<(), mamba::affinity::AffinityError>(())
//! ```

pub mod bind;
mod cache;
pub mod cpuset;
pub mod data;
pub mod decide;
pub mod domain;
pub mod error;
pub mod job;
pub mod locality;
pub mod place;
pub mod pool;
mod queue;
pub mod scope;
pub mod stats;
mod worker;

pub use bind::{current_cpu, thread_affinity, BindGuard, PinnedThread};
pub use cache::forget_locations;
pub use cpuset::{CpuSet, NodeSet};
pub use data::{DataLocation, DataRange, DataSet, Fresh, SAMPLED_PAGES};
pub use decide::{Action, Backlog, Decision, Footprint, MigrationPolicy};
pub use domain::{Domain, Domains, Level, Membership, Route, RouteReason};
pub use error::{AffinityError, Result};
pub use job::JoinHandle;
pub use locality::{DistanceOrigin, Locality, NumaNode, Package};
pub use place::Placed;
pub use pool::{AffinityPool, Pinning, PoolBuilder};
pub use scope::Scope;
pub use stats::{Execution, Origin, PoolStats, WorkerStats};
pub use worker::{current_worker, WorkerId};
