//! Placement, fallback and accounting on a simulated two-socket node with
//! DRAM, HBM and NVDIMM NUMA nodes (hwloc XML), backed by this machine's
//! memory with the simulated capacities.

mod common;

use common::simulated;
use mamba::{Error, Mamba, Policy, SpaceId, Tier};

const MIB: usize = 1 << 20;

#[test]
fn tiers_come_from_subtypes_and_attributes_from_the_xml() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let spaces: Vec<_> = m
        .spaces()
        .map(|s| (s.name.clone(), s.tier, s.numa_node))
        .collect();
    assert_eq!(
        spaces,
        vec![
            ("dram0".into(), Tier::Dram, Some(0)),
            ("hbm0".into(), Tier::Hbm, Some(1)),
            ("dram1".into(), Tier::Dram, Some(2)),
            ("hbm1".into(), Tier::Hbm, Some(3)),
            ("nvdimm0".into(), Tier::Nvdimm, Some(4)),
        ]
    );
    let hbm1 = m.pool_named("hbm1").unwrap().info();
    assert_eq!(hbm1.capacity, 2 << 30);
    assert_eq!(hbm1.bandwidth_mib_s, Some(400_000));
    assert_eq!(hbm1.latency_ns, Some(120));
    assert_eq!(hbm1.cpus, vec![2, 3]);
    assert!(m.pool_named("nvdimm0").unwrap().info().persistent);
}

#[test]
fn policies_resolve_in_the_documented_order() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let names = |p: &Policy| -> Vec<String> {
        m.placement(p)
            .unwrap()
            .spaces()
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(
        names(&Policy::highest_bandwidth()),
        ["hbm0", "hbm1", "dram0", "dram1", "nvdimm0"]
    );
    // With a vantage, attributes are those hwloc reports from the CPUs
    // named: the other socket's HBM is slower from node 2 than its own
    // DRAM, and node 0's memory is farther from CPU 3 than node 2's.
    assert_eq!(
        names(&Policy::highest_bandwidth().near_node(2)),
        ["hbm1", "dram1", "dram0", "hbm0", "nvdimm0"]
    );
    assert_eq!(
        names(&Policy::lowest_latency().near_cpus(&[3])),
        ["dram1", "hbm1", "dram0", "hbm0", "nvdimm0"]
    );
    // The XML gives no latency of nodes 2 and 3 from CPUs 0-1: unknown
    // there, they rank after every node with a known latency.
    assert_eq!(
        names(&Policy::lowest_latency().near_cpus(&[0])),
        ["dram0", "hbm0", "nvdimm0", "dram1", "hbm1"]
    );
    assert_eq!(names(&Policy::largest_capacity())[0], "nvdimm0");
    assert_eq!(
        names(&Policy::require(Tier::Hbm).near_node(3)),
        ["hbm1", "hbm0"]
    );
    assert_eq!(
        names(
            &Policy::prefer(Tier::Hbm)
                .or(Tier::Gpu)
                .or(Tier::Dram)
                .near_cpus(&[0])
        ),
        ["hbm0", "hbm1", "dram0", "dram1"],
        "a preferred tier the node lacks (gpu) is skipped"
    );
}

#[test]
fn a_full_hbm_falls_back_by_policy_and_a_required_one_fails_naming_the_space() {
    let m = Mamba::discover(&simulated("chunk_size = \"4MiB\"\n[caps]\nhbm = \"8MiB\"")).unwrap();
    let hbm_then_dram = Policy::prefer(Tier::Hbm).or(Tier::Dram).near_node(0);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(m.allocate(MIB, 4096, &hbm_then_dram).unwrap());
    }
    let landed: Vec<&str> = held.iter().map(|a| a.space().name.as_str()).collect();
    assert_eq!(&landed[..8], &["hbm0"; 8], "hbm0 first, while it has room");
    assert_eq!(&landed[8..], &["hbm1"; 8], "then the other HBM node");
    let spill = m.allocate(MIB, 4096, &hbm_then_dram).unwrap();
    assert_eq!(spill.space().name, "dram0", "then DRAM near node 0");

    match m.allocate(
        MIB,
        4096,
        &Policy::require(m.pool_named("hbm1").unwrap().info().id),
    ) {
        Err(Error::OutOfCapacity {
            space,
            tier,
            capacity,
            ..
        }) => {
            assert_eq!(space, SpaceId(3));
            assert_eq!(tier, Tier::Hbm);
            assert_eq!(capacity, 8 * MIB);
        }
        other => panic!("expected OutOfCapacity, got {other:?}"),
    }
    for name in ["hbm0", "hbm1"] {
        let st = m.pool_named(name).unwrap().stats();
        assert_eq!(st.reserved, 8 * MIB, "{name}: the cap is reached exactly");
        assert_eq!(st.in_use, 8 * MIB);
        assert_eq!(st.available(), 0);
    }
    drop(held);
    drop(spill);
    for p in m.pools() {
        p.trim();
        let st = p.stats();
        assert_eq!(
            (st.in_use, st.reserved, st.chunks),
            (0, 0, 0),
            "{}",
            p.info().name
        );
    }
}

#[test]
fn moving_pages_charges_the_target_and_refunds_it_on_free() {
    let m = Mamba::discover(&simulated("[caps]\nhbm = \"2MiB\"")).unwrap();
    let dram0 = m.pool_named("dram0").unwrap();
    let hbm0 = m.pool_named("hbm0").unwrap();
    let mut a = dram0.allocate(MIB, 4096).unwrap();
    a.as_mut_slice().unwrap().fill(9);
    m.move_pages(&mut a, hbm0.info().id).unwrap();
    assert_eq!(a.space().name, "dram0");
    assert_eq!(a.resident_space().name, "hbm0");
    assert_eq!(hbm0.stats().moved_in, MIB);
    assert!(
        a.as_slice().unwrap().iter().all(|&b| b == 9),
        "data survives the move"
    );

    let mut b = dram0.allocate(2 * MIB, 4096).unwrap();
    assert!(matches!(
        m.move_pages(&mut b, hbm0.info().id),
        Err(Error::OutOfCapacity { .. })
    ));
    assert_eq!(
        b.resident_space().name,
        "dram0",
        "a refused move changes nothing"
    );
    assert_eq!(hbm0.stats().moved_in, MIB);

    m.move_pages(&mut a, dram0.info().id).unwrap();
    assert_eq!(hbm0.stats().moved_in, 0, "moving back refunds");
    m.move_pages(&mut a, hbm0.info().id).unwrap();
    drop(a);
    assert_eq!(hbm0.stats().moved_in, 0, "freeing refunds");
}

#[test]
fn a_block_sharing_its_page_is_not_reported_as_moved() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let dram0 = m.pool_named("dram0").unwrap();
    let hbm0 = m.pool_named("hbm0").unwrap();
    let mut small = dram0.allocate(256, 8).unwrap();
    let neighbour = dram0.allocate(256, 8).unwrap();
    m.move_pages(&mut small, hbm0.info().id).unwrap();
    assert_eq!(small.resident_space().name, "dram0");
    assert_eq!(hbm0.stats().moved_in, 0, "nothing charged");
    // A block of whole pages does move.
    let mut big = dram0.allocate(3 * 4096, 4096).unwrap();
    m.move_pages(&mut big, hbm0.info().id).unwrap();
    assert_eq!(big.resident_space().name, "hbm0");
    assert_eq!(hbm0.stats().moved_in, big.block_len());
    drop((small, neighbour, big));
    assert_eq!(hbm0.stats().moved_in, 0);
}

#[test]
fn migrate_and_duplicate_copy_the_data_across_tiers() {
    let m = Mamba::discover(&simulated("")).unwrap();
    let mut a = m.allocate(10_000, 8, &Policy::require(Tier::Dram)).unwrap();
    for (i, b) in a.as_mut_slice().unwrap().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let copy = m.duplicate(&a, &Policy::require(Tier::Nvdimm)).unwrap();
    assert_eq!(copy.tier(), Tier::Nvdimm);
    assert_eq!(copy.as_slice().unwrap(), a.as_slice().unwrap());
    m.migrate(&mut a, &Policy::require(Tier::Hbm)).unwrap();
    assert_eq!(a.tier(), Tier::Hbm);
    assert!(a
        .as_slice()
        .unwrap()
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(
        m.pool_named("dram0").unwrap().stats().in_use,
        0,
        "the old block was freed"
    );
}

#[test]
fn synthetic_topologies_work_too() {
    let c = mamba::Config {
        synthetic: Some("pack:2 numa:2 core:2 pu:1".into()),
        gpu: false,
        ..mamba::Config::default()
    };
    let m = Mamba::discover(&c).unwrap();
    assert_eq!(m.spaces().filter(|s| s.tier == Tier::Dram).count(), 4);
    let a = m
        .allocate(100, 8, &Policy::require(Tier::Dram).near_cpus(&[6]))
        .unwrap();
    assert_eq!(a.space().numa_node, Some(3));
}
