//! One application API, whatever the deployment.
//!
//! An application written against [`app::Pool`](Pool) runs unchanged
//! whether its pool lives in its own process (the in-process
//! [`crate::Pool`]) or in a pool manager on this node
//! ([`ipc::client`](crate::ipc::client)); which one is configuration, not
//! code: [`Pool::from_env`] joins the manager that `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN` name, and makes an in-process pool otherwise.
//! Both deployments take the pool's semantics from the same
//! [`PoolConfig`] (YAML file and variables): an in-process pool directly,
//! a pool manager as [`ManagerConfig::pool`] (`cdo-pm --config FILE`).
//! Every call returns the one [`Error`] type.
//!
//! ```
//! use cdo::app::Pool;
//! use std::time::Duration;
//!
//! // Without CDO_POOL_SOCKET: a pool in this process. With it: the same
//! // code through the pool manager it names.
//! let pool = Pool::from_env("example")?;
//!
//! let mut producer = pool.declare("run1/step42/rho")?;
//! producer.write(&[1, 2, 3, 4])?;
//! producer.seal()?;
//! producer.offer()?;
//!
//! let mut consumer = pool.declare("run1/step42/rho")?;
//! consumer.require()?;
//! let view = consumer.demand_timeout(Duration::from_secs(10))?;
//! assert_eq!(view.bytes()?, &[1, 2, 3, 4]);
//! drop(view);
//! consumer.dispose()?;
//!
//! producer.withdraw()?;
//! producer.dispose()?;
//! # Ok::<(), cdo::Error>(())
//! ```
//!
//! ## What the handles do
//!
//! * [`Cdo`]: declare, attributes, write, seal, offer, withdraw; require,
//!   demand (a [`View`] of the bytes), retract; dispose. The order of
//!   calls is [`lifecycle`](crate::lifecycle)'s in both deployments, and a
//!   call out of order fails with [`Error::InvalidState`] before anything
//!   is sent. An invalid name fails [`Pool::declare`] with
//!   [`Error::InvalidName`] in both.
//! * A withdrawal waits for the requires made before it and for the
//!   object's minimum lifetime; a timed-out withdrawal or demand leaves the
//!   handle offered or required, and calling again keeps waiting. A
//!   withdrawal that timed out stays requested: the pool completes it once
//!   nothing holds the object (raising its withdraw event then), and the
//!   next call finds it done.
//! * An operation whose acknowledged events are not acknowledged in time
//!   fails with [`Error::AckTimeout`] under the fail-fast policy, having
//!   taken effect (the handle is in the state after it).
//! * Dropping a [`Cdo`] gives up its offer or its require, in both: a
//!   require raises a retract event; an offer is withdrawn as by a
//!   withdrawal nobody waits for, so it stays on offer, served, while the
//!   consumers matched with it still wait for it or its minimum lifetime
//!   runs, then goes with its withdraw event. Dropping the [`Pool`] (its
//!   application going) withdraws such offers at once, but under
//!   [`ProducerExit::Keep`](crate::engine::ProducerExit::Keep)
//!   (`producer_exit: keep` in the [`PoolConfig`], in both) an offer whose
//!   minimum lifetime still runs outlives its application, served, until
//!   the lifetime has ended and no require holds it (offer-and-exit,
//!   R1.7/R1.8). Dropping an
//!   [`Event`] acknowledges it; dropping a [`Subscription`] or [`Member`]
//!   ends it; dropping a [`Record`] without [`Record::done`] gives it back
//!   to its group at once, for another member.
//! * [`Subscription`]s select events by [`Selector`] and
//!   kind; [`Member`]s of a consumer group ([`Pool::join_group`]) each get
//!   a share of the matching offers as [`Record`]s, finished with
//!   [`Record::done`]; the records a member held when it leaves go to the
//!   others; an [`Archiver`] is a member that stores its records in an
//!   [`Archive`](crate::archive::Archive).
//! * CDO groups: [`Pool::declare_group`] gives a [`GroupOffer`], whose
//!   members are offered before a manifest that lists them (and withdrawn
//!   after it); [`Pool::require_group`] gives a [`GroupDemand`], which sees
//!   a group only whole and demands its members at once or one by one,
//!   or, when they are blocks of one field (`block_start`), any region of
//!   the field in the order it wants ([`GroupDemand::demand_region`]: the
//!   field redistributed into the consumer's decomposition).
//!   Both are written once, on [`Cdo`], so they behave alike in both
//!   deployments; a group offer that fails part-way withdraws the members
//!   it offered.
//! * Every [`Event`] names its [`origin`](Event::origin): the
//!   [`Participant`] (an application's [`Pool`], see
//!   [`Pool::participant`]) that raised it, its join and leave included.
//!   A [`Librarian`] keeps its book by it: it answers requires of names
//!   only an [`Archive`](crate::archive::Archive) holds by offering them,
//!   and withdraws each once every participant that required it demanded
//!   it, retracted or left.
//! * [`Pool::stats`] counts offers, views and objects on offer the same
//!   way in both.
//!
//! ## Where the deployments still differ
//!
//! * **Data.** In process a demand hands over the producer's bytes by
//!   ownership (no copy when the consumer wants them where they are) and a
//!   [`View`] may lie in any mamba space, device memory included: a
//!   consumer that wants a GPU space or tier gets the bytes copied host ->
//!   device, one that wants host memory gets device data copied device ->
//!   host, one that wants the device space the data is in gets the same
//!   bytes (see [`transport`](crate::transport#device-spaces));
//!   [`View::bytes`] of device data fails with [`Error::Memory`]
//!   (`NotHostAccessible`), never panics. Through a manager a [`View`] is a
//!   read-only mapping of the producer's shared memory (no copy), and the
//!   producer's [`Cdo::write`] bytes are copied into shared memory at the
//!   offer. A consumer's wanted place and layout (`wanted_tier`,
//!   `wanted_space`, `wanted_order`, `wanted_strides`, `wanted_tile`) are
//!   honoured in both (a reorder with a device side runs on the host; an
//!   array comes dense in the wanted order unless strides or a tile are
//!   wanted too, whatever the producer's `strides` or `tile`), and so is
//!   the way records are stored (`wanted_records`: `together` or
//!   `separate`): in process without a copy when the
//!   data already is where and how it is wanted; through a manager always
//!   by a copy out of the shared memory (which lies in no space of the
//!   consumer's process) into the consumer's own memory, found from
//!   mamba's environment (`MAMBA_CONFIG`) on the first such demand, with
//!   [`ipc::convert`](crate::ipc::convert).
//! * **Views hold withdrawals.** Through a manager a withdrawal completes
//!   only once no [`View`] or [`Record`] of the object remains (the
//!   producer's memory is reused after it); in process a consumer's data
//!   outlives the withdrawal without holding it. Drop views before you
//!   expect a producer's withdrawal to finish.
//! * **Dropping an offered handle.** Its withdrawal waits for the views
//!   of the object too through a manager (see "Views hold withdrawals"),
//!   not in process.
//! * **Versions from one application.** Under
//!   [`DuplicateOffers::Version`](crate::DuplicateOffers::Version) an
//!   application may offer a newer version of a name it offers already,
//!   each handle withdrawing its own, in both; only a manager that
//!   predates the `withdraw-offer` capability refuses the second offer
//!   (with [`Error::AlreadyOffered`]).
//! * **Attributes.** [`Cdo::set`] checks user attributes against the
//!   pool's schema at once, and [`Cdo::seal`] its required keys, in both
//!   deployments: a manager sends its schema to the clients that join it
//!   (the `schema` capability). A manager that did not send it (an older
//!   one, or a schema too large for one frame) checks them when the object
//!   is offered (the offer fails with [`Error::PoolManager`]). Without a
//!   schema (none configured, or one that declares no key) user attributes
//!   pass as set, in both.
//! * **Events.** Every kind exists in both deployments. Declare, seal and
//!   dispose happen in the application alone: through a manager, the
//!   [`Pool`] tells the manager of them only while some subscription wants
//!   that kind, which the manager publishes in a page every client reads
//!   (the `lifecycle` capability), so a pool without such subscribers pays
//!   nothing for them; a step that an acknowledged subscription wants
//!   waits for it, as in process. A manager without the capability (an
//!   older one) raises none of them. Join and leave events exist in both, for a manager's clients and for
//!   in-process handles made by [`Pool::join_local`] or [`Pool::from_env`]
//!   (a [`Pool::local`] handle raises none).
//!   An in-process [`Event`] carries the handle's attributes flattened
//!   with every built-in; a manager's, the flat attributes as sent.
//!   An event's [`origin`](Event::origin) is a number the in-process pool
//!   gives each [`Pool`] made on it, through a manager the client id;
//!   through a federated manager the events raised for another node come
//!   from [`Participant::NONE`], as do in process those of handles
//!   declared on the bare [`crate::Pool`].
//! * **The librarian.** [`Librarian`] behaves the same in both (it is
//!   what `cdo-librarian` runs through a manager). What it learns of a
//!   consumer's leave differs as join and leave events do: in process
//!   only an application made by [`Pool::join_local`] or
//!   [`Pool::from_env`] leaves, but every application's handles retract
//!   their requires when dropped, so none keeps an object on offer. Its
//!   offers carry the attributes as archived through a manager, every
//!   built-in in process; its withdrawals wait for the consumers' views
//!   through a manager only (see "Views hold withdrawals").
//! * **Threads.** An in-process pool serves its threads in parallel. A
//!   manager deployment has one connection per [`Pool`]: its threads take
//!   turns on it, a blocking call holding it for at most a few milliseconds
//!   at a time, so an acknowledging subscriber thread is never shut out by
//!   the operation it must acknowledge. The [`Pool`]'s own requires hold
//!   its withdrawals as in process: it asks the manager for that when it
//!   joins (the `own-requires` capability; a manager that predates it lets
//!   them hold none).
//! * **Require and retract events** carry the consumer handle's attributes
//!   in both; through a manager that predates the `consumer-attributes`
//!   capability they carry none.
//! * **Errors of the connection** (the manager died, shared memory could
//!   not be mapped) are [`Error::PoolManager`]; they have no in-process
//!   counterpart.

mod archiver;
mod events;
mod group;
mod handle;
mod librarian;
mod region;
mod remote;
mod stat_socket;
mod stats;

pub use archiver::Archiver;
pub use events::{Event, Member, Record, Subscription};
pub use group::{GroupDemand, GroupOffer};
pub use handle::{Cdo, View};
pub use librarian::{Librarian, Served};
pub use stat_socket::{StatServer, STAT_SOCKET_ENV};
pub use stats::PoolStats;

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::events::{EventKind, EventMask, Participant};
use crate::ipc::client::{Client, ClientConfig, ClientError};
use crate::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_ENV, TOKEN_FILE_ENV};
use crate::ipc::manager::{self, ManagerConfig};
use crate::ipc::wire::ErrorCode;
use crate::selector::Selector;
use crate::value::Value;
use mamba::Mamba;
use remote::{Remote, RemoteCdo};
use std::sync::Arc;

/// Where a [`Pool`]'s objects live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// In this process.
    InProcess,
    /// In a pool manager on this node.
    Manager,
}

/// A CDO pool as an application sees it, in process or through a pool
/// manager; see the [module docs](self). Share it between threads by
/// reference or in an `Arc`.
pub struct Pool {
    inner: Inner,
    /// The application's name in an in-process pool, when it joined
    /// under one: its leave event is raised when the handle drops.
    component: Option<Arc<str>>,
    /// Who this application is among the pool's participants.
    participant: Participant,
    /// The socket serving this in-process pool's counters to `cdo-stat`,
    /// when [`STAT_SOCKET_ENV`] asked for one.
    stat_server: Option<StatServer>,
}

impl Drop for Pool {
    /// In process, the application goes as a manager's client does: its
    /// leave event (when it joined under a name), then its offers that
    /// outlived their handles are withdrawn (see [`ProducerExit`]).
    ///
    /// [`ProducerExit`]: crate::engine::ProducerExit
    fn drop(&mut self) {
        if let Inner::Local(p) = &self.inner {
            if let Some(component) = &self.component {
                p.announce(EventKind::Leave, component, self.participant);
            }
            p.producer_gone(self.participant);
        }
    }
}

enum Inner {
    Local(Arc<crate::Pool>),
    Remote(Box<Remote>),
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("deployment", &self.deployment())
            .finish()
    }
}

/// The error of a call on the pool (not on one object) through a manager.
fn pool_error(e: ClientError) -> Error {
    Error::PoolManager(e)
}

/// Joins the pool manager `config` names as an application: its own
/// requires hold its withdrawals, as in process
/// ([`ClientConfig::own_requires`]).
fn join_manager(config: ClientConfig) -> Result<Client> {
    let config = ClientConfig {
        own_requires: true,
        ..config
    };
    Client::connect(&config).map_err(pool_error)
}

impl Pool {
    /// The pool the environment names: the pool manager of
    /// `CDO_POOL_SOCKET` (with `CDO_WORKFLOW_TOKEN` or
    /// `CDO_WORKFLOW_TOKEN_FILE`, and `CDO_OP_TIMEOUT_MS`), joined as
    /// `component`; without `CDO_POOL_SOCKET`, a pool in this process over
    /// the memory mamba's environment (`MAMBA_CONFIG`) describes, with the
    /// default [`PoolConfig`] and the variables a pool manager reads for
    /// the same semantics ([`PoolConfig::with_env`]). An in-process pool
    /// serves its counters to `cdo-stat` on the socket that
    /// [`STAT_SOCKET_ENV`] names, if set, for as long as the handle lives
    /// ([`Pool::serve_stats`]).
    ///
    /// # Errors
    /// [`Error::Config`] when `CDO_POOL_SOCKET` is set without a token, or
    /// one of those variables is malformed;
    /// [`Error::PoolManager`] when the manager cannot be joined;
    /// [`Error::Memory`] when mamba's configuration fails;
    /// [`Error::StatServer`] when the statistics socket cannot be made.
    pub fn from_env(component: &str) -> Result<Pool> {
        Self::from_env_or(component, || {
            let config = PoolConfig::default().with_env()?;
            let pool = crate::Pool::new(Arc::new(Mamba::from_env()?), config)?;
            Ok(Self::join_local(Arc::new(pool), component))
        })
    }

    /// [`Pool::from_env`] with the in-process pool made by `local` (for a
    /// caller with its own memory or configuration).
    ///
    /// # Errors
    /// As [`Pool::from_env`]; `local`'s.
    pub fn from_env_or(component: &str, local: impl FnOnce() -> Result<Pool>) -> Result<Pool> {
        let stat_socket = std::env::var_os(STAT_SOCKET_ENV).filter(|p| !p.is_empty());
        if std::env::var_os(SOCKET_ENV).is_none() {
            let mut pool = local()?;
            match (stat_socket, pool.deployment()) {
                (Some(path), Deployment::InProcess) => {
                    pool.stat_server = Some(pool.serve_stats(path.as_ref())?);
                }
                (Some(_), Deployment::Manager) => tracing::warn!(
                    "{STAT_SOCKET_ENV} is ignored: this process's pool manager answers cdo-stat"
                ),
                (None, _) => {}
            }
            return Ok(pool);
        }
        if stat_socket.is_some() {
            tracing::warn!(
                "{STAT_SOCKET_ENV} is ignored: the pool manager of {SOCKET_ENV} answers cdo-stat"
            );
        }
        let config = ClientConfig::from_env(component).ok_or_else(|| {
            Error::Config(format!(
                "{SOCKET_ENV} is set but no workflow token: set {TOKEN_ENV} or {TOKEN_FILE_ENV}"
            ))
        })?;
        Self::connect_with(&config)
    }

    /// A pool in this process over `mamba`.
    ///
    /// # Errors
    /// [`Error::Schema`] for a schema file of the configuration.
    pub fn in_process(mamba: Arc<Mamba>, config: PoolConfig) -> Result<Pool> {
        Ok(Self::local(Arc::new(crate::Pool::new(mamba, config)?)))
    }

    /// An application's handle on an in-process pool that others share.
    /// It raises no join or leave events; [`Pool::join_local`] does.
    pub fn local(pool: Arc<crate::Pool>) -> Pool {
        Pool {
            participant: pool.new_participant(),
            inner: Inner::Local(pool),
            component: None,
            stat_server: None,
        }
    }

    /// [`Pool::local`] for the application `component`: the pool's
    /// subscribers to [`EventKind::Join`] and [`EventKind::Leave`] hear it
    /// join now and leave when the handle drops, named by `component`, as
    /// they hear a client of a pool manager.
    ///
    /// ```
    /// use cdo::app::Pool;
    /// use cdo::EventKind;
    /// use std::time::Duration;
    ///
    /// let mamba = std::sync::Arc::new(mamba::Mamba::from_env()?);
    /// let shared = std::sync::Arc::new(cdo::Pool::new(mamba, cdo::PoolConfig::default())?);
    /// let watcher = Pool::join_local(shared.clone(), "watcher");
    /// let arrivals = watcher.subscribe("*", EventKind::Join.into(), false)?;
    /// let solver = Pool::join_local(shared, "solver");
    /// let joined = arrivals.next_timeout(Duration::from_secs(1))?.expect("solver joined");
    /// assert_eq!(joined.name(), "solver");
    /// # drop(solver);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_local(pool: Arc<crate::Pool>, component: &str) -> Pool {
        let participant = pool.new_participant();
        pool.announce(EventKind::Join, component, participant);
        Pool {
            inner: Inner::Local(pool),
            component: Some(component.into()),
            participant,
            stat_server: None,
        }
    }

    /// Joins the pool manager at `endpoint` as `component` (with
    /// `CDO_OP_TIMEOUT_MS` applied, see [`ClientConfig::with_env`]).
    ///
    /// # Errors
    /// [`Error::PoolManager`].
    pub fn connect(endpoint: Endpoint, component: &str) -> Result<Pool> {
        Self::connect_with(&ClientConfig::new(endpoint, component).with_env())
    }

    /// Joins a pool manager as `config` says.
    ///
    /// # Errors
    /// [`Error::PoolManager`].
    pub fn connect_with(config: &ClientConfig) -> Result<Pool> {
        let client = join_manager(config.clone())?;
        Ok(Self::remote(client, config.endpoint.clone(), None))
    }

    /// Starts a pool manager in this process (for tests and tools) and
    /// joins it as `component`; other applications join it at
    /// [`Pool::endpoint`]. The manager stops when this pool is dropped.
    ///
    /// # Errors
    /// [`Error::ManagerStart`]; [`Error::PoolManager`] when it cannot be
    /// joined.
    pub fn start_manager(config: ManagerConfig, component: &str) -> Result<Pool> {
        let handle = manager::start(config).map_err(Error::ManagerStart)?;
        let endpoint = handle.endpoint().clone();
        let client = join_manager(ClientConfig::new(endpoint.clone(), component).with_env())?;
        Ok(Self::remote(client, endpoint, Some(handle)))
    }

    /// The application of `client`, joined to the manager at `endpoint`
    /// (which runs in this process when `handle` is given).
    fn remote(client: Client, endpoint: Endpoint, handle: Option<manager::ManagerHandle>) -> Pool {
        let participant = Participant::from_id(client.client_id());
        Pool {
            inner: Inner::Remote(Box::new(Remote::new(client, endpoint, handle))),
            component: None,
            participant,
            stat_server: None,
        }
    }

    /// Who this application is among the pool's participants: the
    /// [`Event::origin`] of the events its handles raise (its join and
    /// leave included). In process each [`Pool`] made on a pool is a
    /// participant of its own; through a manager it is the client id the
    /// manager gave it.
    pub fn participant(&self) -> Participant {
        self.participant
    }

    /// The endpoint of the pool manager this pool joined (or started),
    /// where other applications join it; `None` in process.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match &self.inner {
            Inner::Local(_) => None,
            Inner::Remote(r) => Some(r.endpoint()),
        }
    }

    /// Whether this pool started the pool manager it uses
    /// ([`Pool::start_manager`]).
    pub fn runs_manager(&self) -> bool {
        match &self.inner {
            Inner::Local(_) => false,
            Inner::Remote(r) => r.runs_manager(),
        }
    }

    /// Leaves a pool manager once no other application requires this one's
    /// objects and its withdrawals are answered, waiting up to `timeout`
    /// (in process there is nothing to wait for). Calls after it fail.
    ///
    /// # Errors
    /// [`Error::PoolManager`] with
    /// [`ClientError::StillRequired`] when others still require objects
    /// at the timeout.
    pub fn leave(&self, timeout: std::time::Duration) -> Result<()> {
        match &self.inner {
            Inner::Local(_) => Ok(()),
            Inner::Remote(r) => r.call(|c| c.leave(timeout)).map_err(pool_error),
        }
    }

    /// Where the pool's objects live.
    pub fn deployment(&self) -> Deployment {
        match &self.inner {
            Inner::Local(_) => Deployment::InProcess,
            Inner::Remote(_) => Deployment::Manager,
        }
    }

    /// Declares a handle on the CDO `name` (same name, same object).
    ///
    /// # Errors
    /// [`Error::InvalidName`].
    pub fn declare(&self, name: &str) -> Result<Cdo<'_>> {
        match &self.inner {
            Inner::Local(p) => p.declare_as(name, self.participant).map(Cdo::local),
            Inner::Remote(r) => {
                crate::engine::names::check(name)?;
                let cdo = RemoteCdo::new(r, name);
                cdo.tell_declared();
                Ok(Cdo::remote(cdo))
            }
        }
    }

    /// Starts the CDO group `name`: its members are declared on the
    /// [`GroupOffer`] and offered with it.
    ///
    /// # Errors
    /// [`Error::InvalidName`].
    pub fn declare_group(&self, name: &str) -> Result<GroupOffer<'_>> {
        GroupOffer::new(self, name)
    }

    /// Requires the CDO group `name`; each member's handle sets `wanted`
    /// (a wanted tier, space or order, say) before its require.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; the errors of setting `wanted` (checked
    /// here) and of the require.
    pub fn require_group(&self, name: &str, wanted: &[(&str, Value)]) -> Result<GroupDemand<'_>> {
        GroupDemand::new(self, name, wanted)
    }

    /// Subscribes to the events of `kinds` whose CDO matches `selector`;
    /// with `ack`, each such event holds its operation until acknowledged
    /// (or dropped).
    ///
    /// # Errors
    /// [`Error::Selector`].
    pub fn subscribe(
        &self,
        selector: &str,
        kinds: EventMask,
        ack: bool,
    ) -> Result<Subscription<'_>> {
        match &self.inner {
            Inner::Local(p) => p.subscribe(selector, kinds, ack).map(Subscription::local),
            Inner::Remote(r) => {
                Selector::parse(selector)?;
                let sub = r
                    .call(|c| c.subscribe(selector, kinds, ack))
                    .map_err(pool_error)?;
                r.opened(sub);
                Ok(Subscription::remote(r, sub))
            }
        }
    }

    /// Joins (forming if needed) the consumer group `group`, which shares
    /// the offers matching `selector` among its members.
    ///
    /// # Errors
    /// [`Error::Selector`]; [`Error::Group`] when the group exists with
    /// another selector.
    pub fn join_group(&self, group: &str, selector: &str) -> Result<Member<'_>> {
        match &self.inner {
            Inner::Local(p) => p.join(group, selector).map(Member::local),
            Inner::Remote(r) => {
                Selector::parse(selector)?;
                let sub = r
                    .call(|c| c.join_group(group, selector))
                    .map_err(|e| match e {
                        ClientError::Pool {
                            code: ErrorCode::BadSubscription,
                            text,
                        } => Error::Group {
                            name: group.to_owned(),
                            reason: text,
                        },
                        other => pool_error(other),
                    })?;
                r.opened(sub);
                Ok(Member::remote(r, sub))
            }
        }
    }

    /// The names on offer whose CDO matches `selector`, in guided-I/O
    /// order (by priority, output first, then name).
    ///
    /// # Errors
    /// [`Error::Selector`].
    pub fn query(&self, selector: &str) -> Result<Vec<String>> {
        match &self.inner {
            Inner::Local(p) => Ok(p
                .offers(selector)?
                .into_iter()
                .map(|o| o.name.to_string())
                .collect()),
            Inner::Remote(r) => {
                Selector::parse(selector)?;
                r.call(|c| c.query(selector)).map_err(pool_error)
            }
        }
    }
}
