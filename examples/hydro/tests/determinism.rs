//! Bit-for-bit reproducibility across workers, bands and restarts.

mod common;

use hydro::{Checkpoint, Params, ScopedThreads, Solver};

fn bits(planes: &[Vec<f64>]) -> Vec<u64> {
    planes.iter().flatten().map(|v| v.to_bits()).collect()
}

#[test]
fn workers_and_bands_do_not_change_the_result() {
    let base = common::blast(37, 30);
    let one = common::run(
        Params {
            nxystep: 37,
            ..base.clone()
        },
        1,
    );
    let two = common::run(
        Params {
            nxystep: 5,
            ..base.clone()
        },
        2,
    );
    let three = common::run(Params { nxystep: 1, ..base }, 3);
    let reference = bits(&common::planes(one.state()));
    assert_eq!(reference, bits(&common::planes(two.state())));
    assert_eq!(reference, bits(&common::planes(three.state())));
    assert_eq!(one.time().to_bits(), two.time().to_bits());
}

#[test]
fn restart_with_another_decomposition_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.chk");
    let mut base = common::blast(29, 24);
    base.ny = 23;
    base.boundary_left = hydro::Boundary::Periodic;
    base.boundary_right = hydro::Boundary::Periodic;
    base.boundary_up = hydro::Boundary::Outflow;
    let straight = common::run(base.clone(), 1);

    // Stop after an odd number of steps, so that the restart reuses the
    // stored dt, and resume with other bands and workers.
    let first = common::run(
        Params {
            nstepmax: 11,
            ..base.clone()
        },
        1,
    );
    first.checkpoint().write(&path).unwrap();
    let mut checkpoint = Checkpoint::read(&path).unwrap();
    assert_eq!(checkpoint.step, 11);
    checkpoint.params.nstepmax = 24;
    checkpoint.params.nxystep = 3;
    let mut resumed = Solver::from_checkpoint(checkpoint, ScopedThreads::new(2)).unwrap();
    resumed.run().unwrap();

    assert_eq!(resumed.step_count(), straight.step_count());
    assert_eq!(resumed.time().to_bits(), straight.time().to_bits());
    assert_eq!(
        bits(&common::planes(resumed.state())),
        bits(&common::planes(straight.state()))
    );
}

#[test]
fn restart_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let out = p("out");
    let args = |extra: &[&str]| common::cli(24, 20, &[&["--output", &out], extra].concat());
    let straight = p("straight.dump");
    let chk = p("mid.chk");
    let resumed = p("resumed.dump");
    hydro::run_app(&args(&["--nstepmax", "10", "--dump-final", &straight])).unwrap();
    hydro::run_app(&args(&[
        "--nstepmax",
        "5",
        "--checkpoint",
        &chk,
        "--nxystep",
        "7",
    ]))
    .unwrap();
    let summary = hydro::run_app(&args(&[
        "--restart",
        &chk,
        "--nstepmax",
        "10",
        "--workers",
        "2",
        "--nxystep",
        "2",
        "--dump-final",
        &resumed,
    ]))
    .unwrap();
    assert_eq!(summary.steps, 5);
    assert_eq!(summary.total_steps, 10);
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&resumed).unwrap()
    );
}

#[test]
fn restart_from_the_default_archive() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let out = p("out");
    let args = |extra: &[&str]| common::cli(20, 26, &[&["--output", &out], extra].concat());
    let straight = p("straight.dump");
    let resumed = p("resumed.dump");
    hydro::run_app(&args(&[
        "--nstepmax",
        "11",
        "--no-analyses",
        "--dump-final",
        &straight,
    ]))
    .unwrap();
    // Checkpoints at steps 3 and 6; the run stops at 7.
    let first = hydro::run_app(&args(&[
        "--nstepmax",
        "7",
        "--checkpoint-every",
        "3",
        "--no-analyses",
        "--workers",
        "1",
    ]))
    .unwrap();
    let written = &first.drive.outlet.as_ref().unwrap().checkpoints;
    assert_eq!(written.len(), 2);
    let summary = hydro::run_app(&args(&[
        "--restart",
        "--nstepmax",
        "11",
        "--workers",
        "2",
        "--nxystep",
        "3",
        "--dump-final",
        &resumed,
    ]))
    .unwrap();
    assert_eq!(summary.restarted_from.as_ref(), Some(&written[1]));
    assert_eq!(summary.steps, 5);
    assert_eq!(summary.total_steps, 11);
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&resumed).unwrap()
    );
    // Restarting when the directory holds no checkpoint is an error.
    let empty = p("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = hydro::run_app(&args(&["--restart", &empty])).unwrap_err();
    assert!(matches!(err, hydro::AppError::NoCheckpoint(_)), "{err}");
}

#[test]
fn archived_checkpoints_keep_their_attributes_and_restart_bit_identically() {
    use hydro::transit::checkpoint_name;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let args = |extra: &[&str]| common::cli(22, 18, extra);
    let (out, straight) = (p("out"), p("straight.dump"));
    hydro::run_app(&args(&[
        "--nstepmax",
        "11",
        "--output",
        &out,
        "--no-analyses",
        "--dump-final",
        &straight,
    ]))
    .unwrap();
    let mut entries = Vec::new();
    for transport in ["cdo", "channels"] {
        let archive_dir = p(&format!("archive-{transport}"));
        hydro::run_app(&args(&[
            "--nstepmax",
            "7",
            "--noutput",
            "3",
            "--checkpoint-every",
            "3",
            "--output",
            &p(transport),
            "--archive",
            &archive_dir,
            "--transport",
            transport,
        ]))
        .unwrap();
        let archive = cdo::archive::Archive::open(&archive_dir).unwrap();
        assert_eq!(
            archive.names().unwrap(),
            [checkpoint_name(3), checkpoint_name(6)],
            "{transport}"
        );
        let entry = archive.load(&checkpoint_name(6)).unwrap().unwrap();
        let chk = hydro::Checkpoint::from_bytes(&entry.data, std::path::Path::new("6")).unwrap();
        let attrs = &entry.attributes;
        assert_eq!(chk.step, 6);
        assert_eq!(attrs["priority"], cdo::Value::Str("checkpoint".into()));
        assert_eq!(attrs["hydro.step"], cdo::Value::UInt(6));
        assert_eq!(attrs["hydro.time"], cdo::Value::Float(chk.time));
        assert_eq!(attrs["hydro.dt"], cdo::Value::Float(chk.dt));
        assert_eq!(attrs["size"], cdo::Value::UInt(entry.data.len() as u64));
        entries.push(entry);

        let resumed = p(&format!("resumed-{transport}.dump"));
        let summary = hydro::run_app(&args(&[
            "--restart",
            "--archive",
            &archive_dir,
            "--output",
            &p(transport),
            "--nstepmax",
            "11",
            "--workers",
            "2",
            "--nxystep",
            "3",
            "--no-analyses",
            "--dump-final",
            &resumed,
        ]))
        .unwrap();
        assert_eq!((summary.steps, summary.total_steps), (5, 11), "{transport}");
        assert_eq!(
            summary.restarted_from,
            Some(archive.data_path(&checkpoint_name(6)).unwrap())
        );
        assert_eq!(
            std::fs::read(&straight).unwrap(),
            std::fs::read(&resumed).unwrap(),
            "{transport}"
        );
    }
    assert_eq!(
        entries[0], entries[1],
        "both transports archive the same entry"
    );
}

#[test]
fn the_numa_pool_gives_the_same_bits_as_plain_threads() {
    let params = Params {
        nxystep: 4,
        ..common::blast(33, 20)
    };
    let threads = common::run(params.clone(), 2);
    let locality = mamba::affinity::Locality::load(&mamba::Config::default()).unwrap();
    let exec = hydro::NumaBands::new(&locality, 2).unwrap();
    let mut numa = Solver::new(params, exec).unwrap();
    numa.run().unwrap();
    assert_eq!(
        bits(&common::planes(threads.state())),
        bits(&common::planes(numa.state()))
    );
}
