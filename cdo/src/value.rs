//! Typed attribute values and timestamps.

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::cell::Cell;
use std::cmp::Ordering;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Parses RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.25+02:00`)
    /// or a bare date (`2024-05-01`, midnight UTC).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.trim().as_bytes();
        let num = |s: &[u8]| -> Option<i64> {
            if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(s).ok()?.parse().ok()
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        if b.len() == 10 {
            return Some(Timestamp(days.checked_mul(86_400_000_000_000)?));
        }
        if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, m, s) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos = 0i64;
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            for (i, d) in rest[1..=digits].iter().enumerate() {
                if i < 9 {
                    nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
                }
            }
            rest = &rest[digits + 1..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), hh @ .., b':', m1, m2] if hh.len() == 2 => {
                let o = num(hh)? * 3600 + num(&[*m1, *m2])? * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        let secs = days * 86_400 + h * 3600 + m * 60 + s - offset;
        Some(Timestamp(
            secs.checked_mul(1_000_000_000)?.checked_add(nanos)?,
        ))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The type of an attribute, as named in schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Signed 64-bit integer (`int`).
    Int,
    /// Unsigned 64-bit integer (`uint`).
    UInt,
    /// 64-bit float (`float`).
    Float,
    /// UTF-8 text (`str`).
    Str,
    /// Boolean (`bool`).
    Bool,
    /// A [`Timestamp`] (`timestamp`).
    Timestamp,
    /// A list of values (`list`).
    List,
}

impl ValueType {
    /// The schema name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Int => "int",
            ValueType::UInt => "uint",
            ValueType::Float => "float",
            ValueType::Str => "str",
            ValueType::Bool => "bool",
            ValueType::Timestamp => "timestamp",
            ValueType::List => "list",
        }
    }

    /// The type of a schema name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ValueType::Int,
            ValueType::UInt,
            ValueType::Float,
            ValueType::Str,
            ValueType::Bool,
            ValueType::Timestamp,
            ValueType::List,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed attribute value (also the attribute value of the pool manager's
/// protocol and of the archive, through serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    UInt(u64),
    /// Float.
    Float(f64),
    /// Text.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Point in time.
    Timestamp(Timestamp),
    /// List (deserialized at most [`MAX_DEPTH`] deep and [`MAX_LIST_LEN`]
    /// long).
    List(#[serde(deserialize_with = "bounded_list")] Vec<Value>),
}

/// Deepest nesting of lists that deserialization accepts: a value from
/// outside (a frame, an archive) cannot overflow the stack of the code that
/// decodes, compares, prints or drops it.
pub const MAX_DEPTH: u32 = 32;
/// Most items of one list that deserialization accepts.
pub const MAX_LIST_LEN: usize = 65_536;

thread_local! {
    /// Lists being deserialized on this thread, outermost included.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of list nesting being deserialized; leaves it when dropped
/// (also on error).
struct Nesting;

impl Nesting {
    fn enter() -> Option<Nesting> {
        DEPTH.with(|d| {
            let depth = d.get();
            (depth < MAX_DEPTH).then(|| {
                d.set(depth + 1);
                Nesting
            })
        })
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Deserializes the items of a [`Value::List`], refusing lists nested
/// deeper than [`MAX_DEPTH`] or longer than [`MAX_LIST_LEN`] before they
/// are built; the announced length does not preallocate.
fn bounded_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    let _level = Nesting::enter()
        .ok_or_else(|| D::Error::custom(format!("lists nested deeper than {MAX_DEPTH}")))?;
    d.deserialize_seq(ListVisitor)
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(v) = seq.next_element()? {
            if items.len() == MAX_LIST_LEN {
                return Err(A::Error::custom(format!(
                    "list longer than {MAX_LIST_LEN} items"
                )));
            }
            items.push(v);
        }
        Ok(items)
    }
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Int(_) => ValueType::Int,
            Value::UInt(_) => ValueType::UInt,
            Value::Float(_) => ValueType::Float,
            Value::Str(_) => ValueType::Str,
            Value::Bool(_) => ValueType::Bool,
            Value::Timestamp(_) => ValueType::Timestamp,
            Value::List(_) => ValueType::List,
        }
    }

    /// Converts to `ty` without loss (integers between signedness when they
    /// fit, integers to floats, RFC 3339 text to timestamps); gives the value
    /// back when that is impossible.
    pub fn coerce(self, ty: ValueType) -> Result<Value, Value> {
        match (self, ty) {
            (v, t) if v.value_type() == t => Ok(v),
            (Value::Int(i), ValueType::UInt) if i >= 0 => Ok(Value::UInt(i as u64)),
            (Value::UInt(u), ValueType::Int) if i64::try_from(u).is_ok() => {
                Ok(Value::Int(u as i64))
            }
            (Value::Int(i), ValueType::Float) => Ok(Value::Float(i as f64)),
            (Value::UInt(u), ValueType::Float) => Ok(Value::Float(u as f64)),
            (Value::Str(s), ValueType::Timestamp) => match Timestamp::parse(&s) {
                Some(t) => Ok(Value::Timestamp(t)),
                None => Err(Value::Str(s)),
            },
            (v, _) => Err(v),
        }
    }

    /// Orders two values of comparable types: numbers with numbers (exact
    /// for integers), text with text, timestamps with timestamps, booleans
    /// with booleans. `None` for anything else.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (UInt(a), UInt(b)) => Some(a.cmp(b)),
            (Int(a), UInt(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
            (UInt(a), Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
            (Float(a), b) => a.partial_cmp(&b.as_f64()?),
            (a, Float(b)) => a.as_f64()?.partial_cmp(b),
            (Str(a), Str(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) => Some(a.cmp(b)),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (List(a), List(b)) if a.len() == b.len() => {
                for (x, y) in a.iter().zip(b) {
                    match x.compare(y)? {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                Some(Ordering::Equal)
            }
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Timestamp(t) => write!(f, "@{t}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self { Value::$v(x.into()) }
        }
    )*};
}
value_from!(i64 => Int, i32 => Int, u64 => UInt, u32 => UInt, f64 => Float, bool => Bool,
    String => Str, &str => Str, Timestamp => Timestamp);

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_and_print_in_utc() {
        let t = Timestamp::parse("2024-02-29T12:34:56.5Z").unwrap();
        assert_eq!(t.to_string(), "2024-02-29T12:34:56.500000000Z");
        assert_eq!(Timestamp::parse("2024-02-29T14:34:56.5+02:00"), Some(t));
        assert_eq!(Timestamp::parse("1970-01-01"), Some(Timestamp(0)));
        assert!(Timestamp::parse("2024-13-01").is_none());
        assert!(Timestamp::parse("yesterday").is_none());
    }

    #[test]
    fn coercion_is_lossless_or_refused() {
        assert_eq!(Value::Int(3).coerce(ValueType::UInt), Ok(Value::UInt(3)));
        assert!(Value::Int(-3).coerce(ValueType::UInt).is_err());
        assert_eq!(
            Value::UInt(2).coerce(ValueType::Float),
            Ok(Value::Float(2.0))
        );
        assert!(Value::Float(2.0).coerce(ValueType::Int).is_err());
        assert!(Value::Str("x".into()).coerce(ValueType::Bool).is_err());
    }

    /// The postcard encoding of `depth` nested one-item lists around 0.
    fn nested(depth: usize) -> Vec<u8> {
        // Variant 6 is List, then a length of 1; variant 0 (Int) 0 inside.
        let mut bytes = [6u8, 1].repeat(depth);
        bytes.extend([0, 0]);
        bytes
    }

    #[test]
    fn deserialization_bounds_nesting_and_length() {
        let ok: Value = postcard::from_bytes(&nested(MAX_DEPTH as usize)).unwrap();
        assert!(matches!(ok, Value::List(_)));
        // Far deeper than any stack allows unbounded: refused, no overflow.
        assert!(postcard::from_bytes::<Value>(&nested(1_000_000)).is_err());
        assert!(postcard::from_bytes::<Value>(&nested(MAX_DEPTH as usize + 1)).is_err());
        // The depth counter is back to zero after an error.
        assert!(postcard::from_bytes::<Value>(&nested(MAX_DEPTH as usize)).is_ok());
        let long = Value::List(vec![Value::Bool(true); MAX_LIST_LEN + 1]);
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert!(postcard::from_bytes::<Value>(&bytes).is_err());
        // A huge announced length with no items behind it allocates nothing
        // up front and fails at the end of input.
        let mut lie = vec![6u8];
        lie.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(postcard::from_bytes::<Value>(&lie).is_err());
    }

    #[test]
    fn numbers_compare_across_representations() {
        assert_eq!(
            Value::Int(-1).compare(&Value::UInt(0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::UInt(3).compare(&Value::Float(2.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(Value::Str("a".into()).compare(&Value::Int(1)), None);
    }
}
