//! `hydro --pool-manager`: the analyses as separate processes fed through a
//! pool manager give the in-process run's results bit for bit, the renderer
//! processes share the records through a consumer group (each record
//! rendered exactly once), clean up after themselves, and a killed consumer
//! fails the solver instead of hanging it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hydro::analysis::{density_png, STATS_CSV};

const HYDRO: &str = env!("CARGO_BIN_EXE_hydro");

/// `hydro` on a small grid writing into `out`, with `extra` flags; the pool
/// manager's directory (if it starts one) goes under `runtime`.
fn hydro(out: &Path, runtime: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(HYDRO);
    command
        .args(["--nx", "32", "--ny", "24", "--dx", "0.03", "--tend", "1e9"])
        .args([
            "--workers",
            "2",
            "--executor",
            "threads",
            "--renderers",
            "2",
        ])
        .args(["--consumer-timeout", "20"])
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
        ipc_summary.contains("after the consumers left: 1 clients, 0 objects"),
        "{ipc_summary}"
    );
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
        summary.contains("after the consumers left: 1 clients, 0 objects"),
        "{summary}"
    );
}

/// The consumer processes `hydro` (pid `parent`) started.
fn consumers_of(parent: u32) -> Vec<u32> {
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
        if ppid == Some(parent) && cmdline.windows(10).any(|w| w == b"--consumer") {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_killed_consumer_fails_the_solver() {
    // The statistics process starts first, then the renderers.
    killing_a_consumer_fails_the_solver(|pids| *pids.iter().min().unwrap(), "stats");
    killing_a_consumer_fails_the_solver(|pids| *pids.iter().max().unwrap(), "render");
}

/// Kills the consumer `pick` chooses mid-run; the solver must fail
/// promptly, naming the `label`led process, and clean up.
fn killing_a_consumer_fails_the_solver(pick: fn(&[u32]) -> u32, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let mut command = hydro(
        dir.path(),
        runtime.path(),
        &["--nstepmax", "1000000", "--noutput", "1", "--pool-manager"],
    );
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let consumers = loop {
        let found = consumers_of(child.id());
        if found.len() == 3 {
            break found;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no consumers");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let records flow, then kill one.
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-KILL", &pick(&consumers).to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "failed promptly, not at a timeout"
    );
    assert!(
        stderr.contains(&format!("consumer process {label}")),
        "{stderr}"
    );
    assert!(
        consumers
            .iter()
            .all(|&pid| !Path::new(&format!("/proc/{pid}")).exists()),
        "the other consumers are gone too"
    );
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0);
}

#[test]
fn checkpoints_are_refused_with_the_pool_manager() {
    let dir = tempfile::tempdir().unwrap();
    let output = hydro(
        dir.path(),
        dir.path(),
        &[
            "--nstepmax",
            "2",
            "--checkpoint-every",
            "1",
            "--pool-manager",
        ],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not carry checkpoints"), "{stderr}");
}
