//! The control protocol: every message, its framing and its checks, in one place.
//!
//! A frame is an 8-byte header followed by a payload:
//!
//! | bytes | field                                                   |
//! |-------|---------------------------------------------------------|
//! | 0..2  | magic `b"CD"`                                           |
//! | 2     | frame format version ([`FRAME_VERSION`])                |
//! | 3     | number of file descriptors that travel with the frame   |
//! | 4..8  | payload length, little endian, at most [`MAX_FRAME`]     |
//!
//! The payload is a [`Frame`] (request id + [`Msg`]) in the `postcard` format.
//! Why postcard: it is serde-driven (the schema is the Rust types below), its
//! wire format is specified and stable since 1.0, it is compact (varints, no
//! field names) and it decodes from a borrowed slice with bounds checks on
//! every read, so a hostile length prefix cannot make it read out of bounds or
//! preallocate unbounded memory. Descriptors themselves never appear in the
//! payload: they travel as `SCM_RIGHTS` ancillary data, in frame order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::handshake::{Agreed, Hello, Versions};
use crate::config::UnknownAttributes;
use crate::schema::{AttrSpec, Schema};
use crate::value::{Value, ValueType};

/// Version of the frame header layout (byte 2 of every frame).
pub const FRAME_VERSION: u8 = 1;
/// Version of the message schema, exchanged in [`Msg::Join`] (3: WELCOME
/// carries the lease and its page; 4: quota and size errors, queued-bytes
/// and dropped-event counters; 5: queries of the offers, [`Msg::Query`],
/// and [`ErrorCode::InvalidName`]; 6: [`ErrorCode::RemoteFailed`]; 7:
/// [`EventRef::node`], events of objects offered on federated nodes; 8: a
/// [`DataRef`] leaves out the `size` attribute, see [`DataRef::attrs`]; 9:
/// [`Msg::Hello`] negotiates the version and capabilities before JOIN, see
/// [`handshake`](super::handshake), and [`Msg::SubscribeReplay`]). The
/// manager serves protocol 8 too.
pub const PROTOCOL_VERSION: u32 = 9;
/// Magic bytes opening every frame.
pub const MAGIC: [u8; 2] = *b"CD";
/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest accepted payload, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Most descriptors that one frame may carry.
pub const MAX_FDS_PER_FRAME: u8 = 1;

/// Identifier of a request, echoed in its reply; 0 marks unsolicited messages.
pub type RequestId = u64;

/// Attributes of an object: key to typed value, ordered by key.
pub type Attributes = BTreeMap<String, Value>;

/// Where an offered object lies in one of the producer's shared segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// The producer's own identifier of the segment. The descriptor travels
    /// with the first offer naming it; later offers name it only.
    pub segment: u64,
    /// Byte offset of the object in the segment.
    pub offset: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request could not be decoded or is not allowed in this state.
    Protocol,
    /// The client has not joined (or has left).
    NotJoined,
    /// An object of that name is already offered.
    DuplicateName,
    /// No object of that name is offered.
    UnknownName,
    /// The object belongs to another client.
    NotOwner,
    /// The segment is unknown, too small, larger than the manager's limit,
    /// or not sealed against resizing and writing.
    BadSegment,
    /// The producer of the object died before it could be demanded.
    ProducerDied,
    /// The require or demand was retracted.
    Retracted,
    /// The pool manager is shutting down.
    ShuttingDown,
    /// A selector did not parse.
    BadSelector,
    /// An attribute has the wrong type, or is unknown to the schema.
    BadAttributes,
    /// Unknown subscription, or a consumer group joined with another selector.
    BadSubscription,
    /// An acknowledged subscriber did not acknowledge in time (fail-fast
    /// policy); the operation itself took effect.
    AckTimeout,
    /// The client holds as many of something (segments, offers, requires,
    /// waiting demands, held operations, subscriptions) as the manager
    /// allows one client; the request did nothing.
    QuotaExceeded,
    /// The reply would not fit in a frame; the request did nothing.
    TooLarge,
    /// The object name is empty, has an empty path segment or a control
    /// character ([`engine::names`](crate::engine::names)); the request
    /// did nothing.
    InvalidName,
    /// The object is offered on another node, and reading it from there
    /// failed (the node died, was cut off, or did not answer within
    /// `CDO_REMOTE_TIMEOUT_MS`); nothing of it was delivered.
    RemoteFailed,
}

/// Counters of the pool manager, the reply to [`Msg::Stat`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Joined clients.
    pub clients: u64,
    /// Offered objects.
    pub objects: u64,
    /// Shared segments whose descriptor the manager holds.
    pub segments: u64,
    /// Outstanding requires (client, name pairs).
    pub requires: u64,
    /// Demands waiting for an offer.
    pub waiting_demands: u64,
    /// Clients waiting for BYE.
    pub pending_leaves: u64,
    /// Bytes of all offered objects.
    pub offered_bytes: u64,
    /// Event subscriptions and consumer-group memberships.
    pub subscriptions: u64,
    /// Consumer-group records waiting for a member with room.
    pub queued_records: u64,
    /// Events whose acknowledgement an operation awaits.
    pub awaited_acks: u64,
    /// Offers accepted since the manager started.
    pub offers_total: u64,
    /// Views handed out (demands served and group records) since start.
    pub views_total: u64,
    /// Bytes of those views: handed over zero-copy, as shared memory.
    pub view_bytes_total: u64,
    /// Events sent to subscribers since start.
    pub events_total: u64,
    /// Milliseconds since the manager started (for rates).
    pub uptime_ms: u64,
    /// Bytes queued for clients and not yet taken by their sockets.
    pub queued_bytes: u64,
    /// Events not sent because their subscriber's queue was full.
    pub dropped_events: u64,
}

/// Where a demanded object lies: the body of [`Msg::Data`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRef {
    /// The object.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its offset in the segment.
    pub offset: u64,
    /// The manager's identifier of the segment; its descriptor comes with
    /// the first `Data` naming it on this connection.
    pub segment: u64,
    /// The object's attributes but `size`, which is always there and
    /// always [`DataRef::size`] ([`sent_attributes`] and
    /// [`with_size`]): most objects carry no others, and then their
    /// attributes cost nothing to copy, send or receive.
    #[serde(deserialize_with = "super::limits::attributes")]
    pub attrs: Attributes,
    /// The manager's identifier of this offer, for [`Msg::Release`].
    pub object: u64,
}

/// The key of the attribute that holds an object's size.
pub const SIZE_KEY: &str = "size";

/// What [`DataRef::attrs`] carries of an object's attributes `all`: all
/// but `size`.
pub fn sent_attributes(all: &Attributes) -> Attributes {
    all.iter()
        .filter(|(k, _)| *k != SIZE_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The whole attributes of an object of `size` bytes whose
/// [`DataRef::attrs`] are `sent`.
pub fn with_size(mut sent: Attributes, size: u64) -> Attributes {
    sent.insert(SIZE_KEY.into(), Value::UInt(size));
    sent
}

/// What a subscription asks for: the body of [`Msg::Subscribe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeRef {
    /// Selector over the object's name and attributes (grammar in the crate
    /// docs).
    pub selector: String,
    /// Event kinds, as the bits of an [`EventMask`](crate::EventMask).
    pub kinds: u16,
    /// Whether each event holds up the raising operation until acknowledged.
    pub ack: bool,
    /// Consumer group: each matching offer goes to exactly one member, with
    /// its data ([`Msg::Record`]); `kinds` and `ack` are then ignored.
    pub group: Option<String>,
}

/// One pool event: the body of [`Msg::Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRef {
    /// The subscription it matched.
    pub subscription: u64,
    /// The manager's identifier of the event, for [`Msg::Ack`].
    pub event: u64,
    /// What happened.
    pub kind: crate::EventKind,
    /// The object (the component's name for join and leave).
    pub name: String,
    /// The object's attributes (the consumer's for require and retract).
    #[serde(deserialize_with = "super::limits::attributes")]
    pub attrs: Attributes,
    /// The client whose operation raised it; 0 for an event of another
    /// node ([`EventRef::node`]).
    pub client: u64,
    /// Whether the operation waits for [`Msg::Ack`].
    pub needs_ack: bool,
    /// The federated node whose object it concerns (its name among the
    /// peers, see `cdo/FEDERATION.md`), for an event raised here on behalf
    /// of another node; `None` for an event of this node's own clients.
    pub node: Option<String>,
}

/// Every message of the protocol, in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Client → manager, first message of a connection.
    Join {
        /// Name of the joining component.
        component: String,
        /// The workflow's shared secret.
        token: String,
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
    },
    /// Manager → client: joined. The descriptor of the client's lease page
    /// travels with it (see [`lease`](crate::ipc::lease)).
    Welcome {
        /// Identifier of the client in this pool.
        client_id: u64,
        /// The lease: a client whose heartbeat stops this long (in
        /// milliseconds) is dropped as dead.
        lease_ms: u64,
    },
    /// Manager → client: not joined, the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// Client → manager: leave the pool once nobody needs our objects.
    Leave,
    /// Manager → client: left; all remaining offers are withdrawn, and
    /// every earlier request was answered. Later requests on the same
    /// connection are refused with [`ErrorCode::NotJoined`].
    Bye,
    /// Manager → client, interim reply to [`Msg::Leave`]: these objects are
    /// still required by others, or withdrawn and still viewed (the
    /// withdrawal not answered yet); BYE follows when none is.
    Waiting {
        /// Names of the objects that hold the leave.
        names: Vec<String>,
    },
    /// Client → manager: make an object available.
    Offer {
        /// Unique name of the object.
        name: String,
        /// Its attributes.
        #[serde(deserialize_with = "super::limits::attributes")]
        attrs: Attributes,
        /// Its size in bytes.
        size: u64,
        /// Where it lies.
        segment: SegmentRef,
    },
    /// Client → manager: announce that we will demand `name`. Each require
    /// is its own promise: a client that requires a name twice holds its
    /// withdrawal until two demands (or retractions) end them.
    Require {
        /// The object.
        name: String,
    },
    /// Client → manager: give me `name` (waits until it is offered).
    Demand {
        /// The object.
        name: String,
    },
    /// Manager → client: the demanded object.
    Data(DataRef),
    /// Client → manager, no reply: we dropped one view of each of these
    /// objects (ids from [`Msg::Data`]).
    Release {
        /// One entry per dropped view.
        objects: Vec<u64>,
    },
    /// Client → manager: stop offering `name`. The reply comes once no
    /// consumer holds a view of it, so the producer may then reuse its memory.
    Withdraw {
        /// The object.
        name: String,
    },
    /// Client → manager: cancel a require (and waiting demands) of `name`.
    Retract {
        /// The object.
        name: String,
    },
    /// Client → manager: the manager may close its descriptor of a segment
    /// of ours (objects still offered in it stay valid).
    Forget {
        /// The producer's identifier of the segment.
        segment: u64,
    },
    /// Manager → client, unsolicited: a segment mapped earlier is gone from
    /// the pool; the client may unmap it once it holds no view of it.
    SegmentGone {
        /// The manager's identifier of the segment.
        segment: u64,
    },
    /// Manager → client: the request succeeded.
    Ok,
    /// Manager → client: the request failed.
    Error {
        /// Why, for programs.
        code: ErrorCode,
        /// Why, for people.
        text: String,
    },
    /// Client → manager: subscribe to events or join a consumer group.
    Subscribe(SubscribeRef),
    /// Manager → client: the reply to [`Msg::Subscribe`].
    Subscribed {
        /// The subscription's identifier.
        subscription: u64,
    },
    /// Client → manager: end a subscription (its unacknowledged events
    /// count as acknowledged; its group's undone records go to others).
    Unsubscribe {
        /// The subscription.
        subscription: u64,
    },
    /// Manager → client, unsolicited: an event of a subscription.
    Event(EventRef),
    /// Manager → client, unsolicited: a consumer-group record with its
    /// data (the segment's descriptor travels as for [`Msg::Data`]); done
    /// once acknowledged with [`Msg::Ack`].
    Record {
        /// The group subscription.
        subscription: u64,
        /// The delivery's identifier, for [`Msg::Ack`].
        event: u64,
        /// The object.
        data: DataRef,
    },
    /// Client → manager, no reply: an event was handled, or a record done.
    Ack {
        /// The event or record.
        event: u64,
    },
    /// Client → manager: ask for [`Stats`].
    Stat,
    /// Manager → client: the counters (boxed: the largest body by far,
    /// it would make every message as large; same encoding as unboxed).
    Stats(Box<Stats>),
    /// Client → manager: the names on offer whose attributes match
    /// `selector`, in guided-I/O order (by priority, output first, then
    /// name), from the `skip`-th on.
    Query {
        /// The selector (grammar in the crate docs).
        selector: String,
        /// How many matches earlier pages listed.
        skip: u64,
    },
    /// Manager → client: the reply to [`Msg::Query`]: as many names as fit
    /// in a frame.
    Listed {
        /// The names.
        names: Vec<String>,
        /// Whether more matches follow (ask again, skipping these).
        more: bool,
    },
    /// Client → manager, first message of a protocol 9 connection: the
    /// versions and capabilities it speaks (its shape never changes, see
    /// [`handshake`](super::handshake)).
    Hello(Hello),
    /// Manager → client: the reply to [`Msg::Hello`]; JOIN follows with
    /// the agreed version.
    Agreed(Agreed),
    /// Manager → client: the reply to [`Msg::Hello`] when no version is
    /// common; the connection closes.
    NoCommonVersion {
        /// The versions the manager serves.
        theirs: Versions,
    },
    /// Client → manager: as [`Msg::Subscribe`] (a plain subscription, not
    /// a consumer group), first sending an [`EventKind::Offer`] event for
    /// each object on offer that matches, in offer order, then the live
    /// events. Only with the [`Capabilities::REPLAY`] capability agreed.
    ///
    /// [`EventKind::Offer`]: crate::EventKind::Offer
    /// [`Capabilities::REPLAY`]: super::handshake::Capabilities::REPLAY
    SubscribeReplay(SubscribeRef),
    /// Client → manager, no reply: a consumer-group record given to this
    /// client goes back to its group unfinished, at once: another member
    /// gets it (this one only when it is alone), or it waits at the front
    /// of the group's queue. Only with the [`Capabilities::GIVE_BACK`]
    /// capability agreed.
    ///
    /// [`Capabilities::GIVE_BACK`]: super::handshake::Capabilities::GIVE_BACK
    GiveBack {
        /// The record's delivery id, from [`Msg::Record`].
        event: u64,
    },
    /// Manager → client, right after [`Msg::Welcome`] (same request id):
    /// the pool's attribute schema, so that the client checks user
    /// attributes when they are set, as an in-process pool does. Only with
    /// the [`Capabilities::SCHEMA`] capability agreed.
    ///
    /// [`Capabilities::SCHEMA`]: super::handshake::Capabilities::SCHEMA
    Schema(SchemaRef),
    /// Client → manager: a lifecycle step of an object that only the
    /// client sees (a declare, seal or dispose), for the subscribers that
    /// want it. Only with the [`Capabilities::LIFECYCLE`] capability agreed.
    ///
    /// [`Capabilities::LIFECYCLE`]: super::handshake::Capabilities::LIFECYCLE
    Lifecycle(LifecycleRef),
    /// Manager → client, right after [`Msg::Welcome`] and [`Msg::Schema`]
    /// (same request id): the descriptor of the pool's interest page
    /// travels with it (see [`interest`](super::interest)). Only with the
    /// [`Capabilities::LIFECYCLE`] capability agreed.
    ///
    /// [`Capabilities::LIFECYCLE`]: super::handshake::Capabilities::LIFECYCLE
    InterestPage,
    /// Client → manager: [`Msg::Require`] with the consumer handle's
    /// attributes, which the require event carries (as in process). Only
    /// with the [`Capabilities::CONSUMER_ATTRIBUTES`] capability agreed.
    ///
    /// [`Capabilities::CONSUMER_ATTRIBUTES`]: super::handshake::Capabilities::CONSUMER_ATTRIBUTES
    RequireWith(ConsumerRef),
    /// Client → manager: [`Msg::Retract`] with the consumer handle's
    /// attributes, which the retract event carries. Only with the
    /// [`Capabilities::CONSUMER_ATTRIBUTES`] capability agreed.
    ///
    /// [`Capabilities::CONSUMER_ATTRIBUTES`]: super::handshake::Capabilities::CONSUMER_ATTRIBUTES
    RetractWith(ConsumerRef),
    /// Client → manager: [`Msg::Withdraw`] of the object that the client's
    /// request `offer` offered as `name`, where it may have several
    /// versions of the name on offer. Only with the
    /// [`Capabilities::WITHDRAW_OFFER`] capability agreed.
    ///
    /// [`Capabilities::WITHDRAW_OFFER`]: super::handshake::Capabilities::WITHDRAW_OFFER
    WithdrawOffer {
        /// The object's name.
        name: String,
        /// The request that offered it.
        offer: RequestId,
    },
}

/// A require or retract with the consumer handle's attributes
/// ([`Msg::RequireWith`], [`Msg::RetractWith`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRef {
    /// The object.
    pub name: String,
    /// The consumer handle's attributes, flat.
    #[serde(deserialize_with = "super::limits::attributes")]
    pub attrs: Attributes,
}

/// The body of [`Msg::Lifecycle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRef {
    /// What happened: [`EventKind::Declare`](crate::EventKind::Declare),
    /// [`Seal`](crate::EventKind::Seal) or
    /// [`Dispose`](crate::EventKind::Dispose); other kinds are refused.
    pub kind: crate::EventKind,
    /// The object.
    pub name: String,
    /// Its attributes at that step (none at a declare).
    #[serde(deserialize_with = "super::limits::attributes")]
    pub attrs: Attributes,
    /// Whether the client waits for a reply (sent once the acknowledged
    /// subscribers have acknowledged, or their timeout passed). Without it
    /// the manager sends none, errors included, and no event it raises
    /// waits for an acknowledgement.
    pub wait: bool,
}

/// The body of [`Msg::Schema`]: the manager's schema and what it does with
/// user attributes that the schema does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRef {
    /// Whether unknown user attributes are rejected (otherwise dropped).
    pub reject_unknown: bool,
    /// Every key the schema knows; none when the manager's schema declares
    /// none (then it checks no user attribute).
    pub keys: Vec<SchemaKey>,
}

impl SchemaRef {
    /// What a manager with `schema` (one without keys lets every key
    /// pass as it is) and the `unknown` setting sends.
    pub fn new(schema: &Schema, unknown: UnknownAttributes) -> SchemaRef {
        let keys = schema
            .specs()
            .map(|(key, spec)| SchemaKey {
                key,
                ty: spec.ty.name().to_owned(),
                items: spec.items.map(|t| t.name().to_owned()),
                required: spec.required,
            })
            .collect();
        SchemaRef {
            reject_unknown: unknown == UnknownAttributes::Reject,
            keys,
        }
    }

    /// The schema and setting received (an empty schema when the manager
    /// has none: it checks no user attribute).
    ///
    /// # Errors
    /// [`crate::Error::Schema`] for an unknown type name or a bad key.
    pub fn schema(&self) -> crate::Result<(Schema, UnknownAttributes)> {
        let origin = "the pool manager's schema";
        let ty = |name: &str| {
            ValueType::from_name(name).ok_or_else(|| crate::Error::Schema {
                origin: origin.to_owned(),
                message: format!("unknown type {name:?}"),
            })
        };
        let specs = self
            .keys
            .iter()
            .map(|k| {
                Ok((
                    k.key.clone(),
                    AttrSpec {
                        ty: ty(&k.ty)?,
                        items: k.items.as_deref().map(ty).transpose()?,
                        required: k.required,
                    },
                ))
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let unknown = match self.reject_unknown {
            true => UnknownAttributes::Reject,
            false => UnknownAttributes::Drop,
        };
        Ok((Schema::from_specs(specs, origin)?, unknown))
    }
}

/// One key of a [`SchemaRef`]; types by their schema names (`uint`,
/// `list`, ...), so that a later type is a clear error, not a shifted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaKey {
    /// The full key, `namespace.key`.
    pub key: String,
    /// Its type's name.
    pub ty: String,
    /// A list's element type name, if constrained.
    pub items: Option<String>,
    /// Whether it must be set before an offer.
    pub required: bool,
}

/// One decoded frame: a message and the request it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The request id (0 for unsolicited messages).
    pub id: RequestId,
    /// The message.
    pub msg: Msg,
}

/// Why bytes could not be read as a frame, or a frame not written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame does not start with [`MAGIC`].
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    /// The header's version is not [`FRAME_VERSION`].
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// The header announces more descriptors than allowed.
    #[error("{0} descriptors announced, at most {MAX_FDS_PER_FRAME} allowed")]
    TooManyFds(u8),
    /// The payload is larger than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// Announced or encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: {have} of {need} bytes")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The payload is not a valid [`Frame`].
    #[error("malformed payload: {0}")]
    Payload(#[from] postcard::Error),
    /// The payload decoded but left bytes unread.
    #[error("{0} trailing bytes after the payload")]
    TrailingBytes(usize),
    /// A whole frame whose payload is not a valid [`Frame`] (or leaves bytes
    /// unread); the stream is still in step after skipping it.
    #[error("frame {id:?} refused: {error}")]
    BadPayload {
        /// The frame's request id, when the payload starts with one.
        id: Option<RequestId>,
        /// Bytes of the frame, header included, to skip it.
        consumed: usize,
        /// Descriptors announced with it (to drop).
        fds: u8,
        /// Why it was refused.
        error: Box<WireError>,
    },
}

/// Lets postcard append to a borrowed buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Appends the encoding of `frame` carrying `fds` descriptors to `out`.
///
/// On error `out` is left as it was.
pub fn encode(frame: &Frame, fds: u8, out: &mut Vec<u8>) -> Result<(), WireError> {
    if fds > MAX_FDS_PER_FRAME {
        return Err(WireError::TooManyFds(fds));
    }
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(FRAME_VERSION);
    out.push(fds);
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = postcard::to_extend(frame, Append(out)) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(WireError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A frame read from a buffer, with what the reader needs next.
#[derive(Debug)]
pub struct Decoded {
    /// The frame.
    pub frame: Frame,
    /// How many descriptors travel with it.
    pub fds: u8,
    /// Bytes of `buf` it used (header included).
    pub consumed: usize,
}

/// Checks a frame header against a payload limit of `max` bytes and
/// returns (payload length, descriptor count).
fn check_header(head: &[u8; HEADER_LEN], max: usize) -> Result<(usize, u8), WireError> {
    if head[0..2] != MAGIC {
        return Err(WireError::BadMagic([head[0], head[1]]));
    }
    if head[2] != FRAME_VERSION {
        return Err(WireError::UnsupportedVersion(head[2]));
    }
    if head[3] > MAX_FDS_PER_FRAME {
        return Err(WireError::TooManyFds(head[3]));
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > max {
        return Err(WireError::Oversized { len, max });
    }
    Ok((len, head[3]))
}

/// Decodes the first frame of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a (so far valid) frame:
/// the caller reads more, or reports [`WireError::Truncated`] at end of stream
/// (see [`need`]). A bad header is rejected as soon as its 8 bytes are there.
///
/// A whole frame whose payload does not decode is refused with
/// [`WireError::BadPayload`], which tells how to skip it.
pub fn decode(buf: &[u8]) -> Result<Option<Decoded>, WireError> {
    decode_limited(buf, MAX_FRAME)
}

/// [`decode`] with payloads of at most `max` bytes (at most [`MAX_FRAME`]):
/// a longer one is refused as soon as its header is there.
pub fn decode_limited(buf: &[u8], max: usize) -> Result<Option<Decoded>, WireError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let (len, fds) = check_header(head, max.min(MAX_FRAME))?;
    let Some(payload) = buf[HEADER_LEN..].get(..len) else {
        return Ok(None);
    };
    let consumed = HEADER_LEN + len;
    let refused = |error: WireError| WireError::BadPayload {
        id: postcard::take_from_bytes::<RequestId>(payload)
            .ok()
            .map(|(id, _)| id),
        consumed,
        fds,
        error: Box::new(error),
    };
    let (frame, rest) =
        postcard::take_from_bytes::<Frame>(payload).map_err(|e| refused(e.into()))?;
    if !rest.is_empty() {
        return Err(refused(WireError::TrailingBytes(rest.len())));
    }
    Ok(Some(Decoded {
        frame,
        fds,
        consumed,
    }))
}

/// Decodes `bytes` as exactly one whole frame (header and payload): the
/// entry point for checking the decoder against arbitrary input.
///
/// # Errors
/// Any [`WireError`]: a bad header, a bad payload, a truncated frame, or
/// bytes after the frame ([`WireError::TrailingBytes`]).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    match decode(bytes)? {
        None => Err(need(bytes).unwrap_or(WireError::Truncated {
            have: 0,
            need: HEADER_LEN,
        })),
        Some(d) if d.consumed < bytes.len() => {
            Err(WireError::TrailingBytes(bytes.len() - d.consumed))
        }
        Some(d) => Ok(d.frame),
    }
}

/// The error for a stream that ended with `buf` unconsumed: `None` when `buf`
/// is empty (a clean end), a [`WireError`] otherwise.
pub fn need(buf: &[u8]) -> Option<WireError> {
    if buf.is_empty() {
        return None;
    }
    let need = match buf.first_chunk::<HEADER_LEN>() {
        None => HEADER_LEN,
        Some(head) => match check_header(head, MAX_FRAME) {
            Ok((len, _)) => HEADER_LEN + len,
            Err(e) => return Some(e),
        },
    };
    Some(WireError::Truncated {
        have: buf.len(),
        need,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        let mut attrs = Attributes::new();
        attrs.insert("step".into(), Value::UInt(7));
        attrs.insert("dt".into(), Value::Float(0.5));
        Frame {
            id: 42,
            msg: Msg::Offer {
                name: "rho".into(),
                attrs,
                size: 4096,
                segment: SegmentRef {
                    segment: 3,
                    offset: 8192,
                },
            },
        }
    }

    #[test]
    fn a_schema_travels_whole_and_a_later_type_is_a_clear_error() {
        let mut schema = Schema::default();
        schema
            .add_yaml(
                "namespace: app\nattributes:\n  step: {type: uint, required: true}\n  tags: {type: list, items: str}\n",
                "test",
            )
            .unwrap();
        let sent = SchemaRef::new(&schema, UnknownAttributes::Drop);
        let mut buf = Vec::new();
        let frame = Frame {
            id: 1,
            msg: Msg::Schema(sent.clone()),
        };
        encode(&frame, 0, &mut buf).unwrap();
        let Msg::Schema(got) = decode(&buf).unwrap().unwrap().frame.msg else {
            panic!("a schema message");
        };
        assert_eq!(got, sent);
        let (back, unknown) = got.schema().unwrap();
        assert_eq!(back, schema);
        assert_eq!(unknown, UnknownAttributes::Drop);
        let (none, unknown) = SchemaRef::new(&Schema::default(), UnknownAttributes::Reject)
            .schema()
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(unknown, UnknownAttributes::Reject);
        let mut later = sent;
        later.keys[0].ty = "quaternion".into();
        assert!(matches!(later.schema(), Err(crate::Error::Schema { .. })));
    }

    #[test]
    fn round_trip_and_streaming() {
        let mut buf = Vec::new();
        encode(&sample(), 1, &mut buf).unwrap();
        encode(
            &Frame {
                id: 0,
                msg: Msg::Bye,
            },
            0,
            &mut buf,
        )
        .unwrap();
        for cut in 0..buf.len() {
            let got = decode(&buf[..cut]).unwrap();
            let first_len = decode(&buf).unwrap().unwrap().consumed;
            assert_eq!(got.is_some(), cut >= first_len, "cut {cut}");
        }
        let a = decode(&buf).unwrap().unwrap();
        assert_eq!(a.frame, sample());
        assert_eq!(a.fds, 1);
        let b = decode(&buf[a.consumed..]).unwrap().unwrap();
        assert_eq!(b.frame.msg, Msg::Bye);
        assert_eq!(a.consumed + b.consumed, buf.len());
        assert!(need(&buf[..3]).is_some());
        assert!(need(&[]).is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut buf = Vec::new();
        encode(&sample(), 0, &mut buf).unwrap();
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(WireError::BadMagic(_))));
        let mut bad = buf.clone();
        bad[2] = 9;
        assert!(matches!(
            decode(&bad),
            Err(WireError::UnsupportedVersion(9))
        ));
        let mut bad = buf.clone();
        bad[3] = 5;
        assert!(matches!(decode(&bad), Err(WireError::TooManyFds(5))));
        let mut bad = buf.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(WireError::Oversized { .. })));
        let mut bad = buf.clone();
        let len = u32::from_le_bytes(bad[4..8].try_into().unwrap()) - 1;
        bad[4..8].copy_from_slice(&len.to_le_bytes());
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn refuses_to_encode_oversized() {
        let frame = Frame {
            id: 1,
            msg: Msg::Refused {
                reason: "x".repeat(MAX_FRAME + 1),
            },
        };
        let mut buf = vec![1, 2, 3];
        assert!(matches!(
            encode(&frame, 0, &mut buf),
            Err(WireError::Oversized { .. })
        ));
        assert_eq!(buf, [1, 2, 3]);
    }
}
