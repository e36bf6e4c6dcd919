//! Docker's plugin protocol for a network driver without the transport: decoding and encoding
//! are plugd-core's ([`plugd_core::protocol::network`]), the code plugd's wasm host answers the
//! wasm packaging with.

use super::{CreateEndpoint, CreateNetwork, Join, NetworkDriver};
use plugd_core::Reply;
use plugd_core::protocol::network::{Request, Response, encode, unsupported};

/// Answers one call (`endpoint` with or without its leading `/`).
pub fn handle<D: NetworkDriver + ?Sized>(driver: &D, endpoint: &str, body: &[u8]) -> Reply {
    match Request::decode(endpoint, body) {
        Ok(request) => encode(call(driver, request)),
        Err(reply) => reply,
    }
}

fn call<D: NetworkDriver + ?Sized>(d: &D, r: Request) -> Result<Response, crate::Error> {
    let done = |r: Result<(), crate::Error>| r.map(|()| Response::Done);
    match r {
        Request::Activate => Ok(Response::Activate),
        Request::Unsupported { method } => Err(unsupported(method)),
        Request::GetCapabilities => {
            let (scope, connectivity) = d.capabilities();
            Ok(Response::Capabilities(scope, connectivity))
        }
        Request::CreateNetwork {
            network_id,
            options,
            ipv4_data,
            ipv6_data,
        } => done(d.create_network(&CreateNetwork {
            network_id,
            options,
            ipv4_data,
            ipv6_data,
        })),
        Request::DeleteNetwork { network_id } => done(d.delete_network(&network_id)),
        Request::CreateEndpoint {
            network_id,
            endpoint_id,
            interface,
            options,
        } => d
            .create_endpoint(&CreateEndpoint {
                network_id,
                endpoint_id,
                interface,
                options,
            })
            .map(Response::Endpoint),
        Request::EndpointOperInfo {
            network_id,
            endpoint_id,
        } => d
            .endpoint_oper_info(&network_id, &endpoint_id)
            .map(Response::OperInfo),
        Request::DeleteEndpoint {
            network_id,
            endpoint_id,
        } => done(d.delete_endpoint(&network_id, &endpoint_id)),
        Request::Join {
            network_id,
            endpoint_id,
            sandbox_key,
            options,
        } => d
            .join(&Join {
                network_id,
                endpoint_id,
                sandbox_key,
                options,
            })
            .map(Response::Join),
        Request::Leave {
            network_id,
            endpoint_id,
        } => done(d.leave(&network_id, &endpoint_id)),
        Request::ProgramExternalConnectivity {
            network_id,
            endpoint_id,
            options,
        } => done(d.program_external_connectivity(&network_id, &endpoint_id, &options)),
        Request::RevokeExternalConnectivity {
            network_id,
            endpoint_id,
        } => done(d.revoke_external_connectivity(&network_id, &endpoint_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::network::JoinInfo;
    use serde_json::{Value, json};

    struct Minimal;

    impl NetworkDriver for Minimal {
        fn create_network(&self, _: &CreateNetwork) -> Result<(), Error> {
            Ok(())
        }
        fn delete_network(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn create_endpoint(
            &self,
            _: &CreateEndpoint,
        ) -> Result<Option<crate::network::EndpointInterface>, Error> {
            Ok(None)
        }
        fn delete_endpoint(&self, _: &str, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn join(&self, _: &Join) -> Result<JoinInfo, Error> {
            Ok(JoinInfo {
                disable_gateway_service: true,
                ..Default::default()
            })
        }
    }

    fn call(m: &str, b: &str) -> (u16, Value) {
        let r = handle(&Minimal, m, b.as_bytes());
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn defaults_answer_what_dockerd_treats_as_success_or_absence() {
        assert_eq!(
            call("/NetworkDriver.GetCapabilities", ""),
            (200, json!({"Scope": "local", "ConnectivityScope": "local"}))
        );
        assert_eq!(
            call(
                "/NetworkDriver.EndpointOperInfo",
                r#"{"NetworkID":"n","EndpointID":"e"}"#
            ),
            (200, json!({"Value": {}}))
        );
        assert_eq!(call("/NetworkDriver.Leave", "{}"), (200, json!({})));
        assert_eq!(
            call("/NetworkDriver.ProgramExternalConnectivity", "{}").0,
            404
        );
        assert_eq!(call("/NetworkDriver.AllocateNetwork", "{}").0, 404);
        assert_eq!(
            call("/NetworkDriver.Join", "{}"),
            (200, json!({"DisableGatewayService": true}))
        );
        assert_eq!(
            call("/Plugin.Activate", ""),
            (200, json!({"Implements": ["NetworkDriver"]}))
        );
    }
}
