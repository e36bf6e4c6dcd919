//! Values as Go's `text/template` sees them, so `--format` output matches the docker CLI.
//!
//! The docker CLI runs a template first against the *typed* Go value (`types.Plugin`: Go field
//! names, nil slices print as `[]`, nested pointers print as addresses, structs as `{a b}`) and, for
//! `inspect`, retries against the *raw* JSON decoded into `map[string]interface{}` when that fails.
//! [`Value`] models both shapes; [`typed_plugin`] and [`raw`] build them from the server's JSON, and
//! [`Value::print`] / [`Value::to_json`] reproduce `fmt.Fprint` and `encoding/json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plugd_core::config::schema::{self, Kind};

/// One value inside a template execution.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// An invalid `reflect.Value` (a missing map key in default mode); prints `<no value>`.
    Invalid,
    /// A nil pointer or nil interface of the named type (`interface {}` for raw JSON `null`).
    Nil(&'static str),
    /// A Go `bool`.
    Bool(bool),
    /// Any Go integer.
    Int(i64),
    /// A Go `float64` (only from template literals).
    Float(f64),
    /// A Go `string`.
    Str(String),
    /// A `json.Number` (raw mode): a string type holding the number's literal.
    Number(String),
    /// A value whose `String()` and `MarshalJSON` both give this text (`types.PluginInterfaceType`).
    Stringer(String),
    /// A slice; `nil` slices print `[]` but marshal as `null`.
    List {
        items: Vec<Value>,
        nil: bool,
        elem: &'static str,
    },
    /// A map with string keys (`map[string]interface {}` in raw mode, `map[string]string` for headers).
    Map {
        entries: BTreeMap<String, Value>,
        ty: &'static str,
    },
    /// A struct value.
    Struct(Box<Struct>),
    /// A non-nil pointer.
    Ptr(Box<Value>),
}

/// A Go struct: fields in declaration order plus the methods a template may call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Struct {
    /// Go type name for messages, e.g. `types.PluginConfig`.
    pub ty: &'static str,
    /// Fields in declaration order.
    pub fields: Vec<Field>,
    /// Zero-argument methods (name, result), looked up before fields as Go does.
    pub methods: Vec<(&'static str, Value)>,
    /// How `json` renders the struct.
    pub marshal: Marshal,
}

/// One struct field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Field {
    /// Go field name (what a template names).
    pub go: &'static str,
    /// JSON key.
    pub json: &'static str,
    /// `omitempty` in the JSON tag.
    pub omitempty: bool,
    /// Embedded field: its own fields are promoted.
    pub embedded: bool,
    /// The value.
    pub value: Value,
}

/// How a struct turns into JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marshal {
    /// `encoding/json` on the struct: fields in order, honouring `omitempty`.
    Fields,
    /// The docker CLI's `formatter.MarshalJSON`: a map of the methods, keys sorted, HTML escaped
    /// (it goes through `json.Marshal`, whose escaping survives the template's non-escaping encoder).
    SortedMethodsEscaped,
}

impl Value {
    /// Go's truthiness (`if`, `with`, `and`, `or`, `not`).
    pub fn truth(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil(_) => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Number(s) => !s.is_empty(),
            Value::List { items, .. } => !items.is_empty(),
            Value::Map { entries, .. } => !entries.is_empty(),
            Value::Stringer(_) | Value::Struct(_) | Value::Ptr(_) => true,
        }
    }

    /// The Go type name, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::Invalid => "<invalid>".into(),
            Value::Nil(t) => (*t).into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::Number(_) => "json.Number".into(),
            Value::Stringer(_) => Kind::InterfaceType.name().unwrap_or_default().into(),
            Value::List { elem, .. } => format!("[]{elem}"),
            Value::Map { ty, .. } => (*ty).into(),
            Value::Struct(s) => s.ty.into(),
            Value::Ptr(v) => format!("*{}", v.type_name()),
        }
    }

    /// Follows pointers, as text/template does before printing or looking up a field.
    pub fn indirect(&self) -> &Value {
        let mut v = self;
        while let Value::Ptr(inner) = v {
            v = inner;
        }
        v
    }

    /// `fmt.Fprint` of the value as text/template prints an action's result.
    pub fn print(&self) -> String {
        let mut out = String::new();
        match self.indirect() {
            Value::Invalid => out.push_str("<no value>"),
            v => v.fmt_v(&mut out, 0),
        }
        out
    }

    /// `%v` formatting; `depth` > 0 inside a struct, slice or map, where pointers print as addresses.
    fn fmt_v(&self, out: &mut String, depth: usize) {
        match self {
            Value::Invalid => out.push_str("<invalid reflect.Value>"),
            Value::Nil(_) => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&go_float(*f)),
            Value::Str(s) | Value::Number(s) | Value::Stringer(s) => out.push_str(s),
            Value::List { items, .. } => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.fmt_v(out, depth + 1);
                }
                out.push(']');
            }
            Value::Map { entries, .. } => {
                out.push_str("map[");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.fmt_v(out, depth + 1);
                }
                out.push(']');
            }
            Value::Struct(s) => {
                out.push('{');
                for (i, f) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    f.value.fmt_v(out, depth + 1);
                }
                out.push('}');
            }
            Value::Ptr(inner) => {
                if depth == 0 {
                    // fmt prints a top-level pointer to a struct as &{...}.
                    if matches!(**inner, Value::Struct(_)) {
                        out.push('&');
                    }
                    inner.fmt_v(out, depth);
                } else {
                    // Go prints the address, which is different on every run anyway.
                    out.push_str("0xc000010000");
                }
            }
        }
    }

    /// `encoding/json` of the value (compact), as the template `json` function produces it.
    pub fn to_json(&self, escape_html: bool) -> String {
        let mut out = String::new();
        self.json_into(&mut out, escape_html);
        out
    }

    fn json_into(&self, out: &mut String, escape_html: bool) {
        match self {
            Value::Invalid | Value::Nil(_) => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&json_float(*f)),
            Value::Number(n) => out.push_str(n),
            Value::Str(s) | Value::Stringer(s) => quote_into(out, s, escape_html),
            Value::List { items, nil, .. } => {
                if *nil {
                    out.push_str("null");
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.json_into(out, escape_html);
                }
                out.push(']');
            }
            Value::Map { entries, .. } => json_object(
                out,
                entries.iter().map(|(k, v)| (k.as_str(), v)),
                escape_html,
            ),
            Value::Struct(s) => match s.marshal {
                Marshal::Fields => {
                    let exported = s.fields.iter().filter(|f| {
                        !(f.omitempty && f.value.is_empty_for_json())
                            && f.go.starts_with(|c: char| c.is_ascii_uppercase())
                    });
                    json_object(out, exported.map(|f| (f.json, &f.value)), escape_html)
                }
                Marshal::SortedMethodsEscaped => {
                    let sorted: BTreeMap<&str, &Value> =
                        s.methods.iter().map(|(k, v)| (*k, v)).collect();
                    json_object(out, sorted.into_iter(), true)
                }
            },
            Value::Ptr(inner) => inner.json_into(out, escape_html),
        }
    }

    /// `omitempty`'s notion of empty.
    fn is_empty_for_json(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil(_) => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::Str(s) | Value::Number(s) => s.is_empty(),
            Value::List { items, .. } => items.is_empty(),
            Value::Map { entries, .. } => entries.is_empty(),
            Value::Stringer(_) | Value::Struct(_) | Value::Ptr(_) => false,
        }
    }
}

/// Appends a JSON object of `entries` in the order given (each caller decides Go's order).
fn json_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a str, &'a Value)>,
    escape_html: bool,
) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote_into(out, k, escape_html);
        out.push(':');
        v.json_into(out, escape_html);
    }
    out.push('}');
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it (Go ≥ 1.22: `\b`, `\f`
/// short escapes; U+2028/U+2029 always escaped; `<>&` escaped only with `escape_html`).
pub(crate) fn quote_into(out: &mut String, s: &str, escape_html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' if escape_html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string as Go's `json.Marshal` writes it (HTML-escaped).
pub(crate) fn go_json_string(s: &str) -> String {
    let mut out = String::new();
    quote_into(&mut out, s, true);
    out
}

/// Splits a finite float into its shortest decimal digits and decimal exponent (`d.ddd × 10^exp`).
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    (mantissa.replace('.', ""), exp.parse().unwrap_or(0))
}

/// `%v` of a float64: `strconv.FormatFloat(f, 'g', -1, 64)` with exponent form when the decimal
/// exponent is below -4 or at least 6 (Go's rule for the shortest precision).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    shortest(f, -4..6)
}

/// The shortest digits of a finite, non-zero `f`, in plain form when the decimal exponent is in
/// `plain`, else as `d.ddde±XX` (the two Go formatters differ only in that range).
fn shortest(f: f64, plain: std::ops::Range<i32>) -> String {
    let (digits, exp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    if !plain.contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    format!("{sign}{}", place_point(&digits, exp))
}

/// Writes `digits` with the decimal point after position `exp + 1`.
fn place_point(digits: &str, exp: i32) -> String {
    let point = exp + 1;
    if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    }
}

/// A float as `encoding/json` writes it (exponent only below 1e-6 or from 1e21).
fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    if f == 0.0 {
        return "0".into();
    }
    shortest(f, -7..21)
}

/// The raw-JSON view (`json.Decoder` with `UseNumber` into `interface{}`).
pub(crate) fn raw(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil("interface {}"),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.to_string()),
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(a) => Value::List {
            items: a.iter().map(raw).collect(),
            nil: false,
            elem: "interface {}",
        },
        serde_json::Value::Object(o) => Value::Map {
            entries: o.iter().map(|(k, v)| (k.clone(), raw(v))).collect(),
            ty: "map[string]interface {}",
        },
    }
}

/// Canonicalises a plugin interface type the way `PluginInterfaceType`'s JSON round trip does.
fn interface_type(s: &str) -> String {
    let b = s.as_bytes();
    let mut prefix_end = 0;
    let mut version_at = b.len();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'.' => prefix_end = i,
            b'/' => {
                version_at = i;
                break;
            }
            _ => {}
        }
    }
    let prefix = &s[..prefix_end];
    let capability = s.get(prefix_end + 1..version_at).unwrap_or("");
    let version = s.get(version_at + 1..).unwrap_or("");
    format!("{prefix}.{capability}/{version}")
}

/// Finds a JSON key the way `encoding/json` does: exact match first, then case-insensitively.
fn lookup<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Decodes JSON into the typed view of `kind`, leniently: mismatched or missing values become zero values.
pub(crate) fn typed(kind: Kind, v: Option<&serde_json::Value>) -> Value {
    let v = v.filter(|v| !v.is_null());
    match kind {
        Kind::Str => Value::Str(v.and_then(|v| v.as_str()).unwrap_or("").to_string()),
        Kind::Bool => Value::Bool(v.and_then(|v| v.as_bool()).unwrap_or(false)),
        Kind::U32 => Value::Int(v.and_then(|v| v.as_u64()).unwrap_or(0) as i64),
        Kind::InterfaceType => {
            Value::Stringer(interface_type(v.and_then(|v| v.as_str()).unwrap_or("")))
        }
        Kind::Ptr(inner) => match v {
            None => Value::Nil(ptr_name(inner)),
            Some(v) => Value::Ptr(Box::new(typed(*inner, Some(v)))),
        },
        Kind::Slice(inner) => {
            let elem = inner.name().unwrap_or("interface {}");
            match v.and_then(|v| v.as_array()) {
                None => Value::List {
                    items: Vec::new(),
                    nil: true,
                    elem,
                },
                Some(a) => Value::List {
                    items: a.iter().map(|x| typed(*inner, Some(x))).collect(),
                    nil: false,
                    elem,
                },
            }
        }
        Kind::Struct(st) => {
            let obj = v.and_then(|v| v.as_object());
            let fields = st
                .fields
                .iter()
                .map(|f| Field {
                    go: f.go,
                    json: f.key,
                    omitempty: f.omitempty,
                    embedded: false,
                    value: typed(f.kind, obj.and_then(|o| lookup(o, f.key))),
                })
                .collect();
            Value::Struct(Box::new(Struct {
                ty: st.name,
                fields,
                methods: Vec::new(),
                marshal: Marshal::Fields,
            }))
        }
    }
}

/// The type `fmt` names for a nil pointer to `inner`.
fn ptr_name(inner: &Kind) -> &'static str {
    match inner {
        Kind::Str => "*string",
        Kind::Struct(st) if std::ptr::eq(*st, &schema::PLUGIN_CONFIG_ROOTFS) => {
            "*types.PluginConfigRootfs"
        }
        _ => "*interface {}",
    }
}

/// The typed view of one plugin object (`types.Plugin`).
pub(crate) fn typed_plugin(v: &serde_json::Value) -> Value {
    typed(Kind::Struct(&schema::PLUGIN), Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_typed_structs_like_fmt() {
        let p = typed_plugin(&json!({
            "Config": {"Args": {"Description": "", "Name": "", "Settable": null, "Value": null},
                       "Interface": {"Socket": "x.sock", "Types": ["docker.volumedriver/1.0"]},
                       "User": {}, "Network": {"Type": ""}},
            "Enabled": false, "Id": "abc", "Name": "n:latest",
            "Settings": {"Args": [], "Devices": [], "Env": ["DEBUG=2"], "Mounts": []}
        }));
        let Value::Struct(s) = &p else { panic!() };
        let get = |name: &str| {
            s.fields
                .iter()
                .find(|f| f.go == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(get("Settings").print(), "{[] [] [DEBUG=2] []}");
        let Value::Struct(cfg) = get("Config") else {
            panic!()
        };
        let cget = |name: &str| {
            cfg.fields
                .iter()
                .find(|f| f.go == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(cget("Args").print(), "{  [] []}");
        assert_eq!(
            cget("Interface").print(),
            "{ x.sock [docker.volumedriver/1.0]}"
        );
        assert_eq!(cget("User").print(), "{0 0}");
        assert_eq!(cget("User").to_json(false), "{}");
        assert_eq!(cget("Network").print(), "{}");
        assert_eq!(cget("Rootfs").print(), "<nil>");
        assert_eq!(
            cget("Linux").to_json(false),
            r#"{"AllowAllDevices":false,"Capabilities":null,"Devices":null}"#
        );
    }

    #[test]
    fn quotes_like_go() {
        let mut s = String::new();
        quote_into(&mut s, "a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{2028}é", true);
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u2028é""#);
        let mut s = String::new();
        quote_into(&mut s, "<&>", false);
        assert_eq!(s, r#""<&>""#);
    }

    #[test]
    fn floats_like_go() {
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(json_float(1e6), "1000000");
        assert_eq!(json_float(1e21), "1e+21");
    }

    #[test]
    fn interface_types_round_trip_like_go() {
        assert_eq!(
            interface_type("docker.volumedriver/1.0"),
            "docker.volumedriver/1.0"
        );
        assert_eq!(interface_type("foo"), ".oo/");
    }
}
