//! The memory of the copies that the federation offers here in the
//! manager's request path ([`Control::offer_copy`](super::Control::offer_copy)):
//! slots of the manager's own segment pool, offered and withdrawn as the
//! federation's client (the mirror) under request ids and segment numbers
//! that its connection never uses, so that their replies stay here.

use std::collections::{HashMap, HashSet};

use crate::ipc::pool::{PoolConfig, SegmentPool, Slot};
use crate::ipc::wire::{Msg, RequestId};

/// Set in the request ids of the operations made here for the mirror
/// (a client numbers its requests from 1 up).
pub const DIRECT_REQUEST: RequestId = 1 << 63;
/// Set in the numbers of this pool's segments as the mirror's (a client
/// numbers its segments from 1 up).
pub const DIRECT_SEGMENT: u64 = 1 << 62;

/// The copies' slots and the replies to their operations.
#[derive(Debug)]
pub struct Copies {
    /// Where the copies' bytes lie.
    pub pool: SegmentPool,
    /// Segments of the pool whose descriptor the engine keeps.
    pub registered: HashSet<u64>,
    /// Slots of the copies on offer, by name.
    pub offered: HashMap<String, Slot>,
    /// Slots of the copies being withdrawn, by request: each returns to
    /// the pool once its withdrawal is answered (the last view released).
    withdrawing: HashMap<RequestId, Slot>,
    /// Replies to the other operations, until their caller takes them.
    replies: Vec<(RequestId, Msg)>,
    next_id: RequestId,
}

impl Default for Copies {
    fn default() -> Self {
        Copies {
            pool: SegmentPool::new(PoolConfig::default()),
            registered: HashSet::new(),
            offered: HashMap::new(),
            withdrawing: HashMap::new(),
            replies: Vec::new(),
            next_id: 1,
        }
    }
}

impl Copies {
    /// A request id of this pool's own.
    pub fn next_request(&mut self) -> RequestId {
        let id = DIRECT_REQUEST | self.next_id;
        self.next_id += 1;
        id
    }

    /// Returns `slot` to the pool once the withdrawal `id` is answered.
    pub fn withdrawing(&mut self, id: RequestId, slot: Slot) {
        self.withdrawing.insert(id, slot);
    }

    /// The engine's reply `msg` to request `id` of this pool's.
    pub fn reply(&mut self, id: RequestId, msg: Msg) {
        match self.withdrawing.remove(&id) {
            Some(slot) => self.pool.release(slot),
            None => self.replies.push((id, msg)),
        }
    }

    /// The reply to request `id`, if it came; forgets the others.
    pub fn take_reply(&mut self, id: RequestId) -> Option<Msg> {
        let at = self.replies.iter().position(|(i, _)| *i == id);
        let reply = at.map(|at| self.replies.swap_remove(at).1);
        self.replies.clear();
        reply
    }
}
