//! The federation's threads: one accepts peers, one per configured peer
//! dials it (again after a link ends), one per link reads its messages,
//! and one, the node, owns the local client, the fabric transports and all
//! state, and handles everything in turn.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{unbounded, Receiver, Sender};
use mamba_fabric::{ExposedOwned, RegionDescriptor, StableBuffer, Transport};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tracing::{debug, info, warn};

use super::auth;
use super::link::{encode, read_msg, write_frame, PeerMsg};
use super::{FederationConfig, FederationError, FederationStatus, REFUSALS_KEPT};
use crate::engine::GroupNote;
use crate::events::{EventKind, EventMask};
use crate::ipc::client::{Client, ClientConfig, ClientError, GroupRecord, Notice, Reply, View};
use crate::ipc::interest::LIFECYCLE_KINDS;
use crate::ipc::manager::{Control, FaultPolicy, ManagerHandle, MirrorEvent};
use crate::ipc::wire::{Attributes, ErrorCode, RequestId};

/// How long the serving thread without exposed memory waits for a command
/// before it looks at the stop flag again.
const SERVE_IDLE: Duration = Duration::from_millis(100);
/// Longest wait of an idle node (for its inputs and its manager's
/// notices, which both wake it) before it looks at its stop flag and
/// overdue withdrawals.
const IDLE_WAIT_MS: u16 = 100;
/// How long an idle node keeps looking for input before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);
/// Pause of the acceptor between polls, and of a dialler between tries.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
const DIAL_RETRY: Duration = Duration::from_millis(200);
/// How long the federation's own demand of a freshly offered object may
/// wait (it is on offer unless withdrawn at once), and how long it waits
/// for the manager's notices sent before an offer it was handed.
const LOCAL_DEMAND: Duration = Duration::from_secs(1);

// SAFETY: a view's bytes are a read-only mapping made when the view was
// created and unmapped only when it is dropped; moving the view moves no
// byte, and nothing remaps it meanwhile.
unsafe impl StableBuffer for View {
    fn stable_bytes(&self) -> &[u8] {
        self
    }
}

/// A command to the serving thread, answered on `reply`.
enum ServeCmd {
    /// Expose a view's memory; the answer is its descriptor's text form.
    Expose {
        name: String,
        view: View,
        reply: std::sync::mpsc::SyncSender<Result<String, String>>,
    },
    /// Stop exposing a view and drop it.
    Unexpose {
        name: String,
        reply: std::sync::mpsc::SyncSender<()>,
    },
}

/// The node's side of the serving thread, which owns the transport that
/// exposes this node's objects and drives its progress without pause
/// (providers such as `tcp;ofi_rxm` move a remote read's bytes only while
/// the exposing side polls), so that a node busy reading from a peer
/// still serves the peers reading from it.
struct Server {
    tx: Sender<ServeCmd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the serving thread; returns it and the transport's choice.
    fn start(fabric: mamba_fabric::Config) -> Result<(Server, String), FederationError> {
        let (tx, rx) = unbounded::<ServeCmd>();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cdo-federation-serve".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let t = match Transport::open(fabric) {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(t.choice().to_string()));
                    serve_loop(&t, &rx, &stop);
                }
            })
            .map_err(FederationError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(choice)) => Ok((
                Server {
                    tx,
                    stop,
                    thread: Some(thread),
                },
                choice,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.into())
            }
            Err(_) => {
                let _ = thread.join();
                Err(FederationError::Thread(std::io::Error::other(
                    "the serving thread ended before it was ready",
                )))
            }
        }
    }

    fn expose(&self, name: &str, view: View) -> Result<String, String> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let cmd = ServeCmd::Expose {
            name: name.into(),
            view,
            reply,
        };
        self.tx
            .send(cmd)
            .map_err(|_| "the serving thread is gone".to_string())?;
        answer
            .recv()
            .map_err(|_| "the serving thread is gone".to_string())?
    }

    /// Stops exposing `name`; once this returns its view is dropped.
    fn unexpose(&self, name: &str) {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let cmd = ServeCmd::Unexpose {
            name: name.into(),
            reply,
        };
        if self.tx.send(cmd).is_ok() {
            let _ = answer.recv();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The serving thread: answers commands, and between them drives the
/// transport's progress while anything is exposed.
fn serve_loop(t: &Transport, rx: &Receiver<ServeCmd>, stop: &AtomicBool) {
    let mut exposed: HashMap<String, ExposedOwned<View>> = HashMap::new();
    let handle = |cmd: ServeCmd, exposed: &mut HashMap<String, ExposedOwned<View>>| match cmd {
        ServeCmd::Expose { name, view, reply } => {
            let answer = t.expose_owned(view).map(|held| {
                let region = held.descriptor().to_string();
                exposed.insert(name, held);
                region
            });
            let _ = reply.send(answer.map_err(|e| e.to_string()));
        }
        ServeCmd::Unexpose { name, reply } => {
            exposed.remove(&name);
            let _ = reply.send(());
        }
    };
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = rx.try_recv() {
            handle(cmd, &mut exposed);
        }
        if exposed.is_empty() {
            if let Ok(cmd) = rx.recv_timeout(SERVE_IDLE) {
                handle(cmd, &mut exposed);
            }
            continue;
        }
        if let Err(e) = t.serve(|| !rx.is_empty() || stop.load(Ordering::Relaxed)) {
            warn!(error = %e, "fabric serving failed; peers cannot read this node's objects");
            std::thread::sleep(SERVE_IDLE);
        }
    }
}

/// Where the node's other threads (and its manager's request path) send
/// their inputs: a channel, plus a socket whose byte wakes the node when
/// it sleeps on its manager's connection too.
#[derive(Clone)]
struct Inbox {
    tx: Sender<Input>,
    waker: Arc<UnixStream>,
    /// Set by the node while it sleeps (or is about to): only then does a
    /// sender write a wake-up byte, so a busy node costs its senders no
    /// system call.
    sleeping: Arc<AtomicBool>,
}

impl Inbox {
    /// Queues `input` and wakes the node if it sleeps; false once the node
    /// is gone.
    fn send(&self, input: Input) -> bool {
        let sent = self.tx.send(input).is_ok();
        // Pairs with the fence in `Node::wait_for_input`: either the node
        // sees this input before it sleeps, or we see that it sleeps.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            // A full socket already holds a wake-up.
            let _ = (&*self.waker).write(&[1]);
        }
        sent
    }
}

/// What the node's other threads tell it.
enum Input {
    /// A peer passed the handshake.
    Link {
        peer: String,
        dialler: String,
        stream: TcpStream,
    },
    /// A message of a peer.
    Msg { peer: String, msg: PeerMsg },
    /// Link `link` to a peer ended.
    Lost { peer: String, link: u64 },
    /// A local client demanded a name nothing here offers.
    Unmet(String),
    /// A local client required a name nothing here offers.
    Required(String),
    /// A change of this node's consumer groups for the peers.
    Group(GroupNote),
    /// An event of a local client's object, from the manager's request
    /// path.
    Local(MirrorEvent),
    /// The lifecycle kinds this node's own subscribers take changed.
    Interest(EventMask),
}

/// `msg` as a frame for the links; `None`, logged, when it cannot be
/// encoded.
fn encoded(msg: &PeerMsg) -> Option<Vec<u8>> {
    encode(msg)
        .map_err(|e| warn!(error = %e, "cannot encode a federation message"))
        .ok()
}

/// Starts the federation's threads; returns once the node has joined its
/// manager and opened its fabric transport (or why it could not).
pub(super) fn spawn(
    config: FederationConfig,
    addr: SocketAddr,
    listener: TcpListener,
    manager: &ManagerHandle,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<FederationStatus>>,
) -> Result<Vec<JoinHandle<()>>, FederationError> {
    let me = node_name(addr);
    let (tx, rx) = unbounded();
    let (wake_rx, wake_tx) = UnixStream::pair().map_err(FederationError::Thread)?;
    for s in [&wake_rx, &wake_tx] {
        s.set_nonblocking(true).map_err(FederationError::Thread)?;
    }
    let tx = Inbox {
        tx,
        waker: Arc::new(wake_tx),
        sleeping: Arc::default(),
    };
    let linked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let control = manager.control();
    let client_config = ClientConfig::new(manager.endpoint().clone(), "federation");
    let mut fabric = config.fabric.clone();
    fabric.timeout = config.remote_timeout;
    if fabric.node.is_none() && !addr.ip().is_unspecified() {
        fabric.node = Some(addr.ip().to_string());
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let node = {
        let (me, stop, status, linked, tx) = (
            me.clone(),
            stop.clone(),
            status.clone(),
            linked.clone(),
            tx.clone(),
        );
        let timeout = config.remote_timeout;
        let eager_max = config.eager_max as u64;
        std::thread::Builder::new()
            .name("cdo-federation".into())
            .spawn(move || {
                let node = Node::open(
                    me,
                    client_config,
                    fabric,
                    control,
                    timeout,
                    eager_max,
                    status,
                    linked,
                    tx,
                    wake_rx,
                );
                match node {
                    Ok(mut node) => {
                        let _ = ready_tx.send(Ok(node.client.client_id()));
                        node.run(&rx, &stop);
                        node.close();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(FederationError::Thread)?
    };
    let own = match ready_rx.recv() {
        Ok(Ok(cid)) => cid,
        Ok(Err(e)) => {
            let _ = node.join();
            return Err(e);
        }
        Err(_) => {
            let _ = node.join();
            return Err(FederationError::Thread(std::io::Error::other(
                "the federation thread ended before it was ready",
            )));
        }
    };
    {
        // The federation's own demands (of local offers, to export them)
        // are never for another node.
        let tx = tx.clone();
        manager.control().on_unmet_demand(move |cid, name| {
            if cid != own {
                let _ = tx.send(Input::Unmet(name.into()));
            }
        });
    }
    {
        let tx = tx.clone();
        manager.control().on_unmet_require(move |cid, name| {
            if cid != own {
                let _ = tx.send(Input::Required(name.into()));
            }
        });
    }
    {
        let tx = tx.clone();
        manager.control().on_group_note(move |note| {
            let _ = tx.send(Input::Group(note));
        });
    }
    info!(node = %me, peers = ?config.peers, "federation listening");
    let mut threads = vec![node];
    let shared = Arc::new(Dialing {
        me,
        token: config.token,
        timeout: config.remote_timeout,
        stop,
        status,
        linked,
        tx,
    });
    let acceptor = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("cdo-federation-accept".into())
            .spawn(move || accept_loop(listener, &shared))
            .map_err(FederationError::Thread)?
    };
    threads.push(acceptor);
    for peer in config.peers {
        let shared = shared.clone();
        let dialler = std::thread::Builder::new()
            .name("cdo-federation-dial".into())
            .spawn(move || dial_loop(&peer, &shared))
            .map_err(FederationError::Thread)?;
        threads.push(dialler);
    }
    Ok(threads)
}

/// This node's name among its peers: the listening address, or, when it
/// listens on every interface, the host name and port.
pub(super) fn node_name(addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}:{}", addr.port())
}

/// What the acceptor and the diallers share.
struct Dialing {
    me: String,
    token: String,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<FederationStatus>>,
    /// Peers linked now (the node keeps it).
    linked: Arc<Mutex<HashSet<String>>>,
    tx: Inbox,
}

impl Dialing {
    fn refused(&self, reason: String) {
        warn!(%reason, "federation peer refused");
        let mut s = lock(&self.status);
        if s.refused.len() == REFUSALS_KEPT {
            s.refused.remove(0);
        }
        s.refused.push(reason);
    }

    /// Bounds every read and write of a handshake.
    fn handshake_timeouts(&self, stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(self.timeout));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts peers until stopped; each handshake runs on its own thread so
/// that a slow or silent peer holds up nobody.
fn accept_loop(listener: TcpListener, shared: &Arc<Dialing>) {
    if let Err(e) = listener.set_nonblocking(true) {
        warn!(error = %e, "federation listener cannot poll; not accepting peers");
        return;
    }
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("cdo-federation-hello".into())
                    .spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        shared.handshake_timeouts(&stream);
                        match auth::answer(&mut stream, &shared.me, &shared.token) {
                            Ok(peer) => {
                                let _ = shared.tx.send(Input::Link {
                                    peer: peer.clone(),
                                    dialler: peer,
                                    stream,
                                });
                            }
                            Err(reason) => shared.refused(format!("from {from}: {reason}")),
                        }
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                warn!(error = %e, "federation accept failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Polls `fds` without blocking, yielding the core between looks, until
/// one is ready or `ready()` holds (true), or [`SPIN_BEFORE_SLEEP`] passed
/// (false). In a busy exchange the next input usually comes within that
/// time, and a thread that looks again costs less than one woken.
fn look_briefly(fds: &mut [PollFd], ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() || poll(fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            return true;
        }
        if start.elapsed() >= SPIN_BEFORE_SLEEP {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Dials `peer` whenever it is not linked, until stopped.
fn dial_loop(peer: &str, shared: &Dialing) {
    let mut name: Option<String> = None;
    let mut last_error = String::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let linked = name
            .as_ref()
            .is_some_and(|n| lock(&shared.linked).contains(n));
        if !linked {
            match dial(peer, shared) {
                Ok((node, stream)) => {
                    last_error.clear();
                    name = Some(node.clone());
                    // Linked from now on, for this loop: not dialled again
                    // before the node has even seen this link.
                    lock(&shared.linked).insert(node.clone());
                    let _ = shared.tx.send(Input::Link {
                        peer: node,
                        dialler: shared.me.clone(),
                        stream,
                    });
                }
                Err(Dial::Unreachable(e)) => {
                    if e != last_error {
                        debug!(peer, error = %e, "federation peer not reachable yet");
                        last_error = e;
                    }
                }
                Err(Dial::Refused(reason)) => {
                    shared.refused(format!("to {peer}: {reason}"));
                    // Do not hammer a peer that refuses us.
                    pause(shared.timeout.max(DIAL_RETRY), &shared.stop);
                }
            }
        }
        pause(DIAL_RETRY, &shared.stop);
    }
}

/// Sleeps `d`, or less once `stop` is set.
fn pause(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(ACCEPT_POLL));
    }
}

enum Dial {
    Unreachable(String),
    Refused(String),
}

fn dial(peer: &str, shared: &Dialing) -> Result<(String, TcpStream), Dial> {
    let addr = peer
        .to_socket_addrs()
        .map_err(|e| Dial::Unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| Dial::Unreachable(format!("{peer} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&addr, shared.timeout)
        .map_err(|e| Dial::Unreachable(e.to_string()))?;
    shared.handshake_timeouts(&stream);
    let node = auth::dial(&mut stream, &shared.me, &shared.token).map_err(Dial::Refused)?;
    Ok((node, stream))
}

/// One live link to a peer.
struct Link {
    id: u64,
    /// Node name of the side that dialled it.
    dialler: String,
    writer: TcpStream,
    /// Frames queued for the peer: written together by
    /// [`Node::flush_links`] once the node has handled what it had in
    /// hand, so a burst of offers costs one system call, not one each.
    queued: Vec<u8>,
}

/// Queued bytes past which a link is written at once.
const LINK_QUEUE_MAX: usize = 256 << 10;

impl Link {
    /// Queues `frame`; writes the queue at once past [`LINK_QUEUE_MAX`].
    fn push(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.queued.extend_from_slice(frame);
        match self.queued.len() >= LINK_QUEUE_MAX {
            true => self.flush(),
            false => Ok(()),
        }
    }

    /// Writes the queued frames.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let written = write_frame(&mut self.writer, &self.queued);
        self.queued.clear();
        written
    }
}

/// An object of this node offered to the peers: under versions, the
/// newest on offer here as its name.
struct Export {
    readable: Readable,
    /// Once withdrawn here: since when, and the peers whose answer is
    /// still awaited (exposed objects only).
    withdrawal: Option<(Instant, HashSet<String>)>,
    /// Another version of its name is on offer here: exported in its
    /// place once the peers let go of this one.
    superseded: bool,
}

/// An object of this node made readable by the peers (to export or to
/// lend).
struct Readable {
    attrs: Attributes,
    payload: Payload,
    /// The manager's identifier of the object.
    object: Option<u64>,
}

/// How the peers get an exported object's bytes.
enum Payload {
    /// In its offer (objects up to the eager limit); this node's view of
    /// it was released once copied.
    Inline(Vec<u8>),
    /// By remote reads of its view, exposed at this region (text form).
    Exposed { size: u64, region: String },
}

/// A consumer group of this node that has members, as the peers know it.
struct LocalGroup {
    selector: String,
    members: u32,
    /// Since when it has members ([`PeerMsg::Group`]).
    epoch: u64,
}

/// A proxy member here of a peer's members of a group.
#[derive(Clone)]
struct Proxy {
    group: String,
    peer: String,
    /// The peer's epoch of the group, which records given to the proxy
    /// carry.
    epoch: u64,
}

/// An object a peer offers.
struct Import {
    peer: String,
    attrs: Attributes,
    source: Source,
}

/// Where an imported object's bytes are.
enum Source {
    /// Here already, sent with its offer.
    Inline(Vec<u8>),
    /// In the peer's memory, read with `fi_read`.
    Remote { size: u64, region: RegionDescriptor },
}

impl Source {
    fn size(&self) -> u64 {
        match self {
            Source::Inline(bytes) => bytes.len() as u64,
            Source::Remote { size, .. } => *size,
        }
    }
}

/// A copy of this node exposed for peers that sought it (`Seek`), until
/// each has answered (`Released`), its link ended, or the remote timeout
/// passed since the latest asked.
struct Lent {
    readable: Readable,
    readers: HashSet<String>,
    since: Instant,
}

/// The node: all federation state, owned by one thread.
struct Node {
    me: String,
    client: Client,
    /// Exposes this node's objects.
    server: Server,
    /// Reads peers' objects; reopened after a failed read closed it.
    puller: Option<Transport>,
    fabric: mamba_fabric::Config,
    control: Control,
    timeout: Duration,
    /// Objects up to this size travel inline with their offer.
    eager_max: u64,
    links: HashMap<String, Link>,
    next_link: u64,
    readers: Vec<JoinHandle<()>>,
    exports: HashMap<String, Export>,
    imports: HashMap<String, Import>,
    /// Names demanded here, offered nowhere yet.
    wanted: HashSet<String>,
    /// Names this node read from a peer and offers locally, by peer.
    copies: HashMap<String, String>,
    /// Those of them offered by the manager itself (copies of inline
    /// bytes, [`Control::offer_copy`]), not by this node's client.
    direct: HashSet<String>,
    /// Withdrawals of copies whose reply is awaited.
    withdrawals: Vec<RequestId>,
    /// This node's consumer groups with members.
    groups: HashMap<String, LocalGroup>,
    /// Proxy members here of peers' members, by subscription.
    proxies: HashMap<u64, Proxy>,
    /// Records forwarded to a peer and not done there: delivery → peer.
    forwarded: HashMap<u64, String>,
    /// Names required here and offered on no node yet (the peers hold
    /// them for this node).
    required: HashSet<String>,
    /// Names this node's client requires for peers, by the peers.
    held_for: HashMap<String, HashSet<String>>,
    /// What to do when a peer cannot deliver: fail the waiting demands
    /// (fail-fast), or seek a copy elsewhere (best-effort).
    policy: FaultPolicy,
    /// Names whose offering node's link ended, by that node.
    lost: HashMap<String, String>,
    /// Copies of this node exposed for peers that sought them.
    lent: HashMap<String, Lent>,
    /// Names this node sought from its peers and has no copy of yet.
    sought: HashSet<String>,
    /// Names peers sought and this node held no copy of, by the seekers:
    /// a Require event was raised here for them (a librarian may answer).
    asked: HashMap<String, HashSet<String>>,
    status: Arc<Mutex<FederationStatus>>,
    linked: Arc<Mutex<HashSet<String>>>,
    tx: Inbox,
    /// Read end of the inbox's wake-up socket.
    waker: UnixStream,
    /// The last event or record of the manager handled from the client's
    /// connection.
    seen: u64,
    /// The lifecycle kinds this node's own subscribers take, as told to
    /// the peers.
    local_interest: EventMask,
    /// The lifecycle kinds each peer's subscribers take.
    peer_interest: HashMap<String, EventMask>,
    /// This node's client's subscriptions to lifecycle kinds that some
    /// peer takes, one per kind.
    lifecycle_subs: Vec<(EventKind, u64)>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    fn open(
        me: String,
        client: ClientConfig,
        fabric: mamba_fabric::Config,
        control: Control,
        timeout: Duration,
        eager_max: u64,
        status: Arc<Mutex<FederationStatus>>,
        linked: Arc<Mutex<HashSet<String>>>,
        tx: Inbox,
        waker: UnixStream,
    ) -> Result<Node, FederationError> {
        let mut client = Client::connect(&client)?;
        // Before anything else: none of the federation's own operations
        // raises an event here.
        control.set_mirror(client.client_id());
        // Offers and withdrawals come straight from the manager, small
        // offers with their bytes: exporting those costs no demand.
        let events = tx.clone();
        control.on_mirror_events(eager_max, move |event| {
            let _ = events.send(Input::Local(event));
        });
        // Offers and withdrawals to export; requires, demands and
        // retractions to tell the node that offers the object.
        let kinds = EventKind::Offer
            | EventKind::Withdraw
            | EventKind::Require
            | EventKind::Demand
            | EventKind::Retract;
        client.subscribe("*", kinds, false)?;
        // The lifecycle kinds this node's subscribers take, for the peers.
        let interest = tx.clone();
        control.on_local_interest(move |kinds| {
            let _ = interest.send(Input::Interest(kinds));
        });
        let (server, choice) = Server::start(fabric.clone())?;
        lock(&status).fabric = choice;
        let policy = control.policy();
        Ok(Node {
            me,
            client,
            server,
            puller: None,
            fabric,
            control,
            timeout,
            eager_max,
            links: HashMap::new(),
            next_link: 0,
            readers: Vec::new(),
            exports: HashMap::new(),
            imports: HashMap::new(),
            wanted: HashSet::new(),
            copies: HashMap::new(),
            direct: HashSet::new(),
            withdrawals: Vec::new(),
            groups: HashMap::new(),
            proxies: HashMap::new(),
            forwarded: HashMap::new(),
            required: HashSet::new(),
            held_for: HashMap::new(),
            policy,
            lost: HashMap::new(),
            lent: HashMap::new(),
            sought: HashSet::new(),
            asked: HashMap::new(),
            status,
            linked,
            tx,
            waker,
            seen: 0,
            local_interest: EventMask::NONE,
            peer_interest: HashMap::new(),
            lifecycle_subs: Vec::new(),
        })
    }

    /// Handles inputs, local notices and fabric progress until stopped or
    /// until the local manager goes.
    fn run(&mut self, rx: &Receiver<Input>, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let mut busy = false;
            while let Ok(input) = rx.try_recv() {
                busy = true;
                self.input(input);
            }
            loop {
                match self.client.poll_notice() {
                    Ok(Some(n)) => {
                        busy = true;
                        // The manager's hooks ran before it sent this
                        // notice: their inputs go to the peers first, so
                        // that a `Required` precedes the `Record` whose
                        // consumer will offer the required name.
                        while let Ok(input) = rx.try_recv() {
                            self.input(input);
                        }
                        self.notice(n);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "federation lost its pool manager; stopping");
                        return;
                    }
                }
            }
            self.expire_withdrawals();
            self.poll_withdrawals();
            self.flush_links();
            if busy {
                self.publish_status();
            } else {
                self.wait_for_input(rx);
            }
        }
    }

    /// Sleeps until an input or a message of the manager arrives, or
    /// [`IDLE_WAIT_MS`] passed.
    fn wait_for_input(&mut self, rx: &Receiver<Input>) {
        if !rx.is_empty() {
            return;
        }
        let mut fds = [
            PollFd::new(self.client.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.waker.as_fd(), PollFlags::POLLIN),
        ];
        if !look_briefly(&mut fds, || !rx.is_empty()) {
            let sleeping = &self.tx.sleeping;
            sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `Inbox::send`.
            std::sync::atomic::fence(Ordering::SeqCst);
            if rx.is_empty() {
                let _ = poll(&mut fds, PollTimeout::from(IDLE_WAIT_MS));
            }
            sleeping.store(false, Ordering::Relaxed);
        }
        let mut drain = [0u8; 64];
        while matches!((&self.waker).read(&mut drain), Ok(n) if n > 0) {}
    }

    fn publish_status(&self) {
        let mut s = lock(&self.status);
        s.peers = self.links.keys().cloned().collect();
        s.peers.sort();
        s.exported = self.exports.len();
        s.imported = self.imports.len();
        s.group_proxies = self.proxies.len();
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Link {
                peer,
                dialler,
                stream,
            } => self.link_up(peer, dialler, stream),
            Input::Msg { peer, msg } => self.peer_msg(&peer, msg),
            Input::Lost { peer, link } => {
                if self.links.get(&peer).is_some_and(|l| l.id == link) {
                    self.link_lost(&peer, "connection ended");
                }
            }
            Input::Unmet(name) => {
                if self.exports.contains_key(&name) || self.copies.contains_key(&name) {
                    return;
                }
                if self.imports.contains_key(&name) {
                    self.pull(&name);
                } else if let Some(node) = self.lost.get(&name) {
                    let text = format!("{name}: its node {node} was lost");
                    self.unserved(&name, &text);
                } else {
                    self.wanted.insert(name);
                }
            }
            Input::Group(note) => self.group_note(note),
            Input::Local(MirrorEvent {
                kind,
                name,
                inline,
                object,
                attrs,
                after,
            }) => {
                self.catch_up(after);
                match kind {
                    EventKind::Offer => self.local_offer(name, inline, object),
                    kind => self.local_event(kind, name, attrs),
                }
            }
            Input::Interest(kinds) => {
                if kinds != self.local_interest {
                    self.local_interest = kinds;
                    self.broadcast(&PeerMsg::Interest {
                        kinds: kinds.bits(),
                    });
                }
            }
            Input::Required(name) => {
                let known = self.exports.contains_key(&name)
                    || self.imports.contains_key(&name)
                    || self.copies.contains_key(&name);
                if known {
                    return;
                }
                if self.policy == FaultPolicy::BestEffort && self.lost.contains_key(&name) {
                    // Offered before by a node lost since: a peer's copy
                    // serves the require.
                    self.seek(&name);
                }
                if self.required.insert(name.clone()) {
                    debug!(%name, "required here, asking the peers to hold it");
                    self.broadcast(&PeerMsg::Required {
                        name,
                        required: true,
                    });
                }
            }
        }
    }

    /// The peers need not hold `name` for this node any more (it has its
    /// copy, or offers it itself).
    fn unrequire(&mut self, name: &str) {
        if self.required.remove(name) {
            self.broadcast(&PeerMsg::Required {
                name: name.into(),
                required: false,
            });
        }
    }

    /// Starts or ends this node's hold of `name` for `peer`: its client
    /// requires the name while any peer needs it held.
    fn hold_for(&mut self, peer: &str, name: String, required: bool) {
        let peers = self.held_for.entry(name.clone()).or_default();
        let before = peers.is_empty();
        match required {
            true => peers.insert(peer.into()),
            false => peers.remove(peer),
        };
        let after = peers.is_empty();
        if after {
            self.held_for.remove(&name);
        }
        debug!(%peer, %name, required, "hold for a peer");
        let result = match (before, after) {
            (true, false) => self.client.require(&name),
            (false, true) => self.client.retract(&name),
            _ => Ok(()),
        };
        if let Err(e) = result {
            warn!(%peer, %name, error = %e, "cannot hold a name for a peer");
        }
    }

    /// Tells the peers of a change of this node's groups.
    fn group_note(&mut self, note: GroupNote) {
        match note {
            GroupNote::Members {
                group,
                selector,
                members,
                epoch,
            } => {
                if members == 0 {
                    self.groups.remove(&group);
                } else {
                    let g = LocalGroup {
                        selector: selector.clone(),
                        members,
                        epoch,
                    };
                    self.groups.insert(group.clone(), g);
                }
                self.broadcast(&PeerMsg::Group {
                    group,
                    selector,
                    members,
                    epoch,
                });
            }
            GroupNote::Done { node, event } => self.send(&node, &PeerMsg::Done { event }),
        }
    }

    /// A peer's member count of `group`: its proxy here is added, changed
    /// or (0) removed.
    fn peer_group(&mut self, peer: &str, group: String, selector: &str, members: u32, epoch: u64) {
        match self.control.set_proxy(&group, selector, peer, members) {
            Ok(Some(sub)) => {
                let proxy = Proxy {
                    group,
                    peer: peer.into(),
                    epoch,
                };
                self.proxies.insert(sub, proxy);
            }
            Ok(None) => self
                .proxies
                .retain(|_, p| !(p.group == group && p.peer == peer)),
            Err(e) => warn!(%peer, %group, error = %e, "cannot follow a peer's consumer group"),
        }
        self.publish_status();
    }

    /// A record of a local offer given to a peer's proxy: forwarded to
    /// that peer, which answers once one of its members is done with it.
    fn forward(&mut self, record: GroupRecord) {
        let GroupRecord {
            subscription,
            event,
            view,
        } = record;
        let name = view.name().to_owned();
        let proxy = self.proxies.get(&subscription).cloned();
        let exported = self.exports.contains_key(&name);
        match &proxy {
            // Withdrawn before its offer could be exported (its Offer
            // event came too late for a demand): the record's own view
            // still holds it, so it is exported from that view.
            Some(p) if !exported && self.links.contains_key(&p.peer) => {
                match self.payload_of(&name, view) {
                    Some(readable) => self.publish(name.clone(), readable),
                    None => return self.control.finish_proxy_record(event),
                }
            }
            _ => {
                drop(view);
                if let Err(e) = self.client.flush() {
                    warn!(error = %e, "cannot release a view");
                }
            }
        }
        // A proxy already gone gave its records back to the group.
        let Some(Proxy { group, peer, epoch }) = proxy else {
            return;
        };
        if !self.links.contains_key(&peer) {
            return self.peer_group(&peer, group, "", 0, epoch);
        }
        self.forwarded.insert(event, peer.clone());
        lock(&self.status).forwarded_records += 1;
        let msg = PeerMsg::Record {
            group,
            name,
            event,
            epoch,
        };
        self.send(&peer, &msg);
    }

    /// A peer's record of `group` for a member here: read the object
    /// (announced before on the same link) and give it to one.
    fn forwarded_record(&mut self, peer: &str, group: &str, name: &str, event: u64, epoch: u64) {
        if self.groups.get(group).is_none_or(|g| g.epoch != epoch) {
            // Given to members that have all gone since: the peer gives it
            // to another when it hears so.
            return;
        }
        if !self.copies.contains_key(name) {
            self.pull(name);
        }
        // The members may have gone meanwhile (the manager knows before
        // this thread does): then the peer hears so and hands it on.
        if !self
            .control
            .route_forwarded(group, name, peer, event, epoch)
        {
            debug!(%peer, %group, %name, "a forwarded group record found no member or no copy here");
        }
    }

    /// A new link to `peer`. Where both sides dialled, both keep the link
    /// that the node with the smaller name dialled; where the same side
    /// dialled again, it found the older link dead: the newer one stays.
    fn link_up(&mut self, peer: String, dialler: String, stream: TcpStream) {
        if peer == self.me {
            debug!("federation linked to itself; closing that link");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        let preferred = self.me.as_str().min(peer.as_str()).to_string();
        if let Some(old) = self.links.get(&peer) {
            if old.dialler != dialler && old.dialler == preferred {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            // Its reader's end is ignored: the link's id changes.
            let _ = old.writer.shutdown(std::net::Shutdown::Both);
        }
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                warn!(%peer, error = %e, "cannot read a federation link");
                return;
            }
        };
        let _ = reader.set_read_timeout(None);
        let _ = stream.set_write_timeout(Some(self.timeout));
        self.next_link += 1;
        let id = self.next_link;
        let tx = self.tx.clone();
        let who = peer.clone();
        let spawned = std::thread::Builder::new()
            .name("cdo-federation-read".into())
            .spawn(move || {
                let mut reader = std::io::BufReader::new(reader);
                loop {
                    if reader.buffer().is_empty() {
                        // The next message often comes soon: a look costs
                        // less than a sleep and a wake-up.
                        let fd = reader.get_ref().as_fd();
                        look_briefly(&mut [PollFd::new(fd, PollFlags::POLLIN)], || false);
                    }
                    match read_msg(&mut reader) {
                        Ok(msg) => {
                            let input = Input::Msg {
                                peer: who.clone(),
                                msg,
                            };
                            if !tx.send(input) {
                                return;
                            }
                        }
                        Err(e) => {
                            debug!(peer = %who, error = %e, "federation link ended");
                            let _ = tx.send(Input::Lost {
                                peer: who,
                                link: id,
                            });
                            return;
                        }
                    }
                }
            });
        match spawned {
            Ok(t) => self.readers.push(t),
            Err(e) => {
                warn!(%peer, error = %e, "cannot start a federation reader");
                return;
            }
        }
        info!(%peer, "federation peer linked");
        self.links.insert(
            peer.clone(),
            Link {
                id,
                dialler,
                writer: stream,
                queued: Vec::new(),
            },
        );
        lock(&self.linked).insert(peer.clone());
        // The new peer learns what this node offers.
        let offers: Vec<PeerMsg> = self
            .exports
            .iter()
            .filter(|(_, e)| e.withdrawal.is_none())
            .map(|(name, e)| offered(name, e))
            .collect();
        // And its consumer groups.
        let groups = self.groups.iter().map(|(group, g)| PeerMsg::Group {
            group: group.clone(),
            selector: g.selector.clone(),
            members: g.members,
            epoch: g.epoch,
        });
        let required = self.required.iter().map(|name| PeerMsg::Required {
            name: name.clone(),
            required: true,
        });
        // And which lifecycle events this node's subscribers take.
        let interest = (self.local_interest != EventMask::NONE).then_some(PeerMsg::Interest {
            kinds: self.local_interest.bits(),
        });
        let offers: Vec<PeerMsg> = offers
            .into_iter()
            .chain(groups)
            .chain(required)
            .chain(interest)
            .collect();
        for msg in offers {
            self.send(&peer, &msg);
        }
        self.publish_status();
    }

    /// Forgets `peer`: its objects, the copies read from it, and the
    /// answers awaited from it.
    fn link_lost(&mut self, peer: &str, why: &str) {
        let Some(link) = self.links.remove(peer) else {
            return;
        };
        warn!(%peer, why, "federation peer lost");
        let _ = link.writer.shutdown(std::net::Shutdown::Both);
        lock(&self.linked).remove(peer);
        if self.peer_interest.remove(peer).is_some() {
            self.follow_peer_interest();
        }
        let gone: Vec<String> = self
            .imports
            .iter()
            .filter(|(_, i)| i.peer == peer)
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.forget_import(&name);
            self.lost.insert(name, peer.into());
        }
        // Best-effort keeps the whole copies read from it: they serve
        // here, and the peers that seek them.
        if self.policy == FaultPolicy::FailFast {
            let copies: Vec<String> = self
                .copies
                .iter()
                .filter(|(_, p)| *p == peer)
                .map(|(n, _)| n.clone())
                .collect();
            for name in copies {
                self.withdraw_copy(&name);
            }
        }
        let returned: Vec<String> = self
            .lent
            .iter_mut()
            .filter_map(|(name, l)| {
                (l.readers.remove(peer) && l.readers.is_empty()).then(|| name.clone())
            })
            .collect();
        for name in returned {
            self.unlend(&name);
        }
        let asked: Vec<String> = self
            .asked
            .iter()
            .filter(|(_, seekers)| seekers.contains(peer))
            .map(|(name, _)| name.clone())
            .collect();
        for name in asked {
            self.unask(peer, &name);
        }
        // Its members are gone: the records they held go to others.
        let groups: Vec<String> = self
            .proxies
            .values()
            .filter(|p| p.peer == peer)
            .map(|p| p.group.clone())
            .collect();
        for group in groups {
            self.peer_group(peer, group, "", 0, 0);
        }
        self.forwarded.retain(|_, p| p != peer);
        let held: Vec<String> = self
            .held_for
            .iter()
            .filter(|(_, peers)| peers.contains(peer))
            .map(|(name, _)| name.clone())
            .collect();
        for name in held {
            self.hold_for(peer, name, false);
        }
        let answered: Vec<String> = self
            .exports
            .iter_mut()
            .filter_map(|(name, e)| {
                let (_, waiting) = e.withdrawal.as_mut()?;
                waiting.remove(peer);
                waiting.is_empty().then(|| name.clone())
            })
            .collect();
        for name in answered {
            self.release_export(&name);
        }
        self.publish_status();
    }

    /// Queues `msg` for `peer` (see [`Link::queued`]).
    fn send(&mut self, peer: &str, msg: &PeerMsg) {
        if !self.links.contains_key(peer) {
            return;
        }
        if let Some(frame) = encoded(msg) {
            self.queue(Some(peer), &frame);
        }
    }

    /// Queues `msg` for every peer, encoded once.
    fn broadcast(&mut self, msg: &PeerMsg) {
        if let Some(frame) = encoded(msg) {
            self.queue(None, &frame);
        }
    }

    /// Queues `frame` for `peer`, or for every peer; a link that cannot
    /// take it is dropped.
    fn queue(&mut self, peer: Option<&str>, frame: &[u8]) {
        let failed: Vec<(String, std::io::Error)> = match peer {
            Some(p) => self
                .links
                .get_mut(p)
                .and_then(|link| link.push(frame).err())
                .map(|e| (p.to_string(), e))
                .into_iter()
                .collect(),
            None => self
                .links
                .iter_mut()
                .filter_map(|(name, link)| link.push(frame).err().map(|e| (name.clone(), e)))
                .collect(),
        };
        for (peer, e) in failed {
            self.link_lost(&peer, &format!("send failed: {e}"));
        }
    }

    /// Writes every link's queued frames; a link that cannot take them is
    /// dropped.
    fn flush_links(&mut self) {
        let failed: Vec<(String, std::io::Error)> = self
            .links
            .iter_mut()
            .filter_map(|(name, link)| link.flush().err().map(|e| (name.clone(), e)))
            .collect();
        for (peer, e) in failed {
            self.link_lost(&peer, &format!("send failed: {e}"));
        }
    }

    fn peer_msg(&mut self, peer: &str, msg: PeerMsg) {
        match msg {
            PeerMsg::Offered {
                name,
                attrs,
                size,
                region,
            } => {
                if let Some(source) = remote_source(peer, &name, size, &region) {
                    self.import(peer, name, attrs, source);
                }
            }
            PeerMsg::OfferedInline { name, attrs, bytes } => {
                self.import(peer, name, attrs, Source::Inline(bytes));
            }
            PeerMsg::Seek { name } => self.lend(peer, name),
            PeerMsg::Sought { name } => self.unask(peer, &name),
            PeerMsg::Replica {
                name,
                attrs,
                size,
                region,
            } => {
                let source = remote_source(peer, &name, size, &region);
                if let Some(source) = source {
                    self.take_replica(peer, &name, attrs, &source);
                }
                // Read or not: the peer may stop exposing its copy.
                self.send(peer, &PeerMsg::Released { name });
            }
            PeerMsg::ReplicaInline { name, attrs, bytes } => {
                self.take_replica(peer, &name, attrs, &Source::Inline(bytes));
            }
            PeerMsg::Withdrawn { name } => {
                // Reads are synchronous on this thread: none of `name` is in
                // flight now, and none starts after this.
                let import = match self.imports.get(&name) {
                    Some(i) if i.peer == peer => self.forget_import(&name),
                    _ => None,
                };
                if self.copies.get(&name).is_some_and(|p| p == peer) {
                    self.withdraw_copy(&name);
                }
                // The peer awaits no answer for an object it sent inline.
                if !import.is_some_and(|i| matches!(i.source, Source::Inline(_))) {
                    self.send(peer, &PeerMsg::Released { name });
                }
                self.publish_status();
            }
            PeerMsg::Group {
                group,
                selector,
                members,
                epoch,
            } => self.peer_group(peer, group, &selector, members, epoch),
            PeerMsg::Record {
                group,
                name,
                event,
                epoch,
            } => self.forwarded_record(peer, &group, &name, event, epoch),
            PeerMsg::Required { name, required } => self.hold_for(peer, name, required),
            PeerMsg::Interest { kinds } => {
                let kinds = EventMask::from_bits(kinds & LIFECYCLE_KINDS.bits());
                self.peer_interest.insert(peer.to_string(), kinds);
                self.follow_peer_interest();
            }
            PeerMsg::Lifecycle { kind, name, attrs } => {
                if LIFECYCLE_KINDS.contains(kind) {
                    self.control.raise_remote(kind, &name, &attrs, peer);
                }
            }
            PeerMsg::Consumer { kind, name } => {
                let consumer_kind = matches!(
                    kind,
                    EventKind::Require | EventKind::Demand | EventKind::Retract
                );
                if let Some(export) = self.exports.get(&name).filter(|_| consumer_kind) {
                    self.control
                        .raise_remote(kind, &name, &export.readable.attrs, peer);
                }
            }
            PeerMsg::Done { event } => {
                if self.forwarded.get(&event).is_some_and(|p| p == peer) {
                    self.forwarded.remove(&event);
                    self.control.finish_proxy_record(event);
                }
            }
            PeerMsg::Released { name } => {
                let returned = self.lent.get_mut(&name).is_some_and(|l| {
                    l.readers.remove(peer);
                    l.readers.is_empty()
                });
                if returned {
                    self.unlend(&name);
                }
                let done = self
                    .exports
                    .get_mut(&name)
                    .and_then(|e| e.withdrawal.as_mut())
                    .is_some_and(|(_, waiting)| {
                        waiting.remove(peer);
                        waiting.is_empty()
                    });
                if done {
                    self.release_export(&name);
                }
            }
            other => {
                warn!(%peer, msg = ?other, "unexpected federation message; dropping the link");
                self.link_lost(peer, "protocol error");
            }
        }
    }

    /// Records a peer's offer, raises its offer event here (unless the
    /// same peer announced it already: a link that replaced another), and
    /// reads it at once if it is awaited here.
    fn import(&mut self, peer: &str, name: String, attrs: Attributes, source: Source) {
        let known = match self.imports.get(&name) {
            Some(old) if old.peer == peer => true,
            // The name moves to another node: its offer here is gone.
            Some(_) => {
                self.forget_import(&name);
                false
            }
            None => false,
        };
        if !known {
            self.control
                .raise_remote(EventKind::Offer, &name, &attrs, peer);
        }
        let import = Import {
            peer: peer.into(),
            attrs,
            source,
        };
        self.imports.insert(name.clone(), import);
        self.lost.remove(&name);
        let wanted = self.wanted.remove(&name);
        if (wanted || self.required.contains(&name)) && !self.copies.contains_key(&name) {
            self.pull(&name);
        }
        // Read (or failed: the local demands were told): no peer holds it
        // for this node any more.
        self.unrequire(&name);
        self.publish_status();
    }

    /// Forgets a peer's offer and raises its withdraw event here.
    fn forget_import(&mut self, name: &str) -> Option<Import> {
        let import = self.imports.remove(name)?;
        self.control
            .raise_remote(EventKind::Withdraw, name, &import.attrs, &import.peer);
        Some(import)
    }

    /// A notice on the client's connection: a record for a peer's proxy
    /// member, or (were the events not handed over in the manager's
    /// request path) a local client's offer or withdrawal (the manager
    /// sends none of this node's own operations, nor other nodes' events).
    fn notice(&mut self, notice: Notice) {
        let event = match notice {
            Notice::Event(event) => event,
            Notice::Record(record) => {
                self.seen = self.seen.max(record.event);
                return self.forward(record);
            }
        };
        self.seen = self.seen.max(event.event);
        match event.kind {
            EventKind::Offer => self.local_offer(event.name, None, None),
            kind => {
                let attrs = LIFECYCLE_KINDS.contains(kind).then_some(event.attrs);
                self.local_event(kind, event.name, attrs);
            }
        }
    }

    /// A local client's withdrawal; or its require, demand or retraction;
    /// or its declare, seal or dispose (with the event's `attrs`).
    fn local_event(&mut self, kind: EventKind, name: String, attrs: Option<Attributes>) {
        match kind {
            EventKind::Withdraw => self.local_withdraw(&name),
            EventKind::Require | EventKind::Demand | EventKind::Retract => {
                self.consumer_event(kind, name)
            }
            EventKind::Declare | EventKind::Seal | EventKind::Dispose => {
                self.lifecycle_event(kind, name, attrs.unwrap_or_default())
            }
            _ => {}
        }
    }

    /// A local client's declare, seal or dispose of `name`: each peer
    /// whose subscribers take that kind raises the same event there.
    fn lifecycle_event(&mut self, kind: EventKind, name: String, attrs: Attributes) {
        let peers: Vec<String> = self
            .peer_interest
            .iter()
            .filter(|(_, kinds)| kinds.contains(kind))
            .map(|(peer, _)| peer.clone())
            .collect();
        if peers.is_empty() {
            return;
        }
        if let Some(frame) = encoded(&PeerMsg::Lifecycle { kind, name, attrs }) {
            peers.iter().for_each(|p| self.queue(Some(p), &frame));
        }
    }

    /// Keeps this node's client subscribed, one subscription per kind, to
    /// the lifecycle kinds some peer's subscribers take, and to no other:
    /// through the manager's interest page, this node's clients then tell
    /// it of exactly those steps, and their events come to
    /// [`Node::local_event`]. The peers' own subscriptions made this way
    /// never count as interest here (the manager leaves the mirror's out),
    /// so two nodes do not keep each other's interest alive.
    fn follow_peer_interest(&mut self) {
        let wanted = self
            .peer_interest
            .values()
            .fold(EventMask::NONE, |all, &kinds| all | kinds);
        for kind in [EventKind::Declare, EventKind::Seal, EventKind::Dispose] {
            let held = self.lifecycle_subs.iter().position(|&(k, _)| k == kind);
            match (wanted.contains(kind), held) {
                (true, None) => match self.client.subscribe("*", kind.into(), false) {
                    Ok(id) => self.lifecycle_subs.push((kind, id)),
                    Err(e) => {
                        warn!(?kind, error = %e, "cannot take a lifecycle kind for the peers")
                    }
                },
                (false, Some(i)) => {
                    let (_, id) = self.lifecycle_subs.swap_remove(i);
                    if let Err(e) = self.client.unsubscribe(id) {
                        warn!(?kind, error = %e, "cannot drop a lifecycle kind the peers left");
                    }
                }
                _ => {}
            }
        }
    }

    /// A local consumer's require, demand or retraction of `name`: the
    /// node that offers it raises the same event there. Of a name offered
    /// here or nowhere yet, nothing goes out.
    fn consumer_event(&mut self, kind: EventKind, name: String) {
        if let Some(peer) = self.imports.get(&name).map(|i| i.peer.clone()) {
            self.send(&peer, &PeerMsg::Consumer { kind, name });
        }
    }

    /// Handles the notices that the manager sent on the client's
    /// connection up to event `after` (those it sent before an event it
    /// handed over: a record of the same object).
    fn catch_up(&mut self, after: u64) {
        let deadline = Instant::now() + LOCAL_DEMAND.min(self.timeout);
        while self.seen < after {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.next_notice(Some(left)) {
                Ok(Some(n)) => self.notice(n),
                Ok(None) => {
                    warn!(
                        after,
                        seen = self.seen,
                        "the manager's notices did not come in time"
                    );
                    self.seen = after;
                }
                // The run loop sees the connection's end.
                Err(_) => return,
            }
        }
    }

    /// A local client offered `name` (`object`, with its bytes, `inline`,
    /// where they came with the offer): exported from them, else from a
    /// view of the newest object of the name. A newer version of a name
    /// exported already replaces the export once the peers let go of it
    /// (at once for bytes sent inline).
    fn local_offer(
        &mut self,
        name: String,
        inline: Option<(Attributes, Vec<u8>)>,
        object: Option<u64>,
    ) {
        if let Some(export) = self.exports.get_mut(&name) {
            let newer =
                matches!((object, export.readable.object), (Some(new), Some(old)) if new > old);
            if !newer {
                return;
            }
            export.superseded = true;
            // Exported again when the peers let go of it.
            if self.withdraw_export(&name) {
                return;
            }
        }
        let readable = match (inline, object) {
            (Some((attrs, bytes)), object) => Some(Readable {
                attrs,
                payload: Payload::Inline(bytes),
                object,
            }),
            (None, _) => self.payload(&name),
        };
        if let Some(readable) = readable {
            self.publish(name, readable);
        }
    }

    /// A local client withdrew an object of `name`: its export goes
    /// unless it is still the newest on offer here (an older version
    /// went), and the newest left, if any, is exported in its place once
    /// the peers let go of it.
    fn local_withdraw(&mut self, name: &str) {
        let Some(export) = self.exports.get_mut(name) else {
            return;
        };
        let newest = self.control.offered_object(name);
        if export.readable.object.is_some() && newest == export.readable.object {
            return;
        }
        export.superseded |= newest.is_some();
        if !self.withdraw_export(name) {
            self.reexport(name);
        }
    }

    /// Exports `name` again, from a view of its newest object here, once
    /// the export it had is gone: when that one was superseded.
    fn reexport(&mut self, name: &str) {
        if !self.exports.contains_key(name) && self.control.offered_object(name).is_some() {
            self.local_offer(name.to_owned(), None, None);
        }
    }

    /// Exports `name` as `readable` and tells the peers.
    fn publish(&mut self, name: String, readable: Readable) {
        let export = Export {
            readable,
            withdrawal: None,
            superseded: false,
        };
        let msg = offered(&name, &export);
        self.unrequire(&name);
        self.end_seek(&name);
        self.exports.insert(name, export);
        self.broadcast(&msg);
    }

    /// Takes a view of the object on offer here as `name` and makes it
    /// readable by the peers: its bytes, up to the eager limit, or its
    /// memory exposed. `None` (logged) when it is gone or cannot be exposed.
    fn payload(&mut self, name: &str) -> Option<Readable> {
        let id = match self.client.submit_demand(name) {
            Ok(id) => id,
            Err(e) => {
                warn!(%name, error = %e, "cannot demand an object for the peers");
                return None;
            }
        };
        let view = match self.client.wait(id, Some(LOCAL_DEMAND.min(self.timeout))) {
            Ok(Reply::Data(view)) => view,
            Ok(other) => {
                warn!(%name, reply = ?other, "unexpected reply to a demand");
                return None;
            }
            // Withdrawn before we got to it: the manager says so at once.
            Err(ClientError::Pool { code, text }) => {
                debug!(%name, ?code, %text, "object gone before the peers could have it");
                return None;
            }
            Err(e) => {
                // No answer in time: cancel the waiting demand.
                debug!(%name, error = %e, "object not made readable by the peers");
                let _ = self.client.retract(name);
                return None;
            }
        };
        self.payload_of(name, view)
    }

    /// Makes `view`, of the object offered here as `name`, readable by the
    /// peers: its bytes up to the eager limit, or its memory exposed.
    fn payload_of(&mut self, name: &str, view: View) -> Option<Readable> {
        let (attrs, size) = (view.attrs().clone(), view.len() as u64);
        let object = Some(view.object());
        if size <= self.eager_max {
            let bytes = view.to_vec();
            drop(view);
            // Released at once: nothing of this node's is read remotely.
            if let Err(e) = self.client.flush() {
                warn!(error = %e, "cannot release a view");
            }
            let payload = Payload::Inline(bytes);
            return Some(Readable {
                attrs,
                payload,
                object,
            });
        }
        match self.server.expose(name, view) {
            Ok(region) => Some(Readable {
                attrs,
                payload: Payload::Exposed { size, region },
                object,
            }),
            Err(e) => {
                warn!(%name, error = %e, "cannot expose an object to the peers");
                None
            }
        }
    }

    /// The export of `name` is withdrawn here: tell the peers, and keep
    /// its memory exposed until each has answered. True while it waits
    /// for them; false once it is gone (then a superseded export is not
    /// exported again: the caller does that).
    fn withdraw_export(&mut self, name: &str) -> bool {
        let Some(export) = self.exports.get_mut(name) else {
            return false;
        };
        if export.withdrawal.is_some() {
            return true;
        }
        if let Payload::Inline(_) = export.readable.payload {
            // No peer reads this node's memory for it: nothing to wait for.
            self.exports.remove(name);
            self.broadcast(&PeerMsg::Withdrawn { name: name.into() });
            self.publish_status();
            return false;
        }
        let waiting: HashSet<String> = self.links.keys().cloned().collect();
        let none = waiting.is_empty();
        export.withdrawal = Some((Instant::now(), waiting));
        if none {
            self.unexport(name);
            return false;
        }
        self.broadcast(&PeerMsg::Withdrawn { name: name.into() });
        true
    }

    /// Drops an export: unregisters its memory, then releases its view.
    /// True when it was superseded by another version of its name.
    fn unexport(&mut self, name: &str) -> bool {
        let Some(export) = self.exports.remove(name) else {
            return false;
        };
        if let Payload::Exposed { .. } = export.readable.payload {
            self.unexpose(name);
        }
        self.publish_status();
        export.superseded
    }

    /// The peers let go of the withdrawn export of `name` (or did not
    /// answer in time): it goes, and the version that superseded it, if
    /// any, is exported in its place.
    fn release_export(&mut self, name: &str) {
        if self.unexport(name) {
            self.reexport(name);
        }
    }

    /// Unregisters the memory of `name`, then releases its view.
    fn unexpose(&mut self, name: &str) {
        self.server.unexpose(name);
        if let Err(e) = self.client.flush() {
            warn!(error = %e, "cannot release a view");
        }
    }

    /// A peer seeks `name`: answers with this node's copy, if it holds a
    /// complete one (its bytes, or its memory exposed until the peer
    /// answers). The copy is lent, never announced: the peer raises no
    /// event of it and offers it to nobody else.
    fn lend(&mut self, peer: &str, name: String) {
        if let Some(lent) = self.lent.get_mut(&name) {
            lent.readers.insert(peer.into());
            lent.since = Instant::now();
            let msg = carrying(&name, &lent.readable, true);
            return self.send(peer, &msg);
        }
        if self.exports.contains_key(&name) {
            // Announced to the peers already.
            return;
        }
        if !self.copies.contains_key(&name) {
            // No whole copy here (one is offered only once whole): ask
            // this node's librarians, if any.
            let seekers = self.asked.entry(name.clone()).or_default();
            if seekers.insert(peer.into()) && seekers.len() == 1 {
                self.control
                    .raise_remote(EventKind::Require, &name, &Attributes::new(), peer);
            }
            return;
        }
        let Some(readable) = self.payload(&name) else {
            return;
        };
        let msg = carrying(&name, &readable, true);
        if let Payload::Exposed { .. } = readable.payload {
            let lent = Lent {
                readable,
                readers: HashSet::from([peer.to_string()]),
                since: Instant::now(),
            };
            self.lent.insert(name, lent);
        }
        self.send(peer, &msg);
    }

    /// `peer` seeks `name` no more (it has a copy, or its link ended): the
    /// require raised here for the last seeker is retracted.
    fn unask(&mut self, peer: &str, name: &str) {
        let Some(seekers) = self.asked.get_mut(name) else {
            return;
        };
        if seekers.remove(peer) && seekers.is_empty() {
            self.asked.remove(name);
            self.control
                .raise_remote(EventKind::Retract, name, &Attributes::new(), peer);
        }
    }

    /// This node has `name` (a copy, or offers it itself): the peers asked
    /// for it need look no further.
    fn end_seek(&mut self, name: &str) {
        if self.sought.remove(name) {
            self.broadcast(&PeerMsg::Sought { name: name.into() });
        }
    }

    /// Stops lending the copy `name`.
    fn unlend(&mut self, name: &str) {
        if self.lent.remove(name).is_some() {
            self.unexpose(name);
        }
    }

    /// Releases withdrawn exports whose peers did not answer in time.
    fn expire_withdrawals(&mut self) {
        let timeout = self.timeout;
        let overdue: Vec<(String, Vec<String>)> = self
            .exports
            .iter()
            .filter_map(|(name, e)| {
                let (since, waiting) = e.withdrawal.as_ref()?;
                (since.elapsed() >= timeout)
                    .then(|| (name.clone(), waiting.iter().cloned().collect()))
            })
            .collect();
        for (name, peers) in overdue {
            warn!(%name, ?peers, ?timeout, "peers did not answer a withdrawal in time; releasing it");
            self.release_export(&name);
        }
        let overdue: Vec<String> = self
            .lent
            .iter()
            .filter(|(_, l)| l.since.elapsed() >= timeout)
            .map(|(name, _)| name.clone())
            .collect();
        for name in overdue {
            debug!(%name, ?timeout, "a lent copy's readers did not answer in time; releasing it");
            self.unlend(&name);
        }
    }

    fn withdraw_copy(&mut self, name: &str) {
        self.copies.remove(name);
        if self.direct.remove(name) {
            if let Err((code, text)) = self.control.withdraw_copy(name) {
                warn!(%name, ?code, %text, "cannot withdraw a copy");
            }
            return;
        }
        match self.client.submit_withdraw(name) {
            Ok(id) => self.withdrawals.push(id),
            Err(e) => warn!(%name, error = %e, "cannot withdraw a copy"),
        }
    }

    /// Collects the replies of copies' withdrawals (each waits for the
    /// local consumers' views).
    fn poll_withdrawals(&mut self) {
        if self.withdrawals.is_empty() {
            return;
        }
        let client = &mut self.client;
        self.withdrawals
            .retain(|&id| match client.wait_keeping(id, Some(Duration::ZERO)) {
                Err(ClientError::Timeout) => true,
                Ok(_) => false,
                Err(e) => {
                    debug!(error = %e, "a copy's withdrawal failed");
                    false
                }
            });
    }

    /// Reads the peer's object `name` into a segment of this node's pool
    /// and offers it here; when that fails, fails the waiting demands or
    /// seeks a copy elsewhere, by the fault policy.
    fn pull(&mut self, name: &str) {
        // Out of the map while it is read (moving it moves no byte).
        let Some(import) = self.imports.remove(name) else {
            return;
        };
        let result = self.copy_in(
            name,
            &import.peer,
            import.attrs.clone(),
            &import.source,
            false,
        );
        self.imports.insert(name.into(), import);
        match result {
            Ok(()) => self.end_seek(name),
            Err(text) => self.unserved(name, &text),
        }
    }

    /// A peer's copy of `name` (the answer to this node's `Seek`): read
    /// into this node, if it is still sought here and not held yet. The
    /// copy here belongs to the object's node (its withdrawal there
    /// withdraws it here too), not to the peer that lent it.
    fn take_replica(&mut self, lender: &str, name: &str, attrs: Attributes, source: &Source) {
        if self.copies.contains_key(name) || !self.wanted.remove(name) {
            return;
        }
        let origin = match (self.imports.get(name), self.lost.get(name)) {
            (Some(import), _) => import.peer.clone(),
            (None, Some(node)) => node.clone(),
            (None, None) => lender.to_string(),
        };
        match self.copy_in(name, lender, attrs, source, true) {
            Ok(()) => {
                self.copies.insert(name.into(), origin);
                self.unrequire(name);
                self.end_seek(name);
            }
            Err(text) => {
                // Another peer's answer may serve it yet.
                warn!("{text}");
                self.wanted.insert(name.into());
            }
        }
    }

    /// Copies `name` from `source` (held by `peer`) into a segment here
    /// and offers it; the copy is `peer`'s until the caller says
    /// otherwise. Counted in the status at once, as a replica's when
    /// `replica` (so that no snapshot sees the pull without its kind).
    fn copy_in(
        &mut self,
        name: &str,
        peer: &str,
        attrs: Attributes,
        source: &Source,
        replica: bool,
    ) -> Result<(), String> {
        // Either way offered in the manager's request path: no round trip
        // to it.
        let result = match source {
            Source::Inline(bytes) => self
                .control
                .offer_copy(name, attrs, bytes)
                .map_err(|(code, text)| format!("offering it here: {code:?}: {text}")),
            Source::Remote { size, region } => self.read_and_offer(name, *size, attrs, region),
        };
        if result.is_ok() {
            self.direct.insert(name.into());
        }
        let (size, inline) = (source.size(), matches!(source, Source::Inline(_)));
        let mut s = lock(&self.status);
        match result {
            Ok(()) => {
                s.pulls += 1;
                s.pulled_bytes += size;
                s.inline_pulls += u64::from(inline);
                s.replica_pulls += u64::from(replica);
                drop(s);
                self.copies.insert(name.into(), peer.into());
                Ok(())
            }
            Err(why) => {
                s.failed_pulls += 1;
                Err(format!("reading {name} ({size} bytes) from {peer}: {why}"))
            }
        }
    }

    /// No peer could deliver `name` (`text` says why): fail-fast fails the
    /// demands waiting for it; best-effort seeks a copy on the other nodes
    /// and the demands wait (until their own timeout) for one.
    fn unserved(&mut self, name: &str, text: &str) {
        warn!("{text}");
        match self.policy {
            FaultPolicy::FailFast => self
                .control
                .fail_demands(name, ErrorCode::RemoteFailed, text),
            FaultPolicy::BestEffort => self.seek(name),
        }
    }

    /// Asks every peer for a copy of `name`: the first whole one that
    /// arrives serves this node.
    fn seek(&mut self, name: &str) {
        self.wanted.insert(name.into());
        self.sought.insert(name.into());
        self.broadcast(&PeerMsg::Seek { name: name.into() });
    }

    /// Reads `size` bytes at the peer's `region` straight into a slot of
    /// the manager's own segments, and offers them there.
    fn read_and_offer(
        &mut self,
        name: &str,
        size: u64,
        attrs: Attributes,
        region: &RegionDescriptor,
    ) -> Result<(), String> {
        // A large read holds the loop: what the peers are owed goes first.
        self.flush_links();
        let puller = match self.puller.take() {
            Some(t) => t,
            None => Transport::open(self.fabric.clone()).map_err(|e| e.to_string())?,
        };
        let remote = puller.connect(region).map_err(|e| e.to_string())?;
        let mut slot = match self.control.reserve_copy(size) {
            Ok(slot) => slot,
            Err((code, text)) => {
                self.puller = Some(puller);
                return Err(format!("offering it here: {code:?}: {text}"));
            }
        };
        // A failed read closed the transport: the next one opens anew (and
        // the dropped slot goes back to the pool).
        puller
            .read_into(remote, slot.bytes_mut())
            .map_err(|e| e.to_string())?;
        self.puller = Some(puller);
        self.control
            .offer_reserved(name, attrs, slot)
            .map_err(|(code, text)| format!("offering it here: {code:?}: {text}"))
    }

    /// Ends every link, forgets the peers' objects (their withdraw events
    /// tell the subscribers here) and releases every export.
    fn close(mut self) {
        for link in self.links.values() {
            let _ = link.writer.shutdown(std::net::Shutdown::Both);
        }
        self.links.clear();
        lock(&self.linked).clear();
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        let imported: Vec<String> = self.imports.keys().cloned().collect();
        for name in imported {
            self.forget_import(&name);
        }
        let asked: Vec<(String, String)> = self
            .asked
            .iter()
            .flat_map(|(name, seekers)| seekers.iter().map(|p| (p.clone(), name.clone())))
            .collect();
        for (peer, name) in asked {
            self.unask(&peer, &name);
        }
        let names: Vec<String> = self.exports.keys().cloned().collect();
        for name in names {
            self.unexport(&name);
        }
        let lent: Vec<String> = self.lent.keys().cloned().collect();
        for name in lent {
            self.unlend(&name);
        }
        self.publish_status();
    }
}

/// The offer message of an export.
fn offered(name: &str, e: &Export) -> PeerMsg {
    carrying(name, &e.readable, false)
}

/// The message that tells a peer how to take `name`'s bytes: its offer,
/// or (`replica`) the answer to its `Seek`.
fn carrying(name: &str, readable: &Readable, replica: bool) -> PeerMsg {
    let (name, attrs) = (name.to_string(), readable.attrs.clone());
    match (&readable.payload, replica) {
        (Payload::Inline(bytes), false) => PeerMsg::OfferedInline {
            name,
            attrs,
            bytes: bytes.clone(),
        },
        (Payload::Inline(bytes), true) => PeerMsg::ReplicaInline {
            name,
            attrs,
            bytes: bytes.clone(),
        },
        (Payload::Exposed { size, region }, false) => PeerMsg::Offered {
            name,
            attrs,
            size: *size,
            region: region.clone(),
        },
        (Payload::Exposed { size, region }, true) => PeerMsg::Replica {
            name,
            attrs,
            size: *size,
            region: region.clone(),
        },
    }
}

/// Where the bytes of `peer`'s object `name` of `size` bytes are, by its
/// region descriptor (text form); `None` (logged) when malformed.
fn remote_source(peer: &str, name: &str, size: u64, region: &str) -> Option<Source> {
    if size == 0 {
        return Some(Source::Inline(Vec::new()));
    }
    match region.parse::<RegionDescriptor>() {
        Ok(region) => Some(Source::Remote { size, region }),
        Err(e) => {
            warn!(%peer, %name, error = %e, "bad region descriptor; ignored");
            None
        }
    }
}
