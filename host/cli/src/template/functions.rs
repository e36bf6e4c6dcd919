//! The function map: the docker CLI's template functions and Go's builtins, with their argument
//! checks.

use std::fmt::Write as _;

use plugd_core::gotext::go_quote;

use super::*;

/// The functions a template may name, checked at parse time as Go checks its function map.
pub(super) const FUNCTIONS: &[&str] = &[
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate", "and", "or", "not",
    "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt", "ge",
];

pub(super) enum CallError {
    Arity(String),
    Failed(String),
}

pub(super) fn want(name: &str, vals: &[Value], n: usize) -> Result<(), CallError> {
    if vals.len() != n {
        return Err(CallError::Arity(format!(
            "wrong number of args for {name}: want {n} got {}",
            vals.len()
        )));
    }
    Ok(())
}

pub(super) fn arg_str(v: &Value) -> Result<&str, CallError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(CallError::Arity(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        ))),
    }
}

pub(super) fn arg_int(v: &Value) -> Result<i64, CallError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(CallError::Arity(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        ))),
    }
}

pub(super) fn call_function(
    name: &str,
    vals: &[Value],
    opts: ExecOptions,
) -> Result<Value, CallError> {
    if opts.header {
        // The docker CLI's HeaderFunctions: keep the header text as it is.
        match name {
            "json" | "title" | "lower" | "upper" => {
                want(name, vals, 1)?;
                return Ok(Value::Str(arg_str(&vals[0])?.to_string()));
            }
            "split" | "join" | "truncate" => {
                want(name, vals, 2)?;
                return Ok(Value::Str(arg_str(&vals[0])?.to_string()));
            }
            _ => {}
        }
    }
    match name {
        "json" => {
            want(name, vals, 1)?;
            Ok(Value::Str(vals[0].to_json(false).trim().to_string()))
        }
        "split" => {
            want(name, vals, 2)?;
            let (s, sep) = (arg_str(&vals[0])?, arg_str(&vals[1])?);
            let items: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::Str(p.to_string())).collect()
            };
            Ok(Value::List {
                items,
                nil: false,
                elem: "string",
            })
        }
        "join" => {
            want(name, vals, 2)?;
            let sep = arg_str(&vals[1])?;
            match &vals[0] {
                Value::List {
                    items,
                    elem: "string",
                    ..
                } => {
                    let parts: Vec<String> = items.iter().map(Value::print).collect();
                    Ok(Value::Str(parts.join(sep)))
                }
                other => Err(CallError::Arity(format!(
                    "wrong type for value; expected []string; got {}",
                    other.type_name()
                ))),
            }
        }
        "title" => {
            want(name, vals, 1)?;
            Ok(Value::Str(title(arg_str(&vals[0])?)))
        }
        "lower" => {
            want(name, vals, 1)?;
            Ok(Value::Str(arg_str(&vals[0])?.to_lowercase()))
        }
        "upper" => {
            want(name, vals, 1)?;
            Ok(Value::Str(arg_str(&vals[0])?.to_uppercase()))
        }
        "pad" => {
            want(name, vals, 3)?;
            let s = arg_str(&vals[0])?;
            let (pre, post) = (arg_int(&vals[1])?, arg_int(&vals[2])?);
            if s.is_empty() {
                return Ok(Value::Str(String::new()));
            }
            let sp = |n: i64| " ".repeat(n.max(0) as usize);
            Ok(Value::Str(format!("{}{s}{}", sp(pre), sp(post))))
        }
        "truncate" => {
            want(name, vals, 2)?;
            let s = arg_str(&vals[0])?;
            let n = arg_int(&vals[1])?;
            if (s.len() as i64) < n {
                return Ok(Value::Str(s.to_string()));
            }
            let n = usize::try_from(n)
                .map_err(|_| CallError::Failed(format!("slice bounds out of range [:{n}]")))?;
            Ok(Value::Str(
                String::from_utf8_lossy(&s.as_bytes()[..n]).into_owned(),
            ))
        }
        "not" => {
            want(name, vals, 1)?;
            Ok(Value::Bool(!vals[0].truth()))
        }
        "len" => {
            want(name, vals, 1)?;
            match vals[0].indirect() {
                Value::Str(s) | Value::Number(s) => Ok(Value::Int(s.len() as i64)),
                Value::List { items, .. } => Ok(Value::Int(items.len() as i64)),
                Value::Map { entries, .. } => Ok(Value::Int(entries.len() as i64)),
                other => Err(CallError::Failed(format!(
                    "len of type {}",
                    other.type_name()
                ))),
            }
        }
        "index" => {
            if vals.is_empty() {
                return Err(CallError::Arity(
                    "wrong number of args for index: want at least 1 got 0".into(),
                ));
            }
            let mut v = vals[0].clone();
            for ix in &vals[1..] {
                v = index(&v, ix)?;
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(sprint(vals))),
        "println" => {
            let parts: Vec<String> = vals.iter().map(Value::print).collect();
            Ok(Value::Str(parts.join(" ") + "\n"))
        }
        "printf" => {
            if vals.is_empty() {
                return Err(CallError::Arity(
                    "wrong number of args for printf: want at least 1 got 0".into(),
                ));
            }
            Ok(Value::Str(sprintf(arg_str(&vals[0])?, &vals[1..])))
        }
        "eq" => {
            if vals.len() < 2 {
                return Err(CallError::Failed("missing argument for comparison".into()));
            }
            for other in &vals[1..] {
                if equal(&vals[0], other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            want(name, vals, 2)?;
            Ok(Value::Bool(!equal(&vals[0], &vals[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, vals, 2)?;
            let ord = less(&vals[0], &vals[1])?;
            Ok(Value::Bool(match name {
                "lt" => ord == std::cmp::Ordering::Less,
                "le" => ord != std::cmp::Ordering::Greater,
                "gt" => ord == std::cmp::Ordering::Greater,
                _ => ord != std::cmp::Ordering::Less,
            }))
        }
        _ => Err(CallError::Failed(format!("function {name:?} not defined"))),
    }
}

pub(super) fn index(v: &Value, ix: &Value) -> Result<Value, CallError> {
    match v.indirect() {
        Value::List { items, .. } => {
            let i = match ix {
                Value::Int(i) => *i,
                other => {
                    return Err(CallError::Failed(format!(
                        "cannot index slice/array with type {}",
                        other.type_name()
                    )));
                }
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i).cloned())
                .ok_or_else(|| CallError::Failed(format!("index out of range: {i}")))
        }
        Value::Map { entries, ty } => {
            let key = match ix {
                Value::Str(s) => s,
                other => {
                    return Err(CallError::Failed(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    )));
                }
            };
            Ok(entries
                .get(key)
                .cloned()
                .unwrap_or(if ty.ends_with("string") {
                    Value::Str(String::new())
                } else {
                    Value::Nil("interface {}")
                }))
        }
        Value::Nil(_) | Value::Invalid => Err(CallError::Failed("index of untyped nil".into())),
        other => Err(CallError::Failed(format!(
            "can't index item of type {}",
            other.type_name()
        ))),
    }
}

pub(super) fn is_string_kind(v: &Value) -> bool {
    matches!(v, Value::Str(_) | Value::Number(_))
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub(super) fn sprint(vals: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 && !is_string_kind(v) && !is_string_kind(&vals[i - 1]) {
            out.push(' ');
        }
        out.push_str(&v.print());
    }
    out
}

/// A small `fmt.Sprintf`: `%s %v %d %q %t %%`; others print Go's `%!verb(type=value)`.
pub(super) fn sprintf(format: &str, vals: &[Value]) -> String {
    let mut out = String::new();
    let mut args = vals.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        match (verb, arg) {
            ('v', a) => out.push_str(&a.print()),
            ('s', a) if !matches!(a, Value::Bool(_) | Value::Int(_) | Value::Float(_)) => {
                out.push_str(&a.print())
            }
            ('d', Value::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            ('t', Value::Bool(b)) => {
                let _ = write!(out, "{b}");
            }
            ('q', Value::Str(s) | Value::Number(s) | Value::Stringer(s)) => {
                out.push_str(&go_quote(s))
            }
            (v, a) => {
                let _ = write!(out, "%!{v}({}={})", a.type_name(), a.print());
            }
        }
    }
    let extra: Vec<&Value> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        let parts: Vec<String> = extra
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.print()))
            .collect();
        out.push_str(&parts.join(", "));
        out.push(')');
    }
    out
}

/// `strings.Title`: upper-cases the first letter of each word.
pub(super) fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut prev_sep = true;
    s.chars()
        .map(|c| {
            let out = if prev_sep {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            };
            prev_sep = is_sep(c);
            out
        })
        .collect()
}

pub(super) fn equal(a: &Value, b: &Value) -> Result<bool, CallError> {
    let (a, b) = (a.indirect(), b.indirect());
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x) | Value::Number(x), Value::Str(y) | Value::Number(y)) => x == y,
        (Value::Stringer(x), Value::Stringer(y)) => x == y,
        (Value::Nil(_), Value::Nil(_)) => true,
        (Value::Nil(_), _) | (_, Value::Nil(_)) => false,
        (Value::List { .. } | Value::Map { .. }, _)
        | (_, Value::List { .. } | Value::Map { .. }) => {
            return Err(CallError::Failed("non-comparable types".into()));
        }
        _ => {
            return Err(CallError::Failed(
                "incompatible types for comparison".into(),
            ));
        }
    })
}

pub(super) fn less(a: &Value, b: &Value) -> Result<std::cmp::Ordering, CallError> {
    match (a.indirect(), b.indirect()) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| CallError::Failed("NaN".into())),
        (Value::Str(x) | Value::Number(x), Value::Str(y) | Value::Number(y)) => Ok(x.cmp(y)),
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_),
        ) => Err(CallError::Failed(
            "incompatible types for comparison".into(),
        )),
        _ => Err(CallError::Failed("invalid type for comparison".into())),
    }
}
