//! The attributes of a record's objects: the record's metadata on the
//! index and field objects, the field's name, units, element type and shape
//! on the latter, the end-of-stream mark, and a checkpoint's.

use cdo::app::Cdo;
use cdo::{Attributes, ElementType, FlatAttributes, Priority, Value};

use crate::outlet::OutletError;
use crate::record::{RecordMeta, FIELD_UNITS};
use crate::state::FIELD_NAMES;

/// Set (true) on the index objects that end the stream.
pub const END: &str = "hydro.end";

/// The `hydro.*` record attributes of `meta`.
fn meta_values(meta: &RecordMeta) -> [(&'static str, Value); 7] {
    [
        ("hydro.step", Value::UInt(meta.step)),
        ("hydro.time", Value::Float(meta.time)),
        ("hydro.dt", Value::Float(meta.dt)),
        ("hydro.producer", Value::UInt(u64::from(meta.producer))),
        ("hydro.nx", Value::UInt(meta.nx as u64)),
        ("hydro.ny", Value::UInt(meta.ny as u64)),
        ("hydro.dx", Value::Float(meta.dx)),
    ]
}

/// Sets `priority` and the record attributes of `meta` on `cdo`.
///
/// # Errors
/// The pool's, for an attribute it refuses.
pub fn set_meta(cdo: &mut Cdo<'_>, meta: &RecordMeta, priority: Priority) -> cdo::Result<()> {
    cdo.set_priority(priority)?;
    for (key, value) in meta_values(meta) {
        cdo.set(key, value)?;
    }
    Ok(())
}

/// Sets the attributes of the object of field `var` of the record `meta`:
/// the record's, the field's name and units, `f64` cells of `ny x nx`.
///
/// # Errors
/// The pool's, for an attribute it refuses.
pub fn set_field(cdo: &mut Cdo<'_>, meta: &RecordMeta, var: usize) -> cdo::Result<()> {
    set_meta(cdo, meta, Priority::Output)?;
    cdo.set("hydro.field", FIELD_NAMES[var])?;
    cdo.set("hydro.units", FIELD_UNITS[var])?;
    cdo.set("element_type", "f64")?;
    cdo.set(
        "shape",
        Value::List(vec![
            Value::UInt(meta.ny as u64),
            Value::UInt(meta.nx as u64),
        ]),
    )?;
    let bytes = meta.nx * meta.ny * std::mem::size_of::<f64>();
    cdo.set("size", bytes as u64).map(drop)
}

/// Sets the attributes of the checkpoint CDO of `meta`, `len` bytes in the
/// [checkpoint format](crate::checkpoint): `checkpoint` priority, the
/// record attributes, untyped bytes.
///
/// # Errors
/// The pool's, for an attribute it refuses.
pub fn set_checkpoint(cdo: &mut Cdo<'_>, meta: &RecordMeta, len: usize) -> cdo::Result<()> {
    set_meta(cdo, meta, Priority::Checkpoint)?;
    cdo.set("element_type", "bytes")?;
    cdo.set("size", len as u64).map(drop)
}

/// The attributes of the checkpoint CDO of `meta` (as [`set_checkpoint`]
/// sets them), for a checkpoint archived without a pool.
pub fn checkpoint_attributes(meta: &RecordMeta, len: usize) -> Attributes {
    let mut attrs = Attributes {
        size: Some(len as u64),
        element_type: Some(ElementType::Bytes),
        priority: Priority::Checkpoint,
        ..Attributes::default()
    };
    attrs.user.extend(
        meta_values(meta)
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    attrs
}

/// Sets the end-of-stream mark on an index object.
///
/// # Errors
/// The pool's, for an attribute it refuses.
pub fn set_end(cdo: &mut Cdo<'_>) -> cdo::Result<()> {
    cdo.set(END, true).map(drop)
}

/// Whether `attrs` mark the end of the stream.
pub fn is_end(attrs: &FlatAttributes) -> bool {
    attrs.get(END) == Some(&Value::Bool(true))
}

/// The record metadata in the attributes of the object `name`.
///
/// # Errors
/// [`OutletError::Record`] when one is missing or of the wrong type.
pub fn meta_of(name: &str, attrs: &FlatAttributes) -> Result<RecordMeta, OutletError> {
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
    fn metadata_round_trips_through_a_pool() {
        let config = mamba::Config {
            gpu: false,
            ..Default::default()
        };
        let mamba = std::sync::Arc::new(mamba::Mamba::discover(&config).unwrap());
        let policy = mamba::Policy::highest_bandwidth();
        let pool = super::super::in_process_pool(mamba, &policy).unwrap();
        let meta = RecordMeta {
            step: 20,
            time: 0.5,
            dt: 0.01,
            producer: 2,
            nx: 8,
            ny: 4,
            dx: 0.25,
        };
        let mut field = pool.declare("hydro/output/0/rhou").unwrap();
        set_field(&mut field, &meta, 1).unwrap();
        let attrs = field.attributes().flatten();
        assert_eq!(meta_of("x", &attrs).unwrap(), meta);
        assert_eq!(attrs["hydro.field"], Value::Str("rhou".into()));
        assert_eq!(attrs["size"], Value::UInt(8 * 4 * 8));
        assert!(!is_end(&attrs));

        let mut end = pool.declare("hydro/output/1").unwrap();
        set_end(&mut end).unwrap();
        let attrs = end.attributes().flatten();
        assert!(is_end(&attrs));
        assert!(meta_of("x", &attrs).is_err());

        let mut checkpoint = pool.declare("hydro/checkpoint/20").unwrap();
        set_checkpoint(&mut checkpoint, &meta, 40).unwrap();
        assert_eq!(checkpoint.attributes(), &checkpoint_attributes(&meta, 40));
        let attrs = checkpoint.attributes().flatten();
        assert_eq!(attrs["priority"], Value::from("checkpoint"));
        assert_eq!(meta_of("x", &attrs).unwrap(), meta);
    }
}
