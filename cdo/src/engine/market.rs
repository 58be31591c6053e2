//! The engine: clients, segments, offers, requires, waiters, views, held
//! replies.
//!
//! Every operation only appends [`Effect`]s to the list it is given; the
//! host carries them out.

mod held;
mod proxies;
mod query;
mod remote;
mod requires;
mod segments;
mod withdrawals;

use crate::ipc::fasthash::FastMap;

use std::time::{Duration, Instant};

use tracing::{debug, info};

use self::held::HeldOp;
pub use self::proxies::GroupNote;
use self::proxies::Proxies;
use self::requires::Matches;
use self::segments::SegRec;
use self::withdrawals::Withdrawing;

use super::quota::{Kind, Quotas};
use super::registry::{ClientId, Entry, Registry};
use super::rules;
use super::subs::{Acked, Forwarded, GivenBack, Route, SubError, Subs, Unsubscribed};
use super::tombstones::Tombstones;
use super::{Effect, EngineConfig, FaultPolicy, SegmentCheck, SegmentKey};
use crate::attrs::{is_builtin, Attributes as Typed};
use crate::events::{EventKind, EventMask};
use crate::ipc::interest::{Interest, LIFECYCLE_KINDS};

use crate::ipc::limits::check_request;
use crate::ipc::wire::{
    sent_attributes, with_size, Attributes, ConsumerRef, DataRef, ErrorCode, LifecycleRef, Msg,
    RequestId, Stats, SubscribeRef, SIZE_KEY,
};
use crate::value::Value;

/// Effects of the operations handled so far, in order.
type Outgoing = Vec<Effect>;

/// The owner of offers that outlived their producer
/// ([`ProducerExit::Keep`](super::ProducerExit::Keep)): the pool itself,
/// never a joined client (client ids start at 1).
const KEEPER: ClientId = 0;

struct ClientRec {
    component: String,
    /// Producer's segment id → manager's segment id.
    own_segments: FastMap<u64, u64>,
    leaving: Option<RequestId>,
    /// Views of objects this client holds (object → count).
    held: FastMap<u64, u32>,
    /// Whether its own requires hold its withdrawals
    /// ([`Engine::hold_own_requires`]).
    own_requires_hold: bool,
}

/// A withdrawn object that consumers still view: the withdrawal's reply
/// (if its producer is still there) waits for the last release, and so
/// does its producer's leave.
struct Draining {
    name: String,
    reply_to: Option<(ClientId, RequestId)>,
    segment: u64,
}

/// The operation being handled: who asked, and how many acknowledgements
/// its events await.
#[derive(Clone, Copy)]
struct Current {
    op: u64,
    client: ClientId,
    awaited: usize,
}

/// Everything a pool knows: the marketplace of one host.
pub struct Engine {
    registry: Box<dyn Registry>,
    clients: FastMap<ClientId, ClientRec>,
    next_client: ClientId,
    segments: FastMap<u64, SegRec>,
    next_segment: u64,
    waiters: FastMap<String, Vec<(ClientId, RequestId)>>,
    /// Requires by name: each client's, each with the object it was
    /// matched with (the newest on offer when it was made, else the next
    /// offered; `None` while nothing is on offer). A demand gets the object
    /// of the client's oldest require, and an object's withdrawal waits for
    /// the requires matched with it.
    requires: Requires,
    tombstones: Tombstones,
    offered_bytes: u64,
    /// Clients waiting for BYE (so `check_leaves` is free when there are none).
    leaving: usize,
    next_object: u64,
    /// Views handed out and not released, by object.
    views: FastMap<u64, u32>,
    /// Withdrawn objects that are still viewed, by object.
    draining: FastMap<u64, Draining>,
    /// Withdrawals that wait for requires made before them or for their
    /// object's minimum lifetime, oldest first.
    withdrawing: Vec<Withdrawing>,
    /// When the minimum lifetime of an offered object ends, by object
    /// (objects offered without one are not here).
    lifetimes: FastMap<u64, Instant>,
    /// The time of the operation being handled, or of the last
    /// [`Engine::expire`].
    now: Option<Instant>,
    subs: Subs,
    current: Option<Current>,
    next_op: u64,
    held: FastMap<u64, HeldOp>,
    config: EngineConfig,
    totals: Totals,
    quotas: Quotas,
    /// The federation's client, whose object operations raise no events
    /// ([`Engine::set_mirror`]).
    mirror: Option<ClientId>,
    /// Consumer groups across nodes: proxy members, notes for the
    /// federation.
    proxies: Proxies,
    /// The subscribers' interest in lifecycle events, as last published.
    interest: Interest,
    /// The lifecycle kinds subscribers other than the mirror take, as last
    /// told ([`Effect::LocalInterest`]).
    local_heard: EventMask,
}

/// Counters since the manager started.
#[derive(Default)]
struct Totals {
    offers: u64,
    views: u64,
    view_bytes: u64,
    events: u64,
}

type Reply = Result<Option<Msg>, (ErrorCode, String)>;

/// Requires by name, then by client: the object each was matched with.
type Requires = FastMap<String, FastMap<ClientId, Matches>>;

/// Whether handling `msg` may raise events that hold it up until they are
/// acknowledged (so it counts against the client's waiters).
fn may_wait_for_acks(msg: &Msg) -> bool {
    matches!(
        msg,
        Msg::Offer { .. }
            | Msg::Require { .. }
            | Msg::RequireWith(_)
            | Msg::Demand { .. }
            | Msg::Withdraw { .. }
            | Msg::Retract { .. }
            | Msg::RetractWith(_)
            | Msg::Leave
            | Msg::Lifecycle(LifecycleRef { wait: true, .. })
    )
}

/// The requires of `name` in `requires`, if any; no lookup while nobody
/// requires anything (offers and withdrawals ask on every call).
fn requires_of<'r>(
    requires: &'r mut Requires,
    name: &str,
) -> Option<&'r mut FastMap<ClientId, Matches>> {
    match requires.is_empty() {
        true => None,
        false => requires.get_mut(name),
    }
}

fn fail(code: ErrorCode, text: impl Into<String>) -> Reply {
    Err((code, text.into()))
}

impl Engine {
    /// An empty pool over `registry`, with `config`'s policies.
    pub fn new(registry: Box<dyn Registry>, config: EngineConfig) -> Self {
        Engine {
            quotas: Quotas::new(config.limits),
            registry,
            clients: FastMap::default(),
            next_client: 1,
            segments: FastMap::default(),
            next_segment: 1,
            waiters: FastMap::default(),
            requires: FastMap::default(),
            tombstones: Tombstones::default(),
            offered_bytes: 0,
            leaving: 0,
            next_object: 1,
            views: FastMap::default(),
            draining: FastMap::default(),
            withdrawing: Vec::new(),
            lifetimes: FastMap::default(),
            now: None,
            subs: Subs::new(config.keep_group_records),
            current: None,
            next_op: 0,
            held: FastMap::default(),
            config,
            totals: Totals::default(),
            mirror: None,
            proxies: Proxies::default(),
            interest: Interest::NONE,
            local_heard: EventMask::NONE,
        }
    }

    /// Registers a joined client and returns its id; queues its join event
    /// in `events`.
    pub fn join(&mut self, component: String, events: &mut Vec<Effect>) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        info!(client = id, %component, "joined");
        self.raise(
            EventKind::Join,
            &component,
            &Attributes::new(),
            None,
            id,
            events,
        );
        self.clients.insert(
            id,
            ClientRec {
                component,
                own_segments: FastMap::default(),
                leaving: None,
                held: FastMap::default(),
                own_requires_hold: false,
            },
        );
        id
    }

    /// Makes the requires client `cid` makes hold its own withdrawals of
    /// the objects they were matched with, as another client's do: an
    /// application whose handles offer and require the same name then
    /// behaves as in process. Without it a client's own requires hold none
    /// of its withdrawals (a federation's client requires for other nodes
    /// what it may offer for them). A client's own requires never hold
    /// its leave, which ends them.
    pub fn hold_own_requires(&mut self, cid: ClientId) {
        if let Some(c) = self.clients.get_mut(&cid) {
            c.own_requires_hold = true;
        }
    }

    /// Whether client `cid` is joined.
    pub fn has_client(&self, cid: ClientId) -> bool {
        self.clients.contains_key(&cid)
    }

    /// The pool's counters; what only the host knows (`uptime_ms`,
    /// `queued_bytes`, `dropped_events`) is zero.
    pub fn stats(&self) -> Stats {
        let subs = self.subs.counts();
        Stats {
            clients: self.clients.len() as u64,
            objects: self.registry.len() as u64,
            segments: self.segments.len() as u64,
            requires: self
                .requires
                .values()
                .flat_map(|s| s.values())
                .map(|m| m.len() as u64)
                .sum(),
            waiting_demands: self.waiters.values().map(|w| w.len() as u64).sum(),
            pending_leaves: self.leaving as u64,
            offered_bytes: self.offered_bytes,
            subscriptions: subs.subscriptions,
            queued_records: subs.queued_records,
            awaited_acks: subs.awaited_acks,
            offers_total: self.totals.offers,
            views_total: self.totals.views,
            view_bytes_total: self.totals.view_bytes,
            events_total: self.totals.events,
            uptime_ms: 0,
            queued_bytes: 0,
            dropped_events: 0,
        }
    }

    fn send(
        &self,
        to: ClientId,
        id: RequestId,
        msg: Msg,
        segment: Option<SegmentKey>,
        out: &mut Outgoing,
    ) {
        if self.clients.contains_key(&to) {
            out.push(Effect::Send {
                to,
                id,
                msg,
                segment,
            });
        }
    }

    /// Handles request `id` of client `cid` at time `now` and queues its
    /// effects in `out`. `segment` checks the shared segment that came with
    /// the request, if one did (only an offer takes one).
    pub fn handle(
        &mut self,
        cid: ClientId,
        id: RequestId,
        msg: Msg,
        segment: Option<SegmentCheck<'_>>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let start = out.len();
        self.now = Some(now);
        self.next_op += 1;
        self.current = Some(Current {
            op: self.next_op,
            client: cid,
            awaited: 0,
        });
        if !self.clients.contains_key(&cid) {
            // Not `send`, which only reaches joined clients: a client that
            // left (BYE) or was never joined is told so while its
            // connection lasts.
            self.current = None;
            let msg = Msg::Error {
                code: ErrorCode::NotJoined,
                text: "not joined (or already left)".into(),
            };
            out.push(Effect::Send {
                to: cid,
                id,
                msg,
                segment: None,
            });
            return;
        }
        // A lifecycle step sent without waiting takes no reply, not even
        // an error.
        let quiet = matches!(msg, Msg::Lifecycle(LifecycleRef { wait: false, .. }));
        let reply = self.dispatch(cid, id, msg, segment, out);
        match reply {
            Ok(None) => {}
            Err((code, text)) if quiet => {
                debug!(client = cid, ?code, %text, "lifecycle step refused");
            }
            Ok(Some(msg)) => self.send(cid, id, msg, None, out),
            Err((code, text)) => {
                debug!(client = cid, ?code, %text, "request failed");
                self.send(cid, id, Msg::Error { code, text }, None, out);
            }
        }
        // After the reply: a released view or require may have completed
        // the last withdrawal that held a leave.
        self.settle(out);
        if let Some(cur) = self.current.take() {
            if cur.awaited > 0 {
                self.hold(cur, id, start, now, out);
            }
        }
    }

    /// Sends the events of `kind` on `name` (of `version`, an offer) to
    /// their subscribers; those awaited by the operation being handled
    /// (when `origin` raised it) hold its reply.
    fn raise(
        &mut self,
        kind: EventKind,
        name: &str,
        attrs: &Attributes,
        version: Option<u64>,
        origin: ClientId,
        out: &mut Outgoing,
    ) {
        if self.subs.is_empty() || self.is_mirrored(kind, origin) {
            return;
        }
        let op = self.current.filter(|c| c.client == origin).map(|c| c.op);
        for (to, event) in self.subs.events(kind, name, attrs, version, origin, op) {
            if event.needs_ack {
                if let Some(c) = self.current.as_mut() {
                    c.awaited += 1;
                }
            }
            self.totals.events += 1;
            self.send(to, 0, Msg::Event(event), None, out);
        }
    }

    fn dispatch(
        &mut self,
        cid: ClientId,
        id: RequestId,
        msg: Msg,
        check: Option<SegmentCheck<'_>>,
        out: &mut Outgoing,
    ) -> Reply {
        if check.is_some() && !matches!(msg, Msg::Offer { .. }) {
            return fail(
                ErrorCode::Protocol,
                "descriptor on a message that takes none",
            );
        }
        // Bounds that keep every reply within a frame.
        check_request(&msg)?;
        if may_wait_for_acks(&msg) {
            self.quotas.check(cid, Kind::Waiters)?;
        }
        match msg {
            Msg::Offer {
                name,
                attrs,
                size,
                segment,
            } => {
                let brought = check.is_some();
                let key = self.segment_of(cid, segment, check, out)?;
                let place = (key, segment.offset);
                let reply = self.offer(cid, id, name, attrs, size, place, out);
                if reply.is_err() && brought {
                    self.refused_segment(cid, segment.segment, key, out);
                }
                reply
            }
            Msg::Require { name } => self.require(cid, name, &Attributes::new(), out),
            Msg::RequireWith(ConsumerRef { name, attrs }) => self.require(cid, name, &attrs, out),
            Msg::Retract { name } => self.retract(cid, id, name, &Attributes::new(), out),
            Msg::RetractWith(ConsumerRef { name, attrs }) => {
                self.retract(cid, id, name, &attrs, out)
            }
            Msg::Demand { name } => match self.data_ref(self.matched(&name, cid), name) {
                Ok(data) => {
                    self.send_data(cid, id, data, out);
                    self.settle(out);
                    Ok(None)
                }
                // The mirror demands only to export an offer it was told
                // of: one withdrawn since is gone, not waited for (a wait
                // would stall every other node's traffic behind it).
                Err(name) if self.mirror == Some(cid) => fail(ErrorCode::UnknownName, name),
                Err(name)
                    if self.tombstones.contains(&name)
                        && self.config.policy == FaultPolicy::FailFast =>
                {
                    fail(
                        ErrorCode::ProducerDied,
                        format!("the producer of {name} died"),
                    )
                }
                Err(name) => {
                    self.quotas.check(cid, Kind::Demands)?;
                    self.quotas.add(cid, Kind::Demands);
                    self.waiters.entry(name).or_default().push((cid, id));
                    Ok(None)
                }
            },
            Msg::Withdraw { name } => {
                let object = self.registry.get_of(&name, cid).map(|e| e.object);
                self.request_withdrawal(cid, id, name, object, false, out)
            }
            Msg::WithdrawOffer { name, offer } => {
                let object = self
                    .registry
                    .get_offered_by(&name, cid, offer)
                    .map(|e| e.object);
                self.request_withdrawal(cid, id, name, object, true, out)
            }
            Msg::Release { objects } => {
                for object in objects {
                    let held = &mut self.client_mut(cid).held;
                    let Some(n) = held.get_mut(&object) else {
                        continue;
                    };
                    *n -= 1;
                    if *n == 0 {
                        held.remove(&object);
                    }
                    self.release_view(object, out);
                }
                Ok(None)
            }
            Msg::Forget { segment } => {
                let Some(key) = self.client_mut(cid).own_segments.remove(&segment) else {
                    return fail(ErrorCode::BadSegment, format!("unknown segment {segment}"));
                };
                self.forget_segment(key, out);
                Ok(Some(Msg::Ok))
            }
            Msg::Leave => {
                let blocked = self.leave_blockers(cid);
                if blocked.is_empty() {
                    self.finish_leave(cid, id, out);
                    Ok(None)
                } else {
                    if self.client_mut(cid).leaving.replace(id).is_none() {
                        self.leaving += 1;
                    }
                    Ok(Some(Msg::Waiting { names: blocked }))
                }
            }
            Msg::Subscribe(req) => self.subscribe(cid, id, req, false, out),
            Msg::SubscribeReplay(req) => self.subscribe(cid, id, req, true, out),
            Msg::Unsubscribe { subscription } => {
                if self.subs.owner(subscription) != Some(cid) {
                    return fail(
                        ErrorCode::BadSubscription,
                        format!("no subscription {subscription} of this client"),
                    );
                }
                self.unsubscribe(subscription, out);
                Ok(Some(Msg::Ok))
            }
            Msg::Ack { event } => {
                self.ack(cid, event, out);
                Ok(None)
            }
            Msg::GiveBack { event } => {
                self.give_back(cid, event, out);
                Ok(None)
            }
            Msg::Stat => Ok(Some(Msg::Stats(Box::new(self.stats())))),
            Msg::Query { selector, skip } => self.query(&selector, skip),
            Msg::Lifecycle(step) => self.lifecycle(cid, step, out),
            // Manager-to-client messages; their payload is not echoed back,
            // it may be as large as a frame.
            _ => fail(ErrorCode::Protocol, "message not accepted from clients"),
        }
    }

    /// Subscribes client `cid` (request `id`); with `replay`, first sends
    /// an offer event for each matching object on offer (of this node),
    /// in offer order.
    fn subscribe(
        &mut self,
        cid: ClientId,
        id: RequestId,
        req: SubscribeRef,
        replay: bool,
        out: &mut Outgoing,
    ) -> Reply {
        if replay && req.group.is_some() {
            return fail(
                ErrorCode::BadSubscription,
                "a consumer group takes no replay",
            );
        }
        let count = self.subs.of_client(cid).len();
        self.quotas.check_count(Kind::Subscriptions, count)?;
        let group = req.group.clone();
        let sub = self.subs.subscribe(cid, req).map_err(|e| match e {
            SubError::Selector(text) => (ErrorCode::BadSelector, text),
            SubError::GroupSelector { group, selector } => (
                ErrorCode::BadSubscription,
                format!("group {group} selects {selector:?}; join it with that selector"),
            ),
        })?;
        self.send(cid, id, Msg::Subscribed { subscription: sub }, None, out);
        self.publish_interest(out);
        if let Some(group) = group {
            self.note_members(&group);
            self.drain_group(&group, out);
        }
        if replay {
            self.replay(cid, sub, out);
        }
        Ok(None)
    }

    /// Sends client `cid` an offer event of subscription `sub` for each
    /// matching object on offer (of this node), in offer order.
    fn replay(&mut self, cid: ClientId, sub: u64, out: &mut Outgoing) {
        let mut offered = Vec::new();
        self.registry.for_each(&mut |name, e| {
            if self.mirror != Some(e.owner) && self.subs.replays(sub, &e.view(name)) {
                offered.push((e.object, name.to_owned(), e.attrs.clone(), e.owner));
            }
        });
        offered.sort_unstable_by_key(|&(object, ..)| object);
        for (_, name, attrs, owner) in offered {
            let event = self.subs.replayed(sub, name, attrs, owner);
            self.totals.events += 1;
            self.send(cid, 0, Msg::Event(event), None, out);
        }
    }

    /// `cid` acknowledged `event`: an awaited event, or a group record
    /// now done.
    fn ack(&mut self, cid: ClientId, event: u64, out: &mut Outgoing) {
        match self.subs.ack(cid, event) {
            Acked::Event { op } => self.acked(op, out),
            Acked::Record { group, data, from } => {
                self.release_view(data.object, out);
                self.drain_group(&group, out);
                if let Some(from) = from {
                    self.note_done(from);
                }
            }
            Acked::Unknown => {}
        }
    }

    /// `cid` gives group record `event` back unfinished: it goes to
    /// another member now, or waits first in its group (its view of the
    /// record comes back with its own RELEASE).
    fn give_back(&mut self, cid: ClientId, event: u64, out: &mut Outgoing) {
        match self.subs.give_back(cid, event) {
            Some(GivenBack::Kept { group, to }) => {
                if let Some((route, data)) = to {
                    self.send_record(route, data, out);
                }
                self.drain_group(&group, out);
            }
            Some(GivenBack::Released(data)) => self.release_view(data.object, out),
            None => {}
        }
    }

    fn client(&self, cid: ClientId) -> &ClientRec {
        &self.clients[&cid]
    }

    fn client_mut(&mut self, cid: ClientId) -> &mut ClientRec {
        self.clients
            .get_mut(&cid)
            .expect("client checked by handle")
    }

    /// Offers `size` bytes at `(segment key, offset)` as `name` for
    /// client `cid`, by its request `id`.
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        cid: ClientId,
        id: RequestId,
        name: String,
        attrs: crate::ipc::wire::Attributes,
        size: u64,
        (key, offset): (u64, u64),
        out: &mut Outgoing,
    ) -> Reply {
        let seg = &self.segments[&key];
        if offset.checked_add(size).is_none_or(|end| end > seg.len) {
            return fail(
                ErrorCode::BadSegment,
                format!("{name}: object outside its segment"),
            );
        }
        self.quotas.check(cid, Kind::Offers)?;
        let (mut attrs, lifetime) = self
            .checked_attributes(attrs)
            .map_err(|text| (ErrorCode::BadAttributes, format!("{name}: {text}")))?;
        // The size attribute is the object's size, as in one process: set
        // when absent (so that selectors see it), refused when it differs.
        match attrs.get(SIZE_KEY) {
            None => {
                attrs.insert(SIZE_KEY.into(), Value::UInt(size));
            }
            Some(&Value::UInt(s)) if s == size => {}
            Some(other) => {
                return fail(
                    ErrorCode::BadAttributes,
                    format!("{name}: size {other:?} but {size} bytes"),
                )
            }
        }
        let version = rules::next_version(self.registry.get(&name).map(|e| e.version));
        let entry = Entry {
            owner: cid,
            size,
            segment: key,
            offset,
            attrs,
            object: self.next_object,
            request: id,
            version,
        };
        let object = self.next_object;
        if self.registry.insert(name.clone(), entry).is_err() {
            return fail(ErrorCode::DuplicateName, name);
        }
        self.quotas.add(cid, Kind::Offers);
        if let Some(until) = self
            .now
            .zip(lifetime)
            .and_then(|(n, l)| rules::lifetime_end(l, n))
        {
            self.lifetimes.insert(self.next_object, until);
        }
        self.next_object += 1;
        self.totals.offers += 1;
        self.segments.get_mut(&key).expect("checked above").objects += 1;
        self.offered_bytes += size;
        self.tombstones.remove(&name);
        if !self.subs.is_empty() {
            // A copy of another node's object: its groups were served there.
            let copy = self.mirror == Some(cid);
            let e = self.registry.get(&name).expect("just inserted");
            let attrs = e.attrs.clone();
            let data = DataRef {
                name: name.clone(),
                size,
                offset,
                segment: key,
                attrs: sent_attributes(&attrs),
                object: e.object,
            };
            let version = Some(e.version);
            self.raise(EventKind::Offer, &name, &attrs, version, cid, out);
            let groups = match copy {
                true => Vec::new(),
                false => self.subs.groups_for(&name, &attrs, version),
            };
            for group in groups {
                // The group's own reference, dropped when a member is done.
                *self.views.entry(data.object).or_default() += 1;
                self.route_record(&group, data.clone(), None, out);
            }
        }
        // Requires made while nothing was on offer are matched with it.
        if let Some(requires) = requires_of(&mut self.requires, &name) {
            requires
                .values_mut()
                .flat_map(Matches::matches_mut)
                .filter(|m| m.is_none())
                .for_each(|m| *m = Some(object));
        }
        let waiting = match self.waiters.is_empty() {
            true => None,
            false => self.waiters.remove(&name),
        };
        if let Some(waiting) = waiting {
            for (to, rid) in waiting {
                self.quotas.sub(to, Kind::Demands, 1);
                let data = self.data_ref(None, name.clone()).expect("just offered");
                self.send_data(to, rid, data, out);
            }
            self.settle(out);
        }
        Ok(Some(Msg::Ok))
    }

    /// The object `cid`'s oldest require of `name` was matched with, if
    /// any. The mirror's demands export what it was told of (the newest),
    /// whatever its requires, which stand for other nodes' clients, were
    /// matched with.
    fn matched(&self, name: &str, cid: ClientId) -> Option<u64> {
        if self.requires.is_empty() || self.mirror == Some(cid) {
            return None;
        }
        self.requires.get(name)?.get(&cid)?.oldest()
    }

    /// Where the object offered as `name` lies (`object`, or else the
    /// newest), if it is on offer; the name back (not copied) if not.
    fn data_ref(&self, object: Option<u64>, name: String) -> Result<DataRef, String> {
        let entry = match object {
            Some(object) => self.registry.get_object(&name, object),
            None => self.registry.get(&name),
        };
        let Some(e) = entry else {
            return Err(name);
        };
        Ok(DataRef {
            size: e.size,
            offset: e.offset,
            segment: e.segment,
            attrs: sent_attributes(&e.attrs),
            object: e.object,
            name,
        })
    }

    /// Answers request `rid` of `to` with a view of `data`.
    fn send_data(&mut self, to: ClientId, rid: RequestId, data: DataRef, out: &mut Outgoing) {
        // The mirror's requires stand for other nodes' clients: its own
        // demands (to export an offer) do not end them.
        if !self.requires.is_empty() && self.mirror != Some(to) {
            self.end_require(&data.name, to, true);
        }
        if !self.subs.is_empty() {
            // The event carries every attribute, `size` too, and the
            // object's version, as in one process.
            let attrs = with_size(data.attrs.clone(), data.size);
            let version = self
                .registry
                .get_object(&data.name, data.object)
                .map(|e| e.version);
            self.raise(EventKind::Demand, &data.name, &attrs, version, to, out);
        }
        self.give_view(to, rid, Msg::Data(data), out);
    }

    /// Sends `msg` (a [`Msg::Data`] or [`Msg::Record`]) to `to`, with the
    /// segment's descriptor the first time, and counts the view it gives.
    fn give_view(&mut self, to: ClientId, rid: RequestId, msg: Msg, out: &mut Outgoing) {
        let d = match &msg {
            Msg::Data(d) | Msg::Record { data: d, .. } => d,
            _ => unreachable!("give_view sends data"),
        };
        let object = d.object;
        self.totals.views += 1;
        self.totals.view_bytes += d.size;
        let seg = self
            .segments
            .get_mut(&d.segment)
            .expect("viewed objects keep their segment");
        let first = seg.sent_to.insert(to).then_some(d.segment);
        self.send(to, rid, msg, first, out);
        *self.views.entry(object).or_default() += 1;
        if let Some(c) = self.clients.get_mut(&to) {
            *c.held.entry(object).or_default() += 1;
        }
    }

    /// Gives record `data` of `group` (forwarded `from` another node, if
    /// it was) to a member with room, or queues it.
    fn route_record(
        &mut self,
        group: &str,
        data: DataRef,
        from: Option<Forwarded>,
        out: &mut Outgoing,
    ) {
        let route = self.subs.route(group, data.clone(), from);
        self.send_record(route, data, out);
    }

    /// Sends record `data` to the member `route` names, with a view of it.
    fn send_record(&mut self, route: Route, data: DataRef, out: &mut Outgoing) {
        if let Route::Member {
            subscription,
            client,
            event,
        } = route
        {
            let msg = Msg::Record {
                subscription,
                event,
                data,
            };
            self.give_view(client, 0, msg, out);
        }
    }

    /// Hands queued records of `group` to members with room.
    fn drain_group(&mut self, group: &str, out: &mut Outgoing) {
        while let Some((data, from)) = self.subs.take_queued(group) {
            self.route_record(group, data, from, out);
        }
    }

    /// Ends subscription `sub`: its awaited acknowledgements count as given,
    /// its group's undone records go to other members (or are released
    /// when it was the last one and the pool keeps no orphan records).
    fn unsubscribe(&mut self, sub: u64, out: &mut Outgoing) {
        let Unsubscribed {
            ops,
            group,
            released,
        } = self.subs.unsubscribe(sub);
        for op in ops {
            self.acked(op, out);
        }
        for data in released {
            self.release_view(data.object, out);
        }
        if let Some(group) = group {
            self.note_members(&group);
            self.drain_group(&group, out);
        }
        self.publish_interest(out);
    }

    /// Publishes the subscribers' interest in lifecycle events when it
    /// changed.
    fn publish_interest(&mut self, out: &mut Outgoing) {
        let now = self.subs.interest(None);
        if now != self.interest {
            self.interest = now;
            out.push(Effect::Interest(now));
        }
        // Without a mirror (no federation) every subscriber is this node's.
        let local = match self.mirror {
            None => now.heard,
            mirror => self.subs.interest(mirror).heard,
        };
        if local != self.local_heard {
            self.local_heard = local;
            out.push(Effect::LocalInterest(local));
        }
    }

    /// Raises the event of a client's lifecycle step (declare, seal,
    /// dispose); with `wait`, the reply waits for its acknowledgements.
    fn lifecycle(&mut self, cid: ClientId, step: LifecycleRef, out: &mut Outgoing) -> Reply {
        let LifecycleRef {
            kind,
            name,
            attrs,
            wait,
        } = step;
        if !LIFECYCLE_KINDS.contains(kind) {
            return fail(
                ErrorCode::Protocol,
                format!("{kind:?} is no lifecycle step"),
            );
        }
        if wait {
            self.raise(kind, &name, &attrs, None, cid, out);
            return Ok(Some(Msg::Ok));
        }
        // Without a reply to hold, no event awaits an acknowledgement.
        let current = self.current.take();
        self.raise(kind, &name, &attrs, None, cid, out);
        self.current = current;
        Ok(None)
    }

    /// `attrs` checked: built-in keys typed, user keys (`ns.key`) against
    /// the configured schema (unknown ones rejected or dropped as
    /// configured); without a schema, or with one that declares no key,
    /// user keys pass as they are. With them
    /// the minimum lifetime they give, if any.
    fn checked_attributes(
        &self,
        attrs: Attributes,
    ) -> Result<(Attributes, Option<Duration>), String> {
        // Moved apart and back together: no value is copied.
        let (mut builtin, user): (Attributes, Attributes) =
            attrs.into_iter().partition(|(k, _)| is_builtin(k));
        let typed = Typed::from_flat(&builtin).map_err(|e| e.to_string())?;
        let lifetime = (!typed.lifetime.is_zero()).then_some(typed.lifetime);
        let schema = &self.config.schema;
        let mut checked = Attributes::new();
        for (key, value) in user {
            let value = schema
                .check(&key, value, self.config.unknown_attributes)
                .map_err(|e| e.to_string())?;
            if let Some(v) = value {
                checked.insert(key, v);
            }
        }
        if let Some(key) = schema.missing(&checked) {
            return Err(format!("required attribute {key} missing"));
        }
        builtin.extend(checked);
        Ok((builtin, lifetime))
    }

    /// One view of `object` was dropped; the last one completes a pending
    /// withdrawal.
    fn release_view(&mut self, object: u64, out: &mut Outgoing) {
        let Some(n) = self.views.get_mut(&object) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.views.remove(&object);
        if let Some(d) = self.draining.remove(&object) {
            if let Some((owner, rid)) = d.reply_to {
                self.send(owner, rid, Msg::Ok, None, out);
            }
            self.unref_segment(d.segment, out);
        }
    }

    /// `cid` requires `name`; its require event carries `attrs` (the
    /// consumer handle's, when the client sent them).
    fn require(
        &mut self,
        cid: ClientId,
        name: String,
        attrs: &Attributes,
        out: &mut Outgoing,
    ) -> Reply {
        self.quotas.check(cid, Kind::Requires)?;
        self.quotas.add(cid, Kind::Requires);
        self.raise(EventKind::Require, &name, attrs, None, cid, out);
        let newest = self.registry.get(&name).map(|e| e.object);
        self.requires
            .entry(name)
            .or_default()
            .entry(cid)
            .and_modify(|m| m.push(newest))
            .or_insert_with(|| Matches::new(newest));
        Ok(Some(Msg::Ok))
    }

    /// `cid` retracts its require of `name` (request `id`), failing its
    /// waiting demands; its retract event carries `attrs`.
    fn retract(
        &mut self,
        cid: ClientId,
        id: RequestId,
        name: String,
        attrs: &Attributes,
        out: &mut Outgoing,
    ) -> Reply {
        self.raise(EventKind::Retract, &name, attrs, None, cid, out);
        self.end_require(&name, cid, false);
        let mut cancelled = Vec::new();
        if let Some(w) = self.waiters.get_mut(&name) {
            w.retain(|&(c, rid)| {
                if c == cid {
                    cancelled.push(rid);
                }
                c != cid
            });
        }
        self.quotas.sub(cid, Kind::Demands, cancelled.len());
        for rid in cancelled {
            let text = format!("{name} retracted");
            let msg = Msg::Error {
                code: ErrorCode::Retracted,
                text,
            };
            self.send(cid, rid, msg, None, out);
        }
        self.waiters.retain(|_, w| !w.is_empty());
        // The reply first: the retract may let its own client's pending
        // leave finish, and BYE ends the client.
        self.send(cid, id, Msg::Ok, None, out);
        self.settle(out);
        Ok(None)
    }

    /// Ends one of `cid`'s requires of `name`, if it has one: the oldest
    /// when a demand `served` it, else the newest.
    fn end_require(&mut self, name: &str, cid: ClientId, served: bool) {
        let Some(set) = self.requires.get_mut(name) else {
            return;
        };
        let Some(matches) = set.get_mut(&cid) else {
            return;
        };
        if !matches.end_one(served) {
            set.remove(&cid);
        }
        self.quotas.sub(cid, Kind::Requires, 1);
        if set.is_empty() {
            self.requires.remove(name);
        }
    }

    /// Removes the offer `owner` made under `name` (its segment stays
    /// referenced).
    fn take_offer(&mut self, name: &str, object: u64) -> Option<Entry> {
        let e = self.registry.remove(name, object)?;
        if !self.lifetimes.is_empty() {
            self.lifetimes.remove(&e.object);
        }
        if let Some(requires) = requires_of(&mut self.requires, name) {
            // Matched with an object that is gone: with the newest left.
            let newest = self.registry.get(name).map(|n| n.object);
            requires
                .values_mut()
                .flat_map(Matches::matches_mut)
                .filter(|m| **m == Some(e.object))
                .for_each(|m| *m = newest);
        }
        self.quotas.sub(e.owner, Kind::Offers, 1);
        self.offered_bytes -= e.size;
        Some(e)
    }

    /// What holds the leave of `cid`: names it offered that another client
    /// still requires, and names it withdrew whose withdrawal waits (for
    /// consumers' views or a minimum lifetime: so that its reply comes
    /// before BYE); not the offers that outlive it
    /// ([`ProducerExit::Keep`](super::ProducerExit::Keep)).
    fn leave_blockers(&self, cid: ClientId) -> Vec<String> {
        let mut names = Vec::new();
        // Every offer of `cid`: under versions it may have several of a name.
        self.registry.for_each(&mut |n, e| {
            if e.owner == cid
                && !self.kept_on_exit(e.object)
                && self.required_except(n, Some(cid), e.object)
            {
                names.push(n.to_owned());
            }
        });
        let withdrawing = self
            .draining
            .values()
            .filter(|d| d.reply_to.is_some_and(|(owner, _)| owner == cid));
        names.extend(withdrawing.map(|d| d.name.clone()));
        let waiting = self.withdrawing.iter().filter(|w| {
            w.owner == cid
                && !self
                    .withdrawn_object(w)
                    .is_some_and(|object| self.kept_on_exit(object))
        });
        names.extend(waiting.map(|w| w.name.clone()));
        names.sort();
        names.dedup();
        names
    }

    fn check_leaves(&mut self, out: &mut Outgoing) {
        if self.leaving == 0 {
            return;
        }
        let ready: Vec<(ClientId, RequestId)> = self
            .clients
            .iter()
            .filter_map(|(&cid, c)| c.leaving.map(|rid| (cid, rid)))
            .filter(|&(cid, _)| self.leave_blockers(cid).is_empty())
            .collect();
        for (cid, rid) in ready {
            // Finishing one leave removes its client, which settles again
            // and may have finished the others of this list already.
            let still = self
                .clients
                .get(&cid)
                .is_some_and(|c| c.leaving == Some(rid));
            if still {
                self.finish_leave(cid, rid, out);
            }
        }
    }

    fn finish_leave(&mut self, cid: ClientId, rid: RequestId, out: &mut Outgoing) {
        self.raise_leave(cid, out);
        self.send(cid, rid, Msg::Bye, None, out);
        info!(client = cid, "left");
        self.remove_client(cid, false, out);
    }

    /// Raises the leave event of `cid` (still registered).
    fn raise_leave(&mut self, cid: ClientId, out: &mut Outgoing) {
        let component = self.client(cid).component.clone();
        self.raise(
            EventKind::Leave,
            &component,
            &Attributes::new(),
            None,
            cid,
            out,
        );
    }

    /// Forgets client `cid`, whose connection ended without LEAVE.
    pub fn disconnect(&mut self, cid: ClientId, out: &mut Vec<Effect>) {
        if self.clients.contains_key(&cid) {
            info!(client = cid, component = %self.client(cid).component, "connection lost");
            self.raise_leave(cid, out);
            self.remove_client(cid, true, out);
        }
    }

    fn remove_client(&mut self, cid: ClientId, died: bool, out: &mut Outgoing) {
        // Its subscriptions first: its undone group records go to others
        // while its views still keep them alive.
        for sub in self.subs.of_client(cid) {
            self.unsubscribe(sub, out);
        }
        self.held.retain(|_, h| h.client != cid);
        for (object, n) in std::mem::take(&mut self.client_mut(cid).held) {
            for _ in 0..n {
                self.release_view(object, out);
            }
        }
        let offered = self.registry.names_of(cid);
        for name in offered {
            // Every offer of it: under versions a client may have several.
            let (mut taken, mut kept) = (false, false);
            while let Some(object) = self.registry.get_of(&name, cid).map(|e| e.object) {
                if self.kept_on_exit(object) {
                    self.keep_offer(name.clone(), cid, object);
                    kept = true;
                    continue;
                }
                let Some(e) = self.take_offer(&name, object) else {
                    break;
                };
                taken = true;
                // Withdrawn with its producer, as an in-process
                // application's offers are when it goes.
                self.raise(
                    EventKind::Withdraw,
                    &name,
                    &e.attrs,
                    Some(e.version),
                    cid,
                    out,
                );
                if self.views.contains_key(&e.object) {
                    // Viewed or held by a consumer group: the data stays
                    // until the last view goes.
                    let d = Draining {
                        name: name.clone(),
                        reply_to: None,
                        segment: e.segment,
                    };
                    self.draining.insert(e.object, d);
                } else {
                    self.unref_segment(e.segment, out);
                }
            }
            // A name whose offer outlives its producer is not a dead
            // producer's: it is withdrawn as by its producer later.
            if died && taken && !kept {
                let requires = &self.requires;
                self.tombstones.insert(name, |n| {
                    requires.get(n).is_some_and(|s| s.keys().any(|&c| c != cid))
                });
            }
        }
        // Its withdrawals that still wait for consumers: nobody waits for
        // the reply now.
        self.withdrawing.retain(|w| w.owner != cid);
        for d in self.draining.values_mut() {
            if d.reply_to.is_some_and(|(owner, _)| owner == cid) {
                d.reply_to = None;
            }
        }
        if self.client(cid).leaving.is_some() {
            self.leaving -= 1;
        }
        let segments: Vec<u64> = self.client(cid).own_segments.values().copied().collect();
        for key in segments {
            self.forget_segment(key, out);
        }
        self.clients.remove(&cid);
        self.quotas.forget(cid);
        self.requires.retain(|_, set| {
            set.remove(&cid);
            !set.is_empty()
        });
        self.waiters.retain(|_, w| {
            w.retain(|&(c, _)| c != cid);
            !w.is_empty()
        });
        for seg in self.segments.values_mut() {
            seg.sent_to.remove(&cid);
        }
        self.settle(out);
    }

    /// Whether an object is on offer as `name`.
    pub fn is_offered(&self, name: &str) -> bool {
        self.registry.get(name).is_some()
    }

    /// The newest offer of `name`, if any: its segment, offset, size and
    /// attributes (`size` among them).
    pub fn offered(&self, name: &str) -> Option<&Entry> {
        self.registry.get(name)
    }

    /// Fails every demand waiting for `name` with `code` and `text`.
    pub fn fail_waiters(&mut self, name: &str, code: ErrorCode, text: &str, out: &mut Vec<Effect>) {
        for (cid, rid) in self.waiters.remove(name).unwrap_or_default() {
            self.quotas.sub(cid, Kind::Demands, 1);
            let msg = Msg::Error {
                code,
                text: text.into(),
            };
            self.send(cid, rid, msg, None, out);
        }
    }

    /// Fails every waiting request and forgets every client (shutdown).
    pub fn shut_down(&mut self, out: &mut Vec<Effect>) {
        for (name, waiting) in std::mem::take(&mut self.waiters) {
            for (cid, rid) in waiting {
                let text = format!("pool manager shutting down; {name} never came");
                let msg = Msg::Error {
                    code: ErrorCode::ShuttingDown,
                    text,
                };
                self.send(cid, rid, msg, None, out);
            }
        }
    }
}
