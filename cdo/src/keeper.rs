//! Withdrawals the pool completes on its own in process: of offers that
//! outlive their producer
//! ([`ProducerExit::Keep`](crate::engine::ProducerExit::Keep): an offered
//! handle dropped while its minimum lifetime runs), and of offers whose
//! producer's withdrawal timed out (it stays requested, as through a pool
//! manager). The offer stays on offer and served, and one helper thread of
//! the pool withdraws it once its lifetime has ended and no consumer
//! matched with it is still waiting for it, raising the withdraw event,
//! unless its handle withdrew it first.

use crate::events::{Bus, EventKind, Subject};
use crate::registry::{lock, Entry, Offer, Registry};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::warn;

/// How often a kept offer whose lifetime ended is looked at again while
/// consumers still pin it.
const PINNED_RECHECK: Duration = Duration::from_millis(5);

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
}

#[derive(Default)]
struct Inner {
    books: Mutex<Books>,
    wake: Condvar,
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
        self.inner.wake.notify_one();
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
}

impl Drop for Keeper {
    /// Stops the thread; offers still kept go with the pool.
    fn drop(&mut self) {
        lock(&self.inner.books).stop = true;
        self.inner.wake.notify_one();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The helper thread: withdraws each kept offer when it is due, sleeping
/// until the next lifetime ends otherwise.
fn run(inner: &Inner, parts: &PoolParts) {
    let mut books = lock(&inner.books);
    loop {
        if books.stop {
            return;
        }
        let now = Instant::now();
        let due = |k: &Kept| k.offer.expiry.is_none_or(|end| end <= now) && !k.offer.pinned();
        let (ready, waiting): (Vec<Kept>, Vec<Kept>) =
            std::mem::take(&mut books.kept).into_iter().partition(due);
        books.kept = waiting;
        if !ready.is_empty() {
            drop(books);
            ready.into_iter().for_each(|k| withdraw(k, parts));
            books = lock(&inner.books);
            continue;
        }
        let next_end = books
            .kept
            .iter()
            .filter_map(|k| k.offer.expiry)
            .filter(|&e| e > now)
            .min();
        // Due but for a consumer's pin: looked at again shortly.
        let held = books
            .kept
            .iter()
            .any(|k| k.offer.pinned() && k.offer.expiry.is_none_or(|end| end <= now));
        let sleep = match (next_end, held) {
            (_, true) => PINNED_RECHECK,
            (Some(end), false) => end - now,
            (None, false) => Duration::MAX,
        };
        books = match sleep {
            Duration::MAX => inner.wake.wait(books).unwrap_or_else(|p| p.into_inner()),
            d => {
                inner
                    .wake
                    .wait_timeout(books, d)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
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
