//! The background thread that rebalances.

use super::engine::Tiering;
use crate::allocator::Mamba;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A thread that runs a rebalancing pass every `interval`, and at once when
/// an allocation of movable data takes a space above its high watermark.
/// Dropping it (or [`Mover::stop`]) stops the thread after its current
/// pass.
///
/// ```
/// use mamba::{tiering::Mover, Config, Mamba};
/// use std::time::Duration;
/// let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
/// let mover = Mover::start(&mamba, Duration::from_millis(50))?;
/// // ... allocate and use movable data ...
/// mover.stop();
/// # Ok::<(), mamba::Error>(())
/// ```
#[derive(Debug)]
pub struct Mover {
    tiering: Arc<Tiering>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mover {
    /// Starts the thread for the movable data of `mamba`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero interval; [`Error::Os`] when the
    /// thread cannot be started.
    pub fn start(mamba: &Mamba, interval: Duration) -> Result<Mover> {
        if interval.is_zero() {
            return Err(Error::Config(
                "the mover's interval must be above zero".into(),
            ));
        }
        let tiering = Arc::clone(mamba.tiering());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tiering, stop) = (Arc::clone(&tiering), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("mamba-mover".into())
                .spawn(move || {
                    while !stop.load(Relaxed) {
                        let report = tiering.rebalance();
                        if report.failed > 0 {
                            tracing::warn!(failed = report.failed, "rebalancing pass");
                        }
                        tiering.wait_for_request(interval);
                    }
                })
                .map_err(|e| Error::os("spawning the mover thread", e))?
        };
        Ok(Mover {
            tiering,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Mover {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.tiering.request_pass();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the mover thread panicked");
            }
        }
    }
}
