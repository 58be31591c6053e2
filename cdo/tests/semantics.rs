//! The same semantics in both deployments: every test body here runs once
//! against the in-process [`Pool`] and once against a pool manager (its
//! clients in this process, each on its own connection), and asserts the
//! same answer in both.
//!
//! The bodies speak to a pool only through [`Peer`], a name-based
//! application's view of either deployment. Each test's doc comment says
//! which answer is right and why: these are the semantics in which the two
//! deployments used to differ (issue 10), each now answered alike.
//!
//! What is *not* a semantic difference: the in-process pool hands data over
//! by ownership, so a consumer's data outlives the producer's withdrawal
//! without holding it, while a pool manager's producer gets its shared
//! memory back only when the last view is dropped (its withdrawal waits for
//! the views). The bodies therefore drop what they demanded before they
//! expect a withdrawal to complete.

mod common;
mod ipc_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdo::engine::FaultPolicy;
use cdo::ipc::client::{ClientError, GroupRecord, Notice, View};
use cdo::ipc::manager::{ManagerConfig, ManagerHandle, GROUP_WINDOW};
use cdo::ipc::wire::ErrorCode;
use cdo::{
    Cdo, Data, DuplicateOffers, Error, EventKind, EventMask, Member, Pool, PoolConfig, Record,
    Value,
};

/// A guard against hanging, not a timing check: every wait that must end
/// ends long before it.
const LONG: Duration = Duration::from_secs(30);

/// How long a test watches for something that must not happen (a negative
/// check: a loaded machine can only make it pass, never fail wrongly).
const SHORT: Duration = Duration::from_millis(200);

/// Why an operation failed, in terms both deployments share.
#[derive(Debug, PartialEq)]
enum Failure {
    /// Nothing came in time (the operation may still complete).
    Timeout,
    /// The operation took effect but its acknowledged subscribers did not
    /// answer in time (fail-fast policy).
    AckTimeout,
    /// A second offer of a name on offer was refused.
    Duplicate,
    /// A selector that does not parse.
    BadSelector,
    /// A name that cannot name a CDO.
    InvalidName,
    /// Anything else, as text.
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Timeout { .. } => Failure::Timeout,
            Error::AlreadyOffered { .. } => Failure::Duplicate,
            Error::AckTimeout { .. } => Failure::AckTimeout,
            Error::Selector { .. } => Failure::BadSelector,
            Error::InvalidName { .. } => Failure::InvalidName,
            other => Failure::Other(other.to_string()),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Timeout => Failure::Timeout,
            ClientError::Pool {
                code: ErrorCode::AckTimeout,
                ..
            } => Failure::AckTimeout,
            ClientError::Pool {
                code: ErrorCode::DuplicateName,
                ..
            } => Failure::Duplicate,
            ClientError::Pool {
                code: ErrorCode::BadSelector,
                ..
            } => Failure::BadSelector,
            ClientError::Pool {
                code: ErrorCode::InvalidName,
                ..
            } => Failure::InvalidName,
            other => Failure::Other(other.to_string()),
        }
    }
}

type Outcome<T> = Result<T, Failure>;

/// One application's calls on a pool, by name, the same in both
/// deployments.
trait Peer {
    /// Offers `bytes` under `name` with a minimum lifetime (zero: none).
    fn offer(&mut self, name: &str, bytes: &[u8], lifetime: Duration) -> Outcome<()>;
    /// Offers `bytes` under `name` with the user attribute `app.step`.
    fn offer_step(&mut self, name: &str, bytes: &[u8], step: u64) -> Outcome<()>;
    /// Requires `name`.
    fn require(&mut self, name: &str) -> Outcome<()>;
    /// Demands `name` (required first if it was not), waiting up to
    /// `timeout`; the data is kept until [`Peer::release`].
    fn demand(&mut self, name: &str, timeout: Duration) -> Outcome<Vec<u8>>;
    /// Drops what was demanded of `name` (if anything was) and ends the
    /// consumer's interest.
    fn release(&mut self, name: &str);
    /// Gives up the require of `name`.
    fn retract(&mut self, name: &str) -> Outcome<()>;
    /// Withdraws our offer of `name` (or keeps waiting for a withdrawal
    /// begun before), up to `timeout`: false while it still waits.
    fn withdraw(&mut self, name: &str, timeout: Duration) -> Outcome<bool>;
    /// Joins consumer group `group`, which streams the offers `selector`
    /// matches.
    fn join(&mut self, group: &str, selector: &str) -> Outcome<()>;
    /// The next record of our group, up to `timeout`: its object's name.
    /// The record is held (undone) until [`Peer::complete`].
    fn next_record(&mut self, timeout: Duration) -> Outcome<Option<String>>;
    /// Marks the held record of `name` done.
    fn complete(&mut self, name: &str) -> Outcome<()>;
    /// Gives the held record of `name` back unfinished (in process: drops
    /// it).
    fn give_back(&mut self, name: &str) -> Outcome<()>;
    /// Leaves our group without finishing the records held.
    fn leave_group(&mut self) -> Outcome<()>;
    /// Subscribes, acknowledged, to the events of `kind`, and never reads
    /// the subscription.
    fn ignore_acknowledged(&mut self, kind: EventKind) -> Outcome<()>;
    /// The names on offer whose attributes match `selector`, sorted.
    fn query(&mut self, selector: &str) -> Outcome<Vec<String>>;
    /// Subscribes to the events of `kinds` whose object `selector`
    /// matches; with `replay`, first to an offer event for each object on
    /// offer that it matches (one such subscription per peer).
    fn subscribe(&mut self, selector: &str, kinds: EventMask, replay: bool) -> Outcome<()>;
    /// The next event of that subscription, up to `timeout`: its kind and
    /// object.
    fn next_event(&mut self, timeout: Duration) -> Outcome<Option<(EventKind, String)>>;
}

/// What a test needs configured; the same policy in both deployments.
#[derive(Clone, Copy, Default)]
struct Setup {
    duplicates: DuplicateOffers,
    /// How long acknowledged events hold their operation (`None`: the
    /// deployment's default).
    ack_timeout: Option<Duration>,
    policy: FaultPolicy,
}

impl Setup {
    /// The defaults, with a second offer of a name kept as a newer version.
    fn versions() -> Setup {
        Setup {
            duplicates: DuplicateOffers::Version,
            ..Setup::default()
        }
    }
}

/// Either deployment, ready for peers.
trait Deployment {
    /// Its name in messages.
    fn label(&self) -> &'static str;
    /// A new application on it, named `name`.
    fn peer(&self, name: &str) -> Box<dyn Peer + '_>;
}

/// Runs `body` against an in-process pool and against a pool manager set
/// up alike.
fn both(setup: Setup, body: impl Fn(&dyn Deployment)) {
    let local = InProcess::new(setup);
    body(&local);
    let manager = Manager::new(setup);
    body(&manager);
}

// ---- in process -------------------------------------------------------

struct InProcess {
    env: common::Env,
}

impl InProcess {
    fn new(setup: Setup) -> Self {
        let mut config = PoolConfig {
            duplicates: setup.duplicates,
            policy: setup.policy,
            ..PoolConfig::default()
        };
        if let Some(t) = setup.ack_timeout {
            config.ack_timeout = t;
        }
        InProcess {
            env: common::env_with(config),
        }
    }
}

impl Deployment for InProcess {
    fn label(&self) -> &'static str {
        "in-process"
    }

    fn peer(&self, _name: &str) -> Box<dyn Peer + '_> {
        Box::new(Local {
            pool: &self.env.pool,
            offered: HashMap::new(),
            consumers: HashMap::new(),
            data: HashMap::new(),
            member: None,
            records: Vec::new(),
            subscriptions: Vec::new(),
            events: None,
        })
    }
}

struct Local<'p> {
    pool: &'p Pool,
    offered: HashMap<String, Cdo<'p>>,
    consumers: HashMap<String, Cdo<'p>>,
    data: HashMap<String, Data>,
    member: Option<Member<'p>>,
    records: Vec<Record>,
    subscriptions: Vec<cdo::Subscription>,
    events: Option<cdo::Subscription>,
}

impl<'p> Local<'p> {
    fn consumer(&mut self, name: &str) -> Outcome<&mut Cdo<'p>> {
        if !self.consumers.contains_key(name) {
            self.require(name)?;
        }
        Ok(self.consumers.get_mut(name).expect("required above"))
    }
}

impl Peer for Local<'_> {
    fn offer(&mut self, name: &str, bytes: &[u8], lifetime: Duration) -> Outcome<()> {
        let mut cdo = self.pool.declare(name)?;
        if !lifetime.is_zero() {
            cdo.set_lifetime(lifetime)?;
        }
        cdo.write(bytes)?;
        cdo.seal()?;
        // An offer that took effect stays, whatever the answer.
        let offered = cdo.offer();
        if cdo.state() == cdo::State::Offered {
            self.offered.insert(name.into(), cdo);
        }
        Ok(offered?)
    }

    fn offer_step(&mut self, name: &str, bytes: &[u8], step: u64) -> Outcome<()> {
        let mut cdo = self.pool.declare(name)?;
        cdo.set("app.step", step)?;
        cdo.write(bytes)?;
        cdo.seal()?;
        cdo.offer()?;
        self.offered.insert(name.into(), cdo);
        Ok(())
    }

    fn require(&mut self, name: &str) -> Outcome<()> {
        let mut cdo = self.pool.declare(name)?;
        cdo.require()?;
        self.consumers.insert(name.into(), cdo);
        Ok(())
    }

    fn demand(&mut self, name: &str, timeout: Duration) -> Outcome<Vec<u8>> {
        let data = self.consumer(name)?.demand_timeout(timeout)?;
        let bytes = data.as_slice()?.to_vec();
        self.data.insert(name.into(), data);
        Ok(bytes)
    }

    fn release(&mut self, name: &str) {
        self.data.remove(name);
        if let Some(mut cdo) = self.consumers.remove(name) {
            if cdo.state() == cdo::State::Required {
                cdo.retract().expect("a required handle retracts");
            }
            cdo.dispose()
                .expect("a demanded or retracted handle disposes");
        }
    }

    fn retract(&mut self, name: &str) -> Outcome<()> {
        let mut cdo = self.consumers.remove(name).expect("required before");
        cdo.retract()?;
        cdo.dispose()?;
        Ok(())
    }

    fn withdraw(&mut self, name: &str, timeout: Duration) -> Outcome<bool> {
        let cdo = self.offered.get_mut(name).expect("offered before");
        match cdo.withdraw_timeout(timeout) {
            Ok(()) => {
                let mut cdo = self.offered.remove(name).expect("found above");
                cdo.dispose()?;
                Ok(true)
            }
            Err(Error::Timeout { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn join(&mut self, group: &str, selector: &str) -> Outcome<()> {
        self.member = Some(self.pool.join(group, selector)?);
        Ok(())
    }

    fn next_record(&mut self, timeout: Duration) -> Outcome<Option<String>> {
        let member = self.member.as_ref().expect("joined before");
        Ok(member.next_timeout(timeout).map(|r| {
            let name = r.name().to_owned();
            self.records.push(r);
            name
        }))
    }

    fn complete(&mut self, name: &str) -> Outcome<()> {
        let at = self
            .records
            .iter()
            .position(|r| r.name() == name)
            .expect("a held record");
        self.records.remove(at).complete();
        Ok(())
    }

    fn give_back(&mut self, name: &str) -> Outcome<()> {
        let at = self
            .records
            .iter()
            .position(|r| r.name() == name)
            .expect("a held record");
        drop(self.records.remove(at));
        Ok(())
    }

    fn leave_group(&mut self) -> Outcome<()> {
        // Undone records go back to the group, then the member goes.
        self.records.clear();
        self.member = None;
        Ok(())
    }

    fn ignore_acknowledged(&mut self, kind: EventKind) -> Outcome<()> {
        self.subscriptions
            .push(self.pool.subscribe("", kind.into(), true)?);
        Ok(())
    }

    fn query(&mut self, selector: &str) -> Outcome<Vec<String>> {
        let mut names: Vec<String> = self
            .pool
            .offers(selector)?
            .into_iter()
            .map(|o| o.name.to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    fn subscribe(&mut self, selector: &str, kinds: EventMask, replay: bool) -> Outcome<()> {
        self.events = Some(match replay {
            true => self.pool.subscribe_replay(selector, kinds, false)?,
            false => self.pool.subscribe(selector, kinds, false)?,
        });
        Ok(())
    }

    fn next_event(&mut self, timeout: Duration) -> Outcome<Option<(EventKind, String)>> {
        let events = self.events.as_ref().expect("subscribed before");
        Ok(events.wait(timeout).map(|e| (e.kind, e.name.to_string())))
    }
}

// ---- through a pool manager --------------------------------------------

struct Manager {
    pm: ManagerHandle,
}

impl Manager {
    fn new(setup: Setup) -> Self {
        let mut config = ManagerConfig {
            pool: cdo::PoolConfig {
                duplicates: setup.duplicates,
                policy: setup.policy,
                ..Default::default()
            },
            ..ManagerConfig::default()
        };
        if let Some(t) = setup.ack_timeout {
            config.pool.ack_timeout = t;
        }
        Manager {
            pm: ipc_common::manager_with(config),
        }
    }
}

impl Deployment for Manager {
    fn label(&self) -> &'static str {
        "pool manager"
    }

    fn peer(&self, name: &str) -> Box<dyn Peer + '_> {
        Box::new(Remote {
            client: ipc_common::client(&self.pm, name),
            views: HashMap::new(),
            withdrawals: HashMap::new(),
            group: None,
            records: Vec::new(),
        })
    }
}

struct Remote {
    client: cdo::ipc::client::Client,
    views: HashMap<String, View>,
    withdrawals: HashMap<String, u64>,
    group: Option<u64>,
    records: Vec<GroupRecord>,
}

impl Peer for Remote {
    fn offer(&mut self, name: &str, bytes: &[u8], lifetime: Duration) -> Outcome<()> {
        let mut attrs = cdo::ipc::wire::Attributes::new();
        if !lifetime.is_zero() {
            let ms = u64::try_from(lifetime.as_millis()).expect("a test lifetime");
            attrs.insert("lifetime_ms".into(), Value::UInt(ms));
        }
        Ok(self.client.offer(name, bytes, attrs)?)
    }

    fn offer_step(&mut self, name: &str, bytes: &[u8], step: u64) -> Outcome<()> {
        let attrs = [("app.step".to_string(), Value::UInt(step))].into();
        Ok(self.client.offer(name, bytes, attrs)?)
    }

    fn require(&mut self, name: &str) -> Outcome<()> {
        Ok(self.client.require(name)?)
    }

    fn demand(&mut self, name: &str, timeout: Duration) -> Outcome<Vec<u8>> {
        let view = self.client.demand(name, timeout)?;
        let bytes = view.to_vec();
        self.views.insert(name.into(), view);
        Ok(bytes)
    }

    fn release(&mut self, name: &str) {
        self.views.remove(name);
        self.client
            .flush()
            .expect("the release reaches the manager");
    }

    fn retract(&mut self, name: &str) -> Outcome<()> {
        Ok(self.client.retract(name)?)
    }

    fn withdraw(&mut self, name: &str, timeout: Duration) -> Outcome<bool> {
        let id = match self.withdrawals.get(name) {
            Some(&id) => id,
            None => {
                let id = self.client.submit_withdraw(name)?;
                self.withdrawals.insert(name.into(), id);
                id
            }
        };
        match self.client.wait_keeping(id, Some(timeout)) {
            Ok(_) => {
                self.withdrawals.remove(name);
                Ok(true)
            }
            Err(ClientError::Timeout) => Ok(false),
            Err(e) => {
                self.withdrawals.remove(name);
                Err(e.into())
            }
        }
    }

    fn join(&mut self, group: &str, selector: &str) -> Outcome<()> {
        self.group = Some(self.client.join_group(group, selector)?);
        Ok(())
    }

    fn next_record(&mut self, timeout: Duration) -> Outcome<Option<String>> {
        match self.client.next_notice(Some(timeout))? {
            None => Ok(None),
            Some(Notice::Record(r)) => {
                let name = r.view.name().to_owned();
                self.records.push(r);
                Ok(Some(name))
            }
            Some(Notice::Event(e)) => Err(Failure::Other(format!("unexpected event {e:?}"))),
        }
    }

    fn complete(&mut self, name: &str) -> Outcome<()> {
        let at = self
            .records
            .iter()
            .position(|r| r.view.name() == name)
            .expect("a held record");
        Ok(self.client.done(self.records.remove(at))?)
    }

    fn give_back(&mut self, name: &str) -> Outcome<()> {
        let at = self
            .records
            .iter()
            .position(|r| r.view.name() == name)
            .expect("a held record");
        Ok(self.client.give_back(self.records.remove(at))?)
    }

    fn leave_group(&mut self) -> Outcome<()> {
        self.records.clear();
        let sub = self.group.take().expect("joined before");
        Ok(self.client.unsubscribe(sub)?)
    }

    fn ignore_acknowledged(&mut self, kind: EventKind) -> Outcome<()> {
        self.client.subscribe("", kind.into(), true)?;
        Ok(())
    }

    fn query(&mut self, selector: &str) -> Outcome<Vec<String>> {
        let mut names = self.client.query(selector)?;
        names.sort();
        Ok(names)
    }

    fn subscribe(&mut self, selector: &str, kinds: EventMask, replay: bool) -> Outcome<()> {
        match replay {
            true => self.client.subscribe_replay(selector, kinds, false)?,
            false => self.client.subscribe(selector, kinds, false)?,
        };
        Ok(())
    }

    fn next_event(&mut self, timeout: Duration) -> Outcome<Option<(EventKind, String)>> {
        match self.client.next_notice(Some(timeout))? {
            None => Ok(None),
            Some(Notice::Event(e)) => Ok(Some((e.kind, e.name))),
            Some(Notice::Record(r)) => Err(Failure::Other(format!(
                "unexpected record of {}",
                r.view.name()
            ))),
        }
    }
}

// ---- the semantics ------------------------------------------------------

/// A second offer of a name on offer is refused under the `reject`
/// policy (the default in both), and the first offer stays as it was.
#[test]
fn a_second_offer_is_refused_and_the_first_stays() {
    both(Setup::default(), |d| {
        let mut first = d.peer("first");
        let mut second = d.peer("second");
        let mut consumer = d.peer("consumer");
        first.offer("dup", &[1; 16], Duration::ZERO).unwrap();
        assert_eq!(
            second.offer("dup", &[2; 16], Duration::ZERO),
            Err(Failure::Duplicate),
            "{}",
            d.label()
        );
        assert_eq!(consumer.demand("dup", LONG).unwrap(), [1; 16]);
        consumer.release("dup");
        assert!(first.withdraw("dup", LONG).unwrap(), "{}", d.label());
    });
}

/// Under the `version` policy a second offer of a name becomes a newer
/// version: demands get the newest on offer, and when it is withdrawn the
/// older one is in view again.
#[test]
fn a_second_offer_is_a_newer_version_under_the_version_policy() {
    both(Setup::versions(), |d| {
        let mut older = d.peer("older");
        let mut newer = d.peer("newer");
        let mut first = d.peer("first");
        let mut second = d.peer("second");
        older.offer("ver", &[1; 8], Duration::ZERO).unwrap();
        newer.offer("ver", &[2; 8], Duration::ZERO).unwrap();
        assert_eq!(first.demand("ver", LONG).unwrap(), [2; 8], "{}", d.label());
        first.release("ver");
        assert!(newer.withdraw("ver", LONG).unwrap(), "{}", d.label());
        assert_eq!(second.demand("ver", LONG).unwrap(), [1; 8], "{}", d.label());
        second.release("ver");
        assert!(older.withdraw("ver", LONG).unwrap(), "{}", d.label());
    });
}

/// A require is matched with the object on offer when it is made (the
/// newest version), or with the next one offered: a newer version offered
/// between the require and the demand does not change what the demand
/// gets, and the withdrawal of the matched object waits for it while the
/// newer one's does not.
///
/// Right answer: the in-process pool's rule. A require is a promise that
/// the data will be there to demand, so it is a promise about one object;
/// a pool manager that served the newest at demand time held every
/// version's withdrawal for a require that only one of them could end.
#[test]
fn a_require_is_matched_with_the_object_on_offer_when_it_is_made() {
    both(Setup::versions(), |d| {
        let label = d.label();
        let mut older = d.peer("older");
        let mut newer = d.peer("newer");
        let mut consumer = d.peer("consumer");
        older.offer("match", &[1; 8], Duration::ZERO).unwrap();
        consumer.require("match").unwrap();
        newer.offer("match", &[2; 8], Duration::ZERO).unwrap();
        assert!(
            newer.withdraw("match", LONG).unwrap(),
            "{label}: v1 is not required"
        );
        newer.offer("match", &[3; 8], Duration::ZERO).unwrap();
        assert!(
            !older.withdraw("match", SHORT).unwrap(),
            "{label}: v0 is required"
        );
        assert_eq!(consumer.demand("match", LONG).unwrap(), [1; 8], "{label}");
        consumer.release("match");
        assert!(older.withdraw("match", LONG).unwrap(), "{label}");

        // Required before any offer: matched with the first that comes.
        consumer.require("later").unwrap();
        older.offer("later", &[4; 8], Duration::ZERO).unwrap();
        newer.offer("later", &[5; 8], Duration::ZERO).unwrap();
        assert!(newer.withdraw("match", LONG).unwrap(), "{label}");
        assert!(newer.withdraw("later", LONG).unwrap(), "{label}");
        assert_eq!(consumer.demand("later", LONG).unwrap(), [4; 8], "{label}");
        consumer.release("later");
        assert!(older.withdraw("later", LONG).unwrap(), "{label}");
    });
}

/// A new version is numbered one more than the newest still on offer (0
/// when none is): a number withdrawn with its offer is given again, in
/// both deployments.
///
/// Right answer: the pool manager's rule, which only looks at what is on
/// offer; the in-process pool counted on from every offer its handles had
/// seen, so the two gave the same offer different numbers. The rule is
/// now one function (`engine::rules::next_version`).
#[test]
fn a_version_counts_from_the_newest_on_offer() {
    both(Setup::versions(), |d| {
        let label = d.label();
        let mut older = d.peer("older");
        let mut newer = d.peer("newer");
        let mut third = d.peer("third");
        older.offer("num/a", &[1; 4], Duration::ZERO).unwrap();
        newer.offer("num/a", &[2; 4], Duration::ZERO).unwrap();
        assert!(newer.withdraw("num/a", LONG).unwrap(), "{label}");
        third.offer("num/a", &[3; 4], Duration::ZERO).unwrap();
        assert_eq!(older.query("version == 1").unwrap(), ["num/a"], "{label}");
        assert_eq!(older.query("version == 2").unwrap(), [""; 0], "{label}");

        // Withdrawn and offered again by the same producer: version 0 again.
        assert!(third.withdraw("num/a", LONG).unwrap(), "{label}");
        assert!(older.withdraw("num/a", LONG).unwrap(), "{label}");
        older.offer("num/a", &[4; 4], Duration::ZERO).unwrap();
        assert_eq!(older.query("version == 0").unwrap(), ["num/a"], "{label}");
        assert!(older.withdraw("num/a", LONG).unwrap(), "{label}");
    });
}

/// A name is non-empty `/`-separated segments without control characters,
/// of bounded length, in both deployments: others are refused whatever the
/// operation, and the pool is unchanged.
///
/// Right answer: the in-process pool's rule (the pool manager only bounded
/// the length, and refused a long name as a protocol error), now one
/// function, `engine::names::invalid`.
#[test]
fn names_are_checked_alike() {
    both(Setup::default(), |d| {
        let mut peer = d.peer("peer");
        for bad in ["a//b", "/lead", "trail/", "ctl\u{7}"] {
            let offered = peer.offer(bad, &[1], Duration::ZERO);
            assert_eq!(offered, Err(Failure::InvalidName), "{}", d.label());
            let required = peer.require(bad);
            assert_eq!(required, Err(Failure::InvalidName), "{}", d.label());
            let demanded = peer.demand(bad, SHORT).map(|_| ());
            assert_eq!(demanded, Err(Failure::InvalidName), "{}", d.label());
        }
        let long = "x".repeat(cdo::ipc::limits::MAX_NAME_LEN + 1);
        let offered = peer.offer(&long, &[1], Duration::ZERO);
        assert_eq!(offered, Err(Failure::InvalidName), "{}", d.label());
        assert_eq!(
            peer.query("").unwrap(),
            Vec::<String>::new(),
            "{}",
            d.label()
        );
        peer.offer("fine/name", &[2], Duration::ZERO).unwrap();
        assert!(peer.withdraw("fine/name", LONG).unwrap(), "{}", d.label());
    });
}

/// A demand made before the offer waits for it and gets its bytes.
#[test]
fn a_demand_before_the_offer_waits_for_it() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        let mut consumer = d.peer("consumer");
        consumer.require("early").unwrap();
        assert_eq!(consumer.demand("early", SHORT), Err(Failure::Timeout));
        producer.offer("early", &[7; 32], Duration::ZERO).unwrap();
        assert_eq!(consumer.demand("early", LONG).unwrap(), [7; 32]);
        consumer.release("early");
        assert!(producer.withdraw("early", LONG).unwrap(), "{}", d.label());
    });
}

/// A withdrawal waits for the requires made before it: until each such
/// consumer has demanded (and dropped) the object, or retracted.
///
/// Right answer: wait. Maestro's REQUIRE is a promise that the data will be
/// made available ("when an application REQUIRES a CDO, Maestro makes data
/// available"), and the crate documents that a withdrawal waits for the
/// consumers matched so far; a pool manager that let the producer withdraw
/// would leave the consumer's demand waiting for an object that is gone.
#[test]
fn a_withdrawal_waits_for_the_requires_made_before_it() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        let mut demander = d.peer("demander");
        let mut retracter = d.peer("retracter");
        producer.offer("held", &[3; 64], Duration::ZERO).unwrap();
        demander.require("held").unwrap();
        retracter.require("held").unwrap();
        assert!(!producer.withdraw("held", SHORT).unwrap(), "{}", d.label());

        assert_eq!(demander.demand("held", LONG).unwrap(), [3; 64]);
        demander.release("held");
        assert!(
            !producer.withdraw("held", SHORT).unwrap(),
            "{}: the second require still holds it",
            d.label()
        );

        retracter.retract("held").unwrap();
        assert!(producer.withdraw("held", LONG).unwrap(), "{}", d.label());
    });
}

/// An offer with a minimum lifetime (`lifetime_ms`, requirement R1.8) stays
/// available for that long: its withdrawal completes no earlier, and a
/// consumer that comes while the withdrawal waits is served.
///
/// Right answer: hold the withdrawal (R1.8: "the access is expected to be
/// granted during a user-defined period"). The early checks only run while
/// the lifetime has not passed, so a loaded machine cannot fail them.
#[test]
fn a_minimum_lifetime_holds_the_withdrawal_and_serves_late_consumers() {
    const LIFETIME: Duration = Duration::from_millis(1500);
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        let mut late = d.peer("late");
        let offered = Instant::now();
        producer.offer("kept", &[9; 24], LIFETIME).unwrap();
        let withdrawn = producer.withdraw("kept", Duration::ZERO).unwrap();
        if offered.elapsed() < LIFETIME {
            assert!(!withdrawn, "{}: withdrawn within its lifetime", d.label());
            // Served at once while the lifetime lasts; only a machine that
            // stalls past it may see the object gone.
            match late.demand("kept", LIFETIME) {
                Ok(bytes) => assert_eq!(bytes, [9; 24], "{}", d.label()),
                Err(e) => assert!(offered.elapsed() >= LIFETIME, "{}: {e:?}", d.label()),
            }
            late.release("kept");
        }
        assert!(
            withdrawn || producer.withdraw("kept", LONG).unwrap(),
            "{}",
            d.label()
        );
        assert!(offered.elapsed() >= LIFETIME, "{}", d.label());
    });
}

/// Joining a consumer group checks the selector first: one that does not
/// parse is refused as such whether the group exists or not, and one that
/// parses but differs from the group's is refused as another selector.
///
/// Right answer: the pool manager's order. The in-process pool compared
/// the text with the group's before parsing it, so the same bad selector
/// was a selector error for a new group and a group error for an existing
/// one.
#[test]
fn a_group_join_checks_its_selector_first() {
    both(Setup::default(), |d| {
        let label = d.label();
        let mut first = d.peer("first");
        let mut second = d.peer("second");
        let mut third = d.peer("third");
        assert_eq!(
            first.join("sel", "size >"),
            Err(Failure::BadSelector),
            "{label}"
        );
        first.join("sel", "size > 1").unwrap();
        assert_eq!(
            second.join("sel", "size >"),
            Err(Failure::BadSelector),
            "{label}"
        );
        let other = third.join("sel", "size > 2");
        assert!(
            matches!(other, Err(Failure::Other(_))),
            "{label}: {other:?}"
        );
        first.leave_group().unwrap();
    });
}

/// A consumer-group member holds at most [`GROUP_WINDOW`] undone records;
/// the next one waits in the group until a member has room (it finishes a
/// record, or a new member joins).
///
/// Right answer: bounded (issue 10: "one semantics: bounded, fair"); an
/// unbounded queue lets one slow member take a whole stream that idle
/// members could have processed.
#[test]
fn a_group_member_holds_at_most_the_window() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        let mut member = d.peer("member");
        member.join("g", "").unwrap();
        let names: Vec<String> = (0..=GROUP_WINDOW).map(|i| format!("w/{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            producer.offer(name, &[i as u8; 8], Duration::ZERO).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..GROUP_WINDOW {
            got.push(member.next_record(LONG).unwrap().expect("a record"));
        }
        assert_eq!(
            member.next_record(SHORT).unwrap(),
            None,
            "{}: more than the window",
            d.label()
        );
        member.complete(&got[0]).unwrap();
        got.push(
            member
                .next_record(LONG)
                .unwrap()
                .expect("the queued record"),
        );
        got.sort();
        assert_eq!(got, names, "{}", d.label());

        // Full again: the next record waits in the group for a member
        // that joins.
        let last = format!("w/{}", GROUP_WINDOW + 1);
        producer.offer(&last, &[0; 8], Duration::ZERO).unwrap();
        assert_eq!(member.next_record(SHORT).unwrap(), None, "{}", d.label());
        let mut late = d.peer("late");
        late.join("g", "").unwrap();
        assert_eq!(
            late.next_record(LONG).unwrap(),
            Some(last),
            "{}: the waiting record goes to the new member",
            d.label()
        );
    });
}

/// Records are shared fairly between members, and the undone records of a
/// member that leaves go to another member.
#[test]
fn a_group_shares_fairly_and_redelivers_a_leavers_records() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        let mut a = d.peer("a");
        let mut b = d.peer("b");
        a.join("g", "").unwrap();
        b.join("g", "").unwrap();
        producer.offer("r/0", &[0; 8], Duration::ZERO).unwrap();
        producer.offer("r/1", &[1; 8], Duration::ZERO).unwrap();
        let at_a = a.next_record(LONG).unwrap().expect("a's share");
        let at_b = b.next_record(LONG).unwrap().expect("b's share");
        assert_ne!(at_a, at_b, "{}", d.label());
        a.leave_group().unwrap();
        assert_eq!(
            b.next_record(LONG).unwrap().as_deref(),
            Some(at_a.as_str()),
            "{}: the leaver's record",
            d.label()
        );
        b.complete(&at_a).unwrap();
        b.complete(&at_b).unwrap();
        for name in ["r/0", "r/1"] {
            assert!(producer.withdraw(name, LONG).unwrap(), "{}", d.label());
        }
    });
}

/// The records a member leaves unfinished go to the others first, oldest
/// first, before the records waiting in the group.
///
/// Right answer: the pool manager's. The in-process pool queued a
/// leaver's records behind those waiting, so a record that was already
/// late waited longer still; both now keep one group's books with one
/// type (`engine::groups::GroupBook`).
#[test]
fn a_leaver_s_records_go_before_those_waiting_in_the_group() {
    let window = GROUP_WINDOW as usize;
    both(Setup::default(), |d| {
        let label = d.label();
        let mut producer = d.peer("producer");
        let mut a = d.peer("a");
        let mut b = d.peer("b");
        a.join("lg", "").unwrap();
        b.join("lg", "").unwrap();
        let names: Vec<String> = (0..=2 * window).map(|i| format!("lg/{i:02}")).collect();
        for name in &names {
            producer.offer(name, &[1; 8], Duration::ZERO).unwrap();
        }
        let at_b: Vec<String> = (0..window)
            .map(|_| b.next_record(LONG).unwrap().expect("b's share"))
            .collect();
        let waiting = &names[2 * window];
        let at_a: Vec<&String> = names[..2 * window]
            .iter()
            .filter(|n| !at_b.contains(n))
            .collect();
        assert_eq!(at_a.len(), window, "{label}: a's share");
        a.leave_group().unwrap();
        b.complete(&at_b[0]).unwrap();
        let next = b.next_record(LONG).unwrap().expect("a record");
        assert_eq!(&next, at_a[0], "{label}: not the leaver's oldest record");
        assert_ne!(&next, waiting, "{label}");
        let mut done = vec![at_b[0].clone()];
        for name in at_b[1..].iter().chain(std::iter::once(&next)) {
            b.complete(name).unwrap();
            done.push(name.clone());
        }
        while done.len() < names.len() {
            let name = b.next_record(LONG).unwrap().expect("every record comes");
            b.complete(&name).unwrap();
            done.push(name);
        }
        for name in &names {
            assert!(producer.withdraw(name, LONG).unwrap(), "{label}");
        }
    });
}

/// A record given back unfinished goes to another member of its group at
/// once, not when its member leaves.
///
/// Right answer: the in-process pool's (a record dropped there goes back
/// at once). A manager kept it with its member until the member left, so
/// a member that could not process one record stalled it; clients that
/// agreed to the give-back capability now hand it back.
#[test]
fn a_record_given_back_goes_to_another_member_at_once() {
    both(Setup::default(), |d| {
        let label = d.label();
        let mut producer = d.peer("producer");
        let mut a = d.peer("a");
        let mut b = d.peer("b");
        a.join("gb", "").unwrap();
        b.join("gb", "").unwrap();
        producer.offer("gb/0", &[6; 8], Duration::ZERO).unwrap();
        let (holder, other) = match a.next_record(SHORT).unwrap() {
            Some(name) => {
                assert_eq!(name, "gb/0", "{label}");
                (&mut a, &mut b)
            }
            None => {
                let name = b.next_record(LONG).unwrap();
                assert_eq!(name.as_deref(), Some("gb/0"), "{label}");
                (&mut b, &mut a)
            }
        };
        holder.give_back("gb/0").unwrap();
        assert_eq!(
            other.next_record(LONG).unwrap().as_deref(),
            Some("gb/0"),
            "{label}: the record given back"
        );
        other.complete("gb/0").unwrap();
        assert!(producer.withdraw("gb/0", LONG).unwrap(), "{label}");
    });
}

/// An acknowledged event that nobody acknowledges holds its operation for
/// the acknowledgement timeout only; then, under the fail-fast policy, the
/// operation reports `AckTimeout` (having taken effect: the object is on
/// offer), and under best effort it succeeds.
///
/// Right answer: time out (the Maestro fault-tolerance design names an
/// acknowledgement timeout, `MSTRO_FT_ACK_TIMEOUT`); waiting forever lets
/// one stuck subscriber stop the workflow.
#[test]
fn an_unacknowledged_event_times_out_by_policy() {
    for policy in [FaultPolicy::FailFast, FaultPolicy::BestEffort] {
        let setup = Setup {
            ack_timeout: Some(SHORT),
            policy,
            ..Setup::default()
        };
        both(setup, |d| {
            let mut deaf = d.peer("deaf");
            let mut producer = d.peer("producer");
            let mut consumer = d.peer("consumer");
            deaf.ignore_acknowledged(EventKind::Offer).unwrap();
            let offered = producer.offer("acked", &[5; 8], Duration::ZERO);
            let expected = match policy {
                FaultPolicy::FailFast => Err(Failure::AckTimeout),
                FaultPolicy::BestEffort => Ok(()),
            };
            assert_eq!(offered, expected, "{} {policy:?}", d.label());
            assert_eq!(consumer.demand("acked", LONG).unwrap(), [5; 8]);
            consumer.release("acked");
        });
    }
}

/// A query of the offers by attributes lists the matching names (a bad
/// selector is a typed error, and nothing changes).
///
/// Right answer: the in-process pool's (`Pool::offers`), which guided I/O
/// and the librarian need; the pool manager answers it since protocol
/// version 5 (`Client::query`).
#[test]
fn a_query_lists_the_matching_offers() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        producer.offer_step("q/a", &[1; 4], 1).unwrap();
        producer.offer_step("q/b", &[2; 8], 2).unwrap();
        producer.offer_step("other", &[3; 4], 3).unwrap();
        producer.offer("plain", &[4; 4], Duration::ZERO).unwrap();
        let query = |p: &mut Box<dyn Peer + '_>, s: &str| p.query(s).unwrap();
        assert_eq!(
            query(&mut producer, "app.step >= 2"),
            ["other", "q/b"],
            "{}",
            d.label()
        );
        assert_eq!(
            query(&mut producer, "size == 4"),
            ["other", "plain", "q/a"],
            "{}: the size is an attribute of every offer",
            d.label()
        );
        assert_eq!(
            query(&mut producer, "has app.step"),
            ["other", "q/a", "q/b"],
            "{}",
            d.label()
        );
        assert_eq!(
            producer.query("app.step >="),
            Err(Failure::BadSelector),
            "{}",
            d.label()
        );
        assert!(producer.withdraw("q/a", LONG).unwrap(), "{}", d.label());
        assert_eq!(
            query(&mut producer, "name ~ \"^q/\""),
            ["q/b"],
            "{}",
            d.label()
        );
    });
}

/// The next `n` events of `peer`'s subscription, then none for a while.
fn events(peer: &mut Box<dyn Peer + '_>, n: usize) -> Vec<(EventKind, String)> {
    let got: Vec<_> = (0..n)
        .map_while(|_| peer.next_event(LONG).unwrap())
        .collect();
    assert_eq!(peer.next_event(SHORT).unwrap(), None, "after {got:?}");
    got
}

/// A subscriber that joins late and asks for a replay first gets an offer
/// event for each object on offer that its selector matches, in offer
/// order (not name order; withdrawn ones not), then the live events; a
/// plain subscriber gets the live events only.
///
/// Right answer: new in both (issue 10), the same replayed sequence;
/// through a pool manager it needs the replay capability, agreed when the
/// client joins (protocol 9).
#[test]
fn a_late_subscriber_gets_the_offers_replayed_then_the_live_events() {
    both(Setup::default(), |d| {
        let mut producer = d.peer("producer");
        producer.offer_step("late/z", &[1], 3).unwrap();
        producer.offer_step("late/low", &[2], 1).unwrap();
        producer.offer_step("late/a", &[3], 5).unwrap();
        producer.offer_step("late/gone", &[4], 7).unwrap();
        assert!(producer.withdraw("late/gone", LONG).unwrap());
        let kinds = EventKind::Offer | EventKind::Withdraw;
        let mut late = d.peer("late");
        late.subscribe("app.step >= 2", kinds, true).unwrap();
        let mut plain = d.peer("plain");
        plain.subscribe("app.step >= 2", kinds, false).unwrap();
        producer.offer_step("late/new", &[5], 9).unwrap();
        assert!(producer.withdraw("late/z", LONG).unwrap());

        let live = [
            (EventKind::Offer, "late/new".to_string()),
            (EventKind::Withdraw, "late/z".to_string()),
        ];
        let mut replayed = vec![
            (EventKind::Offer, "late/z".to_string()),
            (EventKind::Offer, "late/a".to_string()),
        ];
        replayed.extend(live.clone());
        assert_eq!(events(&mut late, 4), replayed, "{}", d.label());
        assert_eq!(events(&mut plain, 2), live, "{}", d.label());

        // Without offer events, nothing is replayed.
        let mut quiet = d.peer("quiet");
        quiet
            .subscribe("*", EventKind::Withdraw.into(), true)
            .unwrap();
        assert_eq!(events(&mut quiet, 0), [], "{}", d.label());
    });
}

/// Selectors see the derived `version` of an offer: 0 for the first offer
/// of a name, one more for each newer version on offer (`version`
/// policy), in queries and in subscriptions alike.
///
/// Right answer: the in-process pool's, where `version` was always
/// derived; the pool manager derives it too since protocol 9 (it derives
/// no `space` or `tier`: its shared segments lie in no mamba space).
#[test]
fn selectors_see_the_version_of_an_offer() {
    both(Setup::versions(), |d| {
        let mut older = d.peer("older");
        let mut newer = d.peer("newer");
        let mut watcher = d.peer("watcher");
        watcher
            .subscribe("version == 1", EventKind::Offer.into(), false)
            .unwrap();
        older.offer("v/x", &[1; 4], Duration::ZERO).unwrap();
        newer.offer("v/x", &[2; 4], Duration::ZERO).unwrap();
        older.offer("v/y", &[3; 4], Duration::ZERO).unwrap();
        let label = d.label();
        assert_eq!(older.query("version == 1").unwrap(), ["v/x"], "{label}");
        assert_eq!(
            older.query("version == 0").unwrap(),
            ["v/x", "v/y"],
            "{label}"
        );
        assert_eq!(
            events(&mut watcher, 1),
            [(EventKind::Offer, "v/x".to_string())],
            "{label}"
        );
        assert!(newer.withdraw("v/x", LONG).unwrap(), "{label}");
        assert_eq!(older.query("version == 1").unwrap(), [""; 0], "{label}");
    });
}
