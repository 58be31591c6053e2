//! In-transit analyses: every record reaches the statistics exactly once and
//! exactly one renderer, the CSV matches the final state, the images decode,
//! and the analyses do not change the result, over both transports (the
//! CDO pool also accounts for every object it was given).

mod common;

use std::path::Path;

use hydro::analysis::colormap::ColorTable;
use hydro::analysis::plot::STATS_SIZE;
use hydro::analysis::render::{density_fraction, frame_size};
use hydro::analysis::{density_png, fields_vtk, STATS_CSV, STATS_PNG};
use hydro::dump::Dump;
use hydro::physics::SUMMARY_TXT;
use hydro::{AppReport, Cli};

const NX: usize = 32;
const NY: usize = 24;
const DX: f64 = 0.03;
/// The `--transport` values; every test runs over each.
const TRANSPORTS: [&str; 2] = ["cdo", "channels"];

fn run(out: &Path, extra: &[&str]) -> AppReport {
    use clap::Parser;
    let out = out.display().to_string();
    let (nx, ny, dx) = (NX.to_string(), NY.to_string(), DX.to_string());
    let mut args = vec![
        "hydro",
        "--nx",
        &nx,
        "--ny",
        &ny,
        "--dx",
        &dx,
        "--tend",
        "1e9",
        "--courant-factor",
        "0.8",
        "--slope-type",
        "2",
        "--nxystep",
        "5",
        "--output",
        &out,
    ];
    args.extend_from_slice(extra);
    hydro::run_app(&Cli::try_parse_from(args).unwrap()).unwrap()
}

/// [`run`] for 12 steps on 2 workers.
fn run12(out: &Path, extra: &[&str]) -> AppReport {
    let mut args = vec!["--nstepmax", "12", "--workers", "2"];
    args.extend_from_slice(extra);
    run(out, &args)
}

/// The PNG at `path`: width, height and RGB bytes.
fn decode(path: &Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[test]
fn every_record_reaches_the_statistics_and_one_renderer() {
    for transport in TRANSPORTS {
        every_record_reaches_the_statistics_and_one_renderer_over(transport);
    }
}

fn every_record_reaches_the_statistics_and_one_renderer_over(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("final.dump");
    let dump_arg = dump.display().to_string();
    let report = run12(
        dir.path(),
        &[
            "--noutput",
            "3",
            "--renderers",
            "3",
            "--ring",
            "2",
            "--vtk",
            "--dump-final",
            &dump_arg,
            "--transport",
            transport,
        ],
    );
    let expected: Vec<u64> = vec![0, 3, 6, 9, 12];
    let outlet = report.drive.outlet.as_ref().unwrap();
    assert_eq!(outlet.records, expected.len() as u64);
    assert_eq!(outlet.bytes, (expected.len() * 4 * NX * NY * 8) as u64);
    assert_eq!(outlet.stats_steps, expected);
    assert_eq!(outlet.rendered_steps.len(), 3);
    let mut rendered: Vec<u64> = outlet.rendered_steps.iter().flatten().copied().collect();
    rendered.sort_unstable();
    assert_eq!(rendered, expected, "each record to exactly one renderer");
    let shares: Vec<usize> = outlet.rendered_steps.iter().map(Vec::len).collect();
    match &outlet.transit {
        // Channels deal records round-robin.
        None => assert_eq!(shares, [2, 2, 1], "round-robin shares"),
        // The pool hands each record to the least loaded member, the fields
        // viewed in place by the statistics consumer and one renderer.
        Some(transit) => {
            assert_eq!(transport, "cdo");
            assert!(transit.manager.is_none(), "the pool is in process");
            assert_eq!(transit.consumers, 4, "statistics and 3 renderers");
            assert_eq!(
                transit.offered,
                expected.len() as u64 * 5 + 3,
                "4 fields + index a record, an end marker a renderer"
            );
            assert_eq!(transit.withdrawn, transit.offered, "every object withdrawn");
            assert_eq!(transit.left.objects, 0, "the consumers withdrew theirs");
            assert!(
                transit.left.view_bytes >= 2 * outlet.bytes,
                "{} bytes viewed",
                transit.left.view_bytes
            );
        }
    }
    for step in &expected {
        assert!(dir.path().join(density_png(*step)).is_file());
        let vtk = std::fs::read(dir.path().join(fields_vtk(*step))).unwrap();
        assert!(vtk.starts_with(b"# vtk DataFile Version 3.0\n"));
        let title = format!("hydro step {step} ");
        assert!(vtk[27..].starts_with(title.as_bytes()));
        assert!(
            vtk.windows(10).any(|w| w == b"rho[M/L^2]"),
            "units in the title"
        );
        assert!(vtk.len() > 4 * NX * NY * 8);
    }

    // The CSV: a header and a row per record; the last row's integrals are
    // those of the final state.
    let csv = std::fs::read_to_string(dir.path().join(STATS_CSV)).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..4], ["step", "time", "mass", "energy"]);
    assert_eq!(header.last(), Some(&"blast_area"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), expected.len());
    let last = rows.last().unwrap();
    let final_state = Dump::read(&dump).unwrap();
    assert_eq!(last[0], 12.0);
    assert_eq!(last[1].to_bits(), final_state.header.t.to_bits());
    let total = |plane: &[f64]| {
        plane
            .chunks_exact(NX)
            .map(|r| r.iter().sum::<f64>())
            .sum::<f64>()
            * (DX * DX)
    };
    assert_eq!(last[2].to_bits(), total(&final_state.planes[0]).to_bits());
    assert_eq!(last[3].to_bits(), total(&final_state.planes[3]).to_bits());
    let max_rho = final_state.planes[0]
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max);
    let max_col = header.iter().position(|h| *h == "max_rho").unwrap();
    assert_eq!(last[max_col], max_rho);
    // The area the blast swept: its cell at first, then growing.
    let area = |r: &Vec<f64>| r[header.len() - 1];
    assert_eq!(area(&rows[0]), DX * DX);
    assert!(
        area(last) > area(&rows[1]),
        "{} {}",
        area(last),
        area(&rows[1])
    );

    // The images decode, with the expected sizes, and the frames share one
    // colour scale: the gas at rest (density 1) has the same colour early
    // and late, though the peak density grows in between.
    let (w, h, _) = decode(&dir.path().join(STATS_PNG));
    assert_eq!((w as u32, h as u32), STATS_SIZE);
    let at_rest = ColorTable::default().get(density_fraction(1.0));
    let count = |px: &[u8]| px.chunks_exact(3).filter(|c| *c == at_rest).count();
    for step in [0, 12] {
        let (w, h, px) = decode(&dir.path().join(density_png(step)));
        assert_eq!((w as u32, h as u32), frame_size(NX, NY));
        assert!(count(&px) > w * h / 10, "step {step}: {}", count(&px));
    }
    let summary = std::fs::read_to_string(dir.path().join(SUMMARY_TXT)).unwrap();
    assert_eq!(summary, report.to_string());
}

#[test]
fn analyses_do_not_change_the_result() {
    for transport in TRANSPORTS {
        analyses_do_not_change_the_result_over(transport);
    }
}

fn analyses_do_not_change_the_result_over(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.dump").display().to_string();
    let without = dir.path().join("without.dump").display().to_string();
    let on = run12(
        &dir.path().join("on"),
        &[
            "--noutput",
            "2",
            "--dump-final",
            &with,
            "--transport",
            transport,
        ],
    );
    let off = run12(
        &dir.path().join("off"),
        &["--no-analyses", "--dump-final", &without],
    );
    assert!(on.drive.outlet.is_some());
    assert!(off.drive.outlet.is_none());
    assert!(
        !dir.path().join("off").exists(),
        "no analyses, no output files"
    );
    assert_eq!(
        std::fs::read(with).unwrap(),
        std::fs::read(without).unwrap()
    );
}

#[test]
fn a_restart_keeps_the_statistics_up_to_its_checkpoint() {
    for transport in TRANSPORTS {
        a_restart_keeps_the_statistics_up_to_its_checkpoint_over(transport);
    }
}

fn a_restart_keeps_the_statistics_up_to_its_checkpoint_over(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        dir.path(),
        &[
            "--nstepmax",
            "7",
            "--noutput",
            "2",
            "--checkpoint-every",
            "3",
            "--transport",
            transport,
        ],
    );
    let first_outlet = first.drive.outlet.as_ref().unwrap();
    assert_eq!(first_outlet.checkpoints.len(), 2, "steps 3 and 6");
    assert_eq!(first.drive.outlet.unwrap().stats_steps, [0, 2, 4, 6, 7]);
    let resumed = run(
        dir.path(),
        &[
            "--restart",
            "--nstepmax",
            "10",
            "--noutput",
            "2",
            "--workers",
            "1",
            "--transport",
            transport,
        ],
    );
    assert_eq!(resumed.drive.outlet.unwrap().stats_steps, [8, 10]);
    let csv = std::fs::read_to_string(dir.path().join(STATS_CSV)).unwrap();
    let steps: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["0", "2", "4", "6", "8", "10"]);
}
