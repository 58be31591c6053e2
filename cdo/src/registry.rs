//! The name registry: one [`Entry`] per CDO name with the offers on it and
//! the consumers waiting for one.

use crate::attrs::{AttrView, Attributes};
use crate::data::Data;
use crate::engine::rules::{lifetime_end, lifetime_over};
use crate::events::Participant;
use crossbeam_utils::CachePadded;
use mamba::SpaceId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Instant;

/// Locks, ignoring poisoning: every critical section of this crate leaves
/// its data consistent before anything in it can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One offered version of a CDO. Consumers that were matched with it
/// *pin* it until their hand-over is done; withdrawal waits for no pins.
pub(crate) struct Offer {
    pub name: Arc<str>,
    pub version: u64,
    pub attrs: Arc<Attributes>,
    pub data: Data,
    /// Its place in the pool's offer order ([`Registry::next_order`]): the
    /// order of a replay to a late subscriber.
    pub order: u64,
    /// When the lifetime ends; `None` for no lifetime.
    pub expiry: Option<Instant>,
    /// The participant whose handle offered it.
    pub origin: Participant,
    pins: AtomicUsize,
    /// Threads and tasks waiting for the pins to go.
    waiters: AtomicUsize,
    /// The tasks' wakers; also the lock the threads sleep on.
    wakers: Mutex<Vec<Waker>>,
    cv: Condvar,
}

impl Offer {
    pub(crate) fn view(&self) -> AttrView<'_> {
        AttrView {
            name: &self.name,
            version: Some(self.version),
            place: self.data.place(),
            attrs: &self.attrs,
        }
    }

    pub(crate) fn pin(&self) {
        self.pins.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn unpin(&self) {
        // SeqCst pairs with `wait_unpinned`: either the waiter sees no pins,
        // or this side sees the waiter and wakes it under the lock.
        if self.pins.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiters.load(Ordering::SeqCst) > 0
        {
            let mut wakers = lock(&self.wakers);
            self.cv.notify_all();
            self.waiters.fetch_sub(wakers.len(), Ordering::SeqCst);
            wakers.drain(..).for_each(Waker::wake);
        }
    }

    pub(crate) fn pinned(&self) -> bool {
        self.pins.load(Ordering::SeqCst) > 0
    }

    /// Whether the lifetime has passed.
    pub(crate) fn expired(&self) -> bool {
        lifetime_over(self.expiry, Instant::now)
    }

    /// Wakes `waker` when the pins go (check [`Offer::pinned`] after
    /// registering, not before).
    pub(crate) fn wake_when_unpinned(&self, waker: &Waker) {
        let mut wakers = lock(&self.wakers);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
            self.waiters.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits up to `until` for the pins to go; true when none are left.
    pub(crate) fn wait_unpinned(&self, until: Instant) -> bool {
        let mut guard = lock(&self.wakers);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let done = loop {
            if !self.pinned() {
                break true;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break false;
            };
            guard = self
                .cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        done
    }
}

/// Where a waiting consumer receives the offer it is matched with.
pub(crate) type Slot = OnceLock<Arc<Offer>>;

/// The mutable part of an entry.
#[derive(Default)]
pub(crate) struct EntryState {
    /// Offers not yet withdrawn, oldest first.
    pub live: Vec<Arc<Offer>>,
    /// Consumers that required before any offer.
    pub waiting: Vec<Arc<Slot>>,
    /// Threads blocked in `cv`.
    pub sleepers: usize,
    /// A withdrawn offer nothing holds any more (its data let go): the
    /// allocation of the name's next offer.
    pub spare: Option<Arc<Offer>>,
    /// The data of the name's last withdrawn offer when it was small
    /// enough to be refilled by the name's next write ([`Data::keepable`]);
    /// consumers may still hold views of it.
    pub kept: Data,
}

impl EntryState {
    /// Takes `offer` off the name's offers; false when it was not on
    /// offer (withdrawn already, by its handle or by the pool).
    pub(crate) fn take_live(&mut self, offer: &Arc<Offer>) -> bool {
        match self.live.iter().position(|o| Arc::ptr_eq(o, offer)) {
            Some(i) => {
                self.live.remove(i);
                true
            }
            None => false,
        }
    }

    /// The kept data, when it has `len` bytes in `space`. It may still be
    /// shared: refill it only through [`Data::get_mut`].
    pub(crate) fn take_kept_data(&mut self, len: usize, space: SpaceId) -> Option<Data> {
        if self.kept.len() != len || self.kept.space() != Some(space) {
            return None;
        }
        Some(std::mem::take(&mut self.kept))
    }
}

/// Everything the pool knows about one name.
pub(crate) struct Entry {
    pub name: Arc<str>,
    /// Handles declared on the name and not yet disposed or dropped.
    handles: AtomicUsize,
    pub state: Mutex<EntryState>,
    pub cv: Condvar,
}

impl Entry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, EntryState> {
        lock(&self.state)
    }
}

/// A fast non-cryptographic hash for names (no untrusted input crosses a
/// process boundary here).
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (h >> 29)
    }
}

type Map = HashMap<Arc<str>, Arc<Entry>, BuildHasherDefault<NameHasher>>;

const SHARDS: usize = 64;

/// Name -> entry, sharded to keep threads that work on different names
/// apart.
pub(crate) struct Registry {
    shards: Box<[CachePadded<Mutex<Map>>]>,
    /// The next offer's place in the offer order.
    offers: CachePadded<AtomicU64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
            offers: CachePadded::default(),
        }
    }
}

impl Registry {
    /// A place in the offer order, after every offer that took effect
    /// before this call (one counter orders them all, unlike a clock,
    /// whose reads may tie) and cheaper than a clock read.
    pub(crate) fn next_order(&self) -> u64 {
        self.offers.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, name: &str) -> &Mutex<Map> {
        let mut h = NameHasher::default();
        name.hash(&mut h);
        &self.shards[(h.finish() >> 58) as usize % SHARDS]
    }

    /// The entry of `name`, created if needed, with one more handle on it.
    /// `check` runs only before a name is registered: a registered name
    /// passed it already, so a lookup that finds its entry checks nothing.
    pub(crate) fn acquire<E>(
        &self,
        name: &str,
        check: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<Arc<Entry>, E> {
        let mut map = lock(self.shard(name));
        if let Some(e) = map.get(name) {
            e.handles.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(e));
        }
        check(name)?;
        let name: Arc<str> = Arc::from(name);
        let entry = Arc::new(Entry {
            name: Arc::clone(&name),
            handles: AtomicUsize::new(1),
            state: Mutex::default(),
            cv: Condvar::new(),
        });
        map.insert(name, Arc::clone(&entry));
        Ok(entry)
    }

    /// One more handle on an entry that already has one (so it cannot be
    /// removed meanwhile): no lookup.
    pub(crate) fn retain(&self, entry: &Arc<Entry>) -> Arc<Entry> {
        entry.handles.fetch_add(1, Ordering::Relaxed);
        Arc::clone(entry)
    }

    /// Gives a handle back; the entry goes when the last handle does (every
    /// handle withdraws its offers and retracts its requires first).
    pub(crate) fn release(&self, entry: &Arc<Entry>) {
        if entry.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut map = lock(self.shard(&entry.name));
        if entry.handles.load(Ordering::Acquire) == 0 {
            if let Some(e) = map.get(&*entry.name) {
                if Arc::ptr_eq(e, entry) {
                    map.remove(&*entry.name);
                }
            }
        }
    }

    /// Calls `f` on every offer not yet withdrawn.
    pub(crate) fn for_each_offer(&self, mut f: impl FnMut(&Arc<Offer>)) {
        for shard in self.shards.iter() {
            let entries: Vec<Arc<Entry>> = lock(shard).values().cloned().collect();
            for e in entries {
                e.lock().live.iter().for_each(&mut f);
            }
        }
    }

    /// Names currently known (declared by a live handle).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

/// When an offer with `attrs` made now ends its lifetime; the clock is
/// read only for a lifetime.
fn expiry(attrs: &Attributes) -> Option<Instant> {
    if attrs.lifetime.is_zero() {
        return None;
    }
    lifetime_end(attrs.lifetime, Instant::now())
}

/// Creates an offer record, `order` in the offer order, made by `origin`.
pub(crate) fn new_offer(
    name: &Arc<str>,
    version: u64,
    order: u64,
    attrs: &Arc<Attributes>,
    data: Data,
    origin: Participant,
) -> Arc<Offer> {
    Arc::new(Offer {
        name: Arc::clone(name),
        version,
        expiry: expiry(attrs),
        origin,
        attrs: Arc::clone(attrs),
        data,
        order,
        pins: AtomicUsize::new(0),
        waiters: AtomicUsize::new(0),
        wakers: Mutex::default(),
        cv: Condvar::new(),
    })
}

/// [`new_offer`] in the allocation of `spare` (a withdrawn offer of the
/// same name) when nothing else holds it; the spare's attributes stay
/// when they are the same (shared) ones, touching no reference count.
pub(crate) fn renew_offer(
    spare: Option<Arc<Offer>>,
    name: &Arc<str>,
    version: u64,
    order: u64,
    attrs: &Arc<Attributes>,
    data: Data,
    origin: Participant,
) -> Arc<Offer> {
    let Some(mut spare) = spare else {
        return new_offer(name, version, order, attrs, data, origin);
    };
    let Some(o) = Arc::get_mut(&mut spare) else {
        return new_offer(name, version, order, attrs, data, origin);
    };
    o.version = version;
    o.origin = origin;
    o.expiry = expiry(attrs);
    if !Arc::ptr_eq(&o.attrs, attrs) {
        o.attrs = Arc::clone(attrs);
    }
    o.data = data;
    o.order = order;
    *o.pins.get_mut() = 0;
    *o.waiters.get_mut() = 0;
    o.wakers
        .get_mut()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    spare
}
