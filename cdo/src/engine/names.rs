//! What may name a CDO, in either deployment: non-empty `/`-separated
//! segments without control characters, at most
//! [`MAX_NAME_LEN`] bytes.

use crate::ipc::limits::MAX_NAME_LEN;

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
}
