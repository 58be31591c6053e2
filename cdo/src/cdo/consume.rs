//! The consumer's calls: require, demand, retract.

use super::{Cdo, Pin, Received};
use crate::data::Data;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::lifecycle::{Op, State};
use crate::registry::{Offer, Slot};
use crate::stats::Counter;
use crate::transport::Want;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Cdo<'_> {
    /// Consumer: registers interest; the newest offer on the name, or the
    /// next one, is matched with this handle. Seals the attributes.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless declared or sealed.
    pub fn require(&mut self) -> Result<()> {
        let next = self.check(Op::Require)?;
        let pin = {
            let mut e = self.entry.lock();
            match e.live.last() {
                Some(o) => {
                    o.pin();
                    Pin::Matched(Arc::clone(o))
                }
                None => {
                    let slot = Arc::new(Slot::new());
                    e.waiting.push(Arc::clone(&slot));
                    Pin::Waiting(slot)
                }
            }
        };
        self.pin = Some(pin);
        self.state = next;
        self.pool.counters.bump(Counter::Required);
        self.emit(EventKind::Require, None)
    }

    /// The matched offer, waiting for it until `deadline` (`None`: forever;
    /// a deadline already passed: not at all).
    pub(crate) fn matched_offer(&self, deadline: Option<Instant>) -> Option<Arc<Offer>> {
        let slot = match self.pin.as_ref()? {
            Pin::Matched(o) => return Some(Arc::clone(o)),
            Pin::Waiting(slot) => slot,
        };
        if let Some(o) = slot.get() {
            return Some(Arc::clone(o));
        }
        let mut e = self.entry.lock();
        loop {
            if let Some(o) = slot.get() {
                return Some(Arc::clone(o));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            e.sleepers += 1;
            e = match deadline {
                None => self.entry.cv.wait(e).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.entry
                        .cv
                        .wait_timeout(e, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            e.sleepers -= 1;
        }
    }

    /// Consumer: blocks until the data is available in the wanted place
    /// and returns it (the same bytes as the producer's when the place and
    /// order match).
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless required; memory and layout errors of
    /// a copy (the handle stays required).
    pub fn demand(&mut self) -> Result<Data> {
        let next = self.check(Op::Demand)?;
        let offer = self.take_offer(None);
        self.finish_demand(next, offer, Duration::MAX)
    }

    /// [`Cdo::demand`], giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Cdo::demand`]; [`Error::Timeout`] (still required).
    pub fn demand_timeout(&mut self, timeout: Duration) -> Result<Data> {
        let next = self.check(Op::Demand)?;
        let offer = self.take_offer(Instant::now().checked_add(timeout));
        self.finish_demand(next, offer, timeout)
    }

    /// [`Cdo::demand`] without waiting: `None` (still required) when no
    /// offer has been matched yet.
    ///
    /// # Errors
    /// As [`Cdo::demand`].
    pub fn try_demand(&mut self) -> Result<Option<Data>> {
        let next = self.check(Op::Demand)?;
        match self.take_offer(Some(Instant::now())) {
            None => Ok(None),
            offer => self.finish_demand(next, offer, Duration::ZERO).map(Some),
        }
    }

    /// [`Cdo::matched_offer`] for a demand: a matched offer is moved out
    /// of the pin (no reference count touched), so the demand must put it
    /// back ([`Cdo::restore_pin`]) when it fails.
    fn take_offer(&mut self, deadline: Option<Instant>) -> Option<Arc<Offer>> {
        match self.pin.take() {
            Some(Pin::Matched(o)) => Some(o),
            pin => {
                self.pin = pin;
                self.matched_offer(deadline)
            }
        }
    }

    /// Undoes [`Cdo::take_offer`] after a failed demand: the handle stays
    /// required and matched with `offer`, which it still pins.
    fn restore_pin(&mut self, offer: Arc<Offer>) {
        if self.pin.is_none() {
            self.pin = Some(Pin::Matched(offer));
        }
    }

    /// Hands `offer` (from [`Cdo::take_offer`]) over; the handle goes to
    /// `next` when it succeeds and stays required when it fails.
    fn finish_demand(
        &mut self,
        next: State,
        offer: Option<Arc<Offer>>,
        waited: Duration,
    ) -> Result<Data> {
        let Some(offer) = offer else {
            return Err(Error::Timeout {
                name: Arc::clone(&self.entry.name),
                op: Op::Demand,
                timeout: waited,
            });
        };
        let want = Want::for_offer(&offer.attrs, self.attributes());
        let delivery = match self
            .pool
            .transport
            .deliver(&self.entry.name, &offer.data, &want)
        {
            Ok(d) => d,
            Err(e) => {
                self.restore_pin(offer);
                return Err(e);
            }
        };
        if let (Some(from), Some(to)) = (offer.data.space(), delivery.data.space()) {
            self.pool
                .counters
                .transfer(from, to, delivery.data.len(), delivery.copied);
        }
        offer.unpin();
        self.pin = None;
        self.state = next;
        self.pool.counters.bump(Counter::Demanded);
        let raised = self.emit(EventKind::Demand, Some(&offer));
        self.received = Some(Received {
            version: offer.version,
            attrs: Arc::clone(&offer.attrs),
            data: delivery.data.clone(),
        });
        raised.map(|()| delivery.data)
    }

    /// Consumer: gives up interest without receiving the data.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless required.
    pub fn retract(&mut self) -> Result<()> {
        let next = self.check(Op::Retract)?;
        self.retracted(next);
        self.emit(EventKind::Retract, None)
    }

    /// [`Cdo::retract`] of a required handle that an application drops:
    /// its subscribers hear of it, but nothing waits for their
    /// acknowledgements (as a pool manager retracts a dropped require of
    /// its client); nothing happens in any other state.
    pub(crate) fn retract_dropped(&mut self) {
        if let Ok(next) = self.check(Op::Retract) {
            self.retracted(next);
            if self.pool.bus.active() {
                self.tell(EventKind::Retract, None, None, None, Duration::ZERO);
            }
        }
    }

    /// Gives up the require, now in state `next`.
    fn retracted(&mut self, next: State) {
        self.unmatch();
        self.state = next;
        self.pool.counters.bump(Counter::Retracted);
    }

    pub(super) fn unmatch(&mut self) {
        match self.pin.take() {
            None => {}
            Some(Pin::Matched(o)) => o.unpin(),
            Some(Pin::Waiting(slot)) => {
                let mut e = self.entry.lock();
                e.waiting.retain(|s| !Arc::ptr_eq(s, &slot));
                drop(e);
                if let Some(o) = slot.get() {
                    o.unpin();
                }
            }
        }
    }
}
