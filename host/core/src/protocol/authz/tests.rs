use super::*;
use crate::gojson;
use crate::protocol::replies;
use serde_json::{Value, json};

fn body(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// What dockerd 20.10 sent for `docker volume create v1` (captured shape; base64 of the body).
const REQ_BODY: &str = r#"{"RequestMethod":"POST","RequestUri":"/v1.41/volumes/create","RequestBody":"eyJOYW1lIjoidjEifQ==","RequestHeaders":{"Content-Type":"application/json","User-Agent":"Docker-Client/28"}}"#;

#[test]
fn the_request_phase_decodes_with_its_body() {
    let r = Request::decode(&format!("/{REQUEST}"), REQ_BODY.as_bytes()).unwrap();
    assert_eq!(
        r,
        Request::Authorize(ApiRequest {
            user: String::new(),
            user_authn_method: String::new(),
            method: "POST".into(),
            uri: "/v1.41/volumes/create".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "Docker-Client/28".into()),
            ],
            body: br#"{"Name":"v1"}"#.to_vec(),
        })
    );
}

#[test]
fn the_response_phase_carries_the_answer() {
    let body = r#"{"User":"alice","UserAuthNMethod":"TLS","RequestMethod":"GET","RequestUri":"/_ping",
        "RequestPeerCertificates":["LS0t"],"ResponseStatusCode":200,"ResponseBody":"T0s=",
        "ResponseHeaders":{"Api-Version":"1.41"}}"#;
    match Request::decode(RESPONSE, body.as_bytes()).unwrap() {
        Request::AuthorizeResponse(req, res) => {
            assert_eq!(
                (req.user.as_str(), req.user_authn_method.as_str()),
                ("alice", "TLS")
            );
            assert_eq!((req.method.as_str(), req.uri.as_str()), ("GET", "/_ping"));
            assert!(req.body.is_empty());
            assert_eq!(
                res,
                ApiResponse {
                    status: 200,
                    headers: vec![("Api-Version".into(), "1.41".into())],
                    body: b"OK".to_vec(),
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn go_leniency_nulls_case_and_empty_bodies() {
    let r = Request::decode(
        REQUEST,
        br#"{"requesturi":"/x","RequestBody":null,"RequestHeaders":null,"Unknown":1}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        Request::Authorize(ApiRequest {
            uri: "/x".into(),
            ..Default::default()
        })
    );
    assert_eq!(
        Request::decode(REQUEST, b"").unwrap(),
        Request::Authorize(ApiRequest::default())
    );
    assert_eq!(
        Request::decode("Plugin.Activate", b"").unwrap(),
        Request::Activate
    );
}

#[test]
fn bad_bodies_are_400_and_unknown_calls_404() {
    for (what, method, body) in [
        ("bad base64", REQUEST, r#"{"RequestBody":"not base64!"}"#),
        ("missing padding", REQUEST, r#"{"RequestBody":"T0s"}"#),
        ("padding inside", RESPONSE, r#"{"ResponseBody":"T0s=T0s="}"#),
        ("wrong type", REQUEST, r#"{"RequestUri":7}"#),
        ("negative status", RESPONSE, r#"{"ResponseStatusCode":-1}"#),
        ("float status", RESPONSE, r#"{"ResponseStatusCode":2.5}"#),
        ("not an object", REQUEST, "[]"),
    ] {
        let r = Request::decode(method, body.as_bytes()).unwrap_err();
        assert_eq!(r.status, 400, "{what}");
        assert!(
            body_err(&r).starts_with(&format!("{method}: invalid request body")),
            "{what}: {}",
            body_err(&r)
        );
    }
    assert_eq!(
        Request::decode("AuthZPlugin.Other", b"{}")
            .unwrap_err()
            .status,
        404
    );
}

fn body_err(r: &Reply) -> String {
    body(r)["Err"].as_str().unwrap().to_string()
}

#[test]
fn base64_matches_go_std_encoding() {
    assert_eq!(base64("").unwrap(), b"");
    assert_eq!(base64("YQ==").unwrap(), b"a");
    assert_eq!(base64("YWI=").unwrap(), b"ab");
    assert_eq!(base64("YWJj").unwrap(), b"abc");
    assert_eq!(base64("YWJj\r\nZA==").unwrap(), b"abcd");
    assert_eq!(base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    for bad in ["Y", "YQ=", "Y===", "YQ==YQ==", "YW-j", "YWJj "] {
        assert!(base64(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn replies_have_dockerd_shape_and_pass_plugd_s_own_check() {
    let r = encode(Ok(Response::Decision(Decision::deny("no /volumes"))));
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        json!({"Allow": false, "Msg": "no /volumes", "Err": ""})
    );
    // The table the gateway checks plugin replies with reads it back unchanged.
    assert_eq!(
        gojson::decode(&r.body, &replies::AUTHZ).unwrap()["Allow"],
        false
    );
    let r = encode(Ok(Response::Decision(Decision::allow())));
    assert_eq!(body(&r), json!({"Allow": true, "Msg": "", "Err": ""}));
    let r = encode(Ok(Response::Activate));
    assert_eq!(body(&r), json!({"Implements": ["authz"]}));
    let r = encode(Err(DriverError::internal("policy store down")));
    assert_eq!(
        (r.status, body(&r)),
        (500, json!({"Err": "policy store down"}))
    );
}
