//! Wave functions host -> device -> host around every eigensolver call.
//!
//! SIRIUS copies a k-point's block of wave functions to the device before
//! its iterative eigensolver and back after it. Here a [`Stage`] does that
//! for [`crate::scf::run`], in four moves per call:
//!
//! 1. [`Stage::stage_in`]: the host's block goes to the device side;
//! 2. [`Stage::load`]: the eigensolver takes its start vectors from the
//!    device side's block;
//! 3. [`Stage::store`]: the eigensolver's result goes into the device
//!    side's result block;
//! 4. [`Stage::stage_out`]: the result comes back to the host's block.
//!
//! Moves 2 and 3 are the eigensolver reading and writing device memory:
//! only H is applied through the device ([`crate::device`]), the subspace
//! work runs on the host, so they are copies too wherever the device side
//! is device memory. Every move is byte-exact, so the answers do not depend
//! on the stage.
//!
//! [`CdoStage`] (ours) moves the block as CDOs of an in-process
//! [`cdo::Pool`]: the host offers it, the device side demands it with the
//! device space as its wanted place (a copy host -> device, or the same
//! bytes when the device space is the host's, as with `--device cpu`),
//! offers its result, and the host demands that in its own space. Names,
//! attributes and staging blocks are made once per k-point
//! ([`Stage::prepare`]); a call then allocates nothing on the CPU path.
//! [`CopyStage`] is the benchmark's peer: device memory from the runtime
//! per call and a synchronous copy each way.

use std::fmt;

use faer::c64;
use mamba::gpu::{DevicePtr, DeviceRuntime, StreamId};
use mamba::{Policy, SpaceId};

/// Why a staging move failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The CDO pool refused an operation or a copy.
    #[error("staging through the CDO pool: {0}")]
    Cdo(#[from] cdo::Error),
    /// The device runtime refused an allocation or a copy.
    #[error("staging through the device runtime: {0}")]
    Runtime(mamba::Error),
    /// A move for a k-point that was not prepared, or with a block of
    /// another length.
    #[error("k-point {kpoint} not staged for {len} values")]
    NotPrepared {
        /// The k-point.
        kpoint: usize,
        /// The length asked.
        len: usize,
    },
    /// A move out of order (a load before a stage-in, ...).
    #[error("k-point {kpoint}: {what}")]
    OutOfOrder {
        /// The k-point.
        kpoint: usize,
        /// What was missing.
        what: &'static str,
    },
}

/// Bytes and calls through a [`Stage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTraffic {
    /// Eigensolver calls staged (stage-ins).
    pub calls: u64,
    /// Bytes of the hand-overs (moves 1 and 4) copied host -> device.
    pub handover_to_device: u64,
    /// Bytes of the hand-overs copied device -> host.
    pub handover_from_device: u64,
    /// Hand-overs that moved no byte (the device side in host memory).
    pub zero_copy_handovers: u64,
    /// Bytes of the eigensolver's loads from device memory (move 2).
    pub loads_from_device: u64,
    /// Bytes of the eigensolver's stores to device memory (move 3).
    pub stores_to_device: u64,
}

impl StageTraffic {
    /// Every byte the stage moved host -> device.
    pub fn to_device(&self) -> u64 {
        self.handover_to_device + self.stores_to_device
    }

    /// Every byte the stage moved device -> host.
    pub fn from_device(&self) -> u64 {
        self.handover_from_device + self.loads_from_device
    }
}

/// The four moves around an eigensolver call; see the [module docs](self).
pub trait Stage {
    /// What the device side is.
    fn label(&self) -> String;
    /// Makes what k-point `kpoint`'s block of `len` values needs (once,
    /// before the SCF loop).
    ///
    /// # Errors
    /// Memory and pool errors.
    fn prepare(&mut self, kpoint: usize, len: usize) -> Result<(), StageError>;
    /// Move 1: the host's block `psi` to the device side.
    ///
    /// # Errors
    /// [`StageError`].
    fn stage_in(&mut self, kpoint: usize, psi: &[c64]) -> Result<(), StageError>;
    /// Move 2: the device side's block into the eigensolver's `psi`.
    ///
    /// # Errors
    /// [`StageError`].
    fn load(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError>;
    /// Move 3: the eigensolver's result `psi` into the device side's
    /// result block.
    ///
    /// # Errors
    /// [`StageError`].
    fn store(&mut self, kpoint: usize, psi: &[c64]) -> Result<(), StageError>;
    /// Move 4: the device side's result block back into the host's `psi`.
    ///
    /// # Errors
    /// [`StageError`].
    fn stage_out(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError>;
    /// Bytes and calls so far.
    fn traffic(&self) -> StageTraffic;
}

/// The bytes of a block of values.
pub(crate) fn bytes(v: &[c64]) -> &[u8] {
    // SAFETY: c64 is two f64 (repr(C)) without padding, so every byte of
    // the slice is initialised; u8 has no alignment requirement; the
    // length is the slice's in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), size_of_val(v)) }
}

/// The bytes of a block of values, writable.
pub(crate) fn bytes_mut(v: &mut [c64]) -> &mut [u8] {
    // SAFETY: as in `bytes`; every bit pattern is a valid c64 (two f64).
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), size_of_val(v)) }
}

/// One k-point's names and blocks.
struct KStage<'p> {
    /// Values of the block.
    len: usize,
    /// Declared templates: the host's offer of the block, the device
    /// side's demand of it (its wanted place set), the device side's
    /// offer of the result, the host's demand of it.
    offer_in: cdo::Cdo<'p>,
    demand_in: cdo::Cdo<'p>,
    offer_out: cdo::Cdo<'p>,
    demand_out: cdo::Cdo<'p>,
    /// The host's staging block (in the host space).
    host_block: cdo::Data,
    /// The device side's result block (in the device space).
    device_block: cdo::Data,
    /// What the device side received at the last stage-in, until its
    /// load.
    received: Option<cdo::Data>,
}

/// Ours: the block moves as CDOs of an in-process pool; see the
/// [module docs](self).
pub struct CdoStage<'p> {
    pool: &'p cdo::Pool,
    host: SpaceId,
    device: SpaceId,
    kpoints: Vec<Option<KStage<'p>>>,
    traffic: StageTraffic,
}

impl fmt::Debug for CdoStage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdoStage")
            .field("host", &self.host)
            .field("device", &self.device)
            .field("traffic", &self.traffic)
            .finish()
    }
}

impl<'p> CdoStage<'p> {
    /// Hand-overs through `pool` between the host space `host` and the
    /// device space `device` (the same space: zero-copy hand-overs).
    pub fn new(pool: &'p cdo::Pool, host: SpaceId, device: SpaceId) -> CdoStage<'p> {
        CdoStage {
            pool,
            host,
            device,
            kpoints: Vec::new(),
            traffic: StageTraffic::default(),
        }
    }

    fn kpoint(&mut self, kpoint: usize, len: usize) -> Result<&mut KStage<'p>, StageError> {
        match self.kpoints.get_mut(kpoint) {
            Some(Some(k)) if k.len == len => Ok(k),
            _ => Err(StageError::NotPrepared { kpoint, len }),
        }
    }

    /// Offers `data` through a handle declared from `offer` and demands
    /// it through one declared from `demand`; returns what the demand
    /// got, and whether it is a copy.
    fn hand_over(
        offer: &cdo::Cdo<'p>,
        demand: &cdo::Cdo<'p>,
        data: &cdo::Data,
    ) -> Result<(cdo::Data, bool), StageError> {
        let mut p = offer.declare_again();
        p.attach_data(data.clone())?;
        p.seal()?;
        p.offer()?;
        let mut c = demand.declare_again();
        c.require()?;
        let got = c.demand()?;
        c.dispose()?;
        drop(c);
        // The demand is done: nothing holds the withdrawal.
        p.withdraw()?;
        p.dispose()?;
        let copied = !got.same_bytes(data);
        Ok((got, copied))
    }

    /// The staging block `data`, writable: it must be unshared since the
    /// previous call's hand-over.
    fn unshared(kpoint: usize, data: &mut cdo::Data) -> Result<&mut cdo::Buffer, StageError> {
        data.get_mut().ok_or(StageError::OutOfOrder {
            kpoint,
            what: "the staging block is still held by a consumer",
        })
    }
}

impl Stage for CdoStage<'_> {
    fn label(&self) -> String {
        let name = |id| {
            self.pool
                .mamba()
                .pool(id)
                .map_or_else(|_| "?".to_string(), |p| p.info().name.clone())
        };
        format!(
            "CDO hand-over {} <-> {}",
            name(self.host),
            name(self.device)
        )
    }

    fn prepare(&mut self, kpoint: usize, len: usize) -> Result<(), StageError> {
        let size = size_of::<c64>() * len;
        let declare = |what: &str| self.pool.declare(&format!("sirius/k{kpoint}/psi/{what}"));
        let mut offer_in = declare("in")?;
        offer_in.set_size(size as u64)?;
        let mut demand_in = declare("in")?;
        demand_in.want_place(cdo::Place::Space(self.device))?;
        let mut offer_out = declare("out")?;
        offer_out.set_size(size as u64)?;
        let mut demand_out = declare("out")?;
        demand_out.want_place(cdo::Place::Space(self.host))?;
        let host_block = self
            .pool
            .allocate(size.max(1), &Policy::require(self.host))?
            .into();
        let device_block = self
            .pool
            .allocate(size.max(1), &Policy::require(self.device))?
            .into();
        if self.kpoints.len() <= kpoint {
            self.kpoints.resize_with(kpoint + 1, || None);
        }
        self.kpoints[kpoint] = Some(KStage {
            len,
            offer_in,
            demand_in,
            offer_out,
            demand_out,
            host_block,
            device_block,
            received: None,
        });
        Ok(())
    }

    fn stage_in(&mut self, kpoint: usize, psi: &[c64]) -> Result<(), StageError> {
        let k = self.kpoint(kpoint, psi.len())?;
        // What a failed call left with the device side goes.
        k.received = None;
        Self::unshared(kpoint, &mut k.host_block)?.write_bytes(0, bytes(psi))?;
        let (got, copied) = Self::hand_over(&k.offer_in, &k.demand_in, &k.host_block)?;
        let len = got.len() as u64;
        k.received = Some(got);
        self.traffic.calls += 1;
        if copied {
            self.traffic.handover_to_device += len;
        } else {
            self.traffic.zero_copy_handovers += 1;
        }
        Ok(())
    }

    fn load(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError> {
        let k = self.kpoint(kpoint, psi.len())?;
        let data = k.received.take().ok_or(StageError::OutOfOrder {
            kpoint,
            what: "a load before the stage-in",
        })?;
        data.read_bytes(0, bytes_mut(psi))?;
        if !data.host_accessible() {
            self.traffic.loads_from_device += data.len() as u64;
        }
        Ok(())
    }

    fn store(&mut self, kpoint: usize, psi: &[c64]) -> Result<(), StageError> {
        let k = self.kpoint(kpoint, psi.len())?;
        let block = Self::unshared(kpoint, &mut k.device_block)?;
        block.write_bytes(0, bytes(psi))?;
        if !block.host_accessible() {
            self.traffic.stores_to_device += size_of_val(psi) as u64;
        }
        Ok(())
    }

    fn stage_out(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError> {
        let k = self.kpoint(kpoint, psi.len())?;
        let (got, copied) = Self::hand_over(&k.offer_out, &k.demand_out, &k.device_block)?;
        got.read_bytes(0, bytes_mut(psi))?;
        if copied {
            self.traffic.handover_from_device += got.len() as u64;
        } else {
            self.traffic.zero_copy_handovers += 1;
        }
        Ok(())
    }

    fn traffic(&self) -> StageTraffic {
        self.traffic
    }
}

/// The peer: device memory allocated from the runtime per call, a
/// synchronous copy each way; see the [module docs](self).
pub struct CopyStage<R: DeviceRuntime> {
    rt: R,
    stream: StreamId,
    /// The device block of the call in flight and its values.
    block: Option<(DevicePtr, usize)>,
    /// The result block of the call in flight.
    result: Option<DevicePtr>,
    traffic: StageTraffic,
}

impl<R: DeviceRuntime> fmt::Debug for CopyStage<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyStage")
            .field("rt", &self.rt)
            .field("traffic", &self.traffic)
            .finish()
    }
}

fn runtime(e: mamba::Error) -> StageError {
    StageError::Runtime(e)
}

impl<R: DeviceRuntime> CopyStage<R> {
    /// Copies through `rt` on a stream of its own.
    ///
    /// # Errors
    /// [`StageError::Runtime`] when no stream can be made.
    pub fn new(rt: R) -> Result<CopyStage<R>, StageError> {
        let stream = rt.create_stream().map_err(runtime)?;
        Ok(CopyStage {
            rt,
            stream,
            block: None,
            result: None,
            traffic: StageTraffic::default(),
        })
    }

    /// A fresh device allocation of `len` values, the allocation done.
    fn alloc(&self, len: usize) -> Result<DevicePtr, StageError> {
        let ptr = self
            .rt
            .alloc_async((len * size_of::<c64>()).max(1), self.stream)
            .map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)?;
        Ok(ptr)
    }

    /// Frees `ptr` (after the stream's work).
    fn free(&self, ptr: DevicePtr) -> Result<(), StageError> {
        // SAFETY: `ptr` came from `alloc` on this stream and no copy
        // using it is left after the synchronizations of every move.
        unsafe { self.rt.free_async(ptr, self.stream) }.map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)
    }

    /// Frees the blocks of an unfinished call.
    fn reset(&mut self) {
        for ptr in [self.result.take(), self.block.take().map(|b| b.0)]
            .into_iter()
            .flatten()
        {
            if let Err(e) = self.free(ptr) {
                tracing::warn!("freeing a staging block: {e}");
            }
        }
    }
}

impl<R: DeviceRuntime> Stage for CopyStage<R> {
    fn label(&self) -> String {
        "runtime copy per call".into()
    }

    fn prepare(&mut self, _kpoint: usize, _len: usize) -> Result<(), StageError> {
        Ok(())
    }

    fn stage_in(&mut self, _kpoint: usize, psi: &[c64]) -> Result<(), StageError> {
        self.reset();
        let ptr = self.alloc(psi.len())?;
        self.block = Some((ptr, psi.len()));
        // SAFETY: the block holds `psi.len()` values; `psi` is borrowed
        // until the synchronization below completes the copy.
        unsafe {
            self.rt
                .copy_htod_async(ptr, psi.as_ptr().cast(), size_of_val(psi), self.stream)
        }
        .map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)?;
        self.traffic.calls += 1;
        self.traffic.handover_to_device += size_of_val(psi) as u64;
        Ok(())
    }

    fn load(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError> {
        let ptr = match self.block {
            Some((ptr, len)) if len == psi.len() => ptr,
            _ => {
                return Err(StageError::NotPrepared {
                    kpoint,
                    len: psi.len(),
                })
            }
        };
        // SAFETY: the block holds `psi.len()` values; `psi` is exclusively
        // borrowed until the synchronization below.
        unsafe {
            self.rt
                .copy_dtoh_async(psi.as_mut_ptr().cast(), ptr, size_of_val(psi), self.stream)
        }
        .map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)?;
        self.traffic.loads_from_device += size_of_val(psi) as u64;
        Ok(())
    }

    fn store(&mut self, _kpoint: usize, psi: &[c64]) -> Result<(), StageError> {
        let ptr = self.alloc(psi.len())?;
        self.result = Some(ptr);
        // SAFETY: as in `stage_in`.
        unsafe {
            self.rt
                .copy_htod_async(ptr, psi.as_ptr().cast(), size_of_val(psi), self.stream)
        }
        .map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)?;
        self.traffic.stores_to_device += size_of_val(psi) as u64;
        Ok(())
    }

    fn stage_out(&mut self, kpoint: usize, psi: &mut [c64]) -> Result<(), StageError> {
        let Some(ptr) = self.result else {
            return Err(StageError::OutOfOrder {
                kpoint,
                what: "a stage-out before the store",
            });
        };
        // SAFETY: as in `load`.
        unsafe {
            self.rt
                .copy_dtoh_async(psi.as_mut_ptr().cast(), ptr, size_of_val(psi), self.stream)
        }
        .map_err(runtime)?;
        self.rt.synchronize_stream(self.stream).map_err(runtime)?;
        self.traffic.handover_from_device += size_of_val(psi) as u64;
        self.reset();
        Ok(())
    }

    fn traffic(&self) -> StageTraffic {
        self.traffic
    }
}

impl<R: DeviceRuntime> Drop for CopyStage<R> {
    fn drop(&mut self) {
        self.reset();
        if let Err(e) = self.rt.destroy_stream(self.stream) {
            tracing::warn!("destroying the staging stream: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Node, Params};
    use clap::Parser;
    use std::sync::Arc;

    fn node(device: &str) -> Node {
        let cli = Cli::parse_from(["sirius", "--nmax", "1", "--device", device]);
        Node::for_params(&Params::try_from(&cli).unwrap()).unwrap()
    }

    fn block(len: usize, seed: f64) -> Vec<c64> {
        (0..len)
            .map(|i| c64::new((i as f64 * 0.37 + seed).sin(), (i as f64 * 0.11).cos()))
            .collect()
    }

    /// The four moves of two calls through `stage`, byte-exact.
    fn two_calls(stage: &mut dyn Stage, len: usize) {
        stage.prepare(0, len).unwrap();
        for call in 0..2 {
            let psi = block(len, call as f64);
            let mut solver = vec![c64::new(0.0, 0.0); len];
            stage.stage_in(0, &psi).unwrap();
            stage.load(0, &mut solver).unwrap();
            assert_eq!(solver, psi, "call {call}: load");
            let result = block(len, 10.0 + call as f64);
            stage.store(0, &result).unwrap();
            let mut host = vec![c64::new(0.0, 0.0); len];
            stage.stage_out(0, &mut host).unwrap();
            assert_eq!(host, result, "call {call}: stage-out");
        }
    }

    #[test]
    fn cdo_moves_through_the_doubles_gpu_space_and_back_byte_exact() {
        let n = node("sim");
        assert_ne!(n.host, n.device);
        let pool = cdo::Pool::new(Arc::clone(&n.mamba), cdo::PoolConfig::default()).unwrap();
        let mut stage = CdoStage::new(&pool, n.host, n.device);
        let len = 1000;
        stage.prepare(0, len).unwrap();
        stage.stage_in(0, &block(len, 0.5)).unwrap();
        // The device side holds the block in the simulated GPU space.
        let k = stage.kpoints[0].as_ref().unwrap();
        let held = k.received.as_ref().unwrap();
        assert_eq!(held.space(), Some(n.device));
        assert!(matches!(
            held.as_slice(),
            Err(cdo::Error::Memory(mamba::Error::NotHostAccessible(_)))
        ));
        let mut sink = vec![c64::new(0.0, 0.0); len];
        stage.load(0, &mut sink).unwrap();
        stage.store(0, &sink).unwrap();
        stage.stage_out(0, &mut sink).unwrap();

        two_calls(&mut stage, len);
        let bytes = (len * size_of::<c64>()) as u64;
        let t = stage.traffic();
        assert_eq!(t.calls, 3);
        assert_eq!(t.handover_to_device, 3 * bytes);
        assert_eq!(t.handover_from_device, 3 * bytes);
        assert_eq!(
            (t.loads_from_device, t.stores_to_device),
            (3 * bytes, 3 * bytes)
        );
        assert_eq!(t.zero_copy_handovers, 0);
        assert!(stage.label().contains("gpu1"), "{}", stage.label());

        // The peer moves the same bytes.
        let mut peer = CopyStage::new(mamba::gpu::SimDevice::new()).unwrap();
        two_calls(&mut peer, len);
        let p = peer.traffic();
        assert_eq!((p.to_device(), p.from_device()), (4 * bytes, 4 * bytes));
    }

    #[test]
    fn on_the_cpu_the_device_side_is_the_host_space_and_nothing_is_copied() {
        let n = node("cpu");
        assert_eq!(n.host, n.device);
        let pool = cdo::Pool::new(Arc::clone(&n.mamba), cdo::PoolConfig::default()).unwrap();
        let mut stage = CdoStage::new(&pool, n.host, n.device);
        two_calls(&mut stage, 333);
        let t = stage.traffic();
        assert_eq!(t.calls, 2);
        assert_eq!(t.zero_copy_handovers, 4);
        assert_eq!((t.to_device(), t.from_device()), (0, 0));
        let s = pool.stats();
        assert_eq!(s.bytes_copied, 0);
        assert_eq!(s.bytes_zero_copy, 4 * 333 * 16);
    }

    #[test]
    fn moves_out_of_order_or_unprepared_are_typed_errors() {
        let n = node("cpu");
        let pool = cdo::Pool::new(Arc::clone(&n.mamba), cdo::PoolConfig::default()).unwrap();
        let mut stage = CdoStage::new(&pool, n.host, n.device);
        let mut psi = block(10, 0.0);
        assert!(matches!(
            stage.stage_in(0, &psi),
            Err(StageError::NotPrepared { kpoint: 0, len: 10 })
        ));
        stage.prepare(1, 10).unwrap();
        assert!(matches!(
            stage.stage_in(0, &psi),
            Err(StageError::NotPrepared { .. })
        ));
        assert!(matches!(
            stage.stage_in(1, &psi[..5]),
            Err(StageError::NotPrepared { kpoint: 1, len: 5 })
        ));
        assert!(matches!(
            stage.load(1, &mut psi),
            Err(StageError::OutOfOrder { kpoint: 1, .. })
        ));
        // A call abandoned after its stage-in does not block the next one.
        stage.stage_in(1, &psi).unwrap();
        let fresh = block(10, 3.0);
        stage.stage_in(1, &fresh).unwrap();
        let mut solver = vec![c64::new(0.0, 0.0); 10];
        stage.load(1, &mut solver).unwrap();
        assert_eq!(solver, fresh);
        let mut peer = CopyStage::new(mamba::gpu::SimDevice::new()).unwrap();
        assert!(matches!(
            peer.stage_out(0, &mut psi),
            Err(StageError::OutOfOrder { .. })
        ));
        assert!(matches!(
            peer.load(0, &mut psi),
            Err(StageError::NotPrepared { .. })
        ));
    }
}
