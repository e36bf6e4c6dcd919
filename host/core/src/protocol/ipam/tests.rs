//! The IPAM mapping as both packagings see it, checked against the bodies dockerd 20.10.24 sent
//! and the reply types it decodes (`protocol::replies`).

use super::*;
use crate::gojson;
use crate::protocol::replies;
use serde_json::{Value, json};

fn body(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn dockerd_20_10_requests_decode() {
    let r = Request::decode(
        "/IpamDriver.RequestPool",
        br#"{"AddressSpace":"x","Pool":"10.55.0.0/24","SubPool":"","Options":{"b":"2","a":"1"},"V6":false}"#,
    );
    assert_eq!(
        r,
        Ok(Request::RequestPool(PoolRequest {
            address_space: "x".into(),
            pool: "10.55.0.0/24".into(),
            sub_pool: String::new(),
            options: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            v6: false,
        }))
    );
    let gw = Request::decode(
        REQUEST_ADDRESS,
        br#"{"PoolID":"p","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
    )
    .unwrap();
    assert!(matches!(&gw, Request::RequestAddress(a) if a.is_gateway() && a.pool_id == "p"));
    let ep = Request::decode(
        REQUEST_ADDRESS,
        br#"{"PoolID":"p","Address":"","Options":null}"#,
    )
    .unwrap();
    assert!(matches!(&ep, Request::RequestAddress(a) if !a.is_gateway() && a.options.is_empty()));
    assert_eq!(
        Request::decode(RELEASE_ADDRESS, br#"{"poolid":"p","address":"10.55.0.2"}"#),
        Ok(Request::ReleaseAddress {
            pool_id: "p".into(),
            address: "10.55.0.2".into()
        })
    );
    assert_eq!(
        Request::decode(RELEASE_POOL, br#"{"PoolID":"p"}"#),
        Ok(Request::ReleasePool {
            pool_id: "p".into()
        })
    );
    for b in [&b""[..], b"null", b"{}"] {
        assert_eq!(
            Request::decode(GET_CAPABILITIES, b),
            Ok(Request::GetCapabilities)
        );
        assert_eq!(
            Request::decode(GET_DEFAULT_ADDRESS_SPACES, b),
            Ok(Request::GetDefaultAddressSpaces)
        );
    }
}

#[test]
fn bad_bodies_and_unknown_methods() {
    let r = Request::decode(REQUEST_POOL, br#"{"V6":"yes"}"#).unwrap_err();
    assert_eq!(r.status, 400);
    let r = Request::decode("IpamDriver.GwAllocCheck", b"{}").unwrap_err();
    assert_eq!(r.status, 404);
}

#[test]
fn replies_are_what_dockerd_decodes() {
    let cases = [
        (
            GET_CAPABILITIES,
            Response::Capabilities(Capabilities {
                requires_mac_address: true,
                requires_request_replay: false,
            }),
            json!({"RequiresMACAddress": true, "RequiresRequestReplay": false}),
        ),
        (
            GET_DEFAULT_ADDRESS_SPACES,
            Response::AddressSpaces(AddressSpaces {
                local: "l".into(),
                global: "g".into(),
            }),
            json!({"LocalDefaultAddressSpace": "l", "GlobalDefaultAddressSpace": "g"}),
        ),
        (
            REQUEST_POOL,
            Response::Pool(Pool {
                pool_id: "p1".into(),
                pool: "10.66.0.0/24".into(),
                data: vec![],
            }),
            json!({"PoolID": "p1", "Pool": "10.66.0.0/24", "Data": {}}),
        ),
        (
            REQUEST_ADDRESS,
            Response::Address(Address {
                address: "10.66.0.1/24".into(),
                data: vec![("k".into(), "v".into())],
            }),
            json!({"Address": "10.66.0.1/24", "Data": {"k": "v"}}),
        ),
        (RELEASE_POOL, Response::Done, json!({})),
        (RELEASE_ADDRESS, Response::Done, json!({})),
    ];
    for (method, response, want) in cases {
        let r = encode(Ok(response));
        assert_eq!((r.status, body(&r)), (200, want.clone()), "{method}");
        // The gateway's check accepts every reply the mapping produces, as a success.
        let Some(replies::Shape::Typed { kind, error }) = replies::shape(method) else {
            panic!("{method} has no typed shape");
        };
        assert_eq!(error, replies::ErrorField::Error, "{method}");
        gojson::decode(&r.body, kind).unwrap_or_else(|e| panic!("{method}: {e}"));
    }
    assert_eq!(
        body(&encode(Ok(Response::Activate))),
        json!({"Implements": ["IpamDriver"]})
    );
}

#[test]
fn errors_carry_err_and_error_with_the_codes_status() {
    let r = encode(Err(DriverError::conflict("pool exhausted")));
    assert_eq!(
        (r.status, body(&r)),
        (
            500,
            json!({"Err": "pool exhausted", "Error": "pool exhausted"})
        )
    );
    let r = encode(Err(DriverError::unsupported("")));
    assert_eq!(
        (r.status, body(&r)),
        (404, json!({"Err": "unsupported", "Error": "unsupported"}))
    );
}

#[test]
fn pool_replies_dockerd_would_put_on_a_host_bridge_are_checked() {
    assert_eq!(
        check_pool_reply("", "10.66.0.0/24", Some("10.66.0.1/24")),
        Ok(())
    );
    assert_eq!(
        check_pool_reply("10.66.0.0/24", "10.66.0.0/24", None),
        Ok(())
    );
    for (requested, pool, gateway) in [
        ("", "0.0.0.0/0", None),
        ("10.66.0.0/24", "192.168.1.0/24", None),
        ("", "10.66.0.0/24", Some("10.66.0.1/1")),
        ("", "10.66.0.0/24", Some("192.168.1.1/24")),
        ("", "10.66.0.0/24", Some("10.66.0.1")),
        ("", "fd00::/64", Some("10.66.0.1/64")),
    ] {
        assert!(
            check_pool_reply(requested, pool, gateway).is_err(),
            "{requested:?} {pool:?} {gateway:?}"
        );
    }
}
