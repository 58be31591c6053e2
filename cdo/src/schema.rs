//! User-attribute schemas, loaded from YAML.
//!
//! ```yaml
//! namespace: app            # keys are written app.KEY
//! attributes:
//!   step: { type: uint, required: true }
//!   temperature: float      # short form: just the type
//!   tags: { type: list, items: str }
//!   created: timestamp
//! ```
//!
//! Types: `int`, `uint`, `float`, `str`, `bool`, `timestamp`, `list` (with
//! an optional `items` type). A namespace's required keys must be set on
//! every CDO that sets any attribute of that namespace before it is offered.
//!
//! A pool with no schema (none configured, or one that declares no key)
//! checks no user attribute: they pass as set, in one process as through a
//! pool manager.

use crate::config::UnknownAttributes;
use crate::error::{Error, Result};
use crate::value::{Value, ValueType};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest schema document, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// Deepest nesting of flow brackets (`[`, `{`) in a schema document.
pub const MAX_SCHEMA_DEPTH: usize = 16;

/// The deepest nesting of `[` and `{` in `text`, outside quotes and
/// comments.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0);
    let mut quote = None;
    let mut comment = false;
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') if comment => comment = false,
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Whether `s` may name a namespace or a key: ASCII letters, digits, `_`
/// and `-`, at least one.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The type and obligation of one user attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSpec {
    /// Value type.
    pub ty: ValueType,
    /// Element type of a list, if constrained.
    pub items: Option<ValueType>,
    /// Whether it must be set before an offer.
    pub required: bool,
}

/// Every namespace the pool knows, with its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    namespaces: BTreeMap<String, BTreeMap<String, AttrSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    namespace: String,
    #[serde(default)]
    attributes: BTreeMap<String, SpecDoc>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SpecDoc {
    Short(String),
    Full(FullSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullSpec {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    items: Option<String>,
}

impl Schema {
    /// Adds the namespace described by a YAML document; `origin` names it in
    /// errors.
    ///
    /// # Errors
    /// [`Error::Schema`]: bad YAML, unknown type, bad key, namespace
    /// already defined or clashing with a built-in.
    pub fn add_yaml(&mut self, text: &str, origin: &str) -> Result<()> {
        let err = |message: String| Error::Schema {
            origin: origin.to_owned(),
            message,
        };
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(err(format!(
                "{} bytes; a schema has at most {MAX_SCHEMA_BYTES}",
                text.len()
            )));
        }
        // The YAML parser bounds nesting (128 levels), but only after it
        // has read every event, which deep flow nesting makes slow.
        if flow_depth(text) > MAX_SCHEMA_DEPTH {
            return Err(err(format!(
                "brackets nested deeper than {MAX_SCHEMA_DEPTH}"
            )));
        }
        let doc: FileDoc = serde_yaml::from_str(text).map_err(|e| err(e.to_string()))?;
        let valid = valid_name;
        if !valid(&doc.namespace) {
            return Err(err(format!("bad namespace {:?}", doc.namespace)));
        }
        if crate::attrs::is_builtin(&doc.namespace) {
            return Err(err(format!("namespace {:?} is a built-in", doc.namespace)));
        }
        if self.namespaces.contains_key(&doc.namespace) {
            return Err(err(format!("namespace {:?} defined twice", doc.namespace)));
        }
        let ty = |name: &str| {
            ValueType::from_name(name).ok_or_else(|| {
                err(format!(
                    "unknown type {name:?} (int, uint, float, str, bool, timestamp, list)"
                ))
            })
        };
        let mut keys = BTreeMap::new();
        for (key, spec) in doc.attributes {
            if !valid(&key) {
                return Err(err(format!("bad key {key:?}")));
            }
            let spec = match spec {
                SpecDoc::Short(t) => AttrSpec {
                    ty: ty(&t)?,
                    items: None,
                    required: false,
                },
                SpecDoc::Full(f) => {
                    let spec = AttrSpec {
                        ty: ty(&f.ty)?,
                        items: f.items.as_deref().map(ty).transpose()?,
                        required: f.required,
                    };
                    if spec.items.is_some() && spec.ty != ValueType::List {
                        return Err(err(format!("{key}: items given for a {}", spec.ty)));
                    }
                    spec
                }
            };
            keys.insert(key, spec);
        }
        self.namespaces.insert(doc.namespace, keys);
        Ok(())
    }

    /// Adds the namespace of a YAML file.
    ///
    /// # Errors
    /// [`Error::Schema`], also for an unreadable file.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Schema {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        self.add_yaml(&text, &origin)
    }

    /// Every key the schema knows, as `namespace.key`, with its spec, in
    /// key order.
    pub fn specs(&self) -> impl Iterator<Item = (String, &AttrSpec)> + '_ {
        self.namespaces
            .iter()
            .flat_map(|(ns, keys)| keys.iter().map(move |(k, s)| (format!("{ns}.{k}"), s)))
    }

    /// The schema of these full keys and specs, as [`Schema::specs`] lists
    /// them (a schema received from elsewhere); `origin` names it in
    /// errors.
    ///
    /// # Errors
    /// [`Error::Schema`] for a key without a namespace, a bad name, a
    /// built-in namespace, a key given twice, or `items` on a type that is
    /// not a list.
    pub fn from_specs(
        specs: impl IntoIterator<Item = (String, AttrSpec)>,
        origin: &str,
    ) -> Result<Schema> {
        let err = |message: String| Error::Schema {
            origin: origin.to_owned(),
            message,
        };
        let mut schema = Schema::default();
        for (full, spec) in specs {
            let Some((ns, key)) = full.split_once('.') else {
                return Err(err(format!("key {full:?} has no namespace")));
            };
            if !valid_name(ns) || !valid_name(key) || crate::attrs::is_builtin(ns) {
                return Err(err(format!("bad key {full:?}")));
            }
            if spec.items.is_some() && spec.ty != ValueType::List {
                return Err(err(format!("{full}: items given for a {}", spec.ty)));
            }
            let keys = schema.namespaces.entry(ns.to_owned()).or_default();
            if keys.insert(key.to_owned(), spec).is_some() {
                return Err(err(format!("key {full:?} given twice")));
            }
        }
        Ok(schema)
    }

    /// The spec of a full key (`namespace.key`).
    pub fn spec(&self, key: &str) -> Option<&AttrSpec> {
        let (ns, k) = key.split_once('.')?;
        self.namespaces.get(ns)?.get(k)
    }

    /// Whether the schema declares no key: such a schema (a pool
    /// configured with no schema file) checks no user attribute, in
    /// process as through a pool manager.
    pub fn is_empty(&self) -> bool {
        self.namespaces.values().all(BTreeMap::is_empty)
    }

    /// Checks a user attribute: `Ok(Some(v))` with `v` in the schema's type
    /// (`v` as given when the schema [is empty](Schema::is_empty)),
    /// `Ok(None)` when the key is unknown and `unknown` says drop.
    ///
    /// # Errors
    /// [`Error::UnknownAttribute`] (under `reject`), [`Error::TypeMismatch`].
    pub fn check(
        &self,
        key: &str,
        value: Value,
        unknown: UnknownAttributes,
    ) -> Result<Option<Value>> {
        let Some(spec) = self.spec(key) else {
            if self.is_empty() {
                return Ok(Some(value));
            }
            return match unknown {
                UnknownAttributes::Reject => Err(Error::UnknownAttribute { key: key.into() }),
                UnknownAttributes::Drop => Ok(None),
            };
        };
        let mismatch = |expected, got: &Value| Error::TypeMismatch {
            key: key.to_owned(),
            expected,
            got: got.to_string(),
        };
        let v = value.coerce(spec.ty).map_err(|v| mismatch(spec.ty, &v))?;
        match (v, spec.items) {
            (Value::List(items), Some(item_ty)) => items
                .into_iter()
                .map(|i| i.coerce(item_ty).map_err(|i| mismatch(item_ty, &i)))
                .collect::<Result<Vec<_>>>()
                .map(|l| Some(Value::List(l))),
            (v, _) => Ok(Some(v)),
        }
    }

    /// Checks that the user attributes `user` of the CDO `name` hold the
    /// schema's required keys, as both deployments' handles do at the
    /// seal.
    ///
    /// # Errors
    /// [`Error::MissingAttribute`] naming the first one missing.
    pub(crate) fn check_required(
        &self,
        name: &std::sync::Arc<str>,
        user: &BTreeMap<String, Value>,
    ) -> Result<()> {
        match self.missing(user) {
            None => Ok(()),
            Some(key) => Err(Error::MissingAttribute {
                name: std::sync::Arc::clone(name),
                key,
            }),
        }
    }

    /// The first required key missing from `user`, among the namespaces
    /// `user` uses.
    pub fn missing(&self, user: &BTreeMap<String, Value>) -> Option<String> {
        if self.namespaces.is_empty() {
            return None;
        }
        let mut used: Vec<&str> = user.keys().filter_map(|k| k.split('.').next()).collect();
        used.dedup();
        used.into_iter().find_map(|ns| {
            self.namespaces.get(ns).and_then(|keys| {
                keys.iter()
                    .filter(|(k, s)| s.required && !user.contains_key(&format!("{ns}.{k}")))
                    .map(|(k, _)| format!("{ns}.{k}"))
                    .next()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "namespace: app\nattributes:\n  step: { type: uint, required: true }\n  t: float\n  tags: { type: list, items: str }\n  when: timestamp\n";

    fn schema() -> Schema {
        let mut s = Schema::default();
        s.add_yaml(APP, "app.yaml").unwrap();
        s
    }

    #[test]
    fn a_schema_that_declares_no_key_checks_nothing() {
        let reject = UnknownAttributes::Reject;
        let mut keyless = Schema::default();
        assert!(keyless.is_empty());
        assert_eq!(
            keyless.check("app.x", Value::from("y"), reject).unwrap(),
            Some(Value::from("y"))
        );
        keyless.add_yaml("namespace: empty\n", "empty").unwrap();
        assert!(keyless.is_empty());
        assert!(keyless.check("empty.x", Value::Int(1), reject).is_ok());
        let s = schema();
        assert!(!s.is_empty());
        assert!(matches!(
            s.check("other.x", Value::Int(1), reject),
            Err(Error::UnknownAttribute { .. })
        ));
    }

    #[test]
    fn a_schema_is_rebuilt_from_its_specs_and_bad_specs_are_refused() {
        let s = schema();
        let specs: Vec<(String, AttrSpec)> = s.specs().map(|(k, v)| (k, v.clone())).collect();
        assert_eq!(specs.len(), 4);
        assert_eq!(Schema::from_specs(specs.clone(), "copy").unwrap(), s);
        let list = |ty| AttrSpec {
            ty,
            items: Some(ValueType::Str),
            required: false,
        };
        for bad in [
            vec![("step".to_owned(), specs[0].1.clone())],
            vec![("app.bad key".to_owned(), specs[0].1.clone())],
            vec![("size.x".to_owned(), specs[0].1.clone())],
            vec![("app.t".to_owned(), list(ValueType::Float))],
            vec![specs[0].clone(), specs[0].clone()],
        ] {
            let key = bad[0].0.clone();
            assert!(
                matches!(Schema::from_specs(bad, "bad"), Err(Error::Schema { .. })),
                "{key}"
            );
        }
    }

    #[test]
    fn values_are_checked_and_coerced_to_the_schema_type() {
        let s = schema();
        let r = UnknownAttributes::Reject;
        assert_eq!(
            s.check("app.step", Value::Int(3), r).unwrap(),
            Some(Value::UInt(3))
        );
        assert_eq!(
            s.check("app.t", Value::UInt(3), r).unwrap(),
            Some(Value::Float(3.0))
        );
        assert!(matches!(
            s.check("app.step", Value::from("x"), r),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(s
            .check("app.tags", Value::List(vec![Value::Int(1)]), r)
            .is_err());
        assert!(s
            .check("app.when", Value::from("2024-01-01T00:00:00Z"), r)
            .unwrap()
            .is_some());
    }

    #[test]
    fn unknown_keys_are_rejected_or_dropped_by_configuration() {
        let s = schema();
        assert!(matches!(
            s.check("app.nope", Value::Int(1), UnknownAttributes::Reject),
            Err(Error::UnknownAttribute { .. })
        ));
        assert_eq!(
            s.check("other.x", Value::Int(1), UnknownAttributes::Drop)
                .unwrap(),
            None
        );
    }

    #[test]
    fn required_keys_apply_to_cdos_using_the_namespace() {
        let s = schema();
        let mut user = BTreeMap::new();
        assert_eq!(s.missing(&user), None);
        user.insert("app.t".to_owned(), Value::Float(1.0));
        assert_eq!(s.missing(&user).as_deref(), Some("app.step"));
        user.insert("app.step".to_owned(), Value::UInt(1));
        assert_eq!(s.missing(&user), None);
    }

    #[test]
    fn deep_or_huge_schemas_are_refused_not_a_stack_overflow() {
        let mut s = Schema::default();
        let depth = 100_000;
        for deep in [
            format!(
                "namespace: d\nattributes:\n  a: {}{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
            format!(
                "namespace: d\nattributes:\n  a: {}x\n",
                "{b: ".repeat(depth)
            ),
            format!("namespace: {}\n", "n".repeat(MAX_SCHEMA_BYTES)),
        ] {
            assert!(
                matches!(s.add_yaml(&deep, "t"), Err(Error::Schema { .. })),
                "{}",
                &deep[..40]
            );
        }
        assert!(s.add_yaml(APP, "app.yaml").is_ok());
        assert_eq!(flow_depth("a: [1, {b: '[[[', c: \"{{\"}] # [[[\n"), 2);
    }

    #[test]
    fn bad_schemas_are_refused() {
        let mut s = schema();
        for bad in [
            APP,
            "namespace: x\nattributes:\n  a: complex\n",
            "namespace: y\nattributes:\n  a: { type: int, items: int }\n",
            "namespace: size\n",
            "namespace: z\nextra: 1\n",
            ": not yaml [",
        ] {
            assert!(
                matches!(s.add_yaml(bad, "t"), Err(Error::Schema { .. })),
                "{bad}"
            );
        }
    }
}
