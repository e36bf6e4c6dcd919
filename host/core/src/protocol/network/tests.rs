//! The network mapping as both packagings see it, checked against the bodies dockerd 20.10.24
//! sent in the research run (docs/protocol.md, network section).

use super::*;
use crate::gojson;
use crate::protocol::replies;
use serde_json::{Value, json};

fn body(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// The reply passes plugd's own gateway check for the method (what dockerd gets from a plugin).
fn gateway_accepts(method: &str, r: &Reply) {
    let Some(replies::Shape::Typed { kind, .. }) = replies::shape(method) else {
        panic!("{method} has no typed reply shape");
    };
    gojson::decode(&r.body, kind).unwrap_or_else(|e| panic!("{method}: {e}"));
}

#[test]
fn create_network_reads_ipam_data_and_options_as_json_text() {
    let b = br#"{"NetworkID":"n1","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"a":"1"}},"IPv4Data":[{"AddressSpace":"x","Gateway":"10.55.0.1/24","Pool":"10.55.0.0/24"}],"IPv6Data":[]}"#;
    let r = Request::decode(CREATE_NETWORK, b).unwrap();
    assert_eq!(
        r,
        Request::CreateNetwork {
            network_id: "n1".into(),
            options: vec![
                ("com.docker.network.enable_ipv6".into(), "false".into()),
                ("com.docker.network.generic".into(), r#"{"a":"1"}"#.into()),
            ],
            ipv4_data: vec![IpamData {
                address_space: "x".into(),
                pool: "10.55.0.0/24".into(),
                gateway: "10.55.0.1/24".into(),
                aux_addresses: vec![],
            }],
            ipv6_data: vec![],
        }
    );
}

#[test]
fn endpoint_calls_read_ids_and_the_interface() {
    let b = br#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.55.0.2/24","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.portmap":[]}}"#;
    assert_eq!(
        Request::decode(CREATE_ENDPOINT, b).unwrap(),
        Request::CreateEndpoint {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            interface: Some(EndpointInterface {
                address: "10.55.0.2/24".into(),
                ..Default::default()
            }),
            options: vec![("com.docker.network.portmap".into(), "[]".into())],
        }
    );
    let ids = br#"{"networkid":"n","EndpointID":"e"}"#;
    assert_eq!(
        Request::decode(LEAVE, ids).unwrap(),
        Request::Leave {
            network_id: "n".into(),
            endpoint_id: "e".into()
        }
    );
    assert_eq!(
        Request::decode(
            "/NetworkDriver.Join",
            br#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"/k","Options":null}"#
        )
        .unwrap(),
        Request::Join {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            sandbox_key: "/k".into(),
            options: vec![],
        }
    );
    assert_eq!(
        Request::decode(GET_CAPABILITIES, b"").unwrap(),
        Request::GetCapabilities
    );
}

#[test]
fn swarm_calls_are_unsupported_and_unknown_ones_404_and_bad_bodies_400() {
    for m in [
        ALLOCATE_NETWORK,
        FREE_NETWORK,
        DISCOVER_NEW,
        DISCOVER_DELETE,
        GW_ALLOC_CHECK,
    ] {
        assert_eq!(
            Request::decode(m, b"{}").unwrap(),
            Request::Unsupported { method: m }
        );
        let r = encode(Err(unsupported(m)));
        assert_eq!(r.status, 404);
    }
    assert_eq!(
        Request::decode("NetworkDriver.Frob", b"{}")
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        Request::decode(JOIN, br#"{"NetworkID":1}"#)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn replies_are_what_dockerd_expects_and_pass_the_gateway() {
    let r = encode(Ok(Response::Capabilities(Scope::Local, Scope::Local)));
    assert_eq!(
        body(&r),
        json!({"Scope":"local","ConnectivityScope":"local"})
    );
    gateway_accepts(GET_CAPABILITIES, &r);

    let r = encode(Ok(Response::Endpoint(None)));
    assert_eq!(body(&r), json!({"Interface": null}));
    gateway_accepts(CREATE_ENDPOINT, &r);
    let r = encode(Ok(Response::Endpoint(Some(EndpointInterface::default()))));
    assert_eq!(body(&r), json!({"Interface": null}));
    let r = encode(Ok(Response::Endpoint(Some(EndpointInterface {
        mac_address: "02:42:0a:37:00:02".into(),
        ..Default::default()
    }))));
    assert_eq!(
        body(&r),
        json!({"Interface": {"MacAddress": "02:42:0a:37:00:02"}})
    );
    gateway_accepts(CREATE_ENDPOINT, &r);

    let r = encode(Ok(Response::OperInfo(vec![])));
    assert_eq!(body(&r), json!({"Value": {}}));
    gateway_accepts(ENDPOINT_OPER_INFO, &r);

    let r = encode(Ok(Response::Join(JoinInfo {
        interface_name: Some(InterfaceName {
            src_name: "pdab12c1234".into(),
            dst_prefix: "eth".into(),
        }),
        gateway: "10.55.0.1".into(),
        ..Default::default()
    })));
    assert_eq!(
        body(&r),
        json!({"InterfaceName": {"SrcName": "pdab12c1234", "DstPrefix": "eth"}, "Gateway": "10.55.0.1"})
    );
    gateway_accepts(JOIN, &r);

    let r = encode(Ok(Response::Join(JoinInfo {
        disable_gateway_service: true,
        static_routes: vec![StaticRoute {
            destination: "10.9.0.0/16".into(),
            route_type: 1,
            next_hop: String::new(),
        }],
        ..Default::default()
    })));
    assert_eq!(
        body(&r),
        json!({"StaticRoutes": [{"Destination": "10.9.0.0/16", "RouteType": 1}], "DisableGatewayService": true})
    );
    gateway_accepts(JOIN, &r);

    let r = encode(Ok(Response::Done));
    assert_eq!((r.status, body(&r)), (200, json!({})));
    gateway_accepts(LEAVE, &r);
    assert_eq!(
        body(&encode(Ok(Response::Activate))),
        json!({"Implements": ["NetworkDriver"]})
    );
}
