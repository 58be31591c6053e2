//! Pool events and subscriptions.
//!
//! A [`Subscription`] receives the events of the kinds in its
//! [`EventMask`] whose CDO matches its [`Selector`]. An *acknowledged*
//! subscription holds up the operation that raised the event until the
//! event is acknowledged ([`Event::ack`], or by dropping it) or the pool's
//! acknowledgement timeout passes (then the pool's fault policy says
//! whether the operation fails with `AckTimeout`); events are
//! raised after the operation took effect and before it returns, never
//! while the pool holds a lock. Dropping a subscription acknowledges its
//! queued events. Handles dropped without `dispose` raise no events. A
//! thread must not raise events that its own acknowledged subscription
//! selects unless another thread consumes that subscription.
//!
//! A subscriber that joins late may ask for a replay
//! ([`Pool::subscribe_replay`](crate::Pool::subscribe_replay)): its
//! subscription starts with an [`EventKind::Offer`] event for each CDO on
//! offer that its selector matches, in offer order, and goes on with the
//! live events; an offer that was in flight while it subscribed comes
//! once, not twice. Replayed events hold up no operation.

use crate::attrs::{AttrSource, AttrView, Attributes};
use crate::registry::Registry;
use crate::selector::Selector;
use mamba::{SpaceId, Tier};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// What happened to a CDO (or, for `Join` and `Leave`, to a pool member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// A handle was declared.
    Declare,
    /// A handle was sealed.
    Seal,
    /// Data was offered.
    Offer,
    /// A consumer required the CDO.
    Require,
    /// A consumer received the data.
    Demand,
    /// A consumer retracted its require.
    Retract,
    /// An offer was withdrawn.
    Withdraw,
    /// A handle was disposed.
    Dispose,
    /// An application joined: a client of a pool manager, or an in-process
    /// handle made with [`app::Pool::join_local`](crate::app::Pool::join_local)
    /// or [`app::Pool::from_env`](crate::app::Pool::from_env). The event's
    /// name is the component's.
    Join,
    /// An application left (for a pool manager's client, also when its
    /// connection ended; in process, when the handle that joined drops).
    Leave,
}

/// Which participant of a pool raised an event: the same participant
/// raises all its events with the same value, different participants with
/// different ones.
///
/// A participant is an application's handle on the pool: in process each
/// [`app::Pool`](crate::app::Pool) (numbered by the pool from 1 as they are
/// made), through a pool manager each client (the id the manager gave it
/// when it joined, [`Client::client_id`](crate::ipc::client::Client::client_id)).
/// [`Participant::NONE`] stands for no application: the events of handles
/// declared on a bare [`Pool`](crate::Pool), and, through a federated
/// manager, those raised on behalf of another node. Values are not
/// comparable across pools or managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Participant(u64);

impl Participant {
    /// No application (see the [type's docs](Participant)).
    pub const NONE: Participant = Participant(0);

    /// The participant numbered `id` by its pool or manager.
    pub(crate) const fn from_id(id: u64) -> Participant {
        Participant(id)
    }

    /// Its number in its pool or manager (0 for [`Participant::NONE`]).
    pub const fn id(self) -> u64 {
        self.0
    }
}

/// A set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventMask(u16);

impl EventMask {
    /// Every kind.
    pub const ALL: EventMask = EventMask(0x3ff);
    /// No kind.
    pub const NONE: EventMask = EventMask(0);

    /// The set as bits (bit `k` for the `k`-th [`EventKind`]), as the pool
    /// manager's protocol carries it.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set of `bits`; bits of no kind are ignored.
    pub const fn from_bits(bits: u16) -> EventMask {
        EventMask(bits & Self::ALL.0)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & EventMask::from(kind).0 != 0
    }
}

impl From<EventKind> for EventMask {
    fn from(k: EventKind) -> Self {
        EventMask(1 << k as u16)
    }
}

impl<T: Into<EventMask>> std::ops::BitOr<T> for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: T) -> EventMask {
        EventMask(self.0 | rhs.into().0)
    }
}

impl std::ops::BitOr for EventKind {
    type Output = EventMask;
    fn bitor(self, rhs: EventKind) -> EventMask {
        EventMask::from(self) | rhs
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts outstanding acknowledgements of one raised event.
#[derive(Default)]
struct AckLatch {
    pending: Mutex<usize>,
    cv: Condvar,
}

/// Acknowledges on drop.
struct AckGuard(Arc<AckLatch>);

impl Drop for AckGuard {
    fn drop(&mut self) {
        let mut p = lock(&self.0.pending);
        *p -= 1;
        if *p == 0 {
            self.0.cv.notify_all();
        }
    }
}

/// One event, as a subscriber receives it.
pub struct Event {
    /// Pool-wide sequence number.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The CDO.
    pub name: Arc<str>,
    /// Version of the offer concerned, if any.
    pub version: Option<u64>,
    /// Where the data is, if there is data.
    pub place: Option<(SpaceId, Tier)>,
    /// The attributes of the handle (consumer's for require and retract,
    /// the offer's for the others once offered).
    pub attributes: Arc<Attributes>,
    /// Who raised it: the participant whose handle it is (for a replayed
    /// offer, its producer's; for join and leave, the application's).
    pub origin: Participant,
    ack: Option<AckGuard>,
}

impl Event {
    /// The attributes as a selector sees them.
    pub fn view(&self) -> AttrView<'_> {
        AttrView {
            name: &self.name,
            version: self.version,
            place: self.place,
            attrs: &self.attributes,
        }
    }

    /// Whether the raising operation waits for this event's
    /// acknowledgement.
    pub fn needs_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Acknowledges the event (dropping it does the same).
    pub fn ack(self) {}
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .field("needs_ack", &self.needs_ack())
            .finish()
    }
}

/// Whether a subscription to the events of `kinds` whose CDO matches
/// `selector` receives an event of `kind` about `subject`: the one rule of
/// both deployments, for live events and for the offers replayed to a late
/// subscriber (those it would have received live).
pub(crate) fn selects<S: AttrSource + ?Sized>(
    kinds: EventMask,
    selector: &Selector,
    kind: EventKind,
    subject: &S,
) -> bool {
    kinds.contains(kind) && selector.matches(subject)
}

/// A replayed offer: its CDO and version.
type OfferKey = (Arc<str>, u64);

struct SubShared {
    selector: Selector,
    mask: EventMask,
    ack: bool,
    queue: Mutex<VecDeque<Event>>,
    cv: Condvar,
    /// For a replaying subscription, the offers replayed whose live offer
    /// event may still come (it was raised after the offer took effect):
    /// that event is skipped, so each offer comes once. A key goes when
    /// its offer event or its withdrawal passes.
    replayed: Option<Mutex<HashSet<OfferKey>>>,
}

impl SubShared {
    /// Whether the event of `kind` on `s` repeats a replayed offer (and so
    /// is not delivered); forgets replayed offers as they are withdrawn.
    fn repeats_replay(&self, kind: EventKind, s: &Subject<'_>) -> bool {
        let (Some(replayed), Some(version)) = (&self.replayed, s.version) else {
            return false;
        };
        match kind {
            EventKind::Offer | EventKind::Withdraw => {
                let removed = lock(replayed).remove(&(Arc::clone(s.name), version));
                removed && kind == EventKind::Offer
            }
            _ => false,
        }
    }
}

/// The event dispatcher of a pool.
#[derive(Default)]
pub(crate) struct Bus {
    subs: RwLock<Vec<Arc<SubShared>>>,
    count: AtomicUsize,
    seq: AtomicU64,
    /// The last [`Participant`] numbered.
    participants: AtomicU64,
}

/// What an event is about: the pieces [`Bus::emit`] copies into events.
pub(crate) struct Subject<'a> {
    pub name: &'a Arc<str>,
    pub version: Option<u64>,
    pub place: Option<(SpaceId, Tier)>,
    pub attrs: &'a Arc<Attributes>,
    pub origin: Participant,
}

impl Bus {
    /// A participant that no other of this pool's is.
    pub(crate) fn new_participant(&self) -> Participant {
        Participant(self.participants.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Whether anyone listens (the hot path skips building events).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// Delivers an event to the matching subscriptions and waits up to
    /// `timeout` for the acknowledged ones: false when some did not come.
    pub(crate) fn emit(&self, kind: EventKind, s: Subject<'_>, timeout: Duration) -> bool {
        if !self.active() {
            return true;
        }
        let view = AttrView {
            name: s.name,
            version: s.version,
            place: s.place,
            attrs: s.attrs,
        };
        let mut latch: Option<Arc<AckLatch>> = None;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let subs = self.subs.read().unwrap_or_else(|p| p.into_inner());
            for sub in subs.iter() {
                if sub.repeats_replay(kind, &s) {
                    continue;
                }
                if !selects(sub.mask, &sub.selector, kind, &view) {
                    continue;
                }
                let ack = sub.ack.then(|| {
                    let latch = latch.get_or_insert_with(Arc::default);
                    *lock(&latch.pending) += 1;
                    AckGuard(Arc::clone(latch))
                });
                lock(&sub.queue).push_back(Event {
                    seq,
                    kind,
                    name: Arc::clone(s.name),
                    version: s.version,
                    place: s.place,
                    attributes: Arc::clone(s.attrs),
                    origin: s.origin,
                    ack,
                });
                sub.cv.notify_all();
            }
        }
        let Some(latch) = latch else {
            return true;
        };
        let pending = lock(&latch.pending);
        let (pending, _) = latch
            .cv
            .wait_timeout_while(pending, timeout, |p| *p > 0)
            .unwrap_or_else(|p| p.into_inner());
        *pending == 0
    }

    /// A new subscription; with `replay`, it starts with an offer event
    /// for each offer in that registry that it selects, in offer order.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        selector: Selector,
        mask: EventMask,
        ack: bool,
        replay: Option<&Registry>,
    ) -> Subscription {
        // Held while the offers are read: no event is delivered meanwhile,
        // so none is missed; those of offers read here are skipped later.
        let mut subs = self.subs.write().unwrap_or_else(|p| p.into_inner());
        let mut queue = VecDeque::new();
        let mut replayed = None;
        if let Some(registry) = replay {
            // Counted before the offers are read: an offer that takes
            // effect after its entry was read here then sees a listener,
            // and its event comes live (the entry's lock orders the two).
            self.count.store(subs.len() + 1, Ordering::Relaxed);
            let mut offers = Vec::new();
            if mask.contains(EventKind::Offer) {
                registry.for_each_offer(|o| {
                    if selects(mask, &selector, EventKind::Offer, &o.view()) {
                        offers.push(Arc::clone(o));
                    }
                });
            }
            offers.sort_by_key(|o| o.order);
            let mut keys = HashSet::with_capacity(offers.len());
            for o in offers {
                keys.insert((Arc::clone(&o.name), o.version));
                queue.push_back(Event {
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                    kind: EventKind::Offer,
                    name: Arc::clone(&o.name),
                    version: Some(o.version),
                    place: o.data.place(),
                    attributes: Arc::clone(&o.attrs),
                    origin: o.origin,
                    ack: None,
                });
            }
            replayed = Some(Mutex::new(keys));
        }
        let shared = Arc::new(SubShared {
            selector,
            mask,
            ack,
            queue: Mutex::new(queue),
            cv: Condvar::new(),
            replayed,
        });
        subs.push(Arc::clone(&shared));
        self.count.store(subs.len(), Ordering::Relaxed);
        Subscription {
            shared,
            bus: Arc::clone(self),
        }
    }
}

/// A stream of pool events; see the [module docs](self).
pub struct Subscription {
    shared: Arc<SubShared>,
    bus: Arc<Bus>,
}

impl Subscription {
    /// The next event, if one is queued.
    pub fn poll(&self) -> Option<Event> {
        lock(&self.shared.queue).pop_front()
    }

    /// The next event, waiting up to `timeout` for one.
    pub fn wait(&self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now().checked_add(timeout);
        let mut q = lock(&self.shared.queue);
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            q = match deadline {
                None => self.shared.cv.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.shared
                        .cv
                        .wait_timeout(q, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.shared.selector
    }

    /// Whether events wait for acknowledgement.
    pub fn acknowledged(&self) -> bool {
        self.shared.ack
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("selector", &self.shared.selector)
            .field("mask", &self.shared.mask)
            .field("ack", &self.shared.ack)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut subs = self.bus.subs.write().unwrap_or_else(|p| p.into_inner());
            subs.retain(|s| !Arc::ptr_eq(s, &self.shared));
            self.bus.count.store(subs.len(), Ordering::Relaxed);
        }
        // Acknowledges everything still queued.
        let drained: Vec<Event> = lock(&self.shared.queue).drain(..).collect();
        drop(drained);
    }
}
