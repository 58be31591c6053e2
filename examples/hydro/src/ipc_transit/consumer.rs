//! A consumer process of a `--pool-manager` run (`hydro --consumer ...`):
//! joins the pool manager named in its environment and its role's consumer
//! group, says it is ready, then takes the records the group gives it
//! until an end marker, runs the shared analysis on zero-copy views of
//! their fields, acknowledges each record, and leaves.

use std::collections::VecDeque;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError, GroupRecord, Notice};
use cdo::ipc::wire::Attributes;

use super::archiver::run_archiver;
use super::attributes::is_end;
use super::fetch::Fetched;
use super::{done_name, group_of, ready_name, role_name, seq_of, ConsumerReport, RECORD_SELECTOR};
use crate::analysis::consumers::{Renderer, StatsConsumer};
use crate::analysis::AnalysisOptions;
use crate::cli::{Cli, ConsumerRole};
use crate::outlet::OutletError;
use crate::record::RecordView;

/// How long a wait for the next record lasts before checking that the
/// solver still runs.
const POLL: Duration = Duration::from_secs(1);

/// A consumer joined to its group: its connection, how long it waits, and
/// its acknowledgements still on offer.
struct Feed {
    client: Client,
    role: ConsumerRole,
    /// Its membership of the role's consumer group.
    subscription: u64,
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
    /// Joins the pool of `config` and the consumer group of `role`, then
    /// offers the ready object of `cli.member` (the solver offers no record
    /// before it has seen every consumer's).
    fn join(config: &ClientConfig, role: ConsumerRole, cli: &Cli) -> Result<Feed, OutletError> {
        let member = cli.member;
        let mut client = Client::connect(config)?;
        let subscription = client.join_group(group_of(role), RECORD_SELECTOR)?;
        let member_bytes = (member as u64).to_le_bytes();
        client.offer(&ready_name(role, member), &member_bytes, Attributes::new())?;
        Ok(Feed {
            client,
            role,
            subscription,
            timeout: Duration::from_secs(cli.consumer_timeout),
            parent: std::os::unix::process::parent_id(),
            ring: cli.ring.max(2) as u64,
            acked: VecDeque::new(),
        })
    }

    /// The next record the group gives this member, waiting as long as the
    /// solver lives.
    fn next_record(&mut self) -> Result<GroupRecord, OutletError> {
        loop {
            match self.client.next_notice(Some(POLL))? {
                Some(Notice::Record(record)) => return Ok(record),
                Some(other) => return Err(ClientError::Unexpected(format!("{other:?}")).into()),
                None => check_parent(self.parent, self.role)?,
            }
        }
    }

    /// Runs `work` on each record the group gives, acknowledging each,
    /// until an end marker (acknowledged too, after leaving the group so
    /// that the next marker goes to another member).
    fn consume(
        &mut self,
        mut work: impl FnMut(&RecordView<'_>) -> Result<(), OutletError>,
    ) -> Result<(), OutletError> {
        loop {
            let record = self.next_record()?;
            let name = record.view.name();
            let seq = seq_of(name).ok_or_else(|| OutletError::Record {
                name: name.into(),
                reason: "not the index object of a record".into(),
            })?;
            let end = is_end(record.view.attrs());
            self.withdraw_seen(seq)?;
            if !end {
                let fetched = Fetched::demand(&mut self.client, seq, self.timeout)?;
                work(&fetched.view()?)?;
            }
            // Reports the field views dropped above along with the record.
            self.client.done(record)?;
            if end {
                self.client.unsubscribe(self.subscription)?;
            }
            let done = done_name(seq, self.role);
            self.client
                .offer(&done, &seq.to_le_bytes(), Attributes::new())?;
            self.acked.push_back(seq);
            if end {
                return Ok(());
            }
        }
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

    /// Leaves (withdrawing the acknowledgements and the ready object still
    /// offered) once the solver has read every acknowledgement.
    fn leave(mut self) -> Result<(), OutletError> {
        Ok(self.client.leave(self.timeout)?)
    }
}

/// Runs the consumer process `role` the command line describes (its
/// `--output`, `--vtk`, `--member`, `--renderers`, `--ring`,
/// `--resume-after`, `--archive`, `--consumer-timeout`), joined to the
/// pool manager of `CDO_POOL_SOCKET`.
///
/// # Errors
/// When the pool cannot be joined, a record is malformed, the analysis
/// or the archive fails or the solver process goes away.
pub fn run_consumer(cli: &Cli, role: ConsumerRole) -> Result<ConsumerReport, OutletError> {
    let label = match role {
        ConsumerRole::Render => format!("hydro-render-{}", cli.member),
        ConsumerRole::Stats | ConsumerRole::Archive => format!("hydro-{}", role_name(role)),
    };
    let config = ClientConfig::from_env(&label).ok_or_else(|| OutletError::Process {
        label: label.clone(),
        reason: "CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN are not set".into(),
    })?;
    match role {
        ConsumerRole::Stats => with_feed(&config, role, cli, |feed| {
            let options = AnalysisOptions {
                dir: cli.output.clone(),
                renderers: cli.renderers,
                vtk: cli.vtk,
                analyses: true,
                resume_after: cli.resume_after,
                archive: None,
            };
            let mut stats = StatsConsumer::create(&options)?;
            feed.consume(|record| stats.take(record))?;
            let done = stats.finish()?;
            Ok(ConsumerReport {
                steps: done.steps,
                busy_seconds: done.busy.as_secs_f64(),
            })
        }),
        ConsumerRole::Render => with_feed(&config, role, cli, |feed| {
            let mut renderer = Renderer::new(&cli.output, cli.vtk);
            feed.consume(|record| renderer.render(record))?;
            Ok(ConsumerReport {
                steps: renderer.rendered,
                busy_seconds: renderer.busy.as_secs_f64(),
            })
        }),
        ConsumerRole::Archive => run_archiver(&config, cli),
    }
}

/// Joins the group of the analysis `role` through `config`, runs `work`
/// on the feed at low priority, then leaves.
fn with_feed(
    config: &ClientConfig,
    role: ConsumerRole,
    cli: &Cli,
    work: impl FnOnce(&mut Feed) -> Result<ConsumerReport, OutletError>,
) -> Result<ConsumerReport, OutletError> {
    let mut feed = Feed::join(config, role, cli)?;
    crate::analysis::priority::lower_this_thread();
    let report = work(&mut feed)?;
    feed.leave()?;
    Ok(report)
}
