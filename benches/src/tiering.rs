//! `compare tiering`: demotion and promotion between a capped DRAM tier and
//! an SSD tier of `O_DIRECT` spill files, against the same allocations
//! placed once and for all (what a pool without tiering does).
//!
//! `hot-cold-passes`: a working set three times the DRAM cap, of equal
//! objects allocated in order with DRAM preferred and the SSD as fallback,
//! so that the hot quarter, allocated last, starts out on the SSD. Each
//! pass reads every hot object in full, and one cold object every
//! [`Params::cold_every`] hot ones. Ours allocates movable data with a
//! background mover; the peer allocates plain blocks with the same policy.
//! Both sides read through the same kind of call (a copy into a buffer),
//! and the checksums of every read are compared with each other and with
//! the expected ones. The figure is the read bandwidth of the passes
//! (mover work included); the counts give the bytes moved and the bytes
//! read from the SSD.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mamba::config::{DirectoryTier, SsdIo};
use mamba::{ByteSize, Config, Mamba, Mover, Policy, Tier};

use crate::{interleaved_medians, Better, Counts, Row};

/// The shape of a run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// The DRAM cap in bytes; the working set is three times as large.
    pub dram: usize,
    /// Bytes per object.
    pub object: usize,
    /// Passes over the hot set.
    pub passes: usize,
    /// One cold read after this many hot reads.
    pub cold_every: usize,
    /// How often the mover runs when nothing wakes it.
    pub mover_interval: Duration,
}

impl Params {
    /// Objects in the working set.
    pub fn objects(&self) -> usize {
        3 * self.dram / self.object
    }

    /// The hot objects: the last quarter allocated.
    pub fn hot(&self) -> std::ops::Range<usize> {
        let n = self.objects();
        n - n / 4..n
    }
}

/// The benchmark's shape: 64 MiB of DRAM, 192 MiB of 1 MiB objects.
const PARAMS: Params = Params {
    dram: 64 << 20,
    object: 1 << 20,
    passes: 20,
    cold_every: 16,
    mover_interval: Duration::from_millis(2),
};

/// Timed rounds of each side.
const ROUNDS: usize = 3;

/// The rows of the family.
pub fn run() -> Vec<Row> {
    match hot_cold_passes(&PARAMS, ROUNDS) {
        Ok(row) => vec![row],
        Err(e) => {
            eprintln!("tiering: skipped ({e})");
            Vec::new()
        }
    }
}

/// One side's run: the time of the passes, the sum of the checksums of
/// every read, and counts.
struct Outcome {
    elapsed: Duration,
    checksum: u64,
    counts: BTreeMap<String, u64>,
}

/// A fresh directory for one side's spill files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(side: &str) -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base =
            std::env::var_os("MAMBA_BENCH_SSD").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("mamba-tiering-{}-{side}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One DRAM node capped at `p.dram`, and an SSD space of spill files.
fn node(p: &Params, dir: &Scratch) -> mamba::Result<Mamba> {
    let mut caps = BTreeMap::new();
    caps.insert(Tier::Dram, ByteSize(p.dram));
    Mamba::discover(&Config {
        synthetic: Some("numa:1 core:1 pu:1".into()),
        gpu: false,
        chunk_size: ByteSize(2 * p.object),
        caps,
        ssd: vec![DirectoryTier {
            path: dir.0.clone(),
            capacity: Some(ByteSize(5 * p.dram)),
            bandwidth_mib_s: None,
            latency_ns: None,
        }],
        ssd_io: SsdIo::Direct,
        ..Config::default()
    })
}

/// The content of object `i`.
fn fill(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k.wrapping_mul(7) ^ i.wrapping_mul(0x9e37)) as u8)
        .collect()
}

/// A cheap checksum of a buffer.
fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(0u64, |a, w| a.rotate_left(5) ^ w)
}

/// The object read at every step of the passes: each hot object in turn,
/// and a cold one (a fixed pseudo-random sequence) every `cold_every`.
fn schedule(p: &Params) -> Vec<usize> {
    let hot = p.hot();
    let mut cold_state = 12345usize;
    let mut order = Vec::new();
    for _ in 0..p.passes {
        for (k, i) in hot.clone().enumerate() {
            order.push(i);
            if (k + 1) % p.cold_every == 0 {
                cold_state = cold_state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                order.push((cold_state >> 33) % hot.start);
            }
        }
    }
    order
}

/// Runs the schedule with `read` (object, buffer) -> whether it came from
/// the SSD; returns the time, the checksum and the bytes read from the SSD.
fn passes(
    p: &Params,
    mut read: impl FnMut(usize, &mut [u8]) -> mamba::Result<bool>,
) -> mamba::Result<(Duration, u64, u64)> {
    let order = schedule(p);
    let mut buf = vec![0u8; p.object];
    let (mut sum, mut from_ssd) = (0u64, 0u64);
    let start = Instant::now();
    for i in order {
        if read(i, &mut buf)? {
            from_ssd += p.object as u64;
        }
        sum = sum.wrapping_add(checksum(&buf));
    }
    Ok((start.elapsed(), sum, from_ssd))
}

/// Ours: movable objects, a mover in the background.
fn ours(p: &Params) -> mamba::Result<Outcome> {
    let dir = Scratch::new("ours").map_err(|e| mamba::Error::Config(e.to_string()))?;
    let m = node(p, &dir)?;
    let mover = Mover::start(&m, p.mover_interval)?;
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    let data = (0..p.objects())
        .map(|i| {
            let d = m.movable(p.object, &policy)?;
            d.write(0, &fill(i, p.object))?;
            Ok(d)
        })
        .collect::<mamba::Result<Vec<_>>>()?;
    let (elapsed, checksum, from_ssd) = passes(p, |i, buf| {
        let ssd = data[i].tier() == Tier::Ssd;
        data[i].read(0, buf).map(|()| ssd)
    })?;
    drop(mover);
    let stats = m.tiering_stats();
    let mut counts = BTreeMap::new();
    counts.insert("bytes_read_from_ssd".into(), from_ssd);
    counts.insert("bytes_demoted".into(), stats.demoted_bytes());
    counts.insert("bytes_promoted".into(), stats.promoted_bytes());
    counts.insert("mover_passes".into(), stats.passes);
    counts.insert("mover_ms".into(), stats.time.as_millis() as u64);
    Ok(Outcome {
        elapsed,
        checksum,
        counts,
    })
}

/// The peer: the same allocations, placed once.
fn peer(p: &Params) -> mamba::Result<Outcome> {
    let dir = Scratch::new("peer").map_err(|e| mamba::Error::Config(e.to_string()))?;
    let m = node(p, &dir)?;
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    let align = mamba::page_size();
    let data = (0..p.objects())
        .map(|i| {
            let mut a = m.allocate(p.object, align, &policy)?;
            a.write_bytes(0, &fill(i, p.object))?;
            Ok(a)
        })
        .collect::<mamba::Result<Vec<_>>>()?;
    let (elapsed, checksum, from_ssd) = passes(p, |i, buf| {
        data[i]
            .read_bytes(0, buf)
            .map(|()| data[i].tier() == Tier::Ssd)
    })?;
    let mut counts = BTreeMap::new();
    counts.insert("bytes_read_from_ssd".into(), from_ssd);
    counts.insert("bytes_demoted".into(), 0);
    counts.insert("bytes_promoted".into(), 0);
    Ok(Outcome {
        elapsed,
        checksum,
        counts,
    })
}

/// The time of a run, keeping the run as the last one unless an error of
/// an earlier one is kept already.
fn keep(run: mamba::Result<Outcome>, last: &mut Option<mamba::Result<Outcome>>) -> Duration {
    let elapsed = run.as_ref().map_or(Duration::ZERO, |o| o.elapsed);
    if !matches!(last, Some(Err(_))) {
        *last = Some(run);
    }
    elapsed
}

/// The expected checksum of the schedule.
fn expected(p: &Params) -> u64 {
    let sums: Vec<u64> = (0..p.objects())
        .map(|i| checksum(&fill(i, p.object)))
        .collect();
    schedule(p)
        .into_iter()
        .fold(0u64, |a, i| a.wrapping_add(sums[i]))
}

/// The `hot-cold-passes` row: read bandwidth of ours against the peer,
/// medians of `rounds` interleaved runs; the counts are those of each
/// side's last run.
///
/// # Errors
/// The first error of either side (no spill directory, a disk error), or
/// [`mamba::Error::Config`] when a checksum differs from the expected one.
pub fn hot_cold_passes(p: &Params, rounds: usize) -> mamba::Result<Row> {
    let want = expected(p);
    let (mut ours_last, mut peer_last) = (None, None);
    let (ours_t, peer_t) = interleaved_medians(
        rounds,
        || keep(ours(p), &mut ours_last),
        || keep(peer(p), &mut peer_last),
    );
    let o = ours_last.expect("at least one round")?;
    let q = peer_last.expect("at least one round")?;
    for (side, sum) in [("ours", o.checksum), ("peer", q.checksum)] {
        if sum != want {
            return Err(mamba::Error::Config(format!(
                "tiering: the {side} checksum {sum:#x} is not the expected {want:#x}"
            )));
        }
    }
    let bytes = (schedule(p).len() * p.object) as f64;
    let gb_s = |t: Duration| bytes / t.as_secs_f64().max(1e-9) / 1e9;
    Ok(Row::compared(
        "tiering",
        "hot-cold-passes",
        "GB/s",
        Better::Higher,
        gb_s(ours_t),
        gb_s(peer_t),
        "static placement (same pools, no tiering)",
    )
    .with_counts(Counts {
        ours: o.counts,
        peer: q.counts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_read_the_same_data_and_only_ours_moves_it() {
        let p = Params {
            dram: 8 << 20,
            object: 256 << 10,
            passes: 3,
            cold_every: 8,
            mover_interval: Duration::from_millis(1),
        };
        assert_eq!((p.objects(), p.hot()), (96, 72..96));
        let row = hot_cold_passes(&p, 1).unwrap();
        assert_eq!(row.case, "hot-cold-passes");
        assert!(row.ours > 0.0 && row.peer.unwrap() > 0.0);
        let c = row.counts.unwrap();
        assert!(c.ours["bytes_demoted"] > 0, "{c:?}");
        assert!(c.ours["bytes_promoted"] > 0, "{c:?}");
        assert_eq!(c.peer["bytes_promoted"], 0);
        // The hot quarter starts on the SSD: the peer reads it there on
        // every pass.
        assert!(c.peer["bytes_read_from_ssd"] >= (3 * 24 * p.object) as u64);
    }
}
