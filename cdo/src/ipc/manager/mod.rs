//! The pool manager: accepts clients on a private Unix socket, checks who they
//! are, matches offers with demands and forwards segment descriptors.
//!
//! One thread accepts; per client, one thread reads a batch of frames and
//! handles it under the state lock, 32 frames at a time, queuing replies in
//! the clients' outboxes, and one sender thread writes that client's queued
//! frames to its socket. A client that pipelines many requests pays a few
//! wake-ups and system calls per batch, and a client that stops reading
//! holds up no other client's thread (its socket's write timeout drops it).
//! The manager keeps the descriptor of every offered segment, so a producer
//! need not stay responsive (or alive) for its objects to be delivered.
//! A connection thread waits for its client's frames a quarter lease at a
//! time and then looks at the client's heartbeat ([`lease`](super::lease));
//! a client without heartbeat or traffic for a whole lease is dropped as if
//! its connection had ended.

mod outbox;
mod state;
mod subs;

pub use subs::GROUP_WINDOW;

use std::collections::HashMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tracing::{info, warn};

use crate::config::{DuplicateOffers, UnknownAttributes};
use crate::schema::Schema;

use self::state::{Outbox, Outgoing, State};
use super::conn::{ConnError, Reader};
use super::endpoint::{bind_private, private_dir, random_hex, same_token, Endpoint, SOCKET_NAME};
use super::lease::Lease;
use super::registry::{ClientId, NameRegistry, Registry};
use super::wire::{Frame, Msg, Stats, PROTOCOL_VERSION};

/// How long a new connection may take to send JOIN.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most frames of one client handled under one hold of the state lock.
const FRAMES_PER_LOCK: usize = 32;
/// How long a send to a client may block before the client is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the pool does when part of an operation fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultPolicy {
    /// Report the first failure: an operation whose acknowledged
    /// subscribers do not answer in time fails with `AckTimeout` (a
    /// demanded view is taken back), and a demand of an object whose
    /// producer died fails with `ProducerDied`.
    #[default]
    FailFast,
    /// Carry on: an operation whose acknowledgements time out completes
    /// anyway (logged), and a demand of an object whose producer died waits
    /// for another source (a librarian, a restarted producer) until the
    /// client's own timeout.
    BestEffort,
}

impl std::str::FromStr for FaultPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail-fast" => Ok(FaultPolicy::FailFast),
            "best-effort" => Ok(FaultPolicy::BestEffort),
            other => Err(format!(
                "unknown fault policy {other:?} (expected fail-fast or best-effort)"
            )),
        }
    }
}

/// Environment variable naming the [`FaultPolicy`] (`fail-fast`, `best-effort`).
pub const POLICY_ENV: &str = "CDO_FAULT_POLICY";
/// Environment variable giving the acknowledgement timeout in milliseconds.
pub const ACK_TIMEOUT_ENV: &str = "CDO_ACK_TIMEOUT_MS";
/// Default acknowledgement timeout.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable giving the client lease in milliseconds.
pub const LEASE_ENV: &str = "CDO_LEASE_MS";
/// Default client lease: a client whose heartbeat stops for this long is
/// dropped as dead (see [`lease`](crate::ipc::lease)).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Environment variable giving the largest accepted segment in bytes.
pub const MAX_SEGMENT_ENV: &str = "CDO_MAX_SEGMENT_BYTES";
/// Default largest accepted segment: 16 GiB.
pub const DEFAULT_MAX_SEGMENT: u64 = 16 << 30;

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
    /// What to do when acknowledgements time out or a producer died.
    pub policy: FaultPolicy,
    /// How long an operation waits for its acknowledged subscribers.
    pub ack_timeout: Duration,
    /// Schema of user attributes (`ns.key`); without one they pass as they
    /// are. Built-in attributes are always type-checked.
    pub schema: Option<Arc<Schema>>,
    /// What happens to user attributes the schema does not know.
    pub unknown_attributes: UnknownAttributes,
    /// What a second offer of a name on offer (by another client) does:
    /// refused with `DuplicateName`, or kept as a newer version that
    /// demands get until it is withdrawn (the older one stays valid for
    /// those who hold it and comes back into view).
    pub duplicates: DuplicateOffers,
    /// How long a client's heartbeat may stop before the client is
    /// dropped as dead, as if its connection had ended.
    pub lease: Duration,
    /// Largest shared segment an offer may bring (`BadSegment` beyond).
    pub max_segment_bytes: u64,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            runtime_dir: None,
            token: None,
            allowed_uid: None,
            policy: FaultPolicy::default(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            schema: None,
            unknown_attributes: UnknownAttributes::default(),
            duplicates: DuplicateOffers::default(),
            lease: DEFAULT_LEASE,
            max_segment_bytes: DEFAULT_MAX_SEGMENT,
        }
    }
}

impl ManagerConfig {
    /// The default configuration with [`POLICY_ENV`], [`ACK_TIMEOUT_ENV`],
    /// [`LEASE_ENV`] and [`MAX_SEGMENT_ENV`] applied.
    ///
    /// # Errors
    /// A message naming the variable whose value is malformed.
    pub fn from_env() -> Result<Self, String> {
        let mut config = ManagerConfig::default();
        if let Ok(v) = std::env::var(POLICY_ENV) {
            config.policy = v.parse().map_err(|e| format!("{POLICY_ENV}: {e}"))?;
        }
        if let Ok(v) = std::env::var(ACK_TIMEOUT_ENV) {
            let ms: u64 = v
                .parse()
                .map_err(|e| format!("{ACK_TIMEOUT_ENV}={v:?}: {e}"))?;
            config.ack_timeout = Duration::from_millis(ms);
        }
        if let Ok(v) = std::env::var(LEASE_ENV) {
            let ms: u64 = v.parse().map_err(|e| format!("{LEASE_ENV}={v:?}: {e}"))?;
            config.lease = Duration::from_millis(ms);
        }
        if let Ok(v) = std::env::var(MAX_SEGMENT_ENV) {
            config.max_segment_bytes = v
                .parse()
                .map_err(|e| format!("{MAX_SEGMENT_ENV}={v:?}: {e}"))?;
        }
        Ok(config)
    }
}

struct Shared {
    state: Mutex<State>,
    stopping: AtomicBool,
    token: String,
    allowed_uid: u32,
    /// Length of every client's lease.
    lease: Duration,
    /// Live connections, to shut them down.
    conns: Mutex<HashMap<u64, UnixStream>>,
    /// Wakes the timer thread (new held operation, shutdown).
    tick: Condvar,
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
    let registry = NameRegistry::new(config.duplicates);
    start_with_registry(config, Box::new(registry))
}

/// Starts a pool manager that keeps its offers in `registry`.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a zero lease; the errors of creating
/// the private directory and binding the socket.
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
    let parent = config
        .runtime_dir
        .clone()
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let token = match &config.token {
        Some(t) => t.clone(),
        None => random_hex(16)?,
    };
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
    let shared = Arc::new(Shared {
        lease: config.lease,
        state: Mutex::new(State::new(registry, config)),
        stopping: AtomicBool::new(false),
        token: token.clone(),
        allowed_uid,
        conns: Mutex::new(HashMap::new()),
        tick: Condvar::new(),
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
    let mut next_conn = 0u64;
    for sock in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        threads.retain(|t| !t.is_finished());
        next_conn += 1;
        let conn = next_conn;
        match sock.try_clone() {
            Ok(clone) => {
                lock(&shared.conns).insert(conn, clone);
            }
            Err(e) => {
                warn!(error = %e, "cannot track connection");
                continue;
            }
        }
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("cdo-pm-conn-{conn}"))
            .spawn(move || {
                serve(&shared2, sock);
                lock(&shared2.conns).remove(&conn);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                warn!(error = %e, "cannot spawn a connection thread");
                lock(&shared.conns).remove(&conn);
            }
        }
    }
    let mut out = Outgoing::new();
    lock(&shared.state).shut_down(&mut out);
    deliver(out);
    // Ending the read side ends each connection thread, which lets its
    // sender send what is queued (the shutdown errors above) and stop.
    for sock in lock(&shared.conns).values() {
        let _ = sock.shutdown(std::net::Shutdown::Read);
    }
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

/// Serves one connection until it ends.
fn serve(shared: &Shared, sock: UnixStream) {
    let (queue_side, send_side) = match (sock.try_clone(), sock.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return warn!(error = %e, "cannot clone a connection"),
    };
    let _ = send_side.set_write_timeout(Some(SEND_TIMEOUT));
    let outbox: Outbox = outbox::Outbox::new(queue_side);
    let sender = {
        let outbox = outbox.clone();
        std::thread::Builder::new()
            .name("cdo-pm-send".into())
            .spawn(move || outbox.run(&send_side))
    };
    let sender = match sender {
        Ok(t) => t,
        Err(e) => return warn!(error = %e, "cannot start a sender thread"),
    };
    receive(shared, Reader::new(sock), &outbox);
    outbox.close();
    let _ = sender.join();
}

/// Joins the client, then handles its requests until the connection ends.
fn receive(shared: &Shared, mut reader: Reader, outbox: &Outbox) {
    let (cid, mut lease) = match handshake(shared, &mut reader, outbox) {
        Ok(joined) => joined,
        Err(reason) => {
            warn!(%reason, "client refused");
            let refused = Frame {
                id: 0,
                msg: Msg::Refused { reason },
            };
            outbox.queue([(refused, None)]);
            return outbox.flush();
        }
    };
    let mut batch = Vec::new();
    let end = loop {
        // Frames that came with JOIN (or with the last read) first, then read.
        let failed = loop {
            match reader.next_buffered() {
                Ok(Some(f)) => batch.push(f),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        // In chunks: the lock is shared with the other clients' threads,
        // and replies sent early let a pipelining client start on them
        // while the rest of its batch is handled.
        let mut frames = batch.drain(..).peekable();
        while frames.peek().is_some() {
            let mut out = Outgoing::new();
            let held = {
                let mut state = lock(&shared.state);
                // Every hold has the same timeout, so the timer only needs
                // waking when the first one comes.
                let idle = !state.holds_any();
                for (frame, fd) in frames.by_ref().take(FRAMES_PER_LOCK) {
                    state.handle(cid, frame, fd, &mut out);
                }
                idle && state.holds_any()
            };
            if held {
                shared.tick.notify_all();
            }
            deliver(out);
        }
        if let Some(e) = failed {
            break e;
        }
        // Waits a quarter lease at most (the socket's read timeout), then
        // looks at the client's heartbeat.
        match reader.fill() {
            Ok(()) => lease.renew(Instant::now()),
            Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if lease.expired(Instant::now()) {
                    // Ends a send blocked on a stopped client, too.
                    let _ = reader.socket().shutdown(std::net::Shutdown::Both);
                    let lease = shared.lease;
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no heartbeat within the lease of {lease:?}; dropped as dead"),
                    );
                    break ConnError::Io(e);
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

/// Checks the peer's uid, then its JOIN; returns its id and lease, or why it
/// is refused.
fn handshake(
    shared: &Shared,
    reader: &mut Reader,
    outbox: &Outbox,
) -> Result<(ClientId, Lease), String> {
    let cred =
        getsockopt(reader.socket(), PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if cred.uid() != shared.allowed_uid {
        return Err(format!(
            "uid {} is not allowed (pid {})",
            cred.uid(),
            cred.pid()
        ));
    }
    let _ = reader.socket().set_read_timeout(Some(JOIN_TIMEOUT));
    let (frame, fd) = loop {
        match reader.next_buffered() {
            Ok(Some(f)) => break f,
            Ok(None) => reader.fill().map_err(|e| format!("no JOIN: {e}"))?,
            Err(e) => return Err(format!("bad JOIN: {e}")),
        }
    };
    let _ = reader
        .socket()
        .set_read_timeout(Some(Lease::tick(shared.lease)));
    let Msg::Join {
        component,
        token,
        version,
    } = frame.msg
    else {
        return Err("first message is not JOIN".into());
    };
    if fd.is_some() {
        return Err("descriptor sent with JOIN".into());
    }
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "{component}: protocol version {version}, this manager speaks {PROTOCOL_VERSION}"
        ));
    }
    if !same_token(&token, &shared.token) {
        return Err(format!(
            "{component} (pid {}): wrong workflow token",
            cred.pid()
        ));
    }
    if shared.stopping.load(Ordering::SeqCst) {
        return Err("pool manager shutting down".into());
    }
    let (lease, page) = Lease::new(shared.lease).map_err(|e| format!("no lease page: {e}"))?;
    let mut events = Outgoing::new();
    let cid = lock(&shared.state).join(component, outbox.clone(), &mut events);
    let welcome = Frame {
        id: frame.id,
        msg: Msg::Welcome {
            client_id: cid,
            lease_ms: shared.lease.as_millis() as u64,
        },
    };
    events.push((outbox.clone(), welcome, Some(Arc::new(page))));
    deliver(events);
    Ok((cid, lease))
}
