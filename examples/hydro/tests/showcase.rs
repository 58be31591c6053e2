//! The main job as a newcomer sees it, shrunk: its input file (HydroC's
//! format) runs, the frames and the statistics plot come out with their
//! sizes, and the summary tells the physics: conservation to rounding and a
//! shock radius close to Sedov's, for the centred and the corner blast.

use std::path::Path;

use clap::Parser;
use hydro::analysis::plot::STATS_SIZE;
use hydro::analysis::render::frame_size;
use hydro::analysis::{density_png, STATS_PNG};
use hydro::physics::SUMMARY_TXT;
use hydro::{AppReport, Cli};

/// Size (width, height) of the PNG at `path`.
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let info = decoder.read_info().unwrap();
    let info = info.info();
    (info.width, info.height)
}

/// Runs the shipped input file `input` on an `n x n` grid of the unit
/// square until `tend`, a record every `dt`, into `out`.
fn run(input: &str, n: usize, tend: f64, dt: f64, out: &Path) -> AppReport {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("inputs")
        .join(input);
    let (n, dx, tend, dt) = (
        n.to_string(),
        (1.0 / n as f64).to_string(),
        tend.to_string(),
        dt.to_string(),
    );
    let cli = Cli::try_parse_from([
        "hydro",
        "-i",
        input.to_str().unwrap(),
        "--nx",
        &n,
        "--ny",
        &n,
        "--dx",
        &dx,
        "--tend",
        &tend,
        "--dtoutput",
        &dt,
        "--workers",
        "2",
        "--output",
        out.to_str().unwrap(),
    ])
    .unwrap();
    hydro::run_app(&cli).unwrap()
}

#[test]
fn main_job_draws_its_figures_and_tells_the_physics() {
    let dir = tempfile::tempdir().unwrap();
    let report = run("main.nml", 64, 0.12, 0.04, dir.path());

    let outlet = report.drive.outlet.as_ref().unwrap();
    let steps = &outlet.stats_steps;
    assert_eq!(steps.len(), 4, "records at t = 0, 0.04, 0.08, 0.12");
    for step in steps {
        let frame = dir.path().join(density_png(*step));
        assert_eq!(png_size(&frame), frame_size(64, 64), "step {step}");
    }
    assert_eq!(png_size(&dir.path().join(STATS_PNG)), STATS_SIZE);

    let physics = report.physics.as_ref().unwrap();
    assert!(physics.mass_drift.abs() < 1e-13, "{physics}");
    assert!(physics.energy_drift.abs() < 1e-13, "{physics}");
    let shock = physics.shock.unwrap();
    assert!(
        (shock.time - report.time).abs() < 1e-12,
        "the last record is free"
    );
    assert!(shock.relative_error().abs() < 0.1, "{physics}");
    assert!((shock.reference.xi0 - 1.004).abs() < 1e-3);

    let summary = std::fs::read_to_string(dir.path().join(SUMMARY_TXT)).unwrap();
    for line in [
        "final time",
        "physics          point blast in the middle",
        "  conservation   mass drift",
        "  shock radius   ",
        "  walls          ",
        "files            ",
    ] {
        assert!(
            summary.lines().any(|l| l.starts_with(line)),
            "no {line:?} in\n{summary}"
        );
    }
    assert!(summary.contains(&format!("{}", dir.path().display())));
}

#[test]
fn hydroc_corner_blast_converges_to_sedov() {
    // The measured front (the foot of the smeared shock) runs ahead of
    // Sedov's by a cell or two: less so on a finer grid.
    let error = |n: usize| {
        let dir = tempfile::tempdir().unwrap();
        let report = run("hydroc-corner.nml", n, 0.1, 0.05, dir.path());
        let physics = report.physics.unwrap();
        assert!(physics.mass_drift.abs() < 1e-13, "{physics}");
        let shock = physics.shock.unwrap();
        assert_eq!(
            shock.reference.energy, 4.0,
            "the blast and its three images"
        );
        shock.relative_error()
    };
    let (coarse, fine) = (error(32), error(64));
    assert!(0.0 < fine && fine < coarse, "{coarse} {fine}");
    assert!(fine < 0.12, "{fine}");
}
