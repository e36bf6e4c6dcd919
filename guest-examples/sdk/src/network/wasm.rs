//! The wasm packaging of a network driver: the `network-plugin` world's bindings, generated here
//! in a module of their own (the volume world's live in `crate::wasm`; each generate! has its own
//! module tree and export macro, so one SDK crate carries both), and the conversions
//! [`export_network_driver!`](crate::export_network_driver) calls.

use super::{CreateEndpoint, CreateNetwork, EndpointInterface, IpamData, Join, NetworkDriver};
use crate::{Error, ErrorCode};

/// The guest side of `wit/network.wit` (world `network-plugin`).
pub mod bindings {
    wit_bindgen::generate!({
        world: "network-plugin",
        path: "../../wit",
        // One `types` for every world: one error type, converted in one place (`crate::wasm`).
        with: { "docker:plugin/types@0.1.0": crate::wasm::bindings::docker::plugin::types, },
        pub_export_macro: true,
        export_macro_name: "__export_network_plugin",
    });
}

use crate::wasm::bindings::docker::plugin::types as wit_types;
use crate::wasm::error;
use bindings::exports::docker::plugin::network_driver as wit;

pub use bindings::docker::plugin::host_links;
pub use wit::Guest;
/// WIT `error`.
pub type WitError = wit_types::Error;
/// WIT records the macro names.
pub use wit::{
    Capabilities as WitCapabilities, CreateEndpointRequest as WitCreateEndpoint,
    CreateNetworkRequest as WitCreateNetwork, EndpointInterface as WitEndpointInterface,
    JoinRequest as WitJoin, JoinResponse as WitJoinResponse,
};

pub(crate) fn from_wit(e: WitError) -> Error {
    let code = match e.code {
        wit_types::ErrorCode::NotFound => ErrorCode::NotFound,
        wit_types::ErrorCode::InvalidArgument => ErrorCode::InvalidArgument,
        wit_types::ErrorCode::Conflict => ErrorCode::Conflict,
        wit_types::ErrorCode::Unsupported => ErrorCode::Unsupported,
        wit_types::ErrorCode::Internal => ErrorCode::Internal,
    };
    Error::new(code, e.message)
}

fn scope(s: super::Scope) -> wit::Scope {
    match s {
        super::Scope::Local => wit::Scope::Local,
        super::Scope::Global => wit::Scope::Global,
    }
}

fn ipam(d: wit::IpamData) -> IpamData {
    IpamData {
        address_space: d.address_space,
        pool: d.pool,
        gateway: d.gateway,
        aux_addresses: d.aux_addresses,
    }
}

pub fn capabilities<D: NetworkDriver>(d: &D) -> WitCapabilities {
    let (s, c) = d.capabilities();
    WitCapabilities {
        scope: scope(s),
        connectivity_scope: scope(c),
    }
}

pub fn create_network<D: NetworkDriver>(d: &D, r: WitCreateNetwork) -> Result<(), WitError> {
    d.create_network(&CreateNetwork {
        network_id: r.network_id,
        options: r.options,
        ipv4_data: r.ipv4_data.into_iter().map(ipam).collect(),
        ipv6_data: r.ipv6_data.into_iter().map(ipam).collect(),
    })
    .map_err(error)
}

pub fn delete_network<D: NetworkDriver>(d: &D, network_id: &str) -> Result<(), WitError> {
    d.delete_network(network_id).map_err(error)
}

pub fn create_endpoint<D: NetworkDriver>(
    d: &D,
    r: WitCreateEndpoint,
) -> Result<Option<WitEndpointInterface>, WitError> {
    d.create_endpoint(&CreateEndpoint {
        network_id: r.network_id,
        endpoint_id: r.endpoint_id,
        interface: r.interface.map(|i| EndpointInterface {
            address: i.address,
            address_ipv6: i.address_ipv6,
            mac_address: i.mac_address,
        }),
        options: r.options,
    })
    .map(|i| {
        i.map(|i| WitEndpointInterface {
            address: i.address,
            address_ipv6: i.address_ipv6,
            mac_address: i.mac_address,
        })
    })
    .map_err(error)
}

pub fn endpoint_oper_info<D: NetworkDriver>(
    d: &D,
    network_id: &str,
    endpoint_id: &str,
) -> Result<Vec<(String, String)>, WitError> {
    d.endpoint_oper_info(network_id, endpoint_id).map_err(error)
}

pub fn delete_endpoint<D: NetworkDriver>(
    d: &D,
    network_id: &str,
    endpoint_id: &str,
) -> Result<(), WitError> {
    d.delete_endpoint(network_id, endpoint_id).map_err(error)
}

pub fn join<D: NetworkDriver>(d: &D, r: WitJoin) -> Result<WitJoinResponse, WitError> {
    let j = d
        .join(&Join {
            network_id: r.network_id,
            endpoint_id: r.endpoint_id,
            sandbox_key: r.sandbox_key,
            options: r.options,
        })
        .map_err(error)?;
    Ok(WitJoinResponse {
        interface_name: j.interface_name.map(|n| wit::InterfaceName {
            src_name: n.src_name,
            dst_prefix: n.dst_prefix,
        }),
        gateway: j.gateway,
        gateway_ipv6: j.gateway_ipv6,
        static_routes: j
            .static_routes
            .into_iter()
            .map(|r| wit::StaticRoute {
                destination: r.destination,
                route_type: r.route_type,
                next_hop: r.next_hop,
            })
            .collect(),
        disable_gateway_service: j.disable_gateway_service,
    })
}

pub fn leave<D: NetworkDriver>(d: &D, network_id: &str, endpoint_id: &str) -> Result<(), WitError> {
    d.leave(network_id, endpoint_id).map_err(error)
}

pub fn program_external_connectivity<D: NetworkDriver>(
    d: &D,
    network_id: &str,
    endpoint_id: &str,
    options: &[(String, String)],
) -> Result<(), WitError> {
    d.program_external_connectivity(network_id, endpoint_id, options)
        .map_err(error)
}

pub fn revoke_external_connectivity<D: NetworkDriver>(
    d: &D,
    network_id: &str,
    endpoint_id: &str,
) -> Result<(), WitError> {
    d.revoke_external_connectivity(network_id, endpoint_id)
        .map_err(error)
}
