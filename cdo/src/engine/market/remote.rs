//! Events of a federated pool: those that another node's objects raise
//! here, and the silence of the federation's own mirroring.
//!
//! The federation is a client of this engine (the *mirror*): it demands
//! local offers to export them, and offers and withdraws local copies of
//! other nodes' objects. None of that is news to a subscriber, who hears
//! of another node's object once, from [`Engine::raise_remote`], when the
//! federation learns of it; the mirror's own operations raise no object
//! events.

use super::{Engine, Outgoing};
use crate::engine::registry::ClientId;
use crate::events::EventKind;
use crate::ipc::wire::{Attributes, Msg};

/// The origin of an event raised for another node: no client of this one.
const REMOTE_ORIGIN: ClientId = 0;

impl Engine {
    /// Makes client `cid` the federation's mirror: its operations on
    /// objects raise no events, and it receives no remote events.
    pub fn set_mirror(&mut self, cid: ClientId) {
        self.mirror = Some(cid);
    }

    /// Whether an event of `kind` raised by `origin` is the mirror's own
    /// (object events only: its join and leave are those of a client).
    pub(super) fn is_mirrored(&self, kind: EventKind, origin: ClientId) -> bool {
        self.mirror == Some(origin) && !matches!(kind, EventKind::Join | EventKind::Leave)
    }

    /// Sends the events of `kind` on `name`, an object of federated node
    /// `node`, to the plain subscriptions that match. No operation here
    /// waits for them: an acknowledged subscription gets them without
    /// `needs_ack`.
    pub fn raise_remote(
        &mut self,
        kind: EventKind,
        name: &str,
        attrs: &Attributes,
        node: &str,
        out: &mut Outgoing,
    ) {
        if self.subs.is_empty() {
            return;
        }
        // No version: that is the other node's to number.
        let events = self
            .subs
            .events(kind, name, attrs, None, REMOTE_ORIGIN, None);
        for (to, mut event) in events {
            if Some(to) == self.mirror {
                continue;
            }
            event.node = Some(node.to_owned());
            self.totals.events += 1;
            self.send(to, 0, Msg::Event(event), None, out);
        }
    }
}
