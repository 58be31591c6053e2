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

use std::collections::VecDeque;

use super::registry::{ClientId, OfferView};
use crate::events::{EventKind, EventMask};
use crate::ipc::fasthash::FastMap;
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

/// Which of a consumer group's `n` members gets its next record: the least
/// loaded (`load`: records given and not done) of those with room (fewer
/// than [`GROUP_WINDOW`]), ties in round-robin order from `cursor`;
/// member `skip` only when it is alone. `None`: every member is full.
/// The one rule of both deployments' consumer groups.
pub(crate) fn pick_member(
    n: usize,
    cursor: usize,
    load: impl Fn(usize) -> usize,
    skip: Option<usize>,
) -> Option<usize> {
    pick_weighted(n, cursor, |i| {
        (Some(i) != skip || n == 1).then(|| Share {
            load: load(i) as u64,
            weight: 1,
            served: 0,
        })
    })
}

/// How a member stands for [`pick_weighted`].
pub(crate) struct Share {
    /// Records given and not done.
    pub load: u64,
    /// How many members it stands for (1, or a proxy's count).
    pub weight: u64,
    /// Records given since the group's membership last changed.
    pub served: u64,
}

/// Which of `n` members gets the next record: of those `share` names (the
/// others are skipped) with room (a load under `weight` windows), the
/// least loaded per weight, then the least served per weight (weighted
/// round robin), then the first from `cursor`. `None`: every one is full.
pub(crate) fn pick_weighted(
    n: usize,
    cursor: usize,
    share: impl Fn(usize) -> Option<Share>,
) -> Option<usize> {
    (0..n)
        .map(|k| (cursor + k) % n)
        .filter_map(|i| share(i).map(|s| (i, s)))
        .filter(|(_, s)| s.load < s.weight * u64::from(GROUP_WINDOW))
        .min_by(|(_, a), (_, b)| {
            (a.load * b.weight)
                .cmp(&(b.load * a.weight))
                .then((a.served * b.weight).cmp(&(b.served * a.weight)))
        })
        .map(|(i, _)| i)
}

struct Sub {
    client: ClientId,
    selector: Selector,
    mask: EventMask,
    ack: bool,
    group: Option<String>,
}

struct Group {
    selector: Selector,
    /// Members, in join order.
    members: Vec<Member>,
    /// Where the next tie-break starts (round robin among equals).
    cursor: usize,
    /// Records no member could take yet.
    queued: VecDeque<(DataRef, Option<Forwarded>)>,
}

impl Group {
    /// The member that gets the next record (`forwarded` from another
    /// node: a local one), by [`pick_weighted`]; `None`: all are full.
    fn pick(&self, forwarded: bool) -> Option<usize> {
        let members = &self.members;
        pick_weighted(members.len(), self.cursor, |i| {
            let m = &members[i];
            (!(forwarded && m.proxy)).then(|| Share {
                load: m.load.into(),
                weight: m.weight.into(),
                served: m.served,
            })
        })
    }

    /// A change of members or weights: weighted round robin starts anew.
    fn reset_served(&mut self) {
        for m in &mut self.members {
            m.served = 0;
        }
    }
}

/// One member of a consumer group.
struct Member {
    sub: u64,
    /// Records given and not done.
    load: u32,
    /// Members it stands for: 1, or a proxy's count.
    weight: u32,
    /// Records given since the membership last changed.
    served: u64,
    /// Whether it stands for another node's members.
    proxy: bool,
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
            let g = self.groups.entry(name.clone()).or_insert_with(|| Group {
                selector: selector.clone(),
                members: Vec::new(),
                cursor: 0,
                queued: VecDeque::new(),
            });
            g.members.push(Member {
                sub: id,
                load: 0,
                weight: 1,
                served: 0,
                proxy: false,
            });
            g.reset_served();
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
        let id = self.subscribe(
            client,
            SubscribeRef {
                selector: selector.into(),
                kinds: 0,
                ack: false,
                group: Some(group.into()),
            },
        )?;
        if let Some(m) = self.member_mut(id) {
            m.proxy = true;
            m.weight = weight.clamp(1, MAX_PROXY_WEIGHT);
        }
        Ok(id)
    }

    /// Sets the weight of proxy member `sub` (another node's new member
    /// count).
    pub fn set_weight(&mut self, sub: u64, weight: u32) {
        if let Some(m) = self.member_mut(sub) {
            m.weight = weight.clamp(1, MAX_PROXY_WEIGHT);
        }
        if let Some(g) = self.group_of(sub).and_then(|g| self.groups.get_mut(&g)) {
            g.reset_served();
        }
    }

    fn group_of(&self, sub: u64) -> Option<String> {
        self.subs.get(&sub)?.group.clone()
    }

    fn member_mut(&mut self, sub: u64) -> Option<&mut Member> {
        let group = self.group_of(sub)?;
        let g = self.groups.get_mut(&group)?;
        g.members.iter_mut().find(|m| m.sub == sub)
    }

    /// The selector of `group` and how many of its members are local
    /// (not proxies); `None` when there is no such group.
    pub fn local_members(&self, group: &str) -> Option<(&str, u32)> {
        let g = self.groups.get(group)?;
        let n = g.members.iter().filter(|m| !m.proxy).count();
        Some((g.selector.as_str(), n as u32))
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
        let mut back: Vec<(u64, DataRef, Option<Forwarded>)> = Vec::new();
        self.undone.retain(|&event, u| {
            if u.sub == id {
                back.push((event, u.data.clone(), u.from.clone()));
            }
            u.sub != id
        });
        back.sort_by_key(|(event, _, _)| *event);
        let g = self.groups.get_mut(&group).expect("members have a group");
        g.members.retain(|m| m.sub != id);
        g.reset_served();
        for (_, data, from) in back.into_iter().rev() {
            g.queued.push_front((data, from));
        }
        let mut released = Vec::new();
        if g.members.is_empty() && !self.keep_orphans {
            released = g.queued.drain(..).map(|(data, _)| data).collect();
        } else if g.members.iter().all(|m| m.proxy) {
            // Forwarded records are for local members only.
            g.queued.retain(|(data, from)| {
                if from.is_some() {
                    released.push(data.clone());
                }
                from.is_none()
            });
        }
        if g.members.is_empty() && g.queued.is_empty() {
            self.groups.remove(&group);
        }
        Unsubscribed {
            ops,
            group: Some(group),
            released,
        }
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
            .filter(|(_, s)| s.group.is_none() && s.mask.contains(kind))
            .filter(|(_, s)| s.selector.matches(&view))
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

    /// The selector of plain subscription `sub` when it takes offer
    /// events (what a replay sends); `None` otherwise.
    pub fn replay_selector(&self, sub: u64) -> Option<&Selector> {
        self.subs
            .get(&sub)
            .filter(|s| s.group.is_none() && s.mask.contains(EventKind::Offer))
            .map(|s| &s.selector)
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
            .filter(|(_, g)| !g.members.is_empty() && g.selector.matches(&view))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Gives `data` to a member of `group` with room (a local one when it
    /// was forwarded `from` another node), or queues it.
    pub fn route(&mut self, group: &str, data: DataRef, from: Option<Forwarded>) -> Route {
        let Some(g) = self.groups.get_mut(group) else {
            return Route::Queued;
        };
        let n = g.members.len();
        let Some(i) = g.pick(from.is_some()) else {
            g.queued.push_back((data, from));
            return Route::Queued;
        };
        g.cursor = (i + 1) % n;
        let m = &mut g.members[i];
        m.load += 1;
        m.served += 1;
        let subscription = m.sub;
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
        let g = self.groups.get_mut(group)?;
        let forwarded = g.queued.front()?.1.is_some();
        if g.pick(forwarded).is_some() {
            g.queued.pop_front()
        } else {
            None
        }
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
                    if let Some(m) = g.members.iter_mut().find(|m| m.sub == u.sub) {
                        m.load -= 1;
                    }
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

    /// Forgets every awaited event of held operation `op` (it timed out).
    pub fn forget_op(&mut self, op: u64) {
        self.awaited.retain(|_, &mut (_, o)| o != op);
    }

    /// Subscriptions, records queued in groups, awaited acknowledgements.
    pub fn counts(&self) -> Counts {
        Counts {
            subscriptions: self.subs.len() as u64,
            queued_records: self.groups.values().map(|g| g.queued.len() as u64).sum(),
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
