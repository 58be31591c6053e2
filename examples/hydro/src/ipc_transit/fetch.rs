//! Waiting on the pool manager: a bounded wait that watches the consumer
//! processes between polls (for an object, or any reply), and a record
//! demanded as zero-copy views of its fields.

use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientError, View};

use super::attributes::meta_of;
use super::field_name;
use crate::outlet::OutletError;
use crate::record::{RecordMeta, RecordView};
use crate::state::NVAR;

/// How long a demand waits before the watchdog runs.
const POLL: Duration = Duration::from_millis(100);

/// Runs `attempt` (each waiting up to a tenth of a second) until it brings a value,
/// running `watch` between attempts, whose error ends the wait; `what` is
/// waited for until `deadline`.
///
/// # Errors
/// Those of `attempt` and `watch`; [`OutletError::Timeout`] past the
/// deadline.
pub fn watched_wait<T>(
    what: &str,
    deadline: Instant,
    mut attempt: impl FnMut(Duration) -> Result<Option<T>, OutletError>,
    mut watch: impl FnMut() -> Result<(), OutletError>,
) -> Result<T, OutletError> {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt(POLL)? {
            return Ok(value);
        }
        watch()?;
        if Instant::now() >= deadline {
            return Err(OutletError::Timeout {
                what: what.into(),
                seconds: start.elapsed().as_secs_f64(),
            });
        }
    }
}

/// Demands `name`, waiting until `deadline` and running `watch` between
/// polls, whose error ends the wait. Each timed-out demand stays with the
/// manager (retracting would drop a require of the name).
///
/// # Errors
/// The client's errors; [`OutletError::Timeout`] past the deadline; those
/// of `watch`.
pub fn await_object(
    client: &mut Client,
    name: &str,
    deadline: Instant,
    watch: impl FnMut() -> Result<(), OutletError>,
) -> Result<View, OutletError> {
    let attempt = |poll| match client.demand(name, poll) {
        Ok(view) => Ok(Some(view)),
        Err(ClientError::Timeout) => Ok(None),
        Err(e) => Err(e.into()),
    };
    watched_wait(name, deadline, attempt, watch)
}

/// A record demanded from the pool: its metadata and a read-only view of
/// each field in the producer's shared memory.
#[derive(Debug)]
pub struct Fetched {
    meta: RecordMeta,
    fields: Vec<View>,
}

impl Fetched {
    /// Demands the fields of record `seq` (offered before its index, so
    /// they are there), waiting up to `timeout`.
    ///
    /// # Errors
    /// The client's errors; [`OutletError::Record`] for bad attributes.
    pub fn demand(
        client: &mut Client,
        seq: u64,
        timeout: Duration,
    ) -> Result<Fetched, OutletError> {
        let names: Vec<String> = (0..NVAR).map(|var| field_name(seq, var)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let fields = client.demand_many(&names, timeout)?;
        let meta = meta_of(names[0], fields[0].attrs())?;
        Ok(Fetched { meta, fields })
    }

    /// The record as the analyses read it, over the shared memory.
    ///
    /// # Errors
    /// [`OutletError::Record`] when a field is not `nx * ny` aligned `f64`.
    pub fn view(&self) -> Result<RecordView<'_>, OutletError> {
        let n = self.meta.nx * self.meta.ny;
        let mut cells: Vec<&[f64]> = Vec::with_capacity(NVAR);
        for field in &self.fields {
            let bad = |reason: String| OutletError::Record {
                name: field.name().into(),
                reason,
            };
            let values: &[f64] = bytemuck::try_cast_slice(&field[..])
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
