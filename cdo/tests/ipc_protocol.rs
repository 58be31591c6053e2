//! The control protocol: round trips, fuzzing of the decoder, and a manager
//! that closes only the connection that sent garbage.

mod ipc_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::handshake::{Agreed, Capabilities, Extension, Hello, Versions};
use cdo::ipc::wire::{
    decode, encode, need, Attributes, ConsumerRef, DataRef, ErrorCode, EventRef, Frame, Msg,
    SegmentRef, Stats, SubscribeRef, WireError, HEADER_LEN, MAX_FRAME, PROTOCOL_VERSION,
};
use cdo::{EventKind, Timestamp, Value};
use proptest::prelude::*;

fn attr_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        proptest::collection::vec(inner, 0..4).prop_map(Value::List)
    })
}

fn attrs() -> impl Strategy<Value = Attributes> {
    proptest::collection::btree_map("[a-z]{1,6}", attr_value(), 0..4)
}

fn msg() -> impl Strategy<Value = Msg> {
    let name = ".{0,24}";
    prop_oneof![
        (name, name, any::<u32>()).prop_map(|(component, token, version)| Msg::Join {
            component,
            token,
            version
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(client_id, lease_ms)| Msg::Welcome {
            client_id,
            lease_ms
        }),
        name.prop_map(|reason| Msg::Refused { reason }),
        Just(Msg::Leave),
        Just(Msg::Bye),
        proptest::collection::vec(name, 0..3).prop_map(|names| Msg::Waiting { names }),
        (name, attrs(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(name, attrs, size, segment, offset)| {
                Msg::Offer {
                    name,
                    attrs,
                    size,
                    segment: SegmentRef { segment, offset },
                }
            }
        ),
        name.prop_map(|name| Msg::Require { name }),
        name.prop_map(|name| Msg::Demand { name }),
        (
            name,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            attrs(),
            any::<u64>()
        )
            .prop_map(|(name, size, offset, segment, attrs, object)| {
                Msg::Data(DataRef {
                    name,
                    size,
                    offset,
                    segment,
                    attrs,
                    object,
                })
            }),
        proptest::collection::vec(any::<u64>(), 0..8).prop_map(|objects| Msg::Release { objects }),
        name.prop_map(|name| Msg::Withdraw { name }),
        name.prop_map(|name| Msg::Retract { name }),
        (name, attrs()).prop_map(|(name, attrs)| Msg::RequireWith(ConsumerRef { name, attrs })),
        (name, attrs()).prop_map(|(name, attrs)| Msg::RetractWith(ConsumerRef { name, attrs })),
        any::<u64>().prop_map(|segment| Msg::Forget { segment }),
        any::<u64>().prop_map(|segment| Msg::SegmentGone { segment }),
        Just(Msg::Ok),
        name.prop_map(|text| Msg::Error {
            code: ErrorCode::ProducerDied,
            text
        }),
        Just(Msg::Stat),
        any::<[u64; 17]>().prop_map(|v| Msg::Stats(Box::new(Stats {
            clients: v[0],
            objects: v[1],
            segments: v[2],
            requires: v[3],
            waiting_demands: v[4],
            pending_leaves: v[5],
            offered_bytes: v[6],
            subscriptions: v[7],
            queued_records: v[8],
            awaited_acks: v[9],
            offers_total: v[10],
            views_total: v[11],
            view_bytes_total: v[12],
            events_total: v[13],
            uptime_ms: v[14],
            queued_bytes: v[15],
            dropped_events: v[16],
        }))),
        subscription_msg(),
    ]
}

/// The messages of subscriptions, events and consumer groups.
fn subscription_msg() -> impl Strategy<Value = Msg> {
    let name = ".{0,24}";
    let kind = prop_oneof![
        Just(EventKind::Offer),
        Just(EventKind::Withdraw),
        Just(EventKind::Join),
        Just(EventKind::Leave),
    ];
    prop_oneof![
        (
            name,
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(name)
        )
            .prop_map(
                |(selector, kinds, ack, group)| Msg::Subscribe(SubscribeRef {
                    selector,
                    kinds,
                    ack,
                    group
                })
            ),
        any::<u64>().prop_map(|subscription| Msg::Subscribed { subscription }),
        any::<u64>().prop_map(|subscription| Msg::Unsubscribe { subscription }),
        (
            any::<[u64; 3]>(),
            kind,
            name,
            attrs(),
            any::<bool>(),
            proptest::option::of(name)
        )
            .prop_map(
                |(ids, kind, name, attrs, needs_ack, node)| Msg::Event(EventRef {
                    subscription: ids[0],
                    event: ids[1],
                    kind,
                    name,
                    attrs,
                    client: ids[2],
                    needs_ack,
                    node,
                })
            ),
        (any::<[u64; 6]>(), name, attrs()).prop_map(|(ids, name, attrs)| Msg::Record {
            subscription: ids[0],
            event: ids[1],
            data: DataRef {
                name,
                size: ids[2],
                offset: ids[3],
                segment: ids[4],
                attrs,
                object: ids[5],
            },
        }),
        any::<u64>().prop_map(|event| Msg::Ack { event }),
        (any::<[u32; 2]>(), any::<u64>(), extensions()).prop_map(
            |([min, max], bits, extensions)| {
                Msg::Hello(Hello {
                    versions: Versions { min, max },
                    capabilities: Capabilities::from_bits(bits),
                    extensions,
                })
            }
        ),
        (any::<u32>(), any::<u64>(), extensions()).prop_map(|(version, bits, extensions)| {
            Msg::Agreed(Agreed {
                version,
                capabilities: Capabilities::from_bits(bits),
                extensions,
            })
        }),
        any::<[u32; 2]>().prop_map(|[min, max]| Msg::NoCommonVersion {
            theirs: Versions { min, max }
        }),
        (name, any::<u16>()).prop_map(|(selector, kinds)| Msg::SubscribeReplay(SubscribeRef {
            selector,
            kinds,
            ack: false,
            group: None
        })),
    ]
}

fn extensions() -> impl Strategy<Value = Vec<Extension>> {
    proptest::collection::vec(
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(tag, value)| Extension { tag, value }),
        0..3,
    )
}

fn frame() -> impl Strategy<Value = (Frame, u8)> {
    (any::<u64>(), msg(), 0u8..=1).prop_map(|(id, msg, fds)| (Frame { id, msg }, fds))
}

/// Decodes everything in `buf`; never panics, stops at the first error.
fn decode_all(mut buf: &[u8]) -> Result<Vec<Frame>, WireError> {
    let mut out = Vec::new();
    while let Some(d) = decode(buf)? {
        out.push(d.frame);
        buf = &buf[d.consumed..];
    }
    match need(buf) {
        None => Ok(out),
        Some(e) => Err(e),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips((f, fds) in frame()) {
        let mut buf = Vec::new();
        encode(&f, fds, &mut buf).unwrap();
        let d = decode(&buf).unwrap().unwrap();
        prop_assert_eq!(d.consumed, buf.len());
        prop_assert_eq!(d.fds, fds);
        prop_assert_eq!(d.frame, f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&bytes);
    }

    #[test]
    fn arbitrary_payload_behind_a_valid_header_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        fds in 0u8..=1,
    ) {
        let mut buf = b"CD\x01".to_vec();
        buf.push(fds);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        if let Ok(Some(d)) = decode(&buf) {
            // Whatever decodes must re-encode to something that decodes the same.
            let mut again = Vec::new();
            encode(&d.frame, d.fds, &mut again).unwrap();
            prop_assert_eq!(decode(&again).unwrap().unwrap().frame, d.frame);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        (f, fds) in frame(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        encode(&f, fds, &mut buf).unwrap();
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] ^= byte;
        }
        if truncate {
            buf.truncate(cut.index(buf.len()));
        }
        match decode_all(&buf) {
            Ok(frames) => prop_assert!(frames.len() <= 1),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn oversized_and_truncated_frames_are_typed_errors() {
    let mut head = b"CD\x01\x00".to_vec();
    head.extend_from_slice(&((MAX_FRAME + 1) as u32).to_le_bytes());
    assert!(matches!(decode(&head), Err(WireError::Oversized { .. })));
    let mut buf = Vec::new();
    encode(
        &Frame {
            id: 1,
            msg: Msg::Stat,
        },
        0,
        &mut buf,
    )
    .unwrap();
    assert!(matches!(
        decode_all(&buf[..buf.len() - 1]),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(&buf[..HEADER_LEN - 1]),
        Err(WireError::Truncated {
            need: HEADER_LEN,
            ..
        })
    ));
}

#[test]
fn garbage_closes_only_that_connection() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint().clone();
    let mut good = Client::connect(&ClientConfig::new(ep.clone(), "good")).unwrap();
    good.offer("kept", b"still here", Attributes::new())
        .unwrap();

    let mut raw = UnixStream::connect(&ep.socket).unwrap();
    let mut buf = Vec::new();
    let join = Msg::Join {
        component: "raw".into(),
        token: ep.token.clone(),
        version: PROTOCOL_VERSION,
    };
    encode(&Frame { id: 1, msg: join }, 0, &mut buf).unwrap();
    raw.write_all(&buf).unwrap();
    raw.write_all(b"CD\x01\x00\xff\xff\xff\xff garbage")
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got)
        .expect("the manager closes the connection");
    assert_eq!(decode_all(&got).unwrap().len(), 1, "only WELCOME came back");

    let view = good.demand("kept", Duration::from_secs(5)).unwrap();
    assert_eq!(&*view, b"still here");
    assert_eq!(good.stats().unwrap().clients, 1);
}

#[test]
fn other_protocol_version_is_refused() {
    let pm = ipc_common::manager();
    let ep = pm.endpoint();
    let mut raw = UnixStream::connect(&ep.socket).unwrap();
    let mut buf = Vec::new();
    let join = Msg::Join {
        component: "future".into(),
        token: ep.token.clone(),
        version: PROTOCOL_VERSION + 1,
    };
    encode(&Frame { id: 1, msg: join }, 0, &mut buf).unwrap();
    raw.write_all(&buf).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got).unwrap();
    match &decode_all(&got).unwrap()[..] {
        [Frame {
            msg: Msg::Refused { reason },
            ..
        }] => assert!(reason.contains("version"), "{reason}"),
        other => panic!("expected REFUSED, got {other:?}"),
    }
}
