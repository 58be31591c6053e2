//! What may name a CDO, in either deployment: non-empty `/`-separated
//! segments without control characters, at most
//! [`MAX_NAME_LEN`] bytes.

use crate::ipc::limits::MAX_NAME_LEN;

/// Why `name` cannot name a CDO (or a CDO group); `None` when it can.
pub fn invalid(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("too long")
    } else if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        Some("empty path segment")
    } else if name.bytes().any(|b| b.is_ascii_control()) {
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
            (long.as_str(), "too long"),
        ] {
            assert_eq!(invalid(bad), Some(why), "{bad:?}");
        }
    }
}
