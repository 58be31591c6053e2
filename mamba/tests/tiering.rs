//! Demotion and promotion of movable data on capped tiers: the simulated
//! HBM + DRAM + NVDIMM node (pages move in place, only the accounting
//! changes), and a one-node machine with a small DRAM cap spilling to an
//! SSD directory (data is copied through the handle).

mod common;

use common::simulated;
use mamba::tiering::{Direction, Mover, PairStats};
use mamba::{Config, Error, Mamba, Movable, Policy, SpaceId, Tier, Watermarks};
use std::time::Duration;

const MIB: usize = 1 << 20;

/// A recognisable pattern per allocation.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(131)) as u8)
        .collect()
}

fn content(m: &Movable) -> Vec<u8> {
    let mut buf = vec![0; m.len()];
    m.read(0, &mut buf).unwrap();
    buf
}

/// Bytes held in a space as the tiering counts them.
fn used(m: &Mamba, space: SpaceId) -> usize {
    let s = m.pool(space).unwrap().stats();
    s.in_use_blocks + s.moved_in - s.moved_out
}

/// The simulated node with 8 MiB of HBM per socket and 1 MiB chunks.
fn small_hbm_node() -> Mamba {
    Mamba::discover(&simulated(
        "chunk_size = \"1MiB\"\n[caps]\nhbm = \"8MiB\"\ndram = \"64MiB\"\nnvdimm = \"64MiB\"",
    ))
    .unwrap()
}

/// One DRAM node of `dram` bytes, spilling to O_DIRECT files in `dir`.
fn dram_and_ssd(dir: &std::path::Path, dram: &str, ssd: &str) -> Mamba {
    let config = Config::from_toml_str(&format!(
        "synthetic = \"numa:1 core:1 pu:1\"\ngpu = false\nchunk_size = \"1MiB\"\n\
         ssd_io = \"direct\"\n[caps]\ndram = \"{dram}\"\n\
         [[ssd]]\npath = {:?}\ncapacity = \"{ssd}\"",
        dir.display().to_string()
    ))
    .unwrap();
    Mamba::discover(&config).unwrap()
}

const HBM0: SpaceId = SpaceId(1);
const DRAM0: SpaceId = SpaceId(0);
const HBM1: SpaceId = SpaceId(3);

#[test]
fn overfull_hbm_demotes_its_coldest_data_in_place_down_to_the_low_watermark() {
    let m = small_hbm_node();
    assert_eq!(m.pool(HBM0).unwrap().info().tier, Tier::Hbm);
    assert_eq!(m.watermarks(HBM0).unwrap(), Watermarks::DEFAULT);
    // High 4 MiB, low 2 MiB of the 8 MiB.
    m.set_watermarks(HBM0, Watermarks::new(0.5, 0.25).unwrap())
        .unwrap();
    let data: Vec<Movable> = (0..6)
        .map(|i| {
            let d = m.movable(MIB, &Policy::require(HBM0)).unwrap();
            d.write(0, &pattern(i, MIB)).unwrap();
            d
        })
        .collect();
    let addrs: Vec<usize> = data.iter().map(Movable::addr).collect();
    assert_eq!(m.movable_bytes(HBM0), 6 * MIB);
    // The first two are the hottest, the last four coldest.
    for d in &data[..2] {
        d.touch();
        d.touch();
    }
    let report = m.rebalance();
    assert_eq!((report.moves, report.demoted_bytes), (4, 4 * MIB as u64));
    assert_eq!((report.promoted_bytes, report.failed), (0, 0));
    assert!(used(&m, HBM0) <= 2 * MIB, "{}", used(&m, HBM0));
    // Nothing over a watermark, nothing touched since: a second pass moves
    // nothing.
    assert_eq!(m.rebalance().moves, 0);
    for (i, d) in data.iter().enumerate() {
        let expect = if i < 2 { HBM0 } else { DRAM0 };
        assert_eq!(d.space_id(), expect, "allocation {i}");
        assert_eq!(d.addr(), addrs[i], "pages move in place");
        assert!(content(d) == pattern(i, MIB), "content of {i}");
    }
    assert_eq!(m.movable_bytes(HBM0), 2 * MIB);
    assert_eq!(m.movable_bytes(DRAM0), 4 * MIB);
    let hbm = m.pool(HBM0).unwrap().stats();
    assert_eq!(hbm.moved_out, 4 * MIB);
    assert_eq!(m.pool(DRAM0).unwrap().stats().moved_in, 4 * MIB);
    let stats = m.tiering_stats();
    assert_eq!(
        stats.pairs,
        vec![PairStats {
            from: HBM0,
            from_tier: Tier::Hbm,
            to: DRAM0,
            to_tier: Tier::Dram,
            direction: Direction::Demotion,
            bytes: 4 * MIB as u64,
            moves: 4,
            in_place: 4,
        }]
    );
    assert_eq!(stats.passes, 2);
    assert_eq!(stats.demoted_bytes(), 4 * MIB as u64);
    assert_eq!(stats.bytes_between(Tier::Hbm, Tier::Dram), 4 * MIB as u64);
    // Freeing moved data refunds both spaces.
    drop(data);
    assert_eq!(m.pool(HBM0).unwrap().stats().moved_out, 0);
    assert_eq!(m.pool(DRAM0).unwrap().stats().moved_in, 0);
    assert_eq!(m.movable_bytes(DRAM0), 0);
}

#[test]
fn hot_data_comes_back_up_and_colder_data_makes_room() {
    let m = small_hbm_node();
    m.set_watermarks(HBM0, Watermarks::new(0.5, 0.25).unwrap())
        .unwrap();
    let data: Vec<Movable> = (0..4)
        .map(|i| {
            let d = m.movable(MIB, &Policy::require(HBM0)).unwrap();
            d.write(0, &pattern(i, MIB)).unwrap();
            d
        })
        .collect();
    // Four MiB in HBM: at the high watermark, not above.
    assert_eq!(m.rebalance().moves, 0);
    let extra = m.movable(2 * MIB, &Policy::require(HBM0)).unwrap();
    extra.write(0, &pattern(9, 2 * MIB)).unwrap();
    // All written once: the least recently used go, 6 MiB down to 2 MiB.
    let first = m.rebalance();
    assert_eq!(first.demoted_bytes, 4 * MIB as u64);
    let down: Vec<usize> = (0..4).filter(|&i| data[i].space_id() == DRAM0).collect();
    assert!(!down.is_empty());
    // Data read again (written, then read: two accesses) is hotter than the
    // data left in HBM (written once): that goes down to make room, and the
    // hottest come back up to the low watermark.
    for &i in &down {
        assert!(content(&data[i]) == pattern(i, MIB));
    }
    // (The other socket's HBM takes none.)
    m.set_watermarks(HBM1, Watermarks::new(0.01, 0.01).unwrap())
        .unwrap();
    let before = m.tiering_stats();
    let second = m.rebalance();
    assert_eq!(extra.space_id(), DRAM0, "the colder data made room");
    let up: Vec<usize> = down
        .iter()
        .copied()
        .filter(|&i| data[i].space_id() == HBM0)
        .collect();
    assert_eq!(up.len(), 2, "room for two under the low watermark");
    assert_eq!(second.promoted_bytes, 2 * MIB as u64);
    assert_eq!(second.demoted_bytes, 2 * MIB as u64);
    let after = m.tiering_stats();
    assert_eq!(
        after.promoted_bytes() - before.promoted_bytes(),
        second.promoted_bytes
    );
    assert_eq!(after.bytes_between(Tier::Dram, Tier::Hbm), 2 * MIB as u64);
    assert!(used(&m, HBM0) <= 2 * MIB, "low watermark kept");
    for (i, d) in data.iter().enumerate() {
        assert!(content(d) == pattern(i, MIB), "content of {i}");
    }
    assert!(content(&extra) == pattern(9, 2 * MIB));
}

#[test]
fn demotion_to_an_ssd_copies_the_data_and_pinning_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = dram_and_ssd(dir.path(), "8MiB", "32MiB");
    let ssd = m.spaces().find(|s| s.tier == Tier::Ssd).unwrap().id;
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    // High 4.8 MiB, low 3.2 MiB of the 8 MiB.
    let marks = Watermarks::new(0.6, 0.4).unwrap();
    m.set_watermarks(DRAM0, marks).unwrap();
    let mut data: Vec<Movable> = (0..7)
        .map(|i| {
            let d = m.movable(MIB + 100 * i, &policy).unwrap();
            d.write(0, &pattern(i, d.len())).unwrap();
            d
        })
        .collect();
    assert!(data.iter().all(|d| d.tier() == Tier::Dram));
    // 7 MiB and some: above the high watermark; demoted down to the low.
    let report = m.rebalance();
    assert!(report.moves >= 1, "{report:?}");
    assert!(used(&m, DRAM0) <= marks.low_bytes(8 * MIB));
    let moved: Vec<usize> = (0..7).filter(|&i| data[i].space_id() == ssd).collect();
    assert_eq!(report.moves, moved.len());
    let moved_bytes: usize = moved.iter().map(|&i| data[i].len()).sum();
    assert_eq!(report.demoted_bytes, moved_bytes as u64);
    let pairs = m.tiering_stats().pairs;
    assert_eq!(pairs.len(), 1);
    assert_eq!((pairs[0].to, pairs[0].in_place), (ssd, 0));
    for (i, d) in data.iter().enumerate() {
        assert!(content(d) == pattern(i, d.len()), "content of {i}");
    }
    // Pinning spilled data brings it into DRAM (there is room under the
    // high watermark), where it stays while pinned, even when DRAM is over.
    let i = moved[0];
    let mut pinned = data[i].pin().unwrap();
    assert_eq!(pinned.space().tier, Tier::Dram);
    let ptr = pinned.as_ptr().unwrap();
    assert!(pinned.as_slice().unwrap() == pattern(i, MIB + 100 * i));
    pinned.as_mut_slice().unwrap()[0] ^= 0xff;
    m.set_watermarks(DRAM0, Watermarks::new(0.1, 0.1).unwrap())
        .unwrap();
    assert!(m.rebalance().busy >= 1);
    assert_eq!(pinned.as_ptr().unwrap(), ptr);
    assert_eq!(pinned.space().tier, Tier::Dram);
    drop(pinned);
    let mut expect = pattern(i, MIB + 100 * i);
    expect[0] ^= 0xff;
    assert!(content(&data[i]) == expect);
    assert_eq!(
        m.tiering_stats().bytes_between(Tier::Ssd, Tier::Dram),
        data[i].len() as u64
    );
}

#[test]
fn pinned_data_keeps_its_place_and_pointer_under_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let m = dram_and_ssd(dir.path(), "4MiB", "32MiB");
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    let mut cold = m.movable(MIB, &policy).unwrap();
    cold.write(0, &pattern(1, MIB)).unwrap();
    let pinned = cold.pin().unwrap();
    let ptr = pinned.as_ptr().unwrap();
    // Fill DRAM past its high watermark with hotter data.
    let hot: Vec<Movable> = (0..3)
        .map(|i| {
            let d = m.movable(MIB, &policy).unwrap();
            d.write(0, &pattern(10 + i, MIB)).unwrap();
            d.touch();
            d
        })
        .collect();
    assert!(used(&m, DRAM0) > Watermarks::DEFAULT.high_bytes(4 * MIB));
    let report = m.rebalance();
    assert!(report.busy >= 1, "{report:?}");
    assert_eq!(pinned.as_ptr().unwrap(), ptr, "a pinned pointer is stable");
    assert_eq!(pinned.space().tier, Tier::Dram);
    assert!(pinned.as_slice().unwrap() == pattern(1, MIB));
    drop(pinned);
    // Unpinned and coldest (written and pinned once), it is the one to go
    // when DRAM is over again.
    for d in &hot {
        d.touch();
    }
    let more = m.movable(MIB, &policy).unwrap();
    for _ in 0..3 {
        more.touch();
    }
    m.rebalance();
    assert!(used(&m, DRAM0) <= Watermarks::DEFAULT.low_bytes(4 * MIB));
    assert_eq!(cold.tier(), Tier::Ssd);
    assert!(content(&cold) == pattern(1, MIB));
    for (i, d) in hot.iter().enumerate() {
        assert!(content(d) == pattern(10 + i, MIB));
    }
}

#[test]
fn pinning_spilled_data_pushes_colder_data_out_of_a_full_dram() {
    let dir = tempfile::tempdir().unwrap();
    let m = dram_and_ssd(dir.path(), "4MiB", "32MiB");
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    let cold: Vec<Movable> = (0..4)
        .map(|i| {
            let d = m.movable(MIB, &policy).unwrap();
            d.write(0, &pattern(i, MIB)).unwrap();
            d
        })
        .collect();
    assert!(cold.iter().all(|d| d.tier() == Tier::Dram));
    let mut spilled = m.movable(MIB, &policy).unwrap();
    assert_eq!(spilled.tier(), Tier::Ssd);
    spilled.write(0, &pattern(7, MIB)).unwrap();
    {
        let pinned = spilled.pin().unwrap();
        assert_eq!(pinned.space().tier, Tier::Dram);
        assert!(pinned.as_slice().unwrap() == pattern(7, MIB));
    }
    // The least recently used went down to make the room.
    assert_eq!(cold[0].tier(), Tier::Ssd);
    for (i, d) in cold.iter().enumerate() {
        assert!(content(d) == pattern(i, MIB), "content of {i}");
    }
    let stats = m.tiering_stats();
    assert_eq!(stats.bytes_between(Tier::Dram, Tier::Ssd), MIB as u64);
    assert_eq!(stats.bytes_between(Tier::Ssd, Tier::Dram), MIB as u64);
}

#[test]
fn allocation_and_access_go_on_while_the_mover_runs() {
    let dir = tempfile::tempdir().unwrap();
    let m = dram_and_ssd(dir.path(), "8MiB", "256MiB");
    let mover = Mover::start(&m, Duration::from_millis(1)).unwrap();
    let policy = Policy::prefer(Tier::Dram).or(Tier::Ssd);
    std::thread::scope(|s| {
        for t in 0..4usize {
            let (m, policy) = (&m, &policy);
            s.spawn(move || {
                let mut live: Vec<(usize, Movable)> = Vec::new();
                for round in 0..60usize {
                    let seed = t * 1000 + round;
                    let len = 64 * 1024 * (1 + seed % 9);
                    let d = m.movable(len, policy).unwrap();
                    d.write(0, &pattern(seed, len)).unwrap();
                    live.push((seed, d));
                    // Plain allocations compete for the same DRAM.
                    let plain = m.allocate(32 * 1024, 64, policy).unwrap();
                    for (seed, d) in live.iter().step_by(3) {
                        assert!(content(d) == pattern(*seed, d.len()), "seed {seed}");
                    }
                    if round % 4 == 3 {
                        let (seed, mut d) = live.swap_remove(round % live.len());
                        let len = d.len();
                        // Pinning spilled data needs room in DRAM.
                        let pinned = match d.pin() {
                            Ok(p) => p.as_slice().unwrap() == pattern(seed, len),
                            Err(Error::OutOfCapacity { .. }) => true,
                            Err(e) => panic!("pin: {e}"),
                        };
                        assert!(pinned && content(&d) == pattern(seed, len));
                    }
                    drop(plain);
                }
                for (seed, d) in &live {
                    assert!(content(d) == pattern(*seed, d.len()), "seed {seed}");
                }
            });
        }
    });
    drop(mover);
    let stats = m.tiering_stats();
    assert!(stats.passes >= 1);
    assert!(stats.demoted_bytes() > 0, "{stats:?}");
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let m = small_hbm_node();
    assert!(matches!(
        m.movable(0, &Policy::require(Tier::Dram)),
        Err(Error::ZeroSize)
    ));
    assert!(matches!(
        m.set_watermarks(SpaceId(99), Watermarks::DEFAULT),
        Err(Error::UnknownSpace(SpaceId(99)))
    ));
    assert!(matches!(
        m.watermarks(SpaceId(99)),
        Err(Error::UnknownSpace(_))
    ));
    assert!(matches!(
        Mover::start(&m, Duration::ZERO),
        Err(Error::Config(_))
    ));
    let d = m.movable(100, &Policy::require(Tier::Dram)).unwrap();
    assert!(matches!(d.write(99, b"xy"), Err(Error::OutOfBounds { .. })));
    let mut buf = [0u8; 101];
    assert!(matches!(
        d.read(0, &mut buf),
        Err(Error::OutOfBounds { .. })
    ));
    // A pin with no CPU-addressable room fails and leaves the data intact.
    let dir = tempfile::tempdir().unwrap();
    let m = dram_and_ssd(dir.path(), "2MiB", "32MiB");
    let full = m
        .allocate(2 * MIB, 4096, &Policy::require(Tier::Dram))
        .unwrap();
    let mut spilled = m
        .movable(MIB, &Policy::prefer(Tier::Dram).or(Tier::Ssd))
        .unwrap();
    assert_eq!(spilled.tier(), Tier::Ssd);
    spilled.write(0, &pattern(5, MIB)).unwrap();
    assert!(matches!(spilled.pin(), Err(Error::OutOfCapacity { .. })));
    assert!(content(&spilled) == pattern(5, MIB));
    drop(full);
    assert_eq!(spilled.pin().unwrap().space().tier, Tier::Dram);
}
