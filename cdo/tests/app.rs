//! The one application API ([`cdo::app`]): every test body runs once with
//! its applications sharing an in-process pool and once with each of them
//! joined to a pool manager the test starts, and asserts the same
//! observable behaviour in both.

mod common;

use cdo::app::{Deployment, Librarian, Pool, Served};
use cdo::archive::{Archive, Outcome};
use cdo::ipc::manager::{ManagerConfig, ProducerExit};
use cdo::{
    DuplicateOffers, Error, EventKind, EventMask, Op, Participant, PoolConfig, Priority, State,
    UnknownAttributes, Value,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A guard against hanging, not a timing check: every wait that must end
/// ends long before it.
const LONG: Duration = Duration::from_secs(20);

/// How long a test watches for something that must not happen.
const SHORT: Duration = Duration::from_millis(200);

/// How long acknowledged events hold their operation, in both.
const ACK_TIMEOUT: Duration = Duration::from_millis(300);

/// Where the applications of a test body meet.
enum Host {
    /// One in-process pool, shared by every application (with the
    /// directory of its SSD tier).
    Local {
        pool: Arc<cdo::Pool>,
        _dir: tempfile::TempDir,
    },
    /// A pool manager, started by (and living with) its first application.
    Manager(Pool),
}

/// How a test's pool is configured, the same in both deployments.
#[derive(Default)]
struct Setup {
    /// Whether consumer groups keep their records when their last member
    /// leaves.
    keep: bool,
    /// A user-attribute schema (YAML), if any, and what happens to the
    /// attributes it does not know.
    schema: Option<(&'static str, UnknownAttributes)>,
    /// What happens to the offers of a producer that goes.
    producer_exit: ProducerExit,
    /// What a second offer of a name on offer is.
    duplicates: DuplicateOffers,
}

impl Setup {
    /// The pool's configuration, the same for both deployments; a schema
    /// goes to a file in `dir`, which each deployment reads.
    fn config(&self, dir: &Path) -> PoolConfig {
        let mut config = PoolConfig {
            ack_timeout: ACK_TIMEOUT,
            keep_group_records: self.keep,
            producer_exit: self.producer_exit,
            duplicates: self.duplicates,
            ..PoolConfig::default()
        };
        if let Some((yaml, unknown)) = self.schema {
            let path = dir.join("schema.yaml");
            std::fs::write(&path, yaml).expect("write the schema");
            config.schemas = vec![path];
            config.unknown_attributes = unknown;
        }
        config
    }
}

impl Host {
    /// An in-process pool configured by `setup`.
    fn in_process(setup: &Setup) -> Host {
        let (mamba, dir) = common::mamba();
        let pool = cdo::Pool::new(mamba, setup.config(dir.path())).expect("an in-process pool");
        Host::Local {
            pool: Arc::new(pool),
            _dir: dir,
        }
    }

    /// A pool manager, configured as [`Host::in_process`].
    fn manager(setup: &Setup) -> Host {
        // The manager reads its schema files when it starts.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = ManagerConfig {
            pool: setup.config(dir.path()),
            runtime_dir: Some(std::env::temp_dir()),
            ..ManagerConfig::default()
        };
        Host::Manager(Pool::start_manager(config, "host").expect("a pool manager"))
    }

    /// A new application, named `name`.
    fn app(&self, name: &str) -> Pool {
        match self {
            Host::Local { pool, .. } => Pool::join_local(Arc::clone(pool), name),
            Host::Manager(host) => {
                let endpoint = host.endpoint().expect("started here").clone();
                Pool::connect(endpoint, name).expect("joins the manager")
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Host::Local { .. } => "in-process",
            Host::Manager(_) => "pool manager",
        }
    }
}

/// Runs `body` in process and through a pool manager.
fn both(body: impl Fn(&Host)) {
    both_with(&Setup::default(), body);
}

/// [`both`], with consumer groups that keep their records when their last
/// member leaves when `keep` says so.
fn both_keeping(keep: bool, body: impl Fn(&Host)) {
    let setup = Setup {
        keep,
        ..Setup::default()
    };
    both_with(&setup, body);
}

/// [`both`], with pools that keep a second offer of a name as a newer
/// version.
fn both_with_versions(body: impl Fn(&Host)) {
    let setup = Setup {
        duplicates: DuplicateOffers::Version,
        ..Setup::default()
    };
    both_with(&setup, body);
}

/// [`both`], with pools configured by `setup`.
fn both_with(setup: &Setup, body: impl Fn(&Host)) {
    let local = Host::in_process(setup);
    assert_eq!(local.app("a").deployment(), Deployment::InProcess);
    body(&local);
    let manager = Host::manager(setup);
    assert_eq!(manager.app("a").deployment(), Deployment::Manager);
    body(&manager);
}

/// Offers `bytes` under `name` from `pool`.
fn offer<'p>(pool: &'p Pool, name: &str, bytes: &[u8]) -> cdo::app::Cdo<'p> {
    offer_as(pool, name, &[], bytes)
}

/// Offers `bytes` under `name` from `pool` with the producer attributes
/// `attrs` set (`shape`, `element_type` and the like).
fn offer_as<'p>(
    pool: &'p Pool,
    name: &str,
    attrs: &[(&str, Value)],
    bytes: &[u8],
) -> cdo::app::Cdo<'p> {
    let mut cdo = pool.declare(name).unwrap();
    for (key, value) in attrs {
        cdo.set(key, value.clone()).unwrap();
    }
    cdo.write(bytes).unwrap();
    cdo.seal().unwrap();
    cdo.offer().unwrap();
    assert_eq!(cdo.state(), State::Offered);
    cdo
}

/// The attributes `pool` receives with `name` (required, demanded, its
/// view dropped and its handle disposed).
fn demanded_attributes(pool: &Pool, name: &str) -> cdo::FlatAttributes {
    let mut c = pool.declare(name).unwrap();
    c.require().unwrap();
    drop(c.demand_timeout(LONG).unwrap());
    let got = c.offered_attributes().expect("received");
    c.dispose().unwrap();
    got
}

/// The bytes `pool` receives of `name` with the consumer attributes
/// `wanted` set (`wanted_order` and the like); after a failed demand the
/// handle is still required, and retracts.
fn demand_as(pool: &Pool, name: &str, wanted: &[(&str, Value)]) -> cdo::Result<Vec<u8>> {
    let mut c = pool.declare(name).unwrap();
    for (key, value) in wanted {
        c.set(key, value.clone()).unwrap();
    }
    c.require().unwrap();
    let got = c.demand_timeout(LONG).map(|view| bytes_of(&view));
    if got.is_err() {
        let deployment = pool.deployment();
        assert_eq!(
            c.state(),
            State::Required,
            "{deployment:?}: a failed demand"
        );
        c.retract().unwrap();
    }
    c.dispose().unwrap();
    got
}

/// Bytes that differ from offset to offset.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn an_offer_is_demanded_with_its_content() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let bytes = pattern(10_000);
        let mut p = offer(&producer, "rt/field", &bytes);

        let mut c = consumer.declare("rt/field").unwrap();
        c.require().unwrap();
        let view = c.demand_timeout(LONG).unwrap();
        assert_eq!(view.len(), bytes.len(), "{}", host.label());
        assert_eq!(view.bytes().unwrap(), &bytes[..], "{}", host.label());
        assert_eq!(c.state(), State::Demanded);
        let size = Some(Value::UInt(bytes.len() as u64));
        for handle in [&p, &c] {
            let offered = handle.offered_attributes().expect("offered or received");
            assert_eq!(offered.get("size").cloned(), size, "{}", host.label());
        }
        drop(view);
        c.dispose().unwrap();

        p.withdraw_timeout(LONG).unwrap();
        assert_eq!(p.state(), State::Withdrawn);
        p.dispose().unwrap();
        assert_eq!(producer.query("").unwrap(), Vec::<String>::new());
    });
}

#[test]
fn user_attributes_are_checked_by_the_schema_when_set() {
    let yaml = "namespace: app\nattributes:\n  step: {type: uint, required: true}\n  label: str\n";
    for unknown in [UnknownAttributes::Reject, UnknownAttributes::Drop] {
        let setup = Setup {
            schema: Some((yaml, unknown)),
            ..Setup::default()
        };
        both_with(&setup, |host| {
            let label = format!("{} ({unknown:?})", host.label());
            let producer = host.app("producer");
            let consumer = host.app("consumer");
            let mut p = producer.declare("schema/x").unwrap();
            match p.set("app.step", "four") {
                Err(Error::TypeMismatch { key, .. }) => assert_eq!(key, "app.step", "{label}"),
                other => panic!("{label}: a wrong type is refused when set: {other:?}"),
            }
            match (unknown, p.set("app.colour", "red")) {
                (UnknownAttributes::Reject, Err(Error::UnknownAttribute { key })) => {
                    assert_eq!(key, "app.colour", "{label}")
                }
                (UnknownAttributes::Drop, Ok(false)) => {}
                (_, other) => panic!("{label}: an unknown key when set: {other:?}"),
            }
            assert!(p.set("app.label", "x").unwrap(), "{label}");
            p.write(&[1; 4]).unwrap();
            match p.seal() {
                Err(Error::MissingAttribute { key, .. }) => assert_eq!(key, "app.step", "{label}"),
                other => panic!("{label}: a required key missing at seal: {other:?}"),
            }
            assert_eq!(p.state(), State::Declared, "{label}");
            // Coerced to the schema's type, as set.
            assert!(p.set("app.step", 4i64).unwrap(), "{label}");
            p.seal().unwrap();
            p.offer().unwrap();

            let got = demanded_attributes(&consumer, "schema/x");
            assert_eq!(got.get("app.step"), Some(&Value::UInt(4)), "{label}");
            assert_eq!(got.get("app.colour"), None, "{label}");
            p.withdraw_timeout(LONG).unwrap();
            p.dispose().unwrap();
        });
    }
}

#[test]
fn without_a_schema_user_attributes_pass_as_set() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut p = producer.declare("plain/x").unwrap();
        assert!(p.set("app.colour", "red").unwrap(), "{label}");
        assert!(p.set("run.step", 3i64).unwrap(), "{label}");
        p.write(&[2; 8]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let got = demanded_attributes(&consumer, "plain/x");
        assert_eq!(got.get("app.colour"), Some(&Value::from("red")), "{label}");
        assert_eq!(got.get("run.step"), Some(&Value::Int(3)), "{label}");
        p.withdraw_timeout(LONG).unwrap();
        p.dispose().unwrap();
    });
}

#[test]
fn bytes_filled_in_place_are_offered() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let bytes = pattern(256);
        let mut p = producer.declare("fill/x").unwrap();
        assert!(
            matches!(p.buffer_mut(), Err(Error::Inconsistent { .. })),
            "{}: no size, nothing to fill",
            host.label()
        );
        p.set("size", 256u64).unwrap();
        p.seal().unwrap();
        p.buffer_mut().unwrap().copy_from_slice(&bytes);
        p.offer().unwrap();

        let mut c = consumer.declare("fill/x").unwrap();
        c.require().unwrap();
        assert_eq!(c.demand_timeout(LONG).unwrap().bytes().unwrap(), &bytes[..]);
        c.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
    });
}

/// A shape and an element type imply the size alike in both: data of
/// another length is refused, the buffer to fill in place has the implied
/// length, and an empty write attaches nothing (a later write still can).
/// Through a pool manager the handle used to look at `size` only, and an
/// empty write counted as data attached.
#[test]
fn a_shape_and_an_element_type_imply_the_size_in_both() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut p = producer.declare("shape/x").unwrap();
        p.set("element_type", "f64").unwrap();
        p.set("shape", vec![Value::UInt(2), Value::UInt(2)])
            .unwrap();
        assert!(
            matches!(p.write(&[1; 8]), Err(Error::Inconsistent { .. })),
            "{label}: 8 bytes where 32 are implied"
        );
        let bytes = pattern(32);
        p.buffer_mut().unwrap().copy_from_slice(&bytes);
        p.seal().unwrap();
        p.offer().unwrap();

        let mut q = producer.declare("shape/empty").unwrap();
        q.write(&[]).unwrap();
        q.write(&[5; 4]).unwrap();
        q.seal().unwrap();
        q.offer().unwrap();

        for (name, want) in [("shape/x", &bytes[..]), ("shape/empty", &[5; 4][..])] {
            let mut c = consumer.declare(name).unwrap();
            c.require().unwrap();
            let got = c.demand_timeout(LONG).unwrap();
            assert_eq!(got.bytes().unwrap(), want, "{label}: {name}");
            drop(got);
            c.dispose().unwrap();
        }
        p.withdraw_timeout(LONG).unwrap();
        q.withdraw_timeout(LONG).unwrap();
    });
}

#[test]
fn bytes_filled_in_place_by_a_policy_are_offered() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let bytes = pattern(4096);
        let mut p = producer.declare("placed/x").unwrap();
        p.set("size", 4096u64).unwrap();
        let ssd = mamba::Policy::require(mamba::Tier::Ssd);
        p.buffer_mut_placed(&ssd).unwrap().copy_from_slice(&bytes);
        p.seal().unwrap();
        p.offer().unwrap();
        if producer.deployment() == Deployment::InProcess {
            // Only an in-process pool places the producer's bytes.
            let on_ssd = producer.query("tier == 'ssd'").unwrap();
            assert_eq!(on_ssd, ["placed/x"]);
        }

        let mut c = consumer.declare("placed/x").unwrap();
        c.require().unwrap();
        let view = c.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), &bytes[..], "{}", host.label());
        drop(view);
        c.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
    });
}

#[test]
fn a_withdrawal_waits_for_an_outstanding_require() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut p = offer(&producer, "wd/x", &[9; 64]);
        let mut c = consumer.declare("wd/x").unwrap();
        c.require().unwrap();

        match p.withdraw_timeout(SHORT) {
            Err(Error::Timeout {
                op: Op::Withdraw, ..
            }) => {}
            other => panic!("{}: {other:?}", host.label()),
        }
        assert_eq!(p.state(), State::Offered, "{}", host.label());

        let view = c.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), &[9; 64]);
        drop(view);
        c.dispose().unwrap();
        // The withdrawal begun above goes on and now completes.
        p.withdraw_timeout(LONG).unwrap();
        assert_eq!(p.state(), State::Withdrawn, "{}", host.label());
    });
}

#[test]
fn a_require_of_the_same_application_holds_its_withdrawal() {
    both(|host| {
        let app = host.app("one");
        let mut p = offer(&app, "wd/own", &[8; 32]);
        let mut c = app.declare("wd/own").unwrap();
        c.require().unwrap();
        match p.withdraw_timeout(SHORT) {
            Err(Error::Timeout {
                op: Op::Withdraw, ..
            }) => {}
            other => panic!("{}: {other:?}", host.label()),
        }
        assert_eq!(c.demand_timeout(LONG).unwrap().bytes().unwrap(), &[8; 32]);
        c.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
    });
}

#[test]
fn each_require_of_an_application_holds_the_withdrawal_until_it_is_served() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut p = offer(&producer, "wd/two", &[5; 16]);
        let mut first = consumer.declare("wd/two").unwrap();
        let mut second = consumer.declare("wd/two").unwrap();
        first.require().unwrap();
        second.require().unwrap();
        drop(first.demand_timeout(LONG).unwrap());
        first.dispose().unwrap();

        // The second handle's require still holds the withdrawal.
        match p.withdraw_timeout(SHORT) {
            Err(Error::Timeout {
                op: Op::Withdraw, ..
            }) => {}
            other => panic!("{}: {other:?}", host.label()),
        }
        let view = second.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), &[5; 16], "{}", host.label());
        drop(view);
        second.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
        assert_eq!(p.state(), State::Withdrawn, "{}", host.label());
    });
}

#[test]
fn dropping_a_handle_gives_up_its_offer_or_require() {
    both(|host| {
        let producer = host.app("producer");
        let consumer = host.app("consumer");

        // An offered handle dropped: the object is no longer on offer.
        drop(offer(&producer, "gone/offer", &[1; 8]));
        assert!(
            !producer
                .query("")
                .unwrap()
                .contains(&"gone/offer".to_string()),
            "{}",
            host.label()
        );
        let mut c = consumer.declare("gone/offer").unwrap();
        c.require().unwrap();
        match c.demand_timeout(SHORT) {
            Err(Error::Timeout { op: Op::Demand, .. }) => {}
            other => panic!("{}: {other:?}", host.label()),
        }
        drop(c);

        // A required handle dropped: it no longer holds the withdrawal.
        let mut p = offer(&producer, "gone/require", &[2; 8]);
        let mut c = consumer.declare("gone/require").unwrap();
        c.require().unwrap();
        drop(c);
        p.withdraw_timeout(LONG).unwrap();
        assert_eq!(p.state(), State::Withdrawn, "{}", host.label());
    });
}

/// Subscribers hear other applications join and leave, named by their
/// component.
#[test]
fn a_subscriber_hears_applications_join_and_leave() {
    both(|host| {
        let label = host.label();
        let watcher = host.app("watcher");
        let kinds = EventMask::from(EventKind::Join) | EventKind::Leave;
        let sub = watcher.subscribe("*", kinds, false).unwrap();
        let solver = host.app("solver");
        let joined = sub.next_timeout(LONG).unwrap().expect("the join");
        assert_eq!(
            (joined.kind(), joined.name()),
            (EventKind::Join, "solver"),
            "{label}"
        );
        drop(solver);
        let left = sub.next_timeout(LONG).unwrap().expect("the leave");
        assert_eq!(
            (left.kind(), left.name()),
            (EventKind::Leave, "solver"),
            "{label}"
        );
        let only_names = watcher
            .subscribe("name == \"other\"", kinds, false)
            .unwrap();
        drop(host.app("solver"));
        assert!(
            only_names.next_timeout(SHORT).unwrap().is_none(),
            "the selector applies to the component's name ({label})"
        );
    });
}

/// Every event names the participant that raised it: the same application
/// always the same one, its join and leave included, and two applications
/// two different ones.
#[test]
fn an_event_names_the_participant_that_raised_it() {
    both(|host| {
        let label = host.label();
        let watcher = host.app("watcher");
        let kinds = EventKind::Join
            | EventKind::Leave
            | EventKind::Offer
            | EventKind::Require
            | EventKind::Demand
            | EventKind::Retract
            | EventKind::Withdraw;
        let sub = watcher.subscribe("*", kinds, false).unwrap();
        let next = || {
            let e = sub.next_timeout(LONG).unwrap().expect("an event");
            (e.kind(), e.origin())
        };
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let (p, c) = (producer.participant(), consumer.participant());
        assert!(p != c && p != watcher.participant(), "{label}");
        assert!(![p, c].contains(&Participant::NONE), "{label}");
        assert_eq!(next(), (EventKind::Join, p), "{label}");
        assert_eq!(next(), (EventKind::Join, c), "{label}");

        let mut offered = offer(&producer, "origin/x", &[1; 8]);
        assert_eq!(next(), (EventKind::Offer, p), "{label}");
        let mut first = consumer.declare("origin/x").unwrap();
        first.require().unwrap();
        assert_eq!(next(), (EventKind::Require, c), "{label}");
        drop(first.demand_timeout(LONG).unwrap());
        assert_eq!(next(), (EventKind::Demand, c), "{label}");
        let mut second = consumer.declare("origin/x").unwrap();
        second.require().unwrap();
        assert_eq!(next(), (EventKind::Require, c), "{label}");
        second.retract().unwrap();
        assert_eq!(next(), (EventKind::Retract, c), "{label}");
        // A required handle dropped is retracted, in both.
        let mut third = consumer.declare("origin/x").unwrap();
        third.require().unwrap();
        assert_eq!(next(), (EventKind::Require, c), "{label}");
        drop(third);
        assert_eq!(next(), (EventKind::Retract, c), "{label}");
        offered.withdraw_timeout(LONG).unwrap();
        assert_eq!(next(), (EventKind::Withdraw, p), "{label}");
        drop((first, second, offered));
        drop(consumer);
        assert_eq!(next(), (EventKind::Leave, c), "{label}");
    });
}

/// Declares, seals and disposes reach the subscribers that want them, with
/// the handle's attributes at that step, whichever side of a pool manager
/// they are on.
#[test]
fn a_subscriber_hears_declare_seal_and_dispose() {
    both(|host| {
        let label = host.label();
        let watcher = host.app("watcher");
        let producer = host.app("producer");
        let kinds = EventKind::Declare | EventKind::Seal | EventKind::Dispose;
        let sub = watcher
            .subscribe("name ~ \"^life/\"", kinds, false)
            .unwrap();

        let mut p = producer.declare("life/a").unwrap();
        p.set("priority", "output").unwrap();
        p.write(&[1; 8]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        p.withdraw_timeout(LONG).unwrap();
        p.dispose().unwrap();
        let mut unselected = producer.declare("other/b").unwrap();
        unselected.dispose().unwrap();

        let mut heard = Vec::new();
        while let Some(event) = sub.next_timeout(SHORT).unwrap() {
            assert!(!event.needs_ack(), "{label}");
            let priority = event.attributes().get("priority").cloned();
            let size = event.attributes().get("size").cloned();
            heard.push((event.kind(), event.name().to_owned(), priority, size));
        }
        // A declared handle has the default built-in attributes.
        let normal = Some(Value::from("normal"));
        let output = Some(Value::from("output"));
        let size = Some(Value::UInt(8));
        assert_eq!(
            heard,
            [
                (EventKind::Declare, "life/a".to_owned(), normal, None),
                (
                    EventKind::Seal,
                    "life/a".to_owned(),
                    output.clone(),
                    size.clone()
                ),
                (EventKind::Dispose, "life/a".to_owned(), output, size),
            ],
            "{label}"
        );
    });
}

/// A seal that an acknowledged subscriber selects waits for it: it goes on
/// once acknowledged, and fails with `AckTimeout` (having taken effect)
/// when the acknowledgement does not come.
#[test]
fn an_acknowledged_seal_waits_for_its_subscriber() {
    both(|host| {
        let label = host.label();
        let watcher = host.app("watcher");
        let producer = host.app("producer");
        let sub = watcher
            .subscribe("name ~ \"^seal/\"", EventKind::Seal.into(), true)
            .unwrap();

        std::thread::scope(|s| {
            let acker = s.spawn(|| {
                let event = sub.next_timeout(LONG).unwrap().expect("the seal");
                assert!(event.needs_ack(), "{label}");
                assert_eq!(event.name(), "seal/acked", "{label}");
                event.ack();
            });
            let mut p = producer.declare("seal/acked").unwrap();
            p.write(&[5; 4]).unwrap();
            p.seal().unwrap();
            acker.join().unwrap();
        });

        let mut p = producer.declare("seal/ignored").unwrap();
        p.write(&[6; 4]).unwrap();
        match p.seal() {
            Err(Error::AckTimeout {
                kind: EventKind::Seal,
                ..
            }) => {}
            other => panic!("{label}: {other:?}"),
        }
        assert_eq!(p.state(), State::Sealed, "{label}");
        drop(sub);
        let mut q = producer.declare("seal/unwatched").unwrap();
        q.write(&[7; 4]).unwrap();
        q.seal().unwrap();
    });
}

#[test]
fn a_subscription_gets_the_events_its_selector_matches() {
    both(|host| {
        let watcher = host.app("watcher");
        let producer = host.app("producer");
        let sub = watcher
            .subscribe("priority == \"output\"", EventKind::Offer.into(), false)
            .unwrap();

        let mut plain = offer(&producer, "ev/plain", &[1; 4]);
        let mut out = producer.declare("ev/out").unwrap();
        out.set("priority", "output").unwrap();
        out.write(&[2; 4]).unwrap();
        out.seal().unwrap();
        out.offer().unwrap();

        let event = sub.next_timeout(LONG).unwrap().expect("the matching offer");
        assert_eq!(event.kind(), EventKind::Offer, "{}", host.label());
        assert_eq!(event.name(), "ev/out", "{}", host.label());
        assert_eq!(
            event.attributes().get("priority"),
            Some(&Value::from("output")),
            "{}",
            host.label()
        );
        assert!(!event.needs_ack());
        drop(event);
        assert!(
            sub.next_timeout(SHORT).unwrap().is_none(),
            "{}",
            host.label()
        );

        plain.withdraw_timeout(LONG).unwrap();
        out.withdraw_timeout(LONG).unwrap();
    });
}

/// A require or retract event carries the consumer handle's attributes in
/// both, so a selector can pick consumers by them (a manager's used to
/// carry none).
#[test]
fn require_and_retract_events_carry_the_consumer_s_attributes() {
    both(|host| {
        let label = host.label();
        let watcher = host.app("watcher");
        let consumer = host.app("consumer");
        let kinds = EventKind::Require | EventKind::Retract;
        let sub = watcher
            .subscribe("app.role == \"viz\"", kinds, false)
            .unwrap();

        let mut plain = consumer.declare("req/plain").unwrap();
        plain.require().unwrap();
        let mut viz = consumer.declare("req/viz").unwrap();
        viz.set("app.role", "viz").unwrap();
        viz.require().unwrap();
        viz.retract().unwrap();

        for kind in [EventKind::Require, EventKind::Retract] {
            let event = sub.next_timeout(LONG).unwrap().expect("the viz consumer's");
            assert_eq!((event.kind(), event.name()), (kind, "req/viz"), "{label}");
            let role = event.attributes().get("app.role");
            assert_eq!(role, Some(&Value::from("viz")), "{label}");
        }
        assert!(sub.next_timeout(SHORT).unwrap().is_none(), "{label}");
        plain.retract().unwrap();
    });
}

#[test]
fn an_acknowledged_event_holds_its_operation_until_acknowledged() {
    both(|host| {
        let watcher = host.app("watcher");
        let producer = host.app("producer");
        let sub = watcher
            .subscribe("name ~ \"^ack/\"", EventKind::Offer.into(), true)
            .unwrap();
        let mut p = std::thread::scope(|s| {
            let acker = s.spawn(|| {
                let event = sub.next_timeout(LONG).unwrap().expect("the offer");
                assert!(event.needs_ack());
                assert_eq!(event.name(), "ack/held");
                event.ack();
            });
            let p = offer(&producer, "ack/held", &[3; 16]);
            acker.join().unwrap();
            p
        });
        p.withdraw_timeout(LONG).unwrap();
    });
}

#[test]
fn an_unacknowledged_event_times_out_its_operation() {
    both(|host| {
        let watcher = host.app("watcher");
        let producer = host.app("producer");
        let sub = watcher
            .subscribe("", EventKind::Offer.into(), true)
            .unwrap();

        let mut p = producer.declare("ack/ignored").unwrap();
        p.write(&[4; 16]).unwrap();
        p.seal().unwrap();
        match p.offer() {
            Err(Error::AckTimeout {
                kind: EventKind::Offer,
                ..
            }) => {}
            other => panic!("{}: {other:?}", host.label()),
        }
        // It took effect all the same.
        assert_eq!(p.state(), State::Offered, "{}", host.label());
        drop(sub);

        let consumer = host.app("consumer");
        let mut c = consumer.declare("ack/ignored").unwrap();
        c.require().unwrap();
        assert_eq!(c.demand_timeout(LONG).unwrap().bytes().unwrap(), &[4; 16]);
        c.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
    });
}

#[test]
fn a_consumer_group_shares_records_and_redelivers_a_leavers() {
    both(|host| {
        let a = host.app("a");
        let b = host.app("b");
        let producer = host.app("producer");
        let member_a = a.join_group("workers", "name ~ \"^job/\"").unwrap();
        let member_b = b.join_group("workers", "name ~ \"^job/\"").unwrap();

        let mut offers: Vec<_> = (0..2u8)
            .map(|i| offer(&producer, &format!("job/{i}"), &[i; 32]))
            .collect();

        // One record each: the least loaded member gets the next.
        let first_a = member_a
            .next_timeout(LONG)
            .unwrap()
            .expect("a record for a");
        let first_b = member_b
            .next_timeout(LONG)
            .unwrap()
            .expect("a record for b");
        assert_ne!(first_a.name(), first_b.name(), "{}", host.label());
        let i: u8 = first_b.name()["job/".len()..].parse().unwrap();
        assert_eq!(first_b.bytes().unwrap(), &[i; 32]);
        assert!(
            member_a.next_timeout(SHORT).unwrap().is_none(),
            "{}",
            host.label()
        );

        // b leaves without finishing its record: a gets it.
        let left = first_b.name().to_owned();
        drop(first_b);
        drop(member_b);
        let again = member_a
            .next_timeout(LONG)
            .unwrap()
            .expect("the redelivery");
        assert_eq!(again.name(), left, "{}", host.label());
        assert_eq!(again.bytes().unwrap(), &[i; 32]);
        first_a.done().unwrap();
        again.done().unwrap();

        for p in &mut offers {
            p.withdraw_timeout(LONG).unwrap();
        }
    });
}

/// A group whose last member leaves lets its records go, so that their
/// producer can withdraw them; a pool told to keep them gives them to the
/// next member. Offers made while the group has no member are not
/// recorded in either case.
#[test]
fn a_group_keeps_its_records_for_a_later_member_only_when_told_to() {
    for keep in [false, true] {
        both_keeping(keep, |host| {
            let label = format!("{}, keep {keep}", host.label());
            let selector = "name ~ \"^keep/\"";
            let producer = host.app("producer");
            let a = host.app("a");
            let member = a.join_group("keepers", selector).unwrap();
            let mut first = offer(&producer, "keep/0", &[1; 8]);
            let held = member.next_timeout(LONG).unwrap().expect("the record");
            assert_eq!(held.name(), "keep/0", "{label}");
            // `a` leaves without finishing it.
            drop(held);
            drop(member);
            let mut second = offer(&producer, "keep/1", &[2; 8]);
            // Whatever the setting, `keep/1` found the group without members.

            let b = host.app("b");
            let member = b.join_group("keepers", selector).unwrap();
            if keep {
                assert!(
                    matches!(first.withdraw_timeout(SHORT), Err(Error::Timeout { .. })),
                    "the kept record holds its withdrawal ({label})"
                );
                let record = member
                    .next_timeout(LONG)
                    .unwrap()
                    .unwrap_or_else(|| panic!("keep/0 was not kept ({label})"));
                assert_eq!(record.name(), "keep/0", "{label}");
                assert_eq!(record.bytes().unwrap(), &[1; 8], "{label}");
                record.done().unwrap();
            }
            assert!(
                member.next_timeout(SHORT).unwrap().is_none(),
                "nothing else was kept ({label})"
            );
            first.withdraw_timeout(LONG).unwrap();
            second.withdraw_timeout(LONG).unwrap();
            drop(member);
            assert_eq!(producer.stats().unwrap().objects, 0, "{label}");
        });
    }
}

/// A record dropped without `done` goes to the other member at once, while
/// its member stays in the group.
#[test]
fn a_record_dropped_unfinished_goes_to_another_member_at_once() {
    both(|host| {
        let label = host.label();
        let a = host.app("a");
        let b = host.app("b");
        let producer = host.app("producer");
        let member_a = a.join_group("droppers", "").unwrap();
        let member_b = b.join_group("droppers", "").unwrap();
        let mut offered = offer(&producer, "drop/0", &[4; 16]);

        let (holder, other) = match member_a.next_timeout(SHORT).unwrap() {
            Some(r) => (r, &member_b),
            None => (
                member_b.next_timeout(LONG).unwrap().expect("a record"),
                &member_a,
            ),
        };
        assert_eq!(holder.name(), "drop/0", "{label}");
        drop(holder);
        let again = other
            .next_timeout(LONG)
            .unwrap()
            .expect("the record dropped");
        assert_eq!(again.name(), "drop/0", "{label}");
        assert_eq!(again.bytes().unwrap(), &[4; 16], "{label}");
        again.done().unwrap();
        offered.withdraw_timeout(LONG).unwrap();
        drop((member_a, member_b));
    });
}

/// A consumer's wanted order and tier are honoured in both deployments:
/// the bytes come transposed, in DRAM of the consumer's process.
#[test]
fn a_wanted_order_and_tier_are_honoured() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut p = producer.declare("matrix/t").unwrap();
        p.set("element_type", "u16").unwrap();
        p.set("shape", vec![Value::UInt(2), Value::UInt(3)])
            .unwrap();
        p.set("order", "row").unwrap();
        let values: Vec<u8> = [1u16, 2, 3, 4, 5, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        p.write(&values).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();

        let mut c = consumer.declare("matrix/t").unwrap();
        c.set("wanted_order", "column").unwrap();
        c.set("wanted_tier", "dram").unwrap();
        c.require().unwrap();
        let view = c.demand_timeout(LONG).unwrap();
        let got: Vec<u16> = view
            .bytes()
            .unwrap()
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(got, [1, 4, 2, 5, 3, 6], "{label}");
        drop(view);
        c.dispose().unwrap();
        p.withdraw_timeout(LONG).unwrap();
        p.dispose().unwrap();
    });
}

#[test]
fn wrong_states_and_names_fail_with_typed_errors() {
    both(|host| {
        let app = host.app("app");
        let other = host.app("other");
        let label = host.label();

        assert!(
            matches!(app.declare(""), Err(Error::InvalidName { .. })),
            "{label}"
        );
        assert!(
            matches!(app.declare("a//b"), Err(Error::InvalidName { .. })),
            "{label}"
        );

        let mut c = app.declare("typed/x").unwrap();
        match c.demand_timeout(SHORT) {
            Err(Error::InvalidState {
                op: Op::Demand,
                state: State::Declared,
                ..
            }) => {}
            other => panic!("{label}: {other:?}"),
        }
        match c.offer() {
            Err(Error::InvalidState {
                op: Op::Offer,
                state: State::Declared,
                ..
            }) => {}
            other => panic!("{label}: {other:?}"),
        }
        assert!(matches!(
            c.set("priority", 3u64),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            c.set("version", 1u64),
            Err(Error::ReadOnlyAttribute { .. })
        ));
        c.write(&[5; 8]).unwrap();
        c.seal().unwrap();
        assert!(matches!(
            c.set("priority", "output"),
            Err(Error::InvalidState {
                op: Op::SetAttribute,
                ..
            })
        ));
        c.offer().unwrap();
        assert!(matches!(
            c.dispose(),
            Err(Error::InvalidState {
                op: Op::Dispose,
                state: State::Offered,
                ..
            })
        ));

        // A second producer of a name on offer is refused.
        let mut dup = other.declare("typed/x").unwrap();
        dup.write(&[6; 8]).unwrap();
        dup.seal().unwrap();
        assert!(
            matches!(dup.offer(), Err(Error::AlreadyOffered { .. })),
            "{label}"
        );
        assert_eq!(dup.state(), State::Sealed);

        // Nobody offers this one.
        let mut unknown = other.declare("typed/nobody").unwrap();
        unknown.require().unwrap();
        assert!(
            matches!(
                unknown.demand_timeout(SHORT),
                Err(Error::Timeout { op: Op::Demand, .. })
            ),
            "{label}"
        );
        unknown.retract().unwrap();
        unknown.dispose().unwrap();

        assert!(
            matches!(
                app.subscribe("priority ==", EventKind::Offer.into(), false),
                Err(Error::Selector { .. })
            ),
            "{label}"
        );
        let _member = app.join_group("g", "name ~ \"^a/\"").unwrap();
        assert!(
            matches!(
                other.join_group("g", "name ~ \"^b/\""),
                Err(Error::Group { .. })
            ),
            "{label}"
        );

        c.withdraw_timeout(LONG).unwrap();
        c.dispose().unwrap();
    });
}

#[test]
fn the_pool_counts_offers_views_and_objects_the_same_way() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let member = consumer
            .join_group("counted", "name ~ \"^count/g\"")
            .unwrap();
        let before = producer.stats().unwrap();

        let mut plain = offer(&producer, "count/plain", &pattern(100));
        let mut grouped = offer(&producer, "count/grouped", &pattern(30));
        let after_offers = consumer.stats().unwrap();
        assert_eq!(after_offers.objects - before.objects, 2, "{label}");
        assert_eq!(after_offers.offered - before.offered, 2, "{label}");
        // The record counts once given to the member, before it takes it
        // (in process it was counted when taken).
        assert_eq!(after_offers.views - before.views, 1, "{label}");
        assert_eq!(after_offers.view_bytes - before.view_bytes, 30, "{label}");

        let mut c = consumer.declare("count/plain").unwrap();
        c.require().unwrap();
        drop(c.demand_timeout(LONG).unwrap());
        c.dispose().unwrap();
        let record = member.next_timeout(LONG).unwrap().expect("the record");
        assert_eq!(record.name(), "count/grouped", "{label}");
        record.done().unwrap();

        let read = producer.stats().unwrap();
        assert_eq!(read.views - before.views, 2, "{label}: a demand, a record");
        assert_eq!(read.view_bytes - before.view_bytes, 130, "{label}");
        plain.withdraw_timeout(LONG).unwrap();
        grouped.withdraw_timeout(LONG).unwrap();
        let end = producer.stats().unwrap();
        assert_eq!(end.objects, before.objects, "{label}");
        assert_eq!(end.offered, read.offered, "{label}");
    });
}

#[test]
fn an_archiver_stores_its_groups_records_with_their_attributes() {
    let entries = std::sync::Mutex::new(Vec::new());
    both(|host| {
        let label = host.label();
        let dir = tempfile::tempdir().unwrap();
        let archiving = host.app("archiver");
        let producer = host.app("producer");
        let archive = cdo::archive::Archive::open(dir.path()).unwrap();
        let mut archiver =
            cdo::app::Archiver::join(&archiving, "keep", "priority == 'checkpoint'", archive)
                .unwrap();

        let mut plain = offer(&producer, "arch/plain", &[1; 8]);
        let mut kept = producer.declare("arch/kept").unwrap();
        kept.set_priority(Priority::Checkpoint).unwrap();
        kept.set_lifetime(Duration::from_millis(1)).unwrap();
        kept.write(&pattern(64)).unwrap();
        kept.seal().unwrap();
        kept.offer().unwrap();
        let offered = kept.offered_attributes().unwrap();
        assert_eq!(offered.get("priority"), Some(&Value::from("checkpoint")));

        match archiver.next_timeout(LONG).unwrap() {
            Some(Outcome::Stored { name, bytes, .. }) => {
                assert_eq!((name.as_str(), bytes), ("arch/kept", 64), "{label}");
            }
            other => panic!("{label}: {other:?}"),
        }
        assert!(archiver.next_timeout(SHORT).unwrap().is_none(), "{label}");
        assert_eq!(archiver.tally().stored, 1, "{label}");
        // The archiver marked the record done: nothing holds the withdrawal.
        kept.withdraw_timeout(LONG).unwrap();
        plain.withdraw_timeout(LONG).unwrap();

        let entry = archiver.archive().load("arch/kept").unwrap().unwrap();
        assert_eq!(entry.data, pattern(64), "{label}");
        assert_eq!(entry.attributes.get("priority"), offered.get("priority"));
        assert_eq!(entry.attributes.get("size"), Some(&Value::UInt(64)));
        entries.lock().unwrap().push(entry);
    });
    let entries = entries.into_inner().unwrap();
    assert_eq!(entries[0], entries[1], "the same entry in both deployments");
}

/// A new archive holding `entries` (name, bytes), with its directory.
fn archive_with(entries: &[(&str, &[u8])]) -> (Archive, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    for (name, bytes) in entries {
        let attrs = cdo::FlatAttributes::from([("persist".to_string(), Value::Bool(true))]);
        archive.store(name, &attrs, bytes).unwrap();
    }
    (archive, dir)
}

/// What the librarian does next, waiting up to [`LONG`] for it.
fn served(librarian: &mut Librarian<'_>) -> Served {
    let until = Instant::now() + LONG;
    loop {
        if let Some(s) = librarian.next_timeout(SHORT).unwrap() {
            return s;
        }
        assert!(Instant::now() < until, "the librarian did nothing");
    }
}

/// Whether `name` is on offer.
fn on_offer(pool: &Pool, name: &str) -> bool {
    pool.query("").unwrap().iter().any(|n| n == name)
}

/// Lets `librarian` finish its withdrawals until `name` is no longer on
/// offer (failing after [`LONG`]).
fn withdrawn_at_last(librarian: &mut Librarian<'_>, pool: &Pool, name: &str) {
    let until = Instant::now() + LONG;
    while on_offer(pool, name) {
        assert!(Instant::now() < until, "{name} stays on offer");
        assert_eq!(
            librarian.next_timeout(Duration::from_millis(10)).unwrap(),
            None
        );
    }
}

/// A consumer requires names only the archive holds: the librarian offers
/// each, and withdraws it once every consumer that required it has
/// demanded it (the views stay valid); a name not archived is missing.
#[test]
fn a_librarian_serves_archived_objects_until_every_requirer_is_served() {
    both(|host| {
        let label = host.label();
        let (archive, _dir) = archive_with(&[("lib/one", b"first"), ("lib/two", b"second")]);
        let serving = host.app("librarian");
        let mut librarian = Librarian::start(&serving, "name ~ '^lib/'", archive).unwrap();
        let offered = |name: &str, bytes: u64| Served::Offered {
            name: name.into(),
            bytes,
        };
        let withdrawn = |name: &str| Served::Withdrawn { name: name.into() };

        let consumer = host.app("consumer");
        let mut c = consumer.declare("lib/one").unwrap();
        c.require().unwrap();
        assert_eq!(served(&mut librarian), offered("lib/one", 5), "{label}");
        let view = c.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), b"first", "{label}");
        assert_eq!(served(&mut librarian), withdrawn("lib/one"), "{label}");
        assert_eq!(
            view.bytes().unwrap(),
            b"first",
            "a view stays valid ({label})"
        );
        drop(view);
        c.dispose().unwrap();
        withdrawn_at_last(&mut librarian, &serving, "lib/one");

        let mut missing = consumer.declare("lib/none").unwrap();
        missing.require().unwrap();
        let none = Served::Missing {
            name: "lib/none".into(),
        };
        assert_eq!(served(&mut librarian), none, "{label}");
        missing.retract().unwrap();

        // Required by two applications: kept until the second is served.
        let other = host.app("other");
        let mut first = consumer.declare("lib/two").unwrap();
        first.require().unwrap();
        assert_eq!(served(&mut librarian), offered("lib/two", 6), "{label}");
        let mut second = other.declare("lib/two").unwrap();
        second.require().unwrap();
        let again = Served::OnOffer {
            name: "lib/two".into(),
        };
        assert_eq!(served(&mut librarian), again, "{label}");
        drop(first.demand_timeout(LONG).unwrap());
        assert_eq!(librarian.next_timeout(SHORT).unwrap(), None, "{label}");
        assert!(on_offer(&serving, "lib/two"), "{label}");
        assert_eq!(librarian.serving(), 1, "{label}");
        assert_eq!(
            second.demand_timeout(LONG).unwrap().bytes().unwrap(),
            b"second"
        );
        assert_eq!(served(&mut librarian), withdrawn("lib/two"), "{label}");
        withdrawn_at_last(&mut librarian, &serving, "lib/two");
        assert_eq!(librarian.serving(), 0, "{label}");
    });
}

/// An application that required an archived object and dropped its handle
/// or left without demanding it does not keep the object on offer.
#[test]
fn a_requirer_that_leaves_does_not_keep_a_librarian_s_object() {
    both(|host| {
        let label = host.label();
        let (archive, _dir) = archive_with(&[("gone/obj", b"orphaned")]);
        let serving = host.app("librarian");
        let mut librarian = Librarian::start(&serving, "*", archive).unwrap();
        let offered = Served::Offered {
            name: "gone/obj".into(),
            bytes: 8,
        };
        let withdrawn = Served::Withdrawn {
            name: "gone/obj".into(),
        };

        // The handle dropped, its application still there.
        let stays = host.app("stays");
        let mut c = stays.declare("gone/obj").unwrap();
        c.require().unwrap();
        assert_eq!(served(&mut librarian), offered, "{label}");
        drop(c);
        assert_eq!(served(&mut librarian), withdrawn, "{label}");
        withdrawn_at_last(&mut librarian, &serving, "gone/obj");

        // The application gone.
        let consumer = host.app("leaver");
        let mut c = consumer.declare("gone/obj").unwrap();
        c.require().unwrap();
        assert_eq!(served(&mut librarian), offered, "{label}");
        drop(c);
        drop(consumer);
        assert_eq!(served(&mut librarian), withdrawn, "{label}");
        withdrawn_at_last(&mut librarian, &serving, "gone/obj");
        assert_eq!(librarian.serving(), 0, "{label}");
    });
}

/// An archived entry the librarian cannot read is noted once as a dead
/// letter and never tried again; the other entries are served.
#[test]
fn a_librarian_sets_aside_an_entry_it_cannot_read() {
    both(|host| {
        let label = host.label();
        let (archive, dir) = archive_with(&[("bad/corrupt", b"0123456789"), ("bad/fine", b"fine")]);
        std::fs::write(archive.data_path("bad/corrupt").unwrap(), b"01234").unwrap();
        let serving = host.app("librarian");
        let mut librarian = Librarian::start(&serving, "*", archive).unwrap();
        let consumer = host.app("consumer");
        let mut c = consumer.declare("bad/corrupt").unwrap();
        c.require().unwrap();
        match served(&mut librarian) {
            Served::DeadLettered { name, reason } => {
                assert_eq!(name, "bad/corrupt", "{label}");
                assert!(reason.contains("corrupt"), "{label}: {reason}");
            }
            other => panic!("{label}: {other:?}"),
        }
        c.retract().unwrap();
        let mut again = consumer.declare("bad/corrupt").unwrap();
        again.require().unwrap();
        assert!(
            matches!(served(&mut librarian), Served::DeadLettered { .. }),
            "{label}"
        );
        let mut fine = consumer.declare("bad/fine").unwrap();
        fine.require().unwrap();
        let offered = Served::Offered {
            name: "bad/fine".into(),
            bytes: 4,
        };
        assert_eq!(served(&mut librarian), offered, "{label}");
        assert_eq!(fine.demand_timeout(LONG).unwrap().bytes().unwrap(), b"fine");
        assert!(!on_offer(&serving, "bad/corrupt"), "{label}");
        // Noted once: the second require was not tried again.
        let letters = Archive::open(dir.path()).unwrap().dead_letters().unwrap();
        assert_eq!(letters.len(), 1, "{label}");
        assert_eq!(letters[0].name, "bad/corrupt", "{label}");
    });
}

/// The bytes of `view`, copied.
fn bytes_of(view: &cdo::app::View<'_>) -> Vec<u8> {
    view.bytes().expect("host memory").to_vec()
}

#[test]
fn a_cdo_group_is_offered_and_demanded_whole() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut demand = consumer.require_group("run1/step42", &[]).unwrap();
        assert!(
            matches!(
                demand.demand_timeout(SHORT),
                Err(Error::Timeout { op: Op::Demand, .. })
            ),
            "{label}: nothing offered yet"
        );

        let mut group = producer.declare_group("run1/step42").unwrap();
        assert!(group.set("app.step", 42u64).unwrap());
        assert!(matches!(
            group.set("members", "forged"),
            Err(Error::ReadOnlyAttribute { .. })
        ));
        for (member, byte) in [("rho", 1u8), ("u", 2), ("p/hi", 3)] {
            group.declare(member).unwrap().write(&[byte; 8]).unwrap();
        }
        assert!(matches!(group.declare("rho"), Err(Error::Group { .. })));
        group.offer().unwrap();
        assert!(matches!(group.declare("late"), Err(Error::Group { .. })));
        assert!(matches!(group.offer(), Err(Error::Group { .. })));

        let views = demand.demand_timeout(LONG).unwrap();
        let got: Vec<(&str, Vec<u8>)> = views.iter().map(|(n, v)| (&**n, bytes_of(v))).collect();
        assert_eq!(
            got,
            [
                ("run1/step42/rho", vec![1; 8]),
                ("run1/step42/u", vec![2; 8]),
                ("run1/step42/p/hi", vec![3; 8]),
            ],
            "{label}"
        );
        let manifest = demand.attributes().expect("the manifest came");
        assert_eq!(manifest.get("app.step"), Some(&Value::UInt(42)), "{label}");
        // Through a manager, views hold withdrawals.
        drop(views);
        assert!(matches!(
            demand.demand_timeout(SHORT),
            Err(Error::Group { .. })
        ));
        assert_eq!(demand.next_timeout(SHORT).unwrap().map(|(n, _)| n), None);

        // Members are ordinary CDOs too.
        let mut one = consumer.declare("run1/step42/u").unwrap();
        one.require().unwrap();
        assert_eq!(one.demand_timeout(LONG).unwrap().bytes().unwrap(), [2; 8]);
        one.dispose().unwrap();

        assert!(matches!(group.dispose(), Err(Error::Group { .. })));
        group.withdraw_timeout(SHORT).expect(label);
        assert!(group
            .members()
            .iter()
            .all(|m| m.state() == State::Withdrawn));
        group.dispose().unwrap();
        assert_eq!(producer.query("").unwrap(), Vec::<String>::new(), "{label}");
    });
}

/// A group consumer's require holds the group's withdrawal until it has
/// the members, which it reads one by one, each as it wanted it.
#[test]
fn a_cdo_group_is_held_for_its_consumer_and_read_member_by_member() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut group = producer.declare_group("fields").unwrap();
        for (member, first) in [("a", 1u16), ("b", 7)] {
            let m = group.declare(member).unwrap();
            m.set("element_type", "u16").unwrap();
            m.set("shape", vec![Value::UInt(2), Value::UInt(2)])
                .unwrap();
            let values = [first, first + 1, first + 2, first + 3];
            m.write(
                &values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )
            .unwrap();
        }
        group.offer().unwrap();

        let wanted = [("wanted_order", Value::from("column"))];
        let mut demand = consumer.require_group("fields", &wanted).unwrap();
        match group.withdraw_timeout(SHORT) {
            Err(Error::Timeout {
                op: Op::Withdraw, ..
            }) => {}
            other => panic!("{label}: {other:?}"),
        }

        let mut read = Vec::new();
        while let Some((name, view)) = demand.next_timeout(LONG).unwrap() {
            let values: Vec<u16> = bytes_of(&view)
                .chunks(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            read.push((name.to_string(), values));
        }
        assert_eq!(
            read,
            [
                ("fields/a".to_string(), vec![1, 3, 2, 4]),
                ("fields/b".to_string(), vec![7, 9, 8, 10]),
            ],
            "{label}: transposed, as wanted"
        );
        group.withdraw_timeout(LONG).unwrap();
        group.dispose().unwrap();
    });
}

#[test]
fn a_cdo_group_fails_whole() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let other = host.app("other");
        let consumer = host.app("consumer");

        // A member someone else offers already: the withdrawal of the
        // members offered before it is requested, and no manifest is
        // offered.
        let mut taken = offer(&other, "g/b", b"theirs");
        let mut group = producer.declare_group("g").unwrap();
        group.declare("a").unwrap().write(b"a").unwrap();
        group.declare("b").unwrap().write(b"b").unwrap();
        assert!(group.offer().is_err(), "{label}");
        let until = Instant::now() + LONG;
        while on_offer(&consumer, "g/a") {
            assert!(Instant::now() < until, "{label}: g/a stays");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(consumer.query("").unwrap(), ["g/b"], "{label}");
        group.withdraw_timeout(LONG).unwrap();
        assert_eq!(group.members()[0].state(), State::Withdrawn, "{label}");
        group.dispose().unwrap();
        taken.withdraw_timeout(LONG).unwrap();

        // A plain object is no group.
        let mut plain = offer(&other, "plain", b"x");
        let mut demand = consumer.require_group("plain", &[]).unwrap();
        match demand.demand_timeout(LONG) {
            Err(Error::Group { name, reason }) => {
                assert_eq!(name, "plain", "{label}");
                assert!(reason.contains("manifest"), "{label}: {reason}");
            }
            other => panic!("{label}: {other:?}"),
        }
        drop(demand);
        plain.withdraw_timeout(LONG).unwrap();

        // A wanted attribute that is wrong fails at once.
        let wrong = [("wanted_order", Value::from("diagonal"))];
        assert!(consumer.require_group("g", &wrong).is_err(), "{label}");
    });
}

/// Offers `bytes` as `name` from a new application `producer` of `host`
/// with a minimum lifetime of `lifetime`, and goes: the handle is dropped
/// while offered, then the application.
fn offer_and_exit(host: &Host, name: &str, bytes: &[u8], lifetime: Duration) {
    let producer = host.app("producer");
    let mut p = producer.declare(name).unwrap();
    p.set_lifetime(lifetime).unwrap();
    p.write(bytes).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    drop(p);
    drop(producer);
}

/// Offer and exit (R1.7/R1.8): under `ProducerExit::Keep` an offer whose
/// lifetime still runs outlives its producer and is served; the pool
/// withdraws it once the lifetime has ended and nobody waits for it,
/// raising its withdraw event. Under the default it goes with its
/// producer.
#[test]
fn an_offer_with_a_lifetime_outlives_its_producer_when_kept() {
    // Long enough for a producer to offer and go before it ends.
    let lifetime = Duration::from_secs(2);
    let kept = Setup {
        producer_exit: ProducerExit::Keep,
        ..Setup::default()
    };
    both_with(&kept, |host| {
        let label = host.label();
        let consumer = host.app("consumer");
        let withdrawals = consumer
            .subscribe("name ~ \"^exit/\"", EventKind::Withdraw.into(), false)
            .unwrap();
        // A require made before the offer holds it past its lifetime, as
        // any require holds a withdrawal.
        let mut late = consumer.declare("exit/kept").unwrap();
        late.require().unwrap();
        let offered = Instant::now();
        offer_and_exit(host, "exit/kept", b"still here", lifetime);
        offer_and_exit(host, "exit/plain", b"gone", Duration::ZERO);

        let mut c = consumer.declare("exit/kept").unwrap();
        c.require().unwrap();
        let view = c.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), b"still here", "{label}");
        drop(view);
        c.dispose().unwrap();

        // Past the lifetime's end, the require still holds it.
        std::thread::sleep((offered + lifetime + SHORT).saturating_duration_since(Instant::now()));
        let view = late.demand_timeout(LONG).unwrap();
        assert_eq!(view.bytes().unwrap(), b"still here", "{label}");
        drop(view);
        late.dispose().unwrap();

        // The plain offer went with its producer; the kept one goes when
        // its lifetime has ended and nobody waits for it.
        let mut heard = Vec::new();
        while heard.len() < 2 {
            match withdrawals.next_timeout(LONG).unwrap() {
                Some(e) => heard.push(e.name().to_owned()),
                None => panic!("{label}: only {heard:?} withdrawn"),
            }
        }
        assert_eq!(heard, ["exit/plain", "exit/kept"], "{label}");
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");
    });
    both(|host| {
        let label = host.label();
        offer_and_exit(host, "exit/default", b"gone", lifetime);
        let consumer = host.app("consumer");
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");
        let mut c = consumer.declare("exit/default").unwrap();
        c.require().unwrap();
        assert!(c.demand_timeout(SHORT).is_err(), "{label}");
    });
}

/// A dropped offered handle leaves its object on offer until the
/// consumers matched with it are served, in both: it is still listed, a
/// later consumer gets it too, and its withdraw event comes once the last
/// of them has it.
///
/// Right answer: the pool manager's, where dropping the handle sends a
/// withdrawal that waits for the requires as any other. In process the
/// offer went at once (the consumers already matched still got the data,
/// a later one nothing).
#[test]
fn a_dropped_offer_stays_until_the_consumers_matched_with_it_are_served() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let events = consumer
            .subscribe("name == \"drop/x\"", EventKind::Withdraw.into(), false)
            .unwrap();
        let p = offer(&producer, "drop/x", &[5; 16]);
        let mut first = consumer.declare("drop/x").unwrap();
        first.require().unwrap();
        drop(p);
        assert_eq!(consumer.query("").unwrap(), ["drop/x"], "{label}");
        let mut later = consumer.declare("drop/x").unwrap();
        later.require().unwrap();
        for c in [&mut first, &mut later] {
            let quiet = events.next_timeout(SHORT).unwrap();
            assert!(quiet.is_none(), "{label}: withdrawn while required");
            assert_eq!(
                bytes_of(&c.demand_timeout(LONG).unwrap()),
                [5; 16],
                "{label}"
            );
        }
        let heard = events.next_timeout(LONG).unwrap().expect("withdrawn");
        assert_eq!(heard.name(), "drop/x", "{label}");
        drop(heard);
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");
    });
}

/// A dropped offered handle leaves its object on offer for the rest of
/// its minimum lifetime, in both, as a withdrawal waits for it: listed,
/// served to a consumer that comes later, withdrawn (with its event) once
/// the lifetime has ended. When its application goes, it goes with it
/// (the default `ProducerExit::Withdraw`).
///
/// Right answer: the pool manager's, where dropping the handle sends a
/// withdrawal that waits for the lifetime as any other. In process the
/// offer went at once unless `ProducerExit::Keep` was configured.
#[test]
fn a_dropped_offer_stays_for_its_minimum_lifetime_while_its_application_runs() {
    let lifetime = Duration::from_secs(3);
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let events = consumer
            .subscribe("name ~ \"^life/\"", EventKind::Withdraw.into(), false)
            .unwrap();
        let offer_for = |name: &str, lifetime: Duration| {
            let mut p = producer.declare(name).unwrap();
            p.set_lifetime(lifetime).unwrap();
            p.write(&[6; 8]).unwrap();
            p.seal().unwrap();
            p.offer().unwrap();
            Instant::now()
        };
        let offered = offer_for("life/x", lifetime);
        let mut c = consumer.declare("life/x").unwrap();
        c.require().unwrap();
        let listed = consumer.query("").unwrap();
        // Only a machine that stalled for the whole lifetime may miss it.
        if offered.elapsed() < lifetime {
            assert_eq!(listed, ["life/x"], "{label}");
        }
        assert_eq!(
            bytes_of(&c.demand_timeout(LONG).unwrap()),
            [6; 8],
            "{label}"
        );
        c.dispose().unwrap();
        let heard = events.next_timeout(LONG).unwrap().expect("withdrawn");
        assert_eq!(heard.name(), "life/x", "{label}");
        assert!(
            offered.elapsed() >= lifetime,
            "{label}: withdrawn within its lifetime"
        );
        drop(heard);
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");

        // Its application going takes it along, lifetime or not.
        offer_for("life/y", LONG);
        drop(producer);
        let heard = events
            .next_timeout(LONG)
            .unwrap()
            .unwrap_or_else(|| panic!("{label}: not withdrawn"));
        assert_eq!(heard.name(), "life/y", "{label}");
        drop(heard);
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");
    });
}

/// A withdrawal that timed out stays requested, in both: the pool
/// completes it once the require that held it is served, and the
/// producer's next call finds it done; its event is raised once.
#[test]
fn a_timed_out_withdrawal_completes_once_nothing_holds_the_object() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let events = consumer
            .subscribe("name == \"wd/later\"", EventKind::Withdraw.into(), false)
            .unwrap();
        let mut p = offer(&producer, "wd/later", &[4; 32]);
        let mut c = consumer.declare("wd/later").unwrap();
        c.require().unwrap();
        assert!(
            matches!(p.withdraw_timeout(SHORT), Err(Error::Timeout { .. })),
            "{label}"
        );
        assert_eq!(p.state(), State::Offered, "{label}");

        drop(c.demand_timeout(LONG).unwrap());
        c.dispose().unwrap();
        let heard = events.next_timeout(LONG).unwrap().expect("withdrawn");
        assert_eq!(heard.name(), "wd/later", "{label}");
        drop(heard);
        assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");

        p.withdraw_timeout(SHORT).unwrap();
        assert_eq!(p.state(), State::Withdrawn, "{label}");
        p.dispose().unwrap();
        assert!(
            events.next_timeout(SHORT).unwrap().is_none(),
            "{label}: one event"
        );
    });
}

/// The value the redistribution test's field holds at (`i`, `j`).
fn field_value(i: usize, j: usize) -> f64 {
    (i * 100 + j) as f64
}

/// A field of 6 x 8 f64 redistributed (R4.1): offered as four uneven
/// blocks, in both orders, and demanded by region, in another
/// decomposition and order, in both deployments.
#[test]
fn a_field_offered_as_blocks_is_demanded_by_region() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let mut field = producer.declare_group("rho").unwrap();
        // Rows 0..4 and 4..6 by columns 0..3 and 3..8.
        let blocks = [
            ("a", [0, 0], [4, 3], "row"),
            ("b", [0, 3], [4, 5], "column"),
            ("c", [4, 0], [2, 3], "column"),
            ("d", [4, 3], [2, 5], "row"),
        ];
        for (member, start, shape, order) in blocks {
            let mut values = Vec::new();
            let at = |r: usize, c: usize| field_value(start[0] + r, start[1] + c);
            match order {
                "row" => {
                    (0..shape[0]).for_each(|r| (0..shape[1]).for_each(|c| values.push(at(r, c))))
                }
                _ => (0..shape[1]).for_each(|c| (0..shape[0]).for_each(|r| values.push(at(r, c)))),
            }
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let list = |v: [usize; 2]| uints(&[v[0] as u64, v[1] as u64]);
            let m = field.declare(member).unwrap();
            m.set("element_type", "f64").unwrap();
            m.set("shape", list(shape)).unwrap();
            m.set("order", order).unwrap();
            m.set("block_start", list(start)).unwrap();
            m.write(&bytes).unwrap();
        }
        field.offer().unwrap();

        // A 4 x 5 region from (1, 2) on, over all four blocks, in column
        // order; then the whole field in row order.
        for (start, shape, order) in [
            ([1, 2], [4, 5], cdo::Order::ColumnMajor),
            ([0, 0], [6, 8], cdo::Order::RowMajor),
        ] {
            let want = cdo::Layout {
                shape: shape.to_vec(),
                order,
                ..cdo::Layout::default()
            };
            let mut dst = vec![0u8; shape[0] * shape[1] * 8];
            let mut demand = consumer.require_group("rho", &[]).unwrap();
            demand.demand_region(&start, &want, &mut dst, LONG).unwrap();
            let got: Vec<f64> = dst
                .chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let mut expected = Vec::new();
            let at = |r: usize, c: usize| field_value(start[0] + r, start[1] + c);
            match order {
                cdo::Order::RowMajor => {
                    (0..shape[0]).for_each(|r| (0..shape[1]).for_each(|c| expected.push(at(r, c))))
                }
                cdo::Order::ColumnMajor => {
                    (0..shape[1]).for_each(|c| (0..shape[0]).for_each(|r| expected.push(at(r, c))))
                }
            }
            assert_eq!(got, expected, "{label}: {start:?} {shape:?} {order:?}");
        }

        // Beyond the field: not covered.
        let want = cdo::Layout {
            shape: vec![2, 8],
            ..cdo::Layout::default()
        };
        let mut dst = vec![0u8; 2 * 8 * 8];
        let mut demand = consumer.require_group("rho", &[]).unwrap();
        match demand.demand_region(&[5, 0], &want, &mut dst, LONG) {
            Err(Error::Group { reason, .. }) => {
                assert!(reason.contains("cover"), "{label}: {reason}")
            }
            other => panic!("{label}: {other:?}"),
        }
        // A buffer of the wrong size.
        let mut demand = consumer.require_group("rho", &[]).unwrap();
        let mut small = vec![0u8; 8];
        assert!(
            matches!(
                demand.demand_region(&[0, 0], &want, &mut small, LONG),
                Err(Error::Layout { .. })
            ),
            "{label}"
        );
        drop(demand);
        field.withdraw_timeout(LONG).unwrap();
        field.dispose().unwrap();
    });
}

/// Sizes or indices as an attribute value (a shape, strides, fields).
fn uints(values: &[u64]) -> Value {
    Value::List(values.iter().map(|&v| Value::UInt(v)).collect())
}

/// The bytes of `values` as u16, little-endian.
fn u16_bytes(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A padded and a tiled array are converted into the dense order a
/// consumer wants, in both deployments; a consumer that wants no order
/// gets the bytes as offered.
#[test]
fn padded_and_tiled_arrays_are_delivered_dense_in_the_wanted_order() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");

        // 3 x 4 in rows padded to 5 (the pads hold 99).
        let mut padded = Vec::new();
        for r in 0..3u16 {
            padded.extend((0..4).map(|c| r * 10 + c));
            padded.push(99);
        }
        let padded_attrs = [
            ("element_type", "u16".into()),
            ("shape", uints(&[3, 4])),
            ("strides", uints(&[5, 1])),
        ];
        let mut p = offer_as(
            &producer,
            "layout/padded",
            &padded_attrs,
            &u16_bytes(&padded),
        );

        // 4 x 4 in 2 x 2 tiles, each stored whole, row by row.
        let tiled: Vec<u16> = vec![0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33];
        let tiled_attrs = [
            ("element_type", "u16".into()),
            ("shape", uints(&[4, 4])),
            ("tile", uints(&[2, 2])),
        ];
        let mut t = offer_as(&producer, "layout/tiled", &tiled_attrs, &u16_bytes(&tiled));

        let demanded = |name: &str, order: Option<&str>| {
            let wanted: Vec<(&str, Value)> = order
                .map(|o| ("wanted_order", o.into()))
                .into_iter()
                .collect();
            demand_as(&consumer, name, &wanted).unwrap()
        };
        let rows: Vec<u16> = (0..3)
            .flat_map(|r| (0..4).map(move |c| r * 10 + c))
            .collect();
        let columns: Vec<u16> = (0..4)
            .flat_map(|c| (0..3).map(move |r| r * 10 + c))
            .collect();
        assert_eq!(
            demanded("layout/padded", Some("row")),
            u16_bytes(&rows),
            "{label}"
        );
        assert_eq!(
            demanded("layout/padded", Some("column")),
            u16_bytes(&columns),
            "{label}"
        );
        assert_eq!(
            demanded("layout/padded", None),
            u16_bytes(&padded),
            "{label}"
        );
        let square: Vec<u16> = (0..4)
            .flat_map(|r| (0..4).map(move |c| r * 10 + c))
            .collect();
        assert_eq!(
            demanded("layout/tiled", Some("row")),
            u16_bytes(&square),
            "{label}"
        );

        p.withdraw_timeout(LONG).unwrap();
        t.withdraw_timeout(LONG).unwrap();
    });
}

/// An application's own require holds its withdrawal of the object it was
/// matched with, and of no other version, in both deployments.
///
/// Right answer: the in-process pool's. Through a manager the application
/// held its withdrawal of every version of a name it required itself, as
/// the manager did not let a client's own requires hold anything.
#[test]
fn an_application_s_own_require_holds_only_the_object_it_was_matched_with() {
    both_with_versions(|host| {
        let label = host.label();
        let app = host.app("app");
        let other = host.app("other");
        let mut older = offer(&app, "own/x", &[1; 8]);
        let mut newer = offer(&other, "own/x", &[2; 8]);
        let mut c = app.declare("own/x").unwrap();
        c.require().unwrap();
        older.withdraw_timeout(LONG).unwrap();
        let held = newer.withdraw_timeout(SHORT);
        assert!(
            matches!(held, Err(Error::Timeout { .. })),
            "{label}: {held:?}"
        );
        assert_eq!(
            bytes_of(&c.demand_timeout(LONG).unwrap()),
            [2; 8],
            "{label}"
        );
        newer.withdraw_timeout(LONG).unwrap();

        // Its own offer, which it requires: held until demanded.
        let mut own = offer(&app, "own/y", &[3; 8]);
        let mut c = app.declare("own/y").unwrap();
        c.require().unwrap();
        let held = own.withdraw_timeout(SHORT);
        assert!(
            matches!(held, Err(Error::Timeout { .. })),
            "{label}: {held:?}"
        );
        drop(c.demand_timeout(LONG).unwrap());
        own.withdraw_timeout(LONG).unwrap();
    });
}

/// Under versions one application may offer a newer version of a name
/// it offers already, and each handle withdraws its own version, in both
/// deployments: consumers get the newest version left.
///
/// Right answer: the in-process pool's. Through a manager the second
/// offer failed with `AlreadyOffered`, as a withdrawal named the object
/// by its name and producer only.
#[test]
fn one_application_offers_and_withdraws_versions_of_a_name() {
    both_with_versions(|host| {
        let label = host.label();
        let app = host.app("app");
        let consumer = host.app("consumer");
        let newest = |name: &str| demand_as(&consumer, name, &[]).unwrap();
        for older_first in [false, true] {
            let name = format!("versions/{older_first}");
            let mut older = offer(&app, &name, &[1; 4]);
            let mut newer = offer(&app, &name, &[2; 4]);
            assert_eq!(newest(&name), [2; 4], "{label}");
            let (first, left, second) = match older_first {
                true => (&mut older, [2; 4], &mut newer),
                false => (&mut newer, [1; 4], &mut older),
            };
            first.withdraw_timeout(LONG).unwrap();
            assert_eq!(newest(&name), left, "{label}: withdrew the other version");
            second.withdraw_timeout(LONG).unwrap();
            assert_eq!(consumer.query("").unwrap(), Vec::<String>::new(), "{label}");
        }
    });
}

#[test]
fn a_dense_array_is_delivered_padded_or_tiled_as_wanted() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        // 3 x 4 in rows, dense: element (r, c) is 10r + c.
        let at = |r: usize, c: usize| (r < 3 && c < 4).then(|| (r * 10 + c) as u16);
        let rows: Vec<u16> = (0..3)
            .flat_map(|r| (0..4).filter_map(move |c| at(r, c)))
            .collect();
        let array = [("element_type", "u16".into()), ("shape", uints(&[3, 4]))];
        let mut p = offer_as(&producer, "layout/dense", &array, &u16_bytes(&rows));

        let demanded = |wanted: &[(&str, Value)]| demand_as(&consumer, "layout/dense", wanted);
        // Columns padded to 4 elements (the last one ends at its last
        // element).
        let padded: Vec<u16> = (0..4)
            .flat_map(|c| (0..4).map(move |r| at(r, c).unwrap_or(0)))
            .take(15)
            .collect();
        let got = demanded(&[("wanted_strides", uints(&[1, 4]))]).unwrap();
        assert_eq!(got, u16_bytes(&padded), "{label}");
        // 2 x 2 tiles, tiles and their elements column by column; the
        // tiles at the lower edge are padded with zeros.
        let mut tiled = Vec::new();
        for (tc, tr, c, r) in (0..2).flat_map(|tc| {
            (0..2).flat_map(move |tr| (0..2).flat_map(move |c| (0..2).map(move |r| (tc, tr, c, r))))
        }) {
            tiled.push(at(tr * 2 + r, tc * 2 + c).unwrap_or(0));
        }
        // The storage ends at the last element, (2, 3), third in its tile.
        tiled.truncate(15);
        let tiles = [
            ("wanted_tile", uints(&[2, 2])),
            ("wanted_order", "column".into()),
        ];
        assert_eq!(demanded(&tiles).unwrap(), u16_bytes(&tiled), "{label}");
        // The consumer's layout as the producer's: the bytes as offered.
        let same = demanded(&[("wanted_order", "row".into())]).unwrap();
        assert_eq!(same, u16_bytes(&rows), "{label}");
        // Strides and a tile at once describe no array.
        let both = [
            ("wanted_strides", uints(&[4, 1])),
            ("wanted_tile", uints(&[2, 2])),
        ];
        let e = demanded(&both).unwrap_err();
        assert!(matches!(e, Error::Layout { .. }), "{label}: {e}");

        p.withdraw_timeout(LONG).unwrap();
    });
}

/// Records (an f64 and a u32 each) go from arrays of structures to
/// structures of arrays and back as the consumer wants, in both
/// deployments.
#[test]
fn records_are_delivered_together_or_separate_as_wanted() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        let xs = [1.5f64, 2.5, 3.5];
        let ids = [7u32, 8, 9];
        let together: Vec<u8> = xs
            .iter()
            .zip(&ids)
            .flat_map(|(x, id)| x.to_le_bytes().into_iter().chain(id.to_le_bytes()))
            .collect();
        let separate: Vec<u8> = xs
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .chain(ids.iter().flat_map(|id| id.to_le_bytes()))
            .collect();
        let fields = uints(&[8, 4]);
        let mut offered = Vec::new();
        for (name, records, bytes) in [
            ("rec/aos", "together", &together),
            ("rec/soa", "separate", &separate),
        ] {
            let mut p = producer.declare(name).unwrap();
            p.set("fields", fields.clone()).unwrap();
            p.set("records", records).unwrap();
            p.write(bytes).unwrap();
            p.seal().unwrap();
            p.offer().unwrap();
            offered.push(p);
        }
        let demanded = |name: &str, records: &str| {
            demand_as(&consumer, name, &[("wanted_records", records.into())]).unwrap()
        };
        assert_eq!(demanded("rec/aos", "separate"), separate, "{label}");
        assert_eq!(demanded("rec/soa", "together"), together, "{label}");
        assert_eq!(demanded("rec/aos", "together"), together, "{label}");
        for mut p in offered {
            p.withdraw_timeout(LONG).unwrap();
        }
    });
}

/// An array of records (`shape` counts records) comes in the wanted order
/// and the wanted way of storing records in one demand, in both
/// deployments.
#[test]
fn an_array_of_records_is_reordered_and_restored_at_once() {
    both(|host| {
        let label = host.label();
        let producer = host.app("producer");
        let consumer = host.app("consumer");
        // 2 x 3 records (x: f64, id: u32); record (r, c) holds 10r + c.
        let x = |r: u32, c: u32| f64::from(10 * r + c).to_le_bytes();
        let id = |r: u32, c: u32| (100 + 10 * r + c).to_le_bytes();
        let rows: Vec<(u32, u32)> = (0..2).flat_map(|r| (0..3).map(move |c| (r, c))).collect();
        let columns: Vec<(u32, u32)> = (0..3).flat_map(|c| (0..2).map(move |r| (r, c))).collect();
        let together = |cells: &[(u32, u32)]| -> Vec<u8> {
            let record = |&(r, c): &(u32, u32)| x(r, c).into_iter().chain(id(r, c));
            cells.iter().flat_map(record).collect()
        };
        let separate = |cells: &[(u32, u32)]| -> Vec<u8> {
            let xs = cells.iter().flat_map(|&(r, c)| x(r, c));
            xs.chain(cells.iter().flat_map(|&(r, c)| id(r, c)))
                .collect()
        };
        let mut offered = Vec::new();
        for (name, records, bytes) in [
            ("recs/aos", "together", together(&rows)),
            ("recs/soa", "separate", separate(&rows)),
        ] {
            let attrs = [
                ("shape", uints(&[2, 3])),
                ("fields", uints(&[8, 4])),
                ("records", records.into()),
            ];
            offered.push(offer_as(&producer, name, &attrs, &bytes));
        }
        let demanded = |name: &str, records: &str| {
            let wanted = [
                ("wanted_records", records.into()),
                ("wanted_order", "column".into()),
            ];
            demand_as(&consumer, name, &wanted).unwrap()
        };
        let aos_columns = together(&columns);
        let soa_columns = separate(&columns);
        assert_eq!(demanded("recs/aos", "together"), aos_columns, "{label}");
        assert_eq!(demanded("recs/aos", "separate"), soa_columns, "{label}");
        assert_eq!(demanded("recs/soa", "together"), aos_columns, "{label}");
        assert_eq!(demanded("recs/soa", "separate"), soa_columns, "{label}");
        for mut p in offered {
            p.withdraw_timeout(LONG).unwrap();
        }
    });
}
