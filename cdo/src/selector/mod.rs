//! Selectors: boolean expressions over CDO attributes that filter events
//! and consumer-group records. The grammar is in the [crate docs](crate).

mod parse;

use crate::attrs::AttrSource;
use crate::error::Result;
use crate::value::Value;
use regex::Regex;
use std::cmp::Ordering;
use std::fmt;

/// Deepest nesting of parentheses, `not` and lists in a selector; deeper
/// ones are refused with [`Error::Selector`](crate::Error::Selector).
pub const MAX_DEPTH: u32 = 32;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The syntax tree of a selector.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    True,
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Has(String),
    Cmp(String, CmpOp, Value),
    Matches(String, Regex),
    In(String, Vec<Value>),
    Contains(String, Value),
}

/// A parsed selector.
///
/// ```
/// use cdo::{Attributes, AttrView, Selector};
/// let s = Selector::parse(r#"name ~ "^run1/" and (size >= 1024 or not has size)"#)?;
/// let attrs = Attributes::default();
/// let view = AttrView { name: "run1/rho", version: None, place: None, attrs: &attrs };
/// assert!(s.matches(&view));
/// # Ok::<(), cdo::Error>(())
/// ```
#[derive(Clone)]
pub struct Selector {
    text: String,
    expr: Expr,
}

impl Selector {
    /// Parses a selector.
    ///
    /// # Errors
    /// [`Error::Selector`](crate::Error::Selector) with the byte position of
    /// the problem.
    pub fn parse(text: &str) -> Result<Selector> {
        Ok(Selector {
            text: text.to_owned(),
            expr: parse::selector(text)?,
        })
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector {
            text: "*".into(),
            expr: Expr::True,
        }
    }

    /// Whether the attributes satisfy the selector. Comparisons with a
    /// missing key or an incomparable type are false (so `not` of them is
    /// true).
    pub fn matches<S: AttrSource + ?Sized>(&self, view: &S) -> bool {
        eval(&self.expr, view)
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({:?})", self.text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    a.compare(b) == Some(Ordering::Equal)
}

fn eval<S: AttrSource + ?Sized>(e: &Expr, v: &S) -> bool {
    match e {
        Expr::True => true,
        Expr::Not(e) => !eval(e, v),
        Expr::And(es) => es.iter().all(|e| eval(e, v)),
        Expr::Or(es) => es.iter().any(|e| eval(e, v)),
        Expr::Has(k) => v.get(k).is_some(),
        Expr::Cmp(k, op, rhs) => {
            let Some(ord) = v.get(k).and_then(|lhs| lhs.compare(rhs)) else {
                return false;
            };
            match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            }
        }
        Expr::Matches(k, re) => matches!(v.get(k), Some(Value::Str(s)) if re.is_match(&s)),
        Expr::In(k, list) => v.get(k).is_some_and(|x| list.iter().any(|y| equal(&x, y))),
        Expr::Contains(k, x) => {
            matches!(v.get(k), Some(Value::List(l)) if l.iter().any(|y| equal(x, y)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{AttrView, Attributes, ElementType};
    use crate::value::Timestamp;

    fn attrs() -> Attributes {
        let mut a = Attributes {
            size: Some(4096),
            element_type: Some(ElementType::F64),
            persist: true,
            ..Attributes::default()
        };
        a.user.insert("app.step".into(), Value::UInt(42));
        a.user.insert("app.t".into(), Value::Float(-1.5));
        a.user.insert(
            "app.tags".into(),
            Value::List(vec![Value::from("hot"), Value::from("rho")]),
        );
        a.user.insert(
            "app.when".into(),
            Value::Timestamp(Timestamp::parse("2024-06-01T00:00:00Z").unwrap()),
        );
        a
    }

    fn check(sel: &str) -> bool {
        let a = attrs();
        let view = AttrView {
            name: "run1/step42/rho",
            version: Some(1),
            place: None,
            attrs: &a,
        };
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{sel}: {e}"))
            .matches(&view)
    }

    #[test]
    fn selectors_evaluate_as_documented() {
        for (sel, want) in [
            ("", true),
            ("*", true),
            ("size == 4096", true),
            ("size = 4096", true),
            ("size != 4096", false),
            ("size > 4095.5 and size <= 4096", true),
            ("app.step >= 40 && app.step < 43", true),
            ("app.t < 0", true),
            ("app.t > -1", false),
            ("element_type == 'f64'", true),
            (r#"name ~ "^run1/step[0-9]+/""#, true),
            (r#"name ~ "rho$" and not name ~ "^run2""#, true),
            ("app.step in [1, 2, 42]", true),
            ("element_type in ['f32', 'u8']", false),
            ("app.tags contains 'rho'", true),
            ("has app.step and !has app.missing", true),
            ("app.missing == 1", false),
            ("not app.missing == 1", true),
            ("persist == true or size < 0", true),
            ("app.when > @2024-01-01T00:00:00Z", true),
            ("app.when < @2024-05-31", false),
            (
                "version == 1 and (priority == 'normal' or priority == 'output')",
                true,
            ),
            ("size == 'big'", false),
        ] {
            assert_eq!(check(sel), want, "{sel}");
        }
    }

    #[test]
    fn nesting_is_bounded_not_a_stack_overflow() {
        let depth = MAX_DEPTH as usize;
        let ok = format!("{}size == 4096{}", "(".repeat(depth), ")".repeat(depth));
        assert!(check(&ok));
        let ok = format!("{}has size", "! ".repeat(depth));
        assert!(check(&ok));
        for deep in [
            "(".repeat(1_000_000),
            "not ".repeat(1_000_000),
            format!("size in {}", "[".repeat(1_000_000)),
        ] {
            assert!(matches!(
                Selector::parse(&deep),
                Err(crate::Error::Selector { .. })
            ));
        }
        // The depth counter is back to zero after a refusal.
        assert!(check(&ok));
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (sel, pos) in [
            ("size >", 6),
            ("size >> 3", 6),
            ("(size == 1", 10),
            ("size == 1 and", 13),
            ("size == 'open", 13),
            ("name ~ '('", 7),
            ("app.when > @yesterday", 12),
            ("size in [1, 2", 13),
            ("== 3", 0),
            ("size == 1 extra", 10),
            ("size == 99999999999999999999", 8),
            (
                format!("{}size == 1{}", "(".repeat(40), ")".repeat(40)).as_str(),
                33,
            ),
            (format!("{}has size", "not ".repeat(40)).as_str(), 132),
            (format!("size in {}", "[".repeat(40)).as_str(), 41),
        ] {
            match Selector::parse(sel) {
                Err(crate::Error::Selector { position, message }) => {
                    assert_eq!(position, pos, "{sel}: {message}")
                }
                other => panic!("{sel}: {other:?}"),
            }
        }
    }
}
