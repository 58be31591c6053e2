//! Blocking calls from Python: the GIL released while they wait, in
//! slices, so that other Python threads run and Ctrl-C interrupts a wait.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::time::{Duration, Instant};

/// The longest slice of one wait between two checks for signals.
const SLICE: Duration = Duration::from_millis(200);

/// A timeout in seconds from Python (`None`: no bound).
///
/// # Errors
/// `ValueError` for a negative or non-finite number.
pub fn timeout(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| PyValueError::new_err(format!("bad timeout {s} s")))
        })
        .transpose()
}

/// Calls `attempt` with the time it may wait (at most a slice) until it
/// gives `Some` or an error, or until `timeout` has passed (`None`),
/// with the GIL released during each call; a pending signal's exception
/// (`KeyboardInterrupt`) ends the wait.
///
/// # Errors
/// The signal handler's exception; `attempt`'s error (inside `Ok`).
pub fn in_slices<T: Send, E: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> Result<Option<T>, E> + Send,
) -> PyResult<Result<Option<T>, E>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        match py.detach(|| attempt(slice)) {
            Ok(None) if deadline.is_none_or(|d| Instant::now() < d) => py.check_signals()?,
            done => return Ok(done),
        }
    }
}
