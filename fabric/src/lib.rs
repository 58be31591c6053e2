//! The libfabric data plane: a consumer pulls a producer's registered
//! memory straight into its own buffer.
//!
//! - Bindings are generated at build time with bindgen against the system's
//!   libfabric headers (Debian's `libfabric-dev` 1.17; `libclang-dev` for
//!   bindgen), plus a small C shim for libfabric's static-inline calls.
//! - [`Info`], [`Fabric`], [`Domain`], [`CompletionQueue`],
//!   [`AddressVector`], [`Endpoint`] and [`MemoryRegion`] close themselves
//!   (children before parents); every failure is a [`FabricError`] naming
//!   the call and libfabric's message.
//! - [`Transport`] is one endpoint with its queues: [`Transport::read_into`]
//!   reads a [`RemoteRegion`] with pipelined `fi_read`s ([`Pipeline`]:
//!   chunk size and depth) into a buffer whose registration is cached;
//!   where the provider lacks RMA (or [`Config`] forces it) the producer
//!   sends the bytes as tagged messages instead, and [`Transport::choice`]
//!   and a warning say so. A producer exposes memory with
//!   [`Transport::expose`] and must keep calling [`Transport::serve`]:
//!   tcp moves bytes only while its queues are polled.
//! - The provider comes from [`Config::provider`], else the `FI_PROVIDER`
//!   variable, else libfabric's first provider with the capabilities needed
//!   ([`ProviderSource`]); the choice is logged. On machines without an
//!   RDMA NIC, `tcp;ofi_rxm` and `sockets` carry the same API; memory
//!   registration modes (`FI_MR_LOCAL`, `FI_MR_VIRT_ADDR`,
//!   `FI_MR_PROV_KEY`, `FI_MR_ALLOCATED`) are handled as the provider asks,
//!   and a registration refused by RLIMIT_MEMLOCK is
//!   [`FabricError::Memlock`], which says how to raise the limit.
mod cache;
mod config;
mod error;
mod raw;
mod sys;
mod transport;
mod wire;

pub use cache::CacheStats;
pub use config::{Choice, Config, PathChoice, Pipeline, ProviderSource, PullPath};
pub use error::{FabricError, Result};
pub use raw::{AddressVector, CompletionQueue, Domain, Endpoint, Fabric, Info, MemoryRegion};
pub use transport::{
    Exposed, ExposedOwned, Peer, RegionDescriptor, RemoteRegion, StableBuffer, Transport,
};
