//! The pool manager as a host of the [`Engine`]: it owns the clients'
//! outboxes and the segments' descriptors, turns frames into operations and
//! the engine's effects into frames.
//!
//! Every call runs under the manager's one lock and only queues outgoing
//! frames in an [`Outgoing`] list; the connection threads send them after
//! unlocking.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::copies::{Copies, DIRECT_REQUEST, DIRECT_SEGMENT};
use super::outbox::Meters;
use super::ManagerConfig;
use crate::engine::registry::{ClientId, Registry};
use crate::engine::{Effect, Engine, EngineConfig, Forwarded, GroupNote, SegmentCheck, SegmentKey};
use crate::events::{EventKind, EventMask};
use crate::ipc::fasthash::FastMap;
use crate::ipc::interest::{InterestPage, LIFECYCLE_KINDS};
use crate::ipc::limits::fit_names;
use crate::ipc::pool::Slot;
use crate::ipc::shm::{check_seals, file_size, Segment};
use crate::ipc::wire::{
    Attributes, ConsumerRef, ErrorCode, EventRef, Frame, Msg, SegmentRef, Stats,
};
use crate::schema::Schema;

use super::MirrorEvent;

/// A client's sending side, shared by every thread that sends to it.
pub type Outbox = Arc<super::outbox::Outbox>;

/// Frames to send once the state lock is released.
pub type Outgoing = Vec<(Outbox, Frame, Option<Arc<OwnedFd>>)>;

/// The engine and what it names by id: outboxes and descriptors.
pub struct Host {
    engine: Engine,
    outboxes: FastMap<ClientId, Outbox>,
    segments: FastMap<SegmentKey, Arc<OwnedFd>>,
    /// The engine's effects, reused from call to call.
    effects: Vec<Effect>,
    max_segment_bytes: u64,
    started: Instant,
    meters: Arc<Meters>,
    /// Told the name of every demand that finds nothing on offer.
    unmet: Option<UnmetHook>,
    /// Told the name of every require of a name not on offer.
    unmet_require: Option<UnmetHook>,
    /// Told of consumer-group changes for other nodes.
    group_hook: Option<GroupHook>,
    /// The federation's client ([`Host::set_mirror`]).
    mirror: Option<ClientId>,
    /// Takes the mirror's events in place of its connection, offers with
    /// the bytes of objects up to its size.
    mirror_events: Option<(u64, MirrorHook)>,
    /// The copies the mirror offers through [`Host::offer_copy`].
    copies: Copies,
    /// The last event or record queued on the mirror's connection.
    mirror_sent: u64,
    /// Told when the lifecycle kinds this node's own subscribers take
    /// change, and what they are now.
    local_interest: (EventMask, Option<InterestHook>),
    /// Where the subscribers' interest in lifecycle events is published.
    interest: InterestPage,
    /// Its descriptor, sent to clients that agree to
    /// [`Capabilities::LIFECYCLE`](crate::ipc::handshake::Capabilities::LIFECYCLE).
    interest_fd: Arc<OwnedFd>,
}

/// What a manager calls with the demanding client and the name of a
/// demand that finds nothing on offer (under the state lock: it must not
/// block).
pub type UnmetHook = Box<dyn Fn(ClientId, &str) + Send>;

/// What a manager calls with every [`GroupNote`] of its engine (under the
/// state lock: it must not block).
pub type GroupHook = Box<dyn Fn(GroupNote) + Send>;

/// What a manager calls with every event for its mirror (under the state
/// lock: it must not block).
pub type MirrorHook = Box<dyn Fn(MirrorEvent) + Send>;

/// What a manager calls with the lifecycle kinds its own subscribers take
/// (all but the mirror's) when they change (under the state lock: it must
/// not block).
pub type InterestHook = Box<dyn Fn(EventMask) + Send>;

impl Host {
    /// An engine over `registry` with `config`'s policies, checking user
    /// attributes against `schema`.
    ///
    /// # Errors
    /// When the interest page cannot be made (see [`InterestPage::create`]).
    pub fn new(
        registry: Box<dyn Registry>,
        config: &ManagerConfig,
        schema: Arc<Schema>,
        meters: Arc<Meters>,
    ) -> std::io::Result<Self> {
        let engine = EngineConfig {
            policy: config.pool.policy,
            ack_timeout: config.pool.ack_timeout,
            schema,
            unknown_attributes: config.pool.unknown_attributes,
            limits: config.limits,
            keep_group_records: config.pool.keep_group_records,
            producer_exit: config.pool.producer_exit,
        };
        let (interest, interest_fd) = InterestPage::create()?;
        Ok(Host {
            engine: Engine::new(registry, engine),
            outboxes: FastMap::default(),
            segments: FastMap::default(),
            effects: Vec::new(),
            max_segment_bytes: config.max_segment_bytes,
            started: Instant::now(),
            meters,
            unmet: None,
            unmet_require: None,
            group_hook: None,
            mirror: None,
            mirror_events: None,
            copies: Copies::default(),
            mirror_sent: 0,
            local_interest: (EventMask::NONE, None),
            interest,
            interest_fd: Arc::new(interest_fd),
        })
    }

    /// The descriptor of the interest page, for a joining client.
    pub fn interest_page(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.interest_fd)
    }

    /// Registers a joined client sending through `outbox`; queues its join
    /// event in `out`.
    pub fn join(&mut self, component: String, outbox: Outbox, out: &mut Outgoing) -> ClientId {
        let cid = self.engine.join(component, &mut self.effects);
        self.outboxes.insert(cid, outbox);
        self.carry_out(None, out);
        cid
    }

    /// Makes the requires of client `cid` hold its own withdrawals
    /// ([`Engine::hold_own_requires`]).
    pub fn hold_own_requires(&mut self, cid: ClientId) {
        self.engine.hold_own_requires(cid);
    }

    /// Handles one request of client `cid` (with the descriptor that came
    /// with it) at time `now` and queues the replies.
    pub fn handle(
        &mut self,
        cid: ClientId,
        frame: Frame,
        fd: Option<OwnedFd>,
        now: Instant,
        out: &mut Outgoing,
    ) {
        let Frame { id, msg } = frame;
        if matches!(msg, Msg::Stat) && fd.is_none() && self.engine.has_client(cid) {
            if let Some(outbox) = self.outboxes.get(&cid) {
                out.push((
                    outbox.clone(),
                    Frame {
                        id,
                        msg: Msg::Stats(Box::new(self.stats())),
                    },
                    None,
                ));
            }
            return;
        }
        let max = self.max_segment_bytes;
        let mut check = fd
            .as_ref()
            .map(|fd| move || checked_segment(fd.as_fd(), max));
        let check = check.as_mut().map(|c| c as SegmentCheck<'_>);
        let hook = match &msg {
            Msg::Demand { name } => self.unmet.as_ref().map(|h| (h, name)),
            Msg::Require { name } | Msg::RequireWith(ConsumerRef { name, .. }) => {
                self.unmet_require.as_ref().map(|h| (h, name))
            }
            _ => None,
        };
        if let Some((hook, name)) = hook {
            if !self.engine.is_offered(name) {
                hook(cid, name);
            }
        }
        self.engine
            .handle(cid, id, msg, check, now, &mut self.effects);
        self.carry_out(fd, out);
    }

    /// The earliest acknowledgement deadline or lifetime end the engine
    /// waits for, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.engine.next_deadline()
    }

    /// Releases the operations whose acknowledgements did not come by
    /// `now`, and the withdrawals whose lifetimes ended by then.
    pub fn expire(&mut self, now: Instant, out: &mut Outgoing) {
        self.engine.expire(now, &mut self.effects);
        self.carry_out(None, out);
    }

    /// Forgets client `cid`, whose connection ended.
    pub fn disconnect(&mut self, cid: ClientId, out: &mut Outgoing) {
        self.engine.disconnect(cid, &mut self.effects);
        self.carry_out(None, out);
        self.outboxes.remove(&cid);
        if self.mirror == Some(cid) {
            // Its copies went with it.
            self.copies = Copies::default();
        }
    }

    /// Calls `hook` with the name of every later demand that finds nothing
    /// on offer.
    pub fn set_unmet_hook(&mut self, hook: UnmetHook) {
        self.unmet = Some(hook);
    }

    /// Calls `hook` with the name of every later require of a name not on
    /// offer.
    pub fn set_unmet_require_hook(&mut self, hook: UnmetHook) {
        self.unmet_require = Some(hook);
    }

    /// Calls `hook` with every later [`GroupNote`], first with one for
    /// each group that has members now.
    pub fn set_group_hook(&mut self, hook: GroupHook) {
        self.group_hook = Some(hook);
        self.engine.note_all_groups();
        self.pass_notes();
    }

    /// See [`Engine::set_proxy`].
    pub fn set_proxy(
        &mut self,
        group: &str,
        selector: &str,
        node: &str,
        members: u32,
        out: &mut Outgoing,
    ) -> Result<Option<u64>, String> {
        let sub = self
            .engine
            .set_proxy(group, selector, node, members, &mut self.effects);
        self.carry_out(None, out);
        sub
    }

    /// See [`Engine::finish_proxy_record`].
    pub fn finish_proxy_record(&mut self, event: u64, out: &mut Outgoing) {
        self.engine.finish_proxy_record(event, &mut self.effects);
        self.carry_out(None, out);
    }

    /// See [`Engine::route_forwarded`].
    pub fn route_forwarded(
        &mut self,
        group: &str,
        name: &str,
        from: Forwarded,
        epoch: u64,
        out: &mut Outgoing,
    ) -> bool {
        let routed = self
            .engine
            .route_forwarded(group, name, from, epoch, &mut self.effects);
        self.carry_out(None, out);
        routed
    }

    /// Hands the engine's group notes to the hook (dropped without one).
    fn pass_notes(&mut self) {
        let notes = self.engine.take_group_notes();
        if let Some(hook) = &self.group_hook {
            for note in notes {
                hook(note);
            }
        }
    }

    /// Fails every demand waiting for `name`.
    pub fn fail_demands(&mut self, name: &str, code: ErrorCode, text: &str, out: &mut Outgoing) {
        self.engine
            .fail_waiters(name, code, text, &mut self.effects);
        self.carry_out(None, out);
    }

    /// Makes client `cid` the federation's mirror (see
    /// [`Engine::set_mirror`]).
    pub fn set_mirror(&mut self, cid: ClientId) {
        if self.mirror.replace(cid) != Some(cid) {
            self.copies = Copies::default();
        }
        self.engine.set_mirror(cid);
    }

    /// Offers a copy of `bytes` under `name` with `attrs` as the mirror, in
    /// a slot of the manager's own segments, at time `now`: the demands
    /// waiting for it are served at once.
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no client is the mirror (or it left);
    /// the errors of an offer (a name on offer, a quota, attributes).
    pub fn offer_copy(
        &mut self,
        name: &str,
        attrs: Attributes,
        bytes: &[u8],
        now: Instant,
        out: &mut Outgoing,
    ) -> Result<(), (ErrorCode, String)> {
        self.check_copy_name(name)?;
        let (slot, segment) = self.reserve_copy(bytes.len() as u64)?;
        // SAFETY: the pool hands out disjoint slots and this one is not on
        // offer (nobody reads it) until the offer below.
        unsafe { segment.bytes_mut(slot.offset, bytes.len() as u64) }.copy_from_slice(bytes);
        self.offer_reserved(name, attrs, slot, &segment, bytes.len() as u64, now, out)
    }

    /// Fails when no client is the mirror, or a copy `name` is on offer.
    fn check_copy_name(&self, name: &str) -> Result<(), (ErrorCode, String)> {
        self.joined_mirror()?;
        match self.copies.offered.contains_key(name) {
            true => Err((
                ErrorCode::DuplicateName,
                format!("a copy {name} is on offer"),
            )),
            false => Ok(()),
        }
    }

    /// Takes a slot of at least `size` bytes of the copies' segments, for
    /// the caller to fill (outside the lock) and then offer with
    /// [`Host::offer_reserved`] or give back with [`Host::release_reserved`].
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no client is the mirror;
    /// [`ErrorCode::BadSegment`] when no memory is left for the copy.
    pub fn reserve_copy(&mut self, size: u64) -> Result<(Slot, Arc<Segment>), (ErrorCode, String)> {
        self.joined_mirror()?;
        let slot = self
            .copies
            .pool
            .alloc(size)
            .map_err(|e| (ErrorCode::BadSegment, format!("no memory for a copy: {e}")))?;
        let segment = self
            .copies
            .pool
            .segment(slot.segment)
            .expect("allocated slots have a segment")
            .clone();
        Ok((slot, segment))
    }

    /// Whether `slot` of `segment` is still one of the copies' pool (a
    /// new mirror starts a new pool).
    fn owns_reserved(&self, slot: Slot, segment: &Arc<Segment>) -> bool {
        self.copies
            .pool
            .segment(slot.segment)
            .is_some_and(|s| Arc::ptr_eq(s, segment))
    }

    /// Gives back a slot of [`Host::reserve_copy`] that is not offered.
    pub fn release_reserved(&mut self, slot: Slot, segment: &Arc<Segment>) {
        if self.owns_reserved(slot, segment) {
            self.copies.pool.release(slot);
        }
    }

    /// Offers the first `size` bytes of a slot of [`Host::reserve_copy`],
    /// written by the caller, under `name` with `attrs` as the mirror, at
    /// time `now`: the demands waiting for it are served at once. On an
    /// error the slot goes back to the pool.
    ///
    /// # Errors
    /// As [`Host::offer_copy`].
    #[allow(clippy::too_many_arguments)]
    pub fn offer_reserved(
        &mut self,
        name: &str,
        attrs: Attributes,
        slot: Slot,
        segment: &Arc<Segment>,
        size: u64,
        now: Instant,
        out: &mut Outgoing,
    ) -> Result<(), (ErrorCode, String)> {
        if !self.owns_reserved(slot, segment) {
            return Err((
                ErrorCode::NotJoined,
                "the federation client changed while the copy was written".into(),
            ));
        }
        if let Err(e) = self.check_copy_name(name) {
            self.copies.pool.release(slot);
            return Err(e);
        }
        let mirror = self.joined_mirror()?;
        self.forget_dropped_copy_segments(mirror, now, out);
        let fd = match self.copies.registered.insert(slot.segment) {
            true => match segment.fd().try_clone() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    self.copies.registered.remove(&slot.segment);
                    self.copies.pool.release(slot);
                    return Err((ErrorCode::BadSegment, format!("cannot share a copy: {e}")));
                }
            },
            false => None,
        };
        let sent = fd.is_some();
        let id = self.copies.next_request();
        let msg = Msg::Offer {
            name: name.into(),
            attrs,
            size,
            segment: SegmentRef {
                segment: DIRECT_SEGMENT | slot.segment,
                offset: slot.offset,
            },
        };
        let max = self.max_segment_bytes;
        let mut check = fd
            .as_ref()
            .map(|fd| move || checked_segment(fd.as_fd(), max));
        let check = check.as_mut().map(|c| c as SegmentCheck<'_>);
        self.engine
            .handle(mirror, id, msg, check, now, &mut self.effects);
        self.carry_out(fd, out);
        match self.copies.take_reply(id) {
            Some(Msg::Error { code, text }) => {
                self.copies.pool.release(slot);
                if sent {
                    // The engine did not keep it: sent again next time.
                    self.copies.registered.remove(&slot.segment);
                }
                Err((code, text))
            }
            _ => {
                self.copies.offered.insert(name.into(), slot);
                Ok(())
            }
        }
    }

    /// Withdraws the copy `name` that [`Host::offer_copy`] offered, at
    /// time `now`; its slot is reused once the last view of it is released.
    ///
    /// # Errors
    /// [`ErrorCode::NotJoined`] when no client is the mirror (or it left);
    /// [`ErrorCode::UnknownName`] when no such copy is on offer.
    pub fn withdraw_copy(
        &mut self,
        name: &str,
        now: Instant,
        out: &mut Outgoing,
    ) -> Result<(), (ErrorCode, String)> {
        let mirror = self.joined_mirror()?;
        let Some(slot) = self.copies.offered.remove(name) else {
            return Err((ErrorCode::UnknownName, format!("no copy {name} on offer")));
        };
        let id = self.copies.next_request();
        self.copies.withdrawing(id, slot);
        let msg = Msg::Withdraw { name: name.into() };
        self.engine
            .handle(mirror, id, msg, None, now, &mut self.effects);
        self.carry_out(None, out);
        Ok(())
    }

    /// The mirror, while it is joined.
    fn joined_mirror(&self) -> Result<ClientId, (ErrorCode, String)> {
        self.mirror
            .filter(|&cid| self.engine.has_client(cid))
            .ok_or((
                ErrorCode::NotJoined,
                "no federation client is joined".into(),
            ))
    }

    /// Tells the engine of the copies' segments that the pool dropped.
    fn forget_dropped_copy_segments(&mut self, mirror: ClientId, now: Instant, out: &mut Outgoing) {
        for segment in self.copies.pool.take_dropped() {
            if self.copies.registered.remove(&segment) {
                let id = self.copies.next_request();
                let msg = Msg::Forget {
                    segment: DIRECT_SEGMENT | segment,
                };
                self.engine
                    .handle(mirror, id, msg, None, now, &mut self.effects);
                self.carry_out(None, out);
            }
        }
    }

    /// Hands the events for the mirror to `hook` instead of its
    /// connection, each offer of an object of at most `inline_max` bytes
    /// with its bytes.
    pub fn set_mirror_hook(&mut self, inline_max: u64, hook: MirrorHook) {
        self.mirror_events = Some((inline_max, hook));
    }

    /// Calls `hook` with the lifecycle kinds this node's own subscribers
    /// take, now and whenever they change.
    pub fn set_local_interest_hook(&mut self, hook: InterestHook) {
        hook(self.local_interest.0);
        self.local_interest.1 = Some(hook);
    }

    /// Hands an event of `kind` on `name` to the mirror's hook, an offer
    /// with the object's bytes if it is small enough, a lifecycle step
    /// with its `attrs`. Runs once the
    /// effects that came with it are carried out (the offer's segment is
    /// kept by then).
    fn to_mirror(&self, kind: EventKind, name: String, attrs: Option<Attributes>, after: u64) {
        let Some((inline_max, hook)) = &self.mirror_events else {
            return;
        };
        let offered = self
            .engine
            .offered(&name)
            .filter(|_| kind == EventKind::Offer);
        let inline = offered.filter(|e| e.size <= *inline_max).and_then(|e| {
            let fd = self.segments.get(&e.segment)?;
            match read_exact_at(fd.as_fd(), e.offset, e.size) {
                Ok(bytes) => Some((e.attrs.clone(), bytes)),
                Err(err) => {
                    warn!(%name, error = %err, "cannot read an offered object");
                    None
                }
            }
        });
        hook(MirrorEvent {
            kind,
            name,
            inline,
            object: offered.map(|e| e.object),
            attrs,
            after,
        });
    }

    /// The identifier of the newest object on offer as `name`.
    pub fn offered_object(&self, name: &str) -> Option<u64> {
        self.engine.offered(name).map(|e| e.object)
    }

    /// Raises the events of `kind` on `name`, an object of federated node
    /// `node`, for the subscribers here.
    pub fn raise_remote(
        &mut self,
        kind: EventKind,
        name: &str,
        attrs: &Attributes,
        node: &str,
        out: &mut Outgoing,
    ) {
        self.engine
            .raise_remote(kind, name, attrs, node, &mut self.effects);
        self.carry_out(None, out);
    }

    /// Fails every waiting request (shutdown).
    pub fn shut_down(&mut self, out: &mut Outgoing) {
        self.engine.shut_down(&mut self.effects);
        self.carry_out(None, out);
    }

    /// The manager's counters.
    pub fn stats(&self) -> Stats {
        let queued = self
            .outboxes
            .iter()
            .filter(|(&cid, _)| self.engine.has_client(cid))
            .map(|(_, o)| o.queued() as u64)
            .sum();
        Stats {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            queued_bytes: queued,
            dropped_events: self.meters.dropped_events.load(Ordering::Relaxed),
            ..self.engine.stats()
        }
    }

    /// Turns the engine's effects into frames in `out`; `fd` is the
    /// descriptor that came with the request handled, kept if the engine
    /// accepted its segment (closed otherwise).
    fn carry_out(&mut self, mut fd: Option<OwnedFd>, out: &mut Outgoing) {
        let mut effects = std::mem::take(&mut self.effects);
        let mut mirrored = Vec::new();
        for effect in effects.drain(..) {
            match effect {
                Effect::Send {
                    to,
                    id: 0,
                    msg: Msg::Event(event),
                    segment: None,
                } if self.mirror == Some(to) && self.mirror_events.is_some() => {
                    let attrs = LIFECYCLE_KINDS.contains(event.kind).then_some(event.attrs);
                    mirrored.push((event.kind, event.name, attrs, self.mirror_sent));
                }
                // A reply to an operation made for the mirror here.
                Effect::Send { to, id, msg, .. }
                    if id & DIRECT_REQUEST != 0 && self.mirror == Some(to) =>
                {
                    self.copies.reply(id, msg);
                }
                Effect::Send {
                    to,
                    id,
                    msg,
                    segment,
                } => {
                    let Some(outbox) = self.outboxes.get(&to) else {
                        continue;
                    };
                    if self.mirror == Some(to) {
                        if let Msg::Event(EventRef { event, .. }) | Msg::Record { event, .. } = &msg
                        {
                            self.mirror_sent = self.mirror_sent.max(*event);
                        }
                    }
                    let msg = match msg {
                        Msg::Waiting { names } => Msg::Waiting {
                            names: fit_names(names),
                        },
                        msg => msg,
                    };
                    let fd = segment.and_then(|key| {
                        let fd = self.segments.get(&key).cloned();
                        if fd.is_none() {
                            warn!(segment = key, "no descriptor for a segment sent");
                        }
                        fd
                    });
                    out.push((outbox.clone(), Frame { id, msg }, fd));
                }
                Effect::Keep { segment } => {
                    if let Some(fd) = fd.take() {
                        self.segments.insert(segment, Arc::new(fd));
                    }
                }
                Effect::Close { segment } => {
                    self.segments.remove(&segment);
                }
                // Written under the state lock, before this operation's
                // messages go out.
                Effect::Interest(interest) => self.interest.set(interest),
                Effect::LocalInterest(kinds) => {
                    self.local_interest.0 = kinds;
                    if let Some(hook) = &self.local_interest.1 {
                        hook(kinds);
                    }
                }
            }
        }
        self.effects = effects;
        for (kind, name, attrs, after) in mirrored {
            self.to_mirror(kind, name, attrs, after);
        }
        self.pass_notes();
    }
}

/// The length of the segment `fd` that came with an offer, once it is
/// sealed and within `max` bytes.
fn checked_segment(fd: BorrowedFd<'_>, max: u64) -> Result<u64, String> {
    check_seals(fd).map_err(|e| e.to_string())?;
    let len = file_size(fd).map_err(|e| e.to_string())?;
    if len > max {
        return Err(format!("segment of {len} bytes exceeds the limit of {max}"));
    }
    Ok(len)
}

/// `len` bytes of `fd` from `offset`.
fn read_exact_at(fd: BorrowedFd<'_>, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    let mut done = 0;
    while done < bytes.len() {
        let at = i64::try_from(offset + done as u64).map_err(std::io::Error::other)?;
        match nix::sys::uio::pread(fd, &mut bytes[done..], at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes)
}
