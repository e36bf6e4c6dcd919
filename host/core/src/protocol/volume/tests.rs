//! The volume mapping as both packagings see it (these were the SDK's and the wasm host's tests
//! before the mapping moved here).

use super::*;
use crate::protocol::ErrorCode;
use serde_json::{Value, json};

fn body(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn empty_null_and_braces_are_all_no_arguments() {
    for b in [&b""[..], b"  \n", b"null", b"{}", b"{}\n"] {
        assert_eq!(Request::decode("/VolumeDriver.List", b), Ok(Request::List));
        assert_eq!(Request::decode("Plugin.Activate", b), Ok(Request::Activate));
        assert_eq!(
            Request::decode("VolumeDriver.Get", b),
            Ok(Request::Get {
                name: String::new()
            })
        );
    }
    assert_eq!(
        Request::decode(CAPABILITIES, b"{}\n"),
        Ok(Request::Capabilities)
    );
}

#[test]
fn create_reads_null_opts_and_sorts_options() {
    let r = Request::decode(CREATE, br#"{"Name":"v1","Opts":null}"#);
    assert_eq!(
        r,
        Ok(Request::Create {
            name: "v1".into(),
            opts: vec![]
        })
    );
    let r = Request::decode(CREATE, br#"{"Name":"v1","Opts":{"b":"2","a":"1"}}"#);
    assert_eq!(
        r,
        Ok(Request::Create {
            name: "v1".into(),
            opts: vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        })
    );
    let r = Request::decode(MOUNT, b"{\"Name\":\"v\",\"ID\":\"abc\"}\n");
    assert_eq!(
        r,
        Ok(Request::Mount {
            name: "v".into(),
            id: "abc".into()
        })
    );
}

#[test]
fn field_names_match_any_case_the_last_winning_and_unknown_fields_are_ignored() {
    let r = Request::decode(MOUNT, br#"{"name":"v1","Id":"x","Extra":1}"#);
    assert_eq!(
        r,
        Ok(Request::Mount {
            name: "v1".into(),
            id: "x".into()
        })
    );
    let r = Request::decode(PATH, br#"{"NAME":"other","Name":"v1"}"#);
    assert_eq!(r, Ok(Request::Path { name: "v1".into() }));
    // Go assigns in order: the later key wins even when the earlier one matched exactly.
    let r = Request::decode(PATH, br#"{"Name":"v1","name":"v2"}"#);
    assert_eq!(r, Ok(Request::Path { name: "v2".into() }));
    let r = Request::decode(REMOVE, br#"{"Name":null}"#);
    assert_eq!(r, Ok(Request::Remove { name: "".into() }));
    // A later `null` leaves the field as an earlier key set it; an earlier wrong type still fails.
    let r = Request::decode(PATH, br#"{"Name":"v1","name":null}"#);
    assert_eq!(r, Ok(Request::Path { name: "v1".into() }));
    assert_eq!(
        Request::decode(PATH, br#"{"Name":7,"name":"v1"}"#)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn malformed_bodies_are_400_and_unknown_endpoints_404() {
    for (method, b) in [
        (GET, &br#"{oops"#[..]),
        (GET, br#"[]"#),
        (GET, br#"{"Name": 7}"#),
        (LIST, br#""x""#),
        (LIST, b"[1]"),
        (CREATE, br#"{"Name":"v","Opts":["a"]}"#),
        (CREATE, br#"{"Name":"v","Opts":{"a":1}}"#),
    ] {
        let reply = Request::decode(method, b).unwrap_err();
        assert_eq!(reply.status, 400, "{method} {b:?}");
        let err = body(&reply)["Err"].as_str().unwrap().to_string();
        assert!(
            err.starts_with(&format!("{method}: invalid request body")),
            "{err}"
        );
    }
    for method in [
        "NetworkDriver.GetCapabilities",
        "VolumeDriver.Frobnicate",
        "volumedriver.get",
        "",
    ] {
        let reply = Request::decode(method, b"{}").unwrap_err();
        assert_eq!(reply.status, 404, "{method}");
        assert!(
            body(&reply)["Err"]
                .as_str()
                .unwrap()
                .contains("not implemented")
        );
    }
}

#[test]
fn replies_have_dockerd_shapes() {
    let call = |r: Response| {
        let r = encode(Ok(r));
        (r.status, body(&r))
    };
    assert_eq!(
        call(Response::Activate),
        (200, json!({"Implements": ["VolumeDriver"]}))
    );
    assert_eq!(call(Response::Done), (200, json!({"Err": ""})));
    assert_eq!(
        call(Response::Mountpoint("/data/v".into())),
        (200, json!({"Mountpoint": "/data/v", "Err": ""}))
    );
    let got = Info {
        name: "v".into(),
        mountpoint: String::new(),
        created_at: Some(String::new()),
        status: vec![("k".into(), "v".into())],
    };
    assert_eq!(
        call(Response::Volume(got)),
        (
            200,
            json!({"Volume": {"Name": "v", "Status": {"k": "v"}}, "Err": ""})
        ),
        "empty Mountpoint and CreatedAt are left out"
    );
    let listed = vec![
        Info::new("a", "/data/a"),
        Info {
            created_at: Some("2026-11-23T10:00:00Z".into()),
            ..Info::new("b", "/data/b")
        },
    ];
    assert_eq!(
        call(Response::Volumes(listed)),
        (
            200,
            json!({"Volumes": [
                {"Name": "a", "Mountpoint": "/data/a"},
                {"Name": "b", "Mountpoint": "/data/b", "CreatedAt": "2026-11-23T10:00:00Z"},
            ], "Err": ""})
        )
    );
    assert_eq!(
        call(Response::Capabilities(Scope::Global)),
        (200, json!({"Capabilities": {"Scope": "global"}}))
    );
}

#[test]
fn driver_errors_map_to_500_or_404_with_err() {
    let r = encode(Err(DriverError::not_found("no such volume")));
    assert_eq!(
        (r.status, body(&r)),
        (500, json!({"Err": "no such volume"}))
    );
    let r = encode(Err(DriverError::new(ErrorCode::Unsupported, "")));
    assert_eq!(
        (r.status, body(&r)),
        (404, json!({"Err": "unsupported"})),
        "unsupported is a 404 and an empty message is replaced by the code"
    );
}
