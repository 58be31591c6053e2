//! The lifecycle table, exhaustively: every operation in every state.

mod common;

use cdo::{Cdo, Error, Op, Pool, State};
use std::time::Duration;

type Call = fn(&mut Cdo<'_>) -> cdo::Result<()>;

/// Every public call that performs `op`, each one that would succeed if the
/// state allowed it; the first is the one used for allowed transitions.
fn calls(op: Op) -> Vec<Call> {
    match op {
        Op::SetAttribute => vec![
            |c| c.set("priority", "checkpoint").map(|_| ()),
            |c| c.set_size(3),
            |c| c.set_element_type(cdo::ElementType::U8),
            |c| c.set_layout(cdo::Layout::default()),
            |c| c.set_lifetime(Duration::ZERO),
            |c| c.set_priority(cdo::Priority::Output),
            |c| c.set_persist(true),
            |c| c.want_place(cdo::Place::Tier(mamba::Tier::Dram)),
            |c| c.want_order(cdo::Order::RowMajor),
        ],
        Op::AttachData => vec![|c| c.write(&[1, 2, 3]), |c| {
            c.allocate(&mamba::Policy::highest_bandwidth()).map(|_| ())
        }],
        Op::Seal => vec![|c| c.seal()],
        Op::Offer => vec![|c| c.offer()],
        Op::Withdraw => vec![
            |c| c.try_withdraw().map(|_| ()),
            |c| c.withdraw_timeout(Duration::from_secs(5)),
            |c| c.withdraw(),
        ],
        Op::Require => vec![|c| c.require()],
        Op::Demand => vec![
            |c| c.try_demand().map(|_| ()),
            |c| c.demand_timeout(Duration::from_secs(5)).map(|_| ()),
            |c| c.demand().map(|_| ()),
        ],
        Op::Retract => vec![|c| c.retract()],
        Op::Dispose => vec![|c| c.dispose()],
    }
}

fn snapshot(pool: &Pool, c: &Cdo<'_>) -> impl PartialEq + std::fmt::Debug {
    (
        pool.stats(),
        pool.names(),
        c.attributes().clone(),
        c.version(),
        c.data().map(|d| d.addr()),
    )
}

/// A handle in `state` on `name`, whose CDO some other handle offers (so
/// that demands succeed at once), ready for `op` (a sealed handle has its
/// data unless the data is what `op` attaches).
fn reach<'p>(pool: &'p Pool, name: &str, state: State, op: Op) -> Cdo<'p> {
    let mut c = pool.declare(name).unwrap();
    let produce = |c: &mut Cdo<'_>| {
        if op == Op::AttachData && state == State::Sealed {
            c.set_size(3).unwrap();
        } else {
            c.write(&[1, 2, 3]).unwrap();
        }
        c.seal().unwrap();
    };
    match state {
        State::Declared => {}
        State::Sealed => produce(&mut c),
        State::Offered => {
            produce(&mut c);
            c.offer().unwrap();
        }
        State::Withdrawn => {
            produce(&mut c);
            c.offer().unwrap();
            c.withdraw().unwrap();
        }
        State::Required => c.require().unwrap(),
        State::Demanded => {
            c.require().unwrap();
            c.demand().unwrap();
        }
        State::Retracted => {
            c.require().unwrap();
            c.retract().unwrap();
        }
        State::Disposed => c.dispose().unwrap(),
    }
    assert_eq!(c.state(), state);
    c
}

#[test]
fn every_operation_in_every_state_follows_the_table() {
    let env = common::env_with(cdo::PoolConfig {
        duplicates: cdo::DuplicateOffers::Version,
        ..Default::default()
    });
    let pool = &env.pool;
    let (mut allowed, mut rejected) = (0, 0);
    for (i, state) in State::ALL.into_iter().enumerate() {
        for (j, op) in Op::ALL.into_iter().enumerate() {
            let name = format!("table/{i}/{j}");
            let mut source = pool.declare(&name).unwrap();
            source.write(&[9; 3]).unwrap();
            source.seal().unwrap();
            source.offer().unwrap();

            let mut c = reach(pool, &name, state, op);
            match state.after(op) {
                Some(next) => {
                    allowed += 1;
                    calls(op)[0](&mut c).unwrap_or_else(|e| panic!("{op} in {state}: {e}"));
                    assert_eq!(c.state(), next, "{op} in {state}");
                }
                None => {
                    for (k, call) in calls(op).into_iter().enumerate() {
                        let before = snapshot(pool, &c);
                        match call(&mut c) {
                            Err(Error::InvalidState {
                                op: o, state: s, ..
                            }) => assert_eq!((o, s), (op, state)),
                            other => panic!("{op}#{k} in {state} gave {other:?}"),
                        }
                        assert_eq!(c.state(), state, "{op}#{k} in {state} changed the state");
                        assert_eq!(before, snapshot(pool, &c), "{op}#{k} in {state}");
                        rejected += 1;
                    }
                }
            }
            drop(c);
            source.withdraw_timeout(Duration::from_secs(5)).unwrap();
            source.dispose().unwrap();
        }
    }
    assert_eq!(allowed, 15, "allowed transitions in the table");
    assert!(rejected > 100, "{rejected} rejected calls");
    assert_eq!(pool.names(), 0, "every name released");
}

#[test]
fn the_documented_paths_reach_disposed() {
    use State::*;
    let producer = [Op::Seal, Op::Offer, Op::Withdraw, Op::Dispose];
    let consumer = [Op::Require, Op::Demand, Op::Dispose];
    let retract = [Op::Require, Op::Retract, Op::Dispose];
    for path in [&producer[..], &consumer, &retract] {
        let end = path
            .iter()
            .try_fold(Declared, |s, &op| s.after(op))
            .unwrap();
        assert_eq!(end, Disposed);
    }
}
