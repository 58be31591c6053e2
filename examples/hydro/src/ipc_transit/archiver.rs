//! The archive process of a `--pool-manager` run with checkpoints (`hydro
//! --consumer archive --archive DIR`): the one member of the checkpoint
//! group, a [`cdo::ipc::components::ArchiverClient`] storing each
//! checkpoint CDO (bytes and flat attributes) in the archive, as the
//! in-process archiver does. After each checkpoint it offers its
//! `archived` object; it leaves once its standard input closes (the
//! solver's signal, given after every checkpoint was withdrawn, or its
//! death).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::archive::{Archive, Outcome};
use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::components::ArchiverClient;
use cdo::ipc::wire::Attributes;

use super::{archived_name, group_of, ready_name, ConsumerReport};
use super::{CHECKPOINTS_OUT, CHECKPOINT_SELECTOR};
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

/// Says that the checkpoint of `step` is archived, first withdrawing the
/// `archived` objects in `offered` (oldest first) that the solver has
/// read: it offered this checkpoint only after withdrawing every earlier
/// one but the newest `CHECKPOINTS_OUT - 1`, each once it had read its
/// object (see [`CHECKPOINTS_OUT`]).
fn acknowledge(
    client: &mut Client,
    offered: &mut VecDeque<u64>,
    step: u64,
) -> Result<(), OutletError> {
    let mut read = Vec::new();
    while offered.len() >= CHECKPOINTS_OUT {
        read.extend(offered.pop_front().map(archived_name));
    }
    let read: Vec<&str> = read.iter().map(String::as_str).collect();
    client.withdraw_many(&read)?;
    client.offer(&archived_name(step), &step.to_le_bytes(), Attributes::new())?;
    offered.push_back(step);
    Ok(())
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
    let mut offered = VecDeque::new();
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
                acknowledge(archiver.client_mut(), &mut offered, step)?;
                report.steps.push(step);
                report.busy_seconds += start.elapsed().as_secs_f64();
            }
            // No subsample: every checkpoint is stored.
            Some(Outcome::Skipped { .. }) => {}
            None if stopping => break,
            None => {}
        }
    }
    archiver.leave(Duration::from_secs(cli.consumer_timeout))?;
    Ok(report)
}
