//! Withdrawals the pool completes on its own in process, as a pool
//! manager completes those nobody waits for: of offers whose handle was
//! dropped while a consumer matched with them still waited for them or
//! their minimum lifetime ran, and of offers whose producer's withdrawal
//! timed out (it stays requested). The offer stays on offer and served,
//! and one helper thread of the pool withdraws it once its lifetime has
//! ended and no consumer matched with it is still waiting for it, raising
//! the withdraw event, unless its handle withdrew it first. When the
//! application that offered it goes, it is withdrawn at once, but for an
//! offer whose lifetime still runs under
//! [`ProducerExit::Keep`](crate::engine::ProducerExit::Keep)
//! (offer-and-exit).

use crate::engine::rules::lifetime_over;
use crate::events::{Bus, EventKind, Participant, Subject};
use crate::registry::{lock, Entry, Offer, Registry};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::warn;

/// What withdrawing a kept offer touches: the pool's parts, shared with
/// the helper thread.
#[derive(Clone)]
pub(crate) struct PoolParts {
    pub registry: Arc<Registry>,
    pub bus: Arc<Bus>,
    /// How long a withdraw event waits for its acknowledgements.
    pub ack_timeout: Duration,
}

/// One offer kept after its producer went, with the handle it holds on
/// its name's entry.
struct Kept {
    entry: Arc<Entry>,
    offer: Arc<Offer>,
}

#[derive(Default)]
struct Books {
    kept: Vec<Kept>,
    stop: bool,
    /// Set when something the thread waits for happened (an offer kept,
    /// an offer's last pin gone, the pool going) since it last looked.
    woken: bool,
}

#[derive(Default)]
struct Inner {
    books: Mutex<Books>,
    wake: Condvar,
}

impl Inner {
    /// Wakes the thread, which then looks at every kept offer again.
    fn rouse(&self) {
        lock(&self.books).woken = true;
        self.wake.notify_one();
    }
}

/// Called by an offer when its last pin goes ([`Offer::wake_when_unpinned`]),
/// under the offer's waker lock: the thread never takes that lock while it
/// holds its books, so the two cannot wait for each other.
impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        self.rouse();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rouse();
    }
}

/// The kept offers of one pool and the thread that withdraws them,
/// started with the first.
#[derive(Default)]
pub(crate) struct Keeper {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Keeper {
    /// Withdraws `offer`, on offer under `entry`, once its lifetime ended
    /// and nothing pins it (holding a handle on the name until then); an
    /// offer kept already is kept once.
    pub(crate) fn keep(&self, entry: &Arc<Entry>, offer: Arc<Offer>, parts: &PoolParts) {
        {
            let mut books = lock(&self.inner.books);
            if books.kept.iter().any(|k| Arc::ptr_eq(&k.offer, &offer)) {
                return;
            }
            let entry = parts.registry.retain(entry);
            books.kept.push(Kept { entry, offer });
        }
        self.inner.rouse();
        let mut thread = lock(&self.thread);
        if thread.is_none() {
            let (inner, parts) = (Arc::clone(&self.inner), parts.clone());
            let spawned = std::thread::Builder::new()
                .name("cdo-keeper".into())
                .spawn(move || run(&inner, &parts));
            match spawned {
                Ok(handle) => *thread = Some(handle),
                // The offers stay on offer until the pool goes.
                Err(e) => warn!(error = %e, "cannot start the thread that withdraws kept offers"),
            }
        }
    }

    /// Participant `origin` went: its kept offers are withdrawn now, as
    /// a pool manager withdraws those of a client that leaves or dies,
    /// but for those whose minimum lifetime still runs when
    /// `keep_lifetimes` ([`ProducerExit::Keep`](crate::engine::ProducerExit::Keep)),
    /// which stay kept until it ends.
    pub(crate) fn producer_gone(
        &self,
        origin: Participant,
        keep_lifetimes: bool,
        parts: &PoolParts,
    ) {
        let goes = |k: &Kept| k.offer.origin == origin && (!keep_lifetimes || k.offer.expired());
        let gone: Vec<Kept> = {
            let mut books = lock(&self.inner.books);
            let (gone, kept) = std::mem::take(&mut books.kept).into_iter().partition(goes);
            books.kept = kept;
            gone
        };
        gone.into_iter().for_each(|k| withdraw(k, parts));
    }
}

impl Drop for Keeper {
    /// Stops the thread; offers still kept go with the pool (let go of
    /// here: their wakers hold the books).
    fn drop(&mut self) {
        lock(&self.inner.books).stop = true;
        self.inner.rouse();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
        lock(&self.inner.books).kept.clear();
    }
}

/// The helper thread: withdraws each kept offer when it is due, sleeping
/// until the next lifetime ends, or until a due offer's last pin goes,
/// otherwise.
fn run(inner: &Arc<Inner>, parts: &PoolParts) {
    let waker = Waker::from(Arc::clone(inner));
    loop {
        let mut books = lock(&inner.books);
        if books.stop {
            return;
        }
        books.woken = false;
        let now = Instant::now();
        let ended = |k: &Kept| lifetime_over(k.offer.expiry, || now);
        let due = |k: &Kept| ended(k) && !k.offer.pinned();
        let (ready, waiting): (Vec<Kept>, Vec<Kept>) =
            std::mem::take(&mut books.kept).into_iter().partition(due);
        books.kept = waiting;
        if !ready.is_empty() {
            drop(books);
            ready.into_iter().for_each(|k| withdraw(k, parts));
            continue;
        }
        let next_end = books
            .kept
            .iter()
            .filter_map(|k| k.offer.expiry)
            .filter(|&e| e > now)
            .min();
        // Due but for a consumer's pin: woken when the last pin goes. The
        // wakers are registered without the books' lock (see `Wake`), and
        // a pin gone meanwhile sets `woken`.
        let pinned: Vec<Arc<Offer>> = books
            .kept
            .iter()
            .filter(|k| ended(k))
            .map(|k| Arc::clone(&k.offer))
            .collect();
        drop(books);
        pinned.iter().for_each(|o| o.wake_when_unpinned(&waker));
        if pinned.iter().any(|o| !o.pinned()) {
            continue;
        }
        let books = lock(&inner.books);
        if books.woken || books.stop {
            continue;
        }
        drop(match next_end {
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                let waited = inner.wake.wait_timeout(books, left);
                waited.unwrap_or_else(|p| p.into_inner()).0
            }
            None => inner.wake.wait(books).unwrap_or_else(|p| p.into_inner()),
        });
    }
}

/// Withdraws a kept offer, unless its handle did: off the name's offers,
/// its withdraw event raised; its handle on the name given back.
fn withdraw(k: Kept, parts: &PoolParts) {
    if !k.entry.lock().take_live(&k.offer) {
        parts.registry.release(&k.entry);
        return;
    }
    let subject = Subject {
        name: &k.entry.name,
        version: Some(k.offer.version),
        place: k.offer.data.place(),
        attrs: &k.offer.attrs,
        origin: k.offer.origin,
    };
    if !parts
        .bus
        .emit(EventKind::Withdraw, subject, parts.ack_timeout)
    {
        warn!(name = %k.entry.name, "acknowledgements of a kept offer's withdrawal missing");
    }
    parts.registry.release(&k.entry);
}
