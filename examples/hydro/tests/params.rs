//! Input-file and command-line parsing.

use clap::Parser;
use hydro::{Boundary, Cli, Limiter, ParamError, Params, TestCase};

const HYDROC_INPUT: &str = "\
&RUN
tend=20000
noutput=100
nstepmax=500
dtoutput=0.1,
/
&MESH
nx=500
ny=400
nxystep=64
dx=0.05
boundary_left=1
boundary_right=2
boundary_down=3
boundary_up=3
/
&HYDRO
courant_factor=0.8
niter_riemann=10
iorder=2
scheme=muscl
slope_type=2
testcase=0
/
";

#[test]
fn reads_hydroc_input_files() {
    let p = Params::from_input(HYDROC_INPUT).unwrap();
    assert_eq!((p.nx, p.ny, p.nxystep), (500, 400, 64));
    assert_eq!((p.tend, p.dx, p.dtoutput), (20000.0, 0.05, 0.1));
    assert_eq!((p.nstepmax, p.noutput), (500, 100));
    assert_eq!(p.courant_factor, 0.8);
    assert_eq!(p.slope_type, Limiter::MonotonizedCentral);
    assert_eq!(p.boundary_left, Boundary::Reflective);
    assert_eq!(p.boundary_right, Boundary::Outflow);
    assert_eq!(p.boundary_down, Boundary::Periodic);
    assert_eq!(p.testcase, TestCase::PointBlast);
}

#[test]
fn parameters_round_trip_through_the_input_format() {
    let mut p = Params::from_input(HYDROC_INPUT).unwrap();
    p.testcase = TestCase::Sod;
    p.dx = 1.0 / 3.0;
    assert_eq!(Params::from_input(&p.to_input()).unwrap(), p);
}

#[test]
fn bad_input_gives_typed_errors() {
    let err = |text: &str| Params::from_input(text).unwrap_err();
    assert!(matches!(
        err("nx=500\nfoo=1\n"),
        ParamError::UnknownKey { line: 2, .. }
    ));
    assert!(matches!(
        err("nx=500\nnx 500\n"),
        ParamError::Syntax { line: 2, .. }
    ));
    assert!(matches!(
        err("slope_type=1.5\n"),
        ParamError::BadValue { .. }
    ));
    assert!(matches!(err("nx=2.5\n"), ParamError::BadValue { .. }));
    assert!(matches!(err("testcase=3\n"), ParamError::BadValue { .. }));
    assert!(matches!(err("nx=five\n"), ParamError::BadValue { .. }));
    assert!(matches!(err("nx=-3\n"), ParamError::BadValue { .. }));
    assert!(matches!(
        err("boundary_left=7\n"),
        ParamError::BadValue { .. }
    ));
    assert!(matches!(err("scheme=plmde\n"), ParamError::BadValue { .. }));
    assert!(matches!(err("nx=0\n"), ParamError::Invalid(_)));
    assert!(matches!(
        err("courant_factor=1.5\n"),
        ParamError::Invalid(_)
    ));
    assert!(matches!(err("boundary_left=3\n"), ParamError::Invalid(_)));
    let e = err("dx=abc\n");
    assert!(e.to_string().contains("dx"), "{e}");
}

/// A HydroC input file as HydroC's own distribution writes them: a title
/// line, comments, keys of other HydroC versions, Fortran-style numbers.
const HYDROC_FILE: &str = "\
This namelist contains various input parameters for HYDRO runs

&RUN
tend=2.
#tend=3
# noutput=1
nstepmax=200
dtoutput=.05 ! every twentieth of the run
# chkpt=1
/

&MESH
nx=100.
ny=80
nxystep=16
tilesize=60
numa=0
morton=0
prt=0
dx=1.d-2
boundary_left=1.
boundary_right=2
boundary_down=1
boundary_up=1
testcase=1
/

&HYDRO
courant_factor=0.8
niter_riemann=10
slope_type=1.
scheme='muscl'
/
";

#[test]
fn reads_hydroc_files_unchanged_and_warns_of_ignored_keys() {
    let mut p = Params::default();
    let warnings = p.apply_input(HYDROC_FILE).unwrap();
    p.validate().unwrap();
    assert_eq!((p.nx, p.ny, p.nxystep, p.nstepmax), (100, 80, 16, 200));
    assert_eq!((p.tend, p.dx, p.dtoutput), (2.0, 0.01, 0.05));
    assert_eq!(p.slope_type, Limiter::Minmod);
    assert_eq!(p.boundary_left, Boundary::Reflective);
    assert_eq!(p.boundary_right, Boundary::Outflow);
    assert_eq!(p.testcase, TestCase::CornerBlast);
    let skipped: Vec<(usize, &str)> = warnings.iter().map(|w| (w.line, w.key.as_str())).collect();
    assert_eq!(
        skipped,
        [(16, "tilesize"), (17, "numa"), (18, "morton"), (19, "prt")]
    );
    assert!(
        warnings[0].to_string().contains("tilesize"),
        "{}",
        warnings[0]
    );
    // The same file through the command line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.nml");
    std::fs::write(&path, HYDROC_FILE).unwrap();
    let cli = Cli::try_parse_from(["hydro", "-i", path.to_str().unwrap()]).unwrap();
    assert_eq!(cli.params().unwrap(), p);
}

#[test]
fn hydroc_test_cases_are_testcase_values() {
    let case = |v: &str| {
        Params::from_input(&format!("testcase={v}\n"))
            .unwrap()
            .testcase
    };
    assert_eq!(case("0"), TestCase::PointBlast);
    assert_eq!(case("1"), TestCase::CornerBlast);
    assert_eq!(case("2."), TestCase::PlaneBlast);
    assert_eq!(case("sod"), TestCase::Sod);
    let energy = |testcase: TestCase| {
        let p = Params {
            nx: 6,
            ny: 4,
            dx: 0.5,
            testcase,
            ..Params::default()
        };
        let state = hydro::init::initial_state(&p);
        let e = state.interior(hydro::state::IP);
        // Cells holding the blast's energy 1/dx^2 = 4, as (i, j).
        let hot: Vec<(usize, usize)> = (0..p.ny)
            .flat_map(|j| (0..p.nx).map(move |i| (i, j)))
            .filter(|&(i, j)| e[j * p.nx + i] == 4.0)
            .collect();
        hot
    };
    assert_eq!(energy(TestCase::PointBlast), [(3, 2)]);
    assert_eq!(energy(TestCase::CornerBlast), [(0, 0)]);
    assert_eq!(
        energy(TestCase::PlaneBlast),
        [(0, 0), (0, 1), (0, 2), (0, 3)]
    );
}

#[test]
fn flags_override_the_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.nml");
    std::fs::write(&path, HYDROC_INPUT).unwrap();
    let path = path.to_str().unwrap();
    let cli = Cli::try_parse_from([
        "hydro",
        "-i",
        path,
        "--nx",
        "64",
        "--slope-type",
        "1",
        "--testcase",
        "sod",
        "--boundary-up",
        "3",
        "--workers",
        "2",
    ])
    .unwrap();
    let p = cli.params().unwrap();
    assert_eq!((p.nx, p.ny), (64, 400));
    assert_eq!(p.slope_type, Limiter::Minmod);
    assert_eq!(p.testcase, TestCase::Sod);
    assert_eq!(cli.workers, 2);

    assert!(Cli::try_parse_from(["hydro", "--boundary-left", "9"]).is_err());
    let missing = Cli::try_parse_from(["hydro", "-i", "/nonexistent/input"]).unwrap();
    assert!(matches!(missing.params(), Err(ParamError::Io { .. })));
}

#[test]
fn shipped_input_file_parses() {
    let p = Params::from_input(include_str!("../inputs/blast-500.nml")).unwrap();
    assert_eq!((p.nx, p.ny, p.nstepmax), (500, 500, 100));
    let main = Params::from_input(include_str!("../inputs/main.nml")).unwrap();
    assert_eq!((main.nx, main.ny, main.tend), (200, 200, 0.6));
    assert!(main.dtoutput > 0.0, "the main job runs the analyses");
    let corner = Params::from_input(include_str!("../inputs/hydroc-corner.nml")).unwrap();
    assert_eq!(corner.testcase, TestCase::CornerBlast);
}

#[test]
fn bad_checkpoints_give_typed_errors() {
    use hydro::{Checkpoint, CheckpointError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-checkpoint");
    std::fs::write(&path, HYDROC_INPUT).unwrap();
    assert!(matches!(
        Checkpoint::read(&path),
        Err(CheckpointError::BadMagic(_))
    ));
    let missing = dir.path().join("missing");
    assert!(matches!(
        Checkpoint::read(&missing),
        Err(CheckpointError::Io { .. })
    ));
    // A truncated checkpoint fails with an I/O error, not a panic.
    let solver = hydro::Solver::new(
        Params {
            nx: 6,
            ny: 5,
            ..Params::default()
        },
        hydro::ScopedThreads::new(1),
    )
    .unwrap();
    let full = dir.path().join("full");
    solver.checkpoint().write(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    assert!(matches!(
        Checkpoint::read(&path),
        Err(CheckpointError::Io { .. })
    ));
    // Ghost cells are not stored; everything else round-trips.
    let (read, written) = (Checkpoint::read(&full).unwrap(), solver.checkpoint());
    assert_eq!(read.params, written.params);
    assert_eq!(
        (read.step, read.time, read.dt),
        (written.step, written.time, written.dt)
    );
    for var in 0..hydro::NVAR {
        assert_eq!(read.state.interior(var), written.state.interior(var));
    }
}

#[test]
fn consumer_agents_name_a_role_and_a_command() {
    use hydro::cli::{ConsumerAgent, ConsumerRole};
    let cli = Cli::try_parse_from([
        "hydro",
        "--consumer-agent",
        "render=ip netns exec n2  env CDO_POOL_SOCKET=/s",
        "--consumer-agent",
        "Stats=srun -N1",
    ])
    .unwrap();
    assert_eq!(
        cli.consumer_agent,
        [
            ConsumerAgent {
                role: ConsumerRole::Render,
                command: ["ip", "netns", "exec", "n2", "env", "CDO_POOL_SOCKET=/s"]
                    .map(String::from)
                    .to_vec(),
            },
            ConsumerAgent {
                role: ConsumerRole::Stats,
                command: vec!["srun".into(), "-N1".into()],
            },
        ]
    );
    for bad in ["render", "render=", "render=  ", "painter=srun"] {
        assert!(
            Cli::try_parse_from(["hydro", "--consumer-agent", bad]).is_err(),
            "{bad}"
        );
    }
}
