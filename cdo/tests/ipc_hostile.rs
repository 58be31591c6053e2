//! A pool manager under hostile or broken clients: deep values and
//! selectors, huge names and maps, garbage, frames out of turn, thousands
//! of idle connections, a client that never reads, clients over quota.
//! After each, the manager still serves a normal client.

mod ipc_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError};
use cdo::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_FILE_ENV};
use cdo::ipc::limits::{MAX_ATTRS, MAX_ATTRS_BYTES, MAX_NAME_LEN, MAX_SELECTOR_LEN};
use cdo::ipc::manager::{Limits, ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{
    decode, encode, Attributes, ErrorCode, Frame, Msg, FRAME_VERSION, HEADER_LEN, MAGIC, MAX_FRAME,
    PROTOCOL_VERSION,
};
use cdo::{EventMask, Value};
use ipc_common::{client, eventually, manager, manager_with, GUARD};

/// A normal client offers, demands and withdraws: the manager serves.
fn still_serves(pm: &ManagerHandle) {
    let ep = pm.endpoint().clone();
    let mut p = Client::connect(&ClientConfig::new(ep.clone(), "probe-p")).unwrap();
    let mut c = Client::connect(&ClientConfig::new(ep, "probe-c")).unwrap();
    let name = format!("probe-{}", p.client_id());
    p.offer(&name, b"still here", Attributes::new()).unwrap();
    let view = c.demand(&name, GUARD).unwrap();
    assert_eq!(&view[..], b"still here");
    drop(view);
    c.flush().unwrap();
    p.withdraw(&name).unwrap();
}

/// The bytes of a frame around `payload`, announcing `len` bytes.
fn frame_bytes(len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend([FRAME_VERSION, 0]);
    out.extend(len.to_le_bytes());
    out.extend(payload);
    out
}

/// The payload of an OFFER (request `id`) whose one attribute is a list
/// nested `depth` deep, written by hand: such a value cannot be built (or
/// dropped) on a normal stack.
fn deep_offer_payload(id: u8, depth: usize) -> Vec<u8> {
    assert!(id < 128, "one-byte varint");
    // Request id; variant 6 (OFFER); name "x"; one attribute "k".
    let mut p = vec![id, 6, 1, b'x', 1, 1, b'k'];
    // Each level: variant 6 (List) of one item; innermost Int 0.
    p.extend([6u8, 1].repeat(depth));
    p.extend([0, 0]);
    // size 0, segment 0, offset 0.
    p.extend([0, 0, 0]);
    p
}

fn send_frame(sock: &mut UnixStream, frame: &Frame) {
    let mut buf = Vec::new();
    encode(frame, 0, &mut buf).unwrap();
    sock.write_all(&buf).unwrap();
}

/// Reads frames until one comes; `None` at end of stream.
fn read_frame(sock: &mut UnixStream, buf: &mut Vec<u8>) -> Option<Frame> {
    sock.set_read_timeout(Some(GUARD)).unwrap();
    loop {
        if let Some(d) = decode(buf).unwrap() {
            buf.drain(..d.consumed);
            return Some(d.frame);
        }
        let mut chunk = [0u8; 64 * 1024];
        match sock.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Whether the manager closes `sock` (after at most a REFUSED frame).
fn closed_after_refusal(sock: &mut UnixStream) -> bool {
    let mut buf = Vec::new();
    loop {
        match read_frame(sock, &mut buf) {
            None => return true,
            Some(Frame {
                msg: Msg::Refused { .. },
                ..
            }) => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// A raw connection that has joined; returns it with its read buffer.
fn raw_joined(ep: &Endpoint) -> (UnixStream, Vec<u8>) {
    let mut sock = UnixStream::connect(&ep.socket).unwrap();
    let join = Msg::Join {
        component: "raw".into(),
        token: ep.token.clone(),
        version: PROTOCOL_VERSION,
    };
    send_frame(&mut sock, &Frame { id: 1, msg: join });
    let mut buf = Vec::new();
    let welcome = read_frame(&mut sock, &mut buf).unwrap();
    assert!(matches!(welcome.msg, Msg::Welcome { .. }), "{welcome:?}");
    (sock, buf)
}

fn pool_code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Pool { code, .. }) => code,
        other => panic!("expected an error from the pool, got {other:?}"),
    }
}

#[test]
fn deeply_nested_values_are_refused_before_and_after_join() {
    let pm = manager();
    let ep = pm.endpoint().clone();
    // Before JOIN: small enough for the JOIN limit, deep enough to have
    // overflowed the decoder's stack; and as large as a frame may be.
    for depth in [2_000, (MAX_FRAME - 64) / 2] {
        let payload = deep_offer_payload(1, depth);
        let mut sock = UnixStream::connect(&ep.socket).unwrap();
        // The manager may close before taking it all.
        let _ = sock.write_all(&frame_bytes(payload.len() as u32, &payload));
        assert!(closed_after_refusal(&mut sock), "depth {depth}");
    }
    still_serves(&pm);
    // After JOIN: an error reply to that request, and the connection goes on.
    let (mut sock, mut buf) = raw_joined(&ep);
    let payload = deep_offer_payload(7, (MAX_FRAME - 64) / 2);
    sock.write_all(&frame_bytes(payload.len() as u32, &payload))
        .unwrap();
    send_frame(
        &mut sock,
        &Frame {
            id: 8,
            msg: Msg::Stat,
        },
    );
    let reply = read_frame(&mut sock, &mut buf).unwrap();
    assert_eq!(reply.id, 7);
    assert!(
        matches!(
            reply.msg,
            Msg::Error {
                code: ErrorCode::Protocol,
                ..
            }
        ),
        "{reply:?}"
    );
    let stats = read_frame(&mut sock, &mut buf).unwrap();
    assert_eq!(stats.id, 8);
    assert!(matches!(stats.msg, Msg::Stats(_)));
    still_serves(&pm);
}

#[test]
fn deep_and_long_selectors_are_bad_selectors() {
    let pm = manager();
    let mut c = client(&pm, "sel");
    let deep = "(".repeat(MAX_SELECTOR_LEN);
    assert_eq!(
        pool_code(c.subscribe(&deep, EventMask::ALL, false)),
        ErrorCode::BadSelector
    );
    let nots = "not ".repeat(MAX_SELECTOR_LEN / 4 - 4) + "has x";
    assert_eq!(
        pool_code(c.subscribe(&nots, EventMask::ALL, false)),
        ErrorCode::BadSelector
    );
    let long = format!("size > {}", "1".repeat(MAX_SELECTOR_LEN));
    assert_eq!(pool_code(c.join_group("g", &long)), ErrorCode::BadSelector);
    // The same client goes on.
    assert!(c.subscribe("size > 1", EventMask::ALL, false).is_ok());
    still_serves(&pm);
}

#[test]
fn huge_names_and_attribute_maps_get_typed_errors() {
    let pm = manager();
    let mut c = client(&pm, "big");
    let long = "n".repeat(MAX_NAME_LEN + 1);
    // Too long to name an object: refused as an invalid name, as in process.
    assert_eq!(
        pool_code(c.offer(&long, b"x", Attributes::new())),
        ErrorCode::InvalidName
    );
    assert_eq!(pool_code(c.demand(&long, GUARD)), ErrorCode::InvalidName);
    assert_eq!(pool_code(c.require(&long)), ErrorCode::InvalidName);
    let many: Attributes = (0..=MAX_ATTRS)
        .map(|i| (format!("app.k{i}"), Value::UInt(i as u64)))
        .collect();
    assert_eq!(
        pool_code(c.offer("many", b"x", many)),
        ErrorCode::BadAttributes
    );
    let mut big = Attributes::new();
    big.insert("app.blob".into(), Value::from("b".repeat(MAX_ATTRS_BYTES)));
    assert_eq!(
        pool_code(c.offer("big", b"x", big)),
        ErrorCode::BadAttributes
    );
    // Nothing was offered; the client goes on.
    assert_eq!(c.stats().unwrap().objects, 0);
    c.offer("fine", b"x", Attributes::new()).unwrap();
    still_serves(&pm);
}

#[test]
fn garbage_random_bytes_and_frames_out_of_turn_close_only_that_connection() {
    let pm = manager();
    let ep = pm.endpoint().clone();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let stat = {
        let mut b = Vec::new();
        encode(
            &Frame {
                id: 1,
                msg: Msg::Stat,
            },
            0,
            &mut b,
        )
        .unwrap();
        b
    };
    let big_join = {
        let join = Msg::Join {
            component: "c".repeat(8000),
            token: ep.token.clone(),
            version: PROTOCOL_VERSION,
        };
        let mut b = Vec::new();
        encode(&Frame { id: 1, msg: join }, 0, &mut b).unwrap();
        b
    };
    let inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        frame_bytes(u32::MAX, &[]),
        frame_bytes(16, &random(16)),
        random(HEADER_LEN + 100),
        random(100_000),
        stat,
        big_join,
    ];
    for input in inputs {
        let mut sock = UnixStream::connect(&ep.socket).unwrap();
        // The manager may close before taking it all.
        let _ = sock.write_all(&input);
        assert!(closed_after_refusal(&mut sock));
    }
    // After JOIN, a bad header closes that connection, not the manager.
    let (mut sock, _) = raw_joined(&ep);
    sock.write_all(&random(64)).unwrap();
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(GUARD)).unwrap();
    let _ = sock.read_to_end(&mut rest);
    still_serves(&pm);
}

#[test]
fn thousands_of_idle_connections_do_not_keep_a_client_out() {
    let limits = Limits::default();
    let pm = manager_with(ManagerConfig::default());
    let ep = pm.endpoint().clone();
    let mut worker = Client::connect(&ClientConfig::new(ep.clone(), "worker")).unwrap();
    let mut idle = Vec::new();
    for i in 0..limits.connections + limits.pending + 500 {
        idle.push(UnixStream::connect(&ep.socket).unwrap());
        if i % 200 == 0 {
            // A joined client keeps working meanwhile.
            let name = format!("w{i}");
            worker.offer(&name, b"w", Attributes::new()).unwrap();
            worker.withdraw(&name).unwrap();
        }
    }
    eventually("connections admitted or closed", || {
        let (open, pending) = pm.connections();
        pending <= limits.pending && open <= limits.connections
    });
    // A new client joins while they are all still open on our side.
    still_serves(&pm);
    assert!(worker.stats().unwrap().clients >= 1);
    drop(idle);
    eventually("idle connections gone", || pm.connections().1 == 0);
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_managers_memory() {
    let high_water = 256 * 1024;
    let pm = manager_with(ManagerConfig {
        limits: Limits {
            queued_bytes: high_water,
            ..Limits::default()
        },
        // The raw client below sends no heartbeat: its lease must outlast
        // the test, however loaded the machine.
        lease: Duration::from_secs(3600),
        ..ManagerConfig::default()
    });
    let (sock, mut buf) = raw_joined(pm.endpoint());
    // Megabytes of replies asked for, none read.
    let requests = 50_000u64;
    let mut batch = Vec::new();
    for id in 0..requests {
        encode(
            &Frame {
                id: 100 + id,
                msg: Msg::Stat,
            },
            0,
            &mut batch,
        )
        .unwrap();
    }
    let mut writer = sock.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(&batch).unwrap());
    // Wait until the manager is at rest: it stopped reading, or it is done.
    let mut last = u64::MAX;
    eventually("the manager stops queuing", || {
        let now = pm.stats().queued_bytes;
        let steady = now == last && now > 0;
        last = now;
        std::thread::sleep(Duration::from_millis(50));
        steady
    });
    let queued = pm.stats().queued_bytes as usize;
    assert!(queued >= high_water / 2, "queued {queued}");
    assert!(queued <= high_water + 64 * 1024, "queued {queued}");
    // Others are served meanwhile.
    still_serves(&pm);
    // A slow client is not a dead one: once it reads, every reply comes.
    let mut reader = sock;
    let mut got = 0;
    while got < requests {
        let f = read_frame(&mut reader, &mut buf).expect("the connection stays");
        if matches!(f.msg, Msg::Stats(_)) {
            assert_eq!(f.id, 100 + got);
            got += 1;
        }
    }
    writing.join().unwrap();
    eventually("the queue drains", || pm.stats().queued_bytes == 0);
}

#[test]
fn a_client_that_writes_more_than_it_reads_does_not_deadlock_with_a_paused_manager() {
    let pm = manager_with(ManagerConfig {
        limits: Limits {
            queued_bytes: 64 * 1024,
            ..Limits::default()
        },
        ..ManagerConfig::default()
    });
    let mut c = Client::connect(&ClientConfig {
        // Never waits for replies while submitting: only the flushes move.
        window: 1 << 20,
        ..ClientConfig::new(pm.endpoint().clone(), "pipeliner")
    })
    .unwrap();
    // Megabytes of requests, each answered by an error as large: the
    // manager pauses this client long before it has read them all.
    let names: Vec<String> = (0..1500)
        .map(|i| format!("{i:05}").repeat(MAX_NAME_LEN / 5))
        .collect();
    let ids: Vec<_> = names
        .iter()
        .map(|n| c.submit_withdraw(n).unwrap())
        .collect();
    c.flush().unwrap();
    for id in ids {
        assert_eq!(pool_code(c.wait(id, Some(GUARD))), ErrorCode::UnknownName);
    }
    still_serves(&pm);
}

#[test]
fn clients_over_quota_get_typed_errors_and_the_pool_stays() {
    let pm = manager_with(ManagerConfig {
        limits: Limits {
            offers: 2,
            requires: 2,
            demands: 2,
            subscriptions: 1,
            ..Limits::default()
        },
        ..ManagerConfig::default()
    });
    let ep = pm.endpoint().clone();
    let mut a = Client::connect(&ClientConfig::new(ep.clone(), "a")).unwrap();
    a.offer("a1", b"1", Attributes::new()).unwrap();
    a.offer("a2", b"2", Attributes::new()).unwrap();
    assert_eq!(
        pool_code(a.offer("a3", b"3", Attributes::new())),
        ErrorCode::QuotaExceeded
    );
    a.withdraw("a1").unwrap();
    a.offer("a3", b"3", Attributes::new()).unwrap();
    a.require("r1").unwrap();
    a.require("r2").unwrap();
    // A second require of a name is a promise of its own: it counts.
    assert_eq!(pool_code(a.require("r2")), ErrorCode::QuotaExceeded);
    assert_eq!(pool_code(a.require("r3")), ErrorCode::QuotaExceeded);
    a.retract("r1").unwrap();
    a.require("r3").unwrap();
    let w1 = a.submit_demand("later1").unwrap();
    let w2 = a.submit_demand("later2").unwrap();
    let w3 = a.submit_demand("later3").unwrap();
    a.flush().unwrap();
    assert_eq!(pool_code(a.wait(w3, Some(GUARD))), ErrorCode::QuotaExceeded);
    a.subscribe("*", EventMask::ALL, false).unwrap();
    assert_eq!(
        pool_code(a.subscribe("*", EventMask::ALL, false)),
        ErrorCode::QuotaExceeded
    );
    // Another client has its own quota, and serves the waiting demands.
    let mut b = Client::connect(&ClientConfig::new(ep, "b")).unwrap();
    b.offer("later1", b"L1", Attributes::new()).unwrap();
    b.offer("later2", b"L2", Attributes::new()).unwrap();
    assert!(matches!(
        a.wait(w1, Some(GUARD)),
        Ok(cdo::ipc::client::Reply::Data(_))
    ));
    assert!(matches!(
        a.wait(w2, Some(GUARD)),
        Ok(cdo::ipc::client::Reply::Data(_))
    ));
    let s = a.stats().unwrap();
    assert_eq!(s.objects, 4);
    assert_eq!(s.waiting_demands, 0);
    // The demands were served: the quota has room again.
    let w4 = a.submit_demand("a3").unwrap();
    assert!(a.wait(w4, Some(GUARD)).is_ok());
}

/// Starts `cdo-pm` in `runtime`, with its token in a private file; returns
/// it and the socket it printed.
fn start_pm_with_token_file(
    runtime: &std::path::Path,
    token_file: &std::path::Path,
) -> (std::process::Child, String) {
    let (pm, vars) = ipc_common::start_pm(
        std::process::Command::new(env!("CARGO_BIN_EXE_cdo-pm"))
            .arg(runtime)
            .env_remove(cdo::ipc::endpoint::TOKEN_ENV)
            .env(TOKEN_FILE_ENV, token_file)
            .env("RUST_LOG", "warn"),
    );
    assert_eq!(
        vars.get(TOKEN_FILE_ENV).map(String::as_str),
        token_file.to_str(),
        "the token stays in its file: {vars:?}"
    );
    (pm, vars[SOCKET_ENV].clone())
}

#[test]
fn the_token_stays_off_the_command_line_and_killed_managers_are_cleaned_up() {
    use std::os::unix::fs::PermissionsExt;
    let runtime = std::env::temp_dir().join(format!("cdo-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&runtime).unwrap();
    let token_file = runtime.join("token");
    let token = "secret-token-of-the-workflow";
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut first, socket) = start_pm_with_token_file(&runtime, &token_file);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", first.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(token));
    let ep = Endpoint {
        socket: socket.clone().into(),
        token: token.into(),
    };
    Client::connect(&ClientConfig::new(ep, "t")).unwrap();
    let dir = std::path::PathBuf::from(&socket)
        .parent()
        .unwrap()
        .to_path_buf();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(dir.exists(), "SIGKILL leaves the directory");
    let (mut second, _) = start_pm_with_token_file(&runtime, &token_file);
    assert!(!dir.exists(), "the next manager removed it");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    second.wait().unwrap();
    std::fs::remove_file(&token_file).unwrap();
    std::fs::remove_dir(&runtime).unwrap();
}

#[test]
fn a_client_with_too_many_untaken_notices_stops_reading_and_says_so() {
    let pm = manager();
    let ep = pm.endpoint().clone();
    let mut a = Client::connect(&ClientConfig {
        max_notices: 4,
        ..ClientConfig::new(ep.clone(), "subscriber")
    })
    .unwrap();
    a.subscribe("*", EventMask::from(cdo::EventKind::Offer), false)
        .unwrap();
    let mut b = Client::connect(&ClientConfig::new(ep, "producer")).unwrap();
    for i in 0..10 {
        b.offer(&format!("o{i}"), b"x", Attributes::new()).unwrap();
    }
    // The events come before the reply on the socket: the client keeps
    // four and reads no further.
    match a.stats() {
        Err(ClientError::NoticesFull(4)) => {}
        other => panic!("expected NoticesFull, got {other:?}"),
    }
    // Taking them lets it read on; nothing was dropped.
    for i in 0..10 {
        match a.next_notice(Some(GUARD)).unwrap() {
            Some(cdo::ipc::client::Notice::Event(e)) => assert_eq!(e.name, format!("o{i}")),
            other => panic!("expected the event of o{i}, got {other:?}"),
        }
    }
    assert_eq!(a.stats().unwrap().objects, 10);
}

#[test]
fn out_of_descriptors_the_manager_waits_and_serves_the_others() {
    use std::os::unix::process::CommandExt;
    let runtime = std::env::temp_dir().join(format!("cdo-emfile-{}", std::process::id()));
    std::fs::create_dir_all(&runtime).unwrap();
    let token = "token-of-a-manager-short-of-descriptors";
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cdo-pm"));
    command
        .arg(&runtime)
        .env(cdo::ipc::endpoint::TOKEN_ENV, token)
        .env("RUST_LOG", "error");
    // SAFETY: between fork and exec the closure only calls setrlimit, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, 48, 48).map_err(std::io::Error::from)
        });
    }
    let (mut pm, vars) = ipc_common::start_pm(&mut command);
    let ep = Endpoint {
        socket: vars[SOCKET_ENV].clone().into(),
        token: token.into(),
    };
    let mut worker = Client::connect(&ClientConfig::new(ep.clone(), "worker")).unwrap();
    worker.offer("kept", b"kept", Attributes::new()).unwrap();
    // More connections than the manager has descriptors for: its accept
    // fails with EMFILE while they wait.
    let idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&ep.socket).unwrap())
        .collect();
    // The joined client is served meanwhile (without new descriptors for
    // the manager: it already holds the segment).
    for _ in 0..10 {
        assert_eq!(worker.stats().unwrap().objects, 1);
        let view = worker.demand("kept", GUARD).unwrap();
        assert_eq!(&view[..], b"kept");
    }
    // Descriptors come back: the manager accepts and serves again.
    drop(idle);
    let mut late = None;
    eventually("a new client joins", || {
        late = Client::connect(&ClientConfig::new(ep.clone(), "late")).ok();
        late.is_some()
    });
    let view = late.unwrap().demand("kept", GUARD).unwrap();
    assert_eq!(&view[..], b"kept");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(pm.wait().unwrap().success());
    std::fs::remove_dir(&runtime).unwrap();
}
