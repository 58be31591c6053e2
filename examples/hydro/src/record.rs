//! Output records: copies of the interior fields with their attributes,
//! staged in a fixed ring of buffers from a [`Memory`].
//!
//! The solver copies the state into a free ring slot and hands the record on;
//! the slot returns to the ring when the last consumer drops the record. When
//! every slot is in use the solver waits for one: records are never dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use crate::memory::{Buffer, Memory, MemoryError};
use crate::params::Params;
use crate::state::{State, FIELD_NAMES, NVAR};

/// Units of the conserved fields (HydroC's code units, 2D).
pub const FIELD_UNITS: [&str; NVAR] = ["M/L^2", "M/(L T)", "M/(L T)", "M/T^2"];

/// Attributes of an output record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordMeta {
    /// Steps done when the record was taken.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// The last time step.
    pub dt: f64,
    /// Id of the producing rank.
    pub producer: u32,
    /// Interior cells along x.
    pub nx: usize,
    /// Interior cells along y.
    pub ny: usize,
    /// Cell size.
    pub dx: f64,
}

impl RecordMeta {
    /// The metadata from typed look-ups of its attributes by key (`step`,
    /// `time`, `dt`, `producer`, `nx`, `ny`, `dx`): the one decoding every
    /// transport shares, whatever its attribute type.
    pub fn from_lookups<E>(
        uint: impl Fn(&str) -> Result<u64, E>,
        float: impl Fn(&str) -> Result<f64, E>,
    ) -> Result<RecordMeta, E> {
        Ok(RecordMeta {
            step: uint("step")?,
            time: float("time")?,
            dt: float("dt")?,
            producer: uint("producer")? as u32,
            nx: uint("nx")? as usize,
            ny: uint("ny")? as usize,
            dx: float("dx")?,
        })
    }
}

/// The four conserved fields of the interior cells at one step, field-major,
/// x fastest, with their attributes.
#[derive(Debug)]
pub struct OutputRecord {
    meta: RecordMeta,
    slot: Slot,
}

/// A record shared by every consumer that receives it.
pub type SharedRecord = Arc<OutputRecord>;

impl OutputRecord {
    /// The record's attributes.
    pub fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    /// The interior cells of field `var`, x fastest.
    pub fn field(&self, var: usize) -> &[f64] {
        let n = self.meta.nx * self.meta.ny;
        &self.slot.buffer()[var * n..(var + 1) * n]
    }

    /// Bytes of field data.
    pub fn bytes(&self) -> usize {
        NVAR * self.meta.nx * self.meta.ny * std::mem::size_of::<f64>()
    }

    /// The record as the analyses read it.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            meta: self.meta,
            fields: std::array::from_fn(|var| self.field(var)),
        }
    }
}

/// The fields and attributes of one output record, wherever they live (a
/// ring slot or the data views of CDOs): what the analyses read.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// The record's attributes.
    pub meta: RecordMeta,
    /// The interior cells of each field, x fastest, in storage order.
    pub fields: [&'a [f64]; NVAR],
}

impl RecordView<'_> {
    /// The record's attributes.
    pub fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    /// Names of the fields, in storage order.
    pub fn field_names(&self) -> [&'static str; NVAR] {
        FIELD_NAMES
    }

    /// Units of the fields, in storage order.
    pub fn field_units(&self) -> [&'static str; NVAR] {
        FIELD_UNITS
    }

    /// The interior cells of field `var`, x fastest.
    pub fn field(&self, var: usize) -> &[f64] {
        self.fields[var]
    }

    /// The record as a heap state (ghost cells zero), for checkpoints.
    pub fn to_state(&self) -> State {
        let mut state = State::new(self.meta.nx, self.meta.ny);
        for var in 0..NVAR {
            state.set_interior(var, self.field(var));
        }
        state
    }
}

/// A checkpoint request: a record of the full state plus what a restart
/// needs besides it.
#[derive(Debug, Clone)]
pub struct CheckpointJob {
    /// The run's parameters.
    pub params: Params,
    /// The state at the checkpoint's step.
    pub record: SharedRecord,
}

/// A ring buffer slot, returned to its ring on drop.
#[derive(Debug)]
struct Slot {
    buffer: Option<Buffer>,
    home: Sender<Buffer>,
}

impl Slot {
    fn buffer(&self) -> &Buffer {
        self.buffer
            .as_ref()
            .expect("a slot holds its buffer until drop")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            // The ring may be gone at the end of a run: then the buffer is
            // simply freed.
            let _ = self.home.send(buffer);
        }
    }
}

/// A fixed set of record buffers.
#[derive(Debug)]
pub struct RecordRing {
    free: Receiver<Buffer>,
    home: Sender<Buffer>,
    producer: u32,
}

impl RecordRing {
    /// `slots` buffers (at least two: double buffering) sized for records of
    /// `nx x ny` cells, from `memory`.
    ///
    /// # Errors
    /// When `memory` cannot provide them.
    pub fn new(
        nx: usize,
        ny: usize,
        slots: usize,
        producer: u32,
        memory: &Memory,
    ) -> Result<RecordRing, MemoryError> {
        let slots = slots.max(2);
        let (home, free) = channel::bounded(slots);
        for _ in 0..slots {
            home.send(memory.buffer(NVAR * nx * ny)?)
                .expect("the ring has room for its own slots");
        }
        Ok(RecordRing {
            free,
            home,
            producer,
        })
    }

    /// The mamba space of the buffers (`None` on the heap or when all are
    /// in use).
    pub fn space(&self) -> Option<mamba::SpaceInfo> {
        let buffer = self.free.try_recv().ok()?;
        let space = buffer.space().cloned();
        let _ = self.home.send(buffer);
        space
    }

    /// Copies the interior of `state` into a free slot, waiting for one if
    /// every slot is in use, and returns the record and the time spent
    /// waiting.
    pub fn capture(&self, state: &State, meta: RecordMeta) -> (SharedRecord, Duration) {
        let (mut buffer, waited) = match self.free.try_recv() {
            Ok(b) => (b, Duration::ZERO),
            Err(_) => {
                let start = Instant::now();
                let b = self
                    .free
                    .recv()
                    .expect("the ring holds a sender of its own");
                (b, start.elapsed())
            }
        };
        let n = state.nx() * state.ny();
        for (var, out) in buffer.chunks_exact_mut(n).enumerate() {
            state.copy_interior(var, out);
        }
        let meta = RecordMeta {
            producer: self.producer,
            nx: state.nx(),
            ny: state.ny(),
            ..meta
        };
        let slot = Slot {
            buffer: Some(buffer),
            home: self.home.clone(),
        };
        (Arc::new(OutputRecord { meta, slot }), waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_records_drop() {
        let ring = RecordRing::new(3, 2, 2, 7, &Memory::heap()).unwrap();
        let mut state = State::new(3, 2);
        state.set(0, 2, 1, 5.0);
        let meta = RecordMeta {
            step: 4,
            time: 0.5,
            dt: 0.1,
            producer: 0,
            nx: 0,
            ny: 0,
            dx: 1.0,
        };
        let (a, _) = ring.capture(&state, meta);
        let (b, _) = ring.capture(&state, meta);
        assert_eq!(a.meta().producer, 7);
        assert_eq!(a.field(0)[5], 5.0);
        assert_eq!(a.bytes(), 4 * 6 * 8);
        assert!(ring.free.is_empty());
        drop(a);
        let (c, waited) = ring.capture(&state, meta);
        assert_eq!(waited, Duration::ZERO);
        drop((b, c));
        assert_eq!(ring.free.len(), 2);
    }
}
