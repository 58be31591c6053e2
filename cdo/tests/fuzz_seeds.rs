//! The seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) are made
//! here: valid frames of the pool manager's protocol, selectors and schemas.
//! The test checks that the committed seeds are exactly what this file
//! makes, so they follow the protocol when it changes; run it with
//! `CDO_FUZZ_SEEDS=write` to rewrite them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cdo::ipc::handshake::{Agreed, Capabilities, Extension, Hello, Versions};
use cdo::ipc::wire::{
    encode, Attributes, ConsumerRef, DataRef, ErrorCode, EventRef, Frame, LifecycleRef, Msg,
    SchemaRef, SegmentRef, SubscribeRef, PROTOCOL_VERSION,
};
use cdo::{EventKind, Schema, Selector, Timestamp, UnknownAttributes, Value};

fn frames() -> Vec<(&'static str, Vec<Frame>)> {
    let mut attrs = Attributes::new();
    attrs.insert("app.step".into(), Value::UInt(7));
    attrs.insert("app.dt".into(), Value::Float(0.5));
    attrs.insert("app.kind".into(), Value::Str("rho".into()));
    attrs.insert("app.at".into(), Value::Timestamp(Timestamp(1_700_000_000)));
    attrs.insert(
        "app.tags".into(),
        Value::List(vec![
            Value::Bool(true),
            Value::Int(-2),
            Value::List(vec![Value::Str("x".into())]),
        ]),
    );
    let data = DataRef {
        name: "rho".into(),
        size: 4096,
        offset: 8192,
        segment: 3,
        attrs: attrs.clone(),
        object: 11,
    };
    let f = |id, msg| Frame { id, msg };
    let join = f(
        1,
        Msg::Join {
            component: "producer".into(),
            token: "0123456789abcdef".into(),
            version: PROTOCOL_VERSION,
        },
    );
    let hello = f(
        1,
        Msg::Hello(Hello {
            versions: Versions::CLIENT,
            capabilities: Capabilities::KNOWN,
            extensions: vec![Extension {
                tag: 0x7f00,
                value: vec![1, 2, 3],
            }],
        }),
    );
    vec![
        ("join", vec![join.clone()]),
        (
            "hello-join",
            vec![
                hello,
                f(
                    2,
                    Msg::Join {
                        component: "consumer".into(),
                        token: "0123456789abcdef".into(),
                        version: PROTOCOL_VERSION,
                    },
                ),
            ],
        ),
        (
            "join-offer",
            vec![
                join,
                f(
                    2,
                    Msg::Offer {
                        name: "rho".into(),
                        attrs: attrs.clone(),
                        size: 4096,
                        segment: SegmentRef {
                            segment: 1,
                            offset: 0,
                        },
                    },
                ),
            ],
        ),
        (
            "requests",
            vec![
                f(3, Msg::Require { name: "rho".into() }),
                f(4, Msg::Demand { name: "rho".into() }),
                f(
                    0,
                    Msg::Release {
                        objects: vec![11, 12],
                    },
                ),
                f(5, Msg::Retract { name: "rho".into() }),
                f(6, Msg::Withdraw { name: "rho".into() }),
                f(
                    6,
                    Msg::WithdrawOffer {
                        name: "rho".into(),
                        offer: 2,
                    },
                ),
                f(7, Msg::Forget { segment: 1 }),
                f(8, Msg::Stat),
                f(
                    9,
                    Msg::Query {
                        selector: "app.step >= 2".into(),
                        skip: 0,
                    },
                ),
                f(
                    10,
                    Msg::Lifecycle(LifecycleRef {
                        kind: EventKind::Seal,
                        name: "rho".into(),
                        attrs: attrs.clone(),
                        wait: true,
                    }),
                ),
                f(
                    0,
                    Msg::Lifecycle(LifecycleRef {
                        kind: EventKind::Declare,
                        name: "rho".into(),
                        attrs: Attributes::new(),
                        wait: false,
                    }),
                ),
                f(
                    12,
                    Msg::RequireWith(ConsumerRef {
                        name: "rho".into(),
                        attrs: attrs.clone(),
                    }),
                ),
                f(
                    13,
                    Msg::RetractWith(ConsumerRef {
                        name: "rho".into(),
                        attrs: attrs.clone(),
                    }),
                ),
                f(11, Msg::Leave),
            ],
        ),
        (
            "subscribe",
            vec![
                f(
                    10,
                    Msg::Subscribe(SubscribeRef {
                        selector: "app.step >= 2".into(),
                        kinds: 0x3ff,
                        ack: true,
                        group: None,
                    }),
                ),
                f(
                    11,
                    Msg::Subscribe(SubscribeRef {
                        selector: "*".into(),
                        kinds: 0,
                        ack: false,
                        group: Some("g".into()),
                    }),
                ),
                f(
                    12,
                    Msg::SubscribeReplay(SubscribeRef {
                        selector: "name ~ '^rho'".into(),
                        kinds: 0x3ff,
                        ack: false,
                        group: None,
                    }),
                ),
                f(13, Msg::Unsubscribe { subscription: 1 }),
                f(0, Msg::Ack { event: 5 }),
                f(0, Msg::GiveBack { event: 6 }),
            ],
        ),
        (
            "replies",
            vec![
                f(
                    1,
                    Msg::Welcome {
                        client_id: 1,
                        lease_ms: 10_000,
                    },
                ),
                f(2, Msg::Ok),
                f(
                    3,
                    Msg::Error {
                        code: ErrorCode::BadSelector,
                        text: "at 3".into(),
                    },
                ),
                f(4, Msg::Data(data.clone())),
                f(0, Msg::SegmentGone { segment: 3 }),
                f(5, Msg::Subscribed { subscription: 2 }),
                f(
                    0,
                    Msg::Event(EventRef {
                        subscription: 2,
                        event: 9,
                        kind: EventKind::Offer,
                        name: "rho".into(),
                        attrs,
                        client: 1,
                        needs_ack: true,
                        node: None,
                    }),
                ),
                f(
                    0,
                    Msg::Record {
                        subscription: 2,
                        event: 10,
                        data,
                    },
                ),
                f(
                    6,
                    Msg::Waiting {
                        names: vec!["rho".into()],
                    },
                ),
                f(7, Msg::Stats(Box::default())),
                f(8, Msg::Bye),
                f(
                    1,
                    Msg::Agreed(Agreed {
                        version: PROTOCOL_VERSION,
                        capabilities: Capabilities::KNOWN,
                        extensions: Vec::new(),
                    }),
                ),
                f(1, Msg::Schema(schema_ref())),
                f(1, Msg::InterestPage),
                f(
                    1,
                    Msg::NoCommonVersion {
                        theirs: Versions::SERVED,
                    },
                ),
                f(
                    0,
                    Msg::Refused {
                        reason: "bad token".into(),
                    },
                ),
            ],
        ),
    ]
}

/// The schema message of a manager with the first seed schema.
fn schema_ref() -> SchemaRef {
    let mut schema = Schema::default();
    schema.add_yaml(SCHEMAS[0], "seed").unwrap();
    SchemaRef::new(&schema, UnknownAttributes::Reject)
}

const SELECTORS: [&str; 8] = [
    "*",
    "",
    "app.step >= 2 and not has app.final",
    r#"name ~ "^run1/" and (size >= 1024 or not has size)"#,
    "app.kind in ['rho', \"u\"] || app.tags contains 3",
    "created >= @2024-05-01T12:00:00Z && app.dt < -1.5e3",
    "!(name == 'a\\'b\\n') or app.ok = true",
    "name != \"x\" and (app.a <= 1 or (app.b > 2.5 and app.c = false))",
];

const SCHEMAS: [&str; 3] = [
    "namespace: app\nattributes:\n  step: { type: uint, required: true }\n  temperature: float\n  tags: { type: list, items: str }\n  created: timestamp\n",
    "namespace: sim\nattributes:\n  kind: str\n  final: bool\n  n: int\n",
    "namespace: empty\n",
];

/// Every seed: (target, file name, bytes).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, frames) in frames() {
        let mut bytes = Vec::new();
        for frame in &frames {
            encode(frame, 0, &mut bytes).unwrap();
        }
        out.push(("wire_decode", name.to_owned(), bytes));
    }
    for (i, s) in SELECTORS.iter().enumerate() {
        Selector::parse(s).unwrap();
        out.push(("selector_parse", format!("sel{i}"), s.as_bytes().to_vec()));
    }
    for (i, s) in SCHEMAS.iter().enumerate() {
        Schema::default().add_yaml(s, "seed").unwrap();
        out.push(("schema_load", format!("schema{i}"), s.as_bytes().to_vec()));
    }
    out
}

#[test]
fn committed_seeds_match_the_protocol() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var("CDO_FUZZ_SEEDS").as_deref() == Ok("write");
    let mut want: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for (target, name, bytes) in seeds() {
        want.insert(root.join(target).join(name), bytes);
    }
    for (path, bytes) in &want {
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let have = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e} (CDO_FUZZ_SEEDS=write makes it)", path.display()));
        assert!(
            &have == bytes,
            "{} is stale: rewrite with CDO_FUZZ_SEEDS=write",
            path.display()
        );
    }
}
