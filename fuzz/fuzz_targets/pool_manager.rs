//! The pool manager under random sequences of operations from 2 to 4
//! clients, plus raw bytes from connections that skip the client library.
//!
//! One in-process manager serves the whole fuzzing run, so state that one
//! input leaks shows up in the next. Per step, what the harness can predict
//! is checked: a demand of an object on offer returns its bytes exactly, an
//! offer of a name on offer is refused, a withdrawal by the wrong client is
//! refused, and no operation ever fails with a broken connection, a timeout
//! or a reply the client did not expect. After each input, once every client
//! has left or been dropped, the manager's counters must all be back to zero
//! and a fresh client must still be served.
//!
//! Operations of different clients travel over different connections, so
//! their order in the manager is only known when the harness waited for a
//! reply; names touched by an unanswered request are "uncertain" and accept
//! either outcome.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use cdo::ipc::client::{Client, ClientConfig, ClientError, Notice, View};
use cdo::ipc::manager::{self, FaultPolicy, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{self, Attributes, ErrorCode, Frame, Msg, Stats, PROTOCOL_VERSION};
use cdo::{EventMask, Value};
use libfuzzer_sys::fuzz_target;

/// Distinct object names.
const NAMES: u8 = 6;
/// Guard against a wedged manager: no reply the harness waits for may take
/// longer (generous: the machine may be loaded).
const GUARD: Duration = Duration::from_secs(20);
/// How long a held operation waits for acknowledgements. Short, because the
/// harness is one thread: the client whose operation is held cannot ack.
const ACK_TIMEOUT: Duration = Duration::from_millis(20);
/// How long LEAVE waits before the harness gives up and drops the client.
const LEAVE_WAIT: Duration = Duration::from_millis(200);

const SELECTORS: [&str; 6] = [
    "*",
    "app.seed >= 100",
    "name = \"n1\" or name = \"n2\"",
    "size < 100",
    "not app.seed < 10 and size >= 0",
    "app.seed >= ",
];

#[derive(Debug, Arbitrary)]
enum Op {
    Offer { name: u8, size: u16, seed: u8 },
    Demand { name: u8 },
    Require { name: u8 },
    Retract { name: u8 },
    Withdraw { name: u8 },
    DropView { index: u8 },
    Subscribe { selector: u8, kinds: u16, ack: bool },
    JoinGroup { group: bool, selector: u8 },
    Unsubscribe { index: u8 },
    Poll { done: bool, ack: bool },
    Stat,
    Leave,
    Drop,
    Reconnect,
    Raw { join: bool, bytes: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
struct Input {
    extra_clients: u8,
    steps: Vec<(u8, Op)>,
    drop_at_end: u8,
}

/// What the harness knows about one name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    /// Offered by this slot's client, with this seed and size.
    Offered { owner: usize, exposed: bool },
    /// The outcome of some request on it is unknown.
    Uncertain,
}

struct Slot {
    client: Option<Client>,
    views: Vec<View>,
    subs: Vec<u64>,
    records: Vec<cdo::ipc::client::GroupRecord>,
}

struct Model {
    names: BTreeMap<String, Known>,
    /// Names with a demand that may still be waiting (makes an offer exposed).
    waited: BTreeSet<String>,
    /// Names some client required: a require made before a withdrawal
    /// holds it (makes an offer exposed).
    required: BTreeSet<String>,
    /// Whether any group membership was ever made in this input.
    groups: bool,
    /// Consumer groups joined, with the selectors they were joined with.
    group_selectors: BTreeMap<String, BTreeSet<String>>,
    /// Whether any acknowledged subscription was ever made in this input.
    acks: bool,
}

fn manager() -> &'static ManagerHandle {
    static PM: OnceLock<ManagerHandle> = OnceLock::new();
    PM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cdo-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the runtime directory");
        manager::start(ManagerConfig {
            pool: cdo::PoolConfig {
                policy: FaultPolicy::FailFast,
                ack_timeout: ACK_TIMEOUT,
                ..Default::default()
            },
            runtime_dir: Some(dir),
            ..ManagerConfig::default()
        })
        .expect("start the pool manager")
    })
}

fn connect(role: &str) -> Client {
    let mut config = ClientConfig::new(manager().endpoint().clone(), role);
    config.op_timeout = GUARD;
    // Objects are small: small segments keep each input cheap.
    config.pool.chunk_bytes = 64 << 10;
    Client::connect(&config).expect("the manager accepts a client")
}

/// The bytes of object `seed` of `len` bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A view shows the bytes its producer offered (the seed is an attribute).
fn check_view(view: &View) {
    let Some(Value::UInt(seed)) = view.attrs().get("app.seed") else {
        panic!("{}: seed attribute lost: {:?}", view.name(), view.attrs());
    };
    assert!(
        view[..] == pattern(*seed, view.len())[..],
        "{}: the view does not show the offered bytes",
        view.name()
    );
}

/// Failures that mean the manager or the connection broke.
fn healthy<T>(what: &str, r: Result<T, ClientError>) -> Result<T, (ErrorCode, String)> {
    match r {
        Ok(v) => Ok(v),
        Err(ClientError::Pool { code, text }) => Err((code, text)),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn code_of<T>(r: &Result<T, (ErrorCode, String)>) -> Option<ErrorCode> {
    r.as_ref().err().map(|e| e.0)
}

impl Model {
    /// Marks `name`, if offered, as exposed: a demand may hold it.
    fn expose(&mut self, name: &str) {
        if let Some(Known::Offered { exposed, .. }) = self.names.get_mut(name) {
            *exposed = true;
        }
    }

    fn ack_ok(&self, code: Option<ErrorCode>) -> bool {
        code == Some(ErrorCode::AckTimeout) && self.acks
    }

    /// Every name `owner` may have offered becomes uncertain (its client went
    /// away without a reply the harness waited for).
    fn forget_owner(&mut self, owner: usize) {
        for k in self.names.values_mut() {
            if matches!(*k, Known::Offered { owner: o, .. } if o == owner) {
                *k = Known::Uncertain;
            }
        }
    }

    /// Names `owner` offered are withdrawn (it left with BYE).
    fn left(&mut self, owner: usize) {
        self.names
            .retain(|_, k| !matches!(*k, Known::Offered { owner: o, .. } if o == owner));
    }
}

fn step(slots: &mut [Slot], model: &mut Model, who: usize, op: Op) {
    let role = format!("c{who}");
    if let Op::Reconnect = op {
        if slots[who].client.is_none() {
            slots[who].client = Some(connect(&role));
        }
        return;
    }
    if let Op::Raw { join, bytes } = op {
        raw(model, join, &bytes);
        return;
    }
    let slot = &mut slots[who];
    let Some(c) = slot.client.as_mut() else {
        return;
    };
    let name_of = |n: u8| format!("n{}", n % NAMES);
    match op {
        Op::Offer { name, size, seed } => {
            let name = name_of(name);
            let size = usize::from(size % 5000);
            let seed = u64::from(seed);
            let mut attrs = Attributes::new();
            attrs.insert("app.seed".into(), Value::UInt(seed));
            let r = healthy(
                "offer",
                c.offer_with(&name, size as u64, attrs, |d| {
                    d.copy_from_slice(&pattern(seed, size))
                }),
            );
            let code = code_of(&r);
            let offered = code.is_none() || model.ack_ok(code);
            match model.names.get(&name).copied() {
                Some(Known::Offered { .. }) => {
                    assert_eq!(
                        code,
                        Some(ErrorCode::DuplicateName),
                        "offer of {name} on offer"
                    );
                }
                Some(Known::Uncertain) => {
                    assert!(
                        offered || code == Some(ErrorCode::DuplicateName),
                        "offer of {name}: {r:?}"
                    );
                }
                None => assert!(offered, "offer of the free name {name}: {r:?}"),
            }
            if offered {
                let exposed =
                    model.groups || model.waited.contains(&name) || model.required.contains(&name);
                model.names.insert(
                    name,
                    Known::Offered {
                        owner: who,
                        exposed,
                    },
                );
            }
        }
        Op::Demand { name } => {
            let name = name_of(name);
            match model.names.get(&name).copied() {
                Some(Known::Offered { .. }) => {
                    model.expose(&name);
                    let r = healthy("demand", c.demand(&name, GUARD));
                    match r {
                        Ok(view) => {
                            assert_eq!(view.name(), name);
                            check_view(&view);
                            slot.views.push(view);
                        }
                        Err(e) => assert!(model.ack_ok(Some(e.0)), "demand of {name}: {e:?}"),
                    }
                }
                // It may never come: do not wait (the reply, if any, is
                // kept by the client until it goes).
                _ => {
                    healthy("demand", c.submit_demand(&name)).expect("queued");
                    healthy("flush", c.flush()).expect("flushed");
                    model.waited.insert(name.clone());
                    model.expose(&name);
                }
            }
        }
        Op::Require { name } => {
            let name = name_of(name);
            let r = healthy("require", c.require(&name));
            assert!(r.is_ok() || model.ack_ok(code_of(&r)), "require: {r:?}");
            model.required.insert(name.clone());
            model.expose(&name);
        }
        Op::Retract { name } => {
            let r = healthy("retract", c.retract(&name_of(name)));
            assert!(r.is_ok() || model.ack_ok(code_of(&r)), "retract: {r:?}");
        }
        Op::Withdraw { name } => {
            let name = name_of(name);
            let known = model.names.get(&name).copied();
            match known {
                Some(Known::Offered {
                    owner,
                    exposed: false,
                }) => {
                    let r = healthy("withdraw", c.withdraw(&name));
                    let code = code_of(&r);
                    if owner == who {
                        assert!(code.is_none() || model.ack_ok(code), "withdraw: {r:?}");
                        model.names.remove(&name);
                    } else {
                        assert_eq!(
                            code,
                            Some(ErrorCode::NotOwner),
                            "withdraw of another's {name}"
                        );
                    }
                }
                None => {
                    let r = healthy("withdraw", c.withdraw(&name));
                    assert_eq!(
                        code_of(&r),
                        Some(ErrorCode::UnknownName),
                        "withdraw of {name}"
                    );
                }
                // Its reply may wait for views or requires: do not wait for
                // it.
                Some(_) => {
                    healthy("withdraw", c.submit_withdraw(&name)).expect("queued");
                    healthy("flush", c.flush()).expect("flushed");
                    model.names.insert(name, Known::Uncertain);
                }
            }
        }
        Op::DropView { index } => {
            if !slot.views.is_empty() {
                let view = slot
                    .views
                    .swap_remove(usize::from(index) % slot.views.len());
                check_view(&view);
            }
        }
        Op::Subscribe {
            selector,
            kinds,
            ack,
        } => {
            let text = SELECTORS[usize::from(selector) % SELECTORS.len()];
            model.acks |= ack;
            let r = healthy(
                "subscribe",
                c.subscribe(text, EventMask::from_bits(kinds), ack),
            );
            match r {
                Ok(sub) => slot.subs.push(sub),
                Err(e) => assert_eq!(e.0, ErrorCode::BadSelector, "subscribe {text:?}"),
            }
        }
        Op::JoinGroup { group, selector } => {
            let text = SELECTORS[usize::from(selector) % SELECTORS.len()];
            let group = if group { "g1" } else { "g0" };
            model.groups = true;
            let r = healthy("join_group", c.join_group(group, text));
            match r {
                Ok(sub) => {
                    slot.subs.push(sub);
                    model
                        .group_selectors
                        .entry(group.into())
                        .or_default()
                        .insert(text.into());
                }
                Err(e) => assert!(
                    matches!(e.0, ErrorCode::BadSelector | ErrorCode::BadSubscription),
                    "join {group} with {text:?}: {e:?}"
                ),
            }
        }
        Op::Unsubscribe { index } => {
            if !slot.subs.is_empty() {
                let sub = slot.subs.swap_remove(usize::from(index) % slot.subs.len());
                let r = healthy("unsubscribe", c.unsubscribe(sub));
                assert!(r.is_ok(), "unsubscribe {sub}: {r:?}");
                slot.records.retain(|rec| rec.subscription != sub);
            }
        }
        Op::Poll { done, ack } => {
            while let Some(n) = healthy("poll", c.poll_notice()).expect("no pool error") {
                match n {
                    Notice::Event(e) => {
                        if e.needs_ack && ack {
                            healthy("ack", c.ack(e.event)).expect("no pool error");
                        }
                    }
                    Notice::Record(r) => {
                        check_view(&r.view);
                        if done {
                            healthy("done", c.done(r)).expect("no pool error");
                        } else {
                            slot.records.push(r);
                        }
                    }
                }
            }
        }
        Op::Stat => {
            let s = healthy("stat", c.stats()).expect("no pool error");
            assert!(s.clients >= 1, "{s:?}");
        }
        Op::Leave => {
            slot.views.clear();
            slot.records.clear();
            let mut c = slot.client.take().expect("checked above");
            match c.leave(LEAVE_WAIT) {
                Ok(()) => model.left(who),
                Err(ClientError::StillRequired(_)) => model.forget_owner(who),
                Err(e) => panic!("leave: {e}"),
            }
            slot.subs.clear();
        }
        Op::Drop => {
            slot.views.clear();
            slot.records.clear();
            slot.subs.clear();
            slot.client = None;
            model.forget_owner(who);
        }
        Op::Reconnect | Op::Raw { .. } => unreachable!("handled above"),
    }
}

/// Sends `bytes` on a fresh connection (after a valid JOIN when `join`),
/// then closes it. What the valid frames among them may do is noted in the
/// model: subscriptions that hold operations, groups that keep records,
/// demands that hold views.
fn raw(model: &mut Model, join: bool, bytes: &[u8]) {
    let mut rest = bytes;
    while let Ok(Some(d)) = wire::decode(rest) {
        rest = &rest[d.consumed..];
        match d.frame.msg {
            Msg::Subscribe(req) => {
                model.acks |= req.ack;
                if let Some(group) = req.group {
                    model.groups = true;
                    model
                        .group_selectors
                        .entry(group)
                        .or_default()
                        .insert(req.selector);
                }
            }
            Msg::Demand { name } => {
                model.expose(&name);
                model.waited.insert(name);
            }
            _ => {}
        }
    }
    let pm = manager();
    let Ok(mut sock) = UnixStream::connect(&pm.endpoint().socket) else {
        panic!("the manager stopped accepting connections");
    };
    let mut out = Vec::new();
    if join {
        let frame = Frame {
            id: 1,
            msg: Msg::Join {
                component: "raw".into(),
                token: pm.endpoint().token.clone(),
                version: PROTOCOL_VERSION,
            },
        };
        wire::encode(&frame, 0, &mut out).expect("JOIN encodes");
    }
    out.extend_from_slice(bytes);
    // The manager may close first: that is its right.
    let _ = sock.write_all(&out);
    // Wait until the manager has handled the bytes and closed: the end of
    // the input must not race with a JOIN still on its way.
    let _ = sock.shutdown(Shutdown::Write);
    sock.set_read_timeout(Some(GUARD)).expect("set a timeout");
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the manager did not close a raw connection at its end: {e}"),
        }
    }
}

fn is_zero(s: &Stats) -> bool {
    s.clients == 0
        && s.objects == 0
        && s.segments == 0
        && s.requires == 0
        && s.waiting_demands == 0
        && s.pending_leaves == 0
        && s.offered_bytes == 0
        && s.subscriptions == 0
        && s.queued_records == 0
        && s.awaited_acks == 0
}

/// Waits for the manager to have processed every departure, then takes the
/// records that groups without members keep (with the segments they hold)
/// by joining those groups and finishing every record.
fn settle_groups(groups: &BTreeMap<String, BTreeSet<String>>) {
    let start = Instant::now();
    loop {
        let s = manager().stats();
        if is_zero(&Stats {
            segments: 0,
            queued_records: 0,
            ..s
        }) && (s.segments == 0 || s.queued_records > 0)
        {
            if s.queued_records == 0 {
                return;
            }
            break;
        }
        assert!(start.elapsed() < GUARD, "state left behind: {s:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut c = connect("drain");
    for (group, selectors) in groups {
        // Raw connections may have tried several: the group has one.
        let joined = selectors.iter().any(|s| c.join_group(group, s).is_ok());
        assert!(
            joined,
            "cannot join group {group:?} with any of {selectors:?}"
        );
    }
    // Records sent to this member hold their segments until done.
    while {
        let s = manager().stats();
        s.queued_records > 0 || s.segments > 0
    } {
        assert!(
            start.elapsed() < GUARD,
            "records left: {:?}",
            manager().stats()
        );
        match c.next_notice(Some(Duration::from_millis(10))) {
            Ok(Some(Notice::Record(r))) => {
                check_view(&r.view);
                c.done(r).expect("finish a record");
            }
            Ok(_) => {}
            Err(e) => panic!("drain: {e}"),
        }
    }
    c.leave(GUARD).expect("the drain client leaves");
}

/// Waits for the manager to have processed every departure.
fn settle() -> Stats {
    let start = Instant::now();
    loop {
        let s = manager().stats();
        if is_zero(&s) {
            return s;
        }
        assert!(start.elapsed() < GUARD, "state left behind: {s:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fuzz_target!(|input: Input| {
    let n = 2 + usize::from(input.extra_clients % 3);
    let mut slots: Vec<Slot> = (0..n)
        .map(|i| Slot {
            client: Some(connect(&format!("c{i}"))),
            views: Vec::new(),
            subs: Vec::new(),
            records: Vec::new(),
        })
        .collect();
    let mut model = Model {
        names: BTreeMap::new(),
        waited: BTreeSet::new(),
        required: BTreeSet::new(),
        groups: false,
        group_selectors: BTreeMap::new(),
        acks: false,
    };
    for (who, op) in input.steps.into_iter().take(64) {
        step(&mut slots, &mut model, usize::from(who) % n, op);
    }
    // Every view still held shows its bytes; then each client leaves (its
    // views and records dropped first) or is dropped.
    for slot in &mut slots {
        for v in &slot.views {
            check_view(v);
        }
        for r in &slot.records {
            check_view(&r.view);
        }
        slot.views.clear();
        slot.records.clear();
        if let Some(c) = slot.client.as_mut() {
            healthy("flush", c.flush()).expect("no pool error");
        }
    }
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(mut c) = slot.client.take() else {
            continue;
        };
        if input.drop_at_end & (1 << i) != 0 {
            continue;
        }
        match c.leave(LEAVE_WAIT) {
            Ok(()) | Err(ClientError::StillRequired(_)) => {}
            Err(e) => panic!("leave: {e}"),
        }
    }
    drop(slots);
    settle_groups(&model.group_selectors);
    settle();
    let mut fresh = connect("fresh");
    let s = fresh.stats().expect("the manager answers a fresh client");
    assert_eq!(s.clients, 1, "{s:?}");
    fresh.leave(GUARD).expect("a fresh client leaves");
    settle();
});
