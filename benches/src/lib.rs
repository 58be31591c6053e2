//! Shared pieces of the `compare` benchmark binary: the JSON row every case
//! prints, and interleaved median timing of "ours" against a peer.

use std::time::Duration;

pub mod affinity;
pub mod alloc;
pub mod cdo;
pub mod cdo_ipc;
pub mod fabric;
pub mod gpu;
pub mod gpu_pool;
pub mod gpu_transpose;
pub mod hydro;
pub mod report;
pub mod sirius;
pub mod tiering;
pub mod transforms;

pub use report::{Better, Counts, Resident, Row};

/// Times `ours` and `peer` alternately, `rounds` times each, and returns the
/// median duration of one call of each, in that order.
///
/// Each closure is one timed sample (it may loop internally; divide by the
/// inner count yourself). Interleaving the two spreads the noise of a shared
/// machine over both sides instead of penalising whichever runs second.
/// Before each sample the harness sleeps for [`SETTLE`], so that no thread
/// of the side timed before (a pool manager's connection thread, say, that
/// looks for its next request for some µs before it sleeps) still runs
/// while the other side is timed.
pub fn interleaved_medians(
    rounds: usize,
    mut ours: impl FnMut() -> Duration,
    mut peer: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let rounds = rounds.max(1);
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    let settled = |sample: &mut dyn FnMut() -> Duration| {
        std::thread::sleep(SETTLE);
        sample()
    };
    for i in 0..rounds {
        if i % 2 == 0 {
            a.push(settled(&mut ours));
            b.push(settled(&mut peer));
        } else {
            b.push(settled(&mut peer));
            a.push(settled(&mut ours));
        }
    }
    (median(&mut a), median(&mut b))
}

/// The pause before each sample of [`interleaved_medians`]: longer than
/// any thread of ours or of a peer looks for work before it sleeps.
pub const SETTLE: Duration = Duration::from_millis(1);

/// Median of a list of durations (the lower middle for even lengths).
pub fn median(samples: &mut [Duration]) -> Duration {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_unstable();
    samples[(samples.len() - 1) / 2]
}
