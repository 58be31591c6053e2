//! Replies held for acknowledgements: held when an operation's events
//! await them, released by the last one, or at the deadline by policy.

use std::time::Instant;

use tracing::warn;

use super::{Current, Engine, Outgoing};
use crate::engine::quota::Kind;
use crate::engine::registry::ClientId;
use crate::engine::{Effect, FaultPolicy};
use crate::ipc::wire::{DataRef, ErrorCode, Msg, RequestId};

/// An operation whose replies wait for acknowledgements.
pub(super) struct HeldOp {
    pub(super) client: ClientId,
    pub(super) replies: Outgoing,
    pub(super) missing: usize,
    pub(super) deadline: Instant,
}

impl Engine {
    /// Moves the replies of operation `cur` (request `id`) out of `out`
    /// until its events are acknowledged.
    pub(super) fn hold(
        &mut self,
        cur: Current,
        id: RequestId,
        start: usize,
        now: Instant,
        out: &mut Outgoing,
    ) {
        if !self.clients.contains_key(&cur.client) {
            return self.subs.forget_op(cur.op);
        }
        let mut replies = Outgoing::new();
        let mut i = start;
        while i < out.len() {
            let reply = matches!(&out[i], Effect::Send { to, id: rid, .. } if *rid == id && *to == cur.client);
            if reply {
                replies.push(out.remove(i));
            } else {
                i += 1;
            }
        }
        if replies.is_empty() {
            return self.subs.forget_op(cur.op);
        }
        self.quotas.add(cur.client, Kind::Waiters);
        let held = HeldOp {
            client: cur.client,
            replies,
            missing: cur.awaited,
            deadline: now + self.config.ack_timeout,
        };
        self.held.insert(cur.op, held);
    }

    /// One awaited acknowledgement of operation `op` came (or its
    /// subscriber went); the last one releases its replies.
    pub(super) fn acked(&mut self, op: u64, out: &mut Outgoing) {
        let Some(h) = self.held.get_mut(&op) else {
            return;
        };
        h.missing = h.missing.saturating_sub(1);
        if h.missing == 0 {
            let h = self.held.remove(&op).expect("just found");
            self.quotas.sub(h.client, Kind::Waiters, 1);
            out.extend(h.replies);
        }
    }

    /// Whether an operation waits for acknowledgements or a withdrawal
    /// for a minimum lifetime (so that the host calls
    /// [`Engine::expire`] at [`Engine::next_deadline`]).
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty() || self.next_lifetime_end().is_some()
    }

    /// The earliest acknowledgement deadline or end of a minimum lifetime
    /// that a withdrawal waits for, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let acks = self.held.values().map(|h| h.deadline).min();
        acks.into_iter().chain(self.next_lifetime_end()).min()
    }

    /// Releases the operations whose acknowledgements did not come by
    /// `now`: as they are under best effort, as `AckTimeout` errors under
    /// fail-fast (a demanded view is then taken back); and carries out the
    /// withdrawals whose objects' minimum lifetimes ended by `now`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.now = Some(now);
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&op, _)| op)
            .collect();
        for op in due {
            let h = self.held.remove(&op).expect("listed above");
            self.quotas.sub(h.client, Kind::Waiters, 1);
            self.subs.forget_op(op);
            let waited = self.config.ack_timeout;
            warn!(client = h.client, ?waited, policy = ?self.config.policy, "acknowledgements missing");
            if self.config.policy == FaultPolicy::BestEffort {
                out.extend(h.replies);
                continue;
            }
            for reply in h.replies {
                let Effect::Send {
                    to,
                    id,
                    msg,
                    segment,
                } = reply
                else {
                    continue;
                };
                if let Msg::Data(d) = &msg {
                    self.take_back_view(h.client, d, segment.is_some(), out);
                }
                let text = format!("done, but not acknowledged within {waited:?}");
                let msg = Msg::Error {
                    code: ErrorCode::AckTimeout,
                    text,
                };
                out.push(Effect::Send {
                    to,
                    id,
                    msg,
                    segment: None,
                });
            }
        }
        // A lifetime that ended or a view taken back may have completed a
        // withdrawal (that held a leave).
        self.settle(out);
    }

    /// Undoes the bookkeeping of a view of `d` that `client` was never sent.
    pub(super) fn take_back_view(
        &mut self,
        client: ClientId,
        d: &DataRef,
        with_fd: bool,
        out: &mut Outgoing,
    ) {
        if with_fd {
            if let Some(seg) = self.segments.get_mut(&d.segment) {
                seg.sent_to.remove(&client);
            }
        }
        if let Some(c) = self.clients.get_mut(&client) {
            if let Some(n) = c.held.get_mut(&d.object) {
                *n -= 1;
                if *n == 0 {
                    c.held.remove(&d.object);
                }
            }
        }
        self.release_view(d.object, out);
    }
}
