//! The selector parser: any text either parses or gives a typed error, and a
//! parsed selector evaluates against attributes of every type without
//! panicking, the same way after a second parse of its own text.

#![no_main]

use cdo::attrs::{FlatAttributes, FlatView};
use cdo::{Selector, Timestamp, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    let reparsed = Selector::parse(selector.as_str()).expect("a selector's own text parses");
    let mut attrs = FlatAttributes::new();
    attrs.insert("size".into(), Value::UInt(4096));
    attrs.insert("app.step".into(), Value::Int(-3));
    attrs.insert("app.dt".into(), Value::Float(0.25));
    attrs.insert("app.kind".into(), Value::Str("rho".into()));
    attrs.insert("app.final".into(), Value::Bool(true));
    attrs.insert(
        "app.at".into(),
        Value::Timestamp(Timestamp(1_700_000_000_000_000_000)),
    );
    attrs.insert(
        "app.tags".into(),
        Value::List(vec![Value::Str("a".into()), Value::UInt(2)]),
    );
    for name in ["rho", "", "step-10/u"] {
        let view = FlatView {
            name,
            attrs: &attrs,
        };
        assert_eq!(selector.matches(&view), reparsed.matches(&view));
    }
});
