//! Consumer groups across nodes.
//!
//! A group spans the nodes of a federation: every node keeps it with its
//! own members, and one *proxy member* per other node that has members,
//! weighted by how many it has. An offer is routed on its producer's node
//! only (the copies the federation offers of other nodes' objects are
//! never routed), to a local member or to a proxy; a record given to a
//! proxy is sent to the federation's client (the mirror), which forwards
//! it to that node and acknowledges it once the node reports it done. Until
//! then the group's reference keeps the object, so its producer's
//! withdrawal waits for the remote member as for a local one.
//!
//! The node that receives a forwarded record gives it to one of its local
//! members ([`Engine::route_forwarded`]); when that member acknowledges it,
//! a [`GroupNote::Done`] tells the federation to report it. When a node's
//! last member goes (or its link), its proxy goes on the other nodes, and
//! the records it held come back to their groups there, as a local
//! member's do.

use super::{Engine, Outgoing};
use crate::engine::subs::{Forwarded, SubError};
use crate::ipc::fasthash::FastMap;

/// What the federation must tell other nodes about this node's consumer
/// groups ([`Engine::take_group_notes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupNote {
    /// This node now has `members` local members of `group` (0: none).
    Members {
        /// The group.
        group: String,
        /// Its selector.
        selector: String,
        /// Local members (proxies not counted).
        members: u32,
        /// Since when the group has local members: a new value each time
        /// they go from none to some (the last value with 0).
        epoch: u64,
    },
    /// A record that `node` forwarded here (its delivery `event` there)
    /// is done.
    Done {
        /// The node that forwarded it.
        node: String,
        /// Its delivery id on that node.
        event: u64,
    },
}

/// A group with local members, as last noted.
struct Told {
    selector: String,
    members: u32,
    epoch: u64,
}

/// The engine's books of groups across nodes.
#[derive(Default)]
pub(super) struct Proxies {
    /// Proxy subscriptions by (group, node).
    by_node: FastMap<(String, String), u64>,
    /// Groups with local members as last noted.
    told: FastMap<String, Told>,
    /// The last epoch given to a group.
    last_epoch: u64,
    /// Notes not yet taken.
    notes: Vec<GroupNote>,
}

impl Engine {
    /// Makes node `node` stand in `group` (selecting `selector`) for its
    /// `members` members: adds its proxy member, changes its weight, or
    /// (0) removes it, its undone records going back to the group. Returns
    /// the proxy's subscription, whose records go to the mirror
    /// ([`Engine::set_mirror`]).
    ///
    /// # Errors
    /// No mirror is set, or the group exists here with another selector.
    pub fn set_proxy(
        &mut self,
        group: &str,
        selector: &str,
        node: &str,
        members: u32,
        out: &mut Outgoing,
    ) -> Result<Option<u64>, String> {
        let Some(mirror) = self.mirror else {
            return Err("no federation client to forward records to".into());
        };
        let key = (group.to_owned(), node.to_owned());
        // A proxy the mirror's own leaving ended is gone.
        let sub = self
            .proxies
            .by_node
            .get(&key)
            .copied()
            .filter(|&s| self.subs.owner(s) == Some(mirror));
        match (sub, members) {
            (None, 0) => {
                self.proxies.by_node.remove(&key);
                return Ok(None);
            }
            (Some(sub), 0) => {
                self.proxies.by_node.remove(&key);
                self.unsubscribe(sub, out);
                return Ok(None);
            }
            (Some(sub), n) => self.subs.set_weight(sub, n),
            (None, n) => {
                let sub = self
                    .subs
                    .add_proxy(mirror, group, selector, n)
                    .map_err(|e| match e {
                        SubError::Selector(text) => format!("selector {selector:?}: {text}"),
                        SubError::GroupSelector { selector: here, .. } => {
                            format!("group {group} selects {here:?} here, {selector:?} on {node}")
                        }
                    })?;
                self.proxies.by_node.insert(key.clone(), sub);
            }
        }
        self.drain_group(group, out);
        Ok(self.proxies.by_node.get(&key).copied())
    }

    /// Gives the object on offer here as `name` (the federation's copy) to
    /// a local member of `group`, as a record `from` another node that
    /// gave it to this node's members of `epoch` ([`GroupNote::Members`]);
    /// false when the group has no local member since then (they all
    /// went, the other node gives it to another member) or there is no
    /// such object.
    pub fn route_forwarded(
        &mut self,
        group: &str,
        name: &str,
        from: Forwarded,
        epoch: u64,
        out: &mut Outgoing,
    ) -> bool {
        if self
            .proxies
            .told
            .get(group)
            .is_none_or(|t| t.epoch != epoch)
        {
            return false;
        }
        let Ok(data) = self.data_ref(None, name.to_owned()) else {
            return false;
        };
        // The group's own reference, dropped when the member is done.
        *self.views.entry(data.object).or_default() += 1;
        self.route_record(group, data, Some(from), out);
        true
    }

    /// A record given to a proxy (delivery `event`) is done on its node.
    /// The federation finishes it here rather than through its client's
    /// connection, so that it is done before any later change of that
    /// node's proxy (a record finished after its proxy went would be
    /// given to another member again).
    pub fn finish_proxy_record(&mut self, event: u64, out: &mut Outgoing) {
        if let Some(mirror) = self.mirror {
            self.ack(mirror, event, out);
        }
    }

    /// The notes gathered since the last call (only while a mirror is set:
    /// without a federation nobody takes them).
    pub fn take_group_notes(&mut self) -> Vec<GroupNote> {
        std::mem::take(&mut self.proxies.notes)
    }

    /// A note of every group that has local members now (for a federation
    /// that starts listening, or a peer that links later).
    pub fn note_all_groups(&mut self) {
        if self.mirror.is_none() {
            return;
        }
        let all: Vec<GroupNote> = self
            .proxies
            .told
            .iter()
            .map(|(group, t)| GroupNote::Members {
                group: group.clone(),
                selector: t.selector.clone(),
                members: t.members,
                epoch: t.epoch,
            })
            .collect();
        self.proxies.notes.extend(all);
    }

    /// Notes the local member count of `group` if it changed.
    pub(super) fn note_members(&mut self, group: &str) {
        let members = self.subs.local_members(group).map_or(0, |(_, n)| n);
        let told = &mut self.proxies;
        let note = match (told.told.get_mut(group), members) {
            (None, 0) => return,
            (Some(t), n) if t.members == n => return,
            (Some(_), 0) => {
                let t = told.told.remove(group).expect("just found");
                (t.selector, t.epoch)
            }
            (Some(t), n) => {
                t.members = n;
                (t.selector.clone(), t.epoch)
            }
            (None, n) => {
                let Some((selector, _)) = self.subs.local_members(group) else {
                    return;
                };
                told.last_epoch += 1;
                let t = Told {
                    selector: selector.to_owned(),
                    members: n,
                    epoch: told.last_epoch,
                };
                let note = (t.selector.clone(), t.epoch);
                told.told.insert(group.to_owned(), t);
                note
            }
        };
        if self.mirror.is_some() {
            let (selector, epoch) = note;
            self.proxies.notes.push(GroupNote::Members {
                group: group.to_owned(),
                selector,
                members,
                epoch,
            });
        }
    }

    /// Notes that a record forwarded from another node is done.
    pub(super) fn note_done(&mut self, from: Forwarded) {
        if self.mirror.is_some() {
            self.proxies.notes.push(GroupNote::Done {
                node: from.node,
                event: from.event,
            });
        }
    }
}
