//! Liveness: a stopped client loses its lease and all it held, a busy one
//! keeps it, and a killed pool manager ends every blocking call of its
//! clients with an error at once.

mod ipc_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError, Notice};
use cdo::ipc::conn::ConnError;
use cdo::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::manager::{ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{encode, Attributes, ErrorCode, Frame, Msg, PROTOCOL_VERSION};
use cdo::EventKind;
use ipc_common::{
    child_client, eventually, hear, manager_with, say, start_pm, wait_for, Peer, GUARD,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn client(ep: &Endpoint, name: &str) -> Client {
    Client::connect(&ClientConfig::new(ep.clone(), name)).unwrap()
}

fn leased(lease: Duration) -> ManagerHandle {
    manager_with(ManagerConfig {
        lease,
        ..ManagerConfig::default()
    })
}

/// Child side: a client that takes a view, a require, an offer and a group
/// record, then waits (to be stopped).
#[test]
fn child_entry() {
    let Some((role, mut c)) = child_client() else {
        return;
    };
    assert_eq!(role, "holder");
    c.join_group("g", "name ~ '^rec/'").unwrap();
    c.require("wanted").unwrap();
    c.offer("mine", b"child's", Attributes::new()).unwrap();
    let view = c.demand("held", GUARD).unwrap();
    say("joined");
    let record = match c.next_notice(Some(GUARD)).unwrap() {
        Some(Notice::Record(r)) => r,
        other => panic!("expected a record, got {other:?}"),
    };
    say("ready");
    hear();
    drop((view, record));
}

#[test]
fn a_stopped_client_loses_its_lease_and_all_it_held() {
    let pm = leased(Duration::from_secs(2));
    let ep = pm.endpoint().clone();
    let mut producer = client(&ep, "producer");
    producer
        .offer("held", b"viewed", Attributes::new())
        .unwrap();
    let mut holder = Peer::spawn("child_entry", "holder", &ep);
    assert_eq!(holder.recv(), "joined");
    producer
        .offer("rec/1", b"record", Attributes::new())
        .unwrap();
    assert_eq!(holder.recv(), "ready");
    let mut member = client(&ep, "member");
    member.join_group("g", "name ~ '^rec/'").unwrap();
    let mut watcher = client(&ep, "watcher");
    watcher
        .subscribe("*", EventKind::Leave.into(), false)
        .unwrap();
    let before = pm.stats();
    assert_eq!((before.clients, before.requires), (4, 1), "{before:?}");

    let pid = Pid::from_raw(holder.child.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    // Dropped once its lease ran out, as if its connection had ended.
    let after = wait_for(&pm, |s| s.clients == 3);
    assert_eq!(after.requires, 0, "its require is gone: {after:?}");
    match watcher.next_notice(Some(GUARD)).unwrap() {
        Some(Notice::Event(e)) => {
            assert_eq!((e.kind, e.name.as_str()), (EventKind::Leave, "holder"))
        }
        other => panic!("expected its leave event, got {other:?}"),
    }
    // Its undone record goes to the other member.
    match member.next_notice(Some(GUARD)).unwrap() {
        Some(Notice::Record(r)) => {
            assert_eq!((r.view.name(), &*r.view), ("rec/1", &b"record"[..]));
            member.done(r).unwrap();
        }
        other => panic!("expected the record, got {other:?}"),
    }
    // Its view no longer holds the producer's withdrawal.
    producer.withdraw("held").unwrap();
    // Its offer follows the fault policy (fail-fast here).
    match watcher.demand("mine", GUARD) {
        Err(ClientError::Pool {
            code: ErrorCode::ProducerDied,
            ..
        }) => {}
        other => panic!("expected ProducerDied, got {other:?}"),
    }
    // Woken again, it finds its connection closed.
    kill(pid, Signal::SIGCONT).unwrap();
    holder.kill();
}

#[test]
fn a_busy_client_keeps_its_lease() {
    let lease = Duration::from_secs(1);
    let pm = leased(lease);
    let ep = pm.endpoint().clone();
    let mut busy = client(&ep, "busy");
    busy.offer("result", b"42", Attributes::new()).unwrap();
    let id = busy.client_id();
    // Computes for several leases without calling the pool.
    std::thread::sleep(lease * 4);
    assert_eq!(pm.stats().clients, 1, "the busy client was dropped");
    let mut other = client(&ep, "other");
    assert_eq!(&*other.demand("result", GUARD).unwrap(), b"42");
    busy.offer("more", b"43", Attributes::new()).unwrap();
    assert_eq!(busy.client_id(), id);
    assert_eq!(pm.stats().objects, 2);
}

#[test]
fn a_client_without_heartbeat_is_dropped() {
    let pm = leased(Duration::from_secs(1));
    let ep = pm.endpoint().clone();
    let mut watcher = client(&ep, "watcher");
    watcher.require("theirs").unwrap();
    // Joins by hand and never beats (the lease page it is sent is closed
    // with the ancillary data a plain read discards).
    let mut raw = UnixStream::connect(&ep.socket).unwrap();
    let mut buf = Vec::new();
    let join = Msg::Join {
        component: "silent".into(),
        token: ep.token.clone(),
        version: PROTOCOL_VERSION,
    };
    encode(&Frame { id: 1, msg: join }, 0, &mut buf).unwrap();
    let require = Msg::Require {
        name: "anything".into(),
    };
    encode(
        &Frame {
            id: 2,
            msg: require,
        },
        0,
        &mut buf,
    )
    .unwrap();
    raw.write_all(&buf).unwrap();
    raw.set_read_timeout(Some(GUARD)).unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got)
        .expect("the manager closes the connection");
    let s = wait_for(&pm, |s| s.clients == 1);
    assert_eq!(s.requires, 1, "only the watcher's require is left: {s:?}");
    assert_eq!(watcher.stats().unwrap().clients, 1);
}

/// A `cdo-pm` process and how to reach it.
fn spawn_pm(token: &str) -> (Child, Endpoint) {
    let (pm, vars) = start_pm(
        Command::new(env!("CARGO_BIN_EXE_cdo-pm"))
            .arg(std::env::temp_dir())
            .env(TOKEN_ENV, token)
            .env("RUST_LOG", "error"),
    );
    let ep = Endpoint {
        socket: vars[SOCKET_ENV].clone().into(),
        token: vars[TOKEN_ENV].clone(),
    };
    (pm, ep)
}

/// Checks that `r` is the error of a connection the manager ended (not a
/// timeout, not an answer).
fn assert_manager_gone<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    match r {
        Err(ClientError::Conn(ConnError::Closed)) => {}
        Err(ClientError::Conn(ConnError::Io(e))) if e.kind() != std::io::ErrorKind::WouldBlock => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn a_killed_manager_ends_every_blocking_call_at_once() {
    let (mut pm, ep) = spawn_pm("liveness");
    let dir = ep.socket.parent().unwrap().to_path_buf();
    let mut producer = client(&ep, "producer");
    producer.offer("x", b"required", Attributes::new()).unwrap();
    let mut stat = client(&ep, "stat");
    // Each blocks far longer than the test may take; the kill must end it.
    let long = Duration::from_secs(3600);
    let demander = {
        let mut c = client(&ep, "demander");
        std::thread::spawn(move || c.demand("never", long).map(|_| ()))
    };
    let waiter = {
        let mut c = client(&ep, "waiter");
        let id = c.submit_demand("never either").unwrap();
        std::thread::spawn(move || c.wait(id, None).map(|_| ()))
    };
    let listener = {
        let mut c = client(&ep, "listener");
        c.subscribe("*", EventKind::Offer.into(), false).unwrap();
        std::thread::spawn(move || c.next_notice(Some(long)).map(|n| n.is_some()))
    };
    let mut requirer = client(&ep, "requirer");
    requirer.require("x").unwrap();
    let leaver = std::thread::spawn(move || producer.leave(long));
    eventually("two waiting demands and a pending leave", || {
        let s = stat.stats().unwrap();
        (s.waiting_demands, s.pending_leaves) == (2, 1)
    });

    pm.kill().unwrap();
    pm.wait().unwrap();
    assert_manager_gone(demander.join().unwrap());
    assert_manager_gone(waiter.join().unwrap());
    assert_manager_gone(listener.join().unwrap());
    assert_manager_gone(leaver.join().unwrap());
    // Later calls fail at once too, and so does joining.
    assert_manager_gone(requirer.demand("x", long));
    assert_manager_gone(stat.stats());
    assert!(Client::connect(&ClientConfig::new(ep.clone(), "late")).is_err());
    let _ = std::fs::remove_dir_all(&dir);

    // Recovery: a new manager, and the producers offer again.
    let (mut pm, ep) = spawn_pm("liveness");
    let mut producer = client(&ep, "producer");
    producer.offer("x", b"required", Attributes::new()).unwrap();
    let mut consumer = client(&ep, "requirer");
    assert_eq!(&*consumer.demand("x", GUARD).unwrap(), b"required");
    drop((producer, consumer));
    kill(Pid::from_raw(pm.id() as i32), Signal::SIGTERM).unwrap();
    assert!(pm.wait().unwrap().success());
}
