//! The consumer processes of a `--pool-manager` run: this very binary,
//! re-executed with the hidden `--consumer` flag, joined to the pool
//! manager through `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN`.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdo::ipc::endpoint::Endpoint;

use super::{members, role_name, ConsumerReport};
use crate::analysis::AnalysisOptions;
use crate::cli::{ConsumerAgent, ConsumerRole};
use crate::outlet::OutletError;

/// How long a process that dropped its connection may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// One consumer process.
#[derive(Debug)]
struct Process {
    role: ConsumerRole,
    label: String,
    child: Child,
}

impl Process {
    fn failed(&self, reason: impl Into<String>) -> OutletError {
        OutletError::Process {
            label: self.label.clone(),
            reason: reason.into(),
        }
    }
}

/// The running consumer processes, in [`members`] order. Those still
/// running when this is dropped (the producer failed) are killed.
#[derive(Debug)]
pub struct Consumers {
    processes: Vec<Process>,
}

impl Consumers {
    /// Starts the consumer processes of `options` ([`members`]), joined to
    /// `endpoint`, for a solver keeping at most `ring` records out, each
    /// waiting up to `timeout` for the objects it expects once announced.
    /// The archive process's standard input is a pipe: closing it
    /// ([`Consumers::finish`]) tells the process to leave. The processes
    /// of a role that `agents` name run through its command (on another
    /// node, say), which this binary and its arguments follow.
    ///
    /// # Errors
    /// [`OutletError::Process`] when this binary cannot be found or run.
    pub fn spawn(
        endpoint: &Endpoint,
        options: &AnalysisOptions,
        ring: usize,
        timeout: Duration,
        agents: &[ConsumerAgent],
    ) -> Result<Consumers, OutletError> {
        let renderers = options.renderers.max(1);
        let mut consumers = Consumers {
            processes: Vec::new(),
        };
        for (role, member) in members(options) {
            let label = match role {
                ConsumerRole::Render => format!("render {member}/{renderers}"),
                ConsumerRole::Stats | ConsumerRole::Archive => role_name(role).to_string(),
            };
            let spawn_failed = |e: std::io::Error| OutletError::Process {
                label: label.clone(),
                reason: format!("could not start: {e}"),
            };
            let exe = std::env::current_exe().map_err(spawn_failed)?;
            let mut command = match agents.iter().find(|a| a.role == role) {
                Some(agent) => {
                    let mut c = Command::new(&agent.command[0]);
                    c.args(&agent.command[1..]).arg(exe);
                    c
                }
                None => Command::new(exe),
            };
            command
                .args(["--consumer", role_name(role)])
                .arg("--member")
                .arg(member.to_string())
                .arg("--renderers")
                .arg(renderers.to_string())
                .arg("--output")
                .arg(&options.dir)
                .arg("--ring")
                .arg(ring.to_string())
                .arg("--consumer-timeout")
                .arg(timeout.as_secs().to_string())
                .envs(endpoint.env())
                .stdin(Stdio::null())
                .stdout(Stdio::piped());
            if options.vtk {
                command.arg("--vtk");
            }
            if let Some(step) = options.resume_after {
                command.arg("--resume-after").arg(step.to_string());
            }
            if let (ConsumerRole::Archive, Some(dir)) = (role, &options.archive) {
                command.arg("--archive").arg(dir).stdin(Stdio::piped());
            }
            let child = command.spawn().map_err(spawn_failed)?;
            consumers.processes.push(Process { role, label, child });
        }
        Ok(consumers)
    }

    /// Fails when a process has exited unsuccessfully (killed included).
    ///
    /// # Errors
    /// [`OutletError::Process`] naming it and how it ended.
    pub fn check(&mut self) -> Result<(), OutletError> {
        for p in &mut self.processes {
            match p.child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    return Err(p.failed(format!("exited ({status})")))
                }
                Ok(_) => {}
                Err(e) => return Err(p.failed(format!("cannot be watched: {e}"))),
            }
        }
        Ok(())
    }

    /// The error of the `role` process that left the pool early: how it
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
            reason: "left the pool manager before the stream ended".into(),
        }
    }

    /// Closes the standard input of every process (the archive process's
    /// signal to leave), then waits for each to exit and reads its report;
    /// returns the reports by role, in [`members`] order.
    ///
    /// # Errors
    /// [`OutletError::Process`] for a process that failed or sent no report.
    pub fn finish(&mut self) -> Result<Vec<(ConsumerRole, ConsumerReport)>, OutletError> {
        for p in &mut self.processes {
            drop(p.child.stdin.take());
        }
        let mut reports = Vec::new();
        while !self.processes.is_empty() {
            // The ones not reached yet stay, to be killed on an error.
            let mut p = self.processes.remove(0);
            let mut out = String::new();
            if let Some(mut stdout) = p.child.stdout.take() {
                stdout
                    .read_to_string(&mut out)
                    .map_err(|e| p.failed(format!("report unreadable: {e}")))?;
            }
            let status = p
                .child
                .wait()
                .map_err(|e| p.failed(format!("cannot be waited for: {e}")))?;
            if !status.success() {
                return Err(p.failed(format!("exited ({status})")));
            }
            let report = serde_json::from_str(out.trim())
                .map_err(|e| p.failed(format!("bad report {out:?}: {e}")))?;
            reports.push((p.role, report));
        }
        Ok(reports)
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for p in &mut self.processes {
            // Already gone is fine: either way it is reaped below.
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}
