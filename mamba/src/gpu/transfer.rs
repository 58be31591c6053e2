//! [`Transfer`]: the completion handle of an asynchronous copy.

use super::device::{EventId, StreamId};
use super::gpu_device::GpuDevice;
use crate::error::{Error, Result};
use std::sync::{mpsc, Arc};

/// A copy in flight. It owns what the copy reads and writes (`T`, e.g.
/// the two arrays) and gives it back from [`Transfer::wait`], so that no
/// memory can be freed or reused while a DMA may still touch it; dropping
/// an unfinished transfer waits for it.
///
/// Copies made only of DMA complete with an event on the device's copy
/// stream; copies that need the CPU (staging pageable memory, converting a
/// layout on the host) run on a background thread.
#[derive(Debug)]
#[must_use = "a transfer is waited for when dropped"]
pub struct Transfer<T> {
    state: State<T>,
}

#[derive(Debug)]
enum State<T> {
    /// Completes with `event` on the device's copy stream.
    Device {
        gpu: Arc<GpuDevice>,
        event: EventId,
        payload: Option<T>,
    },
    /// Completes when the thread sends its result.
    Host(mpsc::Receiver<Result<T>>),
    /// Complete (the result is taken by `wait`).
    Ready(Option<Result<T>>),
}

impl<T: Send + 'static> Transfer<T> {
    /// A transfer that completes with everything enqueued on `gpu`'s copy
    /// stream so far.
    pub(crate) fn on_device(gpu: Arc<GpuDevice>, payload: T) -> Self {
        match gpu.record() {
            Ok(event) => Transfer {
                state: State::Device {
                    gpu,
                    event,
                    payload: Some(payload),
                },
            },
            Err(e) => {
                // Nothing more can be ordered after the copies: wait for
                // them the hard way before giving the payload back.
                let synced = gpu.runtime().synchronize();
                Self::ready(synced.and(Err(e)))
            }
        }
    }

    /// A transfer run by `work` on a background thread.
    pub(crate) fn on_thread(work: impl FnOnce() -> Result<T> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("mamba-copy".into())
            .spawn(move || {
                // The receiver may be gone (handle dropped): the payload is
                // then freed here.
                let _ = tx.send(work());
            });
        if let Err(e) = spawned {
            // The closure and its sender are dropped: `wait` reports the
            // copy as lost.
            tracing::error!(error = %e, "cannot start a copy thread");
        }
        Transfer {
            state: State::Host(rx),
        }
    }

    /// A transfer that is already over.
    pub(crate) fn ready(result: Result<T>) -> Self {
        Transfer {
            state: State::Ready(Some(result)),
        }
    }

    /// Whether the transfer is over (successfully or not), without
    /// blocking.
    pub fn poll(&mut self) -> bool {
        let done = match &mut self.state {
            State::Device { gpu, event, .. } => match gpu.runtime().query_event(*event) {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "querying a transfer");
                    true
                }
            },
            State::Host(rx) => match rx.try_recv() {
                Ok(r) => {
                    self.state = State::Ready(Some(r));
                    true
                }
                Err(mpsc::TryRecvError::Empty) => false,
                Err(mpsc::TryRecvError::Disconnected) => true,
            },
            State::Ready(_) => true,
        };
        if done {
            self.settle();
        }
        done
    }

    /// Blocks until the transfer is over and turns it into `Ready`.
    fn settle(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Ready(None));
        self.state = State::Ready(Some(match state {
            State::Device {
                gpu,
                event,
                payload,
            } => {
                let waited = gpu.runtime().wait_event(event);
                let destroyed = gpu.runtime().destroy_event(event);
                waited
                    .and(destroyed)
                    .and(payload.ok_or_else(|| Error::CopyLost("already taken".into())))
            }
            State::Host(rx) => rx.recv().unwrap_or_else(|_| {
                Err(Error::CopyLost(
                    "the copy thread did not start or died".into(),
                ))
            }),
            State::Ready(r) => {
                r.unwrap_or_else(|| Err(Error::CopyLost("the result was already taken".into())))
            }
        }));
    }

    /// Blocks until the transfer is over; gives back what it owned.
    ///
    /// # Errors
    /// The copy's error, or [`Error::CopyLost`] when its thread could not
    /// run.
    pub fn wait(mut self) -> Result<T> {
        self.settle();
        match std::mem::replace(&mut self.state, State::Ready(None)) {
            State::Ready(Some(r)) => r,
            _ => Err(Error::CopyLost("the result was already taken".into())),
        }
    }

    /// Makes work enqueued on `stream` (a stream of the same device's
    /// runtime) from now on wait for this transfer, without blocking the
    /// host. A transfer that runs on the host is waited for here instead
    /// (it is then complete, so the stream needs no wait).
    ///
    /// # Errors
    /// The runtime's refusal (e.g. a stream of another runtime).
    pub fn then_on(&mut self, stream: StreamId) -> Result<()> {
        match &self.state {
            State::Device { gpu, event, .. } => gpu.runtime().stream_wait_event(stream, *event),
            _ => {
                self.settle();
                Ok(())
            }
        }
    }

    /// Runs `next` (typically a follow-up copy of what this transfer
    /// produced) once this transfer is over, on a background thread; the
    /// returned transfer completes when `next`'s does.
    pub fn then<U: Send + 'static>(
        self,
        next: impl FnOnce(T) -> Transfer<U> + Send + 'static,
    ) -> Transfer<U> {
        Transfer::on_thread(move || next(self.wait()?).wait())
    }
}

impl<T> Drop for Transfer<T> {
    fn drop(&mut self) {
        if let State::Device { gpu, event, .. } = &self.state {
            // The payload must outlive the DMA that uses it.
            if let Err(e) = gpu.runtime().wait_event(*event) {
                tracing::error!(error = %e, "waiting for a dropped transfer");
            }
            let _ = gpu.runtime().destroy_event(*event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{DeviceRuntime, SimDevice};

    fn setup() -> (SimDevice, Arc<GpuDevice>) {
        let sim = SimDevice::new();
        let gpu = GpuDevice::new(Arc::new(sim.clone()));
        (sim, gpu)
    }

    #[test]
    fn dropping_an_unfinished_transfer_waits_for_its_dma() {
        let (sim, gpu) = setup();
        let dst = gpu.alloc(64).unwrap();
        let mut src = gpu.alloc_pinned(64).unwrap();
        src.as_mut_slice().fill(9);
        // SAFETY: the transfer owns `src` until the copy has completed.
        unsafe {
            gpu.enqueue_upload(dst.ptr(), src.as_slice().as_ptr(), 64, true)
                .unwrap();
        }
        let t = Transfer::on_device(Arc::clone(&gpu), src);
        assert_eq!(sim.stats().htod_copies, 0, "pending until forced");
        drop(t);
        assert_eq!(sim.stats().htod_copies, 1, "the drop waited for the DMA");
        assert_eq!(
            sim.stats().pinned_frees,
            1,
            "and only then freed the buffer"
        );
        assert_eq!(sim.peek(dst.ptr(), 64).unwrap(), vec![9; 64]);
    }

    #[test]
    fn host_transfers_report_their_result_and_chain() {
        let mut t = Transfer::on_thread(|| Ok(21));
        while !t.poll() {
            std::thread::yield_now();
        }
        assert_eq!(t.then(|x| Transfer::ready(Ok(x * 2))).wait().unwrap(), 42);
        let failed: Transfer<u8> = Transfer::on_thread(|| Err(Error::CopyLost("boom".into())));
        let chained = failed.then(|x| Transfer::ready(Ok(x)));
        assert!(matches!(chained.wait(), Err(Error::CopyLost(m)) if m == "boom"));
        let mut ready = Transfer::ready(Ok(()));
        let (sim, _gpu) = setup();
        let s = sim.create_stream().unwrap();
        ready.then_on(s).unwrap();
        assert_eq!(sim.pending(s).unwrap(), 0, "nothing to wait for");
    }

    #[test]
    fn a_stream_waits_on_a_device_transfer() {
        let (sim, gpu) = setup();
        let dst = gpu.alloc(8).unwrap();
        let src = gpu.alloc_pinned(8).unwrap();
        // SAFETY: the transfer owns `src` until the copy has completed.
        unsafe {
            gpu.enqueue_upload(dst.ptr(), src.as_slice().as_ptr(), 8, true)
                .unwrap();
        }
        let mut t = Transfer::on_device(Arc::clone(&gpu), src);
        let other = sim.create_stream().unwrap();
        t.then_on(other).unwrap();
        assert_eq!(
            sim.pending(other).unwrap(),
            1,
            "a wait on the transfer's event"
        );
        sim.synchronize_stream(other).unwrap();
        assert!(t.poll(), "the wait forced the transfer's stream");
        t.wait().unwrap();
    }
}
