//! A block handed over under the same name again and again, as a solver
//! loop stages its data per call: with handles declared again from
//! templates ([`Cdo::declare_again`]) and the same staging data attached
//! each time ([`Cdo::attach_data`]), a round makes no heap allocation once
//! the first has run.
//!
//! One test in this binary: the allocator counts per thread.

use cdo::{Data, Place, Pool, PoolConfig};
use mamba::{Config, Mamba, Policy, Tier};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the counter neither
// allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as for `dealloc`, with the caller's `realloc` contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    COUNT.with(Cell::get)
}

#[test]
fn a_staged_block_handed_over_again_allocates_nothing_after_the_first_round() {
    let mamba = Arc::new(
        Mamba::discover(&Config {
            gpu: false,
            ..Config::default()
        })
        .unwrap(),
    );
    let pool = Pool::new(Arc::clone(&mamba), PoolConfig::default()).unwrap();
    let len = 10_000;
    let mut stage: Data = pool
        .allocate(len, &Policy::require(Tier::Dram))
        .unwrap()
        .into();
    let space = stage.space().unwrap();
    // Templates: the producer's size and the consumer's wanted place are
    // set once.
    let mut offer_template = pool.declare("solver/k0/psi").unwrap();
    offer_template.set_size(len as u64).unwrap();
    let mut demand_template = pool.declare("solver/k0/psi").unwrap();
    demand_template.want_place(Place::Space(space)).unwrap();

    let mut mark = 0;
    for round in 0..5u8 {
        if round == 1 {
            mark = allocations();
        }
        // Refill the block: nothing else holds it since the last round.
        let block = stage.get_mut().expect("the stage is unshared again");
        block.as_mut_slice().unwrap().fill(round);

        let mut p = offer_template.declare_again();
        p.attach_data(stage.clone()).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = demand_template.declare_again();
        c.require().unwrap();
        let data = c.demand().unwrap();
        assert!(data.same_bytes(&stage), "wanted where it is: zero-copy");
        assert!(data.as_slice().unwrap().iter().all(|&b| b == round));
        // The last round's offer is withdrawn: this one is the first on
        // offer again, version 0 (in both deployments).
        assert_eq!(c.version(), Some(0));
        drop(data);
        c.dispose().unwrap();
        drop(c);
        p.withdraw().unwrap();
        p.dispose().unwrap();
        drop(p);
    }
    assert!(mark > 0, "the counter counts: the first round allocated");
    let after = allocations() - mark;
    assert_eq!(after, 0, "heap allocations in rounds 1..5");
    let s = pool.stats();
    assert_eq!((s.offered, s.demanded, s.withdrawn), (5, 5, 5));
    assert_eq!((s.bytes_zero_copy, s.bytes_copied), (5 * len as u64, 0));
    // The templates never offered nor required: dropped as declared.
    drop((offer_template, demand_template));
    assert_eq!(pool.names(), 0);
}
