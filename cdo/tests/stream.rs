//! Consumer groups.

mod common;

use cdo::Pool;
use std::collections::BTreeMap;
use std::time::Duration;

fn offer<'p>(pool: &'p Pool, name: &str, tag: &str) -> cdo::Cdo<'p> {
    let mut p = pool.declare(name).unwrap();
    p.set("app.step", 1u64).unwrap();
    p.set("app.label", tag).unwrap();
    p.write(name.as_bytes()).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    p
}

#[test]
fn every_group_sees_every_record_and_each_member_a_fair_share() {
    let env = common::env();
    let pool = &env.pool;
    let sel = "app.label == 'frame'";
    let a: Vec<_> = (0..3)
        .map(|_| pool.join("analysis", sel).unwrap())
        .collect();
    let viz = pool.join("viz", sel).unwrap();
    assert!(pool.join("viz", "*").is_err(), "a group keeps its selector");

    let producers: Vec<_> = (0..9)
        .map(|i| offer(pool, &format!("frames/{i}"), "frame"))
        .collect();
    let _other = offer(pool, "logs/0", "log");

    let mut seen = BTreeMap::new();
    for (m, member) in a.iter().enumerate() {
        while let Some(r) = member.try_next() {
            assert_eq!(r.data().as_slice().unwrap(), r.name().as_bytes());
            *seen.entry(r.name().to_owned()).or_insert(0) += 1;
            seen.entry(format!("member{m}"))
                .and_modify(|c| *c += 1)
                .or_insert(1);
            r.complete();
        }
    }
    for i in 0..9 {
        assert_eq!(seen[&format!("frames/{i}")], 1, "exactly once in the group");
    }
    for m in 0..3 {
        assert_eq!(seen[&format!("member{m}")], 3, "round robin");
    }
    let viz_count = std::iter::from_fn(|| viz.try_next())
        .map(|r| r.complete())
        .count();
    assert_eq!(viz_count, 9);
    for mut p in producers {
        assert!(p.try_withdraw().unwrap(), "every record completed");
    }
    assert_eq!(pool.stats().streamed, 18);
}

#[test]
fn records_of_a_dropped_member_or_record_go_to_another_member() {
    let env = common::env();
    let pool = &env.pool;
    let first = pool.join("workers", "*").unwrap();
    let second = pool.join("workers", "*").unwrap();
    let mut p0 = offer(pool, "job/0", "job");
    let mut p1 = offer(pool, "job/1", "job");
    // One each; the first member abandons its record.
    let r = first.try_next().expect("first gets job/0");
    assert_eq!(r.name(), "job/0");
    assert!(!p0.try_withdraw().unwrap(), "held by a member");
    drop(r);
    let names: Vec<String> = std::iter::from_fn(|| second.try_next())
        .map(|r| {
            let n = r.name().to_owned();
            r.complete();
            n
        })
        .collect();
    assert_eq!(names, ["job/1", "job/0"]);
    assert!(first.try_next().is_none());

    // Queued records of a member that leaves move on.
    let mut p2 = offer(pool, "job/2", "job");
    let mut p3 = offer(pool, "job/3", "job");
    drop(first);
    let r = second.next_timeout(Duration::from_secs(1)).unwrap();
    let s = second.next_timeout(Duration::from_secs(1)).unwrap();
    let mut got = [r.name(), s.name()];
    got.sort();
    assert_eq!(got, ["job/2", "job/3"]);
    r.complete();
    s.complete();
    // When the last member leaves, pending records are released.
    let mut p4 = offer(pool, "job/4", "job");
    assert!(!p4.try_withdraw().unwrap());
    drop(second);
    for p in [&mut p0, &mut p1, &mut p2, &mut p3, &mut p4] {
        assert!(p.try_withdraw().unwrap());
    }
}

#[test]
fn concurrent_members_process_each_record_exactly_once() {
    let env = common::env();
    let pool = &env.pool;
    let total = 300;
    let members: Vec<_> = (0..3)
        .map(|_| pool.join("crew", "name ~ '^rec/'").unwrap())
        .collect();
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (m, member) in members.into_iter().enumerate() {
            let done = &done;
            s.spawn(move || {
                let mut abandoned = 0;
                while let Some(r) = member.next_timeout(Duration::from_millis(300)) {
                    // Member 0 abandons every third record it gets.
                    if m == 0 && abandoned % 3 == 0 {
                        abandoned += 1;
                        drop(r);
                        continue;
                    }
                    abandoned += 1;
                    done.lock().unwrap().push(r.name().to_owned());
                    r.complete();
                }
            });
        }
        let mut producers = Vec::new();
        for i in 0..total {
            producers.push(offer(pool, &format!("rec/{i}"), "r"));
        }
        for mut p in producers {
            p.withdraw_timeout(Duration::from_secs(10)).unwrap();
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort();
    let before = done.len();
    done.dedup();
    assert_eq!((before, done.len()), (total, total));
}
