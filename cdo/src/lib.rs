//! # cdo: Core Data Objects over mamba's memory tiers
//!
//! An in-process data marketplace modelled on the Maestro middleware:
//! threads *offer* named data objects (CDOs) and *require* and *demand*
//! them by name; the [`Pool`] matches the two and hands the data over —
//! without copying when the consumer wants it where it already is, through
//! a mamba copy into the consumer's space or tier otherwise.
//!
//! | module | job |
//! |---|---|
//! | [`app`] | one application API, in process or through a pool manager |
//! | [`pool`] | the marketplace: declare, allocate, subscribe, statistics |
//! | [`cdo`](mod@cdo) | a handle on one CDO: attributes, data, the producer and consumer calls |
//! | [`lifecycle`] | the allowed order of calls |
//! | [`attrs`], [`value`], [`schema`] | built-in and schema-checked user attributes |
//! | [`data`], [`transport`] | data in mamba spaces; the data plane |
//! | [`events`], [`selector`] | subscriptions filtered by selectors |
//! | [`stream`] | consumer groups (CDO groups are in [`app`]) |
//! | [`stats`], [`config`] | statistics; configuration |
//! | [`archive`] | CDOs persisted in a directory or persistent memory (the archiver is [`app::Archiver`]) |
//!
//! ```
//! use cdo::{Pool, PoolConfig};
//! use std::sync::Arc;
//!
//! let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config { gpu: false, ..Default::default() })?);
//! let pool = Pool::new(mamba, PoolConfig::default())?;
//!
//! let mut producer = pool.declare("run1/step42/rho")?;
//! producer.set("priority", "output")?;
//! producer.write(&[1, 2, 3, 4])?;
//! producer.seal()?;
//! producer.offer()?;
//!
//! let mut consumer = pool.declare("run1/step42/rho")?;
//! consumer.require()?;
//! let data = consumer.demand()?;
//! assert_eq!(data.as_slice()?, &[1, 2, 3, 4]);
//! consumer.dispose()?;
//!
//! producer.withdraw()?;
//! producer.dispose()?;
//! # Ok::<(), cdo::Error>(())
//! ```
//!
//! An application that should run unchanged in process and through a
//! pool manager uses [`app`] instead: one [`app::Pool`] whose deployment
//! is configuration (`CDO_POOL_SOCKET`), with the same handles, events,
//! consumer groups and errors in both.
//!
//! ## Semantics
//!
//! * The same name is the same object. Each thread works through its own
//!   [`Cdo`] handle; the name is looked up when the handle is declared
//!   ([`Pool::declare`]), or once for many handles ([`Pool::name`]).
//! * Handles borrow the pool: share it by reference between scoped threads
//!   or behind an `Arc`.
//! * [`Cdo::require`] matches the consumer with the newest offer on the
//!   name, or with the next one. [`Cdo::withdraw`] (also with a timeout,
//!   as a poll, and as a future: [`Cdo::withdraw_async`]) waits for the
//!   consumers matched so far (and for the CDO's lifetime), not for consumers that
//!   require later: to hand an object over, require it before the producer
//!   withdraws (or give it a lifetime), as in Maestro.
//! * Offers are immutable. A second offer under a name on offer fails or
//!   becomes a new version ([`DuplicateOffers`]); it never changes the first.
//! * A zero-length CDO (no size, no data) is a synchronisation token.
//! * Data lives as long as any view of it: a [`Buffer`] owns its allocation,
//!   which keeps its mamba pool alive (see [`data`]), so consumers keep
//!   their [`Data`] after every handle is disposed.
//! * Events are raised after an operation took effect, outside every lock;
//!   acknowledged subscriptions hold the operation until acknowledged or
//!   until [`PoolConfig::ack_timeout`] passes; then the fault policy
//!   ([`PoolConfig::policy`]) says whether the operation, which took
//!   effect, reports [`Error::AckTimeout`] or succeeds, as in a pool
//!   manager.
//!
//! ## Across processes
//!
//! [`ipc`] is the same marketplace for several processes of a node: a pool
//! manager (in an application, [`ipc::manager::start`], or the `cdo-pm`
//! binary) and clients ([`ipc::client::Client`]) that offer objects in
//! sealed shared memory and demand them as read-only views of the
//! producer's pages, without a copy. The manager speaks the same
//! attributes ([`FlatAttributes`], typed against an optional schema) and
//! selectors as this crate (with the derived `version`, but no `space` or
//! `tier`: shared segments lie in no mamba space): clients subscribe to events (offer, require,
//! demand, retract, withdraw, join, leave), optionally acknowledged so that
//! the raising operation waits (up to the acknowledgement timeout; then it
//! fails with `AckTimeout` under the fail-fast policy, or goes through
//! under best effort), join consumer groups that share a stream of
//! records fairly and give a dead member's records to another, and query
//! the offers by attributes ([`ipc::client::Client::query`]). The
//! archiver ([`app::Archiver`], binary `cdo-archiver`) and librarian
//! ([`app::Librarian`], binary `cdo-librarian`) keep chosen objects in an [`archive`] on a file
//! tier and serve them back in later runs. CDO groups
//! ([`app::Pool::declare_group`]) are their members plus a manifest offered
//! last, in either deployment.
//!
//! The manager's marketplace is [`engine`]: offers, versions, requires,
//! demands, views, withdrawals, leaves, subscriptions, consumer groups,
//! acknowledgements and quotas as a pure engine (no I/O, no descriptors,
//! no clock) that takes operations from client ids and returns effects;
//! the manager only hosts it (sockets, descriptors, timers). A withdrawal
//! waits there as it does here: for the requires made before it and for
//! the object's minimum lifetime; consumer groups give each member at
//! most [`engine::GROUP_WINDOW`] records, here too. The in-process pool
//! keeps its own concurrent books (a lock per name, not one for the pool)
//! but applies the engine's rules where they are written once: what may
//! name a CDO, whether a second offer is admitted and which version it
//! is, when a minimum lifetime ends, and a consumer group's seats, loads,
//! queue and leavers (one `GroupBook` type in both). The semantics that
//! both deployments must answer alike are tested against both
//! (`tests/semantics.rs`).
//!
//! A producer may offer and exit (R1.7/R1.8): under
//! [`engine::ProducerExit::Keep`] (the pool configuration's
//! `producer_exit`, in either deployment) the offers it leaves behind with
//! a minimum lifetime still to run stay on offer, served (through a
//! manager from the segment the manager keeps; in process, where a
//! producer goes when its application's [`app::Pool`] is dropped, from
//! its data), until
//! the lifetime has ended and nobody requires them; the default withdraws
//! them with their producer (fail-fast).
//!
//! The manager holds out against hostile or broken clients of the same
//! user: before its JOIN a connection may send one frame of at most 4 KiB;
//! object names follow the rule they follow in one process
//! ([`engine::names`]); names, selectors and attribute maps are bounded
//! ([`ipc::limits`]), values
//! and selectors nest at most 32 deep; each client has quotas
//! ([`ipc::manager::Limits`], `CDO_MAX_*` variables) and a client that does
//! not read its replies is paused, not queued for without bound.
//!
//! A consumer that wants the data in another space, tier or storage order
//! converts its view with [`ipc::convert`]; a second offer of a name is
//! refused or versioned as configured, as in one process. Still
//! in-process only: offers from mamba spaces other than shared memory; the
//! [`Transport`] trait is the seam for a GPU or RDMA data plane.
//!
//! ## Selector grammar
//!
//! ```text
//! selector   := "" | "*" | or
//! or         := and (("or" | "||") and)*
//! and        := unary (("and" | "&&") unary)*
//! unary      := ("not" | "!") unary | primary
//! primary    := "(" or ")" | "has" key | key op value
//!             | key "~" string           regular expression match (text)
//!             | key "in" list            value is one of the list
//!             | key "contains" value     list attribute holds the value
//! op         := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
//! key        := [A-Za-z_][A-Za-z0-9_.-]*   built-in (see attrs) or ns.key
//! value      := string | number | "@" timestamp | "true" | "false" | list
//! string     := '"' chars '"' | "'" chars "'"   escapes \" \' \\ \n \t
//! number     := "-"? digits ("." digits)? (("e"|"E") ("+"|"-")? digits)?
//! timestamp  := RFC 3339 (2024-05-01T12:00:00Z) or a date (2024-05-01)
//! list       := "[" (value ("," value)*)? "]"
//! ```
//!
//! Numbers compare across integer and float types, timestamps with
//! timestamps, text with text. A comparison with a missing key or an
//! incomparable type is false. Parse errors carry the byte position.
//! Parentheses, `not` and lists nest at most
//! [`selector::MAX_DEPTH`] deep.

pub mod app;
pub mod archive;
pub mod attrs;
pub mod cdo;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod events;
pub mod ipc;
mod keeper;
pub mod lifecycle;
pub mod pool;
mod registry;
pub mod schema;
pub mod selector;
pub mod stats;
pub mod stream;
pub mod transport;
pub mod value;

pub use crate::cdo::{Cdo, Withdrawal};
pub use attrs::{
    AttrSource, AttrView, Attributes, ElementType, FlatAttributes, FlatView, Layout, Order, Place,
    Priority, Records,
};
pub use config::{DuplicateOffers, PoolConfig, UnknownAttributes};
pub use data::{Buffer, Data};
pub use error::{Error, Result};
pub use events::{Event, EventKind, EventMask, Participant, Subscription};
pub use lifecycle::{Op, State};
pub use pool::{Name, OfferInfo, Pool};
pub use schema::{AttrSpec, Schema};
pub use selector::Selector;
pub use stats::{PathStats, Stats};
pub use stream::{Member, Record};
pub use transport::{Delivery, LocalTransport, Transport, Want};
pub use value::{Timestamp, Value, ValueType};
