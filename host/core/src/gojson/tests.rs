//! One test per row of the Go-decoder table in docs/protocol.md ("Reading plugin replies").
//!
//! Each row states what Go's `encoding/json` (`Decoder.Decode`, as dockerd's plugin client calls
//! it) does with an input, from the package documentation and source
//! (<https://pkg.go.dev/encoding/json#Unmarshal>, `decode.go`, `scanner.go`, `fold.go`), and what
//! plugd does: accept with the same value, or refuse because the reading would differ.

use super::*;
use crate::protocol::replies::{AUTHZ, NETWORK_JOIN, VOLUME_GET, VOLUME_LIST, VOLUME_MOUNTPOINT};
use serde_json::json;

fn mount(body: &str) -> Result<serde_json::Value, DecodeError> {
    decode(body.as_bytes(), &VOLUME_MOUNTPOINT)
}

// --- Rows Go reads as plugd does: accepted, re-encoded to the same value ------------------------

/// Go: keys match fields ignoring ASCII case ("preferring an exact match").
#[test]
fn ascii_case_insensitive_keys_match() {
    assert_eq!(
        mount(r#"{"mountpoint":"/data/v","ERR":""}"#).unwrap(),
        json!({"Mountpoint": "/data/v", "Err": ""})
    );
}

/// Go: unknown keys are ignored.
#[test]
fn unknown_keys_are_ignored() {
    assert_eq!(
        mount(r#"{"Mountpoint":"/m","Extra":{"deep":[1,2]}}"#).unwrap(),
        json!({"Mountpoint": "/m", "Err": ""})
    );
}

/// Go: absent fields keep their zero value; `null` on a string is a no-op.
#[test]
fn absent_and_null_are_zero() {
    assert_eq!(
        mount(r#"{"Mountpoint":null}"#).unwrap(),
        json!({"Mountpoint": "", "Err": ""})
    );
    assert_eq!(mount("{}").unwrap(), json!({"Mountpoint": "", "Err": ""}));
    // A top-level null is a no-op too: the zero reply.
    assert_eq!(mount("null").unwrap(), json!({"Mountpoint": "", "Err": ""}));
}

/// Go: surrounding whitespace (space, tab, CR, LF) is fine; the trailing newline every Go encoder
/// writes included.
#[test]
fn json_whitespace_around_the_value() {
    assert!(mount(" \t\r\n{\"Mountpoint\":\"/m\"}\n").is_ok());
}

/// Go: `\u` escapes and surrogate pairs decode to the character.
#[test]
fn escapes_and_pairs_decode() {
    assert_eq!(
        mount(r#"{"Mount\u0070oint":"/\ud83d\ude00"}"#).unwrap()["Mountpoint"],
        "/\u{1F600}"
    );
}

/// Go: a pointer field given `null` is nil (Get with no volume = "no such volume").
#[test]
fn null_pointer_stays_null() {
    assert_eq!(
        decode(br#"{"Volume":null}"#, &VOLUME_GET).unwrap(),
        json!({"Volume": null, "Err": ""})
    );
}

/// Go: `interface{}` numbers are float64; the re-encoding is that float64.
#[test]
fn interface_numbers_are_float64() {
    let v = decode(
        br#"{"Volume":{"Name":"v","Status":{"n":1e2,"s":"x","l":[true,null]}}}"#,
        &VOLUME_GET,
    )
    .unwrap();
    assert_eq!(v["Volume"]["Status"]["n"].as_f64(), Some(100.0));
    assert_eq!(v["Volume"]["Status"]["l"], json!([true, null]));
    // A zero time.Time is left out (dockerd decodes absence as the zero time).
    assert!(v["Volume"].get("CreatedAt").is_none());
}

// --- Rows where Go's reading differs from a strict one: refused ---------------------------------

/// Go: `Decoder.Decode` reads one value and leaves the rest unread, so `{}{"Mountpoint":"/"}` and
/// `{"Mountpoint":"/a"} junk` decode without error.
#[test]
fn trailing_data_is_refused() {
    for body in [
        r#"{}{"Mountpoint":"/"}"#,
        r#"{"Mountpoint":"/a"} junk"#,
        "{}\n{}",
    ] {
        assert!(
            matches!(mount(body), Err(DecodeError::Trailing { .. })),
            "{body}"
        );
    }
}

/// Go: for two keys naming one field the last wins (`"mountpoint"` after `"Mountpoint"`), and an
/// object given twice is merged into the first.
#[test]
fn duplicate_keys_under_folding_are_refused() {
    for body in [
        r#"{"Mountpoint":"/ok","mountpoint":"/etc"}"#,
        r#"{"Mountpoint":"/ok","Mountpoint":"/etc"}"#,
        r#"{"MOUNTPOINT":"/ok","mountPoint":null}"#,
    ] {
        let e = mount(body).unwrap_err();
        assert!(matches!(e, DecodeError::Duplicate { .. }), "{body}: {e}");
    }
    let e = decode(
        br#"{"Volume":{"Name":"a","Mountpoint":"/x"},"volume":{"Name":"b"}}"#,
        &VOLUME_GET,
    )
    .unwrap_err();
    assert!(matches!(e, DecodeError::Duplicate { ref at, .. } if at == "Volume"));
    // In a map[string]interface{} keys are exact: a repeat is a duplicate, another case is not.
    assert!(decode(br#"{"Volume":{"Status":{"a":1,"a":2}}}"#, &VOLUME_GET).is_err());
    assert!(decode(br#"{"Volume":{"Status":{"a":1,"A":2}}}"#, &VOLUME_GET).is_ok());
}

/// Go folds keys by Unicode: `ſ` (U+017F) matches `S`/`s`, `K` (U+212A) matches `k`; Go ≥ 1.21
/// also folds `İ`/`ı` onto `I`, which older Go does not.
#[test]
fn unicode_folded_keys_are_refused() {
    for body in [
        "{\"Mountpoint\":\"/ok\",\"Mountpo\u{131}nt\":\"/etc\"}",
        "{\"Mountpoint\":\"/ok\",\"Mountpo\u{130}nt\":\"/etc\"}",
    ] {
        assert!(
            matches!(mount(body), Err(DecodeError::UnicodeFold { .. })),
            "{body}"
        );
    }
    let e = decode(
        "{\"Allow\":false,\"Allow\u{17F}\":true}".as_bytes(),
        &crate::protocol::replies::AUTHZ,
    );
    // `Allowſ` is not `Allow` (extra letter): ignored as unknown, Allow stays false.
    assert_eq!(e.unwrap()["Allow"], false);
    let e = decode("{\"Allow\":false,\"Allow\":true}".as_bytes(), &AUTHZ).unwrap_err();
    assert!(matches!(e, DecodeError::Duplicate { .. }));
    let e = decode(
        "{\"Volumes\":[{\"Name\":\"v\",\"Mountpoint\":\"/a\",\"Mountpoin\u{212A}\":\"/b\"}]}"
            .as_bytes(),
        &VOLUME_LIST,
    );
    assert!(e.is_ok(), "`Mountpoin` + Kelvin is not `Mountpoint`");
    let e = decode(
        "{\"Volumes\":[{\"\u{17F}tatus\":{}}]}".as_bytes(),
        &VOLUME_LIST,
    )
    .unwrap_err();
    assert!(
        matches!(e, DecodeError::UnicodeFold { ref at, .. } if at == "Volumes[0].Status"),
        "{e}"
    );
}

/// Go: invalid UTF-8 in a string is replaced by U+FFFD, so the bytes and the value differ.
#[test]
fn invalid_utf8_is_refused() {
    let mut body = br#"{"Mountpoint":"/data/"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    assert!(matches!(
        decode(&body, &VOLUME_MOUNTPOINT),
        Err(DecodeError::InvalidUtf8 { offset: 21 })
    ));
    // Overlong encodings and encoded surrogates are invalid UTF-8 too.
    for bad in [&[0xc0u8, 0xaf][..], &[0xed, 0xa0, 0x80]] {
        let mut body = br#"{"Err":""#.to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(br#""}"#);
        assert!(decode(&body, &VOLUME_MOUNTPOINT).is_err());
    }
}

/// Go: a lone surrogate escape (`\ud800`, or a low one first) becomes U+FFFD.
#[test]
fn lone_surrogates_are_refused() {
    for body in [
        r#"{"Mountpoint":"/\ud800"}"#,
        r#"{"Mountpoint":"/\udc00\ud800"}"#,
        r#"{"Mountpoint":"/\ud800\u0041"}"#,
        r#"{"M\ud800ountpoint":"/"}"#,
    ] {
        assert!(
            matches!(mount(body), Err(DecodeError::LoneSurrogate { .. })),
            "{body}"
        );
    }
}

/// Go nests 10 000 deep; plugd stops at `MAX_DEPTH` (and never recurses unboundedly).
#[test]
fn deep_nesting_is_refused_without_overflow() {
    let deep = format!(
        "{{\"Volume\":{{\"Status\":{{\"x\":{}{}}}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(
        decode(deep.as_bytes(), &VOLUME_GET),
        Err(DecodeError::TooDeep { .. })
    ));
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    let body = format!("{{\"Volume\":{{\"Status\":{{\"x\":{ok}}}}}}}");
    assert!(
        decode(body.as_bytes(), &VOLUME_GET).is_err(),
        "over the limit"
    );
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 4), "]".repeat(MAX_DEPTH - 4));
    let body = format!("{{\"Volume\":{{\"Status\":{{\"x\":{ok}}}}}}}");
    assert!(decode(body.as_bytes(), &VOLUME_GET).is_ok(), "at the limit");
}

/// Go: a value of the wrong JSON type is an `UnmarshalTypeError`, which fails the call.
#[test]
fn wrong_types_are_refused() {
    for body in [
        r#"{"Mountpoint":5}"#,
        r#"{"Mountpoint":["/a"]}"#,
        r#"{"Err":{}}"#,
        r#"[]"#,
        r#""x""#,
    ] {
        assert!(
            matches!(mount(body), Err(DecodeError::Type { .. })),
            "{body}"
        );
    }
    assert!(matches!(
        decode(br#"{"Allow":"true"}"#, &AUTHZ),
        Err(DecodeError::Type { .. })
    ));
    // An int field takes integer literals only.
    let route = |r: &str| {
        decode(
            format!(r#"{{"StaticRoutes":[{{"Destination":"10.0.0.0/8","RouteType":{r}}}]}}"#)
                .as_bytes(),
            &NETWORK_JOIN,
        )
    };
    assert!(route("1").is_ok());
    for bad in ["1.0", "1e0", "9223372036854775808", "true"] {
        assert!(route(bad).is_err(), "{bad}");
    }
}

/// Go: the empty body fails with EOF; broken JSON with a syntax error.
#[test]
fn empty_and_broken_bodies_are_refused() {
    assert_eq!(mount(""), Err(DecodeError::Empty));
    assert_eq!(mount(" \n"), Err(DecodeError::Empty));
    for body in [
        "{",
        r#"{"Mountpoint":"/a",}"#,
        r#"{'Mountpoint':'/a'}"#,
        r#"{"Mountpoint":"/a\x"}"#,
        "{\"Mountpoint\":\"/a\tb\"}",
        r#"{"Err":01}"#,
        "\u{feff}{}",
        "\u{a0}{}",
    ] {
        assert!(
            matches!(mount(body), Err(DecodeError::Syntax { .. })),
            "{body:?}: {:?}",
            mount(body)
        );
    }
}

/// Go: `time.Time` accepts RFC 3339 or null; `""` fails the whole reply.
#[test]
fn times_must_be_rfc3339() {
    let get = |t: &str| {
        decode(
            format!(r#"{{"Volume":{{"Name":"v","CreatedAt":{t}}}}}"#).as_bytes(),
            &VOLUME_GET,
        )
    };
    assert_eq!(
        get(r#""2024-05-01T10:00:00Z""#).unwrap()["Volume"]["CreatedAt"],
        "2024-05-01T10:00:00Z"
    );
    assert!(get("null").unwrap()["Volume"].get("CreatedAt").is_none());
    assert!(get(r#""""#).is_err());
    assert!(get(r#""yesterday""#).is_err());
}

/// A null element of a slice of structs: Go stores a nil pointer that dockerd dereferences.
#[test]
fn null_list_elements_are_refused() {
    assert!(decode(br#"{"Volumes":[null]}"#, &VOLUME_LIST).is_err());
    assert!(decode(br#"{"Volumes":null}"#, &VOLUME_LIST).is_ok());
}

/// Strings dockerd turns into interfaces and addresses must be the plain forms.
#[test]
fn network_forms_are_checked() {
    let join = |j: &str| decode(j.as_bytes(), &NETWORK_JOIN);
    assert!(
        join(r#"{"InterfaceName":{"SrcName":"veth0","DstPrefix":"eth"},"Gateway":"10.0.0.1"}"#)
            .is_ok()
    );
    assert!(join(r#"{"InterfaceName":{"SrcName":"../eth0"}}"#).is_err());
    assert!(join(r#"{"InterfaceName":{"SrcName":"averyveryverylongname"}}"#).is_err());
    assert!(join(r#"{"Gateway":"10.0.0.1/24"}"#).is_err());
    assert!(join(r#"{"Gateway":""}"#).is_ok(), "empty = unset");
}

/// Not a Go rule: plugd bounds what one reply can make it allocate.
#[test]
fn huge_bodies_are_refused() {
    let many = format!("{{\"Volumes\":[{}]}}", vec!["[]"; MAX_VALUES].join(","));
    assert!(matches!(
        decode(many.as_bytes(), &VOLUME_LIST),
        Err(DecodeError::TooLarge { .. })
    ));
    let big = format!("{{\"Err\":\"{}\"}}", "x".repeat(MAX_BYTES));
    assert!(matches!(mount(&big), Err(DecodeError::TooLarge { .. })));
}

/// Not a Go rule: where a value is costs nothing until an error names it. A long key over many
/// elements used to copy the key once per element (here 100 000 × 1 MiB); the key is also shown
/// cut short in messages.
#[test]
fn long_keys_over_many_elements_stay_cheap() {
    let key = "k".repeat(1 << 20);
    let body = format!(
        "{{\"Volume\":{{\"Status\":{{\"{key}\":[{}]}}}}}}",
        vec!["0"; 100_000].join(",")
    );
    let v = decode(body.as_bytes(), &VOLUME_GET).unwrap();
    assert_eq!(
        v["Volume"]["Status"][&key].as_array().unwrap().len(),
        100_000
    );
    let bad = format!("{{\"Volume\":{{\"Status\":{{\"{key}\":1e999}}}}}}");
    let e = decode(bad.as_bytes(), &VOLUME_GET).unwrap_err().to_string();
    assert!(e.len() < 300 && e.contains("…"), "{e}");
}
