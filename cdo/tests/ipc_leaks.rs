//! No descriptor, segment or file outlives the pool manager. One test per
//! binary, so descriptor counts are not disturbed by other tests.

mod ipc_common;

use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::wire::Attributes;
use ipc_common::{child_client, fd_count, fill, hear, memfds, pattern, say, Peer};

/// Child side: a producer of a small and a large object.
#[test]
fn child_entry() {
    let Some((role, mut c)) = child_client() else {
        return;
    };
    c.offer_with(&format!("{role}-small"), 1000, Attributes::new(), |d| {
        fill(1, d)
    })
    .unwrap();
    c.offer_with(&format!("{role}-large"), 16 << 20, Attributes::new(), |d| {
        fill(2, d)
    })
    .unwrap();
    say("ready");
    hear();
    std::process::exit(0);
}

fn dev_shm() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn nothing_outlives_the_manager() {
    let fds_before = fd_count();
    let shm_before = dev_shm();
    let pm = ipc_common::manager();
    let dir = pm.dir().to_path_buf();
    let mut c = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "c")).unwrap();
    let mut killed = Peer::spawn("child_entry", "producer", pm.endpoint());
    let mut polite = Peer::spawn("child_entry", "producer2", pm.endpoint());
    assert_eq!(killed.recv(), "ready");
    let small = c.demand("producer-small", Duration::from_secs(5)).unwrap();
    let large = c.demand("producer-large", Duration::from_secs(5)).unwrap();
    assert!(*small == pattern(1, 1000)[..]);
    assert!(*large == pattern(2, 16 << 20)[..]);
    assert!(!memfds().is_empty());
    killed.kill();
    assert_eq!(polite.recv(), "ready");
    polite.send("bye");
    polite.join();
    drop((small, large));
    drop(c);
    pm.shutdown();
    assert!(memfds().is_empty(), "memfds left open: {:?}", memfds());
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
    assert_eq!(dev_shm(), shm_before, "files left in /dev/shm");
    assert!(!dir.exists(), "socket directory left behind");
}
