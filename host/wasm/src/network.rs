//! The `docker:plugin/network-driver` WIT interface ↔ [`plugd_core::protocol::network`].
//!
//! Join's `src-name` is checked here against the plugin's `host-links` set: dockerd moves the
//! interface of that name from its own network namespace into a container, so a name plugd did not
//! make for this plugin (`eth0`, another plugin's veth) is refused before dockerd sees it.

use crate::bindings::GuestError;
use crate::bindings::network_driver::{self as wit, Guest};
use crate::drivers::driver_error;
use crate::instance::HostState;
use plugd_core::Reply;
use plugd_core::protocol::DriverError;
use plugd_core::protocol::network::{
    EndpointInterface, InterfaceName, IpamData, JoinInfo, Request, Response, Scope, StaticRoute,
    encode, unsupported,
};
use wasmtime::Store;

fn scope(s: wit::Scope) -> Scope {
    match s {
        wit::Scope::Local => Scope::Local,
        wit::Scope::Global => Scope::Global,
    }
}

fn ipam(d: &IpamData) -> wit::IpamData {
    wit::IpamData {
        address_space: d.address_space.clone(),
        pool: d.pool.clone(),
        gateway: d.gateway.clone(),
        aux_addresses: d.aux_addresses.clone(),
    }
}

/// Calls the guest for `req`. `Ok` carries the reply, guest-reported errors included; `Err` is a
/// fault of the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke(
    req: &Request,
    guest: &Guest,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Reply> {
    let s = &mut *store;
    let done = |r: Result<(), GuestError>| r.map(|()| Response::Done).map_err(driver_error);
    let answer: Result<Response, DriverError> = match req {
        Request::Activate => Ok(Response::Activate),
        Request::Unsupported { method } => Err(unsupported(method)),
        Request::GetCapabilities => {
            let c = guest.call_get_capabilities(s).await?;
            Ok(Response::Capabilities(
                scope(c.scope),
                scope(c.connectivity_scope),
            ))
        }
        Request::CreateNetwork {
            network_id,
            options,
            ipv4_data,
            ipv6_data,
        } => {
            let r = wit::CreateNetworkRequest {
                network_id: network_id.clone(),
                options: options.clone(),
                ipv4_data: ipv4_data.iter().map(ipam).collect(),
                ipv6_data: ipv6_data.iter().map(ipam).collect(),
            };
            done(guest.call_create_network(s, &r).await?)
        }
        Request::DeleteNetwork { network_id } => {
            done(guest.call_delete_network(s, network_id).await?)
        }
        Request::CreateEndpoint {
            network_id,
            endpoint_id,
            interface,
            options,
        } => {
            let r = wit::CreateEndpointRequest {
                network_id: network_id.clone(),
                endpoint_id: endpoint_id.clone(),
                interface: interface.as_ref().map(|i| wit::EndpointInterface {
                    address: i.address.clone(),
                    address_ipv6: i.address_ipv6.clone(),
                    mac_address: i.mac_address.clone(),
                }),
                options: options.clone(),
            };
            guest
                .call_create_endpoint(s, &r)
                .await?
                .map(|i| {
                    Response::Endpoint(i.map(|i| EndpointInterface {
                        address: i.address,
                        address_ipv6: i.address_ipv6,
                        mac_address: i.mac_address,
                    }))
                })
                .map_err(driver_error)
        }
        Request::EndpointOperInfo {
            network_id,
            endpoint_id,
        } => guest
            .call_endpoint_oper_info(s, network_id, endpoint_id)
            .await?
            .map(Response::OperInfo)
            .map_err(driver_error),
        Request::DeleteEndpoint {
            network_id,
            endpoint_id,
        } => done(
            guest
                .call_delete_endpoint(s, network_id, endpoint_id)
                .await?,
        ),
        Request::Join {
            network_id,
            endpoint_id,
            sandbox_key,
            options,
        } => {
            let r = wit::JoinRequest {
                network_id: network_id.clone(),
                endpoint_id: endpoint_id.clone(),
                sandbox_key: sandbox_key.clone(),
                options: options.clone(),
            };
            match guest.call_join(&mut *s, &r).await? {
                Err(e) => Err(driver_error(e)),
                Ok(j) => join(j, s.data()),
            }
        }
        Request::Leave {
            network_id,
            endpoint_id,
        } => done(guest.call_leave(s, network_id, endpoint_id).await?),
        Request::ProgramExternalConnectivity {
            network_id,
            endpoint_id,
            options,
        } => done(
            guest
                .call_program_external_connectivity(s, network_id, endpoint_id, options)
                .await?,
        ),
        Request::RevokeExternalConnectivity {
            network_id,
            endpoint_id,
        } => done(
            guest
                .call_revoke_external_connectivity(s, network_id, endpoint_id)
                .await?,
        ),
    };
    Ok(encode(answer))
}

/// Join's answer, refused when it names an interface plugd did not make for this plugin.
fn join(j: wit::JoinResponse, state: &HostState) -> Result<Response, DriverError> {
    let interface_name = j.interface_name.map(|n| InterfaceName {
        src_name: n.src_name,
        dst_prefix: n.dst_prefix,
    });
    if let Some(n) = interface_name.as_ref().filter(|n| !n.src_name.is_empty())
        && !state.links.owns(&n.src_name)
    {
        return Err(DriverError::internal(format!(
            "Join names interface {:?}, which plugd did not create for this plugin \
             (a wasm network driver may hand dockerd only a link from host-links.create-veth)",
            n.src_name
        )));
    }
    Ok(Response::Join(JoinInfo {
        interface_name,
        gateway: j.gateway,
        gateway_ipv6: j.gateway_ipv6,
        static_routes: j
            .static_routes
            .into_iter()
            .map(|r| StaticRoute {
                destination: r.destination,
                route_type: r.route_type,
                next_hop: r.next_hop,
            })
            .collect(),
        disable_gateway_service: j.disable_gateway_service,
    }))
}
