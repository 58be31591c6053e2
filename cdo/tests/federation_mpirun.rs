//! A real launcher end to end: Open MPI's `mpirun` starts one rank per
//! node, the nodes being network namespaces joined by veth links to a
//! bridge; each rank runs a pool manager whose federation takes its peers
//! from the launcher's job alone (`CDO_FEDERATION_PEERS=pmix`: a PMIx
//! put, fence and get; `dir:PATH`: a rendezvous directory, with rank and
//! size from Open MPI's variables), and listens on its node's address in
//! the job's subnet (`CDO_FEDERATION_LISTEN=net/24:port`, the same setting
//! on every node). Rank 0 offers objects, the other ranks demand them and
//! check every byte. A third job starts `cdo-pm` itself on every node.
//!
//! `mpirun` reaches a namespace through its remote launch agent
//! (`--mca plm_rsh_agent`): a script that runs the daemon's command inside
//! the namespace named by the host name, with a host name of its own (a
//! UTS namespace: the daemons' session directories differ). As root with
//! `ip`, `unshare` and `mpirun`; skipped with a printed reason otherwise.

mod ipc_common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::federation::launch::Launch;
use cdo::ipc::federation::{self, FederationConfig};
use cdo::ipc::manager::ManagerConfig;
use cdo::ipc::wire::Attributes;
use ipc_common::{client, eventually, manager_with, pattern};
use netns_cluster::{skip_reason, Cluster};
use nix::sys::socket::{getsockopt, sockopt};

const TOKEN: &str = "federation-mpirun-token";
/// The rank's role variable: the directory where ranks report.
const REPORTS: &str = "CDO_MPIRUN_TEST_REPORTS";
/// Ranks (nodes) in the job.
const RANKS: usize = 3;
/// Sizes of the objects rank 0 offers.
const SIZES: [usize; 3] = [1, 4096, (3 << 20) + 5];
/// How long the whole job may run before the test gives up on it.
const JOB_LIMIT: Duration = Duration::from_secs(300);

/// What the tests run besides `ip`: `(command, argument, package)`.
const TOOLS: &[(&str, &str, &str)] = &[
    ("unshare", "--version", "util-linux"),
    ("mpirun", "--version", "openmpi-bin"),
];

/// The remote launch agent: `agent [options] HOST COMMAND...` runs
/// COMMAND in namespace HOST, whose host name it sets to HOST.
const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/netns-agent.sh");

/// One rank of the job: this test binary run by `mpirun` with [`REPORTS`]
/// set. Rank 0 offers [`SIZES`] and waits for every other rank's report;
/// the others demand each object, check its bytes and report.
#[test]
fn mpirun_rank() {
    let Ok(reports) = std::env::var(REPORTS) else {
        return;
    };
    let reports = Path::new(&reports);
    let launch = Launch::from_env().unwrap().expect("started by a launcher");
    let pm = manager_with(ManagerConfig {
        token: Some(TOKEN.into()),
        ..ManagerConfig::default()
    });
    let mut config = FederationConfig::from_env(Some(TOKEN)).unwrap().unwrap();
    config.fabric.provider = Some("tcp".into());
    assert_eq!(config.peers.len(), RANKS - 1, "{:?}", config.peers);
    let fed = federation::start(config, &pm).unwrap();
    let mut c = client(&pm, &format!("rank-{}", launch.rank));
    if launch.rank == 0 {
        for (i, &n) in SIZES.iter().enumerate() {
            c.offer(
                &format!("obj/{i}"),
                &pattern(i as u64, n),
                Attributes::new(),
            )
            .unwrap();
        }
        // The other ranks read from this node: it stays up until they
        // have all reported.
        eventually("every consumer rank reports", || {
            (1..RANKS).all(|r| reports.join(format!("rank-{r}")).exists())
        });
    } else {
        for (i, &n) in SIZES.iter().enumerate() {
            let v = c
                .demand(&format!("obj/{i}"), Duration::from_secs(60))
                .unwrap();
            assert!(*v == pattern(i as u64, n)[..], "object {i} differs");
        }
        eventually("the reads are counted", || {
            fed.status().pulls == SIZES.len() as u64
        });
        let s = fed.status();
        let report = format!(
            "rank {} at {} pulled {} objects, {} bytes over {}",
            launch.rank,
            fed.local_addr(),
            s.pulls,
            s.pulled_bytes,
            s.fabric
        );
        println!("{report}");
        // Written aside and renamed: rank 0 never reads half a report.
        let aside = reports.join(format!(".rank-{}", launch.rank));
        std::fs::write(&aside, report).unwrap();
        std::fs::rename(&aside, reports.join(format!("rank-{}", launch.rank))).unwrap();
    }
}

/// The listening port of every rank (each in its own namespace).
fn port() -> u16 {
    7400 + (std::process::id() % 500) as u16
}

/// `RANKS` nodes whose bridge here is where `mpirun` listens for its
/// daemons.
fn cluster() -> Cluster {
    Cluster::with_host("cdompi", RANKS)
}

/// `mpirun` placing one rank on each node of `cluster`, with `env`
/// exported to the ranks; the program follows.
fn mpirun(cluster: &Cluster, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--host",
        &cluster.namespaces().join(","),
    ])
    .args(["-np", &RANKS.to_string()])
    .args(["--mca", "plm_rsh_agent", AGENT])
    .args(["--mca", "oob_tcp_if_include", &cluster.network()])
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.args(["-x", &format!("{k}={v}")]);
    }
    cmd
}

/// A running `mpirun`; stopped with SIGTERM (which ends its daemons and
/// ranks in the namespaces) when dropped.
struct Job(Child);

impl Job {
    /// Waits for the job to end, at most [`JOB_LIMIT`].
    fn wait(&mut self) -> ExitStatus {
        self.wait_until(Instant::now() + JOB_LIMIT)
            .unwrap_or_else(|| panic!("the mpirun job did not end within {JOB_LIMIT:?}"))
    }

    fn wait_until(&mut self, until: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if self.wait_until(Instant::now() + JOB_LIMIT).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the job with `peers` as the peer source; returns the consumer
/// ranks' reports.
fn run_job(peers: impl FnOnce(&Path) -> String) -> Vec<String> {
    let cluster = cluster();
    let work = tempfile::tempdir().unwrap();
    let reports = work.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let env = [
        (REPORTS, reports.display().to_string()),
        ("CDO_WORKFLOW_TOKEN", TOKEN.into()),
        (
            "CDO_FEDERATION_LISTEN",
            format!("{}:{}", cluster.network(), port()),
        ),
        ("CDO_FEDERATION_PEERS", peers(work.path())),
        ("CDO_REMOTE_TIMEOUT_MS", "20000".into()),
    ];
    let mut cmd = mpirun(&cluster, &env);
    cmd.arg(std::env::current_exe().unwrap()).args([
        "mpirun_rank",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]);
    let mut job = Job(cmd.spawn().expect("mpirun starts"));
    let status = job.wait();
    assert!(status.success(), "mpirun failed: {status}");
    let found: Vec<String> = (1..RANKS)
        .map(|r| std::fs::read_to_string(reports.join(format!("rank-{r}"))).unwrap())
        .collect();
    drop(job);
    cluster.remove();
    found
}

fn check(reports: &[String], source: &str) {
    let total: usize = SIZES.iter().sum();
    for (i, report) in reports.iter().enumerate() {
        let rank = i + 1;
        assert!(
            report.starts_with(&format!("rank {rank} at ")),
            "{source}: {report}"
        );
        assert!(
            report.contains(&format!(
                "pulled {} objects, {total} bytes over provider tcp",
                SIZES.len()
            )),
            "{source}: {report}"
        );
    }
}

#[test]
fn mpirun_ranks_in_namespaces_wire_up_by_pmix() {
    if let Some(reason) = skip_reason(TOOLS) {
        eprintln!("skipped: {reason}");
        return;
    }
    let reports = run_job(|_| "pmix".into());
    check(&reports, "pmix");
}

#[test]
fn mpirun_ranks_in_namespaces_wire_up_by_a_rendezvous_directory() {
    if let Some(reason) = skip_reason(TOOLS) {
        eprintln!("skipped: {reason}");
        return;
    }
    let reports = run_job(|work| format!("dir:{}", work.join("rendezvous").display()));
    check(&reports, "dir");
}

/// The documented command: `mpirun` starts one `cdo-pm` per node, which
/// take their peers from the launcher (`--federation-peers launcher`:
/// PMIx under `mpirun`) and listen on their node's address in the subnet.
/// Applications here (the managers' sockets are on the shared file
/// system) offer through rank 0's manager and demand through the others'.
#[test]
fn mpirun_starts_one_cdo_pm_per_namespace_federated_through_the_launcher() {
    if let Some(reason) = skip_reason(TOOLS) {
        eprintln!("skipped: {reason}");
        return;
    }
    let cluster = cluster();
    let env = [
        ("CDO_WORKFLOW_TOKEN", TOKEN.to_string()),
        ("RUST_LOG", "warn".into()),
    ];
    let mut cmd = mpirun(&cluster, &env);
    cmd.arg("--tag-output")
        .arg(env!("CARGO_BIN_EXE_cdo-pm"))
        .args([
            "--federation-listen",
            &format!("{}:{}", cluster.network(), port()),
        ])
        .args(["--federation-peers", "launcher", "--fabric-provider", "tcp"])
        .stdout(Stdio::piped());
    let mut job = Job(cmd.spawn().expect("mpirun starts"));
    // `[1,R]<stdout>:export CDO_POOL_SOCKET=PATH`, read on a thread so
    // that a job that prints nothing fails the test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(job.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut sockets = vec![None; RANKS];
    let until = Instant::now() + JOB_LIMIT;
    while sockets.iter().any(Option::is_none) {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("every manager prints its socket");
        let Some((tag, socket)) = line.split_once("<stdout>:export CDO_POOL_SOCKET=") else {
            continue;
        };
        let rank: usize = tag
            .rsplit(',')
            .next()
            .unwrap()
            .trim_end_matches(']')
            .parse()
            .unwrap();
        sockets[rank] = Some(socket.trim().to_string());
    }
    let connect = |rank: usize| {
        let ep = Endpoint {
            socket: sockets[rank].clone().unwrap().into(),
            token: TOKEN.into(),
        };
        Client::connect(&ClientConfig::new(ep, &format!("app-{rank}"))).unwrap()
    };
    let mut producer = connect(0);
    let data = pattern(9, (2 << 20) + 7);
    producer.offer("field", &data, Attributes::new()).unwrap();
    for rank in 1..RANKS {
        let v = connect(rank)
            .demand("field", Duration::from_secs(60))
            .unwrap();
        assert!(*v == data[..], "rank {rank}'s node got other bytes");
    }
    drop(producer);
    // Each manager stopped as on a cluster (SIGTERM): the job then ends on
    // its own, every rank having exited cleanly.
    for socket in sockets.iter().flatten() {
        let pid = listener_pid(socket);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
    let status = job.wait();
    assert!(status.success(), "mpirun failed: {status}");
    cluster.remove();
}

/// The process listening on the Unix socket `path` (its `SO_PEERCRED`).
fn listener_pid(path: &str) -> nix::unistd::Pid {
    let stream = UnixStream::connect(path).unwrap();
    let cred = getsockopt(&stream, sockopt::PeerCredentials).unwrap();
    nix::unistd::Pid::from_raw(cred.pid())
}
