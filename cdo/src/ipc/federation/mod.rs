//! Pool managers on several nodes as one pool.
//!
//! Every node runs its own pool manager, and its components talk to it as
//! on one node: an application does not change a line when its producer
//! and its consumer run on different nodes. The managers form a full mesh
//! (the topology, message counts and scaling are in `cdo/FEDERATION.md`):
//!
//! - each manager's federation joins its own manager as an ordinary client
//!   and watches its offers and withdrawals. An object of at most
//!   [`FederationConfig::eager_max`] bytes travels to every peer inline with
//!   its offer (the eager path): the manager hands its bytes to the
//!   federation with the offer
//!   ([`Control::on_mirror_events`](crate::ipc::manager::Control::on_mirror_events)).
//!   The federation demands a larger one once (a view); its view is
//!   exposed on the fabric ([`mamba_fabric`]) and every peer
//!   told its name, attributes, size and region descriptor
//!   ([`mamba_fabric::RegionDescriptor`]);
//! - a demand that finds nothing on offer locally is reported to the
//!   federation ([`Control::on_unmet_demand`](crate::ipc::manager::Control));
//!   when a peer offers that name, the manager copies the inline bytes
//!   into a segment of its own
//!   ([`Control::offer_copy`](crate::ipc::manager::Control::offer_copy)),
//!   or the federation reads them once with `fi_read` straight into a
//!   segment of its own pool, and offers them locally under the same
//!   name, which serves the waiting demand (and any later one on this
//!   node) like a local object;
//! - a withdrawal on the producer's node tells every peer and, for an
//!   exposed object, keeps the memory exposed (the producer's withdrawal
//!   waiting, as for a local view) until each peer answers that no read of
//!   it is in flight, or the remote timeout passes;
//! - a read that fails (a peer dead, stopped or cut off: no completion for
//!   [`FederationConfig::remote_timeout`], `CDO_REMOTE_TIMEOUT_MS`) fails
//!   the waiting demands with [`ErrorCode::RemoteFailed`] under the
//!   fail-fast [`FaultPolicy`](crate::ipc::manager::FaultPolicy), as does
//!   a demand of an object whose node's links ended; under best-effort the
//!   node asks its peers for a whole copy (one read earlier and kept) and
//!   reads the first that answers, which raises no event and is announced
//!   to nobody; a peer without a copy raises a Require event of it for its
//!   librarians, which may offer it from their archive. The segment is
//!   filled before it is offered, so no consumer ever sees part of an
//!   object.
//!
//! - a consumer group spans the nodes: each node tells the others how
//!   many members it has of each group; each keeps, in its own group, a
//!   proxy member per other node weighted by that count
//!   ([`Control::set_proxy`](crate::ipc::manager::Control::set_proxy)).
//!   An offer is routed on its producer's node; a record given to a proxy
//!   is forwarded to its node, which reads the object as above and gives
//!   it to one of its members, and answers once that member is done. Until
//!   then the record keeps the object, so its producer's withdrawal waits.
//!   When a node's members all go, or its link, the records it held go to
//!   the group's other members;
//! - a require of a name that no node offers yet is broadcast, and every
//!   peer requires it too, so that an offer of it on any node is held
//!   (its withdrawal waits) until the requiring node has read its copy.
//!
//! Managers prove to each other that they hold the workflow token with an
//! HMAC-SHA256 challenge-response (the token never crosses the network);
//! a peer that cannot is refused, with the reason logged and kept in
//! [`FederationStatus::refused`]. Nothing listens unless
//! `CDO_FEDERATION_LISTEN` (or `cdo-pm --federation-listen`) names the
//! address; peers come from `CDO_FEDERATION_PEERS` (`host:port,...`, or
//! from the launcher's job: `slurm` for the other nodes of the `srun`
//! step, `pmix` for a PMIx exchange, `dir:PATH` for a rendezvous
//! directory, see [`wireup`] and [`launch`]).
//!
//! [`ErrorCode::RemoteFailed`]: crate::ipc::wire::ErrorCode::RemoteFailed

mod auth;
pub mod launch;
mod link;
pub mod listen;
mod node;
pub mod pmix;
pub mod wireup;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::ClientError;
use super::manager::ManagerHandle;

/// Environment variable: the address (`ip:port`, or `net/len:port` for this
/// node's address in a subnet, see [`listen`]) this node's manager listens
/// on for its peers. Unset: no federation, nothing listens.
pub const LISTEN_ENV: &str = "CDO_FEDERATION_LISTEN";
/// Environment variable: the peer managers to dial, `host:port,...`, or
/// where the launcher's job tells them: `slurm`, `pmix`, `dir:PATH` or
/// `launcher` (see [`wireup`]).
pub const PEERS_ENV: &str = "CDO_FEDERATION_PEERS";
/// Environment variable: how long a remote read may go without progress
/// before the demand fails, in milliseconds.
pub const REMOTE_TIMEOUT_ENV: &str = "CDO_REMOTE_TIMEOUT_MS";
/// Environment variable: the libfabric provider (`tcp;ofi_rxm`, `verbs;ofi_rxm`,
/// `cxi`, ...); unset, `FI_PROVIDER` or libfabric's choice.
pub const PROVIDER_ENV: &str = "CDO_FABRIC_PROVIDER";
/// Environment variable: objects of at most this many bytes travel inline
/// with their offer instead of by remote read ([`FederationConfig::eager_max`]).
pub const EAGER_MAX_ENV: &str = "CDO_FEDERATION_EAGER_MAX";
/// Default [`FederationConfig::remote_timeout`].
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`FederationConfig::eager_max`]: 64 KiB.
pub const DEFAULT_EAGER_MAX: usize = 64 << 10;
/// Largest [`FederationConfig::eager_max`] accepted (an offer with its
/// bytes must fit one peer message, with room for its attributes).
pub const EAGER_MAX_LIMIT: usize = 512 << 10;

/// How a node joins a federation of pool managers.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// Where to listen for peer managers (port 0: any free port, see
    /// [`Federation::local_addr`]).
    pub listen: SocketAddr,
    /// Peer managers to dial, `host:port`. Either side of a pair may list
    /// the other; one link is kept per pair.
    pub peers: Vec<String>,
    /// The workflow token every node of the workflow shares.
    pub token: String,
    /// How long a remote read, or a peer's answer to a withdrawal, may take
    /// without progress.
    pub remote_timeout: Duration,
    /// Objects of at most this many bytes travel inline with their offer
    /// to every peer (the eager path: no remote read, no exposed memory,
    /// a withdrawal that waits for no peer); larger ones are read with
    /// `fi_read` from the producer's node. 0: only empty objects inline.
    /// At most [`EAGER_MAX_LIMIT`].
    pub eager_max: usize,
    /// The fabric transport's configuration (provider, pipeline). Its
    /// `node` defaults to the listening address's IP, its `timeout` is
    /// `remote_timeout`.
    pub fabric: mamba_fabric::Config,
}

impl FederationConfig {
    /// A configuration listening on `listen`, dialling `peers`.
    pub fn new(listen: SocketAddr, peers: Vec<String>, token: String) -> Self {
        FederationConfig {
            listen,
            peers,
            token,
            remote_timeout: DEFAULT_REMOTE_TIMEOUT,
            eager_max: DEFAULT_EAGER_MAX,
            fabric: mamba_fabric::Config::default(),
        }
    }

    /// The configuration named by [`LISTEN_ENV`], [`PEERS_ENV`],
    /// [`REMOTE_TIMEOUT_ENV`], [`EAGER_MAX_ENV`] and [`PROVIDER_ENV`]; `None` when
    /// [`LISTEN_ENV`] is unset.
    ///
    /// # Errors
    /// A malformed variable, peers without a listening address, or no
    /// workflow token.
    pub fn from_env(token: Option<&str>) -> Result<Option<Self>, FederationError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let Some(listen) = var(LISTEN_ENV) else {
            if let Some(peers) = var(PEERS_ENV) {
                return Err(bad(PEERS_ENV, &peers, &format!("needs {LISTEN_ENV}")));
            }
            return Ok(None);
        };
        let peers = var(PEERS_ENV).unwrap_or_default();
        let mut config = Self::parse(&listen, &peers, token)?;
        if let Some(ms) = var(REMOTE_TIMEOUT_ENV) {
            let n: u64 = ms
                .parse()
                .map_err(|e| bad(REMOTE_TIMEOUT_ENV, &ms, &format!("{e}")))?;
            config.remote_timeout = Duration::from_millis(n);
        }
        if let Some(n) = var(EAGER_MAX_ENV) {
            config.eager_max = parse_eager_max(&n)?;
        }
        config.fabric.provider = var(PROVIDER_ENV);
        Ok(Some(config))
    }

    /// A configuration from the text forms of the listening address and
    /// the peer source ([`wireup::PeerSource`]), resolved here: a PMIx or
    /// rendezvous exchange waits until every node of the job has published
    /// its address.
    ///
    /// # Errors
    /// [`FederationError::Config`] naming what is malformed.
    pub fn parse(listen: &str, peers: &str, token: Option<&str>) -> Result<Self, FederationError> {
        let addr = listen::resolve(listen).map_err(|e| bad(LISTEN_ENV, listen, &e))?;
        let token = match token {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => return Err(bad(
                LISTEN_ENV,
                listen,
                "a federation needs the workflow token (CDO_WORKFLOW_TOKEN) shared by every node",
            )),
        };
        let peers = wireup::PeerSource::parse(peers)
            .and_then(|source| source.resolve(addr))
            .map_err(|e| bad(PEERS_ENV, peers, &e))?;
        Ok(Self::new(addr, peers, token))
    }
}

/// A byte count for [`FederationConfig::eager_max`], at most [`EAGER_MAX_LIMIT`].
fn parse_eager_max(s: &str) -> Result<usize, FederationError> {
    s.trim()
        .parse()
        .map_err(|e| bad(EAGER_MAX_ENV, s, &format!("{e} (expected a byte count)")))
}

fn bad(var: &str, value: &str, why: &str) -> FederationError {
    FederationError::Config {
        var: var.into(),
        value: value.into(),
        why: why.into(),
    }
}

/// Why a federation could not start.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// A setting is malformed.
    #[error("{var}={value:?}: {why}")]
    Config {
        /// The variable or flag.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The federation could not join its own manager.
    #[error("joining the local pool manager: {0}")]
    Local(#[from] ClientError),
    /// The fabric transport could not be opened.
    #[error("fabric: {0}")]
    Fabric(#[from] mamba_fabric::FabricError),
    /// A thread, or the socket that wakes the federation's thread, could
    /// not be created.
    #[error("cannot start the federation's threads: {0}")]
    Thread(#[source] std::io::Error),
}

/// What a federation is doing, for tools and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationStatus {
    /// This node's name (its listening address; host name and port when
    /// it listens on every interface).
    pub node: String,
    /// The fabric transport's provider and path.
    pub fabric: String,
    /// Peers linked now, by node name.
    pub peers: Vec<String>,
    /// Why peers were refused or refused us (the latest ones).
    pub refused: Vec<String>,
    /// Objects of this node offered to the peers.
    pub exported: usize,
    /// Objects of peers known here.
    pub imported: usize,
    /// Remote objects read into this node.
    pub pulls: u64,
    /// Their bytes.
    pub pulled_bytes: u64,
    /// Those of them that came inline with their offer (no remote read).
    pub inline_pulls: u64,
    /// Remote reads that failed.
    pub failed_pulls: u64,
    /// Those of `pulls` taken from another node's copy, under the
    /// best-effort fault policy, after the object's own node was lost or
    /// could not be read.
    pub replica_pulls: u64,
    /// Proxy members here of other nodes' consumer-group members (one per
    /// group and node that has members).
    pub group_proxies: usize,
    /// Consumer-group records of this node forwarded to members on other
    /// nodes.
    pub forwarded_records: u64,
}

/// Most refusal reasons kept in [`FederationStatus::refused`].
const REFUSALS_KEPT: usize = 16;

/// A running federation of this node's manager with its peers; dropping
/// it stops it (the manager goes on alone).
pub struct Federation {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<FederationStatus>>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts the federation of `manager` with its peers.
///
/// # Errors
/// See [`FederationError`].
pub fn start(
    config: FederationConfig,
    manager: &ManagerHandle,
) -> Result<Federation, FederationError> {
    if config.eager_max > EAGER_MAX_LIMIT {
        return Err(bad(
            EAGER_MAX_ENV,
            &config.eager_max.to_string(),
            &format!("at most {EAGER_MAX_LIMIT} bytes travel inline"),
        ));
    }
    let listener = TcpListener::bind(config.listen).map_err(|source| FederationError::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| FederationError::Listen {
            addr: config.listen,
            source,
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Mutex::new(FederationStatus {
        node: node::node_name(addr),
        ..FederationStatus::default()
    }));
    let threads = node::spawn(
        config,
        addr,
        listener,
        manager,
        stop.clone(),
        status.clone(),
    )?;
    Ok(Federation {
        addr,
        stop,
        status,
        threads,
    })
}

impl Federation {
    /// The address peers dial (this node's name in the federation).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the federation is doing.
    pub fn status(&self) -> FederationStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the federation: links close, exposed memory is unregistered
    /// and the views behind it released.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lists_and_addresses_parse_or_say_what_is_wrong() {
        let c =
            FederationConfig::parse("127.0.0.1:7000", " a:1, 10.0.0.2:7000 ,", Some("t")).unwrap();
        assert_eq!(c.peers, ["a:1", "10.0.0.2:7000"]);
        assert_eq!(c.listen.port(), 7000);
        let wildcard = node::node_name("0.0.0.0:7400".parse().unwrap());
        assert!(wildcard.ends_with(":7400") && !wildcard.starts_with("0.0.0.0"));
        for (listen, peers, token) in [
            ("nowhere", "", Some("t")),
            ("127.0.0.1:7000", "host", Some("t")),
            ("127.0.0.1:7000", "host:99999", Some("t")),
            ("127.0.0.1:7000", ":7", Some("t")),
            ("127.0.0.1:7000", "", None),
            ("127.0.0.1:7000", "", Some("")),
        ] {
            let e = FederationConfig::parse(listen, peers, token).unwrap_err();
            assert!(matches!(e, FederationError::Config { .. }), "{e}");
        }
    }
}
