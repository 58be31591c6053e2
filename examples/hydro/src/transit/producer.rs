//! The producer side: the solver's [`Outlet`], which waits for the
//! consumers to join their groups, offers each record's fields filled in
//! place, keeps at most `ring` records out, offers checkpoints in place for
//! the archiver (at most [`CHECKPOINTS_OUT`] out), and at the end stops the
//! consumers and collects their reports. The same code in process and
//! through a pool manager.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdo::app::{Cdo, Pool};
use cdo::archive::Archive;
use cdo::ipc::client::ClientError;
use cdo::ipc::wire::ErrorCode;
use cdo::Priority;
use mamba::Policy;

use super::attributes::{set_checkpoint, set_end, set_field, set_meta};
use super::launch::Consumers;
use super::CHECKPOINTS_OUT;
use super::{checkpoint_name, done_name, field_name, index_name, members, ready_name, role_name};
use crate::analysis::consumers::create_dir;
use crate::analysis::AnalysisOptions;
use crate::checkpoint::CheckpointError;
use crate::cli::{ConsumerAgent, ConsumerRole};
use crate::outlet::{Capture, ManagerUse, Outlet, OutletError, OutletReport, TransitReport};
use crate::state::NVAR;

/// How long one wait for a consumer lasts before the consumers are checked.
const POLL: Duration = Duration::from_millis(100);

/// A record still out: its objects (fields, then index) and the
/// acknowledgements required of it.
struct Out<'p> {
    objects: Vec<Cdo<'p>>,
    acks: Vec<(ConsumerRole, Cdo<'p>)>,
}

/// The solver's side of the transit.
pub struct TransitOutlet<'p> {
    pool: &'p Pool,
    /// Where an in-process pool places the data offered.
    policy: Policy,
    /// The renderers (none without the analyses).
    renderers: usize,
    /// Where the archiver stores the checkpoints (`None`: no checkpoints).
    archive: Option<Archive>,
    limit: usize,
    timeout: Duration,
    /// The records still out, oldest first.
    in_flight: VecDeque<Out<'p>>,
    /// The checkpoints still out, oldest first.
    checkpoints: VecDeque<Cdo<'p>>,
    /// Cells staged for memory not aligned for `f64`.
    scratch: Vec<f64>,
    next_seq: u64,
    bytes: u64,
    offered: u64,
    withdrawn: u64,
    /// Dropped last: the consumers see the producer's handles gone first.
    consumers: Consumers,
}

impl std::fmt::Debug for TransitOutlet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitOutlet")
            .field("pool", self.pool)
            .field("in_flight", &self.in_flight.len())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// Whether `e` is a timed-out wait (the operation still pending).
fn timed_out(e: &cdo::Error) -> bool {
    matches!(e, cdo::Error::Timeout { .. })
}

impl<'p> TransitOutlet<'p> {
    /// Creates the output directory (and the archive directory of
    /// `options.archive`), starts the consumers on `pool` ([`members`]: the
    /// analyses with `options.analyses`, the archiver with
    /// `options.archive`; threads in process, processes through a pool
    /// manager, those of a role `agents` names through its command) and
    /// waits for them to join their groups; at most `ring` records (at
    /// least 2) are out at once, every wait for a consumer gives up after
    /// `timeout`, and an in-process pool places the data offered by
    /// `policy`.
    ///
    /// # Errors
    /// When a directory, a consumer or the pool fails.
    pub fn start(
        pool: &'p Arc<Pool>,
        policy: Policy,
        options: &AnalysisOptions,
        ring: usize,
        timeout: Duration,
        agents: &[ConsumerAgent],
    ) -> Result<TransitOutlet<'p>, OutletError> {
        create_dir(options)?;
        let archive = match &options.archive {
            Some(dir) => Some(Archive::open(dir).map_err(CheckpointError::from)?),
            None => None,
        };
        let limit = ring.max(2);
        let consumers = Consumers::start(pool, options, limit, timeout, agents)?;
        let mut outlet = TransitOutlet {
            pool,
            policy,
            renderers: members(options)
                .filter(|(role, _)| *role == ConsumerRole::Render)
                .count(),
            archive,
            limit,
            timeout,
            in_flight: VecDeque::new(),
            checkpoints: VecDeque::new(),
            scratch: Vec::new(),
            next_seq: 0,
            bytes: 0,
            offered: 0,
            withdrawn: 0,
            consumers,
        };
        // A group keeps no offer made before it has members.
        let deadline = Instant::now() + timeout;
        for (role, member) in members(options) {
            let mut ready = pool.declare(&ready_name(role, member))?;
            ready.require()?;
            outlet.await_object(&mut ready, role, deadline)?;
            ready.dispose()?;
        }
        Ok(outlet)
    }

    /// Demands `cdo` (required) until `deadline`, checking the consumers
    /// between polls; the data is dropped at once (it only says "done").
    fn await_object(
        &mut self,
        cdo: &mut Cdo<'p>,
        role: ConsumerRole,
        deadline: Instant,
    ) -> Result<(), OutletError> {
        let start = Instant::now();
        loop {
            match cdo.demand_timeout(POLL) {
                Ok(_) => return Ok(()),
                Err(e) if timed_out(&e) => {}
                // It offered and then vanished: say which and how.
                Err(cdo::Error::PoolManager(ClientError::Pool {
                    code: ErrorCode::ProducerDied,
                    ..
                })) => return Err(self.consumers.failure(role_name(role))),
                Err(e) => return Err(e.into()),
            }
            self.waited(cdo, start, deadline)?;
        }
    }

    /// Between two polls of a wait for `cdo` begun at `start`: fails when a
    /// consumer did, or past `deadline`.
    fn waited(
        &mut self,
        cdo: &Cdo<'p>,
        start: Instant,
        deadline: Instant,
    ) -> Result<(), OutletError> {
        self.consumers.check()?;
        if Instant::now() >= deadline {
            return Err(OutletError::Timeout {
                what: cdo.name().to_string(),
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        Ok(())
    }

    /// Withdraws and disposes `cdo` once the consumers let go of it,
    /// waiting until `deadline` and checking the consumers between polls.
    fn retire(&mut self, mut cdo: Cdo<'p>, deadline: Instant) -> Result<(), OutletError> {
        let start = Instant::now();
        loop {
            match cdo.withdraw_timeout(POLL) {
                Ok(()) => break,
                Err(e) if timed_out(&e) => self.waited(&cdo, start, deadline)?,
                Err(e) => return Err(e.into()),
            }
        }
        cdo.dispose()?;
        self.withdrawn += 1;
        Ok(())
    }

    /// Requires the acknowledgements of record `seq`: from a renderer, and
    /// from the statistics consumer with `stats`.
    fn require_acks(
        &self,
        seq: u64,
        stats: bool,
    ) -> Result<Vec<(ConsumerRole, Cdo<'p>)>, OutletError> {
        let roles = [ConsumerRole::Render, ConsumerRole::Stats];
        let mut acks = Vec::new();
        for &role in &roles[..1 + usize::from(stats)] {
            let mut ack = self.pool.declare(&done_name(seq, role))?;
            ack.require()?;
            acks.push((role, ack));
        }
        Ok(acks)
    }

    /// Waits for the acknowledgements `acks`, checking the consumers first
    /// too, since a renderers' group gives the records of one that failed
    /// to another, so that the waits alone may not notice.
    fn await_acks(&mut self, acks: Vec<(ConsumerRole, Cdo<'p>)>) -> Result<(), OutletError> {
        self.consumers.check()?;
        let deadline = Instant::now() + self.timeout;
        for (role, mut ack) in acks {
            self.await_object(&mut ack, role, deadline)?;
            ack.dispose()?;
        }
        Ok(())
    }

    /// Waits until the consumers of the oldest record are done with it,
    /// then withdraws its objects.
    fn retire_oldest(&mut self) -> Result<(), OutletError> {
        let Some(out) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.await_acks(out.acks)?;
        let deadline = Instant::now() + self.timeout;
        for cdo in out.objects {
            self.retire(cdo, deadline)?;
        }
        Ok(())
    }

    /// Withdraws the oldest checkpoint out: the withdrawal completes once
    /// the archiver has stored it and marked it done.
    fn retire_checkpoint(&mut self) -> Result<(), OutletError> {
        let Some(cdo) = self.checkpoints.pop_front() else {
            return Ok(());
        };
        self.consumers.check()?;
        let deadline = Instant::now() + self.timeout;
        self.retire(cdo, deadline)
    }

    /// Offers `cdo`, its attributes set, filling its bytes in place with
    /// `fill` (through the scratch cells where the memory is not aligned
    /// for `f64`).
    fn offer_cells(
        &mut self,
        mut cdo: Cdo<'p>,
        fill: impl FnOnce(&mut [f64]),
    ) -> Result<Cdo<'p>, OutletError> {
        cdo.seal()?;
        let bytes = cdo.buffer_mut_placed(&self.policy)?;
        match bytemuck::try_cast_slice_mut(bytes) {
            Ok(cells) => fill(cells),
            Err(_) => {
                self.scratch.clear();
                self.scratch
                    .resize(bytes.len() / std::mem::size_of::<f64>(), 0.0);
                fill(&mut self.scratch);
                bytes.copy_from_slice(bytemuck::cast_slice(&self.scratch));
            }
        }
        cdo.offer()?;
        self.offered += 1;
        Ok(cdo)
    }

    /// Requires the acknowledgements of the record of `capture`, then
    /// offers its fields, filled in place, then its index.
    fn offer_record(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let (meta, seq) = (&capture.meta, self.next_seq);
        let acks = self.require_acks(seq, true)?;
        let mut objects = Vec::with_capacity(NVAR + 1);
        for var in 0..NVAR {
            let mut field = self.pool.declare(&field_name(seq, var))?;
            set_field(&mut field, meta, var)?;
            let field = self.offer_cells(field, |cells| capture.state.copy_interior(var, cells))?;
            objects.push(field);
        }
        let mut index = self.pool.declare(&index_name(seq))?;
        set_meta(&mut index, meta, Priority::Output)?;
        index.write(&meta.step.to_le_bytes())?;
        index.seal()?;
        index.offer()?;
        self.offered += 1;
        objects.push(index);
        self.in_flight.push_back(Out { objects, acks });
        self.next_seq += 1;
        self.bytes += (NVAR * meta.nx * meta.ny * std::mem::size_of::<f64>()) as u64;
        Ok(())
    }

    /// Offers the state of `capture` as its checkpoint CDO, encoded in
    /// place, for the archiver.
    fn offer_checkpoint(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let checkpoint = capture.checkpoint_ref();
        let name = checkpoint_name(checkpoint.step);
        let mut cdo = self.pool.declare(&name)?;
        set_checkpoint(&mut cdo, &capture.meta, checkpoint.encoded_len())?;
        cdo.seal()?;
        let mut bytes = cdo.buffer_mut_placed(&self.policy)?;
        checkpoint
            .encode(&mut bytes)
            .map_err(|source| CheckpointError::Io {
                path: name.into(),
                source,
            })?;
        cdo.offer()?;
        self.offered += 1;
        self.checkpoints.push_back(cdo);
        Ok(())
    }

    /// Retires every record, then ends the stream of each renderer (if
    /// any) in turn: offers an end marker, which the renderers' group gives
    /// to one member (the first marker also reaches the statistics
    /// consumer), and waits for its acknowledgement. A member leaves its
    /// group before acknowledging its marker, so the next marker goes to
    /// another.
    fn end_stream(&mut self) -> Result<(), OutletError> {
        while !self.in_flight.is_empty() {
            self.retire_oldest()?;
        }
        let first = self.next_seq;
        let mut markers = Vec::with_capacity(self.renderers);
        for seq in first..first + self.renderers as u64 {
            // Required first, so that the consumer cannot leave unread.
            let acks = self.require_acks(seq, seq == first)?;
            let mut marker = self.pool.declare(&index_name(seq))?;
            set_end(&mut marker)?;
            marker.write(&[0; 8])?;
            marker.seal()?;
            marker.offer()?;
            self.offered += 1;
            markers.push(marker);
            self.await_acks(acks)?;
        }
        let deadline = Instant::now() + self.timeout;
        for marker in markers {
            self.retire(marker, deadline)?;
        }
        Ok(())
    }
}

impl Outlet for TransitOutlet<'_> {
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
        let consumers = self.consumers.len();
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
        // Only the solver is left: what the pool still holds is its own.
        let left = self.pool.stats()?;
        self.pool.leave(self.timeout)?;
        report.transit = Some(TransitReport {
            manager: self.pool.endpoint().map(|e| ManagerUse {
                started: self.pool.runs_manager(),
                socket: e.socket.display().to_string(),
            }),
            consumers,
            offered: self.offered,
            withdrawn: self.withdrawn,
            left,
        });
        Ok(report)
    }
}
