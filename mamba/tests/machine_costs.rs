//! One topology per `Mamba`, shared with affinity, and the cost figures
//! derived from it, on simulated topologies (the Xeon Max XML with its
//! bandwidth attributes, synthetic machines with different caches).

use mamba::affinity::{
    Action, AffinityPool, Backlog, Domains, Footprint, Level, Locality, MigrationPolicy,
};
use mamba::config::SpaceOverride;
use mamba::topology::costs::{Origin, FALLBACK_STREAMING_THRESHOLD};
use mamba::{Config, Mamba, Policy, Tier};
use mamba_transforms::Layout;

mod common;

/// Two packages of two cores with one NUMA node each, and an L3 of `l3`
/// bytes per package.
fn with_l3(l3: usize) -> Config {
    Config {
        synthetic: Some(format!("pack:2 numa:1 l3:1(size={l3}) core:2 pu:1")),
        gpu: false,
        ..Config::default()
    }
}

#[test]
fn the_allocator_and_affinity_see_one_topology() {
    let mamba = Mamba::discover(&common::simulated("")).unwrap();
    let shared = mamba
        .locality()
        .expect("a discovered node keeps its topology");
    // The same facts as a separate load of the same file.
    assert_eq!(shared, &Locality::load(&common::simulated("")).unwrap());
    // Every NUMA space is a node of the shared topology with the same CPUs,
    // and has a worker domain.
    let domains = Domains::new(shared, Level::NumaNode).unwrap();
    let mut seen = 0;
    for space in mamba.spaces().filter(|s| s.is_node_memory()) {
        let node = shared.node(space.numa_node.unwrap()).unwrap();
        let cpus: Vec<u32> = node.cpus.iter().collect();
        assert_eq!(cpus, space.cpus, "{}", space.name);
        domains.home_of(node.os_index).unwrap();
        seen += 1;
    }
    assert_eq!(seen, shared.nodes().len());
    // A pool over the shared topology places work of every space's data.
    let pool = AffinityPool::new(shared).unwrap();
    let dram1 = mamba.spaces().find(|s| s.name == "dram1").unwrap();
    assert_eq!(
        shared.cpus_near_space(dram1).unwrap(),
        pool.domains().get(1).unwrap().cpus
    );
}

#[test]
fn assembled_pools_have_no_topology_and_fallback_costs() {
    let discovered = Mamba::discover(&common::simulated("")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pools = discovered
        .spaces()
        .map(|info| {
            mamba::Pool::new(
                info.clone(),
                Box::new(mamba::provider::FileProvider::new(dir.path()).unwrap()),
                mamba::PoolSettings::default(),
            )
        })
        .collect();
    let m = Mamba::from_pools(pools).unwrap();
    assert!(m.locality().is_none());
    assert_eq!(
        m.streaming_threshold(),
        (FALLBACK_STREAMING_THRESHOLD, Origin::Fallback)
    );
    assert_eq!(
        m.migration_policy(),
        (MigrationPolicy::default(), Origin::Fallback)
    );
}

#[test]
fn the_streaming_threshold_is_the_last_level_cache() {
    let small = Mamba::discover(&with_l3(8 << 20)).unwrap();
    let large = Mamba::discover(&with_l3(64 << 20)).unwrap();
    assert_eq!(small.streaming_threshold(), (8 << 20, Origin::Topology));
    assert_eq!(large.streaming_threshold(), (64 << 20, Origin::Topology));
    assert_eq!(small.exec_options().streaming_threshold, 8 << 20);
    assert_eq!(large.exec_options().streaming_threshold, 64 << 20);
    // The XML describes no cache: the documented fallback.
    let xml = Mamba::discover(&common::simulated("")).unwrap();
    assert_eq!(
        xml.streaming_threshold(),
        (FALLBACK_STREAMING_THRESHOLD, Origin::Fallback)
    );
}

#[test]
fn copies_by_the_allocator_still_copy_with_its_threshold() {
    let m = Mamba::discover(&with_l3(1 << 16)).unwrap();
    let dram = Policy::require(Tier::Dram);
    let mut src = m
        .array(Layout::row_major(4, &[256, 128]).unwrap(), &dram)
        .unwrap();
    for (i, x) in src.as_typed_mut::<u32>().unwrap().iter_mut().enumerate() {
        *x = i as u32;
    }
    // 128 KiB: above this node's 64 KiB threshold, so streamed.
    let dst = m
        .duplicate_array(
            &src,
            Some(Layout::column_major(4, &[256, 128]).unwrap()),
            &dram,
        )
        .unwrap();
    let (s, d) = (
        src.as_typed::<u32>().unwrap(),
        dst.as_typed::<u32>().unwrap(),
    );
    for r in 0..256 {
        for c in 0..128 {
            assert_eq!(d[c * 256 + r], s[r * 128 + c]);
        }
    }
}

/// Data on node 1 read 8 times by a task that must stay on node 0.
fn decide(m: &Mamba, bytes: usize) -> Action {
    let domains = Domains::new(m.locality().unwrap(), Level::NumaNode).unwrap();
    let task = Footprint {
        bytes,
        passes: 8,
        data_node: 1,
        task_node: 0,
        task_movable: false,
        data_movable: true,
    };
    let (policy, _) = m.migration_policy();
    policy
        .decide(&domains, &task, Backlog::default())
        .unwrap()
        .action
}

#[test]
fn data_that_fits_the_cache_is_read_remotely_and_larger_data_moves() {
    let small = Mamba::discover(&with_l3(8 << 20)).unwrap();
    let large = Mamba::discover(&with_l3(64 << 20)).unwrap();
    // 16 MiB read 8 times: with a 64 MiB cache only the first pass reads
    // memory, so reading it remotely is cheapest; with 8 MiB every pass
    // would cross, and moving the pages once is cheaper.
    assert_eq!(decide(&large, 16 << 20), Action::RunRemote);
    assert_eq!(decide(&small, 16 << 20), Action::MoveData);
    // Beyond both caches they agree.
    assert_eq!(decide(&large, 128 << 20), Action::MoveData);
    assert_eq!(decide(&small, 128 << 20), Action::MoveData);
}

#[test]
fn migration_costs_come_from_the_bandwidth_attributes() {
    let m = Mamba::discover(&common::simulated("")).unwrap();
    let costs = m.machine_costs();
    // DRAM from its own package and from the other one.
    assert_eq!(costs.local_bandwidth_mib_s, Some(100_000));
    assert_eq!(costs.remote_bandwidth_mib_s, Some(50_000));
    let (policy, origin) = m.migration_policy();
    assert_eq!(origin, Origin::Topology);
    let local = 1e9 / (100_000.0 * (1u64 << 20) as f64);
    let remote = 1e9 / (50_000.0 * (1u64 << 20) as f64);
    assert!((policy.local_ns_per_byte - local).abs() < 1e-12);
    assert!((policy.migrate_ns_per_byte - (local + remote)).abs() < 1e-12);
    // A configured (measured) bandwidth of the DRAM spaces replaces hwloc's.
    let mut config = common::simulated("");
    config.space = ["dram0", "dram1"]
        .into_iter()
        .map(|name| SpaceOverride {
            name: name.into(),
            bandwidth_mib_s: Some(20_000),
            ..SpaceOverride::default()
        })
        .collect();
    let measured = Mamba::discover(&config).unwrap();
    assert_eq!(measured.machine_costs().local_bandwidth_mib_s, Some(20_000));
    assert!(measured.migration_policy().0.local_ns_per_byte > policy.local_ns_per_byte);
}
