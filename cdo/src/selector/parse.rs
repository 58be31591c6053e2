//! The selector parser (winnow).

use super::{CmpOp, Expr};
use crate::error::{Error, Result};
use crate::value::{Timestamp, Value};
use regex::{Regex, RegexBuilder};
use std::cell::Cell;
use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{
    alt, cut_err, delimited, eof, fail, not, opt, preceded, repeat, separated, terminated,
};
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{any, one_of, take_while};

type Input<'a> = &'a str;

/// Most memory one compiled regular expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

/// Parses a whole selector.
pub(super) fn selector(text: &str) -> Result<Expr> {
    if text.trim().is_empty() {
        return Ok(Expr::True);
    }
    let mut top = delimited(
        multispace0,
        alt(("*".value(Expr::True), expr)),
        (
            multispace0,
            eof.context(expected("end of selector, `and` or `or`")),
        ),
    );
    top.parse(text).map_err(|e| {
        let inner: &ContextError = e.inner();
        let mut message = inner
            .context()
            .find_map(|c| match c {
                StrContext::Expected(v) => Some(format!("expected {v}")),
                _ => None,
            })
            .unwrap_or_else(|| "unexpected input".into());
        if let Some(cause) = inner.cause() {
            let cause = cause.to_string();
            message = format!("{message}: {}", cause.lines().last().unwrap_or_default());
        }
        Error::Selector {
            position: e.offset(),
            message,
        }
    })
}

thread_local! {
    /// Nested groups (parentheses, `not`, lists) being parsed on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of nesting being parsed; left when dropped (also on error).
struct Nesting;

impl Drop for Nesting {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `p` one level deeper, or fails (cut) beyond
/// [`MAX_DEPTH`](super::MAX_DEPTH): the parser recurses per level, so a
/// selector cannot overflow the stack, however it is written.
fn nested<'a, O>(
    mut p: impl Parser<Input<'a>, O, ErrMode<ContextError>>,
) -> impl Parser<Input<'a>, O, ErrMode<ContextError>> {
    move |i: &mut Input<'a>| {
        let depth = DEPTH.with(Cell::get);
        if depth >= super::MAX_DEPTH {
            return cut_err(fail)
                .context(expected("less nesting (at most 32 levels)"))
                .parse_next(i);
        }
        DEPTH.with(|d| d.set(depth + 1));
        let _level = Nesting;
        p.parse_next(i)
    }
}

fn ws(i: &mut Input<'_>) -> ModalResult<()> {
    multispace0.void().parse_next(i)
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn keyword<'a>(kw: &'static str) -> impl Parser<Input<'a>, &'a str, ErrMode<ContextError>> {
    terminated(kw, not(one_of(ident_char)))
}

fn expr(i: &mut Input<'_>) -> ModalResult<Expr> {
    let first = and_expr(i)?;
    let rest: Vec<Expr> = repeat(
        0..,
        preceded((ws, alt((keyword("or"), "||")), ws), cut_err(and_expr)),
    )
    .parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        Expr::Or(std::iter::once(first).chain(rest).collect())
    })
}

fn and_expr(i: &mut Input<'_>) -> ModalResult<Expr> {
    let first = unary(i)?;
    let rest: Vec<Expr> = repeat(
        0..,
        preceded((ws, alt((keyword("and"), "&&")), ws), cut_err(unary)),
    )
    .parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        Expr::And(std::iter::once(first).chain(rest).collect())
    })
}

fn unary(i: &mut Input<'_>) -> ModalResult<Expr> {
    alt((
        preceded((alt((keyword("not"), "!")), ws), nested(cut_err(unary)))
            .map(|e| Expr::Not(Box::new(e))),
        primary,
    ))
    .context(expected("a condition"))
    .parse_next(i)
}

fn primary(i: &mut Input<'_>) -> ModalResult<Expr> {
    alt((
        delimited(
            ("(", ws),
            nested(cut_err(expr)),
            cut_err((ws, ")")).context(expected("`)`")),
        ),
        preceded((keyword("has"), ws), cut_err(key)).map(|k| Expr::Has(k.to_owned())),
        condition,
    ))
    .parse_next(i)
}

fn key<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| ident_char(c) || c == '.'),
    )
        .take()
        .context(expected("an attribute key"))
        .parse_next(i)
}

fn condition(i: &mut Input<'_>) -> ModalResult<Expr> {
    let k = terminated(key, ws).parse_next(i)?.to_owned();
    cut_err(alt((
        preceded(("~", ws), cut_err(regex)).map({
            let k = k.clone();
            move |re| Expr::Matches(k.clone(), re)
        }),
        preceded((keyword("in"), ws), cut_err(list)).map({
            let k = k.clone();
            move |l| Expr::In(k.clone(), l)
        }),
        preceded((keyword("contains"), ws), cut_err(value)).map({
            let k = k.clone();
            move |v| Expr::Contains(k.clone(), v)
        }),
        (cmp_op, preceded(ws, cut_err(value))).map(move |(op, v)| Expr::Cmp(k.clone(), op, v)),
    )))
    .context(expected(
        "an operator (== != < <= > >= ~ in contains) and a value",
    ))
    .parse_next(i)
}

fn cmp_op(i: &mut Input<'_>) -> ModalResult<CmpOp> {
    alt((
        "==".value(CmpOp::Eq),
        "!=".value(CmpOp::Ne),
        "<=".value(CmpOp::Le),
        ">=".value(CmpOp::Ge),
        "<".value(CmpOp::Lt),
        ">".value(CmpOp::Gt),
        "=".value(CmpOp::Eq),
    ))
    .parse_next(i)
}

fn regex(i: &mut Input<'_>) -> ModalResult<Regex> {
    string
        .try_map(|s| RegexBuilder::new(&s).size_limit(REGEX_SIZE_LIMIT).build())
        .context(expected("a valid regular expression in quotes"))
        .parse_next(i)
}

fn value(i: &mut Input<'_>) -> ModalResult<Value> {
    alt((
        string.map(Value::Str),
        timestamp,
        keyword("true").value(Value::Bool(true)),
        keyword("false").value(Value::Bool(false)),
        list.map(Value::List),
        number,
    ))
    .context(expected(
        "a value (number, 'text', @timestamp, true, false, [list])",
    ))
    .parse_next(i)
}

fn list(i: &mut Input<'_>) -> ModalResult<Vec<Value>> {
    delimited(
        ("[", ws),
        nested(cut_err(separated(0.., value, (ws, ",", ws)))),
        cut_err((ws, "]")).context(expected("`,` or `]`")),
    )
    .parse_next(i)
}

fn string(i: &mut Input<'_>) -> ModalResult<String> {
    let quote = one_of(['"', '\'']).parse_next(i)?;
    let mut out = String::new();
    loop {
        let c = cut_err(any)
            .context(expected("a closing quote"))
            .parse_next(i)?;
        if c == quote {
            return Ok(out);
        }
        if c == '\\' {
            let e = cut_err(one_of(['"', '\'', '\\', 'n', 't']))
                .context(expected("an escape: \\\" \\' \\\\ \\n \\t"))
                .parse_next(i)?;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
}

fn timestamp(i: &mut Input<'_>) -> ModalResult<Value> {
    preceded(
        "@",
        cut_err(
            take_while(1.., |c: char| {
                c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')
            })
            .verify_map(Timestamp::parse)
            .context(expected("an RFC 3339 timestamp")),
        ),
    )
    .map(Value::Timestamp)
    .parse_next(i)
}

fn number(i: &mut Input<'_>) -> ModalResult<Value> {
    (
        opt("-"),
        digit1,
        opt((".", digit1)),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digit1)),
    )
        .take()
        .verify_map(|t: &str| {
            if t.contains(['.', 'e', 'E']) {
                t.parse().ok().map(Value::Float)
            } else if t.starts_with('-') {
                t.parse().ok().map(Value::Int)
            } else {
                t.parse().ok().map(Value::UInt)
            }
        })
        .parse_next(i)
}
