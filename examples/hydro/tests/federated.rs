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
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cdo::ipc::federation::{self, FederationConfig};
use cdo::ipc::manager::{self, ManagerConfig};
use hydro::analysis::{density_png, STATS_CSV};
use hydro::transit::checkpoint_name;

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

/// Deletes the namespaces (and their veth pairs) and the bridge when
/// dropped.
struct Cluster {
    namespaces: Vec<String>,
    outer: Vec<String>,
    bridge: String,
    net: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for dev in &self.outer {
            let _ = Command::new("ip")
                .args(["link", "del", dev])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn skip_reason() -> Option<&'static str> {
    // /proc/self belongs to this process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Some("not root (network namespaces need it)");
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no `ip` (iproute2)"),
    }
}

/// [`NODES`] namespaces at `NET.(i+1)`, joined by a bridge.
fn cluster() -> Cluster {
    let id = std::process::id() % 100_000;
    let net = format!("10.{}.{}", 210 + id % 40, (id / 40) % 250);
    let bridge = format!("hyb{id}");
    ip(&["link", "add", &bridge, "type", "bridge"]);
    let mut cluster = Cluster {
        namespaces: Vec::new(),
        outer: Vec::new(),
        bridge: bridge.clone(),
        net: net.clone(),
    };
    ip(&["link", "set", &bridge, "up"]);
    for i in 0..NODES {
        let ns = format!("hydro-{id}-{i}");
        ip(&["netns", "add", &ns]);
        cluster.namespaces.push(ns.clone());
        let (inner, outer) = (format!("hyi{id}{i}"), format!("hyo{id}{i}"));
        ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ]);
        cluster.outer.push(outer.clone());
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["link", "set", &outer, "master", &bridge]);
        ip(&["link", "set", &outer, "up"]);
        let addr = format!("{net}.{}/24", i + 1);
        ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }
    cluster
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
    let addr = |k: usize| format!("{}.{}:{port}", cluster.net, k + 1);
    let peers: Vec<String> = (0..i).map(addr).collect();
    let dir = runtime.join(format!("node{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("{}|{}|{NODES}|{}", addr(i), peers.join(","), dir.display());
    Command::new("ip")
        .args(["netns", "exec", &cluster.namespaces[i]])
        .arg(std::env::current_exe().unwrap())
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

/// `hydro` on a small grid writing into `out`, with `extra` flags.
fn hydro(prefix: &[&str], out: &Path, extra: &[String]) -> Command {
    let mut command = Command::new(prefix.first().copied().unwrap_or(HYDRO));
    if !prefix.is_empty() {
        command.args(&prefix[1..]).arg(HYDRO);
    }
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
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    let cluster = cluster();
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
            cluster.namespaces[i],
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
    let mut command = hydro(
        &["ip", "netns", "exec", &cluster.namespaces[0]],
        &far,
        &flags,
    );
    command
        .env("CDO_POOL_SOCKET", &nodes[0].socket)
        .env("CDO_WORKFLOW_TOKEN", TOKEN);
    let summary = run(command);
    assert!(summary.contains("renderers"), "{summary}");
    run(hydro(&[], &local, &["--archive".into(), archive(&local)]));
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
