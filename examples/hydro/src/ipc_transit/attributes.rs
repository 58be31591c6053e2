//! The attributes of the objects of a record: the record's metadata on the
//! index and field objects, the field's name and units on the latter, and
//! the end-of-stream mark.

use cdo::ipc::wire::Attributes;
use cdo::Value;

use crate::outlet::OutletError;
use crate::record::{RecordMeta, FIELD_UNITS};
use crate::state::FIELD_NAMES;

/// Set (true) on the index objects that end the stream.
pub const END: &str = "hydro.end";

/// The attributes of an object of the record `meta`: of field `var`, or of
/// the index object for `None`.
pub fn record_attrs(meta: &RecordMeta, var: Option<usize>) -> Attributes {
    let mut attrs = Attributes::new();
    let mut put = |key: &str, value| attrs.insert(format!("hydro.{key}"), value);
    put("step", Value::UInt(meta.step));
    put("time", Value::Float(meta.time));
    put("dt", Value::Float(meta.dt));
    put("producer", Value::UInt(meta.producer.into()));
    put("nx", Value::UInt(meta.nx as u64));
    put("ny", Value::UInt(meta.ny as u64));
    put("dx", Value::Float(meta.dx));
    if let Some(var) = var {
        put("field", Value::Str(FIELD_NAMES[var].into()));
        put("units", Value::Str(FIELD_UNITS[var].into()));
    }
    attrs
}

/// The attributes of an end-of-stream index object.
pub fn end_attrs() -> Attributes {
    Attributes::from([(END.into(), Value::Bool(true))])
}

/// Whether `attrs` mark the end of the stream.
pub fn is_end(attrs: &Attributes) -> bool {
    attrs.get(END) == Some(&Value::Bool(true))
}

/// The record metadata in the attributes of the object `name`.
///
/// # Errors
/// [`OutletError::Record`] when one is missing or of the wrong type.
pub fn meta_of(name: &str, attrs: &Attributes) -> Result<RecordMeta, OutletError> {
    let get = |key: &str| {
        attrs
            .get(&format!("hydro.{key}"))
            .ok_or_else(|| OutletError::Record {
                name: name.into(),
                reason: format!("no hydro.{key}"),
            })
    };
    let bad = |key: &str, v: &Value| OutletError::Record {
        name: name.into(),
        reason: format!("hydro.{key} = {v:?}"),
    };
    let uint = |key: &str| match get(key)? {
        Value::UInt(v) => Ok(*v),
        v => Err(bad(key, v)),
    };
    let float = |key: &str| match get(key)? {
        Value::Float(v) => Ok(*v),
        v => Err(bad(key, v)),
    };
    RecordMeta::from_lookups(uint, float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let meta = RecordMeta {
            step: 20,
            time: 0.5,
            dt: 0.01,
            producer: 2,
            nx: 8,
            ny: 4,
            dx: 0.25,
        };
        let attrs = record_attrs(&meta, Some(1));
        assert_eq!(meta_of("x", &attrs).unwrap(), meta);
        assert_eq!(attrs["hydro.field"], Value::Str("rhou".into()));
        assert!(!is_end(&attrs));
        assert!(is_end(&end_attrs()));
        assert!(meta_of("x", &end_attrs()).is_err());
    }
}
