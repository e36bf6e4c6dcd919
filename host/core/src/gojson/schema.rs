//! The typed layer: a [`Json`] tree read into the Go type dockerd decodes it into, and re-encoded.
//!
//! A [`Kind`] describes a Go type the way `encoding/json` sees it. [`decode`] applies Go's rules —
//! key-to-field matching, `null` as a no-op, type errors failing the call — but refuses wherever
//! the outcome would depend on a rule a strict reader does not share (two keys for one field, a
//! key matching only through Unicode folding). The result is a `serde_json::Value` holding exactly
//! the fields of the Go type under their exact names, with Go's zero value for what was absent:
//! re-encoded, it decodes in dockerd to the very value plugd checked.

use super::fold::{KeyMatch, key_match};
use super::parse::{Json, parse};
use super::{DecodeError, forms};
use serde_json::{Map, Number, Value};

/// A Go type as `encoding/json` decodes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `string`, with the form dockerd parses it as.
    Str(Form),
    /// `bool`.
    Bool,
    /// `int` (64-bit): an integer literal; `1e2` and `1.0` are type errors in Go.
    Int,
    /// `float64`.
    Float,
    /// `time.Time`: an RFC 3339 string; absent or `null` is the zero time.
    Time,
    /// `interface{}`: any JSON, numbers as `float64`.
    Any,
    /// A struct with these exported fields (their Go names are their JSON keys).
    Struct(&'static [Field]),
    /// `map[string]T`.
    Map(&'static Kind),
    /// `[]T`.
    Slice(&'static Kind),
    /// `*T`: `null` is nil.
    Ptr(&'static Kind),
}

/// What dockerd does with a string, and so what plugd checks it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Free text (names, messages, paths the caller checks itself).
    Text,
    /// An IP address.
    Ip,
    /// `address/prefix`.
    Cidr,
    /// A Linux interface name.
    IfName,
    /// An interface name prefix.
    IfPrefix,
    /// A MAC address.
    Mac,
}

/// One struct field: its Go name (= its JSON key, no tags in the protocol types) and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The Go field name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
}

impl Field {
    /// A field; `const` so reply types can be written as statics.
    pub const fn new(name: &'static str, kind: Kind) -> Field {
        Field { name, kind }
    }
}

/// How keys that Go maps to one field are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dups {
    /// Refused: a plugin's reply, which dockerd acts on.
    Refuse,
    /// The last one wins, as in Go: a request from the engine, which plugd answers but never
    /// passes on.
    LastWins,
}

/// Reads `input` as Go would read it into `kind`, or says why that reading is not certain.
pub fn decode(input: &[u8], kind: &Kind) -> Result<Value, DecodeError> {
    let json = parse(input)?;
    Ok(read(&json, kind, &At::Root, Dups::Refuse)?.unwrap_or(Value::Null))
}

/// Reads an engine request body into `kind` as a Go plugin (go-plugins-helpers) would: an empty
/// body or `null` is the zero value, and of several keys for one field the last wins. Everything
/// else is as strict as [`decode`] (syntax, types, Unicode-only folds): dockerd never sends those,
/// so refusing them costs nothing and keeps one reader.
pub fn decode_request(input: &[u8], kind: &Kind) -> Result<Value, DecodeError> {
    let trimmed = input.trim_ascii();
    let json = if trimmed.is_empty() {
        Json::Null
    } else {
        parse(trimmed)?
    };
    Ok(read(&json, kind, &At::Root, Dups::LastWins)?.unwrap_or(Value::Null))
}

/// Go's zero value as it would be re-encoded; `None` where the field is left out instead (a zero
/// `time.Time`, which dockerd decodes the same from absence and which some readers refuse as `""`).
pub fn zero(kind: &Kind) -> Option<Value> {
    Some(match kind {
        Kind::Str(_) => Value::String(String::new()),
        Kind::Bool => Value::Bool(false),
        Kind::Int | Kind::Float => Value::Number(0.into()),
        Kind::Time => return None,
        Kind::Any | Kind::Map(_) | Kind::Slice(_) | Kind::Ptr(_) => Value::Null,
        Kind::Struct(fields) => Value::Object(
            fields
                .iter()
                .filter_map(|f| Some((f.name.to_string(), zero(&f.kind)?)))
                .collect(),
        ),
    })
}

fn type_error(at: &At<'_>, expected: &'static str, found: &Json) -> DecodeError {
    DecodeError::Type {
        at: at.to_string(),
        expected,
        found: found.kind_name(),
    }
}

/// One value at `at` (a path for messages). `None` means "leave the field out".
fn read(j: &Json, kind: &Kind, at: &At<'_>, dups: Dups) -> Result<Option<Value>, DecodeError> {
    if let Json::Null = j {
        // Go: null sets pointers, maps, slices and interfaces to nil and leaves the rest alone.
        return Ok(match kind {
            Kind::Ptr(_) | Kind::Map(_) | Kind::Slice(_) | Kind::Any => Some(Value::Null),
            _ => zero(kind),
        });
    }
    let v = match (kind, j) {
        (Kind::Str(form), Json::String(s)) => {
            check_form(*form, s).map_err(|message| DecodeError::Invalid {
                at: at.to_string(),
                message,
            })?;
            Value::String(s.clone())
        }
        (Kind::Str(_), _) => return Err(type_error(at, "a string", j)),
        (Kind::Bool, Json::Bool(b)) => Value::Bool(*b),
        (Kind::Bool, _) => return Err(type_error(at, "a bool", j)),
        (Kind::Int, Json::Number(lit)) => Value::Number(int(lit, at)?),
        (Kind::Int, _) => return Err(type_error(at, "an integer", j)),
        (Kind::Float, Json::Number(lit)) => Value::Number(float(lit, at)?),
        (Kind::Float, _) => return Err(type_error(at, "a number", j)),
        (Kind::Time, Json::String(s)) => {
            forms::rfc3339(s).map_err(|message| DecodeError::Invalid {
                at: at.to_string(),
                message,
            })?;
            Value::String(s.clone())
        }
        (Kind::Time, _) => return Err(type_error(at, "an RFC 3339 time string", j)),
        (Kind::Any, _) => any(j, at, dups)?,
        (Kind::Struct(fields), Json::Object(members)) => structure(fields, members, at, dups)?,
        (Kind::Struct(_), _) => return Err(type_error(at, "an object", j)),
        (Kind::Map(elem), Json::Object(members)) => {
            let mut out = Map::new();
            for (k, v) in members {
                if dups == Dups::Refuse && out.contains_key(k) {
                    return Err(DecodeError::Duplicate {
                        at: At::Key(at, k).to_string(),
                        first: k.clone(),
                        second: k.clone(),
                    });
                }
                let item = read(v, elem, &At::Key(at, k), dups)?;
                out.insert(k.clone(), item.unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
        (Kind::Map(_), _) => return Err(type_error(at, "an object", j)),
        (Kind::Slice(elem), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let here = At::Index(at, i);
                if matches!(item, Json::Null) && **elem != Kind::Any {
                    // Go stores a nil (pointer) or zero element; dockerd then dereferences or
                    // registers an unnamed entry. No honest driver sends one.
                    return Err(DecodeError::Invalid {
                        at: here.to_string(),
                        message: "null element".into(),
                    });
                }
                out.push(read(item, elem, &here, dups)?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        (Kind::Slice(_), _) => return Err(type_error(at, "an array", j)),
        (Kind::Ptr(inner), _) => return read(j, inner, at, dups),
    };
    Ok(Some(v))
}

fn check_form(form: Form, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    match form {
        Form::Text => Ok(()),
        Form::Ip => forms::ip(s),
        Form::Cidr => forms::cidr(s),
        Form::IfName => forms::ifname(s),
        Form::IfPrefix => forms::ifprefix(s),
        Form::Mac => forms::mac(s),
    }
}

fn int(lit: &str, at: &At<'_>) -> Result<Number, DecodeError> {
    lit.parse::<i64>()
        .map(Number::from)
        .map_err(|_| DecodeError::Invalid {
            at: at.to_string(),
            message: format!("{lit} is not a 64-bit integer"),
        })
}

fn float(lit: &str, at: &At<'_>) -> Result<Number, DecodeError> {
    lit.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| DecodeError::Invalid {
            at: at.to_string(),
            message: format!("{lit} is out of float64 range"),
        })
}

/// `interface{}`: objects become `map[string]interface{}` (exact keys, the last winning in Go:
/// refused in replies), numbers `float64`.
fn any(j: &Json, at: &At<'_>, dups: Dups) -> Result<Value, DecodeError> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(lit) => Value::Number(float(lit, at)?),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| any(v, &At::Index(at, i), dups))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(_) => read(j, &Kind::Map(&Kind::Any), at, dups)?.unwrap_or(Value::Null),
    })
}

fn structure(
    fields: &'static [Field],
    members: &[(String, Json)],
    at: &At<'_>,
    dups: Dups,
) -> Result<Value, DecodeError> {
    let mut set: Vec<Option<(&str, &Json)>> = vec![None; fields.len()];
    for (key, value) in members {
        let mut hit = None;
        for (i, f) in fields.iter().enumerate() {
            match key_match(key, f.name) {
                KeyMatch::Exact | KeyMatch::AsciiFold => {
                    hit = Some(i);
                    break;
                }
                KeyMatch::UnicodeFold => {
                    return Err(DecodeError::UnicodeFold {
                        at: At::Field(at, f.name).to_string(),
                        key: key.clone(),
                    });
                }
                KeyMatch::None => {}
            }
        }
        // A key that is no field's name under any Go version's folding: Go ignores it too.
        let Some(i) = hit else { continue };
        if let Some((first, earlier)) = set[i] {
            if dups == Dups::Refuse {
                return Err(DecodeError::Duplicate {
                    at: At::Field(at, fields[i].name).to_string(),
                    first: first.to_string(),
                    second: key.clone(),
                });
            }
            // Go assigns every match in turn: an earlier value of the wrong type still fails the
            // call, and a later `null` leaves a non-nullable field as the earlier one set it.
            read(
                earlier,
                &fields[i].kind,
                &At::Field(at, fields[i].name),
                dups,
            )?;
            let nullable = matches!(
                fields[i].kind,
                Kind::Ptr(_) | Kind::Map(_) | Kind::Slice(_) | Kind::Any
            );
            if matches!(value, Json::Null) && !nullable {
                continue;
            }
        }
        set[i] = Some((key, value));
    }
    let mut out = Map::new();
    for (f, given) in fields.iter().zip(set) {
        let v = match given {
            Some((_, j)) => read(j, &f.kind, &At::Field(at, f.name), dups)?,
            None => zero(&f.kind),
        };
        if let Some(v) = v {
            out.insert(f.name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

/// Where in the reply a value is, for messages. Built as a chain on the stack and only turned into
/// text when an error names it: a reply of many elements under a long key costs nothing extra.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Root,
    Field(&'a At<'a>, &'static str),
    Index(&'a At<'a>, usize),
    Key(&'a At<'a>, &'a str),
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Root => f.write_str("reply"),
            At::Field(At::Root, name) => f.write_str(name),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
            At::Key(parent, key) => {
                // A key quoted in full could be megabytes long.
                let mut cut = key.len().min(64);
                while !key.is_char_boundary(cut) {
                    cut -= 1;
                }
                let more = if cut < key.len() { "…" } else { "" };
                write!(f, "{parent}[{:?}{more}]", &key[..cut])
            }
        }
    }
}
