//! `compare sirius`: SCF steps of the sirius example (block Davidson per
//! k-point, H applied through the device seam, the wave functions staged
//! host -> device -> host around every eigensolver call).
//!
//! * **Ours**: buffers from a mamba pool; the staging as CDO hand-overs of
//!   an in-process pool into the device's GPU space; the device slots of
//!   the H applies from that GPU space's pool. The mamba is assembled from
//!   a DRAM space and a GPU space of the device test double
//!   (`--device sim`).
//! * **Peer**: the same solver as an application without a pool writes
//!   it: a plain heap allocation per buffer, device memory allocated from
//!   the runtime per eigensolver call (the slots and the staging blocks),
//!   and a synchronous runtime copy per move.
//!
//! Both run on the test double with the same budget, H applied by the
//! double in its stream order on both sides, so they move the
//! same bytes and take the same number of buffers (the row reports both)
//! and must find the same eigenvalues (checked: a row whose sides differ
//! is not reported). On a machine without a GPU the double's copies are
//! memcpy; what differs is where memory comes from and how the blocks
//! are handed over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mamba::gpu::SimDevice;
use sirius::link::{RuntimeLink, SlotSource};
use sirius::{CdoStage, Cli, CopyStage, Memory, Node, Offload, Params, Report};

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

/// One timed run of ours on `node` (its pools warm from earlier runs, as
/// in an application's later SCF loops), ms per step.
fn ours(params: &Params, node: &Node, report: &mut Option<Report>) -> Duration {
    // Fresh counters over the same pools.
    let memory = Memory::pooled(Arc::clone(&node.mamba), &mamba::Policy::require(node.host))
        .expect("the host space pools");
    let sim = node.sim.clone().expect("a node of the test double");
    let mut offload = Offload::in_sim_space(
        sim,
        Arc::clone(&node.mamba),
        node.device,
        memory.clone(),
        params.device_budget,
    )
    .expect("the test double starts");
    let pool = cdo::Pool::new(Arc::clone(&node.mamba), cdo::PoolConfig::default())
        .expect("an in-process pool");
    let mut stage = CdoStage::new(&pool, node.host, node.device);
    let t = Instant::now();
    let r = sirius::run(params, &memory, &mut offload, &mut stage)
        .expect("the benchmark run converges");
    let elapsed = t.elapsed();
    *report = Some(r);
    elapsed / STEPS as u32
}

/// One timed run of the peer on a fresh double and heap, ms per step.
fn peer(params: &Params, report: &mut Option<Report>) -> Duration {
    let memory = Memory::heap();
    let sim = SimDevice::new();
    let link = RuntimeLink::new(Arc::new(sim.clone()), memory.clone(), SlotSource::Runtime)
        .expect("the test double starts")
        .applying_on(sim.clone());
    let mut offload = Offload::linked("sim (runtime slots)", Box::new(link), params.device_budget);
    let mut stage = CopyStage::new(sim).expect("the test double starts");
    let t = Instant::now();
    let r = sirius::run(params, &memory, &mut offload, &mut stage)
        .expect("the benchmark run converges");
    let elapsed = t.elapsed();
    *report = Some(r);
    elapsed / STEPS as u32
}

fn counts(report: &Option<Report>) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    if let Some(r) = report {
        c.insert("bytes_to_device".into(), r.bytes_to_device);
        c.insert("bytes_from_device".into(), r.bytes_from_device);
        c.insert("staged_calls".into(), r.staged_calls);
        c.insert(
            "handover_bytes_to_device".into(),
            r.handover_bytes_to_device,
        );
        c.insert(
            "handover_bytes_from_device".into(),
            r.handover_bytes_from_device,
        );
        c.insert("device_chunks".into(), r.device_chunks);
        c.insert("buffers".into(), r.buffers);
        c.insert("pool_high_water_bytes".into(), r.pool_high_water_bytes);
        c.insert("live_bytes_peak".into(), r.live_bytes_peak);
    }
    c
}

fn eigenvalues(report: &Option<Report>) -> Option<Vec<Vec<f64>>> {
    report
        .as_ref()
        .map(|r| r.kpoints.iter().map(|k| k.eigenvalues.clone()).collect())
}

/// The `scf-iteration` row: ms per SCF step, ours against the peer.
pub fn run() -> Vec<Row> {
    scf_row(&params("6,5,6", "16", "1048576"), ROUNDS)
        .into_iter()
        .collect()
}

/// The row of `params`, `rounds` timed runs of each side; `None` (with a
/// line on stderr) when mamba cannot pool this node's memory or when the
/// two sides disagree.
fn scf_row(params: &Params, rounds: usize) -> Option<Row> {
    let node = match Node::for_params(params) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sirius: no mamba node ({e})");
            return None;
        }
    };
    let (mut ours_report, mut peer_report) = (None, None);
    let (ours_time, peer_time) = interleaved_medians(
        rounds,
        || ours(params, &node, &mut ours_report),
        || peer(params, &mut peer_report),
    );
    let (mine, theirs) = (eigenvalues(&ours_report), eigenvalues(&peer_report));
    if mine != theirs {
        eprintln!("sirius: ours and the peer found different eigenvalues: {mine:?} vs {theirs:?}");
        return None;
    }
    if let Some(r) = &ours_report {
        if r.max_error() >= 1e-8 {
            eprintln!(
                "sirius: error {:.1e} against the exact values",
                r.max_error()
            );
            return None;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Some(
        Row::compared(
            "sirius",
            "scf-iteration",
            "ms/step",
            Better::Lower,
            ms(ours_time),
            ms(peer_time),
            "heap buffers, runtime device memory and a synchronous copy per call",
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
        for key in [
            "bytes_to_device",
            "bytes_from_device",
            "staged_calls",
            "handover_bytes_to_device",
            "handover_bytes_from_device",
            "device_chunks",
            "buffers",
        ] {
            assert!(c.ours[key] > 0, "{key}");
            assert_eq!(c.ours[key], c.peer[key], "{key}");
        }
        assert_eq!(c.ours["staged_calls"], 3 * STEPS as u64);
        assert!(c.ours["pool_high_water_bytes"] > 0);
        assert_eq!(c.peer["pool_high_water_bytes"], 0);
    }
}
