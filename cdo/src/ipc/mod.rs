//! The same-node, cross-process side of the CDO pool: a control protocol over
//! a Unix socket and a zero-copy data plane in sealed shared memory.
//!
//! - [`wire`]: every message and its framing;
//! - [`conn`]: frames and descriptors over a Unix stream socket;
//! - [`shm`]: memfd segments, seals, read-only mappings;
//! - [`pool`]: the producer's pool of pre-faulted segments;
//! - [`registry`]: the manager's store of offers (swappable);
//! - [`manager`]: the pool manager, in-process or as the `cdo-pm` binary;
//! - [`client`]: what an application links to offer and demand objects;
//! - [`lease`]: client heartbeats and the manager's leases on them;
//! - [`components`]: the archiver and librarian (binaries `cdo-archiver`,
//!   `cdo-librarian`);
//! - [`group`]: CDO groups (members plus a manifest) across processes;
//! - [`convert`]: a demanded view copied into another space, tier or order;
//! - [`endpoint`]: where the manager listens and how clients find it;
//! - [`fasthash`]: the hasher of the maps on the request path.

pub mod client;
pub mod components;
pub mod conn;
pub mod convert;
pub mod endpoint;
pub mod fasthash;
pub mod group;
pub mod lease;
pub mod manager;
pub mod pool;
pub mod registry;
pub mod shm;
pub mod wire;
