//! [`Pool`]: the in-process CDO marketplace.

use crate::attrs::Attributes;
use crate::cdo::Cdo;
use crate::config::PoolConfig;
use crate::data::Buffer;
use crate::engine::rules::guided_io_order;
use crate::engine::{names, ProducerExit};
use crate::error::Result;
use crate::events::{Bus, EventKind, EventMask, Participant, Subject, Subscription};
use crate::keeper::{Keeper, PoolParts};
use crate::registry::{Entry, Registry};
use crate::schema::Schema;
use crate::selector::Selector;
use crate::stats::{Counter, Counters, Stats};
use crate::stream::{Member, Streams};
use crate::transport::{LocalTransport, Transport};
use mamba::{Mamba, Policy, SpaceId};
use std::sync::Arc;
use std::time::Duration;

/// An offer on the pool, as [`Pool::offers`] lists it.
#[derive(Debug, Clone)]
pub struct OfferInfo {
    /// The CDO.
    pub name: Arc<str>,
    /// Its version.
    pub version: u64,
    /// The offered attributes.
    pub attributes: Arc<crate::Attributes>,
    /// The data (shared, read-only).
    pub data: crate::Data,
}

/// The pool's state, shared by its handles.
pub(crate) struct Shared {
    pub mamba: Arc<Mamba>,
    pub config: PoolConfig,
    pub schema: Schema,
    /// Where [`Cdo::write`] puts data: the resolved default policy.
    pub write_spaces: Vec<SpaceId>,
    pub registry: Arc<Registry>,
    pub bus: Arc<Bus>,
    pub counters: Counters,
    pub transport: Box<dyn Transport>,
    pub streams: Streams,
    /// Offers given up by dropped handles and withdrawals that timed
    /// out, withdrawn once nothing holds them.
    pub keeper: Keeper,
}

impl Shared {
    /// What withdrawing a kept offer touches, for the keeper's thread.
    pub(crate) fn parts(&self) -> PoolParts {
        PoolParts {
            registry: Arc::clone(&self.registry),
            bus: Arc::clone(&self.bus),
            ack_timeout: self.config.ack_timeout,
        }
    }

    /// A new handle on an entry that already counts it, of no
    /// application.
    fn declare(&self, entry: Arc<Entry>) -> Cdo<'_> {
        self.declare_with(entry, None, Participant::NONE)
    }

    /// A handle on `entry` starting with `attrs` (shared), or with none,
    /// whose events come from `origin`.
    pub(crate) fn declare_with<'a>(
        &self,
        entry: Arc<Entry>,
        attrs: impl Into<Option<&'a Arc<Attributes>>>,
        origin: Participant,
    ) -> Cdo<'_> {
        let cdo = Cdo::new(self, entry, attrs.into(), origin);
        self.counters.bump(Counter::Declared);
        cdo.emit_declare();
        cdo
    }
}

/// A CDO name looked up once ([`Pool::name`]); it keeps the name's entry
/// in the pool while it lives.
pub struct Name<'p> {
    pool: &'p Shared,
    entry: Arc<Entry>,
}

impl<'p> Name<'p> {
    /// Declares a handle on the CDO, like [`Pool::declare`] without the
    /// lookup.
    pub fn declare(&self) -> Cdo<'p> {
        self.pool.declare(self.pool.registry.retain(&self.entry))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.entry.name
    }
}

impl Clone for Name<'_> {
    fn clone(&self) -> Self {
        Name {
            pool: self.pool,
            entry: self.pool.registry.retain(&self.entry),
        }
    }
}

impl Drop for Name<'_> {
    fn drop(&mut self) {
        self.pool.registry.release(&self.entry);
    }
}

impl std::fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Name").field(&self.entry.name).finish()
    }
}

/// A CDO pool: a library object (no daemon) in which the threads of one
/// process offer and require named data; see the [crate docs](crate).
///
/// Handles borrow the pool; share it between threads by reference (scoped
/// threads) or in an `Arc`.
pub struct Pool {
    shared: Shared,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .field("names", &self.shared.registry.len())
            .finish()
    }
}

impl Pool {
    /// A pool over `mamba`, loading the schema files the configuration
    /// names, with the in-process transport.
    ///
    /// # Errors
    /// [`Error::Schema`](crate::Error::Schema).
    pub fn new(mamba: Arc<Mamba>, config: PoolConfig) -> Result<Pool> {
        let mut schema = Schema::default();
        for path in &config.schemas {
            schema.add_file(path)?;
        }
        let transport = Box::new(LocalTransport::new(Arc::clone(&mamba)));
        Ok(Self::with_parts(mamba, config, schema, transport))
    }

    /// A pool with an explicit schema and data plane (the configuration's
    /// schema files are not read).
    pub fn with_parts(
        mamba: Arc<Mamba>,
        config: PoolConfig,
        schema: Schema,
        transport: Box<dyn Transport>,
    ) -> Pool {
        let spaces = mamba.spaces().count();
        // A node without CPU-addressable NUMA spaces leaves this empty: its
        // writes then fail with mamba's error until a policy is set.
        let write_spaces =
            crate::data::resolve(&mamba, &Policy::highest_bandwidth()).unwrap_or_default();
        let streams = Streams::new(config.keep_group_records);
        Pool {
            shared: Shared {
                mamba,
                config,
                schema,
                write_spaces,
                registry: Arc::default(),
                bus: Arc::default(),
                counters: Counters::new(spaces),
                transport,
                streams,
                keeper: Keeper::default(),
            },
        }
    }

    /// Sets the placement policy of data written with [`Cdo::write`]
    /// (default: highest bandwidth), resolved here once.
    ///
    /// # Errors
    /// mamba's placement errors; the previous policy stays.
    pub fn set_default_policy(&mut self, policy: &Policy) -> Result<()> {
        self.shared.write_spaces = crate::data::resolve(&self.shared.mamba, policy)?;
        Ok(())
    }

    /// Declares a handle on the CDO `name` (same name, same object).
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName).
    pub fn declare(&self, name: &str) -> Result<Cdo<'_>> {
        let entry = self.shared.registry.acquire(name, names::check)?;
        Ok(self.shared.declare(entry))
    }

    /// [`Pool::declare`] for the application `origin`, whose handle's
    /// events say it raised them.
    pub(crate) fn declare_as(&self, name: &str, origin: Participant) -> Result<Cdo<'_>> {
        let entry = self.shared.registry.acquire(name, names::check)?;
        Ok(self.shared.declare_with(entry, None, origin))
    }

    /// A participant that no other of this pool's is, for an application's
    /// handle on it.
    pub(crate) fn new_participant(&self) -> Participant {
        self.shared.bus.new_participant()
    }

    /// The application `origin` went (its handles went before it): the
    /// offers its dropped handles left on offer are withdrawn now, as a
    /// pool manager withdraws those of a client that leaves or dies, but
    /// for those whose minimum lifetime still runs under
    /// [`ProducerExit::Keep`](ProducerExit::Keep).
    pub(crate) fn producer_gone(&self, origin: Participant) {
        let keep = self.shared.config.producer_exit == ProducerExit::Keep;
        let parts = self.shared.parts();
        self.shared.keeper.producer_gone(origin, keep, &parts);
    }

    /// Looks `name` up once: declaring through the returned [`Name`] skips
    /// the lookup (the hot path of a loop over the same names).
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName).
    pub fn name(&self, name: &str) -> Result<Name<'_>> {
        Ok(Name {
            pool: &self.shared,
            entry: self.shared.registry.acquire(name, names::check)?,
        })
    }

    /// Allocates producer data where `policy` says.
    ///
    /// # Errors
    /// mamba's errors.
    pub fn allocate(&self, len: usize, policy: &Policy) -> Result<Buffer> {
        Buffer::allocate(&self.shared.mamba, len, policy)
    }

    /// Raises the [`EventKind::Join`] or [`EventKind::Leave`] event of the
    /// application `component`, named by it and without attributes, as a
    /// pool manager raises it when a client joins or leaves. Like the
    /// manager's, it holds nothing: acknowledged subscribers get it, but
    /// joining and leaving do not wait for their acknowledgements. The
    /// event comes from `origin`, the application's participant.
    pub(crate) fn announce(&self, kind: EventKind, component: &str, origin: Participant) {
        let subject = Subject {
            name: &Arc::from(component),
            version: None,
            place: None,
            attrs: &Arc::default(),
            origin,
        };
        // Whether acknowledgements came at once does not matter here.
        let _ = self.shared.bus.emit(kind, subject, Duration::ZERO);
    }

    /// Subscribes to the events of `kinds` whose CDO matches `selector`;
    /// with `ack`, each such event holds its operation until acknowledged.
    ///
    /// # Errors
    /// [`Error::Selector`](crate::Error::Selector).
    pub fn subscribe(&self, selector: &str, kinds: EventMask, ack: bool) -> Result<Subscription> {
        let selector = Selector::parse(selector)?;
        Ok(self.shared.bus.subscribe(selector, kinds, ack, None))
    }

    /// [`Pool::subscribe`] for a subscriber that joins late: first an
    /// [`EventKind::Offer`] event for each CDO on
    /// offer that matches `selector`, in offer order, then the live events
    /// (an offer made while subscribing comes once). Replayed events hold
    /// up no operation; nothing is replayed unless `kinds` has `Offer`.
    /// The same as [`Client::subscribe_replay`](crate::ipc::client::Client::subscribe_replay)
    /// through a pool manager.
    ///
    /// # Errors
    /// [`Error::Selector`](crate::Error::Selector).
    pub fn subscribe_replay(
        &self,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> Result<Subscription> {
        let selector = Selector::parse(selector)?;
        let registry = Some(&*self.shared.registry);
        Ok(self.shared.bus.subscribe(selector, kinds, ack, registry))
    }

    /// Joins (forming if needed) the consumer group `group`, which streams
    /// the offers matching `selector`; see [`stream`](crate::stream).
    ///
    /// # Errors
    /// [`Error::Selector`](crate::Error::Selector);
    /// [`Error::Group`](crate::Error::Group) when the group exists with
    /// another selector.
    pub fn join(&self, group: &str, selector: &str) -> Result<Member<'_>> {
        self.shared
            .streams
            .join(&self.shared.counters, group, selector)
    }

    /// The offers on the pool whose CDO matches `selector`, in guided-I/O
    /// order: by [`Priority`](crate::Priority) (output first, checkpoints
    /// last), then name and version. The data views keep the bytes alive
    /// but do not hold up withdrawal.
    ///
    /// # Errors
    /// [`Error::Selector`](crate::Error::Selector).
    pub fn offers(&self, selector: &str) -> Result<Vec<OfferInfo>> {
        let selector = Selector::parse(selector)?;
        let mut out = Vec::new();
        self.shared.registry.for_each_offer(|o| {
            if selector.matches(&o.view()) {
                out.push(OfferInfo {
                    name: Arc::clone(&o.name),
                    version: o.version,
                    attributes: Arc::clone(&o.attrs),
                    data: o.data.clone(),
                });
            }
        });
        out.sort_by(|a, b| {
            guided_io_order(
                (a.attributes.priority, &a.name, a.version),
                (b.attributes.priority, &b.name, b.version),
            )
        });
        Ok(out)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// How long the pool has existed (the time its statistics cover).
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.counters.uptime()
    }

    /// Names with at least one live handle.
    pub fn names(&self) -> usize {
        self.shared.registry.len()
    }

    /// The allocator.
    pub fn mamba(&self) -> &Arc<Mamba> {
        &self.shared.mamba
    }

    /// The user-attribute schema.
    pub fn schema(&self) -> &Schema {
        &self.shared.schema
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }
}
