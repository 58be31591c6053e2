//! What may name a CDO, in either deployment: non-empty `/`-separated
//! segments without control characters, at most
//! [`MAX_NAME_LEN`] bytes; and how a CDO group names its members: a group
//! `g` is its members `g/<member>` and a manifest `g` whose [`MEMBERS`]
//! attribute lists their full names.

use crate::ipc::limits::MAX_NAME_LEN;
use crate::value::Value;

/// The attribute of a CDO group's manifest that lists its members' full
/// names, in offer order.
pub const MEMBERS: &str = "members";

/// The full name of member `member` of CDO group `group`.
///
/// ```
/// assert_eq!(cdo::engine::names::member_name("run1/step42", "rho"), "run1/step42/rho");
/// ```
pub fn member_name(group: &str, member: &str) -> String {
    format!("{group}/{member}")
}

/// The [`MEMBERS`] value listing `names`.
pub fn members_value<'a>(names: impl IntoIterator<Item = &'a String>) -> Value {
    Value::List(names.into_iter().cloned().map(Value::Str).collect())
}

/// The full names a [`MEMBERS`] value lists; `None` unless it is a list of
/// texts.
pub fn members_listed(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// [`invalid`] as the error an application gets.
pub(crate) fn check(name: &str) -> crate::Result<()> {
    match invalid(name) {
        None => Ok(()),
        Some(reason) => Err(crate::Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Why `name` cannot name a CDO (or a CDO group); `None` when it can.
pub fn invalid(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("too long");
    }
    // One pass over the bytes (every operation on a name checks it): a
    // `/` first, last or after another `/` opens an empty segment.
    let mut after_slash = true;
    let mut empty_segment = false;
    let mut control = false;
    for &b in name.as_bytes() {
        let slash = b == b'/';
        empty_segment |= slash && after_slash;
        control |= b.is_ascii_control();
        after_slash = slash;
    }
    if empty_segment || after_slash {
        Some("empty path segment")
    } else if control {
        Some("control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_segments_without_control_characters() {
        for good in [
            "a",
            "run1/step42/rho",
            "a/./b",
            "x".repeat(MAX_NAME_LEN).as_str(),
        ] {
            assert_eq!(invalid(good), None, "{good:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for (bad, why) in [
            ("", "empty"),
            ("/a", "empty path segment"),
            ("a/", "empty path segment"),
            ("a//b", "empty path segment"),
            ("a\nb", "control character"),
            ("a\n//b", "empty path segment"),
            ("/", "empty path segment"),
            (long.as_str(), "too long"),
        ] {
            assert_eq!(invalid(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn a_members_list_is_texts_and_reads_back() {
        let names = vec![member_name("g", "a"), member_name("g", "b/c")];
        let value = members_value(&names);
        assert_eq!(members_listed(&value), Some(names));
        assert_eq!(members_listed(&Value::List(vec![Value::UInt(1)])), None);
        assert_eq!(members_listed(&Value::Str("g/a".into())), None);
    }
}
