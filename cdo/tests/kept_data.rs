//! A name offered again and again with small objects: its last withdrawn
//! offer keeps its data, and the next write of the same size refills it
//! instead of allocating, but never while a consumer still holds a view.

mod common;

use cdo::data::KEPT_DATA_MAX;
use cdo::{Cdo, Data, Pool};
use mamba::{PoolStats, Tier};

/// The statistics of the DRAM space that CDO writes use.
fn dram(pool: &Pool) -> PoolStats {
    let dram = common::space_of(pool, Tier::Dram);
    pool.mamba()
        .stats()
        .into_iter()
        .find(|(info, _)| info.id == dram)
        .map(|(_, s)| s)
        .expect("the DRAM space has statistics")
}

/// Writes `bytes` under `name` and hands them over (see [`hand_over_with`]).
fn hand_over(pool: &Pool, name: &str, bytes: &[u8]) -> Data {
    hand_over_with(pool, name, |p| p.write(bytes))
}

/// Offers under `name` what `fill` gives the producer's handle, demands it
/// as a second handle and returns the consumer's view; both handles are
/// withdrawn and disposed.
fn hand_over_with(
    pool: &Pool,
    name: &str,
    fill: impl FnOnce(&mut Cdo<'_>) -> cdo::Result<()>,
) -> Data {
    let mut p = pool.declare(name).unwrap();
    fill(&mut p).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = pool.declare(name).unwrap();
    c.require().unwrap();
    let view = c.demand().unwrap();
    c.dispose().unwrap();
    p.withdraw().unwrap();
    p.dispose().unwrap();
    view
}

#[test]
fn a_small_object_written_again_refills_the_data_its_last_offer_kept() {
    let env = common::env();
    let pool = &env.pool;
    // A looked-up name keeps the name (and what it keeps) in the pool.
    let _name = pool.name("kept/small").unwrap();

    let first = hand_over(pool, "kept/small", &[1; 64]);
    let addr = first.addr();
    drop(first);
    let before = dram(pool).allocations;
    let second = hand_over(pool, "kept/small", &[2; 64]);
    assert_eq!(
        dram(pool).allocations,
        before,
        "the second write allocates nothing"
    );
    assert_eq!(second.addr(), addr, "it refilled the first object's data");
    assert_eq!(second.as_slice().unwrap(), &[2; 64][..]);
}

#[test]
fn data_a_consumer_still_holds_is_never_refilled() {
    let env = common::env();
    let pool = &env.pool;
    let _name = pool.name("kept/held").unwrap();

    let held = hand_over(pool, "kept/held", &[1; 64]);
    let second = hand_over(pool, "kept/held", &[2; 64]);
    assert_ne!(second.addr(), held.addr(), "a held view gets fresh data");
    assert_eq!(
        held.as_slice().unwrap(),
        &[1; 64][..],
        "the held view is intact"
    );
    assert_eq!(second.as_slice().unwrap(), &[2; 64][..]);
    // Once the first view is let go, the data the second offer kept is
    // refilled, and the held one stays as it was.
    drop(second);
    let third = hand_over(pool, "kept/held", &[3; 64]);
    assert_eq!(third.as_slice().unwrap(), &[3; 64][..]);
    assert_eq!(held.as_slice().unwrap(), &[1; 64][..]);
}

#[test]
fn another_size_or_a_large_object_allocates_and_large_data_is_not_kept() {
    let env = common::env();
    let pool = &env.pool;
    let _name = pool.name("kept/sizes").unwrap();

    drop(hand_over(pool, "kept/sizes", &[1; 64]));
    let before = dram(pool).allocations;
    let other = hand_over(pool, "kept/sizes", &[2; 128]);
    assert_eq!(dram(pool).allocations, before + 1, "another size allocates");
    assert_eq!(other.as_slice().unwrap(), &[2; 128][..]);
    drop(other);

    let large = vec![3; KEPT_DATA_MAX + 1];
    drop(hand_over(pool, "kept/sizes", &large));
    assert_eq!(
        dram(pool).in_use,
        0,
        "a withdrawn large object's data is freed once its views are"
    );
    let before = dram(pool).allocations;
    drop(hand_over(pool, "kept/sizes", &large));
    assert_eq!(dram(pool).allocations, before + 1, "large data is not kept");
}

#[test]
fn what_a_name_keeps_goes_with_its_last_handle() {
    let env = common::env();
    let pool = &env.pool;
    let name = pool.name("kept/released").unwrap();
    drop(hand_over(pool, "kept/released", &[1; 64]));
    assert_eq!(dram(pool).in_use, 64, "the name keeps its last data");
    drop(name);
    assert_eq!(pool.names(), 0);
    assert_eq!(dram(pool).in_use, 0, "the name's data went with it");
}

#[test]
fn data_the_application_attached_stays_its_own_to_refill() {
    let env = common::env();
    let pool = &env.pool;
    let _name = pool.name("kept/staged").unwrap();
    // A small staging block offered again and again, as a solver stages
    // its data per call (`Cdo::attach_data`).
    let mut stage: Data = pool
        .allocate(64, &mamba::Policy::require(Tier::Dram))
        .unwrap()
        .into();
    for round in 0..3u8 {
        let block = stage
            .get_mut()
            .expect("the stage is the application's alone again");
        block.as_mut_slice().unwrap().fill(round);
        let view = hand_over_with(pool, "kept/staged", |p| p.attach_data(stage.clone()));
        assert_eq!(view.as_slice().unwrap(), [round; 64]);
    }
    assert_eq!(
        dram(pool).in_use,
        64,
        "only the stage: nothing kept beside it"
    );
}
