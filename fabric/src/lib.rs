//! placeholder
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
pub use transport::{Exposed, Peer, RegionDescriptor, RemoteRegion, Transport};
