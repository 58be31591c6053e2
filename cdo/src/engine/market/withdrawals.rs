//! Withdrawals that wait: for the requires other clients made before them
//! (a require is a promise that the data will be there to demand), and
//! for the object's minimum lifetime (`lifetime_ms`). While one waits the
//! object stays on offer and is served; once nothing holds it, it is
//! withdrawn as at once (and then waits for the views still out).

use std::time::Instant;

use tracing::info;

use super::{Current, Draining, Engine, Outgoing, KEEPER};
use crate::engine::quota::Kind;
use crate::engine::registry::ClientId;
use crate::engine::rules;
use crate::engine::ProducerExit;
use crate::events::EventKind;
use crate::ipc::wire::{ErrorCode, Msg, RequestId};

/// A withdrawal request that waits.
pub(super) struct Withdrawing {
    pub(super) name: String,
    pub(super) owner: ClientId,
    /// The object withdrawn, when the request named it
    /// ([`Msg::WithdrawOffer`]); else the owner's newest of the name when
    /// the withdrawal is carried out.
    pub(super) object: Option<u64>,
    pub(super) id: RequestId,
}

impl Engine {
    /// Client `cid` asks by its request `id` to withdraw `object`, offered
    /// as `name` (`None`: it offered nothing there). A request that
    /// `named` the object withdraws that one; else the client's newest of
    /// the name when the withdrawal is carried out. Withdrawn now, or once
    /// nothing holds it.
    pub(super) fn request_withdrawal(
        &mut self,
        cid: ClientId,
        id: RequestId,
        name: String,
        object: Option<u64>,
        named: bool,
        out: &mut Outgoing,
    ) -> Result<Option<Msg>, (ErrorCode, String)> {
        let Some(object) = object else {
            let code = match self.registry.get(&name) {
                None => ErrorCode::UnknownName,
                Some(_) => ErrorCode::NotOwner,
            };
            return Err((code, name));
        };
        if self.withdrawal_waits(&name, cid, object) {
            // A held operation like one waiting for acknowledgements,
            // under the same quota.
            self.quotas.add(cid, Kind::Waiters);
            self.withdrawing.push(Withdrawing {
                name,
                owner: cid,
                object: named.then_some(object),
                id,
            });
        } else {
            self.withdraw(name, cid, Some(object), id, out);
        }
        Ok(None)
    }

    /// The object a waiting withdrawal takes, while it is on offer.
    pub(super) fn withdrawn_object(&self, w: &Withdrawing) -> Option<u64> {
        match w.object {
            Some(object) => self.registry.get_object(&w.name, object).map(|e| e.object),
            None => self.registry.get_of(&w.name, w.owner).map(|e| e.object),
        }
    }

    /// Whether the withdrawal by `owner` of `object`, offered as `name`,
    /// must wait: another client's require was matched with it (or
    /// `owner`'s own, when it asked for that:
    /// [`Engine::hold_own_requires`]), or the object's minimum lifetime
    /// has not ended.
    pub(super) fn withdrawal_waits(&self, name: &str, owner: ClientId, object: u64) -> bool {
        let own = self
            .clients
            .get(&owner)
            .is_some_and(|c| c.own_requires_hold);
        let except = (!own).then_some(owner);
        self.required_except(name, except, object) || self.lifetime_left(object)
    }

    /// Whether a client other than `except` required `name` and one of
    /// its requires was matched with `object`.
    pub(super) fn required_except(
        &self,
        name: &str,
        except: Option<ClientId>,
        object: u64,
    ) -> bool {
        self.requires
            .get(name)
            .is_some_and(|s| s.iter().any(|(&c, m)| Some(c) != except && m.holds(object)))
    }

    /// Whether the minimum lifetime of `object` has not ended.
    pub(super) fn lifetime_left(&self, object: u64) -> bool {
        let end = self.lifetimes.get(&object).copied();
        end.is_some()
            && self
                .now
                .is_none_or(|now| !rules::lifetime_over(end, || now))
    }

    /// Whether `object` outlives its producer when the producer goes:
    /// [`ProducerExit::Keep`] and a minimum lifetime still to run.
    pub(super) fn kept_on_exit(&self, object: u64) -> bool {
        self.config.producer_exit == ProducerExit::Keep && self.lifetime_left(object)
    }

    /// Hands `object`, which `owner` offered as `name`, to the pool itself
    /// ([`KEEPER`]) as its producer goes: it stays on offer, and its
    /// withdrawal waits, as any other, for its lifetime and for the
    /// requires of other clients; nobody gets its reply.
    pub(super) fn keep_offer(&mut self, name: String, owner: ClientId, object: u64) {
        if !self.registry.set_owner(&name, object, KEEPER) {
            return;
        }
        self.quotas.sub(owner, Kind::Offers, 1);
        info!(client = owner, %name, "producer gone; its offer is kept for its lifetime");
        self.withdrawing.push(Withdrawing {
            name,
            owner: KEEPER,
            object: Some(object),
            id: 0,
        });
    }

    /// When the earliest waiting withdrawal's lifetime ends, if one waits
    /// for a lifetime.
    pub(super) fn next_lifetime_end(&self) -> Option<Instant> {
        if self.lifetimes.is_empty() {
            return None;
        }
        self.withdrawing
            .iter()
            .filter_map(|w| self.withdrawn_object(w))
            .filter_map(|object| self.lifetimes.get(&object).copied())
            .min()
    }

    /// Withdraws `object` (`None`: the newest), which `owner` offered as
    /// `name`, and answers its request `id` now, or once the views still
    /// out are released.
    pub(super) fn withdraw(
        &mut self,
        name: String,
        owner: ClientId,
        object: Option<u64>,
        id: RequestId,
        out: &mut Outgoing,
    ) {
        let object = object.or_else(|| self.registry.get_of(&name, owner).map(|e| e.object));
        let Some(e) = object.and_then(|object| self.take_offer(&name, object)) else {
            // Its earlier withdrawal, waiting for the same thing, took it.
            let msg = Msg::Error {
                code: ErrorCode::UnknownName,
                text: name,
            };
            return self.send(owner, id, msg, None, out);
        };
        self.raise(
            EventKind::Withdraw,
            &name,
            &e.attrs,
            Some(e.version),
            owner,
            out,
        );
        if self.views.contains_key(&e.object) {
            let d = Draining {
                name,
                reply_to: Some((owner, id)),
                segment: e.segment,
            };
            self.draining.insert(e.object, d);
        } else {
            self.unref_segment(e.segment, out);
            self.send(owner, id, Msg::Ok, None, out);
        }
    }

    /// Carries out the waiting withdrawals that nothing holds any more, in
    /// the order they were asked for. Each is its own operation: its reply
    /// waits for the acknowledgements of its withdraw event, as when it is
    /// carried out at once.
    fn check_withdrawals(&mut self, out: &mut Outgoing) {
        if self.withdrawing.is_empty() {
            return;
        }
        let (ready, waiting): (Vec<Withdrawing>, Vec<Withdrawing>) =
            std::mem::take(&mut self.withdrawing)
                .into_iter()
                .partition(|w| match self.withdrawn_object(w) {
                    Some(object) => !self.withdrawal_waits(&w.name, w.owner, object),
                    None => true,
                });
        self.withdrawing = waiting;
        if ready.is_empty() {
            return;
        }
        let handling = self.current.take();
        for w in ready {
            self.quotas.sub(w.owner, Kind::Waiters, 1);
            self.next_op += 1;
            self.current = Some(Current {
                op: self.next_op,
                client: w.owner,
                awaited: 0,
            });
            let start = out.len();
            self.withdraw(w.name, w.owner, w.object, w.id, out);
            let Some(cur) = self.current.take().filter(|c| c.awaited > 0) else {
                continue;
            };
            match self.now {
                Some(now) => self.hold(cur, w.id, start, now, out),
                // Not reached: a withdrawal waits only after a request.
                None => self.subs.forget_op(cur.op),
            }
        }
        self.current = handling;
    }

    /// After anything that may have released a require, a view or a
    /// lifetime: the withdrawals, then the leaves, that can now go on.
    pub(super) fn settle(&mut self, out: &mut Outgoing) {
        self.check_withdrawals(out);
        self.check_leaves(out);
    }
}
