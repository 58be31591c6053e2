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
pub fn interleaved_medians(
    rounds: usize,
    mut ours: impl FnMut() -> Duration,
    mut peer: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let rounds = rounds.max(1);
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for i in 0..rounds {
        if i % 2 == 0 {
            a.push(ours());
            b.push(peer());
        } else {
            b.push(peer());
            a.push(ours());
        }
    }
    (median(&mut a), median(&mut b))
}

/// Median of a list of durations (the lower middle for even lengths).
pub fn median(samples: &mut [Duration]) -> Duration {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_unstable();
    samples[(samples.len() - 1) / 2]
}
