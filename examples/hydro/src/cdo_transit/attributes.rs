//! How a record looks in the CDO pool: names, the `hydro` attribute
//! namespace, the consumer groups' selectors, and the decoding of a record
//! from its attributes and data views.

use cdo::{Attributes, Cdo, Data, ElementType, Layout, Order, Pool, Priority, Value};

use crate::outlet::OutletError;
use crate::record::{RecordMeta, RecordView, FIELD_UNITS};
use crate::state::{FIELD_NAMES, NVAR};

/// The user-attribute schema of the records (namespace `hydro`).
pub const SCHEMA: &str = "\
namespace: hydro
attributes:
  step: { type: uint, required: true }
  time: { type: float, required: true }
  dt: { type: float, required: true }
  producer: { type: uint, required: true }
  nx: { type: uint, required: true }
  ny: { type: uint, required: true }
  dx: { type: float, required: true }
  field: str
  units: str
";

/// Consumer group of the statistics consumer.
pub const STATS_GROUP: &str = "hydro-stats";
/// Consumer group of the renderers.
pub const RENDER_GROUP: &str = "hydro-render";
/// Consumer group of the checkpoint archiver.
pub const CHECKPOINT_GROUP: &str = "hydro-checkpoints";
/// The offers the output groups stream: the manifests of output records
/// (the members, named under them, hold the data).
pub const OUTPUT_SELECTOR: &str = "name ~ '^hydro/output/[0-9]+$' and has members";
/// The offers the checkpoint archiver streams.
pub const CHECKPOINT_SELECTOR: &str = "priority == 'checkpoint'";

/// The CDO group of the output record of `step`.
pub fn output_name(step: u64) -> String {
    format!("hydro/output/{step}")
}

/// The name of a checkpoint CDO before its step.
const CHECKPOINT_PREFIX: &str = "hydro/checkpoint/";

/// The checkpoint CDO of `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{step}")
}

/// The pool of a run over `mamba`, with the `hydro` schema.
///
/// # Errors
/// [`OutletError::Cdo`] when the schema does not load.
pub fn new_pool(mamba: std::sync::Arc<mamba::Mamba>) -> Result<Pool, OutletError> {
    let mut schema = cdo::Schema::default();
    schema.add_yaml(SCHEMA, "hydro")?;
    let transport = Box::new(cdo::LocalTransport::new(std::sync::Arc::clone(&mamba)));
    Ok(Pool::with_parts(
        mamba,
        cdo::PoolConfig::default(),
        schema,
        transport,
    ))
}

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

/// Sets the record attributes of `meta` and `priority` on `cdo`.
pub fn set_meta(cdo: &mut Cdo<'_>, meta: &RecordMeta, priority: Priority) -> cdo::Result<()> {
    cdo.set_priority(priority)?;
    for (key, value) in meta_values(meta) {
        cdo.set(key, value)?;
    }
    Ok(())
}

/// Sets the attributes of field `var` (name, units, `f64` array of
/// `ny x nx`) on `cdo`.
pub fn set_field(cdo: &mut Cdo<'_>, var: usize, meta: &RecordMeta) -> cdo::Result<()> {
    cdo.set("hydro.field", FIELD_NAMES[var])?;
    cdo.set("hydro.units", FIELD_UNITS[var])?;
    cdo.set_element_type(ElementType::F64)?;
    cdo.set_layout(Layout {
        shape: vec![meta.ny, meta.nx],
        order: Order::RowMajor,
    })
}

/// The attributes of the checkpoint CDO of `meta`, `len` bytes in the
/// [checkpoint format](crate::checkpoint): `checkpoint` priority, the
/// record attributes, untyped bytes.
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

/// Sets the attributes of the checkpoint CDO of `meta` (as
/// [`checkpoint_attributes`]) on `cdo`.
pub fn set_checkpoint(cdo: &mut Cdo<'_>, meta: &RecordMeta, len: usize) -> cdo::Result<()> {
    set_meta(cdo, meta, Priority::Checkpoint)?;
    cdo.set_element_type(ElementType::Bytes)?;
    cdo.set_size(len as u64)
}

/// The step of the checkpoint CDO `name` (see [`checkpoint_name`]).
pub fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()
}

/// The record attributes of the CDO `name`.
///
/// # Errors
/// [`OutletError::Record`] when one is missing.
pub fn meta_of(name: &str, attrs: &Attributes) -> Result<RecordMeta, OutletError> {
    let get = |key: &str| {
        attrs
            .user
            .get(&format!("hydro.{key}"))
            .ok_or_else(|| OutletError::Record {
                name: name.into(),
                reason: format!("no hydro.{key}"),
            })
    };
    let uint = |key: &str| match get(key)? {
        Value::UInt(v) => Ok(*v),
        v => Err(bad(name, format!("hydro.{key} = {v}"))),
    };
    let float = |key: &str| match get(key)? {
        Value::Float(v) => Ok(*v),
        v => Err(bad(name, format!("hydro.{key} = {v}"))),
    };
    RecordMeta::from_lookups(uint, float)
}

fn bad(name: &str, reason: String) -> OutletError {
    OutletError::Record {
        name: name.into(),
        reason,
    }
}

/// A record demanded from the pool: its attributes and the data views of
/// its fields (the producer's bytes, shared).
#[derive(Debug)]
pub struct Fetched {
    name: String,
    meta: RecordMeta,
    /// One view per field.
    data: Vec<Data>,
}

impl Fetched {
    /// Demands the members of the output group whose manifest has
    /// `attrs`, zero-copy, in field order; the record attributes are the
    /// members'. The caller's record of the manifest keeps the members on
    /// offer meanwhile (the producer withdraws the manifest first).
    ///
    /// # Errors
    /// The pool's errors; [`OutletError::Record`] for a malformed group.
    pub fn output(pool: &Pool, name: &str, attrs: &Attributes) -> Result<Fetched, OutletError> {
        let field_of = |member: &str| {
            let last = member.rsplit('/').next().unwrap_or_default();
            FIELD_NAMES.iter().position(|f| *f == last)
        };
        let mut members: Vec<(usize, &String)> = attrs
            .members
            .iter()
            .filter_map(|m| Some((field_of(m)?, m)))
            .collect();
        members.sort_unstable();
        if members.iter().map(|m| m.0).ne(0..NVAR) {
            return Err(bad(name, "members are not the four fields".into()));
        }
        let mut meta = None;
        let mut data = Vec::with_capacity(NVAR);
        for (_, member) in members {
            let mut cdo = pool.declare(member)?;
            cdo.require()?;
            data.push(cdo.demand()?);
            if meta.is_none() {
                let attrs = cdo.offered_attributes().unwrap_or(attrs);
                meta = Some(meta_of(member, attrs)?);
            }
            cdo.dispose()?;
        }
        Ok(Fetched {
            name: name.into(),
            meta: meta.ok_or_else(|| bad(name, "no members".into()))?,
            data,
        })
    }

    /// The record as the analyses read it.
    ///
    /// # Errors
    /// [`OutletError::Record`] when the data does not hold the fields.
    pub fn view(&self) -> Result<RecordView<'_>, OutletError> {
        let n = self.meta.nx * self.meta.ny;
        let mut values = Vec::with_capacity(NVAR);
        for data in &self.data {
            let bytes = data.as_slice()?;
            let cells: &[f64] = bytemuck::try_cast_slice(bytes)
                .map_err(|e| bad(&self.name, format!("not f64 data: {e}")))?;
            values.extend(cells.chunks_exact(n.max(1)));
        }
        if values.len() != NVAR || values.iter().any(|v| v.len() != n) {
            return Err(bad(&self.name, format!("not {NVAR} fields of {n} cells")));
        }
        Ok(RecordView {
            meta: self.meta,
            fields: std::array::from_fn(|var| values[var]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_cdo_and_its_archived_attributes_agree() {
        let config = mamba::Config {
            gpu: false,
            ..Default::default()
        };
        let pool = new_pool(std::sync::Arc::new(
            mamba::Mamba::discover(&config).unwrap(),
        ))
        .unwrap();
        let meta = RecordMeta {
            step: 9,
            time: 0.25,
            dt: 0.01,
            producer: 3,
            nx: 3,
            ny: 2,
            dx: 0.5,
        };
        let mut cdo = pool.declare(&checkpoint_name(9)).unwrap();
        set_checkpoint(&mut cdo, &meta, 40).unwrap();
        assert_eq!(cdo.attributes(), &checkpoint_attributes(&meta, 40));
        assert_eq!(checkpoint_step(&checkpoint_name(9)), Some(9));
        assert_eq!(checkpoint_step("hydro/checkpoint/x"), None);
        assert_eq!(checkpoint_step(&output_name(9)), None);
    }
}
