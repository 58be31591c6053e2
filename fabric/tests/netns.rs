//! Two processes in two network namespaces joined by a veth pair: the
//! producer (`fabric-peer produce`) in one, the consumer in the other, the
//! region's descriptor passed through a shared directory. Needs root and
//! `ip`; skips with a printed reason otherwise. The namespaces are always
//! deleted, on failure too.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Deletes the namespaces (and with them the veth pair) when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need it)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

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
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let id = std::process::id();
    let (p, c) = (format!("mfab-p-{id}"), format!("mfab-c-{id}"));
    let (vp, vc) = (format!("mfp{id}"), format!("mfc{id}"));
    let net = format!("10.{}.{}", 100 + id % 100, (id / 100) % 250);
    let (ap, ac) = (format!("{net}.1"), format!("{net}.2"));
    ip(&["netns", "add", &p]);
    let _guard = Namespaces(vec![p.clone()]);
    ip(&["netns", "add", &c]);
    let _guard = Namespaces(vec![p.clone(), c.clone()]);
    ip(&["link", "add", &vp, "type", "veth", "peer", "name", &vc]);
    ip(&["link", "set", &vp, "netns", &p]);
    ip(&["link", "set", &vc, "netns", &c]);
    for (ns, dev, addr) in [(&p, &vp, &ap), (&c, &vc, &ac)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let dir = std::env::temp_dir().join(format!("mamba-fabric-netns-{id}-{provider}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let peer = env!("CARGO_BIN_EXE_fabric-peer");
    let spawn = |ns: &str, role: &str, addr: &str| {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            peer,
            role,
            "--node",
            addr,
            "--provider",
            provider,
        ])
        .args(["--dir", dir.to_str().unwrap(), "--timeout", "60"])
        .stderr(Stdio::piped());
        if role == "produce" {
            cmd.args(["--size", &size.to_string()]);
        }
        cmd.spawn().expect("ip netns exec starts")
    };
    let producer = spawn(&p, "produce", &ap);
    let consumer = spawn(&c, "consume", &ac);
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

#[test]
fn namespaces_are_gone_after_the_test() {
    if skip_reason().is_some() {
        eprintln!("skipped: not root or no `ip`");
        return;
    }
    // A failing setup still removes what it created.
    let name = format!("mfab-guard-{}", std::process::id());
    {
        ip(&["netns", "add", &name]);
        let _guard = Namespaces(vec![name.clone()]);
        let r = std::panic::catch_unwind(|| ip(&["link", "add", "x", "type", "no-such-kind"]));
        assert!(r.is_err(), "a bad ip command fails the test");
    }
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
}
