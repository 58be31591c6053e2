//! The manager's bookkeeping: clients, segments, offers, requires, waiters.
//!
//! Every handler runs under one lock and only queues outgoing frames in an
//! [`Outgoing`] list; the connection threads send them after unlocking.

use crate::ipc::fasthash::{FastMap, FastSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tracing::{debug, info};

use crate::ipc::conn::Writer;
use crate::ipc::registry::{ClientId, Entry, Registry};
use crate::ipc::shm::{file_size, seals, REQUIRED_SEALS};
use crate::ipc::wire::{DataRef, ErrorCode, Frame, Msg, RequestId, SegmentRef, Stats};

/// A client's sending half, shared by every thread that replies to it.
pub type Outbox = Arc<Mutex<Writer>>;

/// Frames to send once the state lock is released.
pub type Outgoing = Vec<(Outbox, Frame, Option<Arc<OwnedFd>>)>;

struct ClientRec {
    component: String,
    out: Outbox,
    /// Producer's segment id → manager's segment id.
    own_segments: FastMap<u64, u64>,
    offered: FastSet<String>,
    leaving: Option<RequestId>,
    /// Views of objects this client holds (object → count).
    held: FastMap<u64, u32>,
}

/// A withdrawn object that consumers still view: the withdrawal's reply
/// waits for the last release.
struct Draining {
    owner: ClientId,
    rid: RequestId,
    segment: u64,
}

struct SegRec {
    fd: Arc<OwnedFd>,
    len: u64,
    objects: u64,
    forgotten: bool,
    sent_to: FastSet<ClientId>,
}

/// Everything the manager knows.
pub struct State {
    registry: Box<dyn Registry>,
    clients: FastMap<ClientId, ClientRec>,
    next_client: ClientId,
    segments: FastMap<u64, SegRec>,
    next_segment: u64,
    waiters: FastMap<String, Vec<(ClientId, RequestId)>>,
    requires: FastMap<String, FastSet<ClientId>>,
    tombstones: FastSet<String>,
    offered_bytes: u64,
    /// Clients waiting for BYE (so `check_leaves` is free when there are none).
    leaving: usize,
    next_object: u64,
    /// Views handed out and not released, by object.
    views: FastMap<u64, u32>,
    /// Withdrawn objects that are still viewed, by object.
    draining: FastMap<u64, Draining>,
}

type Reply = Result<Option<Msg>, (ErrorCode, String)>;

fn fail(code: ErrorCode, text: impl Into<String>) -> Reply {
    Err((code, text.into()))
}

impl State {
    /// Empty state over `registry`.
    pub fn new(registry: Box<dyn Registry>) -> Self {
        State {
            registry,
            clients: FastMap::default(),
            next_client: 1,
            segments: FastMap::default(),
            next_segment: 1,
            waiters: FastMap::default(),
            requires: FastMap::default(),
            tombstones: FastSet::default(),
            offered_bytes: 0,
            leaving: 0,
            next_object: 1,
            views: FastMap::default(),
            draining: FastMap::default(),
        }
    }

    /// Registers a joined client and returns its id.
    pub fn join(&mut self, component: String, out: Outbox) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        info!(client = id, %component, "joined");
        self.clients.insert(
            id,
            ClientRec {
                component,
                out,
                own_segments: FastMap::default(),
                offered: FastSet::default(),
                leaving: None,
                held: FastMap::default(),
            },
        );
        id
    }

    /// The manager's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            clients: self.clients.len() as u64,
            objects: self.registry.len() as u64,
            segments: self.segments.len() as u64,
            requires: self.requires.values().map(|s| s.len() as u64).sum(),
            waiting_demands: self.waiters.values().map(|w| w.len() as u64).sum(),
            pending_leaves: self.leaving as u64,
            offered_bytes: self.offered_bytes,
        }
    }

    fn send(
        &self,
        to: ClientId,
        id: RequestId,
        msg: Msg,
        fd: Option<Arc<OwnedFd>>,
        out: &mut Outgoing,
    ) {
        if let Some(c) = self.clients.get(&to) {
            out.push((c.out.clone(), Frame { id, msg }, fd));
        }
    }

    /// Handles one request of client `cid` (with the descriptor that came
    /// with it) and queues the replies.
    pub fn handle(&mut self, cid: ClientId, frame: Frame, fd: Option<OwnedFd>, out: &mut Outgoing) {
        let id = frame.id;
        let reply = if self.clients.contains_key(&cid) {
            self.dispatch(cid, id, frame.msg, fd, out)
        } else {
            fail(ErrorCode::NotJoined, "not joined (or already left)")
        };
        let msg = match reply {
            Ok(None) => return,
            Ok(Some(msg)) => msg,
            Err((code, text)) => {
                debug!(client = cid, ?code, %text, "request failed");
                Msg::Error { code, text }
            }
        };
        self.send(cid, id, msg, None, out);
    }

    fn dispatch(
        &mut self,
        cid: ClientId,
        id: RequestId,
        msg: Msg,
        fd: Option<OwnedFd>,
        out: &mut Outgoing,
    ) -> Reply {
        if fd.is_some() && !matches!(msg, Msg::Offer { .. }) {
            return fail(
                ErrorCode::Protocol,
                "descriptor on a message that takes none",
            );
        }
        match msg {
            Msg::Offer {
                name,
                attrs,
                size,
                segment,
            } => {
                let key = self.segment_of(cid, segment, fd, out)?;
                self.offer(cid, name, attrs, size, key, segment.offset, out)
            }
            Msg::Require { name } => {
                self.requires.entry(name).or_default().insert(cid);
                Ok(Some(Msg::Ok))
            }
            Msg::Demand { name } => {
                if self.registry.get(&name).is_some() {
                    self.send_data(cid, id, &name, out);
                    self.check_leaves(out);
                    Ok(None)
                } else if self.tombstones.contains(&name) {
                    fail(
                        ErrorCode::ProducerDied,
                        format!("the producer of {name} died"),
                    )
                } else {
                    self.waiters.entry(name).or_default().push((cid, id));
                    Ok(None)
                }
            }
            Msg::Withdraw { name } => {
                match self.registry.get(&name) {
                    None => return fail(ErrorCode::UnknownName, name),
                    Some(e) if e.owner != cid => return fail(ErrorCode::NotOwner, name),
                    Some(_) => {}
                }
                let e = self.take_offer(&name).expect("checked above");
                self.check_leaves(out);
                if self.views.contains_key(&e.object) {
                    let segment = e.segment;
                    let d = Draining {
                        owner: cid,
                        rid: id,
                        segment,
                    };
                    self.draining.insert(e.object, d);
                    Ok(None)
                } else {
                    self.unref_segment(e.segment, out);
                    Ok(Some(Msg::Ok))
                }
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
            Msg::Retract { name } => {
                self.release_require(&name, cid);
                let mut cancelled = Vec::new();
                if let Some(w) = self.waiters.get_mut(&name) {
                    w.retain(|&(c, rid)| {
                        if c == cid {
                            cancelled.push(rid);
                        }
                        c != cid
                    });
                }
                for rid in cancelled {
                    let text = format!("{name} retracted");
                    let msg = Msg::Error {
                        code: ErrorCode::Retracted,
                        text,
                    };
                    self.send(cid, rid, msg, None, out);
                }
                self.waiters.retain(|_, w| !w.is_empty());
                self.check_leaves(out);
                Ok(Some(Msg::Ok))
            }
            Msg::Forget { segment } => {
                let Some(key) = self.client_mut(cid).own_segments.remove(&segment) else {
                    return fail(ErrorCode::BadSegment, format!("unknown segment {segment}"));
                };
                self.forget_segment(key, out);
                Ok(Some(Msg::Ok))
            }
            Msg::Leave => {
                let blocked = self.still_required(cid);
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
            Msg::Stat => Ok(Some(Msg::Stats(self.stats()))),
            // Manager-to-client messages; their payload is not echoed back,
            // it may be as large as a frame.
            _ => fail(ErrorCode::Protocol, "message not accepted from clients"),
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

    /// The manager's id of the segment an offer names, registering the
    /// descriptor that came with it.
    fn segment_of(
        &mut self,
        cid: ClientId,
        seg: SegmentRef,
        fd: Option<OwnedFd>,
        out: &mut Outgoing,
    ) -> Result<u64, (ErrorCode, String)> {
        let Some(fd) = fd else {
            return self
                .client(cid)
                .own_segments
                .get(&seg.segment)
                .copied()
                .ok_or((
                    ErrorCode::BadSegment,
                    format!("segment {} never sent", seg.segment),
                ));
        };
        let sealed = seals(fd.as_fd()).is_ok_and(|s| s & REQUIRED_SEALS == REQUIRED_SEALS);
        if !sealed {
            return Err((
                ErrorCode::BadSegment,
                "segment not sealed against resizing".into(),
            ));
        }
        let len = file_size(fd.as_fd()).map_err(|e| (ErrorCode::BadSegment, e.to_string()))?;
        let key = self.next_segment;
        self.next_segment += 1;
        self.segments.insert(
            key,
            SegRec {
                fd: Arc::new(fd),
                len,
                objects: 0,
                forgotten: false,
                sent_to: FastSet::default(),
            },
        );
        if let Some(old) = self.client_mut(cid).own_segments.insert(seg.segment, key) {
            self.forget_segment(old, out);
        }
        Ok(key)
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        cid: ClientId,
        name: String,
        attrs: crate::ipc::wire::Attributes,
        size: u64,
        key: u64,
        offset: u64,
        out: &mut Outgoing,
    ) -> Reply {
        let seg = &self.segments[&key];
        if offset.checked_add(size).is_none_or(|end| end > seg.len) {
            return fail(
                ErrorCode::BadSegment,
                format!("{name}: object outside its segment"),
            );
        }
        let entry = Entry {
            owner: cid,
            size,
            segment: key,
            offset,
            attrs,
            object: self.next_object,
        };
        if self.registry.insert(name.clone(), entry).is_err() {
            return fail(ErrorCode::DuplicateName, name);
        }
        self.next_object += 1;
        self.segments.get_mut(&key).expect("checked above").objects += 1;
        self.offered_bytes += size;
        self.tombstones.remove(&name);
        self.client_mut(cid).offered.insert(name.clone());
        if let Some(waiting) = self.waiters.remove(&name) {
            for (to, rid) in waiting {
                self.send_data(to, rid, &name, out);
            }
            self.check_leaves(out);
        }
        Ok(Some(Msg::Ok))
    }

    fn send_data(&mut self, to: ClientId, rid: RequestId, name: &str, out: &mut Outgoing) {
        let e = self.registry.get(name).expect("caller checked the offer");
        let seg = self
            .segments
            .get_mut(&e.segment)
            .expect("offers keep their segment");
        let fd = seg.sent_to.insert(to).then(|| seg.fd.clone());
        let object = e.object;
        let msg = Msg::Data(DataRef {
            name: name.to_owned(),
            size: e.size,
            offset: e.offset,
            segment: e.segment,
            attrs: e.attrs.clone(),
            object,
        });
        self.send(to, rid, msg, fd, out);
        self.release_require(name, to);
        *self.views.entry(object).or_default() += 1;
        if let Some(c) = self.clients.get_mut(&to) {
            *c.held.entry(object).or_default() += 1;
        }
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
            self.send(d.owner, d.rid, Msg::Ok, None, out);
            self.unref_segment(d.segment, out);
        }
    }

    fn release_require(&mut self, name: &str, cid: ClientId) {
        if let Some(set) = self.requires.get_mut(name) {
            set.remove(&cid);
            if set.is_empty() {
                self.requires.remove(name);
            }
        }
    }

    /// Removes the offer `name` (its segment stays referenced).
    fn take_offer(&mut self, name: &str) -> Option<Entry> {
        let e = self.registry.remove(name)?;
        self.offered_bytes -= e.size;
        if let Some(c) = self.clients.get_mut(&e.owner) {
            c.offered.remove(name);
        }
        Some(e)
    }

    /// One object of segment `key` is gone.
    fn unref_segment(&mut self, key: u64, out: &mut Outgoing) {
        let seg = self
            .segments
            .get_mut(&key)
            .expect("objects keep their segment");
        seg.objects -= 1;
        if seg.forgotten && seg.objects == 0 {
            self.drop_segment(key, out);
        }
    }

    fn forget_segment(&mut self, key: u64, out: &mut Outgoing) {
        let seg = self.segments.get_mut(&key).expect("own segments are known");
        seg.forgotten = true;
        if seg.objects == 0 {
            self.drop_segment(key, out);
        }
    }

    fn drop_segment(&mut self, key: u64, out: &mut Outgoing) {
        if let Some(seg) = self.segments.remove(&key) {
            for to in seg.sent_to {
                self.send(to, 0, Msg::SegmentGone { segment: key }, None, out);
            }
        }
    }

    /// Names offered by `cid` that another client still requires.
    fn still_required(&self, cid: ClientId) -> Vec<String> {
        let mut names: Vec<String> = self
            .client(cid)
            .offered
            .iter()
            .filter(|n| {
                self.requires
                    .get(*n)
                    .is_some_and(|s| s.iter().any(|&c| c != cid))
            })
            .cloned()
            .collect();
        names.sort();
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
            .filter(|&(cid, _)| self.still_required(cid).is_empty())
            .collect();
        for (cid, rid) in ready {
            self.finish_leave(cid, rid, out);
        }
    }

    fn finish_leave(&mut self, cid: ClientId, rid: RequestId, out: &mut Outgoing) {
        self.send(cid, rid, Msg::Bye, None, out);
        info!(client = cid, "left");
        self.remove_client(cid, false, out);
    }

    /// Forgets client `cid`, whose connection ended without LEAVE.
    pub fn disconnect(&mut self, cid: ClientId, out: &mut Outgoing) {
        if self.clients.contains_key(&cid) {
            info!(client = cid, component = %self.client(cid).component, "connection lost; withdrawing its offers");
            self.remove_client(cid, true, out);
        }
    }

    fn remove_client(&mut self, cid: ClientId, died: bool, out: &mut Outgoing) {
        for (object, n) in std::mem::take(&mut self.client_mut(cid).held) {
            for _ in 0..n {
                self.release_view(object, out);
            }
        }
        let offered: Vec<String> = self.client(cid).offered.iter().cloned().collect();
        for name in offered {
            if let Some(e) = self.take_offer(&name) {
                self.unref_segment(e.segment, out);
            }
            if died {
                self.tombstones.insert(name);
            }
        }
        // Its withdrawals that still wait for consumers: nobody will reuse
        // that memory now, the consumers' views stay valid.
        let drained: Vec<u64> = self
            .draining
            .iter()
            .filter(|(_, d)| d.owner == cid)
            .map(|(&object, _)| object)
            .collect();
        for object in drained {
            let d = self.draining.remove(&object).expect("listed above");
            self.unref_segment(d.segment, out);
        }
        if self.client(cid).leaving.is_some() {
            self.leaving -= 1;
        }
        let segments: Vec<u64> = self.client(cid).own_segments.values().copied().collect();
        for key in segments {
            self.forget_segment(key, out);
        }
        self.clients.remove(&cid);
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
        self.check_leaves(out);
    }

    /// Fails every waiting request and forgets every client (shutdown).
    pub fn shut_down(&mut self, out: &mut Outgoing) {
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
