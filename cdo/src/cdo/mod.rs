//! [`Cdo`]: a handle on a named object, as producer or consumer.
//!
//! The handle's calls are split by role: `attributes` (setting them),
//! `produce` (data, seal, offer, withdraw), `consume` (require, demand,
//! retract), `withdrawal` (withdraw as a future); this module holds the
//! handle itself and its end.

mod attributes;
mod consume;
mod produce;
mod withdrawal;

pub use withdrawal::Withdrawal;

use crate::attrs::{check_attached, Attributes};
use crate::data::{Buffer, Data};
use crate::engine::FaultPolicy;
use crate::error::{Error, Result};
use crate::events::{EventKind, Participant, Subject};
use crate::lifecycle::{Op, State};
use crate::pool::Shared;
use crate::registry::{Entry, Offer, Slot};
use crate::stats::Counter;
use mamba::{SpaceId, Tier};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Attributes with none set but `size`.
const fn only_size(size: Option<u64>) -> Attributes {
    Attributes {
        size,
        element_type: None,
        layout: None,
        block_start: Vec::new(),
        fields: Vec::new(),
        records: crate::attrs::Records::Together,
        lifetime: std::time::Duration::ZERO,
        priority: crate::attrs::Priority::Normal,
        persist: false,
        wanted_place: None,
        wanted_order: None,
        wanted_records: None,
        wanted_strides: Vec::new(),
        wanted_tile: Vec::new(),
        members: Vec::new(),
        user: std::collections::BTreeMap::new(),
    }
}

/// The attributes of a handle that set none.
static NO_ATTRIBUTES: Attributes = only_size(None);

/// What a token (an object offered with no attributes set, so of size 0)
/// reports as its attributes once offered.
static TOKEN_ATTRIBUTES: Attributes = only_size(Some(0));

thread_local! {
    /// This thread's shared attributes of the tokens it offers: a name's
    /// spare offer record keeps them, so offering a token again touches no
    /// reference count, and threads share no counter.
    pub(super) static TOKEN: Arc<Attributes> = Arc::new(TOKEN_ATTRIBUTES.clone());
}

/// A consumer's match with an offer.
enum Pin {
    /// Matched with this offer, which it pins.
    Matched(Arc<Offer>),
    /// Waiting for the next offer of the name.
    Waiting(Arc<Slot>),
}

/// A handle on the CDO of one name, owned by one thread at a time; see
/// [`lifecycle`](crate::lifecycle) for the allowed order of calls. Every
/// call in another order fails with [`Error::InvalidState`] and changes
/// nothing.
///
/// Dropping a handle without [`Cdo::dispose`] cleans up without raising
/// events: a require is retracted, and an offer is withdrawn as by a
/// withdrawal nobody waits for (as through a pool manager). One that
/// nothing holds goes at once; one that a consumer matched with it still
/// waits for, or whose minimum lifetime still runs, stays on offer,
/// served, and the pool withdraws it, raising its withdraw event, once
/// neither holds it. When the application that made the handle goes
/// ([`crate::app::Pool`] dropped), such offers go with it, but for those
/// whose lifetime still runs under
/// [`ProducerExit::Keep`](crate::engine::ProducerExit::Keep).
pub struct Cdo<'p> {
    pool: &'p Shared,
    entry: Arc<Entry>,
    state: State,
    /// `None` until the first attribute is set (most handles set none):
    /// declaring then touches no shared reference count.
    attrs: Option<Arc<Attributes>>,
    /// The producer's data before the offer.
    buffer: Option<Data>,
    /// The data was made by [`Cdo::write`], the pool's own: its withdrawn
    /// offer may keep it for the name's next write. Data the application
    /// attached stays the application's alone.
    written: bool,
    /// The producer's offer while it is offered.
    offer: Option<Arc<Offer>>,
    /// The version of the offer this producer withdrew (the offer record
    /// itself went back to the name's entry).
    withdrawn: Option<u64>,
    pin: Option<Pin>,
    received: Option<Received>,
    /// The participant its events come from.
    origin: Participant,
}

/// What a consumer keeps of the offer it received: not the offer itself,
/// so that the producer's withdrawal can reuse the offer's allocation.
struct Received {
    version: u64,
    attrs: Arc<Attributes>,
    data: Data,
}

impl std::fmt::Debug for Cdo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdo")
            .field("name", &self.entry.name)
            .field("state", &self.state)
            .finish()
    }
}

impl<'p> Cdo<'p> {
    pub(crate) fn new(
        pool: &'p Shared,
        entry: Arc<Entry>,
        attrs: Option<&Arc<Attributes>>,
        origin: Participant,
    ) -> Self {
        Cdo {
            origin,
            pool,
            entry,
            state: State::Declared,
            attrs: attrs.cloned(),
            buffer: None,
            written: false,
            offer: None,
            withdrawn: None,
            pin: None,
            received: None,
        }
    }

    /// The name.
    pub fn name(&self) -> &Arc<str> {
        &self.entry.name
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// This handle's attributes.
    pub fn attributes(&self) -> &Attributes {
        match &self.attrs {
            Some(a) => a,
            None if self.offered_token() => &TOKEN_ATTRIBUTES,
            None => &NO_ATTRIBUTES,
        }
    }

    /// Whether this handle offered a token without setting attributes: it
    /// reports [`TOKEN_ATTRIBUTES`] without holding them.
    fn offered_token(&self) -> bool {
        self.attrs.is_none() && (self.offer.is_some() || self.withdrawn.is_some())
    }

    /// Calls `f` with this handle's attributes as shared ones (for an
    /// event, a handle declared again): those it set, this thread's token
    /// attributes once it offered a token, `None` when it has none.
    fn with_own_attributes<R>(&self, f: impl FnOnce(Option<&Arc<Attributes>>) -> R) -> R {
        match &self.attrs {
            None if self.offered_token() => TOKEN.with(|token| f(Some(token))),
            own => f(own.as_ref()),
        }
    }

    /// This handle's attributes, writable (copied first when shared).
    fn attributes_mut(&mut self) -> &mut Attributes {
        Arc::make_mut(self.attrs.get_or_insert_with(Arc::default))
    }

    /// The attributes of the offer this handle made (producer) or received
    /// (consumer, after a demand).
    pub fn offered_attributes(&self) -> Option<&Attributes> {
        match (&self.offer, &self.received) {
            (Some(o), _) => Some(&o.attrs),
            (None, Some(r)) => Some(&r.attrs),
            // A producer's attributes are those of its offer: they are
            // frozen from the seal on.
            (None, None) => self.withdrawn.map(|_| self.attributes()),
        }
    }

    /// The version of the offer made or received.
    pub fn version(&self) -> Option<u64> {
        match (&self.offer, &self.received) {
            (Some(o), _) => Some(o.version),
            (None, Some(r)) => Some(r.version),
            (None, None) => self.withdrawn,
        }
    }

    /// The data received by the demand.
    pub fn data(&self) -> Option<&Data> {
        self.received.as_ref().map(|r| &r.data)
    }

    /// The producer's data before the offer, writable (`None` when data
    /// attached with [`Cdo::attach_data`] is shared elsewhere).
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        self.buffer.as_mut().and_then(Data::get_mut)
    }

    /// Declares another handle on this name that starts with the
    /// attributes set on this one so far, shared (copied only when the new
    /// handle changes them): the hot path of a loop that hands the same
    /// name over with the same attributes every time, as an application
    /// that stages a block per solver call does. Neither the name nor the
    /// attributes are looked up, checked or allocated again; the handle
    /// starts `Declared` whatever this one's state, and raises its events
    /// as this one's participant.
    pub fn declare_again(&self) -> Cdo<'p> {
        self.with_own_attributes(|attrs| {
            self.pool
                .declare_with(self.pool.registry.retain(&self.entry), attrs, self.origin)
        })
    }

    fn check(&self, op: Op) -> Result<State> {
        self.state.after(op).ok_or_else(|| Error::InvalidState {
            name: Arc::clone(&self.entry.name),
            op,
            state: self.state,
        })
    }

    /// Raises the event `kind` of this CDO, about `offer` when given;
    /// [`Error::AckTimeout`] when its acknowledged subscribers do not
    /// answer in time under the fail-fast policy (the operation has taken
    /// effect all the same).
    #[inline]
    fn emit(&self, kind: EventKind, offer: Option<&Offer>) -> Result<()> {
        match offer {
            Some(o) => self.emit_about(kind, Some(o.version), o.data.place(), Some(&o.attrs)),
            None => self.emit_about(kind, None, None, None),
        }
    }

    /// [`Cdo::emit`] from what the event says: the version and place of
    /// the offer, and its attributes (the handle's when `None`). A pool
    /// without subscribers pays one load here.
    #[inline]
    fn emit_about(
        &self,
        kind: EventKind,
        version: Option<u64>,
        place: Option<(SpaceId, Tier)>,
        attrs: Option<&Arc<Attributes>>,
    ) -> Result<()> {
        if !self.pool.bus.active() {
            return Ok(());
        }
        self.emit_to_subscribers(kind, version, place, attrs)
    }

    /// [`Cdo::emit_about`] once the pool has subscribers.
    #[cold]
    #[inline(never)]
    fn emit_to_subscribers(
        &self,
        kind: EventKind,
        version: Option<u64>,
        place: Option<(SpaceId, Tier)>,
        attrs: Option<&Arc<Attributes>>,
    ) -> Result<()> {
        let waited = self.pool.config.ack_timeout;
        if self.tell(kind, version, place, attrs, waited) {
            return Ok(());
        }
        let policy = self.pool.config.policy;
        warn!(name = %self.entry.name, ?kind, ?waited, ?policy, "acknowledgements missing");
        match policy {
            FaultPolicy::BestEffort => Ok(()),
            FaultPolicy::FailFast => Err(Error::AckTimeout {
                name: Arc::clone(&self.entry.name),
                kind,
                waited,
            }),
        }
    }

    /// Delivers the event `kind` of this CDO (see [`Cdo::emit_about`]) to
    /// a pool with subscribers and waits up to `waited` for its
    /// acknowledgements: false when some did not come.
    fn tell(
        &self,
        kind: EventKind,
        version: Option<u64>,
        place: Option<(SpaceId, Tier)>,
        attrs: Option<&Arc<Attributes>>,
        waited: Duration,
    ) -> bool {
        self.with_own_attributes(|own| {
            let none: Arc<Attributes>;
            let subject = Subject {
                name: &self.entry.name,
                version,
                place,
                attrs: match attrs.or(own) {
                    Some(a) => a,
                    None => {
                        // Events are raised only with subscribers: this
                        // allocation is not on the path of a pool without.
                        none = Arc::default();
                        &none
                    }
                },
                origin: self.origin,
            };
            self.pool.bus.emit(kind, subject, waited)
        })
    }

    /// Raises the declaration event. A declaration always yields its
    /// handle: a missing acknowledgement is only logged, by `emit`.
    pub(crate) fn emit_declare(&self) {
        let _ = self.emit(EventKind::Declare, None);
    }

    fn modify(&mut self, f: impl FnOnce(&Attributes) -> Result<Attributes>) -> Result<()> {
        self.check(Op::SetAttribute)?;
        let new = f(self.attributes())?;
        self.replace_attributes(new)
    }

    /// Takes `new` as the attributes, unless its size disagrees with the
    /// data attached.
    fn replace_attributes(&mut self, new: Attributes) -> Result<()> {
        let attached = self.buffer.as_ref().map(Data::len);
        check_attached(new.size, attached).map_err(|reason| self.inconsistent(reason))?;
        self.attrs = Some(Arc::new(new));
        Ok(())
    }

    fn inconsistent(&self, reason: String) -> Error {
        Error::Inconsistent {
            name: Arc::clone(&self.entry.name),
            reason,
        }
    }

    /// Gives up the offer of a handle that goes, as a withdrawal that
    /// nobody waits for: off the name's offers at once, and returned; or
    /// left to the pool's keeper (with a handle on the name that the
    /// keeper gives back), and `None`, while a consumer matched with it
    /// still waits for it or its minimum lifetime runs, as either holds a
    /// withdrawal. The keeper withdraws it once neither holds it, or when
    /// its application goes ([`crate::Pool::producer_gone`]).
    fn give_up_offer(&mut self) -> Option<Arc<Offer>> {
        let offer = self.offer.take()?;
        if offer.pinned() || !offer.expired() {
            self.pool
                .keeper
                .keep(&self.entry, offer, &self.pool.parts());
            return None;
        }
        // Not on offer when the pool completed a withdrawal that timed out.
        self.entry.lock().take_live(&offer).then_some(offer)
    }

    /// Gives up the offer of a handle of [`app`](crate::app) that goes, as
    /// through a manager: the pool's subscribers hear its withdraw event
    /// (nothing waits for its acknowledgement), now or, when the offer is
    /// kept, when the pool withdraws it.
    pub(crate) fn withdraw_dropped(&mut self) {
        if self.state != State::Offered {
            return;
        }
        self.state = State::Withdrawn;
        let Some(offer) = self.give_up_offer() else {
            return;
        };
        self.withdrawn = Some(offer.version);
        if self.pool.bus.active() {
            let (version, place) = (Some(offer.version), offer.data.place());
            self.tell(
                EventKind::Withdraw,
                version,
                place,
                Some(&offer.attrs),
                Duration::ZERO,
            );
        }
    }

    /// Ends the handle. Data already received stays valid.
    ///
    /// # Errors
    /// [`Error::InvalidState`] while offered or required.
    pub fn dispose(&mut self) -> Result<()> {
        let next = self.check(Op::Dispose)?;
        self.state = next;
        self.buffer = None;
        self.withdrawn = None;
        self.pool.counters.bump(Counter::Disposed);
        let raised = self.emit(EventKind::Dispose, None);
        self.pool.registry.release(&self.entry);
        raised
    }
}

impl Drop for Cdo<'_> {
    fn drop(&mut self) {
        match self.state {
            State::Disposed => return,
            State::Offered => drop(self.give_up_offer()),
            State::Required => self.unmatch(),
            _ => {}
        }
        self.pool.registry.release(&self.entry);
    }
}
