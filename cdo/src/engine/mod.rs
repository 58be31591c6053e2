//! The CDO marketplace as a pure engine that a host drives.
//!
//! The engine keeps the books of a pool: who is a client, what is on offer
//! under which name (and which version), who requires or demands what, who
//! holds views of which object, which withdrawals and leaves must wait,
//! subscriptions, consumer groups, acknowledgements and per-client quotas.
//! It does no I/O, starts no threads, holds no file descriptors and never
//! reads the clock (time is an argument): a host turns what its clients
//! send into operations ([`Engine::join`], [`Engine::handle`],
//! [`Engine::disconnect`], [`Engine::expire`], [`Engine::shut_down`]) and
//! carries out the [`Effect`]s they return, addressed to client ids.
//!
//! Operations are the protocol's [`Msg`] values (with the request id the
//! reply must carry); effects are messages to send, possibly with the
//! descriptor of a shared segment, and segments the host may close.
//! Segments are named by [`SegmentKey`]s the engine assigns; the host maps
//! them to its descriptors and checks what only the descriptor can tell
//! (seals, size) through the [`SegmentCheck`] it passes with an offer.
//!
//! - `market`: the engine itself (offers, demands, views, requires,
//!   leaves), with `market::segments` (segments by key) and
//!   `market::held` (replies held for acknowledgements);
//! - [`registry`]: offered objects by name (exact names, versions);
//! - `subs`: subscriptions, consumer groups, acknowledgements, with
//!   `groups` (one consumer group's books, which the in-process pool
//!   keeps too);
//! - `market::proxies`: consumer groups across nodes (proxy members of
//!   other nodes' members, records forwarded from other nodes, and the
//!   [`GroupNote`]s that tell the federation);
//! - `quota`: per-client quotas and the limits they enforce;
//! - [`names`]: what may name a CDO (one rule for both deployments);
//! - `rules`: the other rules of an offer that both deployments apply
//!   (second offers, version numbers, minimum lifetimes);
//! - `tombstones`: names whose producer died, bounded (see
//!   [`TOMBSTONES_KEPT`]).

pub(crate) mod groups;
mod market;
pub mod names;
mod quota;
pub mod registry;
pub(crate) mod rules;
mod subs;
mod tombstones;

use std::sync::Arc;
use std::time::Duration;

use crate::config::UnknownAttributes;
use crate::events::EventMask;
use crate::ipc::interest::Interest;
use crate::ipc::wire::{Msg, RequestId};
use crate::schema::Schema;

pub use market::{Engine, GroupNote};
pub use quota::Limits;
pub use registry::ClientId;
pub use subs::{Forwarded, GROUP_WINDOW, MAX_PROXY_WEIGHT};
pub use tombstones::TOMBSTONES_KEPT;

/// The engine's name of a shared segment; the host maps it to its
/// descriptor.
pub type SegmentKey = u64;

/// Checks the segment that came with an offer (seals, size: what only its
/// descriptor tells) and returns its length in bytes, or why it is refused.
/// The engine calls it at most once, after the checks that need no
/// descriptor.
pub type SegmentCheck<'a> = &'a mut dyn FnMut() -> Result<u64, String>;

/// What the host must do after an operation, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `msg` to client `to` as the answer to its request `id` (`0`:
    /// unsolicited), with the descriptor of `segment` when there is one.
    Send {
        /// The receiving client.
        to: ClientId,
        /// The request answered, or `0`.
        id: RequestId,
        /// The message.
        msg: Msg,
        /// A segment whose descriptor goes with the message.
        segment: Option<SegmentKey>,
    },
    /// Keep the descriptor that came with the request just handled as
    /// `segment` (it passed its [`SegmentCheck`] and was accepted).
    Keep {
        /// The key it is known by from now on.
        segment: SegmentKey,
    },
    /// Segment `segment` is no longer needed: close its descriptor.
    Close {
        /// The segment.
        segment: SegmentKey,
    },
    /// The subscribers' interest in lifecycle events changed: publish it
    /// to the clients (see [`interest`](crate::ipc::interest)) before
    /// sending the messages of this operation.
    Interest(Interest),
    /// The lifecycle kinds this node's own subscribers take (those of
    /// every client but the mirror) changed: a federation tells the other
    /// nodes, whose clients' steps of these kinds it then forwards here.
    LocalInterest(EventMask),
}

/// How long an operation waits for its acknowledged subscribers unless
/// configured otherwise, in either deployment.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the pool does when part of an operation fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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

/// What happens to the offers of a producer that leaves or dies: through
/// a pool manager, its client goes; in process, its application's
/// [`app::Pool`](crate::app::Pool) is dropped (handles declared on a bare
/// [`crate::Pool`] belong to no application, which never goes).
/// Configured as `producer_exit` in a
/// [`PoolConfig`](crate::PoolConfig), for either deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProducerExit {
    /// Its offers are withdrawn with it (those still viewed stay readable
    /// until the last view goes), and a demand of a name whose producer
    /// died fails under the fail-fast policy: the fail-fast choice.
    #[default]
    Withdraw,
    /// Its offers that have a minimum lifetime (`lifetime_ms`) still to
    /// run outlive it: the pool keeps the sealed segment that holds them
    /// and serves them until the lifetime has ended and no other client
    /// requires them, then withdraws them as if their producer had
    /// (Maestro's offer-and-exit, R1.7/R1.8). A leave does not wait for
    /// them. Offers without a lifetime are withdrawn as under
    /// [`ProducerExit::Withdraw`].
    Keep,
}

impl std::str::FromStr for ProducerExit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "withdraw" => Ok(ProducerExit::Withdraw),
            "keep" => Ok(ProducerExit::Keep),
            other => Err(format!(
                "unknown producer exit {other:?} (expected withdraw or keep)"
            )),
        }
    }
}

/// The engine's policies.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// What to do when acknowledgements time out or a producer died.
    pub policy: FaultPolicy,
    /// How long an operation waits for its acknowledged subscribers.
    pub ack_timeout: Duration,
    /// Schema of user attributes (`ns.key`); one that declares no key (the
    /// default) lets them pass as they are. Built-in attributes are always
    /// type-checked.
    pub schema: Arc<Schema>,
    /// What happens to user attributes the schema does not know.
    pub unknown_attributes: UnknownAttributes,
    /// Per-client quotas.
    pub limits: Limits,
    /// Whether a consumer group whose last member goes keeps its records
    /// for a member that joins later.
    pub keep_group_records: bool,
    /// What happens to the offers of a producer that leaves or dies.
    pub producer_exit: ProducerExit,
}
