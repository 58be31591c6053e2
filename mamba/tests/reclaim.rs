//! A capped pool takes back the blocks other threads cache before it
//! reports `OutOfCapacity`, even from threads that sleep.

mod common;

use mamba::{Error, Mamba, Policy, Tier};
use std::sync::mpsc;

const MIB: usize = 1 << 20;

fn capped() -> Mamba {
    Mamba::discover(&common::simulated(
        "chunk_size = \"256KiB\"\n[caps]\nhbm = \"1MiB\"",
    ))
    .unwrap()
}

/// Runs `fill` on another thread, which then keeps its cache and sleeps
/// until the returned sender is dropped.
fn sleeper(
    fill: impl FnOnce() + Send + 'static,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (done_tx, done_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        fill();
        done_tx.send(()).unwrap();
        // Sleeps with its cache full until told to go.
        let _ = stop_rx.recv();
    });
    done_rx.recv().expect("the filling thread finished");
    (stop_tx, thread)
}

/// Allocates blocks of `size` in HBM until it is full; frees them all.
fn fill_and_free(m: &Mamba, size: usize) -> usize {
    let hbm = Policy::require(Tier::Hbm);
    let mut live = Vec::new();
    loop {
        match m.allocate(size, 8, &hbm) {
            Ok(a) => live.push(a),
            Err(Error::OutOfCapacity { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let n = live.len();
    drop(live);
    n
}

#[test]
fn blocks_cached_by_a_sleeping_thread_serve_another_one() {
    // Small blocks (kept in size-class stacks and slabs), then large ones
    // (kept whole in the thread's large-block cache).
    for size in [1000, 64 << 10] {
        let m = std::sync::Arc::new(capped());
        let filler = std::sync::Arc::clone(&m);
        let (stop, thread) = sleeper(move || {
            assert!(
                fill_and_free(&filler, size) > 4,
                "{size}: several blocks fit"
            );
        });
        let hbm = m.pool_of(Tier::Hbm).unwrap();
        let st = hbm.stats();
        assert_eq!(st.in_use, 0);
        assert!(
            st.reserved + (64 << 10) > MIB,
            "{size}: the cap is reached: {st:?}"
        );
        // Another size class, and the whole capacity in one block.
        let whole = hbm
            .allocate(MIB, 4096)
            .unwrap_or_else(|e| panic!("{size}: the sleeper's blocks were not taken back: {e}"));
        assert_eq!(whole.len(), MIB);
        drop(whole);
        drop(stop);
        thread.join().unwrap();
    }
}

#[test]
fn reclaiming_while_threads_allocate_loses_and_duplicates_nothing() {
    let m = capped();
    let hbm = m.pool_of(Tier::Hbm).unwrap();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..3usize)
            .map(|t| {
                let m = &m;
                s.spawn(move || {
                    let policy = Policy::prefer(Tier::Hbm).or(Tier::Dram);
                    let mut live = Vec::new();
                    for i in 0..3000usize {
                        let size = 16 + (i * 7919 + t * 104_729) % (48 << 10);
                        let mut a = m.allocate(size, 8, &policy).unwrap();
                        a.as_mut_slice().unwrap()[0] = t as u8;
                        live.push(a);
                        if live.len() > 20 {
                            let a = live.swap_remove(i % live.len());
                            assert_eq!(a.as_slice().unwrap()[0], t as u8, "a block was shared");
                        }
                    }
                })
            })
            .collect();
        // Meanwhile take the caches back, again and again.
        for _ in 0..200 {
            hbm.trim();
            std::thread::yield_now();
        }
        // Joined by hand: the end of a scope does not wait for the
        // threads' thread-local destructors, which give their caches back.
        for w in workers {
            w.join().unwrap();
        }
    });
    let st = hbm.stats();
    assert_eq!((st.in_use, st.allocations), (0, st.frees), "{st:?}");
    hbm.trim();
    assert_eq!(hbm.stats().reserved, 0);
}
