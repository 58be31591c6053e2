//! The consumer threads of the CDO transport: each joins its consumer
//! groups, then takes records until the producer is done and its queues are
//! empty. A record is completed only after its data views are dropped, so
//! the producer's withdraw returns the memory to the pool.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::archive::{Archive, Archiver, Outcome};
use cdo::{Member, Pool, Record};
use crossbeam::channel::Sender;

use super::attributes::{Fetched, CHECKPOINT_GROUP, CHECKPOINT_SELECTOR};
use super::attributes::{OUTPUT_SELECTOR, RENDER_GROUP, STATS_GROUP};
use crate::analysis::consumers::{ArchiverDone, Renderer, StatsConsumer, StatsDone};
use crate::checkpoint::CheckpointError;
use crate::outlet::OutletError;

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

/// A renderer group member: its share of the output records.
pub fn run_renderer(
    pool: &Pool,
    mut renderer: Renderer,
    ready: Sender<()>,
    done: &AtomicBool,
) -> Result<Renderer, OutletError> {
    let member = pool.join(RENDER_GROUP, OUTPUT_SELECTOR)?;
    joined(ready);
    while let Some(record) = next(&member, done) {
        let fetched = fetch_output(pool, &record)?;
        renderer.render(&fetched.view()?)?;
        drop(fetched);
        record.complete();
    }
    Ok(renderer)
}

/// The checkpoint archiver: the only member of the checkpoint group; it
/// stores each checkpoint CDO (bytes and flat attributes) in `archive`.
pub fn run_archiver(
    pool: &Pool,
    archive: Archive,
    ready: Sender<()>,
    done: &AtomicBool,
) -> Result<ArchiverDone, OutletError> {
    let archive_error = |e| OutletError::Checkpoint(CheckpointError::Archive(e));
    let mut archiver = Archiver::join(pool, CHECKPOINT_GROUP, CHECKPOINT_SELECTOR, archive)
        .map_err(archive_error)?;
    joined(ready);
    let mut archived = ArchiverDone::default();
    loop {
        let finished = done.load(Ordering::Acquire);
        // Busy from the wait's start: at most one poll too much per record.
        let start = Instant::now();
        match archiver.next_timeout(POLL).map_err(archive_error)? {
            Some(Outcome::Stored { path, .. }) => {
                archived.checkpoints.push(path);
                archived.busy += start.elapsed();
            }
            Some(Outcome::Skipped { .. }) => {}
            // A checkpoint that could not be archived fails the run.
            Some(Outcome::DeadLettered { name, reason, .. }) => {
                return Err(OutletError::Record { name, reason });
            }
            None if finished => return Ok(archived),
            None => {}
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
    crate::analysis::spawn(&name, dir, move || work(&pool))
}
