//! The memory of the copies that the federation offers here in the
//! manager's request path ([`Control::offer_copy`](super::Control::offer_copy)):
//! slots of the manager's own segment pool, offered and withdrawn as the
//! federation's client (the mirror) under request ids and segment numbers
//! that its connection never uses, so that their replies stay here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Control;
use crate::ipc::pool::{PoolConfig, SegmentPool, Slot};
use crate::ipc::shm::Segment;
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

/// A slot of the manager's own shared memory, reserved by
/// [`Control::reserve_copy`] for a copy its holder writes in place, then
/// offers with [`Control::offer_reserved`]. Dropped unoffered, it goes
/// back to the pool.
pub struct CopySlot {
    control: Control,
    /// `None` once offered (or given back).
    slot: Option<Slot>,
    /// Keeps the mapping alive while the holder writes, whatever the
    /// manager does meanwhile.
    segment: Arc<Segment>,
    size: u64,
}

impl CopySlot {
    pub(super) fn new(control: Control, slot: Slot, segment: Arc<Segment>, size: u64) -> Self {
        CopySlot {
            control,
            slot: Some(slot),
            segment,
            size,
        }
    }

    /// The reserved bytes, to be written before the offer.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let slot = self.slot.expect("a reserved slot until offered");
        // SAFETY: the pool handed this slot to this holder alone, it holds
        // at least `size` bytes, and it is on offer to nobody (so read by
        // nobody) until `into_parts` gives it to the offer; `&mut self`
        // keeps this the only slice of it.
        unsafe { self.segment.bytes_mut(slot.offset, self.size) }
    }

    /// The slot, its segment and the size to offer; the slot is no longer
    /// given back on drop.
    pub(super) fn into_parts(mut self) -> (Slot, Arc<Segment>, u64) {
        let slot = self.slot.take().expect("a reserved slot until offered");
        (slot, self.segment.clone(), self.size)
    }
}

impl Drop for CopySlot {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.control.release_reserved(slot, &self.segment);
        }
    }
}

impl std::fmt::Debug for CopySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopySlot")
            .field("slot", &self.slot)
            .field("size", &self.size)
            .finish()
    }
}
