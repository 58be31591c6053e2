//! Matching offers with requires, and handing the data over.

mod common;

use cdo::{DuplicateOffers, Error, Layout, Op, Order, Place, PoolConfig, State};
use mamba::Tier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn same_space_demand_shares_the_producers_bytes() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("zero/copy").unwrap();
    p.write(&[5; 1000]).unwrap();
    let addr = p.buffer_mut().unwrap().addr();
    p.seal().unwrap();
    p.offer().unwrap();

    let mut c = pool.declare("zero/copy").unwrap();
    c.require().unwrap();
    let data = c.demand().unwrap();
    assert_eq!(data.addr(), Some(addr), "zero-copy: same address");
    assert_eq!(data.as_slice().unwrap(), &[5; 1000][..]);
    assert_eq!(c.offered_attributes().unwrap().size, Some(1000));
    c.dispose().unwrap();
    p.withdraw().unwrap();
    p.dispose().unwrap();
    // The consumer's view outlives both handles.
    assert_eq!(data.as_slice().unwrap()[999], 5);

    let s = pool.stats();
    assert_eq!(
        (s.declared, s.offered, s.demanded, s.disposed),
        (2, 1, 1, 2)
    );
    assert_eq!((s.bytes_zero_copy, s.bytes_copied), (1000, 0));
    assert_eq!(s.paths.len(), 1);
    assert_eq!(s.paths[0].from, s.paths[0].to);
    assert_eq!(pool.names(), 0);
}

#[test]
fn another_tier_gets_a_copy_through_mamba() {
    let env = common::env();
    let pool = &env.pool;
    let dram = common::space_of(pool, Tier::Dram);
    let ssd = common::space_of(pool, Tier::Ssd);
    let mut p = pool.declare("tiers").unwrap();
    let bytes: Vec<u8> = (0..=255).cycle().take(10_000).collect();
    p.write(&bytes).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();

    let mut c = pool.declare("tiers").unwrap();
    c.want_place(Place::Tier(Tier::Ssd)).unwrap();
    c.require().unwrap();
    let data = c.demand().unwrap();
    assert_eq!(data.space(), Some(ssd));
    assert_eq!(data.as_slice().unwrap(), &bytes[..]);

    let mut same = pool.declare("tiers").unwrap();
    same.want_place(Place::Space(dram)).unwrap();
    same.require().unwrap();
    assert_eq!(same.demand().unwrap().space(), Some(dram));

    let s = pool.stats();
    assert_eq!((s.bytes_copied, s.bytes_zero_copy), (10_000, 10_000));
    let copied = s.paths.iter().find(|p| p.bytes_copied > 0).unwrap();
    assert_eq!((copied.from, copied.to, copied.transfers), (dram, ssd, 1));
}

#[test]
fn a_wanted_order_is_delivered_transposed() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("matrix").unwrap();
    p.set_element_type(cdo::ElementType::U16).unwrap();
    p.set_layout(Layout {
        shape: vec![2, 3],
        order: Order::RowMajor,
        ..Layout::default()
    })
    .unwrap();
    let values: Vec<u8> = [1u16, 2, 3, 4, 5, 6]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    p.allocate(&mamba::Policy::require(Tier::Dram))
        .unwrap()
        .copy_from_slice(&values);
    p.seal().unwrap();
    assert_eq!(p.attributes().size, Some(12));
    p.offer().unwrap();

    let mut c = pool.declare("matrix").unwrap();
    c.want_order(Order::ColumnMajor).unwrap();
    c.require().unwrap();
    let data = c.demand().unwrap();
    let got: Vec<u16> = data
        .as_slice()
        .unwrap()
        .chunks(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(got, [1, 4, 2, 5, 3, 6]);
}

#[test]
fn demand_blocks_until_the_offer_and_consumers_need_no_size() {
    let env = common::env();
    let pool = &env.pool;
    let offered = AtomicBool::new(false);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut c = pool.declare("later").unwrap();
            c.require().unwrap();
            let d = c.demand().unwrap();
            assert!(offered.load(Ordering::SeqCst));
            c.dispose().unwrap();
            d.as_slice().unwrap().to_vec()
        });
        std::thread::sleep(Duration::from_millis(50));
        let mut p = pool.declare("later").unwrap();
        p.write(b"hello").unwrap();
        p.seal().unwrap();
        offered.store(true, Ordering::SeqCst);
        p.offer().unwrap();
        assert_eq!(consumer.join().unwrap(), b"hello");
        p.withdraw().unwrap();
        p.dispose().unwrap();
    });
}

#[test]
fn demand_has_timeout_and_poll_variants_that_change_nothing() {
    let env = common::env();
    let pool = &env.pool;
    let mut c = pool.declare("poll").unwrap();
    c.require().unwrap();
    assert!(c.try_demand().unwrap().is_none());
    let start = Instant::now();
    match c.demand_timeout(Duration::from_millis(30)) {
        Err(Error::Timeout { op: Op::Demand, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(c.state(), State::Required);

    let mut p = pool.declare("poll").unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let d = c.try_demand().unwrap().expect("offered now");
    assert!(d.is_empty());
    assert_eq!(c.state(), State::Demanded);
}

/// Ping-pong with zero-length tokens: each side offers a token only after
/// it required the other's, so no withdraw can overtake a require.
#[test]
fn zero_length_cdos_synchronise_threads() {
    let env = common::env();
    let pool = &env.pool;
    let rounds = 50;
    let token = |name: String| {
        let mut t = pool.declare(&name).unwrap();
        t.seal().unwrap();
        t.offer().unwrap();
        assert_eq!(t.offered_attributes().unwrap().size, Some(0));
        t
    };
    let wait = |name: String| {
        let mut t = pool.declare(&name).unwrap();
        t.require().unwrap();
        t
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..rounds {
                let mut ping = wait(format!("ping/{i}"));
                assert!(ping.demand().unwrap().is_empty());
                ping.dispose().unwrap();
                let mut pong = token(format!("pong/{i}"));
                pong.withdraw().unwrap();
                pong.dispose().unwrap();
            }
        });
        for i in 0..rounds {
            let mut pong = wait(format!("pong/{i}"));
            let mut ping = token(format!("ping/{i}"));
            pong.demand().unwrap();
            pong.dispose().unwrap();
            ping.withdraw().unwrap();
            ping.dispose().unwrap();
        }
    });
    assert_eq!(pool.stats().demanded, 2 * rounds);
    assert_eq!(pool.names(), 0);
}

#[test]
fn a_second_offer_is_rejected_without_touching_the_first() {
    let env = common::env();
    let pool = &env.pool;
    let mut a = pool.declare("dup").unwrap();
    a.write(b"first").unwrap();
    a.seal().unwrap();
    a.offer().unwrap();
    let mut b = pool.declare("dup").unwrap();
    b.write(b"second").unwrap();
    b.seal().unwrap();
    let mut token = pool.declare("dup").unwrap();
    token.seal().unwrap();
    let before = (
        b.attributes().clone(),
        token.attributes().clone(),
        pool.stats(),
    );
    assert!(matches!(b.offer(), Err(Error::AlreadyOffered { .. })));
    assert!(matches!(token.offer(), Err(Error::AlreadyOffered { .. })));
    assert_eq!(b.state(), State::Sealed);
    assert_eq!(
        before,
        (
            b.attributes().clone(),
            token.attributes().clone(),
            pool.stats()
        )
    );
    assert!(b.buffer_mut().is_some(), "the data stays with the producer");
    let mut c = pool.declare("dup").unwrap();
    c.require().unwrap();
    assert_eq!(c.demand().unwrap().as_slice().unwrap(), b"first");
    assert_eq!(pool.stats().offered, 1);
    // Once the first is withdrawn, the second can be offered.
    a.withdraw().unwrap();
    b.offer().unwrap();
}

#[test]
fn a_second_offer_can_be_a_new_version() {
    let env = common::env_with(PoolConfig {
        duplicates: DuplicateOffers::Version,
        ..PoolConfig::default()
    });
    let pool = &env.pool;
    let mut a = pool.declare("ver").unwrap();
    a.write(b"v0").unwrap();
    a.seal().unwrap();
    a.offer().unwrap();
    let mut early = pool.declare("ver").unwrap();
    early.require().unwrap();

    let mut b = pool.declare("ver").unwrap();
    b.write(b"v1").unwrap();
    b.seal().unwrap();
    b.offer().unwrap();
    assert_eq!((a.version(), b.version()), (Some(0), Some(1)));

    let mut late = pool.declare("ver").unwrap();
    late.require().unwrap();
    assert_eq!(late.demand().unwrap().as_slice().unwrap(), b"v1");
    assert_eq!(early.demand().unwrap().as_slice().unwrap(), b"v0");
    assert_eq!(early.version(), Some(0));
}

#[test]
fn withdraw_waits_for_transfers_in_flight() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("inflight").unwrap();
    p.write(&[1; 64]).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = pool.declare("inflight").unwrap();
    c.require().unwrap();

    assert!(!p.try_withdraw().unwrap());
    assert!(matches!(
        p.withdraw_timeout(Duration::from_millis(20)),
        Err(Error::Timeout {
            op: Op::Withdraw,
            ..
        })
    ));
    assert_eq!(p.state(), State::Offered);
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            p.withdraw().unwrap();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(30));
        let demanded = Instant::now();
        c.demand().unwrap();
        assert!(w.join().unwrap() >= demanded);
    });
    // A retracted require does not hold anything up.
    let mut q = pool.declare("inflight2").unwrap();
    q.seal().unwrap();
    q.offer().unwrap();
    let mut r = pool.declare("inflight2").unwrap();
    r.require().unwrap();
    assert!(!q.try_withdraw().unwrap());
    r.retract().unwrap();
    assert!(q.try_withdraw().unwrap());
}

#[test]
fn lifetime_keeps_the_offer_available() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("lasting").unwrap();
    p.set_lifetime(Duration::from_millis(60)).unwrap();
    p.seal().unwrap();
    let start = Instant::now();
    p.offer().unwrap();
    assert!(!p.try_withdraw().unwrap());
    p.withdraw().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(60));
}

#[test]
fn attributes_must_agree_with_each_other_and_the_data() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("sizes").unwrap();
    p.set_size(16).unwrap();
    assert!(matches!(p.write(&[0; 8]), Err(Error::Inconsistent { .. })));
    p.set_element_type(cdo::ElementType::F32).unwrap();
    p.set_layout(Layout {
        shape: vec![3],
        order: Order::RowMajor,
        ..Layout::default()
    })
    .unwrap();
    assert!(matches!(p.seal(), Err(Error::Inconsistent { .. })));
    p.set_size(12).unwrap();
    p.seal().unwrap();
    assert!(matches!(p.offer(), Err(Error::Inconsistent { .. })));
    p.write(&[0; 12]).unwrap();
    p.offer().unwrap();
}

#[test]
fn names_are_checked_and_dropped_handles_clean_up() {
    let env = common::env();
    let pool = &env.pool;
    for bad in ["", "/a", "a/", "a//b", "a\nb"] {
        assert!(
            matches!(pool.declare(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    {
        let mut p = pool.declare("dropped").unwrap();
        p.write(&[1]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = pool.declare("dropped").unwrap();
        c.require().unwrap();
        let mut w = pool.declare("dropped/waiting").unwrap();
        w.require().unwrap();
    }
    assert_eq!(pool.names(), 0);
    let mut again = pool.declare("dropped").unwrap();
    again.write(&[2]).unwrap();
    again.seal().unwrap();
    again.offer().unwrap();
}

#[test]
fn many_threads_match_many_names() {
    let env = common::env();
    let pool = &env.pool;
    let threads = 4;
    let per = 500u64;
    let barrier = std::sync::Barrier::new(2 * threads as usize);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let mut p = pool.declare(&format!("mt/{t}/{i}")).unwrap();
                    p.write(&i.to_le_bytes()).unwrap();
                    p.seal().unwrap();
                    p.offer().unwrap();
                    p.withdraw().unwrap();
                    p.dispose().unwrap();
                }
            });
            s.spawn(move || {
                // Requires first: a withdraw only waits for consumers that
                // required before it.
                let mut handles: Vec<_> = (0..per)
                    .map(|i| {
                        let mut c = pool.declare(&format!("mt/{t}/{i}")).unwrap();
                        c.require().unwrap();
                        c
                    })
                    .collect();
                barrier.wait();
                for (i, c) in handles.iter_mut().enumerate() {
                    let d = c.demand().unwrap();
                    assert_eq!(d.as_slice().unwrap(), (i as u64).to_le_bytes());
                    c.dispose().unwrap();
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.offered, threads * per);
    assert_eq!(s.demanded, threads * per);
    assert_eq!(pool.names(), 0);
}

#[test]
fn writes_land_where_the_default_policy_says() {
    let mut env = common::env();
    let ssd = common::space_of(&env.pool, Tier::Ssd);
    assert!(env
        .pool
        .set_default_policy(&mamba::Policy::require(Tier::Gpu))
        .is_err());
    env.pool
        .set_default_policy(&mamba::Policy::require(Tier::Ssd))
        .unwrap();
    let mut p = env.pool.declare("on/ssd").unwrap();
    p.write(&[3; 100]).unwrap();
    assert_eq!(p.buffer_mut().unwrap().space(), ssd);
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = env.pool.declare("on/ssd").unwrap();
    c.want_place(Place::Tier(Tier::Ssd)).unwrap();
    c.require().unwrap();
    let d = c.demand().unwrap();
    assert_eq!(d.space(), Some(ssd));
    assert_eq!(env.pool.stats().bytes_copied, 0, "already on the SSD");
}

/// The data plane is a trait: a pool runs over any transport.
/// A transport that runs `before` on every hand-over, then hands over as
/// the local transport does (or fails with `before`'s error).
struct Hooked<F> {
    inner: cdo::LocalTransport,
    before: F,
}

impl<F> std::fmt::Debug for Hooked<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked").finish_non_exhaustive()
    }
}

impl<F> cdo::Transport for Hooked<F>
where
    F: Fn(&std::sync::Arc<str>) -> cdo::Result<()> + Send + Sync,
{
    fn deliver(
        &self,
        name: &std::sync::Arc<str>,
        offered: &cdo::Data,
        want: &cdo::Want<'_>,
    ) -> cdo::Result<cdo::Delivery> {
        (self.before)(name)?;
        self.inner.deliver(name, offered, want)
    }
}

/// An in-process pool whose hand-overs go through [`Hooked`] with
/// `before`, and the directory its memory lives in.
fn hooked_pool<F>(before: F) -> (cdo::Pool, tempfile::TempDir)
where
    F: Fn(&std::sync::Arc<str>) -> cdo::Result<()> + Send + Sync + 'static,
{
    let (mamba, dir) = common::mamba();
    let transport = Hooked {
        inner: cdo::LocalTransport::new(std::sync::Arc::clone(&mamba)),
        before,
    };
    let pool = cdo::Pool::with_parts(
        mamba,
        PoolConfig::default(),
        cdo::Schema::default(),
        Box::new(transport),
    );
    (pool, dir)
}

#[test]
fn a_custom_transport_carries_every_hand_over() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let (pool, _dir) = hooked_pool(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let mut p = pool.declare("via").unwrap();
    p.write(b"abc").unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    for _ in 0..3 {
        let mut c = pool.declare("via").unwrap();
        c.require().unwrap();
        assert_eq!(c.demand().unwrap().as_slice().unwrap(), b"abc");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn names_looked_up_once_declare_without_lookup() {
    let env = common::env();
    let pool = &env.pool;
    let name = pool.name("hot/path").unwrap();
    assert!(pool.name("bad//name").is_err());
    assert_eq!(name.as_str(), "hot/path");
    for round in 0..3u8 {
        let mut p = name.declare();
        p.write(&[round; 4]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = name.clone().declare();
        c.require().unwrap();
        assert_eq!(c.demand().unwrap().as_slice().unwrap(), [round; 4]);
        // The same object as one declared by its text.
        let mut by_text = pool.declare("hot/path").unwrap();
        by_text.require().unwrap();
        assert_eq!(by_text.demand().unwrap().as_slice().unwrap(), [round; 4]);
        c.dispose().unwrap();
        by_text.dispose().unwrap();
        p.withdraw().unwrap();
        p.dispose().unwrap();
        assert_eq!(pool.names(), 1, "the Name keeps the entry");
    }
    drop(name);
    assert_eq!(pool.names(), 0);
    assert_eq!(pool.stats().declared, 9);
}

#[test]
fn a_failed_demand_stays_required_and_keeps_its_offer_pinned() {
    use std::sync::Arc;

    // Fails the first hand-over, then delivers.
    let failed = AtomicBool::new(false);
    let (pool, _dir) = hooked_pool(move |name| {
        if failed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        Err(Error::Layout {
            name: Arc::clone(name),
            reason: "refused once".into(),
        })
    });
    // Matched at require (offer first), and waiting at require (offer
    // later): both keep the offer pinned through a failed demand.
    for offer_first in [true, false] {
        let mut p = pool.declare("fails/once").unwrap();
        p.write(b"xyz").unwrap();
        p.seal().unwrap();
        let mut c = pool.declare("fails/once").unwrap();
        if offer_first {
            p.offer().unwrap();
            c.require().unwrap();
        } else {
            c.require().unwrap();
            p.offer().unwrap();
        }
        if offer_first {
            assert!(matches!(c.demand(), Err(Error::Layout { .. })));
            assert_eq!(c.state(), State::Required);
            assert!(!p.try_withdraw().unwrap(), "the offer is still pinned");
        }
        assert_eq!(c.demand().unwrap().as_slice().unwrap(), b"xyz");
        assert!(p.try_withdraw().unwrap(), "the demand unpinned it");
        c.dispose().unwrap();
        p.dispose().unwrap();
    }
    assert_eq!(pool.names(), 0);
}

#[test]
fn offers_on_a_reused_offer_carry_their_own_attributes() {
    let env = common::env();
    let pool = &env.pool;
    // Each offer takes over the withdrawn one's allocation; its attributes
    // are its own, whether set, size-only or none.
    for (len, priority) in [
        (0, None),
        (8, None),
        (8, Some(cdo::Priority::Output)),
        (0, Some(cdo::Priority::Checkpoint)),
        (8, None),
        (0, None),
    ] {
        let mut p = pool.declare("reused/offer").unwrap();
        if let Some(priority) = priority {
            p.set_priority(priority).unwrap();
        }
        p.write(&vec![3; len]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = pool.declare("reused/offer").unwrap();
        c.require().unwrap();
        assert_eq!(c.demand().unwrap().len(), len);
        let got = c.offered_attributes().unwrap();
        assert_eq!(got.size, Some(len as u64));
        assert_eq!(got.priority, priority.unwrap_or_default());
        assert_eq!(p.offered_attributes().unwrap().size, Some(len as u64));
        assert_eq!(p.attributes().size, Some(len as u64));
        c.dispose().unwrap();
        p.withdraw().unwrap();
        p.dispose().unwrap();
        // The consumer's attributes outlive the next offer's reuse.
        assert_eq!(c.offered_attributes().unwrap().size, Some(len as u64));
    }
}

#[test]
fn a_withdrawal_lets_the_data_go_and_the_producer_still_tells_its_offer() {
    let env = common::env();
    let pool = &env.pool;
    let in_use = || -> usize { pool.mamba().stats().iter().map(|(_, s)| s.in_use).sum() };
    let before = in_use();
    for round in 0..3u64 {
        let mut p = pool.declare("let/go").unwrap();
        p.set_priority(cdo::Priority::Output).unwrap();
        p.write(&[9; 4096]).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        let mut c = pool.declare("let/go").unwrap();
        c.require().unwrap();
        let data = c.demand().unwrap();
        c.dispose().unwrap();
        p.withdraw().unwrap();
        assert_eq!(in_use(), before + 4096, "the consumer's view holds it");
        drop(data);
        drop(c);
        assert_eq!(in_use(), before, "withdrawn and unread: let go");
        // Version 0 each round: the name had no offer left.
        assert_eq!(p.version(), Some(0), "round {round}");
        let attrs = p.offered_attributes().unwrap();
        assert_eq!(attrs.size, Some(4096));
        assert_eq!(attrs.priority, cdo::Priority::Output);
        p.dispose().unwrap();
        assert_eq!(p.version(), None, "a disposed producer tells no offer");
        assert!(matches!(
            p.withdraw(),
            Err(Error::InvalidState { ref name, .. }) if &**name == "let/go"
        ));
    }
    assert_eq!(pool.names(), 0);
}
