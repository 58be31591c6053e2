//! Names whose producer died while offering them, so that a demand fails
//! fast (`ProducerDied`) instead of waiting for an object that will not
//! come.
//!
//! The set is bounded: beyond [`TOMBSTONES_KEPT`] names, the oldest names
//! that no client requires are forgotten (a later demand of it waits, as
//! for any name never offered). A name that a client requires is kept as
//! long as it is required, so a client that required a name when its
//! producer died always gets `ProducerDied` when it demands it; those are
//! bounded by the per-client quota of requires.

use std::collections::VecDeque;

use crate::ipc::fasthash::FastSet;

/// How many names of dead producers are kept; more only while clients
/// require them.
pub const TOMBSTONES_KEPT: usize = 4096;

/// Names of dead producers' offers, oldest first.
#[derive(Default)]
pub(super) struct Tombstones {
    names: FastSet<String>,
    /// The same names, oldest first.
    order: VecDeque<String>,
}

impl Tombstones {
    /// Whether the producer of `name` died (and it was not offered since).
    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// `name` was offered again.
    pub(super) fn remove(&mut self, name: &str) {
        if !self.names.is_empty() && self.names.remove(name) {
            self.order.retain(|n| n != name);
        }
    }

    /// The producer of `name` died; beyond the bound, the oldest names
    /// that `required` says nobody requires are forgotten.
    pub(super) fn insert(&mut self, name: String, required: impl Fn(&str) -> bool) {
        if !self.names.insert(name.clone()) {
            return;
        }
        self.order.push_back(name);
        // Each name is looked at once: required ones go to the back.
        let mut looked = 0;
        while self.names.len() > TOMBSTONES_KEPT && looked < self.order.len() {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if required(&oldest) {
                self.order.push_back(oldest);
                looked += 1;
            } else {
                self.names.remove(&oldest);
            }
        }
    }
}
