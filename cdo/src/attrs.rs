//! The attributes of a CDO: built-in ones with Rust types, and user
//! attributes under a schema namespace.
//!
//! | key | type | set by |
//! |---|---|---|
//! | `name` | str | declare (read-only) |
//! | `version` | uint | offer (read-only) |
//! | `space`, `tier` | uint, str | where the data is (read-only; in one process only) |
//! | `size` | uint | producer (derived from shape and element type, or data) |
//! | `element_type` | str: `u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bytes` | producer |
//! | `shape` | list of uint | producer |
//! | `order` | str: `row` or `column` | producer |
//! | `strides` | list of uint | producer: elements between neighbours along each dimension (padded or permuted layouts) |
//! | `tile` | list of uint | producer: the shape of the tiles the data is stored in, tiles and elements in `order` |
//! | `block_start` | list of uint | producer: where the data, one block of a larger field, starts in it |
//! | `fields` | list of uint | producer: the data is records of fields of these sizes in bytes (a `shape` then counts records) |
//! | `records` | str: `together` or `separate` | producer: records whole one after the other (AoS, the default) or each field's array after the other (SoA) |
//! | `lifetime_ms` | uint | producer: minimum availability after offer |
//! | `priority` | str: `output`, `normal`, `checkpoint` | producer (guided I/O) |
//! | `persist` | bool | producer: keep the data beyond the run |
//! | `wanted_space`, `wanted_tier`, `wanted_order`, `wanted_records` | uint, str, str, str | consumer |
//! | `wanted_strides`, `wanted_tile` | list of uint, list of uint | consumer: the array padded or permuted (elements between neighbours), or tiled, as the producer's `strides` and `tile` say |
//! | `members` | list of str | CDO group manifests (read-only) |
//! | `NS.KEY` | per schema | user attributes of namespace `NS` |
//!
//! A pool manager's selectors see `name` and `version` too (see
//! [`OfferView`](crate::engine::registry::OfferView)), but not `space` and
//! `tier`: its objects lie in memfd segments, in no mamba space.

use crate::config::UnknownAttributes;
use crate::engine::names::{members_listed, members_value, MEMBERS};
use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::value::{Value, ValueType};
use mamba::{SpaceId, Tier};
use std::collections::BTreeMap;
use std::time::Duration;

/// Element type of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u16`.
    U16,
    /// `i16`.
    I16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// Untyped bytes.
    Bytes,
}

impl ElementType {
    const ALL: [ElementType; 11] = [
        ElementType::U8,
        ElementType::I8,
        ElementType::U16,
        ElementType::I16,
        ElementType::U32,
        ElementType::I32,
        ElementType::U64,
        ElementType::I64,
        ElementType::F32,
        ElementType::F64,
        ElementType::Bytes,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElementType::U8 | ElementType::I8 | ElementType::Bytes => 1,
            ElementType::U16 | ElementType::I16 => 2,
            ElementType::U32 | ElementType::I32 | ElementType::F32 => 4,
            ElementType::U64 | ElementType::I64 | ElementType::F64 => 8,
        }
    }

    /// The attribute text.
    pub fn name(self) -> &'static str {
        match self {
            ElementType::U8 => "u8",
            ElementType::I8 => "i8",
            ElementType::U16 => "u16",
            ElementType::I16 => "i16",
            ElementType::U32 => "u32",
            ElementType::I32 => "i32",
            ElementType::U64 => "u64",
            ElementType::I64 => "i64",
            ElementType::F32 => "f32",
            ElementType::F64 => "f64",
            ElementType::Bytes => "bytes",
        }
    }

    /// Parses the attribute text.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Storage order of a multi-dimensional array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// C order: the last index varies fastest.
    #[default]
    RowMajor,
    /// Fortran order: the first index varies fastest.
    ColumnMajor,
}

impl Order {
    /// The attribute text: `row` or `column`.
    pub fn name(self) -> &'static str {
        match self {
            Order::RowMajor => "row",
            Order::ColumnMajor => "column",
        }
    }

    /// Parses `row` or `column`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "row" => Some(Order::RowMajor),
            "column" => Some(Order::ColumnMajor),
            _ => None,
        }
    }
}

/// How an array of records is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Records {
    /// Each record whole, one after the other (an array of structures).
    #[default]
    Together,
    /// Each field's values in one array, the arrays one after the other
    /// in field order (a structure of arrays).
    Separate,
}

impl Records {
    /// The attribute text: `together` or `separate`.
    pub fn name(self) -> &'static str {
        match self {
            Records::Together => "together",
            Records::Separate => "separate",
        }
    }

    /// Parses `together` or `separate`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "together" => Some(Records::Together),
            "separate" => Some(Records::Separate),
            _ => None,
        }
    }
}

/// Shape and storage of an array: dense in `order` unless `strides` (a
/// padded or permuted array) or `tile` (a tiled one) say otherwise.
///
/// ```
/// use cdo::{Layout, Order};
/// // 3 x 4 elements in rows padded to 5.
/// let padded = Layout { shape: vec![3, 4], strides: vec![5, 1], ..Layout::default() };
/// assert_eq!(padded.strided(8)?.required_len(), 8 * (2 * 5 + 4));
/// assert!(!padded.is_dense());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Layout {
    /// Extent of each dimension.
    pub shape: Vec<usize>,
    /// Storage order (of the tiles and of the elements in them, when
    /// tiled).
    pub order: Order,
    /// Elements between neighbours along each dimension; empty: dense in
    /// `order`.
    pub strides: Vec<usize>,
    /// Shape of the tiles the array is stored in, one after the other
    /// (those at the upper edges full size); empty: not tiled.
    pub tile: Vec<usize>,
}

impl Layout {
    /// Number of elements, `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Whether the elements lie dense in `order` (no strides, no tiles).
    pub fn is_dense(&self) -> bool {
        self.strides.is_empty() && self.tile.is_empty()
    }

    /// This layout for elements of `elem` bytes, as mamba-transforms'
    /// kernels take it.
    ///
    /// # Errors
    /// Why it describes no array: strides or tiles of another rank than
    /// the shape, both given, a zero extent, and the like.
    pub fn strided(&self, elem: usize) -> std::result::Result<mamba_transforms::Layout, String> {
        use mamba_transforms::{Layout as Strided, Order as Walk};
        let walk = match self.order {
            Order::RowMajor => Walk::RowMajor,
            Order::ColumnMajor => Walk::ColumnMajor,
        };
        let layout = match (self.strides.is_empty(), self.tile.is_empty()) {
            (true, true) if self.order == Order::RowMajor => Strided::row_major(elem, &self.shape),
            (true, true) => Strided::column_major(elem, &self.shape),
            (false, true) => {
                let strides = self
                    .strides
                    .iter()
                    .map(|&s| isize::try_from(s).map_err(|_| "a stride overflows".to_owned()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Strided::from_strides(elem, &self.shape, &strides, 0)
            }
            (true, false) => Strided::tiled(elem, &self.shape, &self.tile, walk, walk),
            (false, false) => return Err("strides and tile exclude each other".into()),
        };
        layout.map_err(|e| e.to_string())
    }
}

/// Guided-I/O priority: the order in which an archiver should write data out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Scientific output: first.
    Output,
    /// Everything else.
    #[default]
    Normal,
    /// Checkpoints: after output.
    Checkpoint,
}

impl Priority {
    /// The attribute text.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Output => "output",
            Priority::Normal => "normal",
            Priority::Checkpoint => "checkpoint",
        }
    }

    /// Parses the attribute text.
    pub fn from_name(s: &str) -> Option<Self> {
        [Priority::Output, Priority::Normal, Priority::Checkpoint]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// A memory place a consumer wants its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// Any space of this tier.
    Tier(Tier),
    /// This space.
    Space(SpaceId),
}

/// The attributes of one CDO.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// Size of the data in bytes, once known.
    pub size: Option<u64>,
    /// Element type.
    pub element_type: Option<ElementType>,
    /// Shape and order.
    pub layout: Option<Layout>,
    /// Where the data starts in the field it is one block of (a block
    /// decomposition: CDO groups of such blocks are demanded by region,
    /// [`GroupDemand::demand_region`](crate::app::GroupDemand::demand_region));
    /// empty when it is no block.
    pub block_start: Vec<usize>,
    /// Byte sizes of the fields of the records the data holds; empty when
    /// it holds no records.
    pub fields: Vec<usize>,
    /// How the records are stored.
    pub records: Records,
    /// Minimum time the data stays available after the offer.
    pub lifetime: Duration,
    /// Guided-I/O priority.
    pub priority: Priority,
    /// Whether the producer wants the data kept beyond the run.
    pub persist: bool,
    /// Consumer: the space or tier the data should be delivered in.
    pub wanted_place: Option<Place>,
    /// Consumer: the storage order the data should be delivered in.
    pub wanted_order: Option<Order>,
    /// Consumer: how records should be delivered.
    pub wanted_records: Option<Records>,
    /// Consumer: elements between neighbours along each dimension of the
    /// array delivered (padded or permuted); empty: dense.
    pub wanted_strides: Vec<usize>,
    /// Consumer: the shape of the tiles the array is delivered in (tiles
    /// and elements in the wanted order); empty: not tiled.
    pub wanted_tile: Vec<usize>,
    /// Member names of a CDO group manifest.
    pub members: Vec<String>,
    /// User attributes, by full key (`namespace.key`), typed by the schema.
    pub user: BTreeMap<String, Value>,
}

/// The context in which attributes are read by key: the attributes plus what
/// the pool knows (name, version, where the data is).
#[derive(Debug, Clone, Copy)]
pub struct AttrView<'a> {
    /// The CDO name.
    pub name: &'a str,
    /// Version, once offered.
    pub version: Option<u64>,
    /// Where the data is, once offered.
    pub place: Option<(SpaceId, Tier)>,
    /// The attributes.
    pub attrs: &'a Attributes,
}

/// Anything a [`Selector`](crate::Selector) can read attributes from, by key.
pub trait AttrSource {
    /// The value of `key`; `None` when unset.
    fn get(&self, key: &str) -> Option<Value>;
}

impl AttrSource for AttrView<'_> {
    fn get(&self, key: &str) -> Option<Value> {
        AttrView::get(self, key)
    }
}

/// Attributes as a flat key → value map (built-in keys as in the table
/// above, user keys as `ns.key`): the form they take on the pool manager's
/// protocol and in the archive.
pub type FlatAttributes = BTreeMap<String, Value>;

/// A CDO name and its flat attributes, as a selector sees them.
#[derive(Debug, Clone, Copy)]
pub struct FlatView<'a> {
    /// The CDO name (the `name` key).
    pub name: &'a str,
    /// The attributes.
    pub attrs: &'a FlatAttributes,
}

impl AttrSource for FlatView<'_> {
    fn get(&self, key: &str) -> Option<Value> {
        match key {
            "name" => Some(Value::Str(self.name.to_owned())),
            _ => self.attrs.get(key).cloned(),
        }
    }
}

/// Built-in keys a producer or consumer sets (not those the pool derives).
const SETTABLE_BUILTINS: [&str; 19] = [
    "size",
    "element_type",
    "shape",
    "order",
    "strides",
    "tile",
    "block_start",
    "fields",
    "records",
    "lifetime_ms",
    "priority",
    "persist",
    "wanted_space",
    "wanted_tier",
    "wanted_order",
    "wanted_records",
    "wanted_strides",
    "wanted_tile",
    MEMBERS,
];

impl Attributes {
    /// Whether a consumer with these attributes takes the data as offered:
    /// it wants no place, layout or way of storing records.
    pub(crate) fn wants_as_offered(&self) -> bool {
        self.wanted_place.is_none()
            && self.wanted_order.is_none()
            && self.wanted_records.is_none()
            && self.wanted_strides.is_empty()
            && self.wanted_tile.is_empty()
    }

    /// Bytes of one element of the array: of one record when the data
    /// holds records (`fields`: a shape then counts records), else of the
    /// element type; `None` when neither is given.
    pub fn element_size(&self) -> Option<usize> {
        match self.fields.is_empty() {
            false => Some(self.fields.iter().sum()),
            true => self.element_type.map(ElementType::size),
        }
    }

    /// The size in bytes these attributes imply: `size` when set, else the
    /// shape's element count times the element's size (when both are
    /// known and the layout is dense: a padded or tiled array's size is its
    /// producer's to say). `Err`, with the reason, when the two disagree or
    /// the shape overflows. Both deployments' handles check data against
    /// it.
    pub(crate) fn implied_size(&self) -> std::result::Result<Option<u64>, String> {
        let derived = match (&self.layout, self.element_size()) {
            (Some(l), Some(e)) if l.is_dense() => Some(
                l.elements()
                    .and_then(|n| n.checked_mul(e))
                    .ok_or("shape overflows")? as u64,
            ),
            _ => None,
        };
        match (self.size, derived) {
            (Some(s), Some(d)) if s != d => Err(format!(
                "size {s} but the shape and its elements make {d} bytes"
            )),
            (s, d) => Ok(s.or(d)),
        }
    }
    /// The attributes as a flat map: every set built-in (the defaults of
    /// `lifetime_ms`, `priority` and `persist` included) and every user
    /// attribute.
    ///
    /// ```
    /// use cdo::{Attributes, Value};
    /// let mut a = Attributes::default();
    /// a.size = Some(64);
    /// a.user.insert("app.step".into(), Value::UInt(3));
    /// let flat = a.flatten();
    /// assert_eq!(flat["size"], Value::UInt(64));
    /// assert_eq!(flat["app.step"], Value::UInt(3));
    /// assert_eq!(Attributes::from_flat(&flat)?, a);
    /// # Ok::<(), cdo::Error>(())
    /// ```
    pub fn flatten(&self) -> FlatAttributes {
        let view = AttrView {
            name: "",
            version: None,
            place: None,
            attrs: self,
        };
        let mut flat: FlatAttributes = SETTABLE_BUILTINS
            .iter()
            .filter_map(|&k| Some((k.to_owned(), view.get(k)?)))
            .collect();
        flat.extend(self.user.iter().map(|(k, v)| (k.clone(), v.clone())));
        flat
    }

    /// Rebuilds typed attributes from a flat map; user keys are taken as
    /// they are (check them with a [`Schema`]).
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] for a built-in key with a value of the wrong
    /// type or an unknown name; [`Error::ReadOnlyAttribute`]
    /// for a key the pool derives (`name`, `version`, `space`, `tier`).
    pub fn from_flat(flat: &FlatAttributes) -> Result<Attributes> {
        let mut attrs = Attributes::default();
        for (key, value) in flat {
            if key == MEMBERS {
                attrs.members =
                    members_listed(value).ok_or_else(|| mismatch(key, ValueType::List, value))?;
            } else if is_builtin(key) {
                attrs = set_builtin(&attrs, key, value)?;
            } else {
                attrs.user.insert(key.clone(), value.clone());
            }
        }
        Ok(attrs)
    }
}

impl AttrView<'_> {
    /// The value of `key`, built-in or user; `None` when unset.
    pub fn get(&self, key: &str) -> Option<Value> {
        let a = self.attrs;
        Some(match key {
            "name" => Value::Str(self.name.to_owned()),
            "version" => Value::UInt(self.version?),
            "space" => Value::UInt(u64::from(self.place?.0 .0)),
            "tier" => Value::Str(self.place?.1.name().to_owned()),
            "size" => Value::UInt(a.size?),
            "element_type" => Value::Str(a.element_type?.name().to_owned()),
            "shape" => uint_list(&a.layout.as_ref()?.shape),
            "order" => Value::Str(a.layout.as_ref()?.order.name().to_owned()),
            "strides" if !a.layout.as_ref()?.strides.is_empty() => {
                uint_list(&a.layout.as_ref()?.strides)
            }
            "tile" if !a.layout.as_ref()?.tile.is_empty() => uint_list(&a.layout.as_ref()?.tile),
            "block_start" if !a.block_start.is_empty() => uint_list(&a.block_start),
            "fields" if !a.fields.is_empty() => uint_list(&a.fields),
            "records" if !a.fields.is_empty() => Value::Str(a.records.name().to_owned()),
            "lifetime_ms" => Value::UInt(a.lifetime.as_millis() as u64),
            "priority" => Value::Str(a.priority.name().to_owned()),
            "persist" => Value::Bool(a.persist),
            "wanted_space" => match a.wanted_place? {
                Place::Space(s) => Value::UInt(u64::from(s.0)),
                Place::Tier(_) => return None,
            },
            "wanted_tier" => match a.wanted_place? {
                Place::Tier(t) => Value::Str(t.name().to_owned()),
                Place::Space(_) => return None,
            },
            "wanted_order" => Value::Str(a.wanted_order?.name().to_owned()),
            "wanted_records" => Value::Str(a.wanted_records?.name().to_owned()),
            "wanted_strides" if !a.wanted_strides.is_empty() => uint_list(&a.wanted_strides),
            "wanted_tile" if !a.wanted_tile.is_empty() => uint_list(&a.wanted_tile),
            MEMBERS if !a.members.is_empty() => members_value(&a.members),
            _ => return a.user.get(key).cloned(),
        })
    }
}

/// Whether `len` bytes may be attached to a handle whose attributes imply
/// `implied` bytes ([`Attributes::implied_size`]): `Ok(true)` when they
/// may and set the size (none is implied, and the handle is not `sealed`),
/// `Ok(false)` when they match it, `Err` with the reason otherwise. Empty
/// data attaches nothing and sets no size: it only has to agree with
/// what is implied.
pub(crate) fn attach_sets_size(
    implied: Option<u64>,
    len: u64,
    sealed: bool,
) -> std::result::Result<bool, String> {
    match implied {
        Some(s) if s != len => Err(format!("size {s} but {len} bytes attached")),
        Some(_) => Ok(false),
        None if len == 0 => Ok(false),
        None if !sealed => Ok(true),
        None => Err("sealed without a size".into()),
    }
}

/// Whether `key` names a built-in attribute.
pub(crate) fn is_builtin(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "version"
            | "space"
            | "tier"
            | MEMBERS
            | "size"
            | "element_type"
            | "shape"
            | "order"
            | "strides"
            | "tile"
            | "block_start"
            | "fields"
            | "records"
            | "lifetime_ms"
            | "priority"
            | "persist"
            | "wanted_space"
            | "wanted_tier"
            | "wanted_order"
            | "wanted_records"
            | "wanted_strides"
            | "wanted_tile"
    )
}

fn mismatch(key: &str, expected: ValueType, got: &Value) -> Error {
    Error::TypeMismatch {
        key: key.to_owned(),
        expected,
        got: got.to_string(),
    }
}

fn text<'v>(key: &str, v: &'v Value) -> Result<&'v str> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(mismatch(key, ValueType::Str, other)),
    }
}

fn uint(key: &str, v: &Value) -> Result<u64> {
    match v.clone().coerce(ValueType::UInt) {
        Ok(Value::UInt(u)) => Ok(u),
        _ => Err(mismatch(key, ValueType::UInt, v)),
    }
}

/// A list of unsigned integers, as sizes or indices.
fn uints(key: &str, v: &Value) -> Result<Vec<usize>> {
    let Value::List(items) = v else {
        return Err(mismatch(key, ValueType::List, v));
    };
    items
        .iter()
        .map(|d| uint(key, d).map(|d| d as usize))
        .collect()
}

/// Sizes or indices as a list value.
fn uint_list(items: &[usize]) -> Value {
    Value::List(items.iter().map(|&d| Value::UInt(d as u64)).collect())
}

fn choice<T>(key: &str, v: &Value, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text(key, v)?).ok_or_else(|| mismatch(key, ValueType::Str, v))
}

/// `attrs` with `key` set to `value`, as a handle of either deployment
/// sets it: a built-in type-checked ([`set_builtin`]), a user key checked
/// against `schema` with what it does to keys it does not know (as given
/// without one: a manager that sent none checks at the offer). `None`
/// when the schema drops the key. A copy: a failure leaves `attrs` as it
/// was.
///
/// # Errors
/// Those of [`set_builtin`] and [`Schema::check`].
pub(crate) fn set_attribute(
    attrs: &Attributes,
    key: &str,
    value: Value,
    schema: Option<(&Schema, UnknownAttributes)>,
) -> Result<Option<Attributes>> {
    if is_builtin(key) {
        return set_builtin(attrs, key, &value).map(Some);
    }
    let value = match schema {
        Some((schema, unknown)) => schema.check(key, value, unknown)?,
        None => Some(value),
    };
    Ok(value.map(|v| {
        let mut new = attrs.clone();
        new.user.insert(key.to_owned(), v);
        new
    }))
}

/// Whether a size agrees with the bytes already attached, if any: the
/// reason when it does not.
pub(crate) fn check_attached(
    size: Option<u64>,
    attached: Option<usize>,
) -> std::result::Result<(), String> {
    match (size, attached) {
        (Some(s), Some(n)) if s != n as u64 => {
            Err(format!("size {s} differs from the {n} bytes attached"))
        }
        _ => Ok(()),
    }
}

/// Applies a built-in attribute to a copy of `attrs` (so that a failure
/// leaves the original untouched) and returns it.
pub(crate) fn set_builtin(attrs: &Attributes, key: &str, v: &Value) -> Result<Attributes> {
    let mut a = attrs.clone();
    match key {
        "name" | "version" | "space" | "tier" | MEMBERS => {
            return Err(Error::ReadOnlyAttribute { key: key.into() })
        }
        "size" => a.size = Some(uint(key, v)?),
        "element_type" => a.element_type = Some(choice(key, v, ElementType::from_name)?),
        "shape" => a.layout.get_or_insert_with(Layout::default).shape = uints(key, v)?,
        "strides" => a.layout.get_or_insert_with(Layout::default).strides = uints(key, v)?,
        "tile" => a.layout.get_or_insert_with(Layout::default).tile = uints(key, v)?,
        "block_start" => a.block_start = uints(key, v)?,
        "fields" => a.fields = uints(key, v)?,
        "records" => a.records = choice(key, v, Records::from_name)?,
        "order" => {
            a.layout.get_or_insert_with(Layout::default).order = choice(key, v, Order::from_name)?
        }
        "lifetime_ms" => a.lifetime = Duration::from_millis(uint(key, v)?),
        "priority" => a.priority = choice(key, v, Priority::from_name)?,
        "persist" => match v {
            Value::Bool(b) => a.persist = *b,
            other => return Err(mismatch(key, ValueType::Bool, other)),
        },
        "wanted_space" => a.wanted_place = Some(Place::Space(SpaceId(uint(key, v)? as u32))),
        "wanted_tier" => {
            a.wanted_place = Some(Place::Tier(choice(key, v, |s| s.parse::<Tier>().ok())?))
        }
        "wanted_order" => a.wanted_order = Some(choice(key, v, Order::from_name)?),
        "wanted_records" => a.wanted_records = Some(choice(key, v, Records::from_name)?),
        "wanted_strides" => a.wanted_strides = uints(key, v)?,
        "wanted_tile" => a.wanted_tile = uints(key, v)?,
        _ => return Err(Error::UnknownAttribute { key: key.into() }),
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_of_records_implies_their_size() {
        let mut a = Attributes {
            layout: Some(Layout {
                shape: vec![2, 3],
                ..Layout::default()
            }),
            element_type: Some(ElementType::F64),
            ..Attributes::default()
        };
        assert_eq!(a.implied_size(), Ok(Some(48)));
        // Records of an f64 and a u32: the shape counts records.
        a.fields = vec![8, 4];
        assert_eq!(a.element_size(), Some(12));
        assert_eq!(a.implied_size(), Ok(Some(72)));
        a.size = Some(70);
        assert!(a.implied_size().is_err());
        // Padded: the size is the producer's to say.
        a.layout.as_mut().unwrap().strides = vec![4, 1];
        assert_eq!(a.implied_size(), Ok(Some(70)));
    }

    #[test]
    fn builtins_round_trip_through_keys() {
        let mut a = Attributes::default();
        for (k, v) in [
            ("size", Value::UInt(64)),
            ("element_type", Value::from("f64")),
            ("shape", Value::List(vec![Value::UInt(2), Value::Int(4)])),
            ("order", Value::from("column")),
            ("priority", Value::from("output")),
            ("persist", Value::Bool(true)),
            ("lifetime_ms", Value::UInt(5)),
            ("wanted_tier", Value::from("ssd")),
        ] {
            a = set_builtin(&a, k, &v).unwrap();
        }
        let view = AttrView {
            name: "x",
            version: None,
            place: None,
            attrs: &a,
        };
        assert_eq!(view.get("order"), Some(Value::from("column")));
        assert_eq!(
            view.get("shape"),
            Some(Value::List(vec![Value::UInt(2), Value::UInt(4)]))
        );
        assert_eq!(view.get("wanted_tier"), Some(Value::from("ssd")));
        assert_eq!(view.get("version"), None);
        assert!(set_builtin(&a, "size", &Value::Int(-1)).is_err());
        assert!(set_builtin(&a, "name", &Value::from("y")).is_err());
        assert!(set_builtin(&a, "order", &Value::from("diagonal")).is_err());
    }
}
