//! `compare sirius`: one SCF step of the sirius example (block Davidson per
//! k-point, H applied through the device seam) with its buffers and device
//! slots in a mamba pool, against the same solver with a plain heap
//! allocation per buffer (what an application without a pool does).
//!
//! Both sides run the same physics on the device test double with the same
//! budget, so they move the same bytes and take the same number of
//! buffers; the row reports both. On a machine without a GPU the copies
//! are memcpy; what differs is only where buffers come from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sirius::{Cli, Memory, Offload, Params, Report};

use crate::{interleaved_medians, Better, Counts, Row};

/// SCF steps of one timed run.
const STEPS: usize = 4;
/// Timed runs of each side.
const ROUNDS: usize = 5;

fn params(nmax: &str, bands: &str, budget: &str) -> Params {
    let cli = Cli::parse_from([
        "sirius",
        "--nmax",
        nmax,
        "--kpoints",
        "0,0,0;0.25,0.25,0;0.5,0.5,0.5",
        "--bands",
        bands,
        "--iterations",
        &STEPS.to_string(),
        "--device",
        "sim",
        "--device-budget",
        budget,
    ]);
    Params::try_from(&cli).expect("the benchmark's parameters are valid")
}

fn timed(params: &Params, memory: &Memory, report: &mut Option<Report>) -> Duration {
    let mut offload =
        Offload::sim(memory.clone(), params.device_budget).expect("the test double starts");
    let mut stage =
        sirius::CopyStage::new(mamba::gpu::SimDevice::new()).expect("the test double starts");
    let t = Instant::now();
    let r =
        sirius::run(params, memory, &mut offload, &mut stage).expect("the benchmark run converges");
    let elapsed = t.elapsed();
    *report = Some(r);
    elapsed / STEPS as u32
}

fn counts(report: &Option<Report>) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    if let Some(r) = report {
        c.insert("bytes_to_device".into(), r.bytes_to_device);
        c.insert("bytes_from_device".into(), r.bytes_from_device);
        c.insert("buffers".into(), r.buffers);
        c.insert("pool_high_water_bytes".into(), r.pool_high_water_bytes);
        c.insert("live_bytes_peak".into(), r.live_bytes_peak);
    }
    c
}

/// The `scf-iteration` row: ms per SCF step, ours against the heap peer.
pub fn run() -> Vec<Row> {
    scf_row(&params("6,5,6", "16", "1048576"), ROUNDS)
        .into_iter()
        .collect()
}

/// The row of `params`, `rounds` timed runs of each side; `None` (with a
/// line on stderr) when mamba cannot pool this node's memory.
fn scf_row(params: &Params, rounds: usize) -> Option<Row> {
    let mamba = match mamba::Mamba::discover(&mamba::Config {
        gpu: false,
        chunk_size: mamba::ByteSize(sirius::pool_chunk(params)),
        ..mamba::Config::default()
    }) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("sirius: no mamba ({e})");
            return None;
        }
    };
    let pooled = match Memory::pooled(mamba, &mamba::Policy::highest_bandwidth()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sirius: no pooled memory ({e})");
            return None;
        }
    };
    let (mut ours_report, mut peer_report) = (None, None);
    let (ours, peer) = interleaved_medians(
        rounds,
        || timed(params, &pooled, &mut ours_report),
        // A fresh heap memory per run: a plain allocation per buffer.
        || timed(params, &Memory::heap(), &mut peer_report),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Some(
        Row::compared(
            "sirius",
            "scf-iteration",
            "ms/step",
            Better::Lower,
            ms(ours),
            ms(peer),
            "heap allocation per buffer",
        )
        .with_counts(Counts {
            ours: counts(&ours_report),
            peer: counts(&peer_report),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_do_the_same_work_and_only_ours_pools() {
        let row = scf_row(&params("1,1,1", "3", "2000"), 1).unwrap();
        assert_eq!(row.case, "scf-iteration");
        assert!(row.ours > 0.0 && row.peer.unwrap() > 0.0);
        let c = row.counts.unwrap();
        for key in ["bytes_to_device", "bytes_from_device", "buffers"] {
            assert!(c.ours[key] > 0, "{key}");
            assert_eq!(c.ours[key], c.peer[key], "{key}");
        }
        assert!(c.ours["pool_high_water_bytes"] > 0);
        assert_eq!(c.peer["pool_high_water_bytes"], 0);
    }
}
