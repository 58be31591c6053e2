//! CDO groups.

mod common;

use cdo::{Error, Place, State};
use mamba::Tier;
use std::time::Duration;

#[test]
fn a_group_is_offered_and_demanded_whole() {
    let env = common::env();
    let pool = &env.pool;
    let mut consumer = pool.require_group("run1/step42", None).unwrap();
    assert!(matches!(
        consumer.demand_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    let mut g = pool.declare_group("run1/step42").unwrap();
    for (m, v) in [("rho", 1u8), ("u", 2), ("p/hi", 3)] {
        g.declare(m).unwrap().write(&[v; 8]).unwrap();
    }
    assert!(g.declare("rho").is_err());
    g.offer().unwrap();
    assert!(g.declare("late").is_err());

    let got = consumer.demand_timeout(Duration::from_secs(5)).unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["run1/step42/rho", "run1/step42/u", "run1/step42/p/hi"]
    );
    assert_eq!(got[2].1.as_slice().unwrap(), [3; 8]);
    assert!(matches!(
        consumer.demand_timeout(Duration::ZERO),
        Err(Error::InvalidState { .. })
    ));

    // Members are ordinary CDOs too; a second group consumer wants SSD.
    let mut one = pool.declare("run1/step42/u").unwrap();
    one.require().unwrap();
    assert_eq!(one.demand().unwrap().as_slice().unwrap(), [2; 8]);
    let ssd = common::space_of(pool, Tier::Ssd);
    let mut second = pool
        .require_group("run1/step42", Some(Place::Tier(Tier::Ssd)))
        .unwrap();
    let got = second.demand_timeout(Duration::from_secs(5)).unwrap();
    assert!(got.iter().all(|(_, d)| d.space() == Some(ssd)));

    assert!(g.dispose().is_err(), "still offered");
    g.withdraw_timeout(Duration::from_secs(5)).unwrap();
    assert!(g.members().iter().all(|m| m.state() == State::Withdrawn));
    g.dispose().unwrap();
    drop((one, consumer, second));
    assert_eq!(pool.names(), 0);
}
