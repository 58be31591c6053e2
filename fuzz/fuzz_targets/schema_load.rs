//! The schema loader: any text either loads as a namespace or gives a typed
//! error; a loaded namespace cannot be loaded twice, and checking values of
//! every type against its keys gives an answer, never a panic.

#![no_main]

use std::collections::BTreeMap;

use cdo::config::UnknownAttributes;
use cdo::{Schema, Timestamp, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut schema = Schema::default();
    if schema.add_yaml(text, "fuzz").is_err() {
        assert_eq!(
            schema,
            Schema::default(),
            "a failed load changed the schema"
        );
        return;
    }
    let loaded = schema.clone();
    assert!(
        schema.add_yaml(text, "again").is_err(),
        "a namespace loaded twice"
    );
    assert_eq!(schema, loaded);
    let values = [
        Value::Int(-1),
        Value::UInt(1),
        Value::Float(0.5),
        Value::Str("x".into()),
        Value::Bool(false),
        Value::Timestamp(Timestamp(0)),
        Value::List(vec![Value::Str("a".into()), Value::Int(3)]),
        Value::List(Vec::new()),
    ];
    let mut user = BTreeMap::new();
    for key in [
        "app.step", "app.t", "app.tags", "app.when", "app.a", "x.y", "size",
    ] {
        for v in &values {
            for unknown in [UnknownAttributes::Reject, UnknownAttributes::Drop] {
                if let Ok(Some(checked)) = schema.check(key, v.clone(), unknown) {
                    user.insert(key.to_owned(), checked);
                }
            }
        }
    }
    if let Some(key) = schema.missing(&user) {
        assert!(!user.contains_key(&key), "{key} reported missing but set");
    }
});
