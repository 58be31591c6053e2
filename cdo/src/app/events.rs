//! Events and consumer groups in either deployment: [`Subscription`] and
//! [`Event`]; [`Member`] and [`Record`].

use super::remote::Remote;
use crate::attrs::{Attributes, FlatAttributes};
use crate::data::Data;
use crate::error::{Error, Result};
use crate::events::{EventKind, Participant};
use crate::ipc::client::{GroupRecord, Notice};
use std::time::{Duration, Instant};

/// A stream of pool events ([`Pool::subscribe`](super::Pool::subscribe));
/// dropping it ends the subscription.
pub struct Subscription<'p>(SubInner<'p>);

enum SubInner<'p> {
    Local(crate::Subscription),
    Remote(&'p Remote, u64),
}

impl std::fmt::Debug for Subscription<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            SubInner::Local(s) => s.fmt(f),
            SubInner::Remote(_, sub) => f.debug_tuple("Subscription").field(sub).finish(),
        }
    }
}

impl<'p> Subscription<'p> {
    pub(super) fn local(sub: crate::Subscription) -> Self {
        Subscription(SubInner::Local(sub))
    }

    pub(super) fn remote(remote: &'p Remote, sub: u64) -> Self {
        Subscription(SubInner::Remote(remote, sub))
    }

    /// The next event, waiting up to `timeout`; `None` when none came.
    ///
    /// # Errors
    /// [`Error::PoolManager`] when the connection to the manager fails.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Event<'p>>> {
        match &self.0 {
            SubInner::Local(s) => Ok(s.wait(timeout).map(Event::local)),
            SubInner::Remote(remote, sub) => {
                let deadline = Instant::now().checked_add(timeout);
                loop {
                    match remote.next_notice(*sub, deadline)? {
                        None => return Ok(None),
                        Some(Notice::Event(e)) => return Ok(Some(Event::remote(e, remote))),
                        // A subscription gets no records; dropping one
                        // hands it back.
                        Some(Notice::Record(_)) => {}
                    }
                }
            }
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let SubInner::Remote(remote, sub) = &self.0 {
            remote.close(*sub);
        }
    }
}

/// One event, as a subscriber receives it; dropping it acknowledges it.
pub struct Event<'p> {
    id: u64,
    kind: EventKind,
    origin: Participant,
    name: String,
    attributes: FlatAttributes,
    ack: Ack<'p>,
}

/// How an event is acknowledged.
enum Ack<'p> {
    /// The in-process event, which acknowledges when dropped.
    Local(crate::Event),
    /// The manager's event id, when it waits for an acknowledgement.
    Remote(&'p Remote, Option<u64>),
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("kind", &self.kind)
            .field("origin", &self.origin)
            .field("name", &self.name)
            .field("needs_ack", &self.needs_ack())
            .finish()
    }
}

impl<'p> Event<'p> {
    fn local(event: crate::Event) -> Self {
        Event {
            id: event.seq,
            kind: event.kind,
            origin: event.origin,
            name: event.name.to_string(),
            attributes: event.attributes.flatten(),
            ack: Ack::Local(event),
        }
    }

    fn remote(event: crate::ipc::wire::EventRef, remote: &'p Remote) -> Self {
        Event {
            id: event.event,
            kind: event.kind,
            origin: Participant::from_id(event.client),
            name: event.name,
            attributes: event.attrs,
            ack: Ack::Remote(remote, event.needs_ack.then_some(event.event)),
        }
    }

    /// The event's number: the pool's sequence number in process, the
    /// manager's event id through a manager.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What happened.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The participant that raised it: the application whose handle the
    /// event is about (the consumer for require, demand and retract, the
    /// producer for offer and withdraw; for join and leave, the application
    /// joining or leaving), as its [`Pool::participant`](super::Pool::participant)
    /// says. The same application gives all its events the same origin,
    /// in both deployments; [`Participant::NONE`] for none (a handle on a
    /// bare in-process [`crate::Pool`], another node of a federation).
    pub fn origin(&self) -> Participant {
        self.origin
    }

    /// The object (for join and leave, the component).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's attributes (the consumer's for require and retract).
    pub fn attributes(&self) -> &FlatAttributes {
        &self.attributes
    }

    /// Whether the raising operation waits for this event's
    /// acknowledgement.
    pub fn needs_ack(&self) -> bool {
        match &self.ack {
            Ack::Local(e) => e.needs_ack(),
            Ack::Remote(_, id) => id.is_some(),
        }
    }

    /// Acknowledges the event (dropping it does the same).
    pub fn ack(self) {}
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        if let Ack::Remote(remote, Some(id)) = &self.ack {
            // A dead connection holds no operation any more.
            let _ = remote.call(|c| c.ack(*id));
        }
    }
}

/// A member of a consumer group ([`Pool::join_group`](super::Pool::join_group));
/// dropping it leaves the group, whose other members get the records it
/// held.
pub struct Member<'p>(MemberInner<'p>);

enum MemberInner<'p> {
    Local(crate::Member<'p>),
    Remote(&'p Remote, u64),
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            MemberInner::Local(m) => m.fmt(f),
            MemberInner::Remote(_, sub) => f.debug_tuple("Member").field(sub).finish(),
        }
    }
}

impl<'p> Member<'p> {
    pub(super) fn local(member: crate::Member<'p>) -> Self {
        Member(MemberInner::Local(member))
    }

    pub(super) fn remote(remote: &'p Remote, sub: u64) -> Self {
        Member(MemberInner::Remote(remote, sub))
    }

    /// The next record for this member, waiting up to `timeout`; `None`
    /// when none came.
    ///
    /// # Errors
    /// [`Error::PoolManager`] when the connection to the manager fails.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Record<'p>>> {
        match &self.0 {
            MemberInner::Local(m) => Ok(m.next_timeout(timeout).map(|r| {
                let data = r.data();
                let attributes = r.attributes().map(Attributes::flatten).unwrap_or_default();
                Record(RecordInner::Local(r, data, attributes))
            })),
            MemberInner::Remote(remote, sub) => {
                let deadline = Instant::now().checked_add(timeout);
                loop {
                    match remote.next_notice(*sub, deadline)? {
                        None => return Ok(None),
                        Some(Notice::Record(r)) => {
                            return Ok(Some(Record(RecordInner::Remote(r, remote))))
                        }
                        // A group membership gets no events.
                        Some(Notice::Event(_)) => {}
                    }
                }
            }
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if let MemberInner::Remote(remote, sub) = &self.0 {
            remote.close(*sub);
        }
    }
}

/// One offer given to one member of a consumer group; finish it with
/// [`Record::done`]. Dropped without it, the record goes back to its
/// group at once, to another member (to this one when it is alone), in
/// both deployments.
pub struct Record<'p>(RecordInner<'p>);

enum RecordInner<'p> {
    /// The record, its data and its offer's attributes, flat.
    Local(crate::Record, Data, FlatAttributes),
    Remote(GroupRecord, &'p Remote),
    /// Done or given back: only while [`Record::done`] or the drop runs.
    Finished,
}

/// The attributes of a finished record (never seen: finishing consumes it).
static NO_ATTRIBUTES: FlatAttributes = FlatAttributes::new();

impl Drop for Record<'_> {
    fn drop(&mut self) {
        // In process the record's own drop gives it back.
        if let RecordInner::Remote(r, remote) =
            std::mem::replace(&mut self.0, RecordInner::Finished)
        {
            // A dead connection has no group left to give it to.
            let _ = remote.call(|c| c.give_back(r));
        }
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Record").field(&self.name()).finish()
    }
}

impl<'p> Record<'p> {
    /// The object's name.
    pub fn name(&self) -> &str {
        match &self.0 {
            RecordInner::Local(r, ..) => r.name(),
            RecordInner::Remote(r, _) => r.view.name(),
            RecordInner::Finished => "",
        }
    }

    /// The object's bytes.
    ///
    /// # Errors
    /// [`Error::Memory`] for in-process data the CPU cannot address.
    pub fn bytes(&self) -> Result<&[u8]> {
        match &self.0 {
            RecordInner::Local(_, data, _) => data.as_slice(),
            RecordInner::Remote(r, _) => Ok(&r.view),
            RecordInner::Finished => Ok(&[]),
        }
    }

    /// The attributes of the offer, flat and with the size (in process
    /// every built-in, through a manager those the producer set).
    pub fn attributes(&self) -> &FlatAttributes {
        match &self.0 {
            RecordInner::Local(_, _, attributes) => attributes,
            RecordInner::Remote(r, _) => r.view.attrs(),
            RecordInner::Finished => &NO_ATTRIBUTES,
        }
    }

    /// Marks the record processed.
    ///
    /// # Errors
    /// [`Error::PoolManager`] when the manager cannot be told.
    pub fn done(mut self) -> Result<()> {
        match std::mem::replace(&mut self.0, RecordInner::Finished) {
            RecordInner::Local(r, ..) => {
                r.complete();
                Ok(())
            }
            RecordInner::Remote(r, remote) => {
                remote.call(|c| c.done(r)).map_err(Error::PoolManager)
            }
            RecordInner::Finished => Ok(()),
        }
    }
}
