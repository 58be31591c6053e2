//! The same-node, cross-process side of the CDO pool: a control protocol over
//! a Unix socket and a zero-copy data plane in sealed shared memory.
//!
//! - [`wire`]: every message and its framing;
//! - [`handshake`]: the protocol version and capabilities a connection
//!   agrees on (HELLO, since protocol 9);
//! - [`limits`]: bounds on names, attributes and selectors from clients;
//! - [`conn`]: frames and descriptors over a Unix stream socket;
//! - [`shm`]: memfd segments, seals, read-only mappings;
//! - [`pool`]: the producer's pool of pre-faulted segments;
//! - [`registry`]: the manager's store of offers (swappable);
//! - [`manager`]: the pool manager, in-process or as the `cdo-pm` binary;
//! - [`client`]: what an application links to offer and demand objects;
//! - [`lease`]: client heartbeats and the manager's leases on them;
//! - [`interest`]: which lifecycle events (declare, seal, dispose) the
//!   pool's subscribers want, in a page every client reads;
//! - [`page`]: one shared page of atomic words (leases, interest);
//! - [`components`]: the librarian (binary `cdo-librarian`) and what the
//!   `cdo-archiver` binary shares with it (its archiver is
//!   [`app::Archiver`](crate::app::Archiver));
//! - [`convert`]: a demanded view copied into another space, tier or order;
//! - [`endpoint`]: where the manager listens and how clients find it;
//! - [`fasthash`]: the hasher of the maps on the request path;
//! - [`federation`]: pool managers on several nodes as one pool (fabric
//!   reads between nodes).
//!
//! ## Segments
//!
//! The manager accepts a segment only if it is a memfd sealed against
//! growing, shrinking and writing (`F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`)
//! and no larger than [`ManagerConfig::max_segment_bytes`](manager::ManagerConfig)
//! (`CDO_MAX_SEGMENT_BYTES`, `cdo-pm --max-segment-bytes`, default 16 GiB);
//! otherwise the offer fails with `BadSegment`. A consumer checks the seals
//! again and maps, pre-faulted, only the pages that hold the object it was
//! given: it cannot read a neighbouring object of the same segment, and a
//! tiny object in a huge sparse segment costs it one page.
//!
//! ## Liveness
//!
//! Every client holds a lease ([`lease`]): a heartbeat thread of the client
//! library bumps a counter in a page shared with the manager every quarter
//! lease, whether or not the application calls the pool, so a client that
//! computes for hours is never taken for dead. A client whose heartbeat
//! stops for a whole lease (SIGSTOP, a debugger, a process hung hard) is
//! dropped exactly like one whose connection ended: its views, requires and
//! subscriptions go, its undone group records go to other members, and its
//! offers follow the fault policy (`ProducerDied` or waiting for another
//! source). The lease is [`ManagerConfig::lease`](manager::ManagerConfig)
//! (`CDO_LEASE_MS`, `cdo-pm --lease-ms`, default 10 s).
//!
//! ## The control path of a hand-off
//!
//! A hand-off is three requests (offer, demand, withdraw), each answered,
//! plus the consumer's report of its dropped view. Every request can be
//! pipelined (`submit_*`, `*_many`), so a batch of a few hundred small
//! objects costs a handful of `sendmsg`/`recvmsg` calls in all, not a few
//! per object: the descriptor of a segment travels once, a consumer maps
//! the pages of a reused slot once (its cache of mappings), and a producer
//! reuses its slots. What remains of a small object's cost is the work on
//! each message, spread over four threads in turn (the producer, its
//! connection thread in the manager, the consumer's, the consumer):
//! decoding, the lookups by name, the manager's bookkeeping under its lock,
//! the allocations of names, encoding the replies. Of what a profile found
//! there, these are gone: a message was as large as its largest
//! body, the 17 counters of `Stats`, so each of its half-dozen moves
//! between decoding and sending was a `memmove` call (14% of the CPU);
//! those counters are now boxed. The manager copied every object's
//! attributes into each `Data` reply, and the consumer decoded them, for
//! the `size` attribute alone in the usual case: a [`DataRef`](wire::DataRef)
//! now leaves `size` out (protocol 8; it is the `size` field) and a
//! [`View`](client::View) puts it back only when its attributes are asked
//! for. And the registry no longer allocates per offered name, nor does a
//! demand copy its name into the reply; the manager reads the clock once
//! per chunk, not per request. Each request still carries its object's
//! name, decoded into a new `String` and looked up by name; ids after the
//! first lookup would save those. The manager sends what each chunk of 32
//! requests produced before it handles the next chunk, so a pipelining
//! client works on the first replies while the manager handles the rest
//! of its batch; sending a whole batch's replies at once saves system
//! calls and wake-ups but loses that overlap, and measured slower for
//! batches of 4 KiB hand-offs.
//!
//! ## A killed pool manager
//!
//! The manager keeps its state in memory only; there is no journal. When
//! it dies, the kernel closes every client's socket, so every call of
//! every client (a waiting `demand`, `wait`, `next_notice`, `leave`, and
//! any later one) fails at once with [`ClientError::Conn`](client::ClientError)
//! (`ConnError::Closed` or a broken pipe), never a hang. Views already
//! taken stay valid (the memory is the producers'). Recovery is a restart:
//! start a new `cdo-pm` (it prints new `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` lines; remove the dead one's socket directory),
//! connect new clients, and have producers offer again what consumers still
//! need (a librarian serves again what an archiver kept); consumers require
//! and demand again.

pub mod client;
pub mod components;
pub mod conn;
pub mod convert;
pub mod endpoint;
pub mod fasthash;
pub mod federation;
pub mod handshake;
pub mod interest;
pub mod lease;
pub mod limits;
pub mod manager;
mod mapcache;
pub mod page;
pub mod pool;
pub use crate::engine::registry;
pub mod shm;
pub mod wire;
