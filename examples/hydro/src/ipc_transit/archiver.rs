//! The archive process of a `--pool-manager` run with checkpoints (`hydro
//! --consumer archive --archive DIR`): the one member of the checkpoint
//! group, a [`cdo::ipc::components::ArchiverClient`] storing each
//! checkpoint CDO (bytes and flat attributes) in the archive, as the
//! in-process archiver does, and marking it done only then, which is what
//! answers the solver's withdrawal of it. It leaves once its standard
//! input closes (the solver's signal, given after every checkpoint was
//! withdrawn, or its death).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::archive::{Archive, Outcome};
use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::components::ArchiverClient;
use cdo::ipc::wire::Attributes;

use super::{group_of, ready_name, ConsumerReport, CHECKPOINT_SELECTOR};
use crate::cdo_transit::attributes::checkpoint_step;
use crate::checkpoint::CheckpointError;
use crate::cli::{Cli, ConsumerRole};
use crate::outlet::OutletError;

/// How long a wait for the next checkpoint lasts before checking for the
/// signal to leave.
const POLL: Duration = Duration::from_millis(200);

/// A flag set once standard input reaches its end (or fails: the solver
/// is gone either way), read on a thread of its own.
///
/// # Errors
/// [`OutletError::Process`] when the thread cannot be started.
fn stop_at_end_of_input() -> Result<Arc<AtomicBool>, OutletError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("hydro-archive-stdin".into())
        .spawn(move || {
            // Whatever comes is ignored: only its end matters.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            flag.store(true, Ordering::Release);
        })
        .map_err(|e| OutletError::Process {
            label: "archive".into(),
            reason: format!("cannot watch standard input: {e}"),
        })?;
    Ok(stop)
}

/// Runs the archive process the command line describes (its `--archive`
/// and `--consumer-timeout`) through the pool manager of `config`: joins
/// the checkpoint group, offers its ready object, and archives until its
/// standard input closes; reports the steps of the checkpoints archived.
///
/// # Errors
/// When `--archive` is missing, the archive cannot be opened or written,
/// or the pool manager fails.
pub fn run_archiver(config: &ClientConfig, cli: &Cli) -> Result<ConsumerReport, OutletError> {
    let dir = cli.archive.as_ref().ok_or_else(|| OutletError::Process {
        label: "archive".into(),
        reason: "no --archive directory".into(),
    })?;
    let archive = Archive::open(dir).map_err(CheckpointError::from)?;
    let role = ConsumerRole::Archive;
    let client = Client::connect(config)?;
    let mut archiver = ArchiverClient::join(client, group_of(role), CHECKPOINT_SELECTOR, archive)?;
    archiver
        .client_mut()
        .offer(&ready_name(role, 0), &0u64.to_le_bytes(), Attributes::new())?;
    let stop = stop_at_end_of_input()?;
    crate::analysis::priority::lower_this_thread();
    let mut report = ConsumerReport::default();
    loop {
        // Read before waiting: the solver signals only once every
        // checkpoint is archived, so a wait after it that brings none is
        // the last.
        let stopping = stop.load(Ordering::Acquire);
        // Busy from the wait's start: at most one poll too much each.
        let start = Instant::now();
        match archiver.next_timeout(POLL)? {
            Some(Outcome::Stored { name, .. }) => {
                let step = checkpoint_step(&name).ok_or_else(|| OutletError::Record {
                    name: name.clone(),
                    reason: "archived, but not a checkpoint".into(),
                })?;
                report.steps.push(step);
                report.busy_seconds += start.elapsed().as_secs_f64();
            }
            // No subsample: every checkpoint is stored.
            Some(Outcome::Skipped { .. }) => {}
            // A checkpoint that could not be archived fails the run.
            Some(Outcome::DeadLettered { name, reason, .. }) => {
                return Err(OutletError::Record { name, reason });
            }
            None if stopping => break,
            None => {}
        }
    }
    archiver.leave(Duration::from_secs(cli.consumer_timeout))?;
    Ok(report)
}
