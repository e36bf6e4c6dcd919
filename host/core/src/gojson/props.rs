//! Property tests: the decoder against an independent model of Go's decoder.
//!
//! Replies are generated as a list of `(key, value)` members over keys that collide under every
//! folding rule (ASCII case, `ſ`, the Kelvin sign, `İ`, `ı`), with values of every JSON type, keys
//! written with `\u` escapes, random whitespace and trailing data. The model reads the *members*
//! (not the bytes) the way Go 1.19 (`bytes.EqualFold`; dockerd 20.10's toolchain) and Go ≥ 1.21
//! (`ToUpper(ToLower)`) would: the last member matching a field wins, `null` is a no-op, a wrong
//! type fails the call, trailing data is ignored. The property: whenever plugd accepts a body,
//! both Go versions read exactly the value plugd re-encodes. Arbitrary and mutated bytes check that
//! the decoder never panics and that what it accepts survives a re-encoding unchanged.
//!
//! `PROPTEST_CASES` sets the case count (CI runs the default; docs/reliability.md records a long
//! run and its command).

use super::{decode, decode_request};
use crate::protocol::replies::VOLUME_MOUNTPOINT;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering};

const KEYS: &[&str] = &[
    "Mountpoint",
    "mountpoint",
    "MOUNTPOINT",
    "mountPoint",
    "Mountpo\u{131}nt",
    "Mountpo\u{130}nt",
    "Err",
    "err",
    "ERR",
    "Mount",
    "X",
    "\u{17F}cope",
    "\u{212A}ey",
];

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Null,
    Num(i64),
    Bool(bool),
    Obj,
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => "[/a-z\u{e9}\u{1F600}\"\\\\]{0,8}".prop_map(Val::Str),
        1 => Just(Val::Null),
        1 => any::<i64>().prop_map(Val::Num),
        1 => any::<bool>().prop_map(Val::Bool),
        1 => Just(Val::Obj),
    ]
}

fn render_str(s: &str, escape_all: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if escape_all => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_val(v: &Val) -> String {
    match v {
        Val::Str(s) => render_str(s, false),
        Val::Null => "null".into(),
        Val::Num(n) => n.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Obj => r#"{"a":[1,{"b":null}]}"#.into(),
    }
}

type Members = Vec<(String, Val, bool)>;

fn reply() -> impl Strategy<Value = (Members, String, String)> {
    (
        prop::collection::vec(
            (
                prop::sample::select(KEYS).prop_map(String::from),
                val(),
                any::<bool>(),
            ),
            0..5,
        ),
        prop::sample::select(&["", " ", "\n\t"][..]).prop_map(String::from),
        prop::sample::select(&["", "\n", " junk", "{}", "\u{a0}"][..]).prop_map(String::from),
    )
}

fn render(members: &Members, ws: &str, trailing: &str) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v, esc)| format!("{ws}{}{ws}:{ws}{}", render_str(k, *esc), render_val(v)))
        .collect();
    format!("{ws}{{{}}}{ws}{trailing}", body.join(","))
}

#[derive(Clone, Copy)]
enum GoFold {
    /// Go ≤ 1.20: `bytes.EqualFold`, simple folding orbits (`ſ` ~ `s`, Kelvin ~ `k`).
    EqualFold,
    /// Go ≥ 1.21: `ToUpper(ToLower(r))` per rune (also `İ`, `ı` → `I`).
    UpperLower,
}

fn fold_rune(c: char, how: GoFold) -> char {
    match (c, how) {
        ('\u{17F}', _) => 'S',
        ('\u{212A}', _) => 'K',
        ('\u{130}' | '\u{131}', GoFold::UpperLower) => 'I',
        (c, _) if c.is_ascii() => c.to_ascii_uppercase(),
        (c, _) => c,
    }
}

fn go_fold_eq(a: &str, b: &str, how: GoFold) -> bool {
    a.chars()
        .map(|c| fold_rune(c, how))
        .eq(b.chars().map(|c| fold_rune(c, how)))
}

/// What Go reads from these members into `{Mountpoint, Err string}`; `None` = the call fails.
fn go_model(members: &Members, how: GoFold) -> Option<(String, String)> {
    let fields = ["Mountpoint", "Err"];
    let mut values = [String::new(), String::new()];
    let mut failed = false;
    for (k, v, _) in members {
        let hit = fields
            .iter()
            .position(|f| f == k)
            .or_else(|| fields.iter().position(|f| go_fold_eq(f, k, how)));
        let Some(i) = hit else { continue };
        match v {
            Val::Str(s) => values[i] = s.clone(),
            Val::Null => {}
            _ => failed = true, // UnmarshalTypeError: Go goes on, then fails the call
        }
    }
    let [m, e] = values;
    (!failed).then_some((m, e))
}

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn accepted_replies_read_the_same_in_every_go_version() {
    static ACCEPTED: AtomicU64 = AtomicU64::new(0);
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let mut runner = runner();
    runner
        .run(&reply(), |(members, ws, trailing)| {
            let body = render(&members, &ws, &trailing);
            let Ok(v) = decode(body.as_bytes(), &VOLUME_MOUNTPOINT) else {
                REFUSED.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let ours = (
                v["Mountpoint"].as_str().unwrap_or_default().to_string(),
                v["Err"].as_str().unwrap_or_default().to_string(),
            );
            for how in [GoFold::EqualFold, GoFold::UpperLower] {
                prop_assert_eq!(go_model(&members, how), Some(ours.clone()), "{}", body);
            }
            // Re-encoded, it decodes to itself.
            let again = decode(&serde_json::to_vec(&v).unwrap(), &VOLUME_MOUNTPOINT).unwrap();
            prop_assert_eq!(again, v);
            Ok(())
        })
        .unwrap();
    let (a, r) = (
        ACCEPTED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    );
    eprintln!("gojson property: {a} accepted, {r} refused, 0 read differently by Go");
    assert!(a > 0 && r > 0, "the generator must exercise both outcomes");
}

/// Requests (`decode_request`) are read as Go reads them, duplicates included: whatever it
/// accepts is what both Go versions read, and a body with ASCII keys and nothing after the value
/// is refused only where Go fails the call too (a wrong type), never for two keys of one field.
#[test]
fn requests_read_as_go_reads_them_duplicates_included() {
    static DUPLICATES: AtomicU64 = AtomicU64::new(0);
    let mut runner = runner();
    runner
        .run(&reply(), |(members, ws, trailing)| {
            let body = render(&members, &ws, &trailing);
            match decode_request(body.as_bytes(), &VOLUME_MOUNTPOINT) {
                Ok(v) => {
                    let ours = (
                        v["Mountpoint"].as_str().unwrap_or_default().to_string(),
                        v["Err"].as_str().unwrap_or_default().to_string(),
                    );
                    for how in [GoFold::EqualFold, GoFold::UpperLower] {
                        prop_assert_eq!(go_model(&members, how), Some(ours.clone()), "{}", body);
                    }
                    let hits = members
                        .iter()
                        .filter(|(k, _, _)| k.eq_ignore_ascii_case("Mountpoint"))
                        .count();
                    if hits > 1 {
                        DUPLICATES.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let ascii = members.iter().all(|(k, _, _)| k.is_ascii());
                    let clean = trailing.is_empty() || trailing == "\n";
                    if ascii && clean {
                        prop_assert_eq!(
                            go_model(&members, GoFold::UpperLower),
                            None,
                            "refused {} ({}) though Go reads it",
                            body,
                            e
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let d = DUPLICATES.load(Ordering::Relaxed);
    eprintln!("gojson request property: {d} accepted bodies had two or more keys for one field");
    assert!(d > 0, "the generator must exercise duplicate keys");
}

#[test]
fn arbitrary_and_mutated_bytes_never_panic() {
    let mut runner = runner();
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (reply(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|((m, ws, t), at, byte)| {
            let mut b = render(&m, &ws, &t).into_bytes();
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] = byte;
            }
            b
        }),
    ];
    runner
        .run(&strategy, |bytes| {
            for kind in [
                &VOLUME_MOUNTPOINT,
                &crate::protocol::replies::VOLUME_LIST,
                &crate::protocol::replies::NETWORK_JOIN,
            ] {
                if let Ok(v) = decode(&bytes, kind) {
                    let again = decode(&serde_json::to_vec(&v).unwrap(), kind).unwrap();
                    prop_assert_eq!(again, v);
                }
            }
            Ok(())
        })
        .unwrap();
}
