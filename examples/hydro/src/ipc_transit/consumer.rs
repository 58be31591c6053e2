//! A consumer process of a `--pool-manager` run (`hydro --consumer ...`):
//! joins the pool manager named in its environment, demands its records
//! in order until an end marker, runs the shared analysis on zero-copy
//! views, acknowledges each record, and leaves.

use std::collections::VecDeque;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::wire::Attributes;

use super::attributes::is_end;
use super::fetch::{await_object, Fetched, Wait};
use super::{done_name, index_name, role_name, ConsumerReport};
use crate::analysis::consumers::{Renderer, StatsConsumer};
use crate::analysis::AnalysisOptions;
use crate::cli::{Cli, ConsumerRole};
use crate::outlet::OutletError;
use crate::record::RecordView;

/// A joined consumer: its connection, how long it waits, and its
/// acknowledgements still on offer.
struct Feed {
    client: Client,
    role: ConsumerRole,
    timeout: Duration,
    parent: u32,
    /// The solver's `--ring`: most records it has out at once.
    ring: u64,
    /// Records whose acknowledgement is still offered, oldest first.
    acked: VecDeque<u64>,
}

/// Fails once `parent`, the solver process that started this `role`, is
/// gone (it would never end the stream).
fn check_parent(parent: u32, role: ConsumerRole) -> Result<(), OutletError> {
    if std::os::unix::process::parent_id() == parent {
        Ok(())
    } else {
        Err(OutletError::Process {
            label: role_name(role).into(),
            reason: "the solver process is gone".into(),
        })
    }
}

impl Feed {
    /// Runs `work` on each record of `seqs` in turn, acknowledging each,
    /// until an end marker (acknowledged too).
    fn consume(
        &mut self,
        seqs: impl Iterator<Item = u64>,
        mut work: impl FnMut(&RecordView<'_>) -> Result<(), OutletError>,
    ) -> Result<(), OutletError> {
        for seq in seqs {
            // The solver may take long between records: wait as long as
            // it lives.
            let (parent, role) = (self.parent, self.role);
            let index = await_object(&mut self.client, &index_name(seq), Wait::Retracting, || {
                check_parent(parent, role)
            })?;
            let end = is_end(index.attrs());
            drop(index);
            self.withdraw_seen(seq)?;
            if !end {
                let fetched = Fetched::demand(&mut self.client, seq, self.timeout)?;
                work(&fetched.view()?)?;
            }
            // Report the dropped views before saying done.
            self.client.flush()?;
            let done = done_name(seq, self.role);
            self.client
                .offer(&done, &seq.to_le_bytes(), Attributes::new())?;
            self.acked.push_back(seq);
            if end {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Withdraws the acknowledgements the solver has certainly read: it
    /// offered record `seq` only after retiring every record `ring` or more
    /// before it, which it does by demanding their acknowledgements.
    fn withdraw_seen(&mut self, seq: u64) -> Result<(), OutletError> {
        let mut names = Vec::new();
        while let Some(&old) = self.acked.front() {
            if old + self.ring > seq {
                break;
            }
            names.push(done_name(old, self.role));
            self.acked.pop_front();
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(self.client.withdraw_many(&names)?)
    }

    /// Leaves (withdrawing the acknowledgements still offered) once the
    /// solver has read every one.
    fn leave(mut self) -> Result<(), OutletError> {
        Ok(self.client.leave(self.timeout)?)
    }
}

/// Runs the consumer process `role` the command line describes (its
/// `--output`, `--vtk`, `--member`, `--renderers`, `--ring`,
/// `--resume-after`, `--consumer-timeout`), joined to the pool manager of
/// `CDO_POOL_SOCKET`.
///
/// # Errors
/// When the pool cannot be joined, a record is malformed, the analysis
/// fails or the solver process goes away.
pub fn run_consumer(cli: &Cli, role: ConsumerRole) -> Result<ConsumerReport, OutletError> {
    let label = match role {
        ConsumerRole::Stats => "hydro-stats".to_string(),
        ConsumerRole::Render => format!("hydro-render-{}", cli.member),
    };
    let config = ClientConfig::from_env(&label).ok_or_else(|| OutletError::Process {
        label: label.clone(),
        reason: "CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN are not set".into(),
    })?;
    let mut feed = Feed {
        client: Client::connect(&config)?,
        role,
        timeout: Duration::from_secs(cli.consumer_timeout),
        parent: std::os::unix::process::parent_id(),
        ring: cli.ring.max(2) as u64,
        acked: VecDeque::new(),
    };
    crate::analysis::priority::lower_this_thread();
    let report = match role {
        ConsumerRole::Stats => {
            let options = AnalysisOptions {
                dir: cli.output.clone(),
                renderers: cli.renderers,
                vtk: cli.vtk,
                analyses: true,
                resume_after: cli.resume_after,
                archive: None,
            };
            let mut stats = StatsConsumer::create(&options)?;
            feed.consume(0.., |record| stats.take(record))?;
            let done = stats.finish()?;
            ConsumerReport {
                steps: done.steps,
                busy_seconds: done.busy.as_secs_f64(),
            }
        }
        ConsumerRole::Render => {
            let mut renderer = Renderer::new(&cli.output, cli.vtk);
            let seqs = (cli.member as u64..).step_by(cli.renderers.max(1));
            feed.consume(seqs, |record| renderer.render(record))?;
            ConsumerReport {
                steps: renderer.rendered,
                busy_seconds: renderer.busy.as_secs_f64(),
            }
        }
    };
    feed.leave()?;
    Ok(report)
}
