//! Two processes in two network namespaces joined by a bridge: the
//! producer (`fabric-peer produce`) in one, the consumer in the other, the
//! region's descriptor passed through a shared directory. Needs root and
//! `ip`; skips with a printed reason otherwise. The namespaces are always
//! deleted, on failure too.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use netns_cluster::{skip_reason, Cluster};

fn wait(mut child: Child, what: &str, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (false, format!("{what} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pull_across_namespaces(provider: &str, size: usize) {
    if let Some(reason) = skip_reason(&[]) {
        eprintln!("skipped: {reason}");
        return;
    }
    // The producer's node and the consumer's.
    let cluster = Cluster::new("mfab", 2);
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("mamba-fabric-netns-{id}-{provider}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let peer = env!("CARGO_BIN_EXE_fabric-peer");
    let spawn = |node: usize, role: &str| {
        let mut cmd = cluster.command(node, peer);
        cmd.arg(role)
            .args(["--node", &cluster.addr(node).to_string()])
            .args(["--provider", provider])
            .args(["--dir", dir.to_str().unwrap(), "--timeout", "60"])
            .stderr(Stdio::piped());
        if role == "produce" {
            cmd.args(["--size", &size.to_string()]);
        }
        cmd.spawn().expect("ip netns exec starts")
    };
    let producer = spawn(0, "produce");
    let consumer = spawn(1, "consume");
    let (c_ok, c_err) = wait(consumer, "the consumer", Duration::from_secs(90));
    let (p_ok, p_err) = wait(producer, "the producer", Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(c_ok, "consumer failed: {c_err}");
    assert!(p_ok, "producer failed: {p_err}");
    assert!(c_err.contains(&format!("pulled {size} bytes")), "{c_err}");
}

#[test]
fn a_consumer_pulls_across_two_namespaces_over_tcp() {
    pull_across_namespaces("tcp", (8 << 20) + 5);
}
