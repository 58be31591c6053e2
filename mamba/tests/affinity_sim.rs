//! Affinity on simulated topologies (the two-socket Xeon Max XML, a
//! synthetic four-node machine): mapping, routing, fallbacks and migration
//! decisions, all deterministic and without binding.

use mamba::affinity::{
    current_worker, Action, AffinityError, AffinityPool, Backlog, CpuSet, DataLocation,
    DistanceOrigin, Footprint, Level, Locality, Membership, MigrationPolicy, Origin, Pinning,
    RouteReason,
};
use mamba::{Backing, Config, Mamba, SpaceId, SpaceInfo, Tier};
use std::path::PathBuf;

fn xml_config() -> Config {
    Config {
        topology: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/xeon-max-2s.xml"
        ))),
        gpu: false,
        ..Config::default()
    }
}

fn synthetic_config() -> Config {
    Config {
        synthetic: Some("pack:2 numa:2 core:2 pu:1".into()),
        gpu: false,
        ..Config::default()
    }
}

fn xml() -> Locality {
    Locality::load(&xml_config()).unwrap()
}

fn synthetic() -> Locality {
    Locality::load(&synthetic_config()).unwrap()
}

fn cpus(list: &str) -> CpuSet {
    list.parse().unwrap()
}

fn space(name: &str, tier: Tier, numa_node: Option<u32>, cpus: Vec<u32>) -> SpaceInfo {
    SpaceInfo {
        id: SpaceId(0),
        name: name.into(),
        tier,
        capacity: 1 << 30,
        numa_node,
        device: None,
        cpus,
        bandwidth_mib_s: None,
        latency_ns: None,
        host_accessible: tier != Tier::Gpu,
        persistent: false,
        backing: Backing::Unbound,
    }
}

#[test]
fn xml_nodes_packages_and_tree_distances() {
    let l = xml();
    assert!(!l.is_real());
    let nodes: Vec<u32> = l.nodes().iter().map(|n| n.os_index).collect();
    assert_eq!(nodes, vec![0, 1, 2, 3, 4]);
    assert_eq!(l.node(1).unwrap().subtype.as_deref(), Some("HBM"));
    assert_eq!(l.node(3).unwrap().package, Some(1));
    assert_eq!(l.node(4).unwrap().package, None);
    assert_eq!(l.distance_origin(), DistanceOrigin::Tree);
    assert_eq!(l.distance(0, 0).unwrap(), 10);
    assert_eq!(l.distance(0, 1).unwrap(), 12);
    assert_eq!(l.distance(0, 2).unwrap(), 20);
    assert_eq!(l.distance(4, 3).unwrap(), 20);
    assert_eq!(l.nearest_nodes(0).unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(l.nearest_nodes(3).unwrap(), vec![3, 2, 0, 1, 4]);
    assert_eq!(l.nearest_nodes(4).unwrap(), vec![4, 0, 1, 2, 3]);
    assert_eq!(l.cpus(), &cpus("0-3"));
    assert_eq!(l.node_of_cpu(2), Some(2));
    assert!(matches!(
        l.distance(0, 9),
        Err(AffinityError::UnknownNode(9))
    ));
}

#[test]
fn hwloc_distances_take_precedence_over_the_tree() {
    // The same node with a firmware-style latency matrix (SLIT).
    let xml = std::fs::read_to_string(xml_config().topology.unwrap()).unwrap();
    let matrix = r#"  <distances2 type="NUMANode" nbobjs="5" kind="5" name="NUMALatency" indexing="os">
    <indexes length="10">0 1 2 3 4 </indexes>
    <u64values length="75">10 11 21 22 30 11 10 22 21 30 21 22 10 11 30 22 21 11 10 30 30 30 30 30 10 </u64values>
  </distances2>
"#;
    let xml = xml.replacen(
        "  <memattr name=\"Bandwidth\"",
        &format!("{matrix}  <memattr name=\"Bandwidth\""),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("with-distances.xml");
    std::fs::write(&path, xml).unwrap();
    let l = Locality::load(&Config {
        topology: Some(path),
        gpu: false,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(l.distance_origin(), DistanceOrigin::Hwloc);
    assert_eq!(l.distance(0, 3).unwrap(), 22);
    assert_eq!(l.distance(3, 1).unwrap(), 21);
    // The tree would say [3, 2, 0, 1, 4].
    assert_eq!(l.nearest_nodes(3).unwrap(), vec![3, 2, 1, 0, 4]);
    let d = mamba::affinity::Domains::new(&l, Level::NumaNode).unwrap();
    let task = Footprint {
        bytes: 1 << 20,
        passes: 1,
        data_node: 3,
        task_node: 0,
        task_movable: true,
        data_movable: true,
    };
    let dec = MigrationPolicy::default()
        .decide(&d, &task, Backlog::default())
        .unwrap();
    assert!((dec.distance_ratio - 2.2).abs() < 1e-9);
}

#[test]
fn the_cores_nearest_to_every_tier() {
    let l = xml();
    let mamba = Mamba::discover(&xml_config()).unwrap();
    let near = |name: &str| {
        let s = mamba.spaces().find(|s| s.name == name).unwrap();
        (l.cpus_near_space(s).unwrap(), l.node_near_space(s).unwrap())
    };
    assert_eq!(near("dram0"), (cpus("0-1"), 0));
    assert_eq!(near("hbm0"), (cpus("0-1"), 1));
    assert_eq!(near("dram1"), (cpus("2-3"), 2));
    assert_eq!(near("hbm1"), (cpus("2-3"), 3));
    assert_eq!(near("nvdimm0"), (cpus("0-3"), 4));
    // A GPU attached to the second package: its local CPUs, its local node.
    let gpu = space("gpu0", Tier::Gpu, None, vec![2, 3]);
    assert_eq!(l.cpus_near_space(&gpu).unwrap(), cpus("2-3"));
    assert_eq!(l.node_near_space(&gpu).unwrap(), 2);
    let ssd = space("ssd0", Tier::Ssd, None, vec![]);
    assert!(matches!(
        l.cpus_near_space(&ssd),
        Err(AffinityError::NoLocality(_))
    ));
    let ghost = space("dram9", Tier::Dram, Some(9), vec![]);
    assert!(matches!(
        l.cpus_near_space(&ghost),
        Err(AffinityError::UnknownNode(9))
    ));
    let outside = space("gpu1", Tier::Gpu, None, vec![64]);
    assert!(matches!(
        l.cpus_near_space(&outside),
        Err(AffinityError::NoLocality(_))
    ));
}

#[test]
fn xml_domains_route_data_nodes_with_fallbacks() {
    let l = xml();
    let d = mamba::affinity::Domains::new(&l, Level::NumaNode).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.list()[0].cpus, cpus("0-1"));
    assert_eq!(d.list()[0].nodes.to_vec(), vec![0, 1]);
    assert_eq!(d.list()[0].adopted.to_vec(), vec![4]);
    assert_eq!(d.list()[1].cpus, cpus("2-3"));
    assert_eq!(d.list()[1].nodes.to_vec(), vec![2, 3]);
    assert_eq!(d.home_of(1).unwrap(), (0, Membership::Own));
    assert_eq!(d.home_of(4).unwrap(), (0, Membership::Adopted));
    assert!(matches!(d.home_of(7), Err(AffinityError::UnknownNode(7))));
    assert_eq!(d.steal_order(0), &[1]);

    let r = d.route(Some(3), 0);
    assert_eq!((r.domain, r.reason), (1, RouteReason::DataNode));
    let r = d.route(Some(4), 1);
    assert_eq!((r.domain, r.reason), (0, RouteReason::NearestToDataNode));
    let r = d.route(None, 5);
    assert_eq!((r.domain, r.reason), (1, RouteReason::NoPages));
    let r = d.route(Some(7), 2);
    assert_eq!((r.domain, r.reason), (0, RouteReason::UnknownNode));

    let packages = mamba::affinity::Domains::new(&l, Level::Package).unwrap();
    assert_eq!(packages.len(), 2);
    assert_eq!(packages.home_of(3).unwrap(), (1, Membership::Own));
    let machine = mamba::affinity::Domains::new(&l, Level::Machine).unwrap();
    assert_eq!(machine.len(), 1);
    assert_eq!(machine.home_of(4).unwrap(), (0, Membership::Own));
}

#[test]
fn synthetic_domains_steal_nearest_first_and_are_deterministic() {
    let l = synthetic();
    assert_eq!(l.nodes().len(), 4);
    let d = mamba::affinity::Domains::new(&l, Level::NumaNode).unwrap();
    assert_eq!(d.len(), 4);
    for (i, dom) in d.list().iter().enumerate() {
        assert_eq!(dom.cpus.len(), 2);
        assert_eq!(dom.nodes.len(), 1, "domain {i}");
    }
    let n0 = d.list()[0].nodes.first().unwrap();
    let n1 = d.list()[1].nodes.first().unwrap();
    let n2 = d.list()[2].nodes.first().unwrap();
    assert_eq!(l.distance(n0, n1).unwrap(), 12, "same package");
    assert_eq!(l.distance(n0, n2).unwrap(), 20, "other package");
    assert_eq!(d.steal_order(0), &[1, 2, 3]);
    assert_eq!(d.steal_order(1), &[0, 2, 3]);
    assert_eq!(d.steal_order(2), &[3, 0, 1]);
    assert_eq!(d.steal_order(3), &[2, 0, 1]);
    let again = mamba::affinity::Domains::new(&synthetic(), Level::NumaNode).unwrap();
    assert_eq!(again.list(), d.list());
    assert_eq!(
        mamba::affinity::Domains::new(&l, Level::Package)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn binding_through_a_simulated_topology_is_refused() {
    for l in [xml(), synthetic()] {
        assert!(matches!(
            l.bind_current_thread(&cpus("0")),
            Err(AffinityError::SimulatedTopology(_))
        ));
        assert!(matches!(
            l.spawn_pinned(&cpus("0"), || ()),
            Err(AffinityError::SimulatedTopology(_))
        ));
        let pool = AffinityPool::builder()
            .pinning(Pinning::Core)
            .build(&l)
            .unwrap();
        assert!(!pool.is_pinned());
        assert!(pool.stats().workers.iter().all(|w| w.cpus.is_empty()));
    }
}

#[test]
fn a_simulated_pool_runs_tasks_in_their_domains() {
    let pool = AffinityPool::builder()
        .record_executions(true)
        .build(&xml())
        .unwrap();
    assert_eq!(pool.workers(), 4);
    let handles: Vec<_> = [0u32, 1, 2, 3, 4]
        .into_iter()
        .map(|node| pool.spawn_on(node, move || node * 10).unwrap())
        .collect();
    let targets: Vec<usize> = handles.iter().map(|h| h.target()).collect();
    assert_eq!(targets, vec![0, 0, 1, 1, 0]);
    for (h, node) in handles.into_iter().zip([0u32, 1, 2, 3, 4]) {
        let (value, ex) = h.join_with_execution().unwrap();
        assert_eq!(value.unwrap(), node * 10);
        // Local, or stolen across domains while its own was idle.
        assert_eq!(ex.is_local(), ex.origin != Origin::StolenAcrossDomains);
        assert_eq!(ex.node, pool.domains().list()[ex.domain].primary_node());
    }
    assert!(matches!(
        pool.spawn_on(9, || ()),
        Err(AffinityError::UnknownNode(9))
    ));
    assert!(matches!(
        pool.spawn_in_domain(2, || ()),
        Err(AffinityError::UnknownDomain {
            domain: 2,
            count: 2
        })
    ));
    let stats = pool.stats();
    assert_eq!(stats.executed, 5);
    assert_eq!(stats.local + stats.remote, 5);
    assert_eq!(pool.executions().len(), 5);
}

#[test]
fn an_idle_domain_steals_from_a_busy_one() {
    // One worker per domain: the first task queues work on its own worker's
    // deque and then waits without running it, so only the other domain's
    // worker can run it.
    let pool = AffinityPool::builder()
        .workers_per_domain(1)
        .build(&xml())
        .unwrap();
    const N: usize = 20;
    let busy = pool
        .scope(|s| {
            s.spawn_in_domain(0, || {
                let me = current_worker().expect("runs on a worker");
                let handles: Vec<_> = (0..N)
                    .map(|i| pool.spawn_in_domain(me.domain, move || i).unwrap())
                    .collect();
                while handles.iter().any(|h| !h.is_finished()) {
                    std::thread::yield_now();
                }
                me
            })
            .unwrap()
            .join()
        })
        .unwrap()
        .unwrap();
    let stats = pool.stats();
    let idle = 1 - busy.worker;
    assert_eq!(stats.workers[busy.worker].executed, 1, "{stats:?}");
    assert_eq!(stats.workers[idle].remote, N as u64, "{stats:?}");
    assert_eq!(stats.remote as usize, N + usize::from(busy.domain != 0));
}

#[test]
fn migration_decisions_on_the_xml_node() {
    let d = mamba::affinity::Domains::new(&xml(), Level::NumaNode).unwrap();
    let policy = MigrationPolicy::default();
    let task = |data_node, task_node, passes| Footprint {
        bytes: 64 << 20,
        passes,
        data_node,
        task_node,
        task_movable: true,
        data_movable: true,
    };
    let idle = Backlog::default();
    let busy_data_side = Backlog {
        data_side_ns: 1e9,
        task_side_ns: 0.0,
    };
    // HBM and DRAM of one package share a domain: nothing moves.
    let dec = policy.decide(&d, &task(1, 0, 20), idle).unwrap();
    assert_eq!((dec.action, dec.run_on), (Action::Local, 0));
    // Both sides idle: run next to the data.
    let dec = policy.decide(&d, &task(2, 0, 20), idle).unwrap();
    assert_eq!((dec.action, dec.run_on), (Action::MoveTask, 2));
    assert_eq!(dec.distance_ratio, 2.0);
    // Data side busy, much reuse: the migration pays for itself.
    let dec = policy.decide(&d, &task(2, 0, 20), busy_data_side).unwrap();
    assert_eq!((dec.action, dec.run_on), (Action::MoveData, 0));
    // Data side busy, one pass: read it remotely.
    let dec = policy.decide(&d, &task(2, 0, 1), busy_data_side).unwrap();
    assert_eq!((dec.action, dec.run_on), (Action::RunRemote, 0));
    // A task that cannot move: the data does when reuse is high.
    let pinned = Footprint {
        task_movable: false,
        ..task(2, 0, 20)
    };
    assert_eq!(
        policy.decide(&d, &pinned, idle).unwrap().action,
        Action::MoveData
    );
    let stuck = Footprint {
        data_movable: false,
        ..pinned
    };
    let dec = policy.decide(&d, &stuck, idle).unwrap();
    assert_eq!(
        (dec.action, dec.move_task_ns, dec.move_data_ns),
        (Action::RunRemote, None, None)
    );
    // The NVM node belongs to domain 0: data there, task on node 0 is local.
    assert_eq!(
        policy.decide(&d, &task(4, 0, 5), idle).unwrap().action,
        Action::Local
    );
    assert!(matches!(
        policy.decide(&d, &task(8, 0, 1), idle),
        Err(AffinityError::UnknownNode(8))
    ));
    // Pure: the same inputs, the same answer.
    assert_eq!(
        policy.decide(&d, &task(2, 0, 7), busy_data_side).unwrap(),
        policy.decide(&d, &task(2, 0, 7), busy_data_side).unwrap()
    );
}

#[test]
fn migration_decisions_on_the_synthetic_node_follow_distance() {
    let d = mamba::affinity::Domains::new(&synthetic(), Level::NumaNode).unwrap();
    let node = |i: usize| d.list()[i].nodes.first().unwrap();
    let policy = MigrationPolicy::default();
    let busy = Backlog {
        data_side_ns: 1e9,
        task_side_ns: 0.0,
    };
    let task = |data_node, passes| Footprint {
        bytes: 64 << 20,
        passes,
        data_node,
        task_node: node(0),
        task_movable: true,
        data_movable: true,
    };
    // Same package (ratio 1.2): remote reads cost little; 20 passes are not
    // worth a migration (0.5 ns/B vs 20 x 0.1 x 0.2 = 0.4 ns/B).
    let near = policy.decide(&d, &task(node(1), 20), busy).unwrap();
    assert_eq!(near.action, Action::RunRemote);
    assert!((near.distance_ratio - 1.2).abs() < 1e-9);
    // Other package (ratio 2): the same reuse pays for the migration.
    let far = policy.decide(&d, &task(node(2), 20), busy).unwrap();
    assert_eq!(far.action, Action::MoveData);
}

#[test]
fn placing_moves_the_data_or_the_task_on_a_simulated_node() {
    let cfg = xml_config();
    let mamba = Mamba::discover(&cfg).unwrap();
    let pool = AffinityPool::new(&Locality::load(&cfg).unwrap()).unwrap();
    let policy = MigrationPolicy::default();
    let dram0 = mamba.pool_named("dram0").unwrap();

    // Idle: the task goes to the data's domain; the data stays.
    let mut a = dram0.allocate(1 << 20, 64).unwrap();
    a.as_mut_slice().unwrap().fill(3);
    let placed = pool.place(&mamba, &mut a, 2, 20, &policy).unwrap();
    assert_eq!(placed.decision.action, Action::MoveTask);
    assert_eq!(placed.domain, 0);
    assert_eq!(a.resident_space().numa_node, Some(0));

    // The data's side is busy and the data is reused: it moves to node 2.
    let busy = Backlog {
        data_side_ns: 1e9,
        task_side_ns: 0.0,
    };
    let placed = pool
        .place_with_backlog(&mamba, &mut a, 2, 20, &policy, busy)
        .unwrap();
    assert_eq!(placed.decision.action, Action::MoveData);
    assert_eq!(placed.domain, 1);
    assert_eq!(a.resident_space().name, "dram1");
    assert_eq!(a.data_node(pool.domains().locality()).unwrap(), Some(2));
    let data = &a;
    let sum = pool
        .scope(|s| {
            s.spawn_in_domain(placed.domain, || {
                data.as_slice()
                    .unwrap()
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum::<u64>()
            })
            .unwrap()
            .join()
        })
        .unwrap()
        .unwrap();
    assert_eq!(sum, 3 << 20);
    // Now the task is where the data is.
    let placed = pool.place(&mamba, &mut a, 2, 20, &policy).unwrap();
    assert_eq!(placed.decision.action, Action::Local);
}

#[test]
fn a_panicking_task_is_reported_and_the_pool_keeps_working() {
    let pool = AffinityPool::new(&synthetic()).unwrap();
    let bad = pool.spawn(|| -> u32 { panic!("boom") });
    match bad.join() {
        Err(AffinityError::TaskPanicked(msg)) => assert_eq!(msg, "boom"),
        other => panic!("expected a panic report, got {other:?}"),
    }
    let good: Vec<_> = (0..50u32).map(|i| pool.spawn(move || i)).collect();
    let total: u32 = good.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, (0..50).sum());
    let scoped = pool.scope(|s| {
        s.spawn(|| panic!("scoped {}", 7));
        s.spawn(|| 1);
    });
    match scoped {
        Err(AffinityError::ScopePanicked { count: 1, first }) => assert_eq!(first, "scoped 7"),
        other => panic!("expected a scope panic, got {other:?}"),
    }
    assert_eq!(pool.stats().panics, 2);
}

#[test]
fn a_data_set_keeps_its_location_until_refreshed() {
    let cfg = xml_config();
    let mamba = Mamba::discover(&cfg).unwrap();
    let locality = Locality::load(&cfg).unwrap();
    let pool = AffinityPool::builder()
        .record_executions(true)
        .build(&locality)
        .unwrap();
    let mut a = mamba
        .pool_named("dram0")
        .unwrap()
        .allocate(1 << 20, 64)
        .unwrap();
    a.as_mut_slice().unwrap().fill(1);
    let mut set = pool.locate(&a).unwrap();
    assert_eq!(set.node(), Some(0));
    assert_eq!(pool.route_for(&set).unwrap().domain, 0);

    // The pages move to node 2 (domain 1): the set still says node 0 ...
    let dram1 = mamba.spaces().find(|s| s.name == "dram1").unwrap().id;
    mamba.move_pages(&mut a, dram1).unwrap();
    assert_eq!(a.data_node(&locality).unwrap(), Some(2));
    assert_eq!(set.node(), Some(0));
    let stale = pool.spawn_near(&set, || ()).unwrap();
    assert_eq!(stale.target(), 0);
    // ... until refreshed.
    assert_eq!(set.refresh(&a, &locality).unwrap(), Some(2));
    let data = &a;
    let (target, sum) = pool
        .scope(|s| {
            let h = s
                .spawn_near(&set, || {
                    data.as_slice()
                        .unwrap()
                        .iter()
                        .map(|&b| u64::from(b))
                        .sum::<u64>()
                })
                .unwrap();
            (h.target(), h.join().unwrap())
        })
        .unwrap();
    assert_eq!((target, sum), (1, 1 << 20));
    stale.join().unwrap();
    assert_eq!(pool.executions().len(), 2);
}

#[test]
fn a_flood_of_outside_spawns_is_queued_and_run() {
    // One worker, held by its first task while 3000 more are queued from
    // outside: more than the fixed part of a domain's queue holds.
    let pool = AffinityPool::builder()
        .level(Level::Machine)
        .workers_per_domain(1)
        .build(&synthetic())
        .unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let first = pool.spawn(move || {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    });
    started.recv().unwrap();
    const N: u64 = 3000;
    let handles: Vec<_> = (0..N).map(|i| pool.spawn(move || i * 3)).collect();
    assert_eq!(pool.queued(0), N as usize);
    release.send(()).unwrap();
    first.join().unwrap();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 3 * N * (N - 1) / 2);
    assert_eq!(pool.queued(0), 0);
    assert_eq!(pool.stats().executed, N + 1);
}

#[test]
fn a_scope_returns_after_unclaimed_values_are_dropped() {
    // Values that borrow from the caller and count their drops: the scope
    // may return only once every task's value is gone, joined or not.
    struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let pool = AffinityPool::new(&synthetic()).unwrap();
    let drops = std::sync::atomic::AtomicUsize::new(0);
    let kept = pool
        .scope(|s| {
            let drops = &drops;
            let mut kept = None;
            for i in 0..200 {
                let h = s.spawn(move || Counted(drops));
                if i == 0 {
                    kept = Some(h);
                }
            }
            kept
        })
        .unwrap();
    assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 199);
    drop(kept.unwrap().join().unwrap());
    assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 200);
}
