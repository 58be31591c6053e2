//! Bad input gets a typed error and leaves every pool intact.

mod common;

use common::{simulated, this_machine};
use mamba::{Config, Error, Mamba, Policy, Tier};

#[test]
fn sizes_and_alignments() {
    let m = this_machine();
    let pool = m.pool_of(Tier::Dram).unwrap();
    let before = pool.stats();
    assert!(matches!(pool.allocate(0, 8), Err(Error::ZeroSize)));
    assert!(matches!(
        pool.allocate(8, 3),
        Err(Error::BadAlignment { align: 3 })
    ));
    assert!(matches!(
        pool.allocate(8, 0),
        Err(Error::BadAlignment { align: 0 })
    ));
    assert!(matches!(
        pool.allocate(8, mamba::pool::MAX_ALIGN * 2),
        Err(Error::AlignmentTooLarge { .. })
    ));
    assert!(matches!(
        pool.allocate(usize::MAX, 8),
        Err(Error::SizeTooLarge { .. })
    ));
    let absurd = pool.allocate(1 << 60, 8).unwrap_err();
    assert!(matches!(absurd, Error::OutOfCapacity { .. }), "{absurd}");
    assert!(
        absurd.to_string().contains("dram0"),
        "the message names the space: {absurd}"
    );
    assert_eq!(pool.stats(), before, "errors change nothing: {absurd}");
    // The pool still works.
    drop(pool.allocate(100, 8).unwrap());
}

#[test]
fn unknown_tiers_spaces_and_nodes() {
    let m = this_machine();
    assert!(matches!(
        m.allocate(8, 8, &Policy::require(Tier::Hbm)),
        Err(Error::UnknownTier(Tier::Hbm))
    ));
    assert!(matches!(
        m.pool(mamba::SpaceId(42)),
        Err(Error::UnknownSpace(_))
    ));
    assert!(matches!(
        m.allocate(8, 8, &Policy::require(Tier::Dram).near_node(77)),
        Err(Error::UnknownNumaNode(77))
    ));
    assert!(matches!(
        m.allocate(8, 8, &Policy::prefer(Tier::Hbm).or(Tier::Nvdimm)),
        Err(Error::NoSpace { .. })
    ));
}

#[test]
fn a_gpu_request_without_a_gpu_is_an_error_or_falls_back_by_policy() {
    if mamba::provider::cuda_devices().is_ok_and(|d| !d.is_empty()) {
        eprintln!("skipped: this machine has a CUDA GPU");
        return;
    }
    let m = Mamba::discover(&Config::default()).unwrap();
    assert!(matches!(
        m.allocate(8, 8, &Policy::require(Tier::Gpu)),
        Err(Error::UnknownTier(Tier::Gpu))
    ));
    let a = m
        .allocate(8, 8, &Policy::prefer(Tier::Gpu).or(Tier::Dram))
        .unwrap();
    assert_eq!(a.tier(), Tier::Dram);
}

#[test]
fn ssd_directories_missing_read_only_and_capped() {
    let missing =
        Config::from_toml_str("gpu = false\n[[ssd]]\npath = \"/nonexistent/mamba\"").unwrap();
    let err = Mamba::discover(&missing).unwrap_err();
    assert!(matches!(err, Error::BadDirectory { .. }), "{err}");

    // /proc is not writable, even for root.
    let read_only = Config::from_toml_str("gpu = false\n[[ssd]]\npath = \"/proc\"").unwrap();
    let err = Mamba::discover(&read_only).unwrap_err();
    assert!(err.to_string().contains("not writable"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut c = simulated("chunk_size = \"1MiB\"");
    c.ssd.push(mamba::config::DirectoryTier {
        path: dir.path().into(),
        capacity: Some(mamba::ByteSize(3 << 20)),
        bandwidth_mib_s: None,
        latency_ns: None,
    });
    let m = Mamba::discover(&c).unwrap();
    let ssd = m.pool_of(Tier::Ssd).unwrap();
    assert!(ssd.info().persistent);
    let mut a = ssd.allocate(2 << 20, 4096).unwrap();
    a.as_mut_slice().unwrap().fill(7);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() >= 1,
        "backed by files"
    );
    let err = ssd.allocate(2 << 20, 4096).unwrap_err();
    assert!(matches!(err, Error::OutOfCapacity { .. }), "{err}");
    let b = m
        .allocate(2 << 20, 4096, &Policy::prefer(Tier::Ssd).or(Tier::Nvdimm))
        .unwrap();
    assert_eq!(b.tier(), Tier::Nvdimm, "falls back by policy");
    drop((a, b));
    ssd.trim();
    assert_eq!(ssd.stats().reserved, 0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files removed when freed"
    );
}

#[test]
fn bad_topologies_and_configurations() {
    let mut c = Config {
        gpu: false,
        ..Config::default()
    };
    c.topology = Some("/nonexistent.xml".into());
    assert!(matches!(Mamba::discover(&c), Err(Error::Topology(_))));
    let mut c = Config {
        gpu: false,
        ..Config::default()
    };
    c.synthetic = Some("banana:3".into());
    assert!(matches!(Mamba::discover(&c), Err(Error::Topology(_))));
    let c = Config::from_toml_str("gpu = false\n[[space]]\nname = \"hbm9\"\ncapacity = 1").unwrap();
    assert!(matches!(Mamba::discover(&c), Err(Error::Config(_))));
}

#[test]
fn malformed_topology_xml_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.xml");
    std::fs::write(&path, "<topology version=\"2.0\"><object type=").unwrap();
    let c = Config {
        gpu: false,
        topology: Some(path),
        ..Config::default()
    };
    assert!(matches!(Mamba::discover(&c), Err(Error::Topology(_))));
}
