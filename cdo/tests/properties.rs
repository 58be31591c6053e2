//! Property tests: timestamps round-trip through text, and selector
//! comparisons agree with the values' own ordering.

use cdo::{AttrView, Attributes, Selector, Timestamp, Value};
use proptest::prelude::*;

fn view_with(attrs: &Attributes) -> AttrView<'_> {
    AttrView {
        name: "p",
        version: None,
        place: None,
        attrs,
    }
}

proptest! {
    #[test]
    fn timestamps_print_and_parse_back(nanos in -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000) {
        let t = Timestamp(nanos);
        prop_assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn numeric_selectors_agree_with_integer_order(a in any::<i64>(), b in any::<i64>(), op in 0usize..6) {
        let ops = ["==", "!=", "<", "<=", ">", ">="];
        let expected = match op {
            0 => a == b,
            1 => a != b,
            2 => a < b,
            3 => a <= b,
            4 => a > b,
            _ => a >= b,
        };
        let mut attrs = Attributes::default();
        attrs.user.insert("x.v".into(), Value::Int(a));
        let sel = Selector::parse(&format!("x.v {} {b}", ops[op])).unwrap();
        prop_assert_eq!(sel.matches(&view_with(&attrs)), expected);
        let negated = Selector::parse(&format!("not (x.v {} {b})", ops[op])).unwrap();
        prop_assert_eq!(negated.matches(&view_with(&attrs)), !expected);
    }

    #[test]
    fn quoted_strings_survive_escaping(s in "[ -~]{0,20}") {
        let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut attrs = Attributes::default();
        attrs.user.insert("x.s".into(), Value::Str(s.clone()));
        let sel = Selector::parse(&format!("x.s == \"{escaped}\" and x.s in [\"{escaped}\"]")).unwrap();
        prop_assert!(sel.matches(&view_with(&attrs)));
    }
}
