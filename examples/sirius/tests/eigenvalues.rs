//! Eigenvalues of the SCF loop's last step against the exact Kronecker-sum
//! values, over k-points, cutoffs and potentials.

use clap::Parser;
use sirius::{run_app, Cli, Report};

fn run(args: &[&str]) -> Report {
    let cli = Cli::try_parse_from(
        ["sirius", "--device", "cpu"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .unwrap();
    run_app(&cli).unwrap()
}

fn assert_exact(report: &Report, bound: f64) {
    for k in &report.kpoints {
        assert_eq!(k.eigenvalues.len(), k.exact.len());
        assert!(
            k.eigenvalues.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            k.eigenvalues
        );
        for (e, x) in k.eigenvalues.iter().zip(&k.exact) {
            assert!((e - x).abs() < bound, "k {:?}: {e} vs exact {x}", k.k);
        }
    }
}

#[test]
fn several_kpoints_with_their_own_cutoffs() {
    let report = run(&[
        "--kpoints",
        "0,0,0;0.25,-0.1,0.3;0.5,0.5,0.5",
        "--nmax",
        "2,3,2",
        "--v",
        "0.05,0.03,0.02",
        "--bands",
        "6",
        "--iterations",
        "2",
    ]);
    assert_eq!(report.kpoints.len(), 3);
    assert_eq!(report.kpoints[1].nmax, 3);
    assert_eq!(report.iterations, 2);
    assert_exact(&report, 1e-8);
}

#[test]
fn strong_and_negative_potentials_and_another_cell() {
    for v in ["0.4,-0.3,0.25", "-0.2,-0.2,-0.2", "0,0,0"] {
        let report = run(&[
            "--a",
            "6.5",
            "--kpoints",
            "0.1,0.2,0.3;0,0,0.5",
            "--nmax",
            "2",
            "--v",
            v,
            "--bands",
            "5",
            "--iterations",
            "2",
        ]);
        assert_exact(&report, 1e-8);
        // The exact values really depend on the potential.
        if v == "0,0,0" {
            let k = &report.kpoints[1];
            assert!(k.exact[0] > 0.0, "{:?}", k.exact);
        }
    }
}

#[test]
fn symmetric_kpoints_whose_bands_cut_through_split_shells() {
    // At the zone centre and corner the start plane waves are symmetric:
    // the solver must still find states of every symmetry.
    let report = run(&[
        "--kpoints",
        "0,0,0;0.5,0.5,0.5",
        "--nmax",
        "2",
        "--bands",
        "4",
        "--iterations",
        "2",
    ]);
    assert_exact(&report, 1e-8);
}

#[test]
fn the_tolerance_bounds_the_residuals() {
    let args = |tol: &'static str| {
        [
            "--kpoints",
            "0.3,0.1,0",
            "--nmax",
            "3",
            "--v",
            "0.3,0.2,0.1",
            "--bands",
            "4",
            "--iterations",
            "1",
            "--tolerance",
            tol,
        ]
    };
    let tight = run(&args("1e-9"));
    let loose = run(&args("1e-2"));
    let (t, l) = (&tight.kpoints[0], &loose.kpoints[0]);
    assert!(t.residual <= 1e-9, "{}", t.residual);
    assert!(l.residual <= 1e-2, "{}", l.residual);
    assert!(
        l.residual > 1e-9,
        "a loose tolerance stops earlier: {}",
        l.residual
    );
    assert!(l.davidson_iterations < t.davidson_iterations);
    assert_exact(&tight, 1e-10);
    // Eigenvalue errors of a Rayleigh-Ritz pair are bounded by the
    // squared residual over the gap: still small, but not 1e-10.
    assert_exact(&loose, 1e-2);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let cli = Cli::try_parse_from(["sirius", "--nmax", "1", "--bands", "28"]).unwrap();
    let err = run_app(&cli).unwrap_err();
    assert!(err.to_string().contains("28 bands"), "{err}");
    let cli = Cli::try_parse_from(["sirius", "--device", "sim", "--device-budget", "64"]).unwrap();
    let err = run_app(&cli).unwrap_err();
    assert!(err.to_string().contains("budget"), "{err}");
}
