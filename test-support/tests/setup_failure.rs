//! A setup that fails part way (as root with `ip`; skipped with a printed
//! reason otherwise) panics and removes what it made. Alone in its test
//! binary: the links named after this process's pid are this test's.

use std::process::Command;

use netns_cluster::{skip_reason, Cluster};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}", args.join(" "));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_setup_failing_part_way_leaves_no_namespace_and_no_link() {
    if let Some(why) = skip_reason(&[]) {
        println!("skipped: {why}");
        return;
    }
    // Node 1's namespace exists already: the bridge, node 0's namespace
    // and its link are made before the setup fails.
    let pid = std::process::id();
    let taken = format!("nsc-setup-{pid}-0-1");
    ip(&["netns", "add", &taken]);
    let failed = std::panic::catch_unwind(|| Cluster::new("nsc-setup", 2));
    ip(&["netns", "del", &taken]);
    assert!(failed.is_err(), "the setup fails");
    let list = ip(&["netns", "list"]);
    assert!(
        list.lines()
            .all(|l| !l.starts_with(&format!("nsc-setup-{pid}-"))),
        "{list}"
    );
    let links = ip(&["-br", "link"]);
    let ours = [format!("nsb{pid:06x}"), format!("nso{pid:06x}")];
    assert!(
        links
            .lines()
            .all(|l| !ours.iter().any(|o| l.starts_with(o))),
        "{links}"
    );
}
