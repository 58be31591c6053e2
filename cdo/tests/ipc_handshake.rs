//! The opening of a connection (client protocol 9): HELLO with a version
//! range, capabilities and extensions; AGREED or NO-COMMON-VERSION; JOIN.
//! Older (protocol 8) clients still join with a plain JOIN, and clients
//! of other versions are refused clearly while the manager serves others.

mod ipc_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig, ClientError};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::handshake::{
    Agreed, Capabilities, Extension, Hello, Versions, MAX_EXTENSIONS, OLDEST_PROTOCOL_VERSION,
};
use cdo::ipc::manager::{ManagerConfig, ManagerHandle};
use cdo::ipc::wire::{
    decode, encode, ErrorCode, Frame, Msg, SubscribeRef, HEADER_LEN, PROTOCOL_VERSION,
};
use cdo::EventMask;

const WAIT: Duration = Duration::from_secs(10);

fn hello(min: u32, max: u32, capabilities: Capabilities) -> Msg {
    Msg::Hello(Hello {
        versions: Versions { min, max },
        capabilities,
        extensions: Vec::new(),
    })
}

fn join(ep: &Endpoint, version: u32) -> Msg {
    Msg::Join {
        component: "raw".into(),
        token: ep.token.clone(),
        version,
    }
}

/// A raw connection to `ep`'s manager.
struct Raw {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(ep: &Endpoint) -> Raw {
        let sock = UnixStream::connect(&ep.socket).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        Raw {
            sock,
            buf: Vec::new(),
        }
    }

    /// Sends `msgs` as frames with request ids 1, 2, ...
    fn send(&mut self, msgs: Vec<Msg>) {
        let mut out = Vec::new();
        for (id, msg) in (1..).zip(msgs) {
            encode(&Frame { id, msg }, 0, &mut out).unwrap();
        }
        self.send_bytes(&out);
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    /// The next frame; `None` when the manager closed the connection.
    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(d) = decode(&self.buf).unwrap() {
                self.buf.drain(..d.consumed);
                return Some(d.frame);
            }
            let mut chunk = [0u8; 4096];
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "closed inside a frame");
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no frame from the manager: {e}"),
            }
        }
    }

    /// Every frame until the manager closes the connection.
    fn rest(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn agreed(frame: Option<Frame>) -> Agreed {
    match frame {
        Some(Frame {
            id: 1,
            msg: Msg::Agreed(a),
        }) => a,
        other => panic!("expected AGREED, got {other:?}"),
    }
}

fn assert_welcome(frame: Option<Frame>) {
    assert!(
        matches!(
            frame,
            Some(Frame {
                id: 2,
                msg: Msg::Welcome { .. }
            })
        ),
        "expected WELCOME, got {frame:?}"
    );
}

/// A refusal and then the end of the connection: its reason.
fn refusal(raw: &mut Raw) -> String {
    match &raw.rest()[..] {
        [Frame {
            msg: Msg::Refused { reason },
            ..
        }] => reason.clone(),
        other => panic!("expected one REFUSED, then the end; got {other:?}"),
    }
}

/// The manager still serves: a new client joins, offers and reads back.
fn still_serving(pm: &ManagerHandle) {
    let mut c = ipc_common::client(pm, "after");
    c.offer("still", b"served", Default::default()).unwrap();
    assert_eq!(&*c.demand("still", WAIT).unwrap(), b"served");
    c.withdraw("still").unwrap();
}

#[test]
fn the_highest_common_version_is_agreed_and_joined() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    // A newer client that also speaks ours: ours, the highest common.
    let mut raw = Raw::connect(ep);
    raw.send(vec![
        hello(7, PROTOCOL_VERSION + 3, Capabilities::KNOWN),
        join(ep, PROTOCOL_VERSION),
    ]);
    let a = agreed(raw.next());
    assert_eq!(a.version, PROTOCOL_VERSION);
    assert_eq!(a.capabilities, Capabilities::KNOWN);
    assert_welcome(raw.next());
    // An older one: the oldest served.
    let mut old = Raw::connect(ep);
    old.send(vec![
        hello(3, OLDEST_PROTOCOL_VERSION, Capabilities::KNOWN),
        join(ep, OLDEST_PROTOCOL_VERSION),
    ]);
    assert_eq!(agreed(old.next()).version, OLDEST_PROTOCOL_VERSION);
    assert_welcome(old.next());
    // A JOIN with another version than the agreed one is refused.
    let mut liar = Raw::connect(ep);
    liar.send(vec![
        hello(
            OLDEST_PROTOCOL_VERSION,
            PROTOCOL_VERSION,
            Capabilities::NONE,
        ),
        join(ep, OLDEST_PROTOCOL_VERSION),
    ]);
    assert_eq!(agreed(liar.next()).version, PROTOCOL_VERSION);
    let reason = refusal(&mut liar);
    assert!(reason.contains("after agreeing"), "{reason}");

    // A client has its own requires hold its withdrawals only when it
    // asks for it.
    let c = ipc_common::client(&pm, "new");
    let plain = Capabilities::KNOWN.without(Capabilities::OWN_REQUIRES);
    assert_eq!(c.capabilities(), plain);
    ipc_common::wait_for(&pm, |s| s.clients == 3);
    let config = ClientConfig {
        own_requires: true,
        ..ClientConfig::new(pm.endpoint().clone(), "app")
    };
    let app = Client::connect(&config).unwrap();
    assert_eq!(app.capabilities(), Capabilities::KNOWN);
    drop((c, app));
}

#[test]
fn capabilities_are_the_intersection() {
    let pm = ipc_common::manager_with(ManagerConfig {
        capabilities: Capabilities::MEMFD,
        ..ManagerConfig::default()
    });
    let ep = pm.endpoint();
    let mut raw = Raw::connect(ep);
    let wanted = Capabilities::REPLAY | Capabilities::MEMFD | Capabilities::from_bits(1 << 50);
    raw.send(vec![
        hello(PROTOCOL_VERSION, PROTOCOL_VERSION, wanted),
        join(ep, PROTOCOL_VERSION),
    ]);
    assert_eq!(agreed(raw.next()).capabilities, Capabilities::MEMFD);
    assert_welcome(raw.next());

    // The client does not ask for what was not agreed...
    let mut c = ipc_common::client(&pm, "no-replay");
    assert_eq!(c.capabilities(), Capabilities::MEMFD);
    match c.subscribe_replay("*", EventMask::ALL, false) {
        Err(e @ ClientError::NotAgreed(Capabilities::REPLAY)) => {
            assert!(e.to_string().contains("replay"), "{e}")
        }
        other => panic!("expected NotAgreed, got {other:?}"),
    }
    // ...and the manager refuses it from a client that asks anyway,
    // keeping the connection.
    let req = SubscribeRef {
        selector: "*".into(),
        kinds: EventMask::ALL.bits(),
        ack: false,
        group: None,
    };
    let mut out = Vec::new();
    let msg = Msg::SubscribeReplay(req);
    encode(&Frame { id: 3, msg }, 0, &mut out).unwrap();
    encode(
        &Frame {
            id: 4,
            msg: Msg::Stat,
        },
        0,
        &mut out,
    )
    .unwrap();
    raw.send_bytes(&out);
    match raw.next() {
        Some(Frame {
            id: 3,
            msg: Msg::Error { code, text },
        }) => {
            assert_eq!(code, ErrorCode::Protocol);
            assert!(text.contains("replay"), "{text}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(
        raw.next(),
        Some(Frame {
            id: 4,
            msg: Msg::Stats(_)
        })
    ));
    // Nothing subscribed.
    assert_eq!(c.stats().unwrap().subscriptions, 0);

    // A group record given back needs its capability too.
    let mut out = Vec::new();
    let msg = Msg::GiveBack { event: 1 };
    encode(&Frame { id: 5, msg }, 0, &mut out).unwrap();
    raw.send_bytes(&out);
    match raw.next() {
        Some(Frame {
            id: 5,
            msg: Msg::Error { code, text },
        }) => {
            assert_eq!(code, ErrorCode::Protocol);
            assert!(text.contains("give-back"), "{text}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn unknown_extension_tags_are_skipped() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    let mut raw = Raw::connect(ep);
    let extensions = vec![
        Extension {
            tag: 0xbeef,
            value: vec![0xa5; 100],
        },
        Extension {
            tag: 3,
            value: Vec::new(),
        },
    ];
    raw.send(vec![
        Msg::Hello(Hello {
            versions: Versions {
                min: PROTOCOL_VERSION,
                max: PROTOCOL_VERSION + 5,
            },
            capabilities: Capabilities::REPLAY,
            extensions,
        }),
        join(ep, PROTOCOL_VERSION),
    ]);
    let a = agreed(raw.next());
    assert_eq!(a.version, PROTOCOL_VERSION);
    assert_eq!(a.capabilities, Capabilities::REPLAY);
    assert!(a.extensions.is_empty());
    assert_welcome(raw.next());
}

#[test]
fn clients_with_no_common_version_are_refused_and_others_served() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    let mut keep = ipc_common::client(&pm, "kept");
    keep.offer("kept", b"here", Default::default()).unwrap();
    // A "v3" client facing our v2 (and one older than we serve).
    for (min, max) in [
        (PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 3),
        (2, OLDEST_PROTOCOL_VERSION - 1),
    ] {
        let mut raw = Raw::connect(ep);
        raw.send(vec![hello(min, max, Capabilities::KNOWN), join(ep, max)]);
        match &raw.rest()[..] {
            [Frame {
                id: 1,
                msg: Msg::NoCommonVersion { theirs },
            }] => assert_eq!(*theirs, Versions::SERVED),
            other => panic!("expected NO-COMMON-VERSION then the end, got {other:?}"),
        }
    }
    assert_eq!(&*keep.demand("kept", WAIT).unwrap(), b"here");
    still_serving(&pm);
}

#[test]
fn a_client_facing_a_manager_without_its_version_gets_a_typed_error() {
    let pm = ipc_common::manager_with(ManagerConfig {
        versions: Versions {
            min: OLDEST_PROTOCOL_VERSION,
            max: OLDEST_PROTOCOL_VERSION,
        },
        ..ManagerConfig::default()
    });
    let config = ClientConfig::new(pm.endpoint().clone(), "too-new");
    match Client::connect(&config) {
        Err(e @ ClientError::NoCommonVersion { ours, theirs }) => {
            assert_eq!(ours, Versions::CLIENT);
            assert_eq!(theirs.max, OLDEST_PROTOCOL_VERSION);
            let text = e.to_string();
            assert!(
                text.contains(&format!("protocol {PROTOCOL_VERSION}")),
                "{text}"
            );
            assert!(
                text.contains(&format!("protocol {OLDEST_PROTOCOL_VERSION}")),
                "{text}"
            );
        }
        Err(other) => panic!("expected NoCommonVersion, got {other}"),
        Ok(_) => panic!("joined a manager without our version"),
    }
    // Old clients are what it serves, with HELLO or without.
    let ep = pm.endpoint();
    let mut old = Raw::connect(ep);
    old.send(vec![
        hello(
            OLDEST_PROTOCOL_VERSION,
            PROTOCOL_VERSION,
            Capabilities::KNOWN,
        ),
        join(ep, OLDEST_PROTOCOL_VERSION),
    ]);
    assert_eq!(agreed(old.next()).version, OLDEST_PROTOCOL_VERSION);
    assert_welcome(old.next());
    let mut v8 = Raw::connect(ep);
    v8.send(vec![join(ep, OLDEST_PROTOCOL_VERSION)]);
    assert!(matches!(
        v8.next(),
        Some(Frame {
            msg: Msg::Welcome { .. },
            ..
        })
    ));
    ipc_common::wait_for(&pm, |s| s.clients == 2);
}

#[test]
fn a_protocol_8_join_still_works() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    let mut raw = Raw::connect(ep);
    let mut out = Vec::new();
    let msg = join(ep, OLDEST_PROTOCOL_VERSION);
    encode(&Frame { id: 2, msg }, 0, &mut out).unwrap();
    encode(
        &Frame {
            id: 3,
            msg: Msg::Stat,
        },
        0,
        &mut out,
    )
    .unwrap();
    raw.send_bytes(&out);
    assert_welcome(raw.next());
    match raw.next() {
        Some(Frame {
            id: 3,
            msg: Msg::Stats(s),
        }) => assert_eq!(s.clients, 1),
        other => panic!("expected STATS, got {other:?}"),
    }
    // A manager that serves only protocol 9 refuses it, saying why.
    let pm9 = ipc_common::manager_with(ManagerConfig {
        versions: Versions::CLIENT,
        ..ManagerConfig::default()
    });
    let mut raw = Raw::connect(pm9.endpoint());
    raw.send(vec![join(pm9.endpoint(), OLDEST_PROTOCOL_VERSION)]);
    let reason = refusal(&mut raw);
    assert!(
        reason.contains(&format!("protocol {PROTOCOL_VERSION}")),
        "{reason}"
    );
    still_serving(&pm9);
}

#[test]
fn malformed_hellos_are_refused_without_harm() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    let many = vec![
        Extension {
            tag: 1,
            value: Vec::new(),
        };
        MAX_EXTENSIONS + 1
    ];
    let bad = [
        (
            hello(PROTOCOL_VERSION + 1, PROTOCOL_VERSION, Capabilities::NONE),
            "empty version range",
        ),
        (
            Msg::Hello(Hello {
                versions: Versions::CLIENT,
                capabilities: Capabilities::NONE,
                extensions: many,
            }),
            "extensions",
        ),
    ];
    for (msg, why) in bad {
        let mut raw = Raw::connect(ep);
        raw.send(vec![msg, join(ep, PROTOCOL_VERSION)]);
        let reason = refusal(&mut raw);
        assert!(reason.contains(why), "{reason}");
    }
    // HELLO twice.
    let mut raw = Raw::connect(ep);
    raw.send(vec![
        hello(PROTOCOL_VERSION, PROTOCOL_VERSION, Capabilities::NONE),
        hello(PROTOCOL_VERSION, PROTOCOL_VERSION, Capabilities::NONE),
    ]);
    agreed(raw.next());
    let reason = refusal(&mut raw);
    assert!(reason.contains("not JOIN"), "{reason}");
    // A HELLO cut short inside its payload, and one with bytes after it:
    // the frame is whole, its payload is not a HELLO.
    let mut whole = Vec::new();
    let msg = hello(PROTOCOL_VERSION, PROTOCOL_VERSION, Capabilities::KNOWN);
    encode(&Frame { id: 1, msg }, 0, &mut whole).unwrap();
    let payload = &whole[HEADER_LEN..];
    for body in [
        &payload[..payload.len() - 2],
        &[payload, &[0xff, 0xff]].concat()[..],
    ] {
        let mut frame = b"CD\x01\x00".to_vec();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(body);
        let mut raw = Raw::connect(ep);
        raw.send_bytes(&frame);
        let reason = refusal(&mut raw);
        assert!(reason.contains("bad HELLO or JOIN"), "{reason}");
    }
    // The HELLO half sent, then the connection closed.
    let mut raw = Raw::connect(ep);
    raw.send_bytes(&whole[..whole.len() / 2]);
    drop(raw);
    still_serving(&pm);
    ipc_common::eventually("no connection left waiting to join", || {
        pm.connections().1 == 0
    });
}
