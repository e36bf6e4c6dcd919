//! A JSON value that keeps object keys in document order, duplicates included.
//!
//! `serde_json::Value` sorts keys and folds duplicates, but Go's decoder (whose behaviour we copy)
//! applies keys one after another in document order, so `{"description":"a","Description":"b"}`
//! ends as `"b"` and `{"Description":"b","description":"a"}` as `"a"`. Only the order-preserving
//! form lets the canonicaliser reproduce that.

use super::ConfigError;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One JSON value as written, objects as ordered `(key, value)` pairs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Raw {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl Raw {
    /// A short rendering for error messages: scalars in full, containers by kind only.
    pub(super) fn describe(&self) -> String {
        match self {
            Raw::Null => "null".to_owned(),
            Raw::Bool(b) => b.to_string(),
            Raw::Number(n) => format!("number {n}"),
            Raw::String(s) => format!("string {s:?}"),
            Raw::Array(_) => "an array".to_owned(),
            Raw::Object(_) => "an object".to_owned(),
        }
    }
}

/// Reads exactly one JSON value; anything but whitespace after it is an error, because a config
/// blob holding two documents is ambiguous (dockerd's pull refuses it as `invalid config json`).
pub(super) fn from_slice(bytes: &[u8]) -> Result<Raw, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = Raw::deserialize(&mut de).map_err(|e| ConfigError::Json(e.to_string()))?;
    de.end()
        .map_err(|e| ConfigError::Json(format!("trailing data after the JSON value ({e})")))?;
    Ok(raw)
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        serde_json::Number::from_f64(v)
            .map(Raw::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Raw>()? {
            entries.push(entry);
        }
        Ok(Raw::Object(entries))
    }
}
