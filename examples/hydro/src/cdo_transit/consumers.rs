//! The consumer threads of the CDO transport: each joins its consumer
//! groups, then takes records until the producer is done and its queues are
//! empty. A record is completed only after its data views are dropped, so
//! the producer's withdraw returns the memory to the pool.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdo::{Member, Pool, Record};
use crossbeam::channel::Sender;

use super::attributes::{Fetched, CHECKPOINT_GROUP, CHECKPOINT_SELECTOR};
use super::attributes::{OUTPUT_SELECTOR, RENDER_GROUP, STATS_GROUP};
use crate::analysis::consumers::{Renderer, StatsConsumer, StatsDone};
use crate::analysis::io_error;
use crate::outlet::OutletError;
use crate::params::Params;

/// How long an idle consumer waits before checking whether the run is over.
const POLL: Duration = Duration::from_millis(5);

/// The next record of `member`, waiting; `None` once `done` was set and
/// nothing is queued.
fn next(member: &Member<'_>, done: &AtomicBool) -> Option<Record> {
    loop {
        let finished = done.load(Ordering::Acquire);
        if let Some(record) = member.next_timeout(POLL) {
            return Some(record);
        }
        if finished {
            return None;
        }
    }
}

/// Tells the producer, waiting for every consumer to join its groups (or
/// to be gone), that this one has.
fn joined(ready: Sender<()>) {
    // The producer stops waiting when every `ready` is sent or dropped.
    let _ = ready.send(());
}

/// The attributes of the offer `record` delivers.
fn attributes(record: &Record) -> Result<&cdo::Attributes, OutletError> {
    record.attributes().ok_or_else(|| OutletError::Record {
        name: record.name().into(),
        reason: "delivered without an offer".into(),
    })
}

/// Demands the output group `record` announces.
fn fetch_output(pool: &Pool, record: &Record) -> Result<Fetched, OutletError> {
    Fetched::output(pool, record.name(), attributes(record)?)
}

/// The statistics consumer: the only member of its group, every record.
pub fn run_stats(
    pool: &Pool,
    mut stats: StatsConsumer,
    ready: Sender<()>,
    done: &AtomicBool,
) -> Result<StatsDone, OutletError> {
    let member = pool.join(STATS_GROUP, OUTPUT_SELECTOR)?;
    joined(ready);
    while let Some(record) = next(&member, done) {
        let fetched = fetch_output(pool, &record)?;
        stats.take(&fetched.view()?)?;
        drop(fetched);
        record.complete();
    }
    stats.finish()
}

/// A renderer group member: output records (with `analyses`) first, then
/// checkpoints, which the members share through their own group.
pub fn run_renderer(
    pool: &Pool,
    mut renderer: Renderer,
    params: &Params,
    analyses: bool,
    ready: Sender<()>,
    done: &AtomicBool,
) -> Result<Renderer, OutletError> {
    let records = analyses
        .then(|| pool.join(RENDER_GROUP, OUTPUT_SELECTOR))
        .transpose()?;
    let checkpoints = pool.join(CHECKPOINT_GROUP, CHECKPOINT_SELECTOR)?;
    joined(ready);
    loop {
        let finished = done.load(Ordering::Acquire);
        if let Some(record) = records.as_ref().and_then(Member::try_next) {
            let fetched = fetch_output(pool, &record)?;
            renderer.render(&fetched.view()?)?;
            drop(fetched);
            record.complete();
        } else if let Some(record) = checkpoints.try_next() {
            let fetched = Fetched::checkpoint(record.name(), attributes(&record)?, record.data())?;
            renderer.checkpoint(params, &fetched.view()?)?;
            drop(fetched);
            record.complete();
        } else if finished {
            return Ok(renderer);
        } else {
            // Idle; a member waits on one group at a time, so poll both.
            std::thread::sleep(POLL);
        }
    }
}

/// Starts a consumer thread at low priority running `work` on `pool`, for
/// the analyses writing into `dir`.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn<T: Send + 'static>(
    name: String,
    dir: &Path,
    pool: &Arc<Pool>,
    work: impl FnOnce(&Pool) -> Result<T, OutletError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, OutletError>>, OutletError> {
    let pool = Arc::clone(pool);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            crate::analysis::priority::lower_this_thread();
            work(&pool)
        })
        .map_err(io_error(dir))
}
