//! A cluster of network namespaces on one machine, for tests whose nodes
//! talk over a real network: each node is a namespace with one veth link to
//! a bridge in the calling namespace and the address `10.X.Y.(i+1)/24`.
//! Making one needs root and `ip` (iproute2); a test asks [`skip_reason`]
//! first and skips with the reason printed.
//!
//! Namespace and link names carry the process id and a sequence number of
//! the process, so the clusters of tests running at the same time, in one
//! test binary or in several, never share a name. Dropping a [`Cluster`]
//! removes its namespaces, links and bridge, also when a test panics
//! (setup included).
//!
//! ```no_run
//! use netns_cluster::{skip_reason, Cluster};
//!
//! if let Some(why) = skip_reason(&[]) {
//!     println!("skipped: {why}");
//!     return;
//! }
//! let cluster = Cluster::new("demo", 2);
//! // A server in node 0 and a client in node 1 that dials it.
//! let mut server = cluster.command(0, "my-server").spawn().unwrap();
//! let to = format!("{}:7000", cluster.addr(0));
//! let status = cluster.command(1, "my-client").arg(to).status().unwrap();
//! assert!(status.success());
//! server.kill().unwrap();
//! server.wait().unwrap();
//! cluster.remove();
//! ```

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The link of each node, inside its namespace.
const LINK: &str = "veth0";

/// Clusters made so far by this process: each one's names differ.
static MADE: AtomicU32 = AtomicU32::new(0);

/// Network namespaces joined by a bridge; removed when dropped.
pub struct Cluster {
    namespaces: Vec<String>,
    /// The veth ends in the calling namespace, one a node, attached to
    /// `bridge`.
    outer: Vec<String>,
    bridge: String,
    /// The first three bytes of every address.
    net: [u8; 3],
}

impl Cluster {
    /// `nodes` namespaces named `LABEL-PID-N-i` (`N` counts this process's
    /// clusters from 0), node `i` at [`addr(i)`](Cluster::addr), reachable
    /// from one another but not from the calling namespace. The bridge and
    /// the nodes' links in the calling namespace are named `nsb` and `nso`
    /// followed by the pid in six hex digits. Panics, having removed what
    /// it made, when an `ip` command fails.
    pub fn new(label: &str, nodes: usize) -> Cluster {
        Cluster::make(label, nodes, false)
    }

    /// As [`new`](Cluster::new), and the bridge has the address `.254` of
    /// the nodes' [`network`](Cluster::network) here: processes in the
    /// calling namespace and the nodes reach one another. The network is
    /// one that no route of the calling namespace uses yet.
    pub fn with_host(label: &str, nodes: usize) -> Cluster {
        Cluster::make(label, nodes, true)
    }

    fn make(label: &str, nodes: usize, host: bool) -> Cluster {
        assert!(nodes <= 253, "{nodes} nodes: at most 253 fit a /24");
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Link names have at most 15 bytes: the pid (under 2^22) and the
        // cluster's number in fixed-width hex keep them distinct (for up to
        // 256 clusters of one process at a time).
        let tag = format!("{pid:06x}{:02x}", made % 256);
        // Each thing is recorded once made: a failure part way leaves
        // nothing that the drop does not remove, and the drop removes
        // nothing that the setup did not make.
        let bridge = format!("nsb{tag}");
        let net = network(pid, made, host);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let mut cluster = Cluster {
            namespaces: Vec::new(),
            outer: Vec::new(),
            bridge: bridge.clone(),
            net,
        };
        if host {
            let addr = format!("{}/24", cluster.at(254));
            ip(&["addr", "add", &addr, "dev", &bridge]);
        }
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..nodes {
            let ns = format!("{label}-{pid}-{made}-{i}");
            ip(&["netns", "add", &ns]);
            cluster.namespaces.push(ns.clone());
            let outer = format!("nso{tag}{i:02x}");
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", LINK, "netns", &ns,
            ]);
            cluster.outer.push(outer.clone());
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            let addr = format!("{}/24", cluster.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", LINK]);
            ip(&["-n", &ns, "link", "set", LINK, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        cluster
    }

    /// The namespaces' names, node 0 first.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The address of node `node`: `10.X.Y.(node+1)`.
    pub fn addr(&self, node: usize) -> Ipv4Addr {
        assert!(node < self.namespaces.len(), "no node {node}");
        // At most 253 nodes: the byte does not overflow.
        self.at(node as u8 + 1)
    }

    /// The address `10.X.Y.last`.
    fn at(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The nodes' network, `10.X.Y.0/24`.
    pub fn network(&self) -> String {
        format!("{}/24", self.at(0))
    }

    /// `program` run in node `node`'s namespace (`ip netns exec`); the
    /// caller adds arguments, environment and pipes.
    pub fn command(&self, node: usize, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespaces[node]])
            .arg(program);
        command
    }

    /// Takes node `node`'s link down: from then on its packets go nowhere
    /// and no others reach it (no reset, no answer).
    pub fn cut(&self, node: usize) {
        ip(&["-n", &self.namespaces[node], "link", "set", LINK, "down"]);
    }

    /// Removes the cluster now, and panics if `ip netns list` still lists
    /// one of its namespaces.
    pub fn remove(self) {
        let names = self.namespaces.clone();
        drop(self);
        let list = Command::new("ip").args(["netns", "list"]).output();
        let list = String::from_utf8_lossy(&list.expect("ip runs").stdout).into_owned();
        let listed = |ns: &String| list.lines().any(|l| l.split(' ').next() == Some(ns));
        assert!(!names.iter().any(listed), "{list}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A veth end removed takes its peer with it, even from a namespace
        // that a process still holds.
        for dev in &self.outer {
            quiet(&["link", "del", dev]);
        }
        for ns in &self.namespaces {
            quiet(&["netns", "del", ns]);
        }
        quiet(&["link", "del", &self.bridge]);
    }
}

/// Why a cluster cannot be made here (not root, no `ip`), or why a test
/// that also runs `tools` cannot run: each one a `(command, argument,
/// package)` that must succeed, such as `("mpirun", "--version",
/// "openmpi-bin")`. `None` when nothing is missing.
pub fn skip_reason(tools: &[(&str, &str, &str)]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    [("ip", "-V", "iproute2")]
        .iter()
        .chain(tools)
        .find(|(tool, arg, _)| {
            !Command::new(tool)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(tool, _, package)| format!("no `{tool}` ({package})"))
}

/// The first three bytes of the network of cluster `made` of process `pid`:
/// a /24 from 10.64.0.0 to 10.253.255.255, spread by both, and
/// for a cluster with a `host` address, one that no route here uses.
fn network(pid: u32, made: u32, host: bool) -> [u8; 3] {
    const SPAN: u32 = 190 * 256;
    let start = (pid % SPAN) * 16 + made;
    (0..SPAN)
        .map(|k| (start + k) % SPAN)
        .map(|k| [10, 64 + (k / 256) as u8, (k % 256) as u8])
        .find(|&[a, b, c]| {
            !host || {
                let net = format!("{a}.{b}.{c}.0/24");
                let routes = Command::new("ip")
                    .args(["-4", "route", "show", "root", &net])
                    .output()
                    .expect("ip runs");
                routes.status.success() && routes.stdout.is_empty()
            }
        })
        .expect("a /24 without routes in 10.64.0.0-10.253.255.255")
}

/// Runs `ip args`; panics with its error output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip args`, whatever comes of it (removing what may be gone).
fn quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
