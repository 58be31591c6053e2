//! The pool manager: accepts clients on a private Unix socket, checks who they
//! are, matches offers with demands and forwards segment descriptors.
//!
//! One thread accepts; per connection, one thread reads a batch of frames
//! and handles it under the state lock, 32 frames at a time, queuing replies
//! in the clients' outboxes, and (once the client has joined) one sender
//! thread writes that client's queued frames to its socket. A client that
//! pipelines many requests pays a few wake-ups and system calls per batch,
//! and a client that stops reading holds up no other client's thread: the
//! manager stops reading its requests until it reads its replies.
//! The manager keeps the descriptor of every offered segment, so a producer
//! need not stay responsive (or alive) for its objects to be delivered.
//! A connection thread waits for its client's frames a quarter lease at a
//! time and then looks at the client's heartbeat ([`lease`](super::lease));
//! a client without heartbeat or traffic for a whole lease is dropped as if
//! its connection had ended.
//!
//! Hostile or broken clients: before its JOIN is verified a connection may
//! send one small frame (the JOIN) and nothing else, gets no sender thread
//! and no state, and counts against [`Limits::pending`]; every request is
//! checked against [`limits`](crate::ipc::limits) and the client's quotas
//! ([`Limits`]) before it changes anything.

mod conns;
mod copies;
mod host;
mod outbox;

pub use crate::engine::{FaultPolicy, Limits, ProducerExit, DEFAULT_ACK_TIMEOUT, GROUP_WINDOW};

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tracing::{debug, info, warn};

use crate::config::{PoolConfig, UnknownAttributes};
use crate::events::{EventKind, EventMask};
use crate::schema::Schema;

use self::conns::Conns;
pub use self::copies::CopySlot;
use self::host::{Host, Outbox, Outgoing};
use self::outbox::Meters;
use super::conn::{send_frames, ConnError, Reader};
use super::endpoint::{
    bind_private, private_dir, random_hex, remove_stale_dirs, same_token, Endpoint, SOCKET_NAME,
};
use super::handshake::{self as hs, Capabilities, Versions};
use super::lease::Lease;
use super::limits::MAX_JOIN_FRAME;
use super::pool::Slot;
use super::shm::Segment;
use super::wire::{encode, Attributes, ErrorCode, Frame, Msg, SchemaRef, Stats};
use crate::engine::registry::{ClientId, NameRegistry, Registry};
use crate::engine::{Forwarded, GroupNote};

/// How long a new connection may take to send JOIN.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most frames of one client handled under one hold of the state lock.
const FRAMES_PER_LOCK: usize = 32;
/// How long a connection thread looks for its client's next request
/// before it sleeps.
const LOOK_FOR_REQUEST: Duration = Duration::from_micros(30);
/// How long a refusal may take to send before the connection just closes.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the acceptor pauses when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long queued frames may take to go out at shutdown before every
/// connection is cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub use crate::config::{ACK_TIMEOUT_ENV, KEEP_GROUP_RECORDS_ENV, POLICY_ENV};
/// Environment variable giving the client lease in milliseconds.
pub const LEASE_ENV: &str = "CDO_LEASE_MS";
/// Default client lease: a client whose heartbeat stops for this long is
/// dropped as dead (see [`lease`](crate::ipc::lease)).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Environment variable giving the largest accepted segment in bytes.
pub const MAX_SEGMENT_ENV: &str = "CDO_MAX_SEGMENT_BYTES";
/// Default largest accepted segment: 16 GiB.
pub const DEFAULT_MAX_SEGMENT: u64 = 16 << 30;
pub use crate::config::PRODUCER_EXIT_ENV;

/// How to run a pool manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Parent of the manager's private directory (default: `$XDG_RUNTIME_DIR`
    /// or the temporary directory).
    pub runtime_dir: Option<PathBuf>,
    /// The workflow token clients must present (default: 128 random bits).
    pub token: Option<String>,
    /// The only user id allowed to join (default: our effective uid).
    pub allowed_uid: Option<u32>,
    /// The pool's semantics, as an in-process pool takes them
    /// ([`crate::Pool::new`]): second offers of a name, attributes no
    /// schema knows, the schema files, the fault policy, the
    /// acknowledgement timeout, whether consumer groups keep their
    /// records and what happens to the offers of a producer that goes. The
    /// same YAML file ([`PoolConfig::from_file`]) and the same
    /// variables ([`PoolConfig::with_env`]) configure both deployments.
    pub pool: PoolConfig,
    /// A schema of user attributes given as it is, in place of the files
    /// that `pool.schemas` names (which are then not read), as
    /// [`crate::Pool::with_parts`] takes one. `None` (the default): the
    /// manager loads those files when it starts. A schema that declares no
    /// key lets user attributes pass as they are; built-in attributes are
    /// always type-checked.
    pub schema: Option<Arc<Schema>>,
    /// How long a client's heartbeat may stop before the client is
    /// dropped as dead, as if its connection had ended.
    pub lease: Duration,
    /// Largest shared segment an offer may bring (`BadSegment` beyond).
    pub max_segment_bytes: u64,
    /// Connection limits and per-client quotas.
    pub limits: Limits,
    /// The client protocols served, within [`Versions::SERVED`] (the
    /// default): a narrower range turns older or newer clients away
    /// with [`Msg::NoCommonVersion`].
    pub versions: Versions,
    /// The capabilities offered to clients that HELLO (default: every
    /// one this build knows, [`Capabilities::KNOWN`]).
    pub capabilities: Capabilities,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            runtime_dir: None,
            token: None,
            allowed_uid: None,
            pool: PoolConfig::default(),
            schema: None,
            lease: DEFAULT_LEASE,
            max_segment_bytes: DEFAULT_MAX_SEGMENT,
            limits: Limits::default(),
            versions: Versions::SERVED,
            capabilities: Capabilities::KNOWN,
        }
    }
}

impl ManagerConfig {
    /// The default configuration with [`POLICY_ENV`], [`ACK_TIMEOUT_ENV`],
    /// [`LEASE_ENV`], [`MAX_SEGMENT_ENV`], [`KEEP_GROUP_RECORDS_ENV`],
    /// [`PRODUCER_EXIT_ENV`] and the
    /// `CDO_MAX_*` variables of [`Limits`] applied.
    ///
    /// # Errors
    /// A message naming the variable whose value is malformed.
    pub fn from_env() -> Result<Self, String> {
        // The pool's own semantics are read as an in-process pool reads them.
        let pool = PoolConfig::default().with_vars(|key| std::env::var(key).ok())?;
        let mut config = ManagerConfig {
            pool,
            ..ManagerConfig::default()
        };
        if let Ok(v) = std::env::var(LEASE_ENV) {
            let ms: u64 = v.parse().map_err(|e| format!("{LEASE_ENV}={v:?}: {e}"))?;
            config.lease = Duration::from_millis(ms);
        }
        if let Ok(v) = std::env::var(MAX_SEGMENT_ENV) {
            config.max_segment_bytes = v
                .parse()
                .map_err(|e| format!("{MAX_SEGMENT_ENV}={v:?}: {e}"))?;
        }
        config.limits = config.limits.with_env()?;
        Ok(config)
    }
}

struct Shared {
    state: Mutex<Host>,
    stopping: AtomicBool,
    token: String,
    allowed_uid: u32,
    /// Length of every client's lease.
    lease: Duration,
    limits: Limits,
    meters: Arc<Meters>,
    /// Open connections, to bound them and shut them down.
    conns: Mutex<Conns>,
    /// Wakes the timer thread (new held operation, shutdown).
    tick: Condvar,
    /// The client protocols served.
    versions: Versions,
    /// The capabilities offered to clients that HELLO.
    capabilities: Capabilities,
    /// What the pool does when part of an operation fails.
    policy: FaultPolicy,
    /// The schema sent to clients that agreed to [`Capabilities::SCHEMA`].
    schema: Msg,
}

/// The schema message of a manager checking user attributes against
/// `schema`, and the capabilities it offers: without
/// [`Capabilities::SCHEMA`] when the schema does not fit in one frame (its
/// clients then leave user attributes to the manager's check at offer time,
/// as older clients do).
fn schema_message(
    schema: &Schema,
    unknown: UnknownAttributes,
    offered: Capabilities,
) -> (Msg, Capabilities) {
    let msg = Msg::Schema(SchemaRef::new(schema, unknown));
    let mut out = Vec::new();
    let frame = Frame { id: 0, msg };
    match encode(&frame, 0, &mut out) {
        Ok(()) => (frame.msg, offered),
        Err(e) => {
            warn!(error = %e, "the schema is not sent to clients");
            let caps = offered.bits() & !Capabilities::SCHEMA.bits();
            (frame.msg, Capabilities::from_bits(caps))
        }
    }
}

/// The schema `config` gives, or the one its pool's schema files make.
fn load_schema(config: &ManagerConfig) -> io::Result<Arc<Schema>> {
    if let Some(schema) = &config.schema {
        return Ok(schema.clone());
    }
    let mut schema = Schema::default();
    for path in &config.pool.schemas {
        schema
            .add_file(path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    }
    Ok(Arc::new(schema))
}

/// An event of this node's objects for the federation's client (the
/// mirror), handed to it in the manager's request path
/// ([`Control::on_mirror_events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorEvent {
    /// What happened, as the mirror's subscriptions asked.
    pub kind: EventKind,
    /// The object.
    pub name: String,
    /// For an offer of an object small enough: its attributes (`size`
    /// among them) and a copy of its bytes, read when it was offered.
    pub inline: Option<(Attributes, Vec<u8>)>,
    /// For an offer: the manager's identifier of the object on offer as
    /// `name` when the event was handed over (the newest version; the
    /// one `inline` holds), if one still was.
    pub object: Option<u64>,
    /// For a declare, seal or dispose: the attributes its event carries
    /// (a client tells them with the step).
    pub attrs: Option<Attributes>,
    /// The last record (or event) sent on the mirror's connection before
    /// this event ([`EventRef::event`](crate::ipc::wire::EventRef::event),
    /// [`GroupRecord::event`](crate::ipc::client::GroupRecord::event); 0:
    /// none): the mirror handles those first, to see everything in order.
    pub after: u64,
}

/// What a federation of pool managers needs of its local manager: to hear
/// of demands and requires nothing here can serve, to fail those that
/// another node could not serve either, to raise other nodes' events here
/// without those of its own mirroring, and to span consumer groups across
/// nodes. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Control(Arc<Shared>);

impl Control {
    /// Calls `hook` with the demanding client's id and the name of every
    /// later demand that finds nothing on offer here. The hook runs under
    /// the manager's lock and must not block; a second call replaces the
    /// first hook.
    pub fn on_unmet_demand(&self, hook: impl Fn(u64, &str) + Send + 'static) {
        lock(&self.0.state).set_unmet_hook(Box::new(hook));
    }

    /// Calls `hook` with the requiring client's id and the name of every
    /// later require of a name nothing here offers. The hook runs under
    /// the manager's lock and must not block; a second call replaces the
    /// first hook.
    pub fn on_unmet_require(&self, hook: impl Fn(u64, &str) + Send + 'static) {
        lock(&self.0.state).set_unmet_require_hook(Box::new(hook));
    }

    /// Fails every demand waiting for `name` with `code` and `text` (an
    /// object that another node offered and could not deliver).
    pub fn fail_demands(&self, name: &str, code: ErrorCode, text: &str) {
        let mut out = Outgoing::new();
        lock(&self.0.state).fail_demands(name, code, text, &mut out);
        deliver(out);
    }

    /// Makes client `cid` (the federation's own) the mirror: its
    /// operations on objects raise no events here (the copies it offers
    /// and withdraws, the demands it makes to export local offers), and
    /// events raised for other nodes ([`Control::raise_remote`]) skip it.
    pub fn set_mirror(&self, cid: u64) {
        lock(&self.0.state).set_mirror(cid);
    }

    /// Calls `hook` with every later event that the mirror's
    /// subscriptions match, in their order, instead of sending it to the
    /// mirror's connection; an offer of an object of at most `inline_max`
    /// bytes comes with a copy of its bytes, so that exporting it costs
    /// no demand. The mirror's records (and replies) still come on its
    /// connection; each event says which of them came before it
    /// ([`MirrorEvent::after`]).
    /// The hook runs under the manager's lock and must not block; a second
    /// call replaces the first hook.
    pub fn on_mirror_events(&self, inline_max: u64, hook: impl Fn(MirrorEvent) + Send + 'static) {
        lock(&self.0.state).set_mirror_hook(inline_max, Box::new(hook));
    }

    /// Calls `hook` with the lifecycle kinds (declare, seal, dispose) that
    /// this node's own subscribers take, those of every client but the
    /// mirror: at once, and again whenever they change. The hook runs
    /// under the manager's lock and must not block; a second call replaces
    /// the first hook.
    pub fn on_local_interest(&self, hook: impl Fn(EventMask) + Send + 'static) {
        lock(&self.0.state).set_local_interest_hook(Box::new(hook));
    }

    /// Offers a copy of `bytes` here under `name` with `attrs`, as the
    /// mirror's ([`Control::set_mirror`]) and in the manager's own shared
    /// memory: no event is raised, and the demands waiting for `name` are
    /// served before this returns. Withdrawn with
    /// [`Control::withdraw_copy`] (or when the mirror leaves).
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no joined client is the mirror; the
    /// errors of an offer ([`ErrorCode::DuplicateName`],
    /// [`ErrorCode::QuotaExceeded`], [`ErrorCode::BadAttributes`], ...),
    /// with their text.
    pub fn offer_copy(
        &self,
        name: &str,
        attrs: Attributes,
        bytes: &[u8],
    ) -> Result<(), (ErrorCode, String)> {
        self.in_request_path(|state, now, out| state.offer_copy(name, attrs, bytes, now, out))
    }

    /// Reserves `size` bytes of the manager's own shared memory for a copy
    /// that the caller writes in place (outside the manager's lock, as a
    /// remote read into it), then offers with [`Control::offer_reserved`].
    /// Dropped unoffered, the slot goes back to the pool.
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no joined client is the mirror;
    /// [`ErrorCode::BadSegment`] when no memory is left for it.
    pub fn reserve_copy(&self, size: u64) -> Result<CopySlot, (ErrorCode, String)> {
        let (slot, segment) = lock(&self.0.state).reserve_copy(size)?;
        Ok(CopySlot::new(self.clone(), slot, segment, size))
    }

    /// Offers the bytes written in `slot` under `name` with `attrs`, as
    /// [`Control::offer_copy`] offers its copy.
    ///
    /// # Errors
    /// As [`Control::offer_copy`]; the slot goes back to the pool.
    pub fn offer_reserved(
        &self,
        name: &str,
        attrs: Attributes,
        slot: CopySlot,
    ) -> Result<(), (ErrorCode, String)> {
        let (reserved, segment, size) = slot.into_parts();
        self.in_request_path(|state, now, out| {
            state.offer_reserved(name, attrs, reserved, &segment, size, now, out)
        })
    }

    /// Gives back a slot of [`Control::reserve_copy`] (what dropping it does).
    fn release_reserved(&self, slot: Slot, segment: &Arc<Segment>) {
        lock(&self.0.state).release_reserved(slot, segment);
    }

    /// Withdraws the copy offered as `name` by [`Control::offer_copy`]:
    /// gone from offer at once, its memory reused once the last view of
    /// it is released.
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no joined client is the mirror;
    /// [`ErrorCode::UnknownName`] when no such copy is on offer.
    pub fn withdraw_copy(&self, name: &str) -> Result<(), (ErrorCode, String)> {
        self.in_request_path(|state, now, out| state.withdraw_copy(name, now, out))
    }

    /// Runs `op` on the state as a connection thread runs a request: under
    /// the lock, then wakes the timer for an earlier deadline, and sends
    /// what `op` queued.
    fn in_request_path<R>(&self, op: impl FnOnce(&mut Host, Instant, &mut Outgoing) -> R) -> R {
        let mut out = Outgoing::new();
        let (done, sooner) = {
            let mut state = lock(&self.0.state);
            let before = state.next_deadline();
            let done = op(&mut state, Instant::now(), &mut out);
            let after = state.next_deadline();
            (done, after.is_some_and(|a| before.is_none_or(|b| a < b)))
        };
        if sooner {
            self.0.tick.notify_all();
        }
        deliver(out);
        done
    }

    /// Calls `hook` with every change of this node's consumer groups that
    /// other nodes must hear of ([`GroupNote`]): first with one for each
    /// group that has members now. The hook runs under the manager's lock
    /// and must not block; a second call replaces the first hook.
    pub fn on_group_note(&self, hook: impl Fn(GroupNote) + Send + 'static) {
        lock(&self.0.state).set_group_hook(Box::new(hook));
    }

    /// Makes federated node `node` a member of consumer group `group`
    /// (selecting `selector`) standing for its `members` members, or (0)
    /// no longer one: its undone records go to the group's other members.
    /// Returns the subscription through which the federation's client
    /// receives the records given to that node.
    ///
    /// # Errors
    /// No client is the mirror yet, or the group selects otherwise here.
    pub fn set_proxy(
        &self,
        group: &str,
        selector: &str,
        node: &str,
        members: u32,
    ) -> Result<Option<u64>, String> {
        let mut out = Outgoing::new();
        let sub = lock(&self.0.state).set_proxy(group, selector, node, members, &mut out);
        deliver(out);
        sub
    }

    /// Finishes the record given to a proxy as delivery `event` (its node
    /// reported it done), in order with [`Control::set_proxy`].
    pub fn finish_proxy_record(&self, event: u64) {
        let mut out = Outgoing::new();
        lock(&self.0.state).finish_proxy_record(event, &mut out);
        deliver(out);
    }

    /// Gives the object on offer here as `name` to a local member of
    /// `group` as the record that node `node` forwarded (its delivery
    /// `event` there) to this node's members of `epoch`
    /// ([`GroupNote::Members`]); a [`GroupNote::Done`] follows once the
    /// member is done. False when the group has had no local member since
    /// then, or `name` is not on offer.
    pub fn route_forwarded(
        &self,
        group: &str,
        name: &str,
        node: &str,
        event: u64,
        epoch: u64,
    ) -> bool {
        let mut out = Outgoing::new();
        let from = Forwarded {
            node: node.into(),
            event,
        };
        let routed = lock(&self.0.state).route_forwarded(group, name, from, epoch, &mut out);
        deliver(out);
        routed
    }

    /// The manager's fault policy ([`PoolConfig::policy`] of [`ManagerConfig::pool`]), which a
    /// federation follows for objects of nodes it lost.
    pub fn policy(&self) -> FaultPolicy {
        self.0.policy
    }

    /// The manager's identifier of the object on offer here as `name`:
    /// its newest version, whoever offered it. Identifiers grow with
    /// every offer, so a newer version has a greater one.
    pub fn offered_object(&self, name: &str) -> Option<u64> {
        lock(&self.0.state).offered_object(name)
    }

    /// Raises the events of `kind` on `name`, an object of federated node
    /// `node` with attributes `attrs`, for this manager's subscribers
    /// whose selector matches ([`EventRef::node`](crate::ipc::wire::EventRef::node)
    /// names the node). No operation waits for their acknowledgement.
    pub fn raise_remote(&self, kind: EventKind, name: &str, attrs: &Attributes, node: &str) {
        let mut out = Outgoing::new();
        lock(&self.0.state).raise_remote(kind, name, attrs, node, &mut out);
        deliver(out);
    }
}

/// A running pool manager; dropping it shuts it down.
pub struct ManagerHandle {
    endpoint: Endpoint,
    dir: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

/// Starts a pool manager with the default [`NameRegistry`].
pub fn start(config: ManagerConfig) -> io::Result<ManagerHandle> {
    let registry = NameRegistry::new(config.pool.duplicates);
    start_with_registry(config, Box::new(registry))
}

/// Starts a pool manager that keeps its offers in `registry`.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a zero lease or protocol versions
/// outside [`Versions::SERVED`]; the errors of creating the private
/// directory and binding the socket.
pub fn start_with_registry(
    config: ManagerConfig,
    registry: Box<dyn Registry>,
) -> io::Result<ManagerHandle> {
    if config.lease.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the client lease must be longer than zero",
        ));
    }
    if !config.versions.within(Versions::SERVED) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot serve {}: this build serves {}",
                config.versions,
                Versions::SERVED
            ),
        ));
    }
    let parent = config
        .runtime_dir
        .clone()
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let token = match &config.token {
        Some(t) => t.clone(),
        None => random_hex(16)?,
    };
    // Before the socket exists: nothing to clean up if it fails.
    let meters = Arc::new(Meters::default());
    let schema = load_schema(&config)?;
    let host = Host::new(registry, &config, schema.clone(), meters.clone())?;
    raise_descriptor_limit();
    remove_stale_dirs(&parent);
    let dir = private_dir(&parent)?;
    let socket = dir.join(SOCKET_NAME);
    let listener = match bind_private(&socket) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    };
    let allowed_uid = config
        .allowed_uid
        .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let limits = config.limits;
    let (schema, capabilities) =
        schema_message(&schema, config.pool.unknown_attributes, config.capabilities);
    let shared = Arc::new(Shared {
        lease: config.lease,
        state: Mutex::new(host),
        stopping: AtomicBool::new(false),
        token: token.clone(),
        allowed_uid,
        limits,
        meters,
        conns: Mutex::new(Conns::default()),
        tick: Condvar::new(),
        versions: config.versions,
        capabilities,
        policy: config.pool.policy,
        schema,
    });
    let ticker = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("cdo-pm-timer".into())
            .spawn(move || expire_loop(&shared))?
    };
    let acceptor = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("cdo-pm-accept".into())
            .spawn(move || accept_loop(listener, shared))?
    };
    info!(socket = %socket.display(), "pool manager listening");
    Ok(ManagerHandle {
        endpoint: Endpoint { socket, token },
        dir,
        shared,
        acceptor: Some(acceptor),
        ticker: Some(ticker),
    })
}

/// Raises this process's soft limit of open descriptors to its hard limit:
/// every client costs a few, every offered segment one.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => debug!(from = soft, to = hard, "raised the descriptor limit"),
            Err(e) => warn!(error = %e, "cannot raise the descriptor limit"),
        },
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the descriptor limit"),
    }
}

/// Releases held operations whose acknowledgements are overdue; sleeps
/// until the next deadline (or a nudge after a new hold).
fn expire_loop(shared: &Shared) {
    let mut state = lock(&shared.state);
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut out = Outgoing::new();
        state.expire(std::time::Instant::now(), &mut out);
        if !out.is_empty() {
            drop(state);
            deliver(out);
            state = lock(&shared.state);
            continue;
        }
        // Woken by `nudge` after a new hold, or at the deadline; at most a
        // second apart so that shutdown is noticed.
        let wait = state.next_deadline().map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_secs(1))
        });
        state = shared
            .tick
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

impl ManagerHandle {
    /// Where and how clients join.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The manager's private directory (removed at shutdown).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manager's counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.state).stats()
    }

    /// A handle on this manager's demands for a federation of managers
    /// (see [`federation`](crate::ipc::federation)).
    pub fn control(&self) -> Control {
        Control(self.shared.clone())
    }

    /// Open connections, and how many of them have not joined yet.
    pub fn connections(&self) -> (usize, usize) {
        lock(&self.shared.conns).counts()
    }

    /// Stops accepting, disconnects every client, closes every descriptor and
    /// removes the socket and its directory.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor; it then shuts every connection down and joins.
        let _ = UnixStream::connect(&self.endpoint.socket);
        let _ = acceptor.join();
        self.shared.tick.notify_all();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        let _ = std::fs::remove_file(&self.endpoint.socket);
        let _ = std::fs::remove_dir(&self.dir);
        info!("pool manager stopped");
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for sock in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    // Out of descriptors: the others go on being served;
                    // pending connections wait in the backlog meanwhile.
                    warn!(error = %e, "accept failed; pausing");
                    std::thread::sleep(ACCEPT_BACKOFF);
                } else {
                    warn!(error = %e, "accept failed");
                }
                continue;
            }
        };
        threads.retain(|t| !t.is_finished());
        let clone = match sock.try_clone() {
            Ok(clone) => clone,
            Err(e) => {
                warn!(error = %e, "cannot track a connection");
                continue;
            }
        };
        let Some(conn) = lock(&shared.conns).admit(clone, &shared.limits) else {
            warn!(
                limit = shared.limits.connections,
                "too many connections; closing a new one"
            );
            continue;
        };
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("cdo-pm-conn-{conn}"))
            .spawn(move || {
                serve(&shared2, sock, conn);
                lock(&shared2.conns).remove(conn);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                warn!(error = %e, "cannot spawn a connection thread");
                lock(&shared.conns).remove(conn);
            }
        }
    }
    let mut out = Outgoing::new();
    lock(&shared.state).shut_down(&mut out);
    deliver(out);
    // Ending the read side ends each connection thread, which lets its
    // sender send what is queued (the shutdown errors above) and stop; a
    // client that does not read it within the grace is cut off.
    lock(&shared.conns).shutdown_all(std::net::Shutdown::Read);
    let grace = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < grace && threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    lock(&shared.conns).shutdown_all(std::net::Shutdown::Both);
    for t in threads {
        let _ = t.join();
    }
}

/// Queues frames in their outboxes (one lock for each run of frames to the
/// same client), then flushes each outbox once.
fn deliver(out: Outgoing) {
    let mut touched: Vec<Outbox> = Vec::new();
    let mut frames = out.into_iter().peekable();
    while let Some((outbox, frame, fd)) = frames.next() {
        let run = std::iter::once((frame, fd)).chain(std::iter::from_fn(|| {
            frames
                .next_if(|(o, _, _)| Arc::ptr_eq(o, &outbox))
                .map(|(_, frame, fd)| (frame, fd))
        }));
        outbox.queue(run);
        if !touched.iter().any(|t| Arc::ptr_eq(t, &outbox)) {
            touched.push(outbox);
        }
    }
    for outbox in touched {
        outbox.flush();
    }
}

/// Serves connection `conn` until it ends: its HELLO and JOIN first, with
/// a small frame limit and no descriptors; then, once joined, its
/// requests.
fn serve(shared: &Shared, sock: UnixStream, conn: u64) {
    let mut reader = Reader::with_limits(sock, MAX_JOIN_FRAME, 0);
    let (joined, caps) = match handshake(shared, &mut reader, conn) {
        Ok(joined) => joined,
        Err(Unjoined::Refused(reason)) => {
            warn!(%reason, "client refused");
            let msg = Msg::Refused { reason };
            return send_unjoined(reader.socket(), Frame { id: 0, msg });
        }
        Err(Unjoined::NoCommonVersion { id, theirs }) => {
            info!(%theirs, served = %shared.versions, "client refused: no common protocol version");
            let msg = Msg::NoCommonVersion {
                theirs: shared.versions,
            };
            return send_unjoined(reader.socket(), Frame { id, msg });
        }
    };
    let (cid, outbox, sender, lease) = joined;
    reader.lift_limits();
    receive(shared, reader, cid, &outbox, lease, caps);
    outbox.close();
    let _ = sender.join();
}

/// Sends `frame` to a connection that is not joined (it has no outbox),
/// without waiting long for it.
fn send_unjoined(sock: &UnixStream, frame: Frame) {
    let mut buf = Vec::new();
    if encode(&frame, 0, &mut buf).is_ok() {
        let _ = sock.set_write_timeout(Some(REFUSAL_TIMEOUT));
        let _ = send_frames(sock, &buf, &[]);
    }
}

/// Waits until `outbox` is below its high-water mark, a quarter lease at a
/// time, looking at the client's heartbeat in between: a slow client keeps
/// its connection, a dead one does not.
///
/// # Errors
/// The client's lease expired (its connection is then shut down).
fn wait_for_room(
    shared: &Shared,
    reader: &Reader,
    outbox: &Outbox,
    lease: &mut Lease,
) -> Result<(), ConnError> {
    while !outbox.wait_for_room(Lease::tick(shared.lease)) {
        if lease.expired(Instant::now()) {
            return Err(lease_expired(shared, reader));
        }
    }
    Ok(())
}

/// Drops a client whose lease expired: shuts its connection down (which
/// ends a send blocked on it, too) and says why.
fn lease_expired(shared: &Shared, reader: &Reader) -> ConnError {
    let _ = reader.socket().shutdown(std::net::Shutdown::Both);
    let lease = shared.lease;
    ConnError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no heartbeat within the lease of {lease:?}; dropped as dead"),
    ))
}

/// Handles the requests of joined client `cid`, which agreed on `caps`,
/// until the connection ends.
fn receive(
    shared: &Shared,
    mut reader: Reader,
    cid: ClientId,
    outbox: &Outbox,
    mut lease: Lease,
    caps: Capabilities,
) {
    let mut batch = Vec::new();
    let end = loop {
        // Frames that came with JOIN (or with the last read) first, then read.
        let failed = loop {
            match reader.next_buffered() {
                Ok(Some((f, _))) if !caps.contains(hs::required(&f.msg)) => {
                    let need = hs::required(&f.msg);
                    batch.push(Err((f.id, format!("capability {need} not agreed"))));
                }
                Ok(Some(f)) => batch.push(Ok(f)),
                Ok(None) => break None,
                // A whole frame that did not decode: an error reply, and on.
                Err(ConnError::Refused {
                    id: Some(id),
                    error,
                }) if id != 0 => {
                    debug!(client = cid, id, %error, "request refused");
                    batch.push(Err((id, format!("malformed request: {error}"))));
                }
                Err(e) => break Some(e),
            }
        };
        // In chunks: the lock is shared with the other clients' threads,
        // and replies sent early let a pipelining client start on them
        // while the rest of its batch is handled. A client that does not
        // read its replies is not served until it does.
        let mut frames = batch.drain(..).peekable();
        let mut waited = Ok(());
        while frames.peek().is_some() {
            waited = wait_for_room(shared, &reader, outbox, &mut lease);
            if waited.is_err() {
                break;
            }
            // One reply per request, mostly: room for them from the start
            // rather than grown (and copied) five times per chunk.
            let mut out = Outgoing::with_capacity(FRAMES_PER_LOCK);
            let held = {
                let mut state = lock(&shared.state);
                // Every acknowledgement hold has the same timeout, so the
                // timer only needs waking when the first one comes, or when
                // a withdrawal waits for a lifetime that ends sooner.
                let before = state.next_deadline();
                // One reading of the clock for the chunk: its requests are
                // handled within microseconds of each other.
                let now = Instant::now();
                for request in frames.by_ref().take(FRAMES_PER_LOCK) {
                    match request {
                        Ok((frame, fd)) => state.handle(cid, frame, fd, now, &mut out),
                        Err((id, text)) => {
                            let code = ErrorCode::Protocol;
                            let msg = Msg::Error { code, text };
                            out.push((outbox.clone(), Frame { id, msg }, None));
                        }
                    }
                }
                let after = state.next_deadline();
                after.is_some_and(|a| before.is_none_or(|b| a < b))
            };
            if held {
                shared.tick.notify_all();
            }
            deliver(out);
        }
        if let Some(e) = failed.or(waited.err()) {
            break e;
        }
        if let Err(e) = wait_for_room(shared, &reader, outbox, &mut lease) {
            break e;
        }
        // Waits a quarter lease at most (the socket's read timeout), then
        // looks at the client's heartbeat.
        match reader.fill_after_look(LOOK_FOR_REQUEST) {
            Ok(()) => lease.renew(Instant::now()),
            Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if lease.expired(Instant::now()) {
                    break lease_expired(shared, &reader);
                }
            }
            Err(e) => break e,
        }
    };
    match end {
        ConnError::Closed => {}
        e => warn!(client = cid, error = %e, "closing connection"),
    }
    let mut out = Outgoing::new();
    lock(&shared.state).disconnect(cid, &mut out);
    deliver(out);
}

/// Why a connection was not joined.
enum Unjoined {
    /// Refused, for this reason.
    Refused(String),
    /// Its HELLO (request `id`) shares no version with ours; it speaks
    /// `theirs`.
    NoCommonVersion {
        /// The HELLO's request id.
        id: u64,
        /// The client's versions.
        theirs: Versions,
    },
}

impl From<String> for Unjoined {
    fn from(reason: String) -> Self {
        Unjoined::Refused(reason)
    }
}

/// The next whole frame of a connection that is not joined, all of it
/// before `deadline` (however slowly it trickles in); `what` names the
/// frame expected, for the refusal.
fn next_unjoined(
    reader: &mut Reader,
    deadline: Instant,
    what: &str,
) -> Result<(Frame, Option<std::os::fd::OwnedFd>), String> {
    loop {
        match reader.next_buffered() {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("no {what} within {JOIN_TIMEOUT:?}"));
                }
                let _ = reader.socket().set_read_timeout(Some(left));
                reader.fill().map_err(|e| format!("no {what}: {e}"))?;
            }
            Err(e) => return Err(format!("bad {what}: {e}")),
        }
    }
}

/// Answers a client's HELLO (request `id`): AGREED, sent at once, with
/// the version its JOIN must carry and the capabilities agreed.
fn agree(
    shared: &Shared,
    reader: &Reader,
    id: u64,
    hello: &hs::Hello,
) -> Result<hs::Agreed, Unjoined> {
    hs::check(hello).map_err(|e| format!("bad HELLO: {e}"))?;
    let agreed = hs::negotiate(shared.versions, shared.capabilities, hello).map_err(|_| {
        Unjoined::NoCommonVersion {
            id,
            theirs: hello.versions,
        }
    })?;
    let mut buf = Vec::new();
    let msg = Msg::Agreed(agreed.clone());
    encode(&Frame { id, msg }, 0, &mut buf).map_err(|e| format!("cannot answer HELLO: {e}"))?;
    send_frames(reader.socket(), &buf, &[]).map_err(|e| format!("cannot answer HELLO: {e}"))?;
    Ok(agreed)
}

/// What [`handshake`] returns of a joined client: its id, outbox, sender
/// thread and lease.
type Joined = (ClientId, Outbox, JoinHandle<()>, Lease);

/// Checks the peer's uid, then its HELLO if it sends one, then its JOIN;
/// once all are good, starts the client's sender and registers it.
/// Returns the client and the capabilities agreed, or why it is refused.
fn handshake(
    shared: &Shared,
    reader: &mut Reader,
    conn: u64,
) -> Result<(Joined, Capabilities), Unjoined> {
    let cred =
        getsockopt(reader.socket(), PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if cred.uid() != shared.allowed_uid {
        return Err(format!("uid {} is not allowed (pid {})", cred.uid(), cred.pid()).into());
    }
    // HELLO and JOIN, all of them within the timeout.
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let (mut frame, mut fd) = next_unjoined(reader, deadline, "HELLO or JOIN")?;
    let mut agreed = None;
    if let Msg::Hello(hello) = &frame.msg {
        if fd.is_some() {
            return Err("descriptor sent with HELLO".to_owned().into());
        }
        agreed = Some(agree(shared, reader, frame.id, hello)?);
        (frame, fd) = next_unjoined(reader, deadline, "JOIN")?;
    }
    let _ = reader
        .socket()
        .set_read_timeout(Some(Lease::tick(shared.lease)));
    super::limits::check_request(&frame.msg).map_err(|(_, text)| format!("bad JOIN: {text}"))?;
    let Msg::Join {
        component,
        token,
        version,
    } = frame.msg
    else {
        let expected = match agreed {
            Some(_) => "the message after HELLO is not JOIN",
            None => "first message is not HELLO or JOIN",
        };
        return Err(expected.to_owned().into());
    };
    if fd.is_some() {
        return Err("descriptor sent with JOIN".to_owned().into());
    }
    let caps = match &agreed {
        Some(a) if a.version != version => {
            return Err(format!(
                "{component}: JOIN with protocol {version} after agreeing on {}",
                a.version
            )
            .into())
        }
        Some(a) => a.capabilities,
        None if !shared.versions.contains(version) => {
            return Err(format!(
                "{component}: protocol version {version}, this manager serves {}",
                shared.versions
            )
            .into())
        }
        None => Capabilities::NONE,
    };
    if !same_token(&token, &shared.token) {
        return Err(format!("{component} (pid {}): wrong workflow token", cred.pid()).into());
    }
    if shared.stopping.load(Ordering::SeqCst) {
        return Err("pool manager shutting down".to_owned().into());
    }
    if !lock(&shared.conns).joined(conn) {
        return Err(format!("{component}: connection closed to make room").into());
    }
    let sock = reader.socket();
    let (queue_side, send_side) = match (sock.try_clone(), sock.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(format!("cannot clone the connection: {e}").into()),
    };
    let outbox: Outbox = outbox::Outbox::new(
        queue_side,
        shared.limits.queued_bytes,
        shared.meters.clone(),
    );
    let sender = {
        let outbox = outbox.clone();
        std::thread::Builder::new()
            .name("cdo-pm-send".into())
            .spawn(move || outbox.run(&send_side))
            .map_err(|e| format!("cannot start a sender thread: {e}"))?
    };
    let (lease, page) = Lease::new(shared.lease).map_err(|e| format!("no lease page: {e}"))?;
    let mut events = Outgoing::new();
    let (cid, interest) = {
        let mut state = lock(&shared.state);
        let cid = state.join(component, outbox.clone(), &mut events);
        if caps.contains(Capabilities::OWN_REQUIRES) {
            state.hold_own_requires(cid);
        }
        (cid, state.interest_page())
    };
    let welcome = Frame {
        id: frame.id,
        msg: Msg::Welcome {
            client_id: cid,
            lease_ms: shared.lease.as_millis() as u64,
        },
    };
    let schema = caps.contains(Capabilities::SCHEMA).then(|| Frame {
        id: welcome.id,
        msg: shared.schema.clone(),
    });
    events.push((outbox.clone(), welcome, Some(Arc::new(page))));
    if let Some(schema) = schema {
        events.push((outbox.clone(), schema, None));
    }
    if caps.contains(Capabilities::LIFECYCLE) {
        let page = Frame {
            id: frame.id,
            msg: Msg::InterestPage,
        };
        events.push((outbox.clone(), page, Some(interest)));
    }
    deliver(events);
    Ok(((cid, outbox, sender, lease), caps))
}
