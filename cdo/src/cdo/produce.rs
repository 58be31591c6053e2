//! The producer's calls: data, seal, offer, withdraw.

use super::Cdo;
use crate::attrs::{attach_sets_size, Attributes};
use crate::data::{Buffer, Data, KEPT_DATA_MAX};
use crate::engine::rules::{admits_offer, next_version};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::lifecycle::{Op, State};
use crate::registry::renew_offer;
use crate::stats::Counter;
use mamba::Policy;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attributes that set nothing but `size`, as every offer of a handle that
/// set no attributes carries: shared per thread (the last size used), so
/// that such offers allocate no attributes.
fn size_only_attributes(size: u64) -> Arc<Attributes> {
    thread_local!(static LAST: RefCell<Option<Arc<Attributes>>> = const { RefCell::new(None) });
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(a) if a.size == Some(size) => Arc::clone(a),
            _ => Arc::clone(last.insert(Arc::new(Attributes {
                size: Some(size),
                ..Attributes::default()
            }))),
        }
    })
}

impl Cdo<'_> {
    /// The size the attributes imply ([`Attributes::implied_size`]).
    fn implied_size(&self) -> Result<Option<u64>> {
        self.attributes()
            .implied_size()
            .map_err(|reason| self.inconsistent(reason))
    }

    /// Checks that `len` bytes may be attached, setting the size when none
    /// is implied ([`attach_sets_size`]).
    fn check_attached_len(&mut self, len: u64) -> Result<()> {
        let sealed = self.state != State::Declared;
        match attach_sets_size(self.implied_size()?, len, sealed) {
            Err(reason) => Err(self.inconsistent(reason)),
            Ok(false) => Ok(()),
            Ok(true) => {
                match self.attrs {
                    None => self.attrs = Some(size_only_attributes(len)),
                    Some(_) => self.attributes_mut().size = Some(len),
                }
                Ok(())
            }
        }
    }

    /// Producer: attaches data (its length becomes the size if unset).
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless declared or sealed,
    /// [`Error::Inconsistent`] when data is attached already or the length
    /// contradicts the size.
    pub fn attach(&mut self, buffer: Buffer) -> Result<()> {
        self.attach_slot(buffer).map(|_| ())
    }

    /// Producer: attaches data that may be shared: the same staging block
    /// offered again each time, once nothing holds it from the previous
    /// offer ([`Data::get_mut`] to refill it), with no allocation. Empty
    /// data attaches nothing (a zero-length object).
    ///
    /// # Errors
    /// As [`Cdo::attach`].
    pub fn attach_data(&mut self, data: Data) -> Result<()> {
        if data.is_empty() {
            self.check(Op::AttachData)?;
            return self.check_attached_len(0);
        }
        self.attach_slot(data).map(|_| ())
    }

    /// Attaches `buffer` after the checks of [`Cdo::attach`] and returns it.
    fn attach_slot(&mut self, buffer: impl Into<Data>) -> Result<&mut Data> {
        let buffer = buffer.into();
        self.check(Op::AttachData)?;
        if self.buffer.is_some() {
            return Err(self.inconsistent("data is attached already".into()));
        }
        self.check_attached_len(buffer.len() as u64)?;
        Ok(self.buffer.insert(buffer))
    }

    /// Producer: allocates the data where `policy` says, with the size the
    /// attributes give, and returns it for filling.
    ///
    /// # Errors
    /// As [`Cdo::attach`]; [`Error::Inconsistent`] without a size; memory
    /// errors.
    pub fn allocate(&mut self, policy: &Policy) -> Result<&mut [u8]> {
        self.check(Op::AttachData)?;
        let size = match self.implied_size()? {
            Some(s) if s > 0 => s,
            _ => return Err(self.inconsistent("allocation needs a non-zero size".into())),
        };
        let buffer = Buffer::allocate(&self.pool.mamba, size as usize, policy)?;
        let name = Arc::clone(&self.entry.name);
        match self.attach_slot(buffer)?.get_mut() {
            Some(b) => b.as_mut_slice(),
            None => Err(Error::Inconsistent {
                name,
                reason: "fresh data is shared".into(),
            }),
        }
    }

    /// Producer: copies `bytes` into data placed by the pool's default
    /// policy (nothing for an empty slice). A name offered again with the
    /// same small size (at most [`KEPT_DATA_MAX`] bytes) refills the data
    /// of its last withdrawn offer when no consumer holds that any more,
    /// instead of allocating.
    ///
    /// # Errors
    /// As [`Cdo::attach`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.check(Op::AttachData)?;
        if bytes.is_empty() {
            return self.check_attached_len(0);
        }
        let mut data = self.kept_data(bytes.len()).unwrap_or_default();
        match data.get_mut() {
            Some(kept) => kept.as_mut_slice()?.copy_from_slice(bytes),
            None => {
                // Nothing kept, or a consumer still reads what was: that
                // stays theirs.
                let mut fresh =
                    Buffer::allocate_in(&self.pool.mamba, bytes.len(), &self.pool.write_spaces)?;
                fresh.as_mut_slice()?.copy_from_slice(bytes);
                data = fresh.into();
            }
        }
        self.attach_slot(data)?;
        self.written = true;
        Ok(())
    }

    /// The data the name's last withdrawn offer kept, when it has `len`
    /// bytes where a write would place them now: a name offered again and
    /// again with small objects allocates nothing after the first.
    fn kept_data(&self, len: usize) -> Option<Data> {
        if len > KEPT_DATA_MAX {
            return None;
        }
        let space = *self.pool.write_spaces.first()?;
        self.entry.lock().take_kept_data(len, space)
    }

    /// Freezes the attributes; checks they agree with each other, with the
    /// data, and with the schema's required keys.
    ///
    /// # Errors
    /// [`Error::InvalidState`], [`Error::Inconsistent`],
    /// [`Error::MissingAttribute`].
    pub fn seal(&mut self) -> Result<()> {
        let next = self.check(Op::Seal)?;
        let size = self.implied_size()?;
        if let (Some(s), Some(b)) = (size, &self.buffer) {
            if s != b.len() as u64 {
                return Err(self.inconsistent(format!("size {s} but {} bytes", b.len())));
            }
        }
        self.pool
            .schema
            .check_required(&self.entry.name, &self.attributes().user)?;
        if size != self.attributes().size {
            self.attributes_mut().size = size;
        }
        self.state = next;
        self.pool.counters.bump(Counter::Sealed);
        self.emit(EventKind::Seal, None)
    }

    /// Producer: publishes the data. The CDO is immutable from here on and
    /// consumers see it whole.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless sealed, [`Error::Inconsistent`] when
    /// the data is missing, [`Error::AlreadyOffered`] under the `reject`
    /// duplicate policy.
    pub fn offer(&mut self) -> Result<()> {
        let next = self.check(Op::Offer)?;
        let size = self.attributes().size.unwrap_or(0);
        let have = self.buffer.as_ref().map_or(0, |b| b.len() as u64);
        if size != have {
            return Err(self.inconsistent(format!("size {size} but {have} bytes attached")));
        }
        // Changes to the handle wait until nothing can fail any more: new
        // attributes (with the size) are kept aside until then.
        let sized = match &self.attrs {
            Some(a) if a.size.is_none() => Some(Arc::new(Attributes {
                size: Some(0),
                ..(**a).clone()
            })),
            _ => None,
        };
        let mut publish = |attrs: &Arc<Attributes>| {
            let mut e = self.entry.lock();
            if !admits_offer(self.pool.config.duplicates, !e.live.is_empty()) {
                return Err(Error::AlreadyOffered {
                    name: Arc::clone(&self.entry.name),
                });
            }
            let data = self.buffer.take().unwrap_or_default();
            let spare = e.spare.take();
            let version = next_version(e.live.last().map(|o| o.version));
            let order = self.pool.registry.next_order();
            let offer = renew_offer(
                spare,
                &self.entry.name,
                version,
                order,
                attrs,
                data,
                self.origin,
            );
            for slot in e.waiting.drain(..) {
                offer.pin();
                // Each slot is filled once: it left `waiting` just now.
                let _ = slot.set(Arc::clone(&offer));
            }
            e.live.push(Arc::clone(&offer));
            if e.sleepers > 0 {
                self.entry.cv.notify_all();
            }
            Ok(offer)
        };
        // A token (no attributes set) offers this thread's shared token
        // attributes, which the handle then reports without holding them.
        let offer = match (&sized, &self.attrs) {
            (Some(sized), _) => publish(sized),
            (None, Some(own)) => publish(own),
            (None, None) => super::TOKEN.with(|token| publish(token)),
        }?;
        if let Some(sized) = sized {
            self.attrs = Some(sized);
        }
        self.state = next;
        self.pool.counters.bump(Counter::Offered);
        self.pool.streams.dispatch(&offer);
        let raised = self.emit(EventKind::Offer, Some(&offer));
        self.offer = Some(offer);
        raised
    }

    /// Producer: takes the offer back, waiting until no consumer transfer
    /// is in flight and the lifetime has passed.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless offered.
    pub fn withdraw(&mut self) -> Result<()> {
        self.withdraw_until(None, false).map(|_| ())
    }

    /// [`Cdo::withdraw`], giving up after `timeout`. A withdrawal that
    /// timed out stays requested, as through a pool manager: the pool
    /// completes it once nothing holds the offer (raising its withdraw
    /// event then), and a later call finds it done.
    ///
    /// # Errors
    /// [`Error::InvalidState`], [`Error::Timeout`] (still offered).
    pub fn withdraw_timeout(&mut self, timeout: Duration) -> Result<()> {
        match self.withdraw_until(Instant::now().checked_add(timeout), true)? {
            true => Ok(()),
            false => Err(Error::Timeout {
                name: Arc::clone(&self.entry.name),
                op: Op::Withdraw,
                timeout,
            }),
        }
    }

    /// [`Cdo::withdraw`] without waiting: false (and still offered) when a
    /// transfer is in flight or the lifetime has not passed.
    ///
    /// # Errors
    /// [`Error::InvalidState`].
    pub fn try_withdraw(&mut self) -> Result<bool> {
        self.withdraw_until(Some(Instant::now()), false)
    }

    /// Withdraws, waiting until `deadline`: false (still offered) when it
    /// passed, the withdrawal then left to the pool when `requested`.
    pub(super) fn withdraw_until(
        &mut self,
        deadline: Option<Instant>,
        requested: bool,
    ) -> Result<bool> {
        let next = self.check(Op::Withdraw)?;
        let Some(offer) = self.offer.as_ref() else {
            return Err(self.inconsistent("offered without an offer".into()));
        };
        let (version, place, data) = loop {
            {
                let mut e = self.entry.lock();
                let Some(at) = e.live.iter().position(|o| Arc::ptr_eq(o, offer)) else {
                    // The pool completed a withdrawal that timed out
                    // before, and raised its event then.
                    let version = offer.version;
                    drop(e);
                    self.offer = None;
                    self.withdrawn_as(next, version);
                    return Ok(true);
                };
                if !offer.pinned() && offer.expired() {
                    e.live.remove(at);
                    let (version, place) = (offer.version, offer.data.place());
                    // Nothing else holds the record (no consumer group
                    // does): it becomes the allocation of the name's next
                    // offer, under the lock taken anyway. Its data is kept
                    // for the name's next write when small and made by a
                    // write (never the application's own), and let go
                    // otherwise, as is what was kept before (both after
                    // the lock).
                    let mut withdrawn = self.offer.take();
                    let written = self.written;
                    let data = withdrawn.as_mut().and_then(Arc::get_mut).map(|o| {
                        let data = std::mem::take(&mut o.data);
                        let (keep, let_go) = match written && data.keepable() {
                            true => (data, Data::empty()),
                            false => (Data::empty(), data),
                        };
                        (std::mem::replace(&mut e.kept, keep), let_go)
                    });
                    if data.is_some() {
                        e.spare = withdrawn;
                    }
                    break (version, place, data);
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                if requested {
                    let offer = Arc::clone(offer);
                    self.pool
                        .keeper
                        .keep(&self.entry, offer, &self.pool.parts());
                }
                return Ok(false);
            }
            if offer.pinned() {
                // Wakes when unpinned, or at the deadline.
                offer.wait_unpinned(deadline.unwrap_or(now + Duration::from_secs(3600)));
            } else {
                let expiry = offer.expiry.unwrap_or(now);
                let wake = deadline.map_or(expiry, |d| d.min(expiry));
                std::thread::sleep(wake.saturating_duration_since(now));
            }
        };
        drop(data);
        self.withdrawn_as(next, version);
        self.emit_about(EventKind::Withdraw, Some(version), place, None)?;
        Ok(true)
    }

    /// Records that the offer of `version` was withdrawn, the handle now in
    /// state `next`.
    fn withdrawn_as(&mut self, next: State, version: u64) {
        self.withdrawn = Some(version);
        self.state = next;
        self.pool.counters.bump(Counter::Withdrawn);
    }
}
