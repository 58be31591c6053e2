//! How the consumers start, the one thing the deployment changes: threads
//! of this process on its in-process [`app::Pool`](Pool), or, with a pool
//! manager, processes (this very binary, re-executed with the hidden
//! `--consumer` flag, through a `--consumer-agent` command where one is
//! given) joined to the manager through `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN`. Both run [`consume`].

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cdo::app::{Deployment, Pool};

use super::consumer::{consume, ConsumerJob, Signals};
use super::{members, role_name, ConsumerReport};
use crate::analysis::AnalysisOptions;
use crate::cli::{ConsumerAgent, ConsumerRole};
use crate::outlet::OutletError;

/// How long a consumer that dropped its connection may take to end.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// A consumer thread's outcome.
type Outcome = Result<ConsumerReport, OutletError>;

/// How one consumer runs.
#[derive(Debug)]
enum Runs {
    /// A thread of this process (`None` once joined).
    Thread(Option<JoinHandle<Outcome>>),
    /// A process.
    Process(Child),
}

/// One consumer.
#[derive(Debug)]
struct Consumer {
    role: ConsumerRole,
    label: String,
    runs: Runs,
    /// Its report, once a thread that ended was joined.
    report: Option<ConsumerReport>,
}

impl Consumer {
    fn failed(&self, reason: impl Into<String>) -> OutletError {
        OutletError::Process {
            label: self.label.clone(),
            reason: reason.into(),
        }
    }

    /// Fails when the consumer has ended unsuccessfully; a thread that
    /// ended is joined and its report kept.
    fn check(&mut self) -> Result<(), OutletError> {
        match &mut self.runs {
            Runs::Thread(handle) => {
                if handle.as_ref().is_some_and(JoinHandle::is_finished) {
                    if let Some(h) = handle.take() {
                        self.report = Some(joined(h, self.role)?);
                    }
                }
                Ok(())
            }
            Runs::Process(child) => match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    Err(self.failed(format!("exited ({status})")))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(self.failed(format!("cannot be watched: {e}"))),
            },
        }
    }

    /// Waits for the consumer to end and returns its report.
    fn finish(mut self) -> Result<(ConsumerRole, ConsumerReport), OutletError> {
        let report = match &mut self.runs {
            Runs::Thread(handle) => match (handle.take(), self.report.take()) {
                (Some(h), _) => joined(h, self.role)?,
                (None, Some(report)) => report,
                (None, None) => return Err(self.failed("ended without a report")),
            },
            Runs::Process(child) => {
                let label = &self.label;
                let failed = |reason: String| OutletError::Process {
                    label: label.clone(),
                    reason,
                };
                drop(child.stdin.take());
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    stdout
                        .read_to_string(&mut out)
                        .map_err(|e| failed(format!("report unreadable: {e}")))?;
                }
                let status = child
                    .wait()
                    .map_err(|e| failed(format!("cannot be waited for: {e}")))?;
                if !status.success() {
                    return Err(failed(format!("exited ({status})")));
                }
                serde_json::from_str(out.trim())
                    .map_err(|e| failed(format!("bad report {out:?}: {e}")))?
            }
        };
        Ok((self.role, report))
    }
}

/// The outcome of a consumer thread that ended.
fn joined(handle: JoinHandle<Outcome>, role: ConsumerRole) -> Outcome {
    handle
        .join()
        .map_err(|_| OutletError::Panicked(role_name(role)))?
}

/// The running consumers, in [`members`] order. Those still running when
/// this is dropped (the producer failed) are told to stop (threads, then
/// joined) or killed (processes).
#[derive(Debug)]
pub struct Consumers {
    consumers: Vec<Consumer>,
    /// The consumer threads' stop signal.
    stop: Arc<AtomicBool>,
}

impl Consumers {
    /// Starts the consumers of `options` ([`members`]) on `pool`, for a
    /// solver keeping at most `ring` records out, each waiting up to
    /// `timeout` for the objects it expects once announced: threads in
    /// process; through a pool manager, processes joined to it, those of a
    /// role that `agents` name through its command (on another node, say),
    /// which this binary and its arguments follow. A process's standard
    /// input is a pipe for the archiver: its end ([`Consumers::finish`])
    /// tells it to leave.
    ///
    /// # Errors
    /// [`OutletError::Process`] when a thread or process cannot be started.
    pub fn start(
        pool: &Arc<Pool>,
        options: &AnalysisOptions,
        ring: usize,
        timeout: Duration,
        agents: &[ConsumerAgent],
    ) -> Result<Consumers, OutletError> {
        let mut consumers = Consumers {
            consumers: Vec::new(),
            stop: Arc::default(),
        };
        for (role, member) in members(options) {
            let job = ConsumerJob {
                role,
                member,
                options: options.clone(),
                ring,
                timeout,
            };
            let label = match role {
                ConsumerRole::Render => {
                    format!("render {member}/{}", options.renderers.max(1))
                }
                ConsumerRole::Stats | ConsumerRole::Archive => role_name(role).to_string(),
            };
            let runs = match pool.deployment() {
                Deployment::InProcess => {
                    let signals = Signals {
                        stop: Arc::clone(&consumers.stop),
                        parent: None,
                    };
                    let pool = Arc::clone(pool);
                    let name = job.label();
                    let dir = options.dir.clone();
                    Runs::Thread(Some(crate::analysis::spawn(&name, &dir, move || {
                        consume(&pool, &job, &signals)
                    })?))
                }
                Deployment::Manager => Runs::Process(spawn(pool, &job, &label, agents)?),
            };
            consumers.consumers.push(Consumer {
                role,
                label,
                runs,
                report: None,
            });
        }
        Ok(consumers)
    }

    /// The number of consumers.
    pub fn len(&self) -> usize {
        self.consumers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    /// Fails when a consumer has ended unsuccessfully (a process killed
    /// included).
    ///
    /// # Errors
    /// The consumer thread's error; [`OutletError::Process`] naming a
    /// process and how it ended.
    pub fn check(&mut self) -> Result<(), OutletError> {
        self.consumers.iter_mut().try_for_each(Consumer::check)
    }

    /// The error of the `role` consumer that left the pool early: how it
    /// ended, if it does within a second (the manager may notice first).
    pub fn failure(&mut self, role: &str) -> OutletError {
        let start = Instant::now();
        while start.elapsed() < EXIT_GRACE {
            if let Err(e) = self.check() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        OutletError::Process {
            label: role.into(),
            reason: "left the pool before the stream ended".into(),
        }
    }

    /// Tells the archiver to leave (a flag for a thread, the end of its
    /// standard input for a process), then waits for each consumer to end
    /// and takes its report; returns the reports by role, in [`members`]
    /// order.
    ///
    /// # Errors
    /// The first consumer that failed or gave no report.
    pub fn finish(&mut self) -> Result<Vec<(ConsumerRole, ConsumerReport)>, OutletError> {
        self.stop.store(true, Ordering::Release);
        for c in &mut self.consumers {
            if let Runs::Process(child) = &mut c.runs {
                drop(child.stdin.take());
            }
        }
        let mut reports = Vec::new();
        while !self.consumers.is_empty() {
            // The ones not reached yet stay, to be stopped on an error.
            reports.push(self.consumers.remove(0).finish()?);
        }
        Ok(reports)
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for c in &mut self.consumers {
            match &mut c.runs {
                // It sees the flag within a poll; its outcome no longer
                // matters.
                Runs::Thread(handle) => {
                    if let Some(h) = handle.take() {
                        let _ = h.join();
                    }
                }
                // Already gone is fine: either way it is reaped.
                Runs::Process(child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Starts the consumer process of `job` (`label` in messages), joined to
/// the manager of `pool`, through its role's agent command if `agents`
/// names one.
///
/// # Errors
/// [`OutletError::Process`] when this binary cannot be found or run.
fn spawn(
    pool: &Pool,
    job: &ConsumerJob,
    label: &str,
    agents: &[ConsumerAgent],
) -> Result<Child, OutletError> {
    let spawn_failed = |reason: String| OutletError::Process {
        label: label.into(),
        reason: format!("could not start: {reason}"),
    };
    let endpoint = pool
        .endpoint()
        .ok_or_else(|| spawn_failed("no pool manager to join".into()))?;
    let exe = std::env::current_exe().map_err(|e| spawn_failed(e.to_string()))?;
    let mut command = match agents.iter().find(|a| a.role == job.role) {
        Some(agent) => {
            let mut c = Command::new(&agent.command[0]);
            c.args(&agent.command[1..]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let options = &job.options;
    command
        .args(["--consumer", role_name(job.role)])
        .arg("--member")
        .arg(job.member.to_string())
        .arg("--renderers")
        .arg(options.renderers.max(1).to_string())
        .arg("--output")
        .arg(&options.dir)
        .arg("--ring")
        .arg(job.ring.to_string())
        .arg("--consumer-timeout")
        .arg(job.timeout.as_secs().to_string())
        .envs(endpoint.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if options.vtk {
        command.arg("--vtk");
    }
    if let Some(step) = options.resume_after {
        command.arg("--resume-after").arg(step.to_string());
    }
    if let (ConsumerRole::Archive, Some(dir)) = (job.role, &options.archive) {
        command.arg("--archive").arg(dir).stdin(Stdio::piped());
    }
    command.spawn().map_err(|e| spawn_failed(e.to_string()))
}
