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
/// Consumer group of the checkpoint writers.
pub const CHECKPOINT_GROUP: &str = "hydro-checkpoints";
/// The offers the output groups stream: the manifests of output records
/// (the members, named under them, hold the data).
pub const OUTPUT_SELECTOR: &str = "name ~ '^hydro/output/[0-9]+$' and has members";
/// The offers the checkpoint writers stream.
pub const CHECKPOINT_SELECTOR: &str = "priority == 'checkpoint'";

/// The CDO group of the output record of `step`.
pub fn output_name(step: u64) -> String {
    format!("hydro/output/{step}")
}

/// The checkpoint CDO of `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("hydro/checkpoint/{step}")
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

/// Sets the record attributes of `meta` and `priority` on `cdo`.
pub fn set_meta(cdo: &mut Cdo<'_>, meta: &RecordMeta, priority: Priority) -> cdo::Result<()> {
    cdo.set_priority(priority)?;
    cdo.set("hydro.step", meta.step)?;
    cdo.set("hydro.time", meta.time)?;
    cdo.set("hydro.dt", meta.dt)?;
    cdo.set("hydro.producer", meta.producer)?;
    cdo.set("hydro.nx", meta.nx as u64)?;
    cdo.set("hydro.ny", meta.ny as u64)?;
    cdo.set("hydro.dx", meta.dx)?;
    Ok(())
}

/// Sets the attributes of field `var` (name, units, `f64` array of
/// `planes x ny x nx`) on `cdo`.
pub fn set_field(cdo: &mut Cdo<'_>, var: Option<usize>, meta: &RecordMeta) -> cdo::Result<()> {
    let mut shape = vec![meta.ny, meta.nx];
    match var {
        Some(var) => {
            cdo.set("hydro.field", FIELD_NAMES[var])?;
            cdo.set("hydro.units", FIELD_UNITS[var])?;
        }
        None => shape.insert(0, NVAR),
    }
    cdo.set_element_type(ElementType::F64)?;
    cdo.set_layout(Layout {
        shape,
        order: Order::RowMajor,
    })
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
    /// One view per field, or one of all fields (a checkpoint).
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

    /// A checkpoint CDO `name` with `attrs` and its data.
    ///
    /// # Errors
    /// [`OutletError::Record`] when an attribute is missing.
    pub fn checkpoint(name: &str, attrs: &Attributes, data: Data) -> Result<Fetched, OutletError> {
        Ok(Fetched {
            name: name.into(),
            meta: meta_of(name, attrs)?,
            data: vec![data],
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
    fn a_checkpoint_round_trips_through_the_pool() {
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
        let mut producer = pool.declare(&checkpoint_name(9)).unwrap();
        set_meta(&mut producer, &meta, Priority::Checkpoint).unwrap();
        set_field(&mut producer, None, &meta).unwrap();
        let values: Vec<f64> = (0..NVAR * 6).map(|k| k as f64).collect();
        producer
            .allocate(&mamba::Policy::highest_bandwidth())
            .unwrap()
            .copy_from_slice(bytemuck::cast_slice(&values));
        producer.seal().unwrap();
        producer.offer().unwrap();
        let offer = &pool.offers(CHECKPOINT_SELECTOR).unwrap()[0];
        let fetched =
            Fetched::checkpoint(&offer.name, &offer.attributes, offer.data.clone()).unwrap();
        let view = fetched.view().unwrap();
        assert_eq!(view.meta, meta);
        assert_eq!(view.field(2), &values[12..18]);
        assert_eq!(
            view.field(2).as_ptr().cast(),
            offer.data.as_slice().unwrap()[96..].as_ptr()
        );
        producer.withdraw().unwrap();
        producer.dispose().unwrap();
    }
}
