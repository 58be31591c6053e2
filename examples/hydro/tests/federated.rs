//! hydro across nodes: the solver on one node, its statistics process on a
//! second, its two renderers and its checkpoint archiver on a third
//! (`--consumer-agent`), each node
//! with its own pool manager, the three federated, give the single-process
//! run's files byte for byte. The nodes are three network namespaces
//! joined by a bridge (as root with `ip`; skipped with a printed reason
//! otherwise); each node's manager is this test binary re-executed in its
//! namespace.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cdo::ipc::federation::{self, FederationConfig};
use cdo::ipc::manager::{self, ManagerConfig};
use hydro::analysis::{density_png, STATS_CSV};
use hydro::transit::checkpoint_name;
use netns_cluster::{skip_reason, Cluster};

const HYDRO: &str = env!("CARGO_BIN_EXE_hydro");
const TOKEN: &str = "hydro-federated-token";
/// Set in a re-executed node: `listen|peer,peer|nodes|runtime dir`.
const NODE_ENV: &str = "HYDRO_TEST_NODE";
const NODES: usize = 3;

/// A node's pool manager and federation, when this binary is re-executed
/// with [`NODE_ENV`] (otherwise nothing): prints its socket once linked to
/// every other node, and when its standard input closes, what its
/// federation did; then stops.
#[test]
fn node() {
    let Ok(spec) = std::env::var(NODE_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let parts: Vec<&str> = spec.split('|').collect();
    let [listen, peers, nodes, runtime] = parts[..] else {
        panic!("bad {NODE_ENV}={spec:?}");
    };
    let pm = manager::start(ManagerConfig {
        token: Some(TOKEN.into()),
        runtime_dir: Some(runtime.into()),
        ..ManagerConfig::default()
    })
    .unwrap();
    let peers = peers
        .split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut config = FederationConfig::new(listen.parse().unwrap(), peers, TOKEN.into());
    config.fabric.provider = Some("tcp".into());
    let fed = federation::start(config, &pm).unwrap();
    let others: usize = nodes.parse::<usize>().unwrap() - 1;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fed.status().peers.len() < others {
        assert!(std::time::Instant::now() < until, "never linked");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!("@@socket {}", pm.endpoint().socket.display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let s = fed.status();
    println!(
        "@@status forwarded {} pulls {}",
        s.forwarded_records, s.pulls
    );
    fed.shutdown();
}

/// A node's manager running in its namespace; stopped when dropped.
struct NodeProcess {
    child: Child,
    socket: PathBuf,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl NodeProcess {
    /// Stops the node; returns its federation's record forwards and
    /// reads.
    fn stop(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(status) = line.strip_prefix("@@status ") {
                let n: Vec<u64> = status.split(' ').filter_map(|w| w.parse().ok()).collect();
                return (n[0], n[1]);
            }
        }
        panic!("the node ended without its status");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts node `i` of `cluster`, dialling the nodes before it.
fn start_node(cluster: &Cluster, i: usize, runtime: &Path) -> Child {
    let port = 7600 + (std::process::id() % 300) as u16;
    let addr = |k: usize| format!("{}:{port}", cluster.addr(k));
    let peers: Vec<String> = (0..i).map(addr).collect();
    let dir = runtime.join(format!("node{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("{}|{}|{NODES}|{}", addr(i), peers.join(","), dir.display());
    cluster
        .command(i, std::env::current_exe().unwrap())
        .args(["node", "--exact", "--nocapture"])
        .env(NODE_ENV, spec)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for node `child` to print its socket.
fn linked(mut child: Child) -> NodeProcess {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next() {
        if let Some(socket) = line.unwrap().strip_prefix("@@socket ") {
            return NodeProcess {
                child,
                socket: socket.into(),
                lines,
            };
        }
    }
    panic!("the node ended before it linked");
}

/// `hydro` (`command`: [`HYDRO`], perhaps run in a node) on a small grid
/// writing into `out`, with `extra` flags.
fn hydro(mut command: Command, out: &Path, extra: &[String]) -> Command {
    let dump = out.join("final.dump");
    command
        .args(common::SMALL_PROCESS_RUN)
        .args(["--ring", "2"])
        .args([
            "--nstepmax",
            "12",
            "--noutput",
            "2",
            "--checkpoint-every",
            "4",
        ])
        .arg("--dump-final")
        .arg(&dump)
        .arg("--output")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn");
    command
}

fn run(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "hydro failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn consumers_on_other_nodes_give_the_single_process_results() {
    if std::env::var(NODE_ENV).is_ok() {
        return;
    }
    if let Some(why) = skip_reason(&[]) {
        println!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    let cluster = Cluster::new("hydro", NODES);
    let starting: Vec<Child> = (0..NODES)
        .map(|i| start_node(&cluster, i, &runtime))
        .collect();
    let nodes: Vec<NodeProcess> = starting.into_iter().map(linked).collect();
    let (far, local) = (dir.path().join("far"), dir.path().join("local"));
    for d in [&far, &local] {
        std::fs::create_dir_all(d).unwrap();
    }
    let agent = |role: &str, i: usize| {
        format!(
            "{role}=ip netns exec {} env CDO_POOL_SOCKET={}",
            cluster.namespaces()[i],
            nodes[i].socket.display()
        )
    };
    let archive = |d: &Path| d.join("archive").display().to_string();
    let flags = vec![
        "--pool-manager".to_string(),
        "--consumer-agent".into(),
        agent("stats", 1),
        "--consumer-agent".into(),
        agent("render", 2),
        "--consumer-agent".into(),
        agent("archive", 2),
        "--archive".into(),
        archive(&far),
    ];
    let mut command = hydro(cluster.command(0, HYDRO), &far, &flags);
    command
        .env("CDO_POOL_SOCKET", &nodes[0].socket)
        .env("CDO_WORKFLOW_TOKEN", TOKEN);
    let summary = run(command);
    assert!(summary.contains("renderers"), "{summary}");
    let archive_flags = ["--archive".into(), archive(&local)];
    run(hydro(Command::new(HYDRO), &local, &archive_flags));
    let done: Vec<(u64, u64)> = nodes.into_iter().map(NodeProcess::stop).collect();
    // 7 records, to the statistics node and to the renderers' node: the
    // solver's node forwarded each to both (end markers too), and they
    // read the records' objects from it.
    assert!(done[0].0 >= 14, "forwarded {done:?}");
    assert!(done[1].1 > 0 && done[2].1 > 0, "reads {done:?}");

    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(read(&far, STATS_CSV), read(&local, STATS_CSV), "stats.csv");
    // The archiver on the third node stored the checkpoints of steps 4, 8
    // and 12 as the single-process run's archiver did: bytes and
    // attributes.
    let archived = |dir: &Path| {
        let archive = cdo::archive::Archive::open(dir.join("archive")).unwrap();
        let mut names = archive.names().unwrap();
        names.sort();
        let entries: Vec<_> = names
            .iter()
            .map(|n| archive.load(n).unwrap().unwrap())
            .collect();
        (names, entries)
    };
    let (far_names, far_entries) = archived(&far);
    let mut want = [4, 8, 12].map(checkpoint_name);
    want.sort();
    assert_eq!(far_names, want);
    assert!(far_entries == archived(&local).1, "archived checkpoints");
    assert_eq!(read(&far, "final.dump"), read(&local, "final.dump"));
    for step in (0..=12).step_by(2) {
        let png = density_png(step);
        assert_eq!(read(&far, &png), read(&local, &png), "{png}");
    }
}
