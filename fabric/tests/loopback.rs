//! Two transports in one process over 127.0.0.1: the producer exposes a
//! region and serves on its own thread, the consumer pulls and checks bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use mamba_fabric::{
    Config, FabricError, PathChoice, Pipeline, PullPath, RegionDescriptor, Transport,
};

fn config(provider: &str, path: PathChoice) -> Config {
    Config {
        provider: Some(provider.into()),
        node: Some("127.0.0.1".into()),
        path,
        pipeline: Pipeline {
            chunk_size: 256 << 10,
            depth: 4,
        },
        timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

/// A pattern that differs between offsets and between regions.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Runs a producer exposing one region per entry of `sizes` on its own
/// thread, serving until `body` returns; `body` gets the descriptors.
fn with_producer<R>(
    cfg: Config,
    sizes: &[usize],
    body: impl FnOnce(Vec<RegionDescriptor>) -> R,
) -> R {
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let producer = s.spawn(|| -> mamba_fabric::Result<()> {
            let t = Transport::open(cfg)?;
            let bufs: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| pattern(n, i as u8))
                .collect();
            let exposed = bufs
                .iter()
                .map(|b| t.expose(b))
                .collect::<mamba_fabric::Result<Vec<_>>>()?;
            tx.send(
                exposed
                    .iter()
                    .map(|e| e.descriptor().clone())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            t.serve(|| stop.load(Ordering::Acquire))
        });
        // Stops the producer also when `body` panics, so the scope can end.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let guard = StopOnDrop(&stop);
        let descriptors = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the producer publishes its regions");
        let out = body(descriptors);
        drop(guard);
        producer
            .join()
            .unwrap()
            .expect("the producer serves without error");
        out
    })
}

fn pull_sizes(provider: &str, path: PathChoice) {
    let sizes = [1, 4096, (1 << 20) + 3, 64 << 20];
    let cfg = config(provider, path);
    with_producer(cfg.clone(), &sizes, |descriptors| {
        let t = Transport::open(cfg).unwrap();
        let expected_path = if path == PathChoice::Messages {
            PullPath::Messages
        } else {
            PullPath::Rma
        };
        assert_eq!(t.choice().path, expected_path, "{}", t.choice());
        for (i, (d, &n)) in descriptors.iter().zip(&sizes).enumerate() {
            // Through the text form, as a side channel carries it.
            let d: RegionDescriptor = d.to_string().parse().unwrap();
            let remote = t.connect(&d).unwrap();
            let mut dst = vec![0u8; n];
            t.read_into(remote, &mut dst).unwrap();
            assert!(
                dst == pattern(n, i as u8),
                "{n} bytes over {provider} ({path:?}) differ"
            );
        }
    });
}

#[test]
fn rma_reads_of_every_size_over_tcp() {
    pull_sizes("tcp", PathChoice::Rma);
}

#[test]
fn rma_reads_of_every_size_over_sockets() {
    pull_sizes("sockets", PathChoice::Rma);
}

#[test]
fn the_forced_message_path_delivers_the_same_bytes_and_says_so() {
    pull_sizes("tcp", PathChoice::Messages);
}

#[test]
fn hot_destinations_hit_the_registration_cache() {
    let cfg = config("tcp", PathChoice::Rma);
    with_producer(cfg.clone(), &[1 << 20], |d| {
        let t = Transport::open(cfg).unwrap();
        let remote = t.connect(&d[0]).unwrap();
        let mut dst = vec![0u8; 1 << 20];
        for round in 0..3 {
            dst.fill(0);
            t.read_into(remote, &mut dst).unwrap();
            assert!(dst == pattern(1 << 20, 0), "round {round}");
        }
        let s = t.cache_stats();
        assert_eq!((s.misses, s.hits, s.entries), (1, 2, 1), "{s:?}");
        // A sub-range of a cached buffer is a hit too.
        let half = remote.slice(0, 1 << 19).unwrap();
        t.read_into(half, &mut dst[..1 << 19]).unwrap();
        assert_eq!(t.cache_stats().hits, 3);
        t.forget_buffer(&dst);
        assert_eq!(t.cache_stats().entries, 0);
    });
}

#[test]
fn an_unknown_provider_is_a_typed_error_naming_the_available_ones() {
    let err = Transport::open(config("no-such-provider", PathChoice::Auto))
        .err()
        .expect("no such provider");
    match &err {
        FabricError::ProviderUnavailable {
            requested,
            available,
            ..
        } => {
            assert_eq!(requested, "no-such-provider");
            assert!(available.contains("tcp"), "{err}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn reads_beyond_a_region_fail_with_typed_errors() {
    for path in [PathChoice::Rma, PathChoice::Messages] {
        let cfg = config("tcp", path);
        with_producer(cfg.clone(), &[4096], |d| {
            let t = Transport::open(cfg.clone()).unwrap();
            let remote = t.connect(&d[0]).unwrap();
            // Checked locally.
            assert!(matches!(
                remote.slice(4000, 100),
                Err(FabricError::OutOfRange { .. })
            ));
            let mut dst = vec![0u8; 8192];
            assert!(matches!(
                t.read_into(remote, &mut dst),
                Err(FabricError::LengthMismatch { .. })
            ));
            // A forged region the producer must refuse.
            let forged = mamba_fabric::RemoteRegion {
                len: 8192,
                ..remote
            };
            let err = t
                .read_into(forged, &mut dst)
                .expect_err("beyond the region");
            assert!(
                matches!(
                    err,
                    FabricError::Completion { .. } | FabricError::Refused(_)
                ),
                "{path:?}: {err}"
            );
            // The producer still serves (tcp drops the offending connection,
            // so a fresh consumer asks).
            let t = Transport::open(cfg).unwrap();
            let remote = t.connect(&d[0]).unwrap();
            let mut ok = vec![0u8; 4096];
            t.read_into(remote, &mut ok).unwrap();
            assert!(ok == pattern(4096, 0));
        });
    }
}

#[test]
fn a_dead_peer_or_a_closed_endpoint_gives_typed_errors_within_the_timeout() {
    let mut cfg = config("tcp", PathChoice::Rma);
    cfg.timeout = Duration::from_secs(3);
    // The producer closes before the consumer reads.
    let descriptor = {
        let t = Transport::open(cfg.clone()).unwrap();
        let buf = pattern(4096, 1);
        let e = t.expose(&buf).unwrap();
        e.descriptor().clone()
    };
    let t = Transport::open(cfg).unwrap();
    let remote = t.connect(&descriptor).unwrap();
    let mut dst = vec![0u8; 4096];
    let err = t.read_into(remote, &mut dst).expect_err("the peer is gone");
    assert!(
        matches!(
            err,
            FabricError::Completion { .. } | FabricError::Timeout { .. } | FabricError::Call { .. }
        ),
        "{err}"
    );
    t.close();
    assert!(matches!(
        t.read_into(remote, &mut dst),
        Err(FabricError::Closed)
    ));
    assert!(matches!(t.serve(|| true), Err(FabricError::Closed)));
}

#[test]
fn an_owned_region_is_readable_while_its_guard_lives_and_keeps_its_owner() {
    let cfg = config("tcp", PathChoice::Rma);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = Transport::open(cfg.clone()).unwrap();
            // The guard moves into a table, as a server keeps its regions.
            let mut table = std::collections::HashMap::new();
            let held = t.expose_owned(pattern(300_000, 9)).unwrap();
            tx.send(held.descriptor().clone()).unwrap();
            assert_eq!(held.owner().len(), 300_000);
            table.insert("a", held);
            t.serve(|| stop.load(Ordering::Acquire)).unwrap();
            drop(table);
        });
        let d = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let t = Transport::open(cfg.clone()).unwrap();
        let mut dst = vec![0u8; 300_000];
        t.read_into(t.connect(&d).unwrap(), &mut dst).unwrap();
        stop.store(true, Ordering::Release);
        assert!(dst == pattern(300_000, 9));
    });
}
