//! Affinity on this machine: real pinning verified with `sched_getcpu`, the
//! pool running, stealing and placing tasks near real buffers.

use mamba::affinity::{
    current_cpu, current_worker, thread_affinity, AffinityError, AffinityPool, CpuSet,
    DataLocation, DataRange, Level, Locality, Origin, Pinning, RouteReason, SAMPLED_PAGES,
};
use mamba::{Config, Mamba, Policy, Tier};
use std::sync::atomic::{AtomicUsize, Ordering};

fn here() -> Locality {
    let l = Locality::load(&Config::default()).unwrap();
    assert!(l.is_real());
    l
}

/// This host's memory, without GPUs.
fn host_mamba() -> Mamba {
    Mamba::discover(&Config {
        gpu: false,
        ..Config::default()
    })
    .unwrap()
}

fn one(cpu: u32) -> CpuSet {
    std::iter::once(cpu).collect()
}

#[test]
fn binding_to_each_cpu_takes_and_is_undone_on_drop() {
    let l = here();
    let before = thread_affinity().unwrap();
    for cpu in l.cpus().iter().filter(|&c| before.contains(c)) {
        let guard = l.bind_current_thread(&one(cpu)).unwrap();
        assert_eq!(guard.verified_cpu(), cpu);
        assert_eq!(current_cpu(), Some(cpu));
        assert_eq!(thread_affinity().unwrap(), one(cpu));
        assert_eq!(guard.previous(), &before);
        drop(guard);
        assert_eq!(thread_affinity().unwrap(), before);
    }
    let all = l.bind_current_thread(l.cpus()).unwrap();
    assert!(l.cpus().contains(current_cpu().unwrap()));
    drop(all);
    assert_eq!(thread_affinity().unwrap(), before);
}

#[test]
fn bad_cpu_sets_are_refused_and_leave_the_mask_alone() {
    let l = here();
    let before = thread_affinity().unwrap();
    assert!(matches!(
        l.bind_current_thread(&CpuSet::new()),
        Err(AffinityError::EmptyCpuSet)
    ));
    assert!(matches!(
        l.bind_current_thread(&one(4000)),
        Err(AffinityError::UnknownCpu(4000))
    ));
    assert!(matches!(
        l.spawn_pinned(&CpuSet::new(), || ()),
        Err(AffinityError::EmptyCpuSet)
    ));
    assert_eq!(thread_affinity().unwrap(), before);
}

#[test]
fn a_pinned_thread_runs_on_its_cpu() {
    let l = here();
    let last = l.cpus().iter().last().unwrap();
    let t = l
        .spawn_pinned(&one(last), move || {
            (current_cpu(), thread_affinity().unwrap())
        })
        .unwrap();
    assert_eq!(t.verified_cpu(), last);
    let (cpu, mask) = t.join().unwrap();
    assert_eq!(cpu, Some(last));
    assert_eq!(mask, one(last));
    let boom = l
        .spawn_pinned(&one(last), || panic!("pinned boom"))
        .unwrap();
    assert!(matches!(boom.join(), Err(AffinityError::TaskPanicked(m)) if m == "pinned boom"));
}

#[test]
fn pool_workers_are_pinned_and_tasks_run_on_their_cpus() {
    let l = here();
    let pool = AffinityPool::builder()
        .record_executions(true)
        .build(&l)
        .unwrap();
    assert!(pool.is_pinned());
    assert_eq!(pool.workers(), l.cpus().len());
    let handles: Vec<_> = (0..1000u64)
        .map(|i| pool.spawn(move || (i * i, current_cpu(), current_worker())))
        .collect();
    let stats_workers = pool.stats().workers;
    for (i, h) in handles.into_iter().enumerate() {
        let (v, cpu, worker) = h.join().unwrap();
        assert_eq!(v, (i * i) as u64);
        let worker = worker.expect("ran on a worker");
        let bound = &stats_workers[worker.worker].cpus;
        assert_eq!(bound.len(), 1);
        assert!(bound.contains(cpu.unwrap()), "worker {worker:?} on {cpu:?}");
    }
    let stats = pool.stats();
    assert_eq!(stats.executed, 1000);
    assert_eq!(stats.local + stats.remote, 1000);
    let log = pool.executions();
    assert_eq!(log.len(), 1000);
    for ex in &log {
        let bound = &stats.workers[ex.worker].cpus;
        assert!(bound.contains(ex.cpu.unwrap()));
        assert_eq!(ex.node, l.node_of_cpu(ex.cpu.unwrap()));
    }
}

#[test]
fn workers_of_a_domain_steal_from_each_other() {
    let l = here();
    if l.cpus().len() < 2 {
        eprintln!("skipped: stealing between workers needs two CPUs");
        return;
    }
    let pool = AffinityPool::builder()
        .level(Level::Machine)
        .workers_per_domain(2)
        .build(&l)
        .unwrap();
    const N: usize = 50;
    let busy = pool
        .scope(|s| {
            s.spawn(|| {
                // Queued on this worker's own deque; it waits without
                // running them, so the sibling must steal every one.
                let handles: Vec<_> = (0..N).map(|i| pool.spawn(move || i)).collect();
                while handles.iter().any(|h| !h.is_finished()) {
                    std::thread::yield_now();
                }
                current_worker().unwrap()
            })
            .join()
        })
        .unwrap()
        .unwrap();
    let stats = pool.stats();
    let sibling = 1 - busy.worker;
    assert_eq!(stats.workers[sibling].steals, N as u64, "{stats:?}");
    assert_eq!(stats.remote, 0);
    assert_eq!(stats.executed, N as u64 + 1);
}

#[test]
fn waiting_inside_a_task_helps_instead_of_deadlocking() {
    // A single worker joining a task and opening a scope from inside a task.
    let pool = AffinityPool::builder()
        .level(Level::Machine)
        .workers_per_domain(1)
        .build(&here())
        .unwrap();
    let value = pool
        .spawn({
            let inner = pool.spawn(|| 21);
            move || inner.join().unwrap() * 2
        })
        .join()
        .unwrap();
    assert_eq!(value, 42);
    let total = AtomicUsize::new(0);
    pool.scope(|s| {
        s.spawn(|| {
            pool.scope(|inner| {
                for i in 0..10 {
                    let total = &total;
                    inner.spawn(move || total.fetch_add(i, Ordering::SeqCst));
                }
            })
            .unwrap();
            let nested = pool.spawn(|| 5).join().unwrap();
            total.fetch_add(nested, Ordering::SeqCst);
        });
    })
    .unwrap();
    assert_eq!(total.into_inner(), 45 + 5);
}

#[test]
fn spawn_near_follows_real_buffers() {
    let l = here();
    let mamba = host_mamba();
    let pool = AffinityPool::new(&l).unwrap();
    let mut a = mamba
        .allocate(8 << 20, 4096, &Policy::require(Tier::Dram))
        .unwrap();
    a.as_mut_slice().unwrap().fill(1);
    let node = mamba::locate(a.addr(), a.len())
        .unwrap()
        .majority_node()
        .unwrap();
    let expected = pool.domain_of(node).unwrap().index;
    let route = pool.route_for(&a).unwrap();
    assert_eq!(
        (route.domain, route.node, route.reason),
        (expected, Some(node), RouteReason::DataNode)
    );

    // A Vec, touched: its pages are on a node.
    let v = vec![2u64; 1 << 20];
    let route = pool.route_for(&v[..]).unwrap();
    assert_eq!(route.reason, RouteReason::DataNode);
    // Allocated from a fresh mapping but never touched: no page yet.
    let untouched = mamba
        .allocate(4 << 20, 4096, &Policy::require(Tier::Dram))
        .unwrap();
    let range = DataRange::new(untouched.addr(), untouched.len());
    assert_eq!(pool.route_for(&range).unwrap().reason, RouteReason::NoPages);
    // The allocation itself falls back to its space's node.
    let route = pool.route_for(&untouched).unwrap();
    assert_eq!(route.node, untouched.space().numa_node);

    // Scoped tasks borrowing chunks, each sent to the chunk's domain.
    let chunks: Vec<&[u64]> = v.chunks(1 << 16).collect();
    let sum = pool
        .scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&c| {
                    s.spawn_near(c, move || (c.iter().sum::<u64>(), current_worker()))
                        .unwrap()
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let (value, ex) = h.join_with_execution().unwrap();
                    let (sum, w) = value.unwrap();
                    assert_eq!(w.unwrap().domain, ex.domain);
                    assert!(ex.is_local() || ex.origin == Origin::StolenAcrossDomains);
                    sum
                })
                .sum::<u64>()
        })
        .unwrap();
    assert_eq!(sum, 2 << 20);
    let bytes = a.as_slice().unwrap();
    let h = pool
        .scope(|s| {
            s.spawn_near(&a, || bytes.iter().map(|&b| u64::from(b)).sum::<u64>())
                .unwrap()
                .join()
        })
        .unwrap()
        .unwrap();
    assert_eq!(h, 8 << 20);
}

#[test]
fn spawn_near_a_data_set_reuses_its_location() {
    let l = here();
    let mamba = host_mamba();
    let pool = AffinityPool::new(&l).unwrap();
    // A fresh mapping, not touched yet: located as without pages.
    let mut a = mamba
        .allocate(4 << 20, 4096, &Policy::require(Tier::Dram))
        .unwrap();
    let range = DataRange::new(a.addr(), a.len());
    let mut set = pool.locate(&range).unwrap();
    assert_eq!(set.node(), None);
    a.as_mut_slice().unwrap().fill(1);
    // Touched now, but the set keeps its answer until refreshed.
    assert_eq!(set.node(), None);
    assert_eq!(pool.route_for(&set).unwrap().reason, RouteReason::NoPages);
    let node = set.refresh(&range, &l).unwrap();
    assert!(node.is_some());
    assert_eq!(node, range.data_node(&l).unwrap());
    let expected = pool.route_for(&range).unwrap();
    assert_eq!(pool.route_for(&set).unwrap(), expected);
    let bytes = a.as_slice().unwrap();
    let total = pool
        .scope(|s| {
            let handles: Vec<_> = bytes
                .chunks(1 << 16)
                .map(|chunk| {
                    s.spawn_near(&set, move || {
                        chunk.iter().map(|&b| u64::from(b)).sum::<u64>()
                    })
                    .unwrap()
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    assert_eq!(h.target(), expected.domain);
                    h.join().unwrap()
                })
                .sum::<u64>()
        })
        .unwrap();
    assert_eq!(total, 4 << 20);
}

#[test]
fn long_ranges_are_sampled_short_ones_counted() {
    let page = mamba::page_size();
    let v = vec![1u8; 64 << 20];
    let whole = DataRange::of(&v[..]).sample().unwrap();
    assert_eq!(whole.pages_per_node.values().sum::<usize>(), SAMPLED_PAGES);
    let base = v.as_ptr() as usize;
    let aligned = base.next_multiple_of(page);
    let short = DataRange::new(aligned, SAMPLED_PAGES * page)
        .sample()
        .unwrap();
    assert_eq!(short.pages_per_node.values().sum::<usize>(), SAMPLED_PAGES);
    let longer = DataRange::new(aligned, (SAMPLED_PAGES + 1) * page)
        .sample()
        .unwrap();
    assert_eq!(longer.pages_per_node.values().sum::<usize>(), SAMPLED_PAGES);
    // Two bytes across a page boundary are two pages.
    let straddle = DataRange::new(aligned + page - 1, 2).sample().unwrap();
    assert_eq!(straddle.pages_per_node.values().sum::<usize>(), 2);
    assert_eq!(DataRange::new(aligned, 0).data_node(&here()).unwrap(), None);
}

#[test]
fn unpinned_pools_do_not_bind() {
    let pool = AffinityPool::builder()
        .pinning(Pinning::Unpinned)
        .build(&here())
        .unwrap();
    assert!(!pool.is_pinned());
    let before = thread_affinity().unwrap();
    let mask = pool.spawn(|| thread_affinity().unwrap()).join().unwrap();
    assert_eq!(mask, before);
}

#[test]
fn tasks_follow_pages_moved_between_real_nodes() {
    let l = here();
    let with_cpus: Vec<u32> = l
        .nodes()
        .iter()
        .filter(|n| !n.cpus.is_empty())
        .map(|n| n.os_index)
        .collect();
    if with_cpus.len() < 2 {
        eprintln!(
            "skipped: this machine has {} NUMA node(s) with CPUs; moving pages between real \
             nodes needs two",
            with_cpus.len()
        );
        return;
    }
    let mamba = host_mamba();
    let pool = AffinityPool::new(&l).unwrap();
    let (from, to) = (with_cpus[0], with_cpus[1]);
    let mut a = mamba
        .allocate(4 << 20, 4096, &Policy::require(Tier::Dram).near_node(from))
        .unwrap();
    a.as_mut_slice().unwrap().fill(1);
    let target = mamba.spaces().find(|s| s.numa_node == Some(to)).unwrap().id;
    mamba.move_pages(&mut a, target).unwrap();
    let route = pool.route_for(&a).unwrap();
    assert_eq!(route.node, Some(to));
    assert_eq!(route.domain, pool.domain_of(to).unwrap().index);
}
