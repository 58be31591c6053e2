//! Consumer groups: streaming offers to groups of consumers.
//!
//! A consumer group receives, as *records*, the offers made after it was
//! formed whose attributes match its selector. Every group sees every
//! record; within a group each record goes to exactly one member, the
//! least loaded (queued plus held records; ties in round-robin order). A
//! member has at most [`GROUP_WINDOW`](crate::engine::GROUP_WINDOW)
//! records queued or held: when every member has that many, records wait
//! in the group, in order, until one completes a record. The group's books
//! are the pool manager's own (one type of the engine, kept here under the
//! group's lock). A record dropped without [`Record::complete`] goes to
//! another member (to the same one when it is alone); the records queued
//! at a member that leaves go, first, to the others. A record pins its
//! offer, so the producer's withdraw waits for every group to complete
//! it. A group lives while it has members; when the last one leaves, its
//! pending records are released, unless the pool keeps them
//! ([`PoolConfig::keep_group_records`](crate::PoolConfig::keep_group_records)):
//! then the group lives on while it holds them and gives them to the next
//! member (offers made while it has no member are not recorded, as before
//! it was first formed).

use crate::attrs::Attributes;
use crate::data::Data;
use crate::engine::groups::GroupBook;
use crate::error::{Error, Result};
use crate::registry::{lock, Offer};
use crate::selector::Selector;
use crate::stats::{Counter, Counters};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A group's books and the records given to each member and not yet
/// taken by it.
struct GroupState {
    /// Seats are member ids.
    book: GroupBook<Arc<Offer>>,
    /// Each member's records given and not yet taken, in join order.
    queues: Vec<(u64, VecDeque<Arc<Offer>>)>,
    next_id: u64,
}

impl GroupState {
    fn new(keep_orphans: bool) -> Self {
        GroupState {
            book: GroupBook::new(keep_orphans),
            queues: Vec::new(),
            next_id: 0,
        }
    }

    /// The records given to member `id` and not yet taken.
    fn queue(&mut self, id: u64) -> Option<&mut VecDeque<Arc<Offer>>> {
        self.queues
            .iter_mut()
            .find(|(m, _)| *m == id)
            .map(|(_, q)| q)
    }

    /// Puts a record the book gave to a member in that member's queue,
    /// counted as delivered then (as a pool manager counts a record when
    /// it sends it to the member).
    fn hand(&mut self, given: Option<(u64, Arc<Offer>)>, counters: &Counters) {
        if let Some((id, offer)) = given {
            let Some(q) = self.queue(id) else {
                // Seats and queues come and go together.
                return offer.unpin();
            };
            counters.bump(Counter::Streamed);
            if let Some(space) = offer.data.space() {
                counters.transfer(space, space, offer.data.len(), false);
            }
            q.push_back(offer);
        }
    }

    /// Gives `offer` to a member with room, or queues it in the group;
    /// releases it when the group has no member.
    fn deliver(&mut self, offer: Arc<Offer>, counters: &Counters) {
        if self.book.has_no_seat() {
            return offer.unpin();
        }
        let given = self.book.route(offer, false);
        self.hand(given, counters);
    }

    /// Hands waiting records to members with room, oldest first.
    fn drain(&mut self, counters: &Counters) {
        while let Some(offer) = self.book.take_queued(|_| false) {
            let given = self.book.route(offer, false);
            self.hand(given, counters);
        }
    }
}

struct Group {
    name: String,
    selector: Selector,
    state: Mutex<GroupState>,
    cv: Condvar,
    /// The pool's counters, which count the records given to members (a
    /// clone: a record may outlive its pool).
    counters: Counters,
}

/// The consumer groups of a pool.
pub(crate) struct Streams {
    groups: RwLock<Vec<Arc<Group>>>,
    count: AtomicUsize,
    /// Whether a group whose last member leaves keeps its records.
    keep_orphans: bool,
}

impl Streams {
    /// No groups yet; `keep_orphans`: whether a group whose last member
    /// leaves keeps its records for the next one.
    pub(crate) fn new(keep_orphans: bool) -> Self {
        Streams {
            groups: RwLock::default(),
            count: AtomicUsize::new(0),
            keep_orphans,
        }
    }

    /// Hands a new offer to every group whose selector matches.
    pub(crate) fn dispatch(&self, offer: &Arc<Offer>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        for g in groups.iter() {
            if g.selector.matches(&offer.view()) {
                offer.pin();
                lock(&g.state).deliver(Arc::clone(offer), &g.counters);
                g.cv.notify_all();
            }
        }
    }

    pub(crate) fn join<'p>(
        &'p self,
        counters: &Counters,
        name: &str,
        selector: &str,
    ) -> Result<Member<'p>> {
        // Parsed first, as a pool manager does: a selector that does not
        // parse is refused as such, whether the group exists or not.
        let parsed = Selector::parse(selector)?;
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let group = match groups.iter().find(|g| g.name == name) {
            Some(g) if g.selector.as_str() != selector => {
                return Err(Error::Group {
                    name: name.into(),
                    reason: format!("formed with selector {:?}", g.selector.as_str()),
                })
            }
            Some(g) => Arc::clone(g),
            None => {
                let g = Arc::new(Group {
                    name: name.to_owned(),
                    selector: parsed,
                    state: Mutex::new(GroupState::new(self.keep_orphans)),
                    cv: Condvar::new(),
                    counters: counters.clone(),
                });
                groups.push(Arc::clone(&g));
                self.count.store(groups.len(), Ordering::Relaxed);
                g
            }
        };
        let mut s = lock(&group.state);
        let id = s.next_id;
        s.next_id += 1;
        s.book.join(id, 1, false);
        s.queues.push((id, VecDeque::new()));
        s.drain(&group.counters);
        drop(s);
        group.cv.notify_all();
        Ok(Member {
            streams: self,
            group,
            id,
        })
    }

    fn leave(&self, group: &Arc<Group>, id: u64) {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let mut s = lock(&group.state);
        let Some(pos) = s.queues.iter().position(|(m, _)| *m == id) else {
            return;
        };
        let (_, unfinished) = s.queues.remove(pos);
        let released = s.book.leave(id, unfinished.into(), |_| false);
        released.into_iter().for_each(|o| o.unpin());
        if s.book.has_no_seat() && s.book.queued_len() == 0 {
            groups.retain(|g| !Arc::ptr_eq(g, group));
            self.count.store(groups.len(), Ordering::Relaxed);
        }
        s.drain(&group.counters);
        drop(s);
        group.cv.notify_all();
    }
}

/// A member of a consumer group; leaving (dropping) hands its queued
/// records to the other members.
pub struct Member<'p> {
    streams: &'p Streams,
    group: Arc<Group>,
    id: u64,
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("group", &self.group.name)
            .field("id", &self.id)
            .finish()
    }
}

impl<'p> Member<'p> {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// The next record for this member, if one is queued.
    pub fn try_next(&self) -> Option<Record> {
        self.next_until(Some(Instant::now()))
    }

    /// The next record, waiting up to `timeout`.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Record> {
        self.next_until(Instant::now().checked_add(timeout))
    }

    fn next_until(&self, deadline: Option<Instant>) -> Option<Record> {
        let mut s = lock(&self.group.state);
        loop {
            if let Some(offer) = s.queue(self.id)?.pop_front() {
                drop(s);
                return Some(Record {
                    group: Arc::clone(&self.group),
                    member: self.id,
                    offer: Some(offer),
                });
            }
            s = match deadline {
                None => self.group.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.group
                        .cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.streams.leave(&self.group, self.id);
    }
}

/// One offer delivered to one member of a consumer group.
pub struct Record {
    group: Arc<Group>,
    member: u64,
    offer: Option<Arc<Offer>>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish()
    }
}

impl Record {
    fn offer(&self) -> Option<&Offer> {
        self.offer.as_deref()
    }

    /// The CDO's name.
    pub fn name(&self) -> &str {
        self.offer().map_or("", |o| &o.name)
    }

    /// The offer's version.
    pub fn version(&self) -> u64 {
        self.offer().map_or(0, |o| o.version)
    }

    /// The offer's attributes.
    pub fn attributes(&self) -> Option<&Attributes> {
        self.offer().map(|o| &*o.attrs)
    }

    /// The data (the producer's bytes, shared).
    pub fn data(&self) -> Data {
        self.offer().map(|o| o.data.clone()).unwrap_or_default()
    }

    /// Marks the record processed.
    pub fn complete(mut self) {
        if let Some(offer) = self.offer.take() {
            let mut s = lock(&self.group.state);
            s.book.done(self.member);
            let waiting = s.book.queued_len() > 0;
            s.drain(&self.group.counters);
            drop(s);
            if waiting {
                self.group.cv.notify_all();
            }
            offer.unpin();
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(offer) = self.offer.take() {
            let mut s = lock(&self.group.state);
            match s.book.give_back(self.member, offer, false) {
                Ok(given) => s.hand(given, &self.group.counters),
                Err(released) => released.unpin(),
            }
            drop(s);
            self.group.cv.notify_all();
        }
    }
}
