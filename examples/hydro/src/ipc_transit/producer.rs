//! The producer side of the cross-process transport: the solver's
//! [`Outlet`], which waits for the consumer processes to join their groups,
//! offers each record's fields in place in shared memory, keeps at most
//! `ring` records out, offers checkpoints in place for the archive process
//! (at most [`CHECKPOINTS_OUT`] out), and at the end stops the consumer
//! processes and collects their reports.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cdo::archive::Archive;
use cdo::ipc::client::{Client, ClientConfig, ClientError, Reply};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::{self, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{ErrorCode, RequestId};

use super::attributes::{end_attrs, record_attrs};
use super::fetch::{await_object, watched_wait};
use super::processes::Consumers;
use super::CHECKPOINTS_OUT;
use super::{done_name, field_name, index_name, members, ready_name, role_name};
use crate::analysis::consumers::create_dir;
use crate::analysis::AnalysisOptions;
use crate::cdo_transit::attributes::{checkpoint_attributes, checkpoint_name};
use crate::checkpoint::CheckpointError;
use crate::cli::{ConsumerAgent, ConsumerRole};
use crate::outlet::{Capture, ManagerReport, Outlet, OutletError, OutletReport};
use crate::state::NVAR;

/// The solver's side of a `--pool-manager` run.
pub struct IpcOutlet {
    client: Client,
    consumers: Consumers,
    /// The manager this run started (`None`: it joined one).
    manager: Option<ManagerHandle>,
    socket: String,
    /// The renderer processes (none without the analyses).
    renderers: usize,
    /// The consumer processes ([`members`]).
    processes: usize,
    /// Where the archive process stores the checkpoints (`None`: no
    /// checkpoints).
    archive: Option<Archive>,
    limit: usize,
    timeout: Duration,
    /// Sequence numbers of the records still out, oldest first.
    in_flight: VecDeque<u64>,
    /// Steps of the checkpoints still out, oldest first.
    checkpoints: VecDeque<u64>,
    next_seq: u64,
    bytes: u64,
    offered: u64,
    withdrawn: u64,
}

impl std::fmt::Debug for IpcOutlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcOutlet")
            .field("socket", &self.socket)
            .field("in_flight", &self.in_flight)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl IpcOutlet {
    /// Creates the output directory (and the archive directory of
    /// `options.archive`), starts a pool manager unless `CDO_POOL_SOCKET`
    /// names one, joins it, and starts the consumer processes ([`members`]:
    /// the analyses with `options.analyses`, the archive process with
    /// `options.archive`) and waits for them to join their groups; at most
    /// `ring` records (at least 2) are out at once, and every wait for a
    /// consumer gives up after `timeout`. The processes of a role that
    /// `agents` name start through its command.
    ///
    /// # Errors
    /// When a directory, the manager or a process cannot be started or
    /// the pool cannot be joined.
    pub fn start(
        options: &AnalysisOptions,
        ring: usize,
        timeout: Duration,
        agents: &[ConsumerAgent],
    ) -> Result<IpcOutlet, OutletError> {
        create_dir(options)?;
        let archive = match &options.archive {
            Some(dir) => Some(Archive::open(dir).map_err(CheckpointError::from)?),
            None => None,
        };
        let (manager, endpoint) = match Endpoint::from_env() {
            Some(endpoint) => (None, endpoint),
            None => {
                // CDO_FAULT_POLICY and CDO_ACK_TIMEOUT_MS apply, as to cdo-pm.
                let config = ManagerConfig::from_env().map_err(|e| {
                    OutletError::Manager(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?;
                let handle = manager::start(config).map_err(OutletError::Manager)?;
                let endpoint = handle.endpoint().clone();
                (Some(handle), endpoint)
            }
        };
        let client = Client::connect(&ClientConfig::new(endpoint.clone(), "hydro-solver"))?;
        let limit = ring.max(2);
        let consumers = Consumers::spawn(&endpoint, options, limit, timeout, agents)?;
        let ready: Vec<String> = members(options)
            .map(|(role, member)| ready_name(role, member))
            .collect();
        let mut outlet = IpcOutlet {
            client,
            consumers,
            manager,
            socket: endpoint.socket.display().to_string(),
            renderers: members(options)
                .filter(|(role, _)| *role == ConsumerRole::Render)
                .count(),
            processes: members(options).count(),
            archive,
            limit,
            timeout,
            in_flight: VecDeque::new(),
            checkpoints: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            offered: 0,
            withdrawn: 0,
        };
        outlet.await_ready(&ready)?;
        Ok(outlet)
    }

    /// Waits until every consumer process has joined its consumer group
    /// (offered its ready object, named in `ready`): a group keeps no
    /// offer made before.
    fn await_ready(&mut self, ready: &[String]) -> Result<(), OutletError> {
        let deadline = Instant::now() + self.timeout;
        for name in ready {
            let consumers = &mut self.consumers;
            await_object(&mut self.client, name, deadline, || consumers.check())?;
        }
        Ok(())
    }

    /// Waits for the replies to `ids`, each an `Ok`.
    fn expect_ok(&mut self, ids: Vec<RequestId>) -> Result<(), OutletError> {
        for id in ids {
            match self.client.wait(id, Some(self.timeout))? {
                Reply::Ok => {}
                other => {
                    let reply = format!("{other:?}");
                    return Err(ClientError::Unexpected(reply).into());
                }
            }
        }
        Ok(())
    }

    /// Queues the requires of the acknowledgements of record `seq`: from
    /// the statistics process (`stats`) and from a renderer.
    fn require_done(&mut self, seq: u64, stats: bool) -> Result<Vec<RequestId>, OutletError> {
        let mut ids = vec![self
            .client
            .submit_require(&done_name(seq, ConsumerRole::Render))?];
        if stats {
            ids.push(
                self.client
                    .submit_require(&done_name(seq, ConsumerRole::Stats))?,
            );
        }
        Ok(ids)
    }

    /// Waits until `deadline` for the acknowledgement `name` of the `role`
    /// process, watching the consumer processes.
    fn await_ack(
        &mut self,
        name: &str,
        role: ConsumerRole,
        deadline: Instant,
    ) -> Result<(), OutletError> {
        let consumers = &mut self.consumers;
        // The view is dropped at once: it only says "done".
        match await_object(&mut self.client, name, deadline, || consumers.check()) {
            Ok(_) => Ok(()),
            // It offered and then vanished: say which and how.
            Err(OutletError::Ipc(ClientError::Pool {
                code: ErrorCode::ProducerDied,
                ..
            })) => Err(consumers.failure(role_name(role))),
            Err(e) => Err(e),
        }
    }

    /// Waits for the acknowledgements of record `seq` (from the statistics
    /// process too with `stats`), watching the consumer processes: before
    /// waiting too, since a renderer's group gives the records of one that
    /// died to another, so that the waits alone may not notice.
    fn await_done(&mut self, seq: u64, stats: bool) -> Result<(), OutletError> {
        self.consumers.check()?;
        let deadline = Instant::now() + self.timeout;
        let roles = [ConsumerRole::Render, ConsumerRole::Stats];
        for &role in &roles[..1 + usize::from(stats)] {
            self.await_ack(&done_name(seq, role), role, deadline)?;
        }
        Ok(())
    }

    /// Withdraws the objects named, waiting (bounded) for the consumers'
    /// views to be released.
    fn withdraw(&mut self, names: &[String]) -> Result<(), OutletError> {
        let ids = names
            .iter()
            .map(|name| self.client.submit_withdraw(name))
            .collect::<Result<Vec<_>, _>>()?;
        self.expect_ok(ids)?;
        self.withdrawn += names.len() as u64;
        Ok(())
    }

    /// Waits until both consumers of the oldest record are done with it,
    /// then withdraws its objects.
    fn retire_oldest(&mut self) -> Result<(), OutletError> {
        let Some(seq) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.await_done(seq, true)?;
        let mut names: Vec<String> = (0..NVAR).map(|var| field_name(seq, var)).collect();
        names.push(index_name(seq));
        self.withdraw(&names)
    }

    /// Withdraws the oldest checkpoint out: the withdrawal is answered once
    /// the archive process has stored it and marked it done. Waits in
    /// slices, watching the consumer processes in between.
    fn retire_checkpoint(&mut self) -> Result<(), OutletError> {
        let Some(step) = self.checkpoints.pop_front() else {
            return Ok(());
        };
        self.consumers.check()?;
        let name = checkpoint_name(step);
        let id = self.client.submit_withdraw(&name)?;
        let deadline = Instant::now() + self.timeout;
        let client = &mut self.client;
        let attempt = |poll| match client.wait_keeping(id, Some(poll)) {
            Ok(Reply::Ok) => Ok(Some(())),
            Ok(other) => Err(ClientError::Unexpected(format!("{other:?}")).into()),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        };
        let consumers = &mut self.consumers;
        watched_wait(&name, deadline, attempt, || consumers.check())?;
        self.withdrawn += 1;
        Ok(())
    }

    /// Offers the state of `capture` as its checkpoint CDO, encoded in
    /// place, for the archive process.
    fn offer_checkpoint(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let checkpoint = capture.checkpoint_ref();
        let (step, len) = (checkpoint.step, checkpoint.encoded_len());
        let name = checkpoint_name(step);
        let attrs = checkpoint_attributes(&capture.meta, len).flatten();
        let mut encoded = Ok(());
        let id = self
            .client
            .submit_offer(&name, len as u64, attrs, |mut bytes| {
                encoded = checkpoint.encode(&mut bytes);
            })?;
        encoded.map_err(|source| CheckpointError::Io {
            path: name.into(),
            source,
        })?;
        self.expect_ok(vec![id])?;
        self.checkpoints.push_back(step);
        self.offered += 1;
        Ok(())
    }

    /// Requires the acknowledgements of the record of `capture`, then
    /// offers its fields, filled in place, then its index.
    fn offer_record(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let (meta, seq) = (&capture.meta, self.next_seq);
        let n = meta.nx * meta.ny;
        let size = (n * std::mem::size_of::<f64>()) as u64;
        let mut ids = self.require_done(seq, true)?;
        for var in 0..NVAR {
            let name = field_name(seq, var);
            let mut aligned = true;
            let id =
                self.client
                    .submit_offer(&name, size, record_attrs(meta, Some(var)), |bytes| {
                        match bytemuck::try_cast_slice_mut(bytes) {
                            Ok(cells) => capture.state.copy_interior(var, cells),
                            Err(_) => aligned = false,
                        }
                    })?;
            ids.push(id);
            if !aligned {
                return Err(OutletError::Record {
                    name,
                    reason: "shared memory not aligned for f64".into(),
                });
            }
        }
        let index = index_name(seq);
        let attrs = record_attrs(meta, None);
        ids.push(self.client.submit_offer(&index, 8, attrs, |b| {
            b.copy_from_slice(&meta.step.to_le_bytes())
        })?);
        self.client.flush()?;
        self.expect_ok(ids)?;
        self.in_flight.push_back(seq);
        self.next_seq += 1;
        self.offered += NVAR as u64 + 1;
        self.bytes += NVAR as u64 * size;
        Ok(())
    }

    /// Retires every record, then ends the stream of each renderer (if
    /// any) in turn:
    /// offers an end marker, which the renderers' group gives to one member
    /// (the first marker also reaches the statistics process), and waits
    /// for its acknowledgement. A member leaves its group before
    /// acknowledging its marker, so the next marker goes to another.
    fn end_stream(&mut self) -> Result<(), OutletError> {
        while !self.in_flight.is_empty() {
            self.retire_oldest()?;
        }
        let first = self.next_seq;
        let markers: Vec<u64> = (first..first + self.renderers as u64).collect();
        for &seq in &markers {
            // Required first, so that the consumer cannot leave unread.
            let mut ids = self.require_done(seq, seq == first)?;
            ids.push(
                self.client
                    .submit_offer(&index_name(seq), 8, end_attrs(), |b| b.fill(0))?,
            );
            self.client.flush()?;
            self.expect_ok(ids)?;
            self.offered += 1;
            self.await_done(seq, seq == first)?;
        }
        let names: Vec<String> = markers.iter().map(|&seq| index_name(seq)).collect();
        self.withdraw(&names)
    }
}

impl Outlet for IpcOutlet {
    /// Offers the output record of `capture`, then its checkpoint when the
    /// run archives checkpoints (`options.archive`); the time spent waiting
    /// for the consumers to make room is returned.
    fn hand_off(&mut self, capture: Capture<'_>) -> Result<Duration, OutletError> {
        let mut waited = Duration::ZERO;
        if capture.output {
            let start = Instant::now();
            while self.in_flight.len() >= self.limit {
                self.retire_oldest()?;
            }
            waited += start.elapsed();
            self.offer_record(&capture)?;
        }
        if capture.checkpoint && self.archive.is_some() {
            let start = Instant::now();
            while self.checkpoints.len() >= CHECKPOINTS_OUT {
                self.retire_checkpoint()?;
            }
            waited += start.elapsed();
            self.offer_checkpoint(&capture)?;
        }
        Ok(waited)
    }

    fn finish(mut self: Box<Self>) -> Result<OutletReport, OutletError> {
        while !self.checkpoints.is_empty() {
            self.retire_checkpoint()?;
        }
        self.end_stream()?;
        let mut report = OutletReport {
            records: self.next_seq,
            bytes: self.bytes,
            ..OutletReport::default()
        };
        let mut archived = Vec::new();
        for (role, done) in self.consumers.finish()? {
            report.busy_seconds += done.busy_seconds;
            match role {
                ConsumerRole::Stats => report.stats_steps = done.steps,
                ConsumerRole::Render => report.rendered_steps.push(done.steps),
                ConsumerRole::Archive => archived = done.steps,
            }
        }
        if let Some(archive) = &self.archive {
            report.checkpoints = archived
                .iter()
                .map(|&step| archive.data_path(&checkpoint_name(step)))
                .collect::<Result<_, _>>()
                .map_err(CheckpointError::from)?;
        }
        // Only this process is left: what the manager still holds is ours.
        let pool = self.client.stats()?;
        self.client.leave(self.timeout)?;
        // Stopping the manager removes its socket and directory.
        let started = self.manager.take().map(ManagerHandle::shutdown).is_some();
        report.manager = Some(ManagerReport {
            started,
            socket: self.socket.clone(),
            processes: self.processes,
            offered: self.offered,
            withdrawn: self.withdrawn,
            left: pool,
        });
        Ok(report)
    }
}
