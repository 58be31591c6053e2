//! CDO names as paths under an archive: validation and a reversible,
//! canonical percent-encoding of each component.
//!
//! A component keeps the bytes `A-Z a-z 0-9 - _`; every other byte of its
//! UTF-8 text becomes `%XX` (upper-case hex). An encoded component has no
//! dot, so it never reads as `.` or `..`, never escapes the archive and
//! never collides with the suffixed files of an entry.

use super::ArchiveError;

/// Whether `b` stays as it is in an encoded component.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The encoded components of `name`, outermost first.
///
/// # Errors
/// [`ArchiveError::BadName`] for an empty name, an empty, `.` or `..`
/// component, or a NUL byte.
pub(crate) fn encode(name: &str) -> Result<Vec<String>, ArchiveError> {
    let bad = |reason| ArchiveError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.contains('\0') {
        return Err(bad("the name holds a NUL byte"));
    }
    name.split('/')
        .map(|component| match component {
            "" => Err(bad("the name has an empty component")),
            "." | ".." => Err(bad("the name has a `.` or `..` component")),
            _ => Ok(encode_component(component)),
        })
        .collect()
}

fn encode_component(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for &b in component.as_bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The component an encoded one stands for; `None` when `encoded` is not
/// the canonical encoding of a valid component (a file the archive did
/// not write).
pub(crate) fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if plain(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    let text = String::from_utf8(out).ok()?;
    let valid = !text.is_empty() && !text.contains(['/', '\0']) && text != "." && text != "..";
    (valid && encode_component(&text) == encoded).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip_canonically() {
        let encoded = encode("hydro/check point/40.5/é%").unwrap();
        assert_eq!(encoded, ["hydro", "check%20point", "40%2E5", "%C3%A9%25"]);
        let decoded: Vec<_> = encoded.iter().map(|c| decode(c).unwrap()).collect();
        assert_eq!(decoded, ["hydro", "check point", "40.5", "é%"]);
        for stranger in ["a.b", "%2e", "%4", "%zz", "", "%2F", "%2E%2E", "%FF"] {
            assert_eq!(decode(stranger), None, "{stranger}");
        }
    }
}
