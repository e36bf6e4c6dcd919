//! Rewrites an author's `config.json` into the canonical shape, decoding it the way Go does.
//!
//! Go's `encoding/json` (what dockerd uses) matches keys case-insensitively, applies them in
//! document order, merges a repeated struct key into what was decoded so far, and treats `null` as
//! "clear" for slices and pointers but "no effect" for everything else. The output is a
//! `serde_json::Value` with exactly the canonical keys, so serde's derive (which knows none of
//! this) can take over. Type errors are caught here because only here is the JSON path known.

use super::raw::Raw;
use super::schema::{self, Field, GoStruct, Kind};
use super::{ConfigError, Warning};
use serde_json::{Map, Value};

/// Canonicalises a whole document; unknown keys become warnings (Docker ignores them silently).
pub(super) fn canonicalise(raw: Raw, warnings: &mut Vec<Warning>) -> Result<Value, ConfigError> {
    let mut root = Map::new();
    match raw {
        // Go: `null` into a struct has no effect, leaving every field zero.
        Raw::Null => {}
        Raw::Object(entries) => merge(
            schema::PLUGIN_CONFIG.fields,
            &mut root,
            entries,
            "",
            warnings,
        )?,
        other => {
            return Err(ConfigError::Json(format!(
                "the config must be a JSON object, not {}",
                other.describe()
            )));
        }
    }
    Ok(Value::Object(root))
}

/// Applies one JSON object's entries, in order, onto `target` (a struct decoded so far).
fn merge(
    schema: &'static [Field],
    target: &mut Map<String, Value>,
    entries: Vec<(String, Raw)>,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    for (key, value) in entries {
        let Some(field) = schema::lookup(schema, &key) else {
            warnings.push(unknown_key(&key, path));
            continue;
        };
        if value == Raw::Null {
            if field.kind.nullable() {
                target.insert(field.key.to_owned(), Value::Null);
            }
            continue;
        }
        let existing = target.remove(field.key);
        let child = join(path, field.key);
        let decoded = decode(field.kind, value, existing, &child, warnings)?;
        target.insert(field.key.to_owned(), decoded);
    }
    Ok(())
}

/// Decodes one non-null value into a field of the given kind.
fn decode(
    kind: Kind,
    value: Raw,
    existing: Option<Value>,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Value, ConfigError> {
    match (kind, value) {
        (Kind::Str | Kind::InterfaceType | Kind::Ptr(Kind::Str), Raw::String(s)) => {
            Ok(Value::String(s))
        }
        (Kind::Bool, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::U32, Raw::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) => Ok(Value::from(v)),
            None => Err(wrong_type(path, kind, &Raw::Number(n))),
        },
        (Kind::Slice(Kind::Str | Kind::InterfaceType), Raw::Array(items)) => {
            string_list(items, path)
        }
        (Kind::Struct(st), Raw::Object(entries)) => object(st, entries, existing, path, warnings),
        (Kind::Ptr(Kind::Struct(st)), Raw::Object(entries)) => {
            object(st, entries, existing, path, warnings)
        }
        (Kind::Slice(Kind::Struct(st)), Raw::Array(items)) => {
            object_list(st, items, path, warnings)
        }
        (kind, other) => Err(wrong_type(path, kind, &other)),
    }
}

/// A struct, merged into what was decoded for it so far (Go's rule for a repeated key).
fn object(
    st: &'static GoStruct,
    entries: Vec<(String, Raw)>,
    existing: Option<Value>,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Value, ConfigError> {
    let mut map = match existing {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    merge(st.fields, &mut map, entries, path, warnings)?;
    Ok(Value::Object(map))
}

/// `[]string`: a `null` element stays Go's zero value, `""`.
fn string_list(items: Vec<Raw>, path: &str) -> Result<Value, ConfigError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Raw::String(s) => out.push(Value::String(s)),
            Raw::Null => out.push(Value::String(String::new())),
            other => return Err(wrong_type(&index(path, i), Kind::Str, &other)),
        }
    }
    Ok(Value::Array(out))
}

/// `[]struct`: a `null` element stays Go's zero value, an empty struct.
fn object_list(
    st: &'static GoStruct,
    items: Vec<Raw>,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Value, ConfigError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let here = index(path, i);
        let mut map = Map::new();
        match item {
            Raw::Object(entries) => merge(st.fields, &mut map, entries, &here, warnings)?,
            Raw::Null => {}
            other => return Err(wrong_type(&here, Kind::Struct(st), &other)),
        }
        out.push(Value::Object(map));
    }
    Ok(Value::Array(out))
}

fn wrong_type(path: &str, kind: Kind, got: &Raw) -> ConfigError {
    let expected = match kind {
        Kind::Bool => "a boolean",
        Kind::U32 => "an unsigned 32-bit integer",
        Kind::Struct(_) | Kind::Ptr(Kind::Struct(_)) => "an object",
        Kind::Slice(Kind::Struct(_)) => "an array of objects",
        Kind::Slice(_) => "an array of strings",
        Kind::Str | Kind::InterfaceType | Kind::Ptr(_) => "a string",
    };
    ConfigError::Json(format!(
        "`{path}` must be {expected}, not {}",
        got.describe()
    ))
}

/// The warning for a key Docker would drop without a word, with a hint when the key exists at
/// another level (the docs' sshfs example puts `capabilities` at the top level, where it does
/// nothing, so the plugin silently runs without `CAP_SYS_ADMIN`).
fn unknown_key(key: &str, path: &str) -> Warning {
    let location = if path.is_empty() {
        format!("top-level `{key}`")
    } else {
        format!("`{path}.{key}`")
    };
    let lower_camel = key.starts_with(|c: char| c.is_ascii_lowercase());
    match schema::elsewhere(key, lower_camel) {
        Some(hint) => Warning(format!("{location} is ignored; did you mean `{hint}`?")),
        None => Warning(format!("{location} is ignored: not a config.json key")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
