//! Bounds on what a client may send: sizes of names, attribute maps and
//! selectors, checked on every request before the manager acts on it.
//!
//! Nesting is bounded where it is decoded (lists of values in
//! [`Value`]s, selectors in [`Selector`](crate::Selector)s);
//! attribute maps are bounded while they are decoded, here. What remains
//! after decoding (long names, large attribute values) is checked by
//! [`check_request`], so that every reply built from a request (a `Data`
//! with the offer's name and attributes, an event) fits in a frame.

use std::fmt;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::Deserializer;

use super::wire::{Attributes, ConsumerRef, ErrorCode, LifecycleRef, Msg, MAX_FRAME};
use crate::value::Value;

/// Longest object, component or group name, in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// Longest selector, in bytes.
pub const MAX_SELECTOR_LEN: usize = 4096;
/// Most attributes of one object.
pub const MAX_ATTRS: usize = 256;
/// Longest attribute key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Largest encoded size of an object's attributes, in bytes (about: each
/// value counts its bytes plus a small overhead).
pub const MAX_ATTRS_BYTES: usize = 64 * 1024;
/// Most attributes of one map that decoding accepts at all (more are a
/// malformed frame, fewer but more than [`MAX_ATTRS`] a refused request).
pub const MAX_DECODED_ATTRS: usize = 16 * MAX_ATTRS;
/// Largest first frame of a connection (the JOIN), in bytes of payload.
pub const MAX_JOIN_FRAME: usize = 4096;

// Every reply carries at most one name and one attribute map, with room to
// spare for the rest of the frame.
const _: () = assert!(MAX_NAME_LEN + MAX_ATTRS_BYTES + MAX_SELECTOR_LEN < MAX_FRAME / 4);

/// Deserializes an attribute map of at most [`MAX_DECODED_ATTRS`]
/// entries, refused while it is read, before it grows.
///
/// # Errors
/// The deserializer's error, or a custom one for too many entries.
pub fn attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Attributes, D::Error> {
    struct Bounded;

    impl<'de> Visitor<'de> for Bounded {
        type Value = Attributes;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_DECODED_ATTRS} attributes")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
            let mut attrs = Attributes::new();
            while let Some((key, value)) = map.next_entry::<String, Value>()? {
                if attrs.len() == MAX_DECODED_ATTRS {
                    return Err(A::Error::custom(format!(
                        "more than {MAX_DECODED_ATTRS} attributes"
                    )));
                }
                attrs.insert(key, value);
            }
            Ok(attrs)
        }
    }

    d.deserialize_map(Bounded)
}

/// The approximate encoded size of `v` (its bytes plus a byte of overhead
/// per value and per list).
fn value_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => 1 + s.len(),
        Value::List(items) => 1 + items.iter().map(value_size).sum::<usize>(),
        _ => 9,
    }
}

/// Whether `attrs` are within [`MAX_ATTRS`], [`MAX_KEY_LEN`] and
/// [`MAX_ATTRS_BYTES`]; why not otherwise.
///
/// # Errors
/// A message for people.
pub fn check_attributes(attrs: &Attributes) -> Result<(), String> {
    if attrs.len() > MAX_ATTRS {
        return Err(format!("more than {MAX_ATTRS} attributes"));
    }
    let mut total = 0;
    for (key, value) in attrs {
        if key.len() > MAX_KEY_LEN {
            return Err(format!(
                "attribute key of {} bytes (at most {MAX_KEY_LEN})",
                key.len()
            ));
        }
        total += 1 + key.len() + value_size(value);
    }
    if total > MAX_ATTRS_BYTES {
        return Err(format!(
            "attributes of about {total} bytes (at most {MAX_ATTRS_BYTES})"
        ));
    }
    Ok(())
}

/// The first of `names` that fit in half a frame (a reply listing names
/// informs; it must not fail to be sent).
pub fn fit_names(mut names: Vec<String>) -> Vec<String> {
    let mut total = 0;
    let keep = names
        .iter()
        .take_while(|n| {
            total += n.len() + 5;
            total <= MAX_FRAME / 2
        })
        .count();
    names.truncate(keep);
    names
}

fn check_name(what: &str, name: &str) -> Result<(), (ErrorCode, String)> {
    if name.len() > MAX_NAME_LEN {
        return Err((
            ErrorCode::Protocol,
            format!("{what} of {} bytes (at most {MAX_NAME_LEN})", name.len()),
        ));
    }
    Ok(())
}

/// The rule every CDO name follows, its length bound included: the
/// same answer as in process.
fn check_object_name(name: &str) -> Result<(), (ErrorCode, String)> {
    match crate::engine::names::invalid(name) {
        None => Ok(()),
        Some(reason) => Err((
            ErrorCode::InvalidName,
            format!("invalid object name {name:?}: {reason}"),
        )),
    }
}

/// Checks the sizes in a request from a client: names, attributes,
/// selectors.
///
/// # Errors
/// [`ErrorCode::Protocol`] for a long group or component name,
/// [`ErrorCode::InvalidName`] for an object name that is too long, has an
/// empty segment or a control character (or is empty),
/// [`ErrorCode::BadAttributes`]
/// for attributes out of bounds, [`ErrorCode::BadSelector`] for a long
/// selector; with a message for people.
pub fn check_request(msg: &Msg) -> Result<(), (ErrorCode, String)> {
    match msg {
        Msg::Join { component, .. } => check_name("component name", component),
        Msg::Offer { name, attrs, .. }
        | Msg::Lifecycle(LifecycleRef { name, attrs, .. })
        | Msg::RequireWith(ConsumerRef { name, attrs })
        | Msg::RetractWith(ConsumerRef { name, attrs }) => {
            check_object_name(name)?;
            check_attributes(attrs).map_err(|e| (ErrorCode::BadAttributes, e))
        }
        Msg::Require { name }
        | Msg::Demand { name }
        | Msg::Withdraw { name }
        | Msg::WithdrawOffer { name, .. }
        | Msg::Retract { name } => check_object_name(name),
        Msg::Subscribe(req) | Msg::SubscribeReplay(req) => {
            check_selector(&req.selector)?;
            req.group
                .as_deref()
                .map_or(Ok(()), |g| check_name("group name", g))
        }
        Msg::Query { selector, .. } => check_selector(selector),
        _ => Ok(()),
    }
}

fn check_selector(selector: &str) -> Result<(), (ErrorCode, String)> {
    if selector.len() > MAX_SELECTOR_LEN {
        return Err((
            ErrorCode::BadSelector,
            format!(
                "selector of {} bytes (at most {MAX_SELECTOR_LEN})",
                selector.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::wire::{SegmentRef, SubscribeRef};

    fn offer(name: String, attrs: Attributes) -> Msg {
        Msg::Offer {
            name,
            attrs,
            size: 1,
            segment: SegmentRef {
                segment: 1,
                offset: 0,
            },
        }
    }

    #[test]
    fn requests_within_bounds_pass() {
        let mut attrs = Attributes::new();
        attrs.insert("app.step".into(), Value::UInt(3));
        attrs.insert("app.tag".into(), Value::from("x".repeat(1000)));
        assert!(check_request(&offer("a".repeat(MAX_NAME_LEN), attrs)).is_ok());
    }

    #[test]
    fn requests_out_of_bounds_get_typed_errors() {
        let code = |m: &Msg| check_request(m).unwrap_err().0;
        let long = "n".repeat(MAX_NAME_LEN + 1);
        // An object name too long is an invalid name, as in process.
        assert_eq!(
            code(&Msg::Demand { name: long.clone() }),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(&offer(long.clone(), Attributes::new())),
            ErrorCode::InvalidName
        );
        let many: Attributes = (0..=MAX_ATTRS)
            .map(|i| (format!("app.k{i}"), Value::Int(0)))
            .collect();
        assert_eq!(code(&offer("x".into(), many)), ErrorCode::BadAttributes);
        let mut big = Attributes::new();
        big.insert("app.blob".into(), Value::from("b".repeat(MAX_ATTRS_BYTES)));
        assert_eq!(code(&offer("x".into(), big)), ErrorCode::BadAttributes);
        let mut key = Attributes::new();
        key.insert("k".repeat(MAX_KEY_LEN + 1), Value::Int(0));
        assert_eq!(code(&offer("x".into(), key)), ErrorCode::BadAttributes);
        let sub = |selector: String, group: Option<String>| {
            Msg::Subscribe(SubscribeRef {
                selector,
                kinds: 0,
                ack: false,
                group,
            })
        };
        assert_eq!(
            code(&sub("x".repeat(MAX_SELECTOR_LEN + 1), None)),
            ErrorCode::BadSelector
        );
        assert_eq!(code(&sub("*".into(), Some(long))), ErrorCode::Protocol);
        let query = Msg::Query {
            selector: "x".repeat(MAX_SELECTOR_LEN + 1),
            skip: 0,
        };
        assert_eq!(code(&query), ErrorCode::BadSelector);
    }

    #[test]
    fn name_lists_are_cut_to_fit_a_frame() {
        let names: Vec<String> = (0..1000).map(|i| format!("{i:04}").repeat(1000)).collect();
        let kept = fit_names(names.clone());
        assert!(!kept.is_empty() && kept.len() < names.len());
        assert_eq!(kept[..], names[..kept.len()]);
        let frame = crate::ipc::wire::Frame {
            id: 1,
            msg: Msg::Waiting { names: kept },
        };
        assert!(crate::ipc::wire::encode(&frame, 0, &mut Vec::new()).is_ok());
        assert_eq!(fit_names(vec!["a".into()]), ["a"]);
    }

    #[test]
    fn attribute_maps_are_bounded_while_decoded() {
        #[derive(serde::Deserialize)]
        struct Holder(#[serde(deserialize_with = "attributes")] Attributes);
        let ok: Attributes = (0..MAX_DECODED_ATTRS)
            .map(|i| (format!("k{i}"), Value::Int(0)))
            .collect();
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Holder>(&bytes).unwrap().0, ok);
        let mut many = ok;
        many.insert("one.more".into(), Value::Int(0));
        let bytes = postcard::to_allocvec(&many).unwrap();
        assert!(postcard::from_bytes::<Holder>(&bytes).is_err());
    }
}
