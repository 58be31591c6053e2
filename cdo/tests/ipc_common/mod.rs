//! Helpers shared by the `ipc_*` integration tests: a pool manager in the
//! temporary directory, and a child process that is this very test binary,
//! re-executed to run one `#[test]` in a role.
//!
//! The parent runs `current_exe() <child test> --exact --nocapture` with
//! `CDO_IPC_TEST_ROLE` set; the child test reads the role and acts, the other
//! tests of the child see no role and return at once. The child writes
//! `@@`-prefixed lines on stdout (libtest's own lines are skipped) and reads
//! commands from stdin.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use cdo::ipc::client::{Client, ClientConfig, ClientError};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::manager::{self, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{ErrorCode, Stats};

/// A pool manager with `config`, its socket in the temporary directory.
pub fn manager_with(config: ManagerConfig) -> ManagerHandle {
    manager::start(ManagerConfig {
        runtime_dir: Some(std::env::temp_dir()),
        ..config
    })
    .unwrap()
}

/// A pool manager with the default configuration.
pub fn manager() -> ManagerHandle {
    manager_with(ManagerConfig::default())
}

/// A manager of fault policy `policy` with its federation listening on
/// 127.0.0.1 (fabric provider tcp), dialling `peers`, with workflow token
/// `token` and remote timeout `remote_timeout`.
pub fn federated_node(
    policy: cdo::ipc::manager::FaultPolicy,
    peers: Vec<String>,
    token: &str,
    remote_timeout: std::time::Duration,
) -> (ManagerHandle, cdo::ipc::federation::Federation) {
    let pool = cdo::PoolConfig {
        policy,
        ..Default::default()
    };
    federated_node_with(pool, peers, token, remote_timeout)
}

/// [`federated_node`] whose manager's pool is configured as `pool`.
pub fn federated_node_with(
    pool: cdo::PoolConfig,
    peers: Vec<String>,
    token: &str,
    remote_timeout: std::time::Duration,
) -> (ManagerHandle, cdo::ipc::federation::Federation) {
    use cdo::ipc::federation::{self, FederationConfig};
    let pm = manager_with(ManagerConfig {
        pool,
        token: Some(token.into()),
        ..ManagerConfig::default()
    });
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut config = FederationConfig::new(listen, peers, token.into());
    config.fabric.provider = Some("tcp".into());
    config.remote_timeout = remote_timeout;
    let fed = federation::start(config, &pm).unwrap();
    (pm, fed)
}

/// Waits until every federation of `feds` is linked to all the others.
pub fn linked(feds: &[&cdo::ipc::federation::Federation]) {
    eventually("the managers link", || {
        feds.iter()
            .all(|f| f.status().peers.len() == feds.len() - 1)
    });
}

/// A client of `pm` joined as `name`.
pub fn client(pm: &ManagerHandle, name: &str) -> Client {
    Client::connect(&ClientConfig::new(pm.endpoint().clone(), name)).unwrap()
}

/// The code of a pool error; fails on any other error.
pub fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Pool { code, .. } => code,
        other => panic!("expected a pool error, got {other:?}"),
    }
}

/// Spawns `command` (a `cdo-pm` with its arguments and environment) with
/// its output piped, and reads the two `export NAME=value` lines it prints
/// first: the process and those variables.
pub fn start_pm(command: &mut Command) -> (Child, std::collections::HashMap<String, String>) {
    let mut pm = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(pm.stdout.take().unwrap());
    let mut vars = std::collections::HashMap::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let (k, v) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|kv| kv.split_once('='))
            .unwrap_or_else(|| panic!("cdo-pm printed {line:?}"));
        vars.insert(k.to_string(), v.to_string());
    }
    (pm, vars)
}

/// How long a polling wait may take before the test fails: a guard
/// against a hang, never a speed requirement.
pub const GUARD: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `cond` until it holds; fails after [`GUARD`], naming `what`.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + GUARD;
    while !cond() {
        assert!(std::time::Instant::now() < until, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits until the manager's statistics satisfy `ok` and returns them;
/// fails after [`GUARD`].
pub fn wait_for(pm: &ManagerHandle, ok: impl Fn(&Stats) -> bool) -> Stats {
    let mut last = pm.stats();
    eventually("the manager's statistics", || {
        last = pm.stats();
        ok(&last)
    });
    last
}

/// Environment variable carrying the child's role.
pub const ROLE_ENV: &str = "CDO_IPC_TEST_ROLE";

/// A child process running one role.
pub struct Peer {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts the test `entry` of this binary in `role`, joined to `ep`.
    pub fn spawn(entry: &str, role: &str, ep: &Endpoint) -> Peer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .envs(ep.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// The child's next `@@` line, without the marker.
    pub fn recv(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child ended early");
            // libtest may print "test NAME ... " just before, on the same line.
            if let Some(at) = line.find("@@") {
                return line[at + 2..].trim().to_string();
            }
        }
    }

    /// Sends a command line to the child.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the child to exit successfully.
    pub fn join(mut self) {
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// In a child process: its role and a client joined to the manager the
/// parent named in the environment, under the role's name. `None` in the
/// parent.
pub fn child_client() -> Option<(String, Client)> {
    let role = role()?;
    let client =
        Client::connect(&ClientConfig::from_env(&role).expect("the parent exports the endpoint"))
            .expect("the child joins the pool manager");
    Some((role, client))
}

/// Writes a `@@` line for the parent.
pub fn say(line: &str) {
    println!("@@{line}");
    std::io::stdout().flush().unwrap();
}

/// Reads one command line from the parent ("" at end of input).
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim().to_string()
}

/// A deterministic byte pattern for object `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill(seed, &mut out);
    out
}

/// Fills `dst` with the pattern of `seed`.
pub fn fill(seed: u64, dst: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in dst.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Names of the open descriptors of this process that are memfds.
pub fn memfds() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with("/memfd:"))
        .collect()
}

/// Number of open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
