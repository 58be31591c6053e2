//! The engine's subscriptions: plain event subscriptions, consumer groups
//! and the acknowledgements that hold operations up.
//!
//! This module only keeps the books and decides who gets what; the market
//! ([`super::market`]) addresses the effects and keeps the data alive.
//!
//! - An event goes to every subscription whose kinds and selector match.
//!   When the subscription is acknowledged and the event was raised by the
//!   operation being handled, that operation's reply is held until every
//!   such event is acknowledged (or the acknowledgement timeout passes).
//! - A consumer group receives every matching offer once; within the group
//!   it goes to the member with the fewest undone records (at most
//!   [`GROUP_WINDOW`] each, the rest queue in the group), together with its
//!   data. A record is done when its member acknowledges it; a member that
//!   unsubscribes or dies gives its undone records back to the group, which
//!   hands them to another member. When its last member goes, the group's
//!   records are released (as in one process) unless the pool keeps them
//!   for a member that joins later ([`Subs::new`]); offers made while a
//!   group has no member are never kept for it.
//! - A group member may be a *proxy* of another node's members (owned by
//!   the federation's client, [`Subs::add_proxy`]), weighted by how many
//!   they are: it holds up to that many windows of records, and members
//!   are chosen by load per weight, ties in weighted round robin. Records
//!   another node forwarded here ([`Forwarded`]) go to local members only
//!   and are dropped when the last of those goes (their node gives them to
//!   its other members).

use super::groups::GroupBook;
use super::registry::{ClientId, OfferView};
use crate::events::{selects, EventKind, EventMask};
use crate::ipc::fasthash::FastMap;
use crate::ipc::interest::Interest;
use crate::ipc::wire::{Attributes, DataRef, EventRef, SubscribeRef};
use crate::selector::Selector;

/// What ending a subscription changed: see [`Subs::unsubscribe`].
pub struct Unsubscribed {
    /// Held operations whose wait ends.
    pub ops: Vec<u64>,
    /// The consumer group the subscription was a member of.
    pub group: Option<String>,
    /// Records the group no longer holds (its last member went, or its
    /// last local member for records forwarded from another node).
    pub released: Vec<DataRef>,
}

/// A record another node's group forwarded to this node's members: the
/// node, and its delivery id there (to tell it when the record is done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The node that forwarded it.
    pub node: String,
    /// Its delivery id on that node.
    pub event: u64,
}

/// Most undone records one group member holds; more wait in the group.
pub const GROUP_WINDOW: u32 = 4;

/// Most members a proxy stands for (a larger count from another node is
/// taken as this many).
pub const MAX_PROXY_WEIGHT: u32 = 1 << 16;

struct Sub {
    client: ClientId,
    selector: Selector,
    mask: EventMask,
    ack: bool,
    group: Option<String>,
}

/// A consumer group: its selector and its books (seats are
/// subscription ids).
struct Group {
    selector: Selector,
    book: GroupBook<Queued>,
}

/// A record waiting in a group, and the node that forwarded it, if another
/// did.
type Queued = (DataRef, Option<Forwarded>);

/// Whether a queued record was forwarded from another node (so only local
/// members may take it).
fn forwarded(record: &Queued) -> bool {
    record.1.is_some()
}

/// A record given to a member and not yet acknowledged.
struct Undone {
    group: String,
    sub: u64,
    data: DataRef,
    from: Option<Forwarded>,
}

/// Where a consumer-group record goes.
pub enum Route {
    /// To this member (subscription, client) as this delivery.
    Member {
        /// The member's subscription.
        subscription: u64,
        /// Its client.
        client: ClientId,
        /// The delivery's event id.
        event: u64,
    },
    /// Queued in the group until a member has room.
    Queued,
}

/// Why a subscription was refused.
pub enum SubError {
    /// The selector did not parse.
    Selector(String),
    /// The group exists with another selector.
    GroupSelector {
        /// The group.
        group: String,
        /// Its selector.
        selector: String,
    },
}

/// Every subscription of the manager.
#[derive(Default)]
pub struct Subs {
    subs: FastMap<u64, Sub>,
    next_id: u64,
    groups: FastMap<String, Group>,
    /// Group records given out and not acknowledged, by delivery id.
    undone: FastMap<u64, Undone>,
    /// Acknowledged-subscription events not yet acknowledged: event →
    /// (subscription, held operation).
    awaited: FastMap<u64, (u64, u64)>,
    /// Whether a group without members keeps its records for a member that
    /// joins later (else they are released when its last member goes).
    keep_orphans: bool,
}

impl Subs {
    /// No subscriptions; `keep_orphans`: whether a group whose last member
    /// went keeps its records for the next member to join.
    pub fn new(keep_orphans: bool) -> Subs {
        Subs {
            keep_orphans,
            ..Subs::default()
        }
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a subscription of `client`; returns its id.
    pub fn subscribe(&mut self, client: ClientId, req: SubscribeRef) -> Result<u64, SubError> {
        self.subscribe_as(client, req, 1, false)
    }

    /// [`Subs::subscribe`]; a group member stands for `weight` members (a
    /// `proxy` of another node's, or one local member).
    fn subscribe_as(
        &mut self,
        client: ClientId,
        req: SubscribeRef,
        weight: u32,
        proxy: bool,
    ) -> Result<u64, SubError> {
        let selector =
            Selector::parse(&req.selector).map_err(|e| SubError::Selector(e.to_string()))?;
        if let Some(name) = &req.group {
            if let Some(g) = self.groups.get(name) {
                if g.selector.as_str() != req.selector {
                    return Err(SubError::GroupSelector {
                        group: name.clone(),
                        selector: g.selector.as_str().to_owned(),
                    });
                }
            }
        }
        let id = self.next();
        if let Some(name) = &req.group {
            let keep_orphans = self.keep_orphans;
            let g = self.groups.entry(name.clone()).or_insert_with(|| Group {
                selector: selector.clone(),
                book: GroupBook::new(keep_orphans),
            });
            g.book.join(id, weight, proxy);
        }
        let sub = Sub {
            client,
            selector,
            mask: EventMask::from_bits(req.kinds),
            ack: req.ack,
            group: req.group,
        };
        self.subs.insert(id, sub);
        Ok(id)
    }

    /// Adds a proxy member of `group` owned by `client` (the federation's)
    /// standing for `weight` members of another node; returns its
    /// subscription.
    pub fn add_proxy(
        &mut self,
        client: ClientId,
        group: &str,
        selector: &str,
        weight: u32,
    ) -> Result<u64, SubError> {
        let req = SubscribeRef {
            selector: selector.into(),
            kinds: 0,
            ack: false,
            group: Some(group.into()),
        };
        self.subscribe_as(client, req, weight, true)
    }

    /// Sets the weight of proxy member `sub` (another node's new member
    /// count).
    pub fn set_weight(&mut self, sub: u64, weight: u32) {
        if let Some(g) = self.group_of(sub).and_then(|g| self.groups.get_mut(&g)) {
            g.book.set_weight(sub, weight);
        }
    }

    fn group_of(&self, sub: u64) -> Option<String> {
        self.subs.get(&sub)?.group.clone()
    }

    /// The selector of `group` and how many of its members are local
    /// (not proxies); `None` when there is no such group.
    pub fn local_members(&self, group: &str) -> Option<(&str, u32)> {
        let g = self.groups.get(group)?;
        Some((g.selector.as_str(), g.book.local_seats() as u32))
    }

    /// Whether there is no subscription and no group (nothing to raise or
    /// route).
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.groups.is_empty()
    }

    /// The client owning subscription `id`.
    pub fn owner(&self, id: u64) -> Option<ClientId> {
        self.subs.get(&id).map(|s| s.client)
    }

    /// Subscriptions of `client`.
    pub fn of_client(&self, client: ClientId) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.client == client)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Removes subscription `id`. Returns the held operations whose wait
    /// this ends (its awaited events count as acknowledged), the group
    /// whose records it gave back, if any, and the records released
    /// because it was the group's last member (unless orphans are kept).
    pub fn unsubscribe(&mut self, id: u64) -> Unsubscribed {
        let Some(sub) = self.subs.remove(&id) else {
            return Unsubscribed {
                ops: Vec::new(),
                group: None,
                released: Vec::new(),
            };
        };
        let mut ops = Vec::new();
        self.awaited.retain(|_, &mut (s, op)| {
            if s == id {
                ops.push(op);
            }
            s != id
        });
        let Some(group) = sub.group else {
            return Unsubscribed {
                ops,
                group: None,
                released: Vec::new(),
            };
        };
        let mut back: Vec<(u64, Queued)> = Vec::new();
        self.undone.retain(|&event, u| {
            if u.sub == id {
                back.push((event, (u.data.clone(), u.from.clone())));
            }
            u.sub != id
        });
        back.sort_by_key(|(event, _)| *event);
        let back = back.into_iter().map(|(_, record)| record).collect();
        let g = self.groups.get_mut(&group).expect("members have a group");
        let released = g
            .book
            .leave(id, back, forwarded)
            .into_iter()
            .map(|(data, _)| data)
            .collect();
        if g.book.has_no_seat() && g.book.queued_len() == 0 {
            self.groups.remove(&group);
        }
        Unsubscribed {
            ops,
            group: Some(group),
            released,
        }
    }

    /// The lifecycle kinds (declare, seal, dispose) that plain
    /// subscriptions of clients other than `except` take, and those that
    /// acknowledged ones take. With `except` the federation's client, it
    /// is what this node's own subscribers want, without the subscriptions
    /// the federation makes for other nodes.
    pub fn interest(&self, except: Option<ClientId>) -> Interest {
        self.subs
            .values()
            .filter(|s| s.group.is_none() && Some(s.client) != except)
            .fold(Interest::NONE, |all, s| {
                all.union(Interest::of(s.mask, s.ack))
            })
    }

    /// Events of `kind` on `name` (of `version`, an offer) raised by
    /// `origin` for the plain subscriptions that match, with their
    /// receivers. Acknowledged ones are awaited by operation `op` when
    /// there is one (`needs_ack` says so).
    pub fn events(
        &mut self,
        kind: EventKind,
        name: &str,
        attrs: &Attributes,
        version: Option<u64>,
        origin: ClientId,
        op: Option<u64>,
    ) -> Vec<(ClientId, EventRef)> {
        let view = OfferView {
            name,
            version,
            attrs,
        };
        let matching: Vec<(u64, ClientId, bool)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.group.is_none() && selects(s.mask, &s.selector, kind, &view))
            .map(|(&id, s)| (id, s.client, s.ack))
            .collect();
        matching
            .into_iter()
            .map(|(subscription, client, ack)| {
                let event = self.next();
                let needs_ack = ack && op.is_some();
                if let (true, Some(op)) = (needs_ack, op) {
                    self.awaited.insert(event, (subscription, op));
                }
                let ev = EventRef {
                    subscription,
                    event,
                    kind,
                    name: name.to_owned(),
                    attrs: attrs.clone(),
                    client: origin,
                    needs_ack,
                    node: None,
                };
                (client, ev)
            })
            .collect()
    }

    /// Whether a replay to plain subscription `sub` sends `offer`: it
    /// would have received the offer's event live.
    pub fn replays(&self, sub: u64, offer: &OfferView<'_>) -> bool {
        self.subs.get(&sub).is_some_and(|s| {
            s.group.is_none() && selects(s.mask, &s.selector, EventKind::Offer, offer)
        })
    }

    /// The replayed offer event of subscription `sub` for object `name`
    /// offered by `origin`: no operation waits for it.
    pub fn replayed(
        &mut self,
        sub: u64,
        name: String,
        attrs: Attributes,
        origin: ClientId,
    ) -> EventRef {
        EventRef {
            subscription: sub,
            event: self.next(),
            kind: EventKind::Offer,
            name,
            attrs,
            client: origin,
            needs_ack: false,
            node: None,
        }
    }

    /// The consumer groups whose selector matches an offer of `name`
    /// (its `version`).
    pub fn groups_for(&self, name: &str, attrs: &Attributes, version: Option<u64>) -> Vec<String> {
        let view = OfferView {
            name,
            version,
            attrs,
        };
        self.groups
            .iter()
            .filter(|(_, g)| !g.book.has_no_seat() && g.selector.matches(&view))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Gives `data` to a member of `group` with room (a local one when it
    /// was forwarded `from` another node), or queues it.
    pub fn route(&mut self, group: &str, data: DataRef, from: Option<Forwarded>) -> Route {
        let Some(g) = self.groups.get_mut(group) else {
            return Route::Queued;
        };
        let local_only = from.is_some();
        let Some((subscription, (data, from))) = g.book.route((data, from), local_only) else {
            return Route::Queued;
        };
        let client = self.subs[&subscription].client;
        let event = self.next();
        self.undone.insert(
            event,
            Undone {
                group: group.to_owned(),
                sub: subscription,
                data,
                from,
            },
        );
        Route::Member {
            subscription,
            client,
            event,
        }
    }

    /// The next queued record of `group` (and the node it was forwarded
    /// from), if a member that may take it has room for it.
    pub fn take_queued(&mut self, group: &str) -> Option<(DataRef, Option<Forwarded>)> {
        self.groups.get_mut(group)?.book.take_queued(forwarded)
    }

    /// `client` acknowledged `event`: returns the held operation it was
    /// awaited by, or the finished group record and its group.
    pub fn ack(&mut self, client: ClientId, event: u64) -> Acked {
        if let Some(&(sub, op)) = self.awaited.get(&event) {
            if self.owner(sub) == Some(client) {
                self.awaited.remove(&event);
                return Acked::Event { op };
            }
        }
        match self.undone.get(&event) {
            Some(u) if self.owner(u.sub) == Some(client) => {
                let u = self.undone.remove(&event).expect("just found");
                if let Some(g) = self.groups.get_mut(&u.group) {
                    g.book.done(u.sub);
                }
                Acked::Record {
                    group: u.group,
                    data: u.data,
                    from: u.from,
                }
            }
            _ => Acked::Unknown,
        }
    }

    /// `client` gives back group record `event` unfinished: the group's
    /// book gives it to another member (the same one when it is alone) or
    /// queues it first. `None` for an event that is not an undone record
    /// of `client`'s (late, duplicate or foreign: ignored).
    pub fn give_back(&mut self, client: ClientId, event: u64) -> Option<GivenBack> {
        match self.undone.get(&event) {
            Some(u) if self.owner(u.sub) == Some(client) => {}
            _ => return None,
        }
        let u = self.undone.remove(&event).expect("just found");
        let g = self.groups.get_mut(&u.group).expect("records have a group");
        let local_only = u.from.is_some();
        let to = match g.book.give_back(u.sub, (u.data, u.from), local_only) {
            Err((data, _)) => return Some(GivenBack::Released(data)),
            Ok(None) => None,
            Ok(Some((subscription, (data, from)))) => {
                let client = self.subs[&subscription].client;
                let event = self.next();
                let record = data.clone();
                let group = u.group.clone();
                self.undone.insert(
                    event,
                    Undone {
                        group,
                        sub: subscription,
                        data,
                        from,
                    },
                );
                Some((
                    Route::Member {
                        subscription,
                        client,
                        event,
                    },
                    record,
                ))
            }
        };
        Some(GivenBack::Kept { group: u.group, to })
    }

    /// Forgets every awaited event of held operation `op` (it timed out).
    pub fn forget_op(&mut self, op: u64) {
        self.awaited.retain(|_, &mut (_, o)| o != op);
    }

    /// Subscriptions, records queued in groups, awaited acknowledgements.
    pub fn counts(&self) -> Counts {
        Counts {
            subscriptions: self.subs.len() as u64,
            queued_records: self
                .groups
                .values()
                .map(|g| g.book.queued_len() as u64)
                .sum(),
            awaited_acks: self.awaited.len() as u64,
        }
    }
}

/// The sizes [`Subs::counts`] reports.
pub struct Counts {
    /// Subscriptions, consumer-group memberships included.
    pub subscriptions: u64,
    /// Records waiting in groups for a member with room.
    pub queued_records: u64,
    /// Events whose acknowledgement an operation awaits.
    pub awaited_acks: u64,
}

/// What [`Subs::give_back`] did with a record.
pub enum GivenBack {
    /// The group kept it: `to` names the member it went to (with the
    /// record), or `None` when it waits first in the group's queue.
    Kept {
        /// Its group.
        group: String,
        /// Where it went and the record, if a member took it now.
        to: Option<(Route, DataRef)>,
    },
    /// The group has no member and keeps no records: released.
    Released(DataRef),
}

/// What an acknowledgement concerned.
pub enum Acked {
    /// An awaited event of held operation `op`.
    Event {
        /// The operation.
        op: u64,
    },
    /// A consumer-group record, now done.
    Record {
        /// Its group.
        group: String,
        /// The record.
        data: DataRef,
        /// The node that forwarded it, if another did.
        from: Option<Forwarded>,
    },
    /// Nothing known (late, duplicate or foreign): ignored.
    Unknown,
}
