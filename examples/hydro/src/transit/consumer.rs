//! A consumer, thread or process alike: joins its role's consumer group on
//! an [`app::Pool`](Pool), says it is ready, then takes the records the
//! group gives it until an end marker, runs the shared analysis on
//! zero-copy views of their fields, acknowledges each record, and leaves;
//! or, as the archiver, stores each checkpoint the checkpoint group gives
//! it until told to leave.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::app::{Archiver, Cdo, Member, Pool, Record, View};
use cdo::archive::{Archive, Outcome};

use super::attributes::{is_end, meta_of};
use super::{checkpoint_step, done_name, field_name, group_of, ready_name, role_name, seq_of};
use super::{ConsumerReport, CHECKPOINT_SELECTOR, RECORD_SELECTOR};
use crate::analysis::consumers::{Renderer, StatsConsumer};
use crate::analysis::AnalysisOptions;
use crate::checkpoint::CheckpointError;
use crate::cli::{Cli, ConsumerRole};
use crate::outlet::OutletError;
use crate::record::{RecordMeta, RecordView};
use crate::state::NVAR;

/// How long a wait for the next record lasts before checking that the
/// solver still runs.
const POLL: Duration = Duration::from_millis(200);

/// What one consumer does: its role, which member it is, the analyses'
/// options, the solver's `--ring`, and how long it waits for an object it
/// expects.
#[derive(Debug, Clone)]
pub struct ConsumerJob {
    /// The role.
    pub role: ConsumerRole,
    /// Its index among the members of its role.
    pub member: usize,
    /// What the analyses do and where they write (the archive directory
    /// for the archiver).
    pub options: AnalysisOptions,
    /// The most records the solver has out at once.
    pub ring: usize,
    /// How long an object announced is waited for.
    pub timeout: Duration,
}

impl ConsumerJob {
    /// The label of the consumer in thread names, components and messages.
    pub fn label(&self) -> String {
        match self.role {
            ConsumerRole::Render => format!("hydro-render-{}", self.member),
            ConsumerRole::Stats | ConsumerRole::Archive => {
                format!("hydro-{}", role_name(self.role))
            }
        }
    }
}

/// How a consumer learns that the solver is done or gone: a flag (set by
/// the solver for its threads; for a process, once its standard input
/// ends) and, for a process, the solver's process id.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Set when the solver tells the archiver to leave, or gives up.
    pub stop: Arc<AtomicBool>,
    /// The solver process that started this consumer process.
    pub parent: Option<u32>,
}

impl Signals {
    /// Fails once the solver process is gone (it would never end the
    /// stream).
    fn orphaned(&self, role: ConsumerRole) -> Result<(), OutletError> {
        match self.parent {
            Some(p) if std::os::unix::process::parent_id() != p => Err(gone(role)),
            _ => Ok(()),
        }
    }

    /// Fails once the solver is gone or has given up on the stream.
    fn check(&self, role: ConsumerRole) -> Result<(), OutletError> {
        self.orphaned(role)?;
        match self.stop.load(Ordering::Acquire) {
            true => Err(gone(role)),
            false => Ok(()),
        }
    }
}

/// The error of a consumer whose solver is gone.
fn gone(role: ConsumerRole) -> OutletError {
    OutletError::Process {
        label: role_name(role).into(),
        reason: "the solver is gone".into(),
    }
}

/// Offers `bytes` as `name` from `pool`.
fn offer<'p>(pool: &'p Pool, name: &str, bytes: &[u8]) -> Result<Cdo<'p>, OutletError> {
    let mut cdo = pool.declare(name)?;
    cdo.write(bytes)?;
    cdo.seal()?;
    cdo.offer()?;
    Ok(cdo)
}

/// Withdraws and disposes an object offered, waiting up to `timeout`.
fn withdraw(mut cdo: Cdo<'_>, timeout: Duration) -> Result<(), OutletError> {
    cdo.withdraw_timeout(timeout)?;
    Ok(cdo.dispose()?)
}

/// Runs the consumer `job` on `pool`, watching `signals`, and reports what
/// it did.
///
/// # Errors
/// When the pool fails, a record is malformed, the analysis or the
/// archive fails, or the solver goes away.
pub fn consume(
    pool: &Pool,
    job: &ConsumerJob,
    signals: &Signals,
) -> Result<ConsumerReport, OutletError> {
    match job.role {
        ConsumerRole::Stats => {
            let mut stats = StatsConsumer::create(&job.options)?;
            Feed::join(pool, job, signals)?.consume(|record| stats.take(record))?;
            let done = stats.finish()?;
            Ok(ConsumerReport {
                steps: done.steps,
                busy_seconds: done.busy.as_secs_f64(),
            })
        }
        ConsumerRole::Render => {
            let mut renderer = Renderer::new(&job.options.dir, job.options.vtk);
            Feed::join(pool, job, signals)?.consume(|record| renderer.render(record))?;
            Ok(ConsumerReport {
                steps: renderer.rendered,
                busy_seconds: renderer.busy.as_secs_f64(),
            })
        }
        ConsumerRole::Archive => archive(pool, job, signals),
    }
}

/// A record or analysis consumer joined to its group: its membership and
/// its ready object.
struct Feed<'p> {
    pool: &'p Pool,
    job: &'p ConsumerJob,
    signals: &'p Signals,
    member: Member<'p>,
    ready: Cdo<'p>,
}

impl<'p> Feed<'p> {
    /// Joins the consumer group of the job's role, then offers its ready
    /// object (the solver offers no record before it has seen every
    /// consumer's).
    fn join(
        pool: &'p Pool,
        job: &'p ConsumerJob,
        signals: &'p Signals,
    ) -> Result<Feed<'p>, OutletError> {
        let member = pool.join_group(group_of(job.role), RECORD_SELECTOR)?;
        let ready = offer(
            pool,
            &ready_name(job.role, job.member),
            &(job.member as u64).to_le_bytes(),
        )?;
        Ok(Feed {
            pool,
            job,
            signals,
            member,
            ready,
        })
    }

    /// The next record the group gives this member, waiting as long as the
    /// solver lives.
    fn next_record(&self) -> Result<Record<'p>, OutletError> {
        loop {
            if let Some(record) = self.member.next_timeout(POLL)? {
                return Ok(record);
            }
            self.signals.check(self.job.role)?;
        }
    }

    /// Runs `work` on each record the group gives, acknowledging each,
    /// until an end marker (acknowledged too, after leaving the group so
    /// that the next marker goes to another member); then leaves.
    fn consume(
        self,
        mut work: impl FnMut(&RecordView<'_>) -> Result<(), OutletError>,
    ) -> Result<(), OutletError> {
        let (pool, job) = (self.pool, self.job);
        // Records whose acknowledgement is still offered, oldest first.
        let mut acked = VecDeque::new();
        loop {
            let record = self.next_record()?;
            let name = record.name();
            let seq = seq_of(name).ok_or_else(|| OutletError::Record {
                name: name.into(),
                reason: "not the index object of a record".into(),
            })?;
            let end = is_end(record.attributes());
            withdraw_seen(&mut acked, seq, job)?;
            if !end {
                let fetched = Fetched::demand(pool, seq, job, self.signals)?;
                work(&fetched.view()?)?;
            }
            record.done()?;
            if end {
                drop(self.member);
                acked.push_back((
                    seq,
                    offer(pool, &done_name(seq, job.role), &seq.to_le_bytes())?,
                ));
                // Each acknowledgement once the solver has read it.
                for (_, done) in acked {
                    withdraw(done, job.timeout)?;
                }
                withdraw(self.ready, job.timeout)?;
                return Ok(pool.leave(job.timeout)?);
            }
            acked.push_back((
                seq,
                offer(pool, &done_name(seq, job.role), &seq.to_le_bytes())?,
            ));
        }
    }
}

/// Withdraws the acknowledgements in `acked` that the solver has certainly
/// read: it offered record `seq` only after retiring every record `ring`
/// or more before it, which it does by demanding their acknowledgements.
fn withdraw_seen(
    acked: &mut VecDeque<(u64, Cdo<'_>)>,
    seq: u64,
    job: &ConsumerJob,
) -> Result<(), OutletError> {
    let ring = job.ring.max(2) as u64;
    while let Some((old, _)) = acked.front() {
        if old + ring > seq {
            break;
        }
        if let Some((_, done)) = acked.pop_front() {
            withdraw(done, job.timeout)?;
        }
    }
    Ok(())
}

/// A record demanded from the pool: its metadata and a view of each field
/// (the producer's bytes, not copied).
#[derive(Debug)]
pub struct Fetched<'p> {
    meta: RecordMeta,
    fields: Vec<(String, View<'p>)>,
}

impl<'p> Fetched<'p> {
    /// Demands the fields of record `seq` (offered before its index, so
    /// they are there) for `job`, waiting up to its timeout for each while
    /// `signals` say the solver is there.
    ///
    /// # Errors
    /// The pool's; [`OutletError::Record`] for bad attributes;
    /// [`OutletError::Timeout`] when a field does not come.
    pub fn demand(
        pool: &'p Pool,
        seq: u64,
        job: &ConsumerJob,
        signals: &Signals,
    ) -> Result<Fetched<'p>, OutletError> {
        let mut meta = None;
        let mut fields = Vec::with_capacity(NVAR);
        for var in 0..NVAR {
            let name = field_name(seq, var);
            let mut cdo = pool.declare(&name)?;
            cdo.require()?;
            let start = Instant::now();
            let view = loop {
                match cdo.demand_timeout(POLL) {
                    Ok(view) => break view,
                    Err(cdo::Error::Timeout { .. }) if start.elapsed() < job.timeout => {
                        signals.check(job.role)?;
                    }
                    Err(cdo::Error::Timeout { .. }) => {
                        return Err(OutletError::Timeout {
                            what: name,
                            seconds: start.elapsed().as_secs_f64(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if meta.is_none() {
                let attrs = cdo.offered_attributes().unwrap_or_default();
                meta = Some(meta_of(&name, &attrs)?);
            }
            cdo.dispose()?;
            fields.push((name, view));
        }
        let meta = meta.ok_or_else(|| OutletError::Record {
            name: field_name(seq, 0),
            reason: "no fields".into(),
        })?;
        Ok(Fetched { meta, fields })
    }

    /// The record as the analyses read it.
    ///
    /// # Errors
    /// [`OutletError::Record`] when a field is not `nx * ny` aligned `f64`;
    /// the pool's when its memory cannot be read.
    pub fn view(&self) -> Result<RecordView<'_>, OutletError> {
        let n = self.meta.nx * self.meta.ny;
        let mut cells: Vec<&[f64]> = Vec::with_capacity(NVAR);
        for (name, view) in &self.fields {
            let bad = |reason: String| OutletError::Record {
                name: name.clone(),
                reason,
            };
            let values: &[f64] = bytemuck::try_cast_slice(view.bytes()?)
                .map_err(|e| bad(format!("not f64 data: {e}")))?;
            if values.len() != n {
                return Err(bad(format!("{} cells, not {n}", values.len())));
            }
            cells.push(values);
        }
        Ok(RecordView {
            meta: self.meta,
            fields: std::array::from_fn(|var| cells[var]),
        })
    }
}

/// The archiver: joins the checkpoint group, offers its ready object, and
/// archives until `signals` says to leave; reports the steps of the
/// checkpoints archived.
fn archive(
    pool: &Pool,
    job: &ConsumerJob,
    signals: &Signals,
) -> Result<ConsumerReport, OutletError> {
    let dir = job
        .options
        .archive
        .as_ref()
        .ok_or_else(|| OutletError::Process {
            label: role_name(job.role).into(),
            reason: "no --archive directory".into(),
        })?;
    let archive_error = |e| OutletError::Checkpoint(CheckpointError::Archive(e));
    let archive = Archive::open(dir).map_err(CheckpointError::from)?;
    let mut archiver = Archiver::join(pool, group_of(job.role), CHECKPOINT_SELECTOR, archive)
        .map_err(archive_error)?;
    let ready = offer(pool, &ready_name(job.role, job.member), &0u64.to_le_bytes())?;
    let mut report = ConsumerReport::default();
    loop {
        // Read before waiting: the solver signals only once every
        // checkpoint is archived, so a wait after it that brings none is
        // the last.
        let stopping = signals.stop.load(Ordering::Acquire);
        // Busy from the wait's start: at most one poll too much each.
        let start = Instant::now();
        match archiver.next_timeout(POLL).map_err(archive_error)? {
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
            None => signals.orphaned(job.role)?,
        }
    }
    drop(archiver);
    withdraw(ready, job.timeout)?;
    pool.leave(job.timeout)?;
    Ok(report)
}

/// A flag set once standard input reaches its end (or fails: the solver
/// is gone either way), read on a thread of its own.
///
/// # Errors
/// [`OutletError::Process`] when the thread cannot be started.
fn stop_at_end_of_input(label: &str) -> Result<Arc<AtomicBool>, OutletError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name(format!("{label}-stdin"))
        .spawn(move || {
            // Whatever comes is ignored: only its end matters.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            flag.store(true, Ordering::Release);
        })
        .map_err(|e| OutletError::Process {
            label: label.into(),
            reason: format!("cannot watch standard input: {e}"),
        })?;
    Ok(stop)
}

/// Runs the consumer process `role` the command line describes (its
/// `--output`, `--vtk`, `--member`, `--renderers`, `--ring`,
/// `--resume-after`, `--archive`, `--consumer-timeout`), joined to the
/// pool manager of `CDO_POOL_SOCKET` with [`Pool::from_env`]; the archiver
/// leaves once its standard input ends.
///
/// # Errors
/// When the pool cannot be joined, a record is malformed, the analysis
/// or the archive fails or the solver process goes away.
pub fn run_consumer(cli: &Cli, role: ConsumerRole) -> Result<ConsumerReport, OutletError> {
    let job = ConsumerJob {
        role,
        member: cli.member,
        options: AnalysisOptions {
            dir: cli.output.clone(),
            renderers: cli.renderers,
            vtk: cli.vtk,
            analyses: true,
            resume_after: cli.resume_after,
            archive: cli.archive.clone(),
        },
        ring: cli.ring,
        timeout: Duration::from_secs(cli.consumer_timeout),
    };
    let label = job.label();
    let pool = Pool::from_env_or(&label, || {
        Err(cdo::Error::Config(
            "a consumer process joins a pool manager: CDO_POOL_SOCKET is not set".into(),
        ))
    })?;
    let stop = match role {
        ConsumerRole::Archive => stop_at_end_of_input(&label)?,
        ConsumerRole::Stats | ConsumerRole::Render => Arc::default(),
    };
    let signals = Signals {
        stop,
        parent: Some(std::os::unix::process::parent_id()),
    };
    crate::analysis::priority::lower_this_thread();
    consume(&pool, &job, &signals)
}
