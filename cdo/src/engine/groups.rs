//! One consumer group's books, the same for both hosts: the pool manager
//! keeps them in the engine's subscriptions, the in-process pool under
//! each group's lock. The records `R` are the host's own (a data
//! reference and where it came from; a pinned offer).
//!
//! A group's members are *seats*. Each record goes to the seat with the
//! least load per weight among those with room (fewer than
//! [`GROUP_WINDOW`] records per unit of weight given and not done), ties
//! by how many records each was given since the membership last changed
//! (weighted round robin), then in order from where the last choice left
//! off. A record no seat may take waits in the group, in order. A seat
//! that leaves gives the records it had not finished back to the front of
//! the group's queue; when the last seat goes, the queue is released
//! unless the group keeps it for a member that joins later. A seat may be
//! a *proxy* of another node's members: it stands for `weight` of them,
//! and records another node forwarded here go to local seats only.

use std::collections::VecDeque;

use super::subs::{GROUP_WINDOW, MAX_PROXY_WEIGHT};

/// One member of a group.
struct Seat {
    id: u64,
    /// Records given and not done.
    load: u32,
    /// Members it stands for: 1, or a proxy's count.
    weight: u32,
    /// Records given since the membership last changed.
    served: u64,
    /// Whether it stands for another node's members.
    proxy: bool,
}

/// How a seat stands for [`pick_weighted`].
struct Share {
    load: u64,
    weight: u64,
    served: u64,
}

/// Which of `n` seats gets the next record: of those `share` names (the
/// others are skipped) with room (a load under `weight` windows), the
/// least loaded per weight, then the least served per weight, then the
/// first from `cursor`. `None`: every one is full.
fn pick_weighted(n: usize, cursor: usize, share: impl Fn(usize) -> Option<Share>) -> Option<usize> {
    (0..n)
        .map(|k| (cursor + k) % n)
        .filter_map(|i| share(i).map(|s| (i, s)))
        .filter(|(_, s)| s.load < s.weight * u64::from(GROUP_WINDOW))
        .min_by(|(_, a), (_, b)| {
            (a.load * b.weight)
                .cmp(&(b.load * a.weight))
                .then((a.served * b.weight).cmp(&(b.served * a.weight)))
        })
        .map(|(i, _)| i)
}

/// The seats of one consumer group and the records waiting in it.
pub(crate) struct GroupBook<R> {
    /// Seats, in join order.
    seats: Vec<Seat>,
    /// Where the next tie-break starts.
    cursor: usize,
    /// Records no seat could take yet, oldest first.
    queued: VecDeque<R>,
    /// Whether the queue outlives the last seat.
    keep_orphans: bool,
}

impl<R> GroupBook<R> {
    /// A group without seats; `keep_orphans`: whether its queued records
    /// wait for a member that joins after the last one left.
    pub(crate) fn new(keep_orphans: bool) -> Self {
        GroupBook {
            seats: Vec::new(),
            cursor: 0,
            queued: VecDeque::new(),
            keep_orphans,
        }
    }

    /// Adds seat `id`, standing for `weight` members (a `proxy` of another
    /// node's, or 1 local member).
    pub(crate) fn join(&mut self, id: u64, weight: u32, proxy: bool) {
        self.seats.push(Seat {
            id,
            load: 0,
            weight: weight.clamp(1, MAX_PROXY_WEIGHT),
            served: 0,
            proxy,
        });
        self.reset_served();
    }

    /// Seat `id` now stands for `weight` members.
    pub(crate) fn set_weight(&mut self, id: u64, weight: u32) {
        if let Some(s) = self.seats.iter_mut().find(|s| s.id == id) {
            s.weight = weight.clamp(1, MAX_PROXY_WEIGHT);
        }
        self.reset_served();
    }

    /// A change of seats or weights: weighted round robin starts anew.
    fn reset_served(&mut self) {
        self.seats.iter_mut().for_each(|s| s.served = 0);
    }

    /// The seat that gets the next record (a local one when `local_only`;
    /// seat `skip` only when it is alone), or `None` when all are full.
    fn pick(&self, local_only: bool, skip: Option<u64>) -> Option<usize> {
        let (seats, n) = (&self.seats, self.seats.len());
        pick_weighted(n, self.cursor, |i| {
            let s = &seats[i];
            let skipped = skip == Some(s.id) && n > 1;
            let elsewhere = local_only && s.proxy;
            (!skipped && !elsewhere).then(|| Share {
                load: s.load.into(),
                weight: s.weight.into(),
                served: s.served,
            })
        })
    }

    /// Gives a record to seat `i`: returns its id.
    fn give(&mut self, i: usize) -> u64 {
        self.cursor = (i + 1) % self.seats.len();
        let s = &mut self.seats[i];
        s.load += 1;
        s.served += 1;
        s.id
    }

    /// Gives `record` to the seat [`GroupBook`] picks (a local one when
    /// `local_only`) and returns that seat's id with it, or queues it
    /// behind the records waiting (`None`).
    pub(crate) fn route(&mut self, record: R, local_only: bool) -> Option<(u64, R)> {
        match self.pick(local_only, None) {
            Some(i) => Some((self.give(i), record)),
            None => {
                self.queued.push_back(record);
                None
            }
        }
    }

    /// The oldest queued record, when a seat may take it now (a local one
    /// for a record `local_only` says so of); route it next.
    pub(crate) fn take_queued(&mut self, local_only: impl Fn(&R) -> bool) -> Option<R> {
        let front = self.queued.front()?;
        self.pick(local_only(front), None)?;
        self.queued.pop_front()
    }

    /// Seat `id` finished one of its records.
    pub(crate) fn done(&mut self, id: u64) {
        if let Some(s) = self.seats.iter_mut().find(|s| s.id == id) {
            s.load = s.load.saturating_sub(1);
        }
    }

    /// Seat `id` gives back one record it had not finished: it goes to
    /// another seat (a local one when `local_only`; to the same one when
    /// it is alone) and that seat's id comes back with it, or it waits at
    /// the front of the queue (`None` from both). Without seats and
    /// without kept orphans it is released: the record comes back as
    /// `Err`.
    pub(crate) fn give_back(
        &mut self,
        id: u64,
        record: R,
        local_only: bool,
    ) -> Result<Option<(u64, R)>, R> {
        self.done(id);
        if self.seats.is_empty() && !self.keep_orphans {
            return Err(record);
        }
        match self.pick(local_only, Some(id)) {
            Some(i) => Ok(Some((self.give(i), record))),
            None => {
                self.queued.push_front(record);
                Ok(None)
            }
        }
    }

    /// Seat `id` leaves, giving back `unfinished` (oldest first) to the
    /// front of the queue. Returns the records this releases: all queued
    /// ones when it was the last seat and orphans are not kept, or, when
    /// only proxies remain, those `forwarded` from another node (their node
    /// gives them to its other members).
    pub(crate) fn leave(
        &mut self,
        id: u64,
        unfinished: Vec<R>,
        forwarded: impl Fn(&R) -> bool,
    ) -> Vec<R> {
        self.seats.retain(|s| s.id != id);
        self.cursor = 0;
        self.reset_served();
        for record in unfinished.into_iter().rev() {
            self.queued.push_front(record);
        }
        if self.seats.is_empty() && !self.keep_orphans {
            return self.queued.drain(..).collect();
        }
        if self.seats.iter().all(|s| s.proxy) {
            let (gone, kept) = self.queued.drain(..).partition(|r| forwarded(r));
            self.queued = kept;
            return gone.into();
        }
        Vec::new()
    }

    /// Whether no seat is left.
    pub(crate) fn has_no_seat(&self) -> bool {
        self.seats.is_empty()
    }

    /// How many seats are local members (not proxies).
    pub(crate) fn local_seats(&self) -> usize {
        self.seats.iter().filter(|s| !s.proxy).count()
    }

    /// How many records wait in the group.
    pub(crate) fn queued_len(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(seats: &[u64]) -> GroupBook<u32> {
        let mut b = GroupBook::new(false);
        seats.iter().for_each(|&id| b.join(id, 1, false));
        b
    }

    #[test]
    fn records_go_round_robin_up_to_the_window_then_queue() {
        let mut b = book(&[1, 2]);
        let seats: Vec<u64> = (0..2 * GROUP_WINDOW)
            .map(|r| b.route(r, false).expect("room").0)
            .collect();
        assert_eq!(seats[..4], [1, 2, 1, 2]);
        assert_eq!(b.route(99, false), None);
        assert_eq!(b.queued_len(), 1);
        assert_eq!(b.take_queued(|_| false), None, "every seat is full");
        b.done(2);
        assert_eq!(b.take_queued(|_| false), Some(99));
        assert_eq!(b.route(99, false), Some((2, 99)));
    }

    #[test]
    fn a_leaver_s_records_go_first_and_the_last_leaver_releases_them() {
        let mut b = book(&[1, 2]);
        for r in 0..2 * GROUP_WINDOW {
            b.route(r, false);
        }
        b.route(100, false);
        assert!(b.leave(1, vec![0, 2], |_| false).is_empty());
        assert_eq!(b.queued_len(), 3);
        b.done(2);
        assert_eq!(
            b.take_queued(|_| false),
            Some(0),
            "the leaver's oldest first"
        );
        assert_eq!(b.leave(2, vec![], |_| false), vec![2, 100]);
    }

    #[test]
    fn a_given_back_record_goes_to_another_seat_unless_alone() {
        let mut b = book(&[1, 2]);
        assert_eq!(b.route(7, false), Some((1, 7)));
        assert_eq!(b.give_back(1, 7, false), Ok(Some((2, 7))));
        let mut alone = book(&[5]);
        alone.route(8, false);
        assert_eq!(alone.give_back(5, 8, false), Ok(Some((5, 8))));
        assert!(alone.leave(5, vec![], |_| false).is_empty());
        assert_eq!(alone.give_back(5, 8, false), Err(8), "no seat: released");
    }

    #[test]
    fn proxies_weigh_and_take_no_forwarded_records() {
        let mut b = GroupBook::new(false);
        b.join(1, 1, false);
        b.join(2, 3, true);
        let to_proxy = (0..8)
            .filter_map(|r| b.route(r, false))
            .filter(|(s, _)| *s == 2)
            .count();
        assert_eq!(to_proxy, 6, "three of every four to the weight-3 proxy");
        assert_eq!(b.route(50, true).map(|(s, _)| s), Some(1));
        let mut only_proxy = GroupBook::new(false);
        only_proxy.join(1, 1, false);
        only_proxy.join(2, 1, true);
        for r in 0..GROUP_WINDOW {
            assert_eq!(only_proxy.route(r, true).map(|(s, _)| s), Some(1));
        }
        assert_eq!(only_proxy.route(60, true), None, "the local seat is full");
        assert_eq!(only_proxy.leave(1, vec![], |&r| r == 60), vec![60]);
    }

    #[test]
    fn kept_orphans_wait_for_the_next_member() {
        let mut b = GroupBook::new(true);
        b.join(1, 1, false);
        b.route(3, false);
        assert!(b.leave(1, vec![3], |_| false).is_empty());
        assert_eq!(b.give_back(1, 4, false), Ok(None));
        b.join(2, 1, false);
        assert_eq!(b.take_queued(|_| false), Some(4));
        assert_eq!(b.take_queued(|_| false), Some(3));
    }
}
