//! Clusters made for real (as root with `ip` and `bash`; skipped with a
//! printed reason otherwise): their nodes reach the calling namespace
//! until cut, two at once share no name or network, and a panicking test
//! leaves no namespace and no route behind.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

use netns_cluster::{skip_reason, Cluster};

fn skipped() -> bool {
    let why = skip_reason(&[("bash", "--version", "bash")]);
    if let Some(why) = &why {
        println!("skipped: {why}");
    }
    why.is_some()
}

/// The address of the bridge of a cluster made [`Cluster::with_host`].
fn host_addr(cluster: &Cluster) -> Ipv4Addr {
    let net: Ipv4Addr = cluster.network().trim_end_matches("/24").parse().unwrap();
    let [a, b, c, _] = net.octets();
    Ipv4Addr::new(a, b, c, 254)
}

fn ip_lists(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn nodes_reach_the_calling_namespace_until_their_link_is_cut() {
    if skipped() {
        return;
    }
    let cluster = Cluster::with_host("nsc-reach", 2);
    let other = Cluster::with_host("nsc-reach", 2);
    assert_ne!(cluster.network(), other.network());
    assert!(cluster
        .namespaces()
        .iter()
        .all(|ns| !other.namespaces().contains(ns)));
    let host = host_addr(&cluster);
    let listener = TcpListener::bind((host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dial = |node: usize| {
        let line = format!("echo node{node} > /dev/tcp/{host}/{port}");
        let mut command = cluster.command(node, "bash");
        command.args(["-c", &line]).status().unwrap().success()
    };
    let heard = || {
        let mut line = String::new();
        let (mut stream, _) = listener.accept().unwrap();
        stream.read_to_string(&mut line).unwrap();
        line
    };
    for node in 0..2 {
        assert!(dial(node), "node {node} dials {host}");
        assert_eq!(heard(), format!("node{node}\n"));
    }
    cluster.cut(1);
    assert!(!dial(1), "node 1 is cut off");
    assert!(dial(0), "node 0 still dials {host}");
    assert_eq!(heard(), "node0\n");
    other.remove();
    cluster.remove();
}

#[test]
fn a_panicking_test_leaves_no_namespace_and_no_route() {
    if skipped() {
        return;
    }
    let made = std::sync::Mutex::new(None);
    let failed = std::panic::catch_unwind(|| {
        let cluster = Cluster::with_host("nsc-panic", 3);
        *made.lock().unwrap() = Some((cluster.namespaces().to_vec(), cluster.network()));
        panic!("the test fails with its cluster up");
    });
    assert!(failed.is_err());
    let (names, network) = made.into_inner().unwrap().unwrap();
    let list = ip_lists(&["netns", "list"]);
    assert!(
        list.lines()
            .all(|l| !names.iter().any(|ns| l.split(' ').next() == Some(ns))),
        "{list}"
    );
    assert_eq!(ip_lists(&["-4", "route", "show", "root", &network]), "");
}
