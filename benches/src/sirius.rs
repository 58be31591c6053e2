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

fn params() -> Params {
    let cli = Cli::parse_from([
        "sirius",
        "--nmax",
        "6,5,6",
        "--kpoints",
        "0,0,0;0.25,0.25,0;0.5,0.5,0.5",
        "--bands",
        "16",
        "--iterations",
        &STEPS.to_string(),
        "--device",
        "sim",
        "--device-budget",
        "1048576",
    ]);
    Params::try_from(&cli).expect("the benchmark's parameters are valid")
}

fn timed(params: &Params, memory: &Memory, report: &mut Option<Report>) -> Duration {
    let mut offload =
        Offload::sim(memory.clone(), params.device_budget).expect("the test double starts");
    let t = Instant::now();
    let r = sirius::run(params, memory, &mut offload).expect("the benchmark run converges");
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
    let params = params();
    let mamba = match mamba::Mamba::discover(&mamba::Config {
        gpu: false,
        chunk_size: mamba::ByteSize(sirius::pool_chunk(&params)),
        ..mamba::Config::default()
    }) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("sirius: no mamba ({e})");
            return Vec::new();
        }
    };
    let pooled = match Memory::pooled(mamba, &mamba::Policy::highest_bandwidth()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sirius: no pooled memory ({e})");
            return Vec::new();
        }
    };
    let (mut ours_report, mut peer_report) = (None, None);
    let (ours, peer) = interleaved_medians(
        ROUNDS,
        || timed(&params, &pooled, &mut ours_report),
        // A fresh heap memory per run: a plain allocation per buffer.
        || timed(&params, &Memory::heap(), &mut peer_report),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    vec![Row::compared(
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
    })]
}
