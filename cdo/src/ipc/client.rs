//! What an application links to join a pool, offer objects and demand them.
//!
//! Every operation exists in two forms: a blocking one (`offer`, `demand`,
//! ...) and a pipelined one (`submit_*` returns a [`RequestId`], [`Client::wait`]
//! collects its reply), so many operations can share one round trip. The
//! `*_many` helpers do exactly that.
//!
//! Offered bytes live in the producer's [`SegmentPool`]; a demanded object is
//! a [`View`] of the producer's memory, mapped read-only: no copy, and only
//! the pages that hold the object (never its neighbours'). Dropped
//! views are reported to the manager with the consumer's next request (or
//! [`Client::flush`]); a withdrawal is answered only once no view of the
//! object remains, and only then does the producer reuse the object's slot.
//! A view therefore always shows the bytes that were offered.
//!
//! Events and group records ([`Notice`]s) wait in the client until taken,
//! at most [`ClientConfig::max_notices`] of them. At that bound the client
//! stops reading its socket rather than drop any: the manager then holds
//! further replies and stops reading this client's requests (and beyond
//! its own bound drops events for it), and a call waiting for a reply
//! fails with [`ClientError::NoticesFull`] until notices are taken with
//! [`Client::next_notice`] or [`Client::poll_notice`].

use crate::config::UnknownAttributes;
use crate::events::{EventKind, EventMask};
use crate::ipc::fasthash::{FastMap, FastSet};
use crate::schema::Schema;
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::debug;

use super::conn::{ConnError, Reader, Writer};
use super::endpoint::Endpoint;
use super::handshake::{Capabilities, Hello, Versions};
use super::interest::InterestPage;
use super::lease::{Heartbeat, Lease, LeasePage};
use super::mapcache::MapCache;
use super::pool::{PoolConfig, SegmentPool, Slot};
use super::shm::{identity, ReadOnlyMap, ReceivedSegment};
use super::wire::{
    with_size, Attributes, ConsumerRef, DataRef, ErrorCode, EventRef, Frame, LifecycleRef, Msg,
    RequestId, SchemaRef, SegmentRef, Stats, SubscribeRef,
};

/// Environment variable giving the default timeout of blocking operations
/// (offer, require, withdraw, ...) in milliseconds.
pub const OP_TIMEOUT_ENV: &str = "CDO_OP_TIMEOUT_MS";
/// Default timeout of blocking operations.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound of the notices waiting in a client.
pub const DEFAULT_MAX_NOTICES: usize = 65_536;

/// How a [`Client`] joins.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The manager's socket and the workflow token.
    pub endpoint: Endpoint,
    /// Name of this component, for the manager's logs.
    pub component: String,
    /// Tuning of the producer-side segment pool.
    pub pool: PoolConfig,
    /// Most requests in flight before submitting waits for replies.
    pub window: usize,
    /// How long a blocking operation without its own timeout waits for
    /// its reply.
    pub op_timeout: Duration,
    /// Most events and records waiting to be taken (see the module docs).
    pub max_notices: usize,
    /// Whether this client's own requires hold its withdrawals of the
    /// objects they were matched with, as another client's do
    /// ([`Capabilities::OWN_REQUIRES`]; off by default, and with a manager
    /// that predates it). An application's [`Pool`](crate::app::Pool)
    /// asks for it, so that its handles behave as in process.
    pub own_requires: bool,
}

impl ClientConfig {
    /// A configuration with default tuning.
    pub fn new(endpoint: Endpoint, component: &str) -> Self {
        ClientConfig {
            endpoint,
            component: component.into(),
            pool: PoolConfig::default(),
            window: 1024,
            op_timeout: DEFAULT_OP_TIMEOUT,
            max_notices: DEFAULT_MAX_NOTICES,
            own_requires: false,
        }
    }

    /// The configuration named by `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN`
    /// (and [`OP_TIMEOUT_ENV`] when set to a number).
    pub fn from_env(component: &str) -> Option<Self> {
        Some(Self::new(Endpoint::from_env()?, component).with_env())
    }

    /// This configuration with the tuning the environment sets applied
    /// ([`OP_TIMEOUT_ENV`] when set to a number), for an endpoint found
    /// elsewhere.
    pub fn with_env(mut self) -> Self {
        if let Some(ms) = std::env::var(OP_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            self.op_timeout = Duration::from_millis(ms);
        }
        self
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed; the client is unusable.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The manager refused to let us join.
    #[error("refused by the pool manager: {0}")]
    Refused(String),
    /// The manager answered with an error.
    #[error("{code:?}: {text}")]
    Pool {
        /// Why, for programs.
        code: ErrorCode,
        /// Why, for people.
        text: String,
    },
    /// No reply came in time.
    #[error("timed out")]
    Timeout,
    /// LEAVE timed out while others still require these objects (or
    /// still view these withdrawn ones).
    #[error("still required by others: {0:?}")]
    StillRequired(Vec<String>),
    /// Shared memory could not be created or mapped.
    #[error("shared memory: {0}")]
    Shm(#[source] std::io::Error),
    /// The manager sent something that makes no sense here.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// This many events and records wait to be taken: the client reads no
    /// more until some are (the request stays with the manager; a blocking
    /// call abandons it as on a timeout).
    #[error("{0} notices wait to be taken; take them before waiting for replies")]
    NoticesFull(usize),
    /// The manager speaks no protocol version that this client speaks
    /// (it closed the connection).
    #[error("no common protocol version: this client speaks {ours}, the pool manager {theirs}")]
    NoCommonVersion {
        /// The versions this client speaks.
        ours: Versions,
        /// The versions the manager serves.
        theirs: Versions,
    },
    /// The operation needs a capability that the manager did not agree
    /// to; nothing was sent.
    #[error("the pool manager did not agree to the {0} capability")]
    NotAgreed(Capabilities),
}

/// Object ids of dropped views, reported with the client's next flush.
type ReleaseQueue = Arc<Mutex<Vec<u64>>>;

/// Most object ids in one RELEASE frame (well under the frame size limit).
const RELEASES_PER_FRAME: usize = 10_000;
/// How long a client waiting for a reply looks for it before it sleeps.
const LOOK_FOR_REPLY: Duration = Duration::from_micros(30);

/// A demanded object: a read-only view of the producer's memory.
///
/// Dropping it tells the manager (with the client's next request or
/// [`Client::flush`]) that we are done, which lets the producer's withdrawal
/// complete and its memory be reused.
#[derive(Debug)]
pub struct View {
    /// The object's own pages, nothing of its neighbours.
    map: ReadOnlyMap,
    name: String,
    /// The attributes as sent, without `size` ([`DataRef::attrs`]).
    sent: Attributes,
    /// All of them, made from `sent` when first asked for.
    attrs: OnceLock<Attributes>,
    object: u64,
    released: ReleaseQueue,
}

impl Drop for View {
    fn drop(&mut self) {
        self.released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.object);
    }
}

impl View {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's attributes (`size` among them).
    pub fn attrs(&self) -> &Attributes {
        self.attrs
            .get_or_init(|| with_size(self.sent.clone(), self.map.bytes().len() as u64))
    }

    /// The manager's identifier of the object (unique for the manager's
    /// life, greater for a later offer).
    pub fn object(&self) -> u64 {
        self.object
    }

    /// `(st_dev, st_ino)` of the shared memory behind the view.
    pub fn segment_identity(&self) -> std::io::Result<(u64, u64)> {
        identity(self.map.fd())
    }
}

impl std::ops::Deref for View {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.bytes()
    }
}

impl AsFd for Client {
    /// The connection to the manager, to wait for its replies and notices
    /// with `poll` alongside other sources (then take them with
    /// [`Client::poll_notice`] or [`Client::wait`]).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.reader.socket().as_fd()
    }
}

/// The reply to one request.
#[derive(Debug)]
pub enum Reply {
    /// Done.
    Ok,
    /// The demanded object.
    Data(View),
    /// The manager's counters (boxed, as in [`Msg::Stats`]: every reply
    /// would be as large).
    Stats(Box<Stats>),
    /// Left the pool.
    Bye,
    /// Subscribed, with this id.
    Subscribed(u64),
    /// A page of the names a query matched.
    Listed {
        /// The names.
        names: Vec<String>,
        /// Whether more follow.
        more: bool,
    },
}

/// A consumer-group record: an offered object given to this member only.
///
/// Finish with [`Client::done`], or hand it back unfinished with
/// [`Client::give_back`] (another member gets it at once); a record only
/// dropped, or held by a member that leaves or dies, goes to another
/// member when its member leaves.
#[derive(Debug)]
pub struct GroupRecord {
    /// The group subscription it came through.
    pub subscription: u64,
    /// The delivery's identifier.
    pub event: u64,
    /// The object's data and attributes (a zero-copy view).
    pub view: View,
}

/// What the pool sends without being asked.
#[derive(Debug)]
pub enum Notice {
    /// An event of a subscription; acknowledge it with [`Client::ack`] when
    /// `needs_ack` is set (its operation waits).
    Event(EventRef),
    /// A record of a consumer group this client is a member of.
    Record(GroupRecord),
}

impl Notice {
    /// The subscription it came through.
    pub fn subscription(&self) -> u64 {
        match self {
            Notice::Event(e) => e.subscription,
            Notice::Record(r) => r.subscription,
        }
    }
}

/// Our offers of one name: one, or several versions (under
/// `duplicates: version`); the older ones allocate nothing until there
/// are some.
struct Offered {
    newest: (RequestId, Slot),
    older: Vec<(RequestId, Slot)>,
}

impl Offered {
    /// A newer version.
    fn push(&mut self, offer: (RequestId, Slot)) {
        let older = std::mem::replace(&mut self.newest, offer);
        self.older.push(older);
    }
}

/// A joined member of a pool.
pub struct Client {
    reader: Reader,
    writer: Writer,
    client_id: u64,
    next_id: RequestId,
    window: usize,
    in_flight: usize,
    read_timeout: Option<Duration>,
    pool: SegmentPool,
    /// Producer segments whose descriptor the manager holds.
    registered: FastSet<u64>,
    /// Our objects on offer by name, each with the request that offered it.
    offers: FastMap<Arc<str>, Offered>,
    /// Offers not answered yet (one name allocation shared with `offers`).
    pending_offers: FastMap<RequestId, Arc<str>>,
    /// Offers not answered yet that carried a segment's descriptor: if
    /// refused, the next offer in that segment sends it again.
    pending_fds: FastMap<RequestId, u64>,
    /// Slots of withdrawn objects, reused once the withdrawal is answered.
    withdrawing: FastMap<RequestId, Slot>,
    released: ReleaseQueue,
    /// The segments the manager sent, by its segment id.
    segments: FastMap<u64, Arc<ReceivedSegment>>,
    /// Mappings of their pages, reused across views.
    maps: MapCache,
    replies: FastMap<RequestId, Result<Reply, ClientError>>,
    ignored: FastSet<RequestId>,
    leave: Option<(RequestId, Vec<String>)>,
    op_timeout: Duration,
    /// Events and records received, not yet taken.
    notices: VecDeque<Notice>,
    max_notices: usize,
    /// The capabilities agreed with the manager.
    capabilities: Capabilities,
    /// The manager's attribute rules, when it sent them.
    schema: Option<ManagerSchema>,
    /// The pool's interest in lifecycle events, when the manager sent its
    /// page.
    interest: Option<Arc<InterestPage>>,
    /// Keeps our lease with the manager while we live (never read: its
    /// thread stops when it is dropped).
    _heartbeat: Option<Heartbeat>,
}

/// The attribute rules of the manager a client joined.
#[derive(Debug, Clone)]
pub struct ManagerSchema {
    /// Its schema (empty when it checks no user attribute).
    pub schema: Arc<Schema>,
    /// What it does with user attributes that its schema does not know.
    pub unknown: UnknownAttributes,
}

impl ManagerSchema {
    fn new(received: &SchemaRef) -> Result<ManagerSchema, ClientError> {
        let (schema, unknown) = received
            .schema()
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        Ok(ManagerSchema {
            schema: Arc::new(schema),
            unknown,
        })
    }
}

impl Client {
    /// Connects to the manager and joins the pool.
    pub fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        let sock = UnixStream::connect(&config.endpoint.socket).map_err(ConnError::from)?;
        let mut client = Client {
            reader: Reader::new(sock.try_clone().map_err(ConnError::from)?),
            writer: Writer::new(sock),
            client_id: 0,
            next_id: 1,
            window: config.window.max(2),
            in_flight: 0,
            read_timeout: None,
            pool: SegmentPool::new(config.pool),
            registered: FastSet::default(),
            offers: FastMap::default(),
            pending_offers: FastMap::default(),
            pending_fds: FastMap::default(),
            withdrawing: FastMap::default(),
            released: ReleaseQueue::default(),
            segments: FastMap::default(),
            maps: MapCache::default(),
            replies: FastMap::default(),
            ignored: FastSet::default(),
            leave: None,
            op_timeout: config.op_timeout,
            notices: VecDeque::new(),
            max_notices: config.max_notices.max(1),
            capabilities: Capabilities::NONE,
            schema: None,
            interest: None,
            _heartbeat: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut hello = Hello::ours();
        if !config.own_requires {
            hello.capabilities = hello.capabilities.without(Capabilities::OWN_REQUIRES);
        }
        let ours = hello.versions;
        let sent = client
            .submit(Msg::Hello(hello), None)
            .and_then(|id| client.flush().map(|()| id));
        // A manager that refuses us at once (a wrong uid) may close the
        // socket before HELLO is written: its REFUSED is still to be read.
        let frame = match (sent, client.read_frame(Some(deadline))) {
            (sent, Ok((frame, _))) => {
                if sent.is_ok() {
                    client.in_flight -= 1;
                }
                // A refusal may come before our HELLO was read (id 0).
                match frame.msg {
                    refused @ Msg::Refused { .. } => Some(refused),
                    msg if sent.is_ok_and(|id| id == frame.id) => Some(msg),
                    _ => None,
                }
            }
            (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
        };
        let version = match frame {
            Some(Msg::Agreed(agreed)) => {
                client.capabilities = agreed.capabilities;
                agreed.version
            }
            Some(Msg::NoCommonVersion { theirs }) => {
                return Err(ClientError::NoCommonVersion { ours, theirs })
            }
            Some(Msg::Refused { reason }) => return Err(ClientError::Refused(reason)),
            Some(other) => return Err(ClientError::Unexpected(format!("{other:?}"))),
            None => {
                return Err(ClientError::Unexpected(
                    "a reply to another request than HELLO".into(),
                ))
            }
        };
        let join = Msg::Join {
            component: config.component.clone(),
            token: config.endpoint.token.clone(),
            version,
        };
        let id = client.submit(join, None)?;
        client.flush()?;
        let (frame, fd) = client.read_frame(Some(deadline))?;
        client.in_flight -= 1;
        match frame.msg {
            Msg::Welcome {
                client_id,
                lease_ms,
            } if frame.id == id => {
                let page = fd.ok_or_else(|| {
                    ClientError::Unexpected("WELCOME without its lease page".into())
                })?;
                let page = LeasePage::open(page).map_err(ClientError::Shm)?;
                let beat = Lease::tick(Duration::from_millis(lease_ms));
                let heartbeat = Heartbeat::start(page, beat).map_err(ConnError::from)?;
                client._heartbeat = Some(heartbeat);
                client.client_id = client_id;
            }
            Msg::Refused { reason } => return Err(ClientError::Refused(reason)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        if client.capabilities.contains(Capabilities::SCHEMA) {
            let (frame, _) = client.read_frame(Some(deadline))?;
            client.schema = match frame.msg {
                Msg::Schema(schema) if frame.id == id => Some(ManagerSchema::new(&schema)?),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            };
        }
        if client.capabilities.contains(Capabilities::LIFECYCLE) {
            let (frame, fd) = client.read_frame(Some(deadline))?;
            let page = match (frame.msg, fd) {
                (Msg::InterestPage, Some(fd)) if frame.id == id => fd,
                (other, _) => return Err(ClientError::Unexpected(format!("{other:?}"))),
            };
            let page = InterestPage::open(page).map_err(ClientError::Shm)?;
            client.interest = Some(Arc::new(page));
        }
        Ok(client)
    }

    /// The page in which the manager publishes which lifecycle events its
    /// subscribers want, when it agreed to send it
    /// ([`Capabilities::LIFECYCLE`]); one atomic load reads it, without
    /// this client.
    pub fn interest_page(&self) -> Option<&Arc<InterestPage>> {
        self.interest.as_ref()
    }

    /// Tells the manager of a lifecycle step (`kind`: declare, seal or
    /// dispose) of `name`, with its attributes, as far as the pool's
    /// subscribers want it ([`interest`](super::interest)):
    /// - nobody wants it, or the manager did not agree to
    ///   [`Capabilities::LIFECYCLE`]: nothing is sent, `Ok(None)`;
    /// - no acknowledged subscriber wants it: it is sent, not answered,
    ///   `Ok(None)`;
    /// - otherwise it is a request whose reply comes once those subscribers
    ///   acknowledged (or their timeout passed): `Ok(Some(id))`, to take
    ///   with [`Client::wait`].
    ///
    /// Queued, as the other `submit_` calls: sent by the next
    /// [`Client::flush`] or wait.
    ///
    /// # Errors
    /// The connection's errors.
    pub fn submit_lifecycle(
        &mut self,
        kind: EventKind,
        name: &str,
        attrs: Attributes,
    ) -> Result<Option<RequestId>, ClientError> {
        let Some(wait) = self.interest.as_ref().and_then(|p| p.get().wants(kind)) else {
            return Ok(None);
        };
        let msg = Msg::Lifecycle(LifecycleRef {
            kind,
            name: name.to_owned(),
            attrs,
            wait,
        });
        if wait {
            return self.submit(msg, None).map(Some);
        }
        // Not answered: no request id.
        self.writer
            .push(&Frame { id: 0, msg }, None)
            .map_err(ConnError::from)?;
        Ok(None)
    }

    /// The attribute rules of the manager, when it agreed to send them
    /// ([`Capabilities::SCHEMA`]): with them the client checks user
    /// attributes as the manager will.
    pub fn schema(&self) -> Option<&ManagerSchema> {
        self.schema.as_ref()
    }

    /// Our id in the pool.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The capabilities agreed with the manager when joining.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// How long blocking operations without their own timeout wait.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Queues a request; flushes and collects replies when the window is full.
    fn submit(&mut self, msg: Msg, fd: Option<Arc<OwnedFd>>) -> Result<RequestId, ClientError> {
        if self.in_flight >= self.window {
            self.flush()?;
            while self.in_flight >= self.window / 2 {
                self.receive_one(None, None)?;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .push(&Frame { id, msg }, fd)
            .map_err(ConnError::from)?;
        self.in_flight += 1;
        if self.writer.queued() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(id)
    }

    /// Sends every queued request, and reports the views dropped so far.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let released =
            std::mem::take(&mut *self.released.lock().unwrap_or_else(PoisonError::into_inner));
        for objects in released.chunks(RELEASES_PER_FRAME) {
            let msg = Msg::Release {
                objects: objects.to_vec(),
            };
            // No reply comes to RELEASE.
            self.writer
                .push(&Frame { id: 0, msg }, None)
                .map_err(ConnError::from)?;
        }
        self.send_queued()
    }

    /// Sends every queued frame. While the socket takes no more (the
    /// manager stops reading a client whose replies pile up), reads what
    /// the manager sent meanwhile, so that neither waits for the other.
    ///
    /// # Errors
    /// The connection's error; [`ClientError::NoticesFull`] when what
    /// waits to be read is held up by untaken notices (the rest of the
    /// queue is sent by a later flush).
    fn send_queued(&mut self) -> Result<(), ClientError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        while !self.writer.try_flush()? {
            let sock = self.writer.socket().as_fd();
            let mut fds = [PollFd::new(sock, PollFlags::POLLOUT | PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(ConnError::from(e).into()),
            }
            let readable = fds[0].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            });
            if readable {
                self.take_incoming()?;
            }
        }
        Ok(())
    }

    /// Reads and files every frame already waiting, without blocking.
    fn take_incoming(&mut self) -> Result<(), ClientError> {
        self.reader.try_fill()?;
        loop {
            match self.receive_one(Some(Instant::now()), None) {
                Ok(_) => {}
                Err(ClientError::Timeout) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues an offer of `size` bytes written by `fill` (which sees exactly
    /// `size` bytes of shared memory).
    pub fn submit_offer(
        &mut self,
        name: &str,
        size: u64,
        attrs: Attributes,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<RequestId, ClientError> {
        let filled = self.try_submit_offer(name, size, attrs, |dst| {
            fill(dst);
            Ok::<(), std::convert::Infallible>(())
        })?;
        Ok(filled.unwrap_or_else(|never| match never {}))
    }

    /// Queues an offer of `size` bytes written by `fill`, which may fail:
    /// then nothing is offered, the memory goes back to the pool and
    /// `fill`'s error is returned (inside `Ok`; the outer error is the
    /// client's). A consumer never sees an object whose filling failed.
    pub fn try_submit_offer<E>(
        &mut self,
        name: &str,
        size: u64,
        attrs: Attributes,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Result<RequestId, E>, ClientError> {
        // Several versions of a name need withdrawals that name the one.
        let versions = self.capabilities.contains(Capabilities::WITHDRAW_OFFER);
        if !versions && self.offers.contains_key(name) {
            return Err(ClientError::Pool {
                code: ErrorCode::DuplicateName,
                text: name.into(),
            });
        }
        let slot = self.pool.alloc(size).map_err(ClientError::Shm)?;
        let seg = self
            .pool
            .segment(slot.segment)
            .expect("allocated slots have a segment");
        // SAFETY: the pool hands out disjoint slots, and this slot is not
        // offered (so no consumer reads it) until the offer below is sent.
        if let Err(e) = fill(unsafe { seg.bytes_mut(slot.offset, size) }) {
            self.reuse(slot)?;
            return Ok(Err(e));
        }
        let fd = self
            .registered
            .insert(slot.segment)
            .then(|| seg.fd().clone());
        let msg = Msg::Offer {
            name: name.into(),
            attrs,
            size,
            segment: SegmentRef {
                segment: slot.segment,
                offset: slot.offset,
            },
        };
        let segment = slot.segment;
        let name: Arc<str> = name.into();
        let sent_fd = fd.is_some().then_some(segment);
        let id = self.submit(msg, fd)?;
        match self.offers.get_mut(&name) {
            Some(offered) => offered.push((id, slot)),
            None => {
                let offered = Offered {
                    newest: (id, slot),
                    older: Vec::new(),
                };
                self.offers.insert(name.clone(), offered);
            }
        }
        self.pending_offers.insert(id, name);
        if let Some(segment) = sent_fd {
            self.pending_fds.insert(id, segment);
        }
        Ok(Ok(id))
    }

    /// Offers `bytes` (copied once into shared memory) under `name`.
    pub fn offer(
        &mut self,
        name: &str,
        bytes: &[u8],
        attrs: Attributes,
    ) -> Result<(), ClientError> {
        self.offer_with(name, bytes.len() as u64, attrs, |dst| {
            dst.copy_from_slice(bytes)
        })
    }

    /// Offers `size` bytes written in place by `fill`.
    pub fn offer_with(
        &mut self,
        name: &str,
        size: u64,
        attrs: Attributes,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), ClientError> {
        let id = self.submit_offer(name, size, attrs, fill)?;
        self.expect_ok(id)
    }

    /// Offers every `(name, bytes)` pair in one round trip.
    pub fn offer_many<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), ClientError> {
        let ids = items
            .into_iter()
            .map(|(name, bytes)| {
                self.submit_offer(name, bytes.len() as u64, Attributes::new(), |dst| {
                    dst.copy_from_slice(bytes)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.expect_all_ok(ids)
    }

    /// Queues a demand of `name`.
    pub fn submit_demand(&mut self, name: &str) -> Result<RequestId, ClientError> {
        self.submit(Msg::Demand { name: name.into() }, None)
    }

    /// Waits up to `timeout` for `name` and returns a view of it.
    pub fn demand(&mut self, name: &str, timeout: Duration) -> Result<View, ClientError> {
        let id = self.submit_demand(name)?;
        self.flush()?;
        self.expect_data(id, Some(timeout))
    }

    /// Demands all `names` in one round trip; waits up to `timeout` in all.
    pub fn demand_many(
        &mut self,
        names: &[&str],
        timeout: Duration,
    ) -> Result<Vec<View>, ClientError> {
        let deadline = Instant::now() + timeout;
        let ids = names
            .iter()
            .map(|n| self.submit_demand(n))
            .collect::<Result<Vec<_>, _>>()?;
        self.flush()?;
        ids.into_iter()
            .map(|id| {
                self.expect_data(id, Some(deadline.saturating_duration_since(Instant::now())))
            })
            .collect()
    }

    /// Queues a require of `name` (we will demand it; the producer cannot
    /// leave before we do).
    pub fn submit_require(&mut self, name: &str) -> Result<RequestId, ClientError> {
        self.submit(Msg::Require { name: name.into() }, None)
    }

    /// [`Client::submit_require`], with the consumer's attributes for the
    /// require event, as in process. They travel only when the manager
    /// agreed to [`Capabilities::CONSUMER_ATTRIBUTES`]; with an older one
    /// the event has none.
    pub fn submit_require_with(
        &mut self,
        name: &str,
        attrs: Attributes,
    ) -> Result<RequestId, ClientError> {
        let msg = self.consumer_msg(name, attrs, Msg::RequireWith, |name| Msg::Require { name });
        self.submit(msg, None)
    }

    /// `with` the consumer's attributes when the manager agreed to
    /// [`Capabilities::CONSUMER_ATTRIBUTES`], else `plain` (the name alone).
    fn consumer_msg(
        &self,
        name: &str,
        attrs: Attributes,
        with: fn(ConsumerRef) -> Msg,
        plain: fn(String) -> Msg,
    ) -> Msg {
        match self
            .capabilities
            .contains(Capabilities::CONSUMER_ATTRIBUTES)
        {
            true => with(ConsumerRef {
                name: name.into(),
                attrs,
            }),
            false => plain(name.into()),
        }
    }

    /// Declares that we will demand `name`. Each require is its own
    /// promise: one demand or retraction ends one of them.
    pub fn require(&mut self, name: &str) -> Result<(), ClientError> {
        let id = self.submit_require(name)?;
        self.expect_ok(id)
    }

    /// Cancels our require of `name` and our waiting demands of it.
    pub fn retract(&mut self, name: &str) -> Result<(), ClientError> {
        let id = self.submit_retract(name)?;
        self.expect_ok(id)
    }

    /// Queues the retraction of our require of `name` (and of our waiting
    /// demands of it).
    pub fn submit_retract(&mut self, name: &str) -> Result<RequestId, ClientError> {
        self.submit(Msg::Retract { name: name.into() }, None)
    }

    /// [`Client::submit_retract`], with the consumer's attributes for the
    /// retract event (as [`Client::submit_require_with`]).
    pub fn submit_retract_with(
        &mut self,
        name: &str,
        attrs: Attributes,
    ) -> Result<RequestId, ClientError> {
        let msg = self.consumer_msg(name, attrs, Msg::RetractWith, |name| Msg::Retract { name });
        self.submit(msg, None)
    }

    /// Queues the withdrawal of our object `name`. It waits, still on
    /// offer, while another client requires the name (until it demands or
    /// retracts) and until the object's minimum lifetime (`lifetime_ms`)
    /// ends, as in one process; then its reply (and the reuse of its
    /// memory) waits until no consumer holds a view of it. Of several
    /// versions of the name on offer, our newest is withdrawn.
    pub fn submit_withdraw(&mut self, name: &str) -> Result<RequestId, ClientError> {
        let id = self.submit(Msg::Withdraw { name: name.into() }, None)?;
        if let Some((_, slot)) = self.take_offer(name, |_| true) {
            self.withdrawing.insert(id, slot);
        }
        Ok(id)
    }

    /// [`Client::submit_withdraw`] of the object our request `offer`
    /// offered as `name`, one of several versions of the name. A manager
    /// that did not agree to [`Capabilities::WITHDRAW_OFFER`] took only
    /// one offer of the name: it is withdrawn.
    pub fn submit_withdraw_offer(
        &mut self,
        name: &str,
        offer: RequestId,
    ) -> Result<RequestId, ClientError> {
        if !self.capabilities.contains(Capabilities::WITHDRAW_OFFER) {
            return self.submit_withdraw(name);
        }
        let msg = Msg::WithdrawOffer {
            name: name.into(),
            offer,
        };
        let id = self.submit(msg, None)?;
        if let Some((_, slot)) = self.take_offer(name, |request| request == offer) {
            self.withdrawing.insert(id, slot);
        }
        Ok(id)
    }

    /// Takes the newest of our offers of `name` whose request passes
    /// `which` off the books.
    fn take_offer(
        &mut self,
        name: &str,
        which: impl Fn(RequestId) -> bool,
    ) -> Option<(RequestId, Slot)> {
        let offered = self.offers.get_mut(name)?;
        if which(offered.newest.0) {
            return match offered.older.pop() {
                Some(older) => Some(std::mem::replace(&mut offered.newest, older)),
                None => self.offers.remove(name).map(|o| o.newest),
            };
        }
        let i = offered
            .older
            .iter()
            .rposition(|&(request, _)| which(request))?;
        Some(offered.older.remove(i))
    }

    /// Returns a withdrawn object's slot to the pool and asks the manager to
    /// close the segments the pool dropped.
    fn reuse(&mut self, slot: Slot) -> Result<(), ClientError> {
        self.pool.release(slot);
        for segment in self.pool.take_dropped() {
            if self.registered.remove(&segment) {
                let id = self.next_id;
                self.next_id += 1;
                let msg = Msg::Forget { segment };
                self.writer
                    .push(&Frame { id, msg }, None)
                    .map_err(ConnError::from)?;
                self.in_flight += 1;
                self.ignored.insert(id);
            }
        }
        Ok(())
    }

    /// Withdraws our object `name`, waiting up to the operation timeout
    /// (see [`Client::submit_withdraw`] for what it waits for; to wait
    /// longer, as for a long lifetime, submit it and wait with
    /// [`Client::wait_keeping`]).
    ///
    /// # Errors
    /// [`ErrorCode::UnknownName`], [`ErrorCode::NotOwner`];
    /// [`ClientError::Timeout`] when it still waits (it goes on).
    pub fn withdraw(&mut self, name: &str) -> Result<(), ClientError> {
        let id = self.submit_withdraw(name)?;
        self.expect_ok(id)
    }

    /// Withdraws all `names` in one round trip.
    pub fn withdraw_many(&mut self, names: &[&str]) -> Result<(), ClientError> {
        let ids = names
            .iter()
            .map(|n| self.submit_withdraw(n))
            .collect::<Result<Vec<_>, _>>()?;
        self.expect_all_ok(ids)
    }

    fn subscribe_with(&mut self, req: SubscribeRef) -> Result<u64, ClientError> {
        self.subscribe_msg(Msg::Subscribe(req))
    }

    fn subscribe_msg(&mut self, msg: Msg) -> Result<u64, ClientError> {
        let id = self.submit(msg, None)?;
        match self.wait(id, Some(self.op_timeout))? {
            Reply::Subscribed(sub) => Ok(sub),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Subscribes to the events of `kinds` whose object matches `selector`
    /// (grammar in the crate docs); they arrive through
    /// [`Client::next_notice`]. With `ack`, each event holds up the
    /// operation that raised it until [`Client::ack`] (or the manager's
    /// acknowledgement timeout): do not raise events your own acknowledged
    /// subscription selects while nobody reads it.
    ///
    /// # Errors
    /// [`ErrorCode::BadSelector`] (with the position) for a bad selector.
    pub fn subscribe(
        &mut self,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> Result<u64, ClientError> {
        self.subscribe_with(SubscribeRef {
            selector: selector.into(),
            kinds: kinds.bits(),
            ack,
            group: None,
        })
    }

    /// [`Client::subscribe`] for a subscriber that joins late: first an
    /// [`EventKind::Offer`] event for each object on offer that matches
    /// `selector`, in offer order, then the live
    /// events, as [`Pool::subscribe_replay`](crate::Pool::subscribe_replay)
    /// in one process. Replayed events hold up no operation, so they never
    /// need acknowledging; nothing is replayed unless `kinds` has
    /// `Offer`. Objects of other federated nodes are not replayed.
    ///
    /// # Errors
    /// [`ClientError::NotAgreed`] when the manager did not agree to
    /// [`Capabilities::REPLAY`]; those of [`Client::subscribe`].
    pub fn subscribe_replay(
        &mut self,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> Result<u64, ClientError> {
        if !self.capabilities.contains(Capabilities::REPLAY) {
            return Err(ClientError::NotAgreed(Capabilities::REPLAY));
        }
        self.subscribe_msg(Msg::SubscribeReplay(SubscribeRef {
            selector: selector.into(),
            kinds: kinds.bits(),
            ack,
            group: None,
        }))
    }

    /// Joins consumer group `group`: from now on every offer matching
    /// `selector` goes to exactly one member of the group, with its data
    /// ([`Notice::Record`]). Every member of a group uses the same selector.
    ///
    /// # Errors
    /// [`ErrorCode::BadSelector`]; [`ErrorCode::BadSubscription`] when the
    /// group selects with another selector.
    pub fn join_group(&mut self, group: &str, selector: &str) -> Result<u64, ClientError> {
        self.subscribe_with(SubscribeRef {
            selector: selector.into(),
            kinds: EventMask::NONE.bits(),
            ack: false,
            group: Some(group.into()),
        })
    }

    /// Ends subscription `subscription`; its events and records not yet
    /// taken are dropped here (the group gives undone records to others).
    pub fn unsubscribe(&mut self, subscription: u64) -> Result<(), ClientError> {
        let id = self.submit(Msg::Unsubscribe { subscription }, None)?;
        self.expect_ok(id)?;
        self.notices.retain(|n| n.subscription() != subscription);
        // The views of its records never taken go back now, not with this
        // client's next request (a withdrawal waits for them).
        self.flush()
    }

    /// The next event or group record, waiting up to `timeout` (forever for
    /// `None`); `Ok(None)` when none came in time.
    pub fn next_notice(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Notice>, ClientError> {
        self.flush()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(n) = self.notices.pop_front() {
                return Ok(Some(n));
            }
            match self.receive_one(deadline, None) {
                Ok(_) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(ClientError::Conn(ConnError::Io(e)))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next event or group record already received or waiting on the
    /// socket, without blocking.
    pub fn poll_notice(&mut self) -> Result<Option<Notice>, ClientError> {
        self.flush()?;
        self.reader.try_fill()?;
        loop {
            if let Some(n) = self.notices.pop_front() {
                return Ok(Some(n));
            }
            match self.receive_one(Some(Instant::now()), None) {
                Ok(_) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Acknowledges event `event` (sent at once: its operation waits).
    pub fn ack(&mut self, event: u64) -> Result<(), ClientError> {
        self.writer
            .push(
                &Frame {
                    id: 0,
                    msg: Msg::Ack { event },
                },
                None,
            )
            .map_err(ConnError::from)?;
        self.flush()
    }

    /// Finishes a group record: its view is dropped and the group told.
    pub fn done(&mut self, record: GroupRecord) -> Result<(), ClientError> {
        let event = record.event;
        drop(record.view);
        self.ack(event)
    }

    /// Gives a group record back unfinished: another member of the group
    /// gets it now (this client only when it is the group's only member),
    /// as a record dropped in one process does. With a manager that did
    /// not agree to [`Capabilities::GIVE_BACK`] the view is only dropped,
    /// and the record goes to another member when this one leaves.
    pub fn give_back(&mut self, record: GroupRecord) -> Result<(), ClientError> {
        let event = record.event;
        drop(record.view);
        if self.capabilities.contains(Capabilities::GIVE_BACK) {
            let frame = Frame {
                id: 0,
                msg: Msg::GiveBack { event },
            };
            self.writer.push(&frame, None).map_err(ConnError::from)?;
        }
        self.flush()
    }

    /// The names on offer whose attributes match `selector`, in guided-I/O
    /// order (by priority, output first, then name), as
    /// [`Pool::offers`](crate::Pool::offers) lists them in one process.
    ///
    /// # Errors
    /// [`ErrorCode::BadSelector`] (with the position) for a bad selector.
    pub fn query(&mut self, selector: &str) -> Result<Vec<String>, ClientError> {
        let mut names = Vec::new();
        loop {
            let msg = Msg::Query {
                selector: selector.into(),
                skip: names.len() as u64,
            };
            let id = self.submit(msg, None)?;
            match self.wait(id, Some(self.op_timeout))? {
                Reply::Listed { names: page, more } => {
                    names.extend(page);
                    if !more {
                        return Ok(names);
                    }
                }
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    /// The manager's counters.
    pub fn stats(&mut self) -> Result<Stats, ClientError> {
        let id = self.submit(Msg::Stat, None)?;
        self.flush()?;
        match self.wait(id, Some(Duration::from_secs(10)))? {
            Reply::Stats(s) => Ok(*s),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// `(st_dev, st_ino)` of the shared memory holding our offered `name`.
    pub fn offered_identity(&self, name: &str) -> Option<(u64, u64)> {
        let (_, slot) = &self.offers.get(name)?.newest;
        identity(self.pool.segment(slot.segment)?.fd().as_fd()).ok()
    }

    /// Leaves the pool once no other client requires our objects and our
    /// withdrawals are answered, waiting up to `timeout`; on [`ClientError::StillRequired`] the request stays
    /// pending and calling `leave` again keeps waiting for it.
    pub fn leave(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let id = match &self.leave {
            Some((id, _)) => *id,
            None => {
                let id = self.submit(Msg::Leave, None)?;
                self.leave = Some((id, Vec::new()));
                id
            }
        };
        self.flush()?;
        match self.wait_keeping(id, Some(timeout)) {
            Ok(Reply::Bye) => {
                self.leave = None;
                Ok(())
            }
            Err(ClientError::Timeout) => {
                let names = self
                    .leave
                    .as_ref()
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                Err(ClientError::StillRequired(names))
            }
            Ok(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` (forever for `None`) for the reply to `id`.
    ///
    /// On [`ClientError::Timeout`] the request is abandoned: a late reply is
    /// dropped (a late view is released at once).
    pub fn wait(&mut self, id: RequestId, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let reply = self.wait_keeping(id, timeout);
        if matches!(
            reply,
            Err(ClientError::Timeout | ClientError::NoticesFull(_))
        ) {
            self.ignored.insert(id);
        }
        reply
    }

    /// [`Client::wait`], but on [`ClientError::Timeout`] the request stays
    /// pending: a later wait still gets its reply. Lets a caller wait in
    /// slices and check on other things in between.
    pub fn wait_keeping(
        &mut self,
        id: RequestId,
        timeout: Option<Duration>,
    ) -> Result<Reply, ClientError> {
        self.flush()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(reply) = self.replies.remove(&id) {
                return reply;
            }
            match self.receive_one(deadline, Some(id)) {
                Ok(Some(reply)) => return reply,
                Err(ClientError::Conn(ConnError::Io(e)))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Timeout);
                }
                Err(e) => return Err(e),
                Ok(None) => {}
            }
        }
    }

    fn expect_ok(&mut self, id: RequestId) -> Result<(), ClientError> {
        match self.wait(id, Some(self.op_timeout))? {
            Reply::Ok => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    fn expect_all_ok(&mut self, ids: Vec<RequestId>) -> Result<(), ClientError> {
        self.flush()?;
        let mut first = Ok(());
        for id in ids {
            let r = self.expect_ok(id);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn expect_data(
        &mut self,
        id: RequestId,
        timeout: Option<Duration>,
    ) -> Result<View, ClientError> {
        match self.wait(id, timeout)? {
            Reply::Data(view) => Ok(view),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        if self.read_timeout != t {
            self.reader
                .socket()
                .set_read_timeout(t)
                .map_err(ConnError::from)?;
            self.read_timeout = t;
        }
        Ok(())
    }

    /// The next frame; blocks (until `deadline`, if any) only when none is
    /// buffered, so the socket timeout is set once per read, not per frame.
    fn read_frame(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(Frame, Option<OwnedFd>), ClientError> {
        loop {
            if let Some(f) = self.reader.next_buffered()? {
                return Ok(f);
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(ClientError::Timeout),
                },
            };
            self.set_timeout(left)?;
            self.reader.fill_after_look(LOOK_FOR_REPLY)?;
        }
    }

    /// Reads one frame and files its reply, or returns it if it answers `want`.
    fn receive_one(
        &mut self,
        deadline: Option<Instant>,
        want: Option<RequestId>,
    ) -> Result<Option<Result<Reply, ClientError>>, ClientError> {
        if self.notices.len() >= self.max_notices {
            return Err(ClientError::NoticesFull(self.notices.len()));
        }
        let (frame, fd) = self.read_frame(deadline)?;
        let id = frame.id;
        let reply = match frame.msg {
            Msg::SegmentGone { segment } => {
                self.segments.remove(&segment);
                self.maps.forget(segment);
                return Ok(None);
            }
            Msg::Event(event) => {
                self.notices.push_back(Notice::Event(event));
                return Ok(None);
            }
            Msg::Record {
                subscription,
                event,
                data,
            } => {
                let object = data.object;
                match self.view(data, fd) {
                    Ok(view) => self.notices.push_back(Notice::Record(GroupRecord {
                        subscription,
                        event,
                        view,
                    })),
                    // Not done: the manager gives it to another member once
                    // this one leaves; report the view it counted as dropped.
                    Err(e) => {
                        debug!(error = %e, "cannot map a group record");
                        self.release_unviewed(object);
                    }
                }
                return Ok(None);
            }
            Msg::Waiting { names } => {
                debug!(?names, "leave waits for consumers");
                if let Some((_, waiting)) = self.leave.as_mut() {
                    *waiting = names;
                }
                return Ok(None);
            }
            Msg::Ok => Ok(Reply::Ok),
            Msg::Bye => Ok(Reply::Bye),
            Msg::Stats(s) => Ok(Reply::Stats(s)),
            Msg::Subscribed { subscription } => Ok(Reply::Subscribed(subscription)),
            Msg::Listed { names, more } => Ok(Reply::Listed { names, more }),
            Msg::Data(data) => {
                let object = data.object;
                let view = self.view(data, fd).map(Reply::Data);
                if view.is_err() {
                    self.release_unviewed(object);
                }
                view
            }
            Msg::Error { code, text } => Err(ClientError::Pool { code, text }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(slot) = self.withdrawing.remove(&id) {
            self.reuse(slot)?;
        }
        if let Some(name) = self.pending_offers.remove(&id) {
            // An offer whose acknowledgements timed out is still offered.
            let offered = matches!(
                reply,
                Ok(_)
                    | Err(ClientError::Pool {
                        code: ErrorCode::AckTimeout,
                        ..
                    })
            );
            if !offered {
                if let Some((_, slot)) = self.take_offer(&name, |request| request == id) {
                    self.pool.release(slot);
                }
                // The manager may not have kept the descriptor.
                if let Some(segment) = self.pending_fds.remove(&id) {
                    self.registered.remove(&segment);
                }
            }
            self.pending_fds.remove(&id);
        }
        if want == Some(id) {
            return Ok(Some(reply));
        }
        if !self.ignored.remove(&id) {
            self.replies.insert(id, reply);
        }
        Ok(None)
    }

    /// Reports a view the manager counted but that could not be made.
    fn release_unviewed(&self, object: u64) {
        self.released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(object);
    }

    fn view(&mut self, data: DataRef, fd: Option<OwnedFd>) -> Result<View, ClientError> {
        let DataRef {
            name,
            size,
            offset,
            segment,
            attrs,
            object,
        } = data;
        let received = match fd {
            Some(fd) => {
                let received = Arc::new(ReceivedSegment::new(fd).map_err(ClientError::Shm)?);
                self.segments.insert(segment, Arc::clone(&received));
                received
            }
            None => self.segments.get(&segment).cloned().ok_or_else(|| {
                ClientError::Unexpected(format!("segment {segment} never received"))
            })?,
        };
        let map = self
            .maps
            .view(segment, &received, offset, size)
            .map_err(ClientError::Shm)?;
        Ok(View {
            map,
            name,
            sent: attrs,
            attrs: OnceLock::new(),
            object,
            released: self.released.clone(),
        })
    }
}
