//! `hydro --pool-manager`: the analyses as separate processes fed through a
//! pool manager give the in-process run's results bit for bit, the renderer
//! processes share the records through a consumer group (each record
//! rendered exactly once), an archive process archives the checkpoints as
//! the in-process archiver does (a restart from them continues bit for
//! bit), the processes clean up after themselves, and a killed consumer
//! fails the solver instead of hanging it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hydro::analysis::{density_png, STATS_CSV};
use hydro::transit::checkpoint_name;

const HYDRO: &str = env!("CARGO_BIN_EXE_hydro");

/// `hydro` on a small grid writing into `out`, with `extra` flags; the pool
/// manager's directory (if it starts one) goes under `runtime`.
fn hydro(out: &Path, runtime: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(HYDRO);
    command
        .args(common::SMALL_PROCESS_RUN)
        .arg("--output")
        .arg(out)
        .args(extra)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("CDO_POOL_SOCKET")
        .env("RUST_LOG", "warn");
    command
}

/// Runs `command`, asserting success, and returns its summary.
fn summary(mut command: Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(status.success(), "hydro failed: {status}\n{stderr}");
    String::from_utf8(stdout).unwrap()
}

/// The summary line starting with `key`.
fn line<'a>(summary: &'a str, key: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line in\n{summary}"))
}

/// The renderers' shares, from the `analyses` line.
fn shares(summary: &str) -> Vec<u64> {
    let analyses = line(summary, "analyses");
    let after = analyses.split("renderers ").nth(1).unwrap();
    let list = after.split(',').next().unwrap();
    list.split('+').map(|n| n.parse().unwrap()).collect()
}

/// Asserts that the two renderers of the run of `summary` each rendered
/// some of its `records` and together as many as there are (that none was
/// rendered twice follows once every record's image is there).
fn assert_shared(summary: &str, records: u64) {
    let shares = shares(summary);
    assert_eq!(shares.len(), 2, "{summary}");
    assert!(shares.iter().all(|&n| n > 0), "both render: {shares:?}");
    assert_eq!(shares.iter().sum::<u64>(), records, "{shares:?}");
}

#[test]
fn separate_processes_give_the_in_process_results() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let (ipc, local) = (dir.path().join("ipc"), dir.path().join("local"));
    let run = |out: &Path, extra: &[&str]| {
        let dump = out.join("final.dump").display().to_string();
        let mut args = vec!["--nstepmax", "12", "--noutput", "2", "--ring", "2"];
        args.extend_from_slice(&["--dump-final", &dump]);
        args.extend_from_slice(extra);
        std::fs::create_dir_all(out).unwrap();
        summary(hydro(out, runtime.path(), &args))
    };
    let ipc_summary = run(&ipc, &["--pool-manager"]);
    let local_summary = run(&local, &[]);

    let transport = line(&ipc_summary, "transport");
    assert!(
        transport.contains("pool manager (started at"),
        "{transport}"
    );
    assert!(
        transport.contains("3 consumer processes: 37 objects offered, 37 withdrawn"),
        "7 records of 5 objects and 2 end markers, all withdrawn: {transport}"
    );
    assert!(
        ipc_summary.contains("pool after the consumers left: 0 objects;"),
        "{ipc_summary}"
    );
    // The same objects went through the pool in process, to threads.
    let local_transport = line(&local_summary, "transport");
    assert!(
        local_transport
            .contains("cdo pool in process, 3 consumer threads: 37 objects offered, 37 withdrawn"),
        "{local_transport}"
    );
    // One code path: the pools counted the same offers and views.
    let left = "  pool after the consumers left: 0 objects;";
    assert_eq!(line(&local_summary, left), line(&ipc_summary, left));
    // Every step's image is compared below.
    assert_shared(&ipc_summary, 7);
    assert!(line(&ipc_summary, "analyses").starts_with("analyses         7 records"));

    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(read(&ipc, STATS_CSV), read(&local, STATS_CSV), "stats.csv");
    assert_eq!(read(&ipc, "final.dump"), read(&local, "final.dump"));
    for step in (0..=12).step_by(2) {
        let png = density_png(step);
        assert_eq!(read(&ipc, &png), read(&local, &png), "{png}");
    }
    assert_eq!(line(&ipc_summary, "steps"), line(&local_summary, "steps"));
    assert_eq!(
        std::fs::read_dir(runtime.path()).unwrap().count(),
        0,
        "the manager's socket directory is removed"
    );
}

#[test]
fn a_run_joins_the_pool_manager_named_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let manager = cdo::ipc::manager::start(cdo::ipc::manager::ManagerConfig {
        runtime_dir: Some(runtime.path().into()),
        ..Default::default()
    })
    .unwrap();
    let mut command = hydro(
        dir.path(),
        runtime.path(),
        &["--nstepmax", "4", "--noutput", "2", "--pool-manager"],
    );
    command.envs(manager.endpoint().env());
    let summary = summary(command);
    let socket = manager.endpoint().socket.display().to_string();
    assert!(
        line(&summary, "transport").contains(&format!("pool manager (joined at {socket})")),
        "{summary}"
    );
    assert_shared(&summary, 3);
    for step in [0, 2, 4] {
        assert!(dir.path().join(density_png(step)).exists(), "step {step}");
    }
    assert_eq!(manager.stats().objects, 0, "everything withdrawn");
    manager.shutdown();
}

#[test]
fn two_renderers_render_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    // 41 records, up to 8 out at once: more than a member's window.
    let args = ["--nstepmax", "40", "--noutput", "1", "--ring", "8"];
    let mut extra = args.to_vec();
    extra.push("--pool-manager");
    let summary = summary(hydro(dir.path(), runtime.path(), &extra));
    assert_shared(&summary, 41);
    let mut images: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("density_"))
        .collect();
    images.sort();
    let every: Vec<String> = (0..=40).map(density_png).collect();
    assert_eq!(images, every);
    // The statistics process, a group of its own, saw every record too.
    let csv = std::fs::read_to_string(dir.path().join(STATS_CSV)).unwrap();
    assert_eq!(csv.lines().count(), 1 + 41, "a header and a row a record");
    assert!(
        summary.contains("pool after the consumers left: 0 objects;"),
        "{summary}"
    );
}

/// The consumer processes `hydro` (pid `parent`) started, with their
/// roles.
fn consumers_of(parent: u32) -> Vec<(u32, String)> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mut args = cmdline.split(|&b| b == 0);
        let role = args.find(|&a| a == b"--consumer").and_then(|_| args.next());
        if let (Some(role), Some(true)) = (role, ppid.map(|p| p == parent)) {
            pids.push((pid, String::from_utf8_lossy(role).into_owned()));
        }
    }
    pids
}

#[test]
fn a_killed_consumer_fails_the_solver() {
    killing_a_consumer_fails_the_solver(&[], "stats");
    killing_a_consumer_fails_the_solver(&[], "render");
    // Checkpoints on: one more process, the archive process.
    killing_a_consumer_fails_the_solver(&["--checkpoint-every", "1"], "archive");
}

/// Kills a consumer process of role `role` mid-run (of a run with `extra`
/// flags); the solver must fail promptly, naming that process, and clean
/// up.
fn killing_a_consumer_fails_the_solver(extra: &[&str], role: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive").display().to_string();
    let mut args = vec!["--nstepmax", "1000000", "--noutput", "1", "--pool-manager"];
    args.extend_from_slice(&["--archive", &archive]);
    args.extend_from_slice(extra);
    // The statistics process, two renderers, and the archive process when
    // checkpoints are on.
    let processes = 3 + usize::from(extra.contains(&"--checkpoint-every"));
    let mut command = hydro(dir.path(), runtime.path(), &args);
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let consumers = loop {
        let found = consumers_of(child.id());
        if found.len() == processes {
            break found;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no consumers");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let records flow, then kill one.
    std::thread::sleep(Duration::from_millis(300));
    let (victim, _) = consumers.iter().find(|(_, r)| r == role).unwrap();
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    // The death was noticed, not a wait that ran out.
    assert!(
        stderr.contains(&format!("consumer process {role}")) && !stderr.contains("did not come"),
        "{stderr}"
    );
    assert!(
        consumers
            .iter()
            .all(|(pid, _)| !Path::new(&format!("/proc/{pid}")).exists()),
        "the other consumers are gone too"
    );
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0);
}

#[test]
fn the_archive_process_archives_the_checkpoints_and_a_restart_continues_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let run = |out: &str, extra: &[&str]| {
        std::fs::create_dir_all(out).unwrap();
        summary(hydro(Path::new(out), runtime.path(), extra))
    };
    let straight = p("straight.dump");
    let args = [
        "--nstepmax",
        "11",
        "--no-analyses",
        "--dump-final",
        &straight,
    ];
    run(&p("straight"), &args);

    // The same checkpoints, archived in process and by the archive process.
    let (local, ipc) = (p("archive-local"), p("archive-ipc"));
    let args = [
        "--nstepmax",
        "7",
        "--noutput",
        "3",
        "--checkpoint-every",
        "3",
    ];
    run(&p("local"), &[&args[..], &["--archive", &local]].concat());
    let ipc_summary = run(
        &p("ipc"),
        &[&args[..], &["--archive", &ipc, "--pool-manager"]].concat(),
    );
    let analyses = line(&ipc_summary, "analyses");
    assert!(analyses.contains("2 checkpoints"), "{analyses}");
    let transport = line(&ipc_summary, "transport");
    assert!(
        transport.contains("4 consumer processes: 24 objects offered, 24 withdrawn"),
        "4 records of 5 objects, 2 end markers, 2 checkpoints: {transport}"
    );
    assert!(
        ipc_summary.contains("pool after the consumers left: 0 objects;"),
        "{ipc_summary}"
    );
    let open = |dir: &str| cdo::archive::Archive::open(dir).unwrap();
    let (local, ipc) = (open(&local), open(&ipc));
    let names = [checkpoint_name(3), checkpoint_name(6)];
    assert_eq!(local.names().unwrap(), names);
    assert_eq!(ipc.names().unwrap(), names);
    for name in &names {
        let entry = ipc.load(name).unwrap().unwrap();
        assert_eq!(Some(&entry), local.load(name).unwrap().as_ref(), "{name}");
        assert_eq!(
            entry.attributes["priority"],
            cdo::Value::Str("checkpoint".into())
        );
    }

    // A restart from the archive process's newest checkpoint, its own
    // checkpoints archived by an archive process alone (no analyses).
    let resumed = p("resumed.dump");
    let restart = [
        "--restart",
        "--archive",
        &p("archive-ipc"),
        "--nstepmax",
        "11",
        "--no-analyses",
        "--checkpoint-every",
        "4",
        "--pool-manager",
        "--dump-final",
        &resumed,
    ];
    let restart_summary = run(&p("resumed"), &restart);
    let from = ipc.data_path(&checkpoint_name(6)).unwrap();
    assert!(
        restart_summary.contains(&format!("restarted from   {}", from.display())),
        "{restart_summary}"
    );
    let transport = line(&restart_summary, "transport");
    assert!(transport.contains("1 consumer processes"), "{transport}");
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&resumed).unwrap(),
        "the restart continues bit for bit"
    );
    assert_eq!(
        ipc.names().unwrap(),
        [3, 6, 8].map(checkpoint_name),
        "step 8 archived in the restart"
    );
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0);
}

#[test]
fn a_failing_consumer_fails_the_solver_in_either_deployment() {
    for deployment in [&[][..], &["--pool-manager"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tempfile::tempdir().unwrap();
        // The first frame cannot be written: a directory has its name.
        std::fs::create_dir(dir.path().join(density_png(0))).unwrap();
        let mut args = vec!["--nstepmax", "4", "--noutput", "1"];
        args.extend_from_slice(deployment);
        let output = hydro(dir.path(), runtime.path(), &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{deployment:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: ", density_png(0))),
            "{deployment:?}: the renderer's error is told: {stderr}"
        );
        assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0);
    }
}
