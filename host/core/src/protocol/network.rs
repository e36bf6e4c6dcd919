//! `NetworkDriver.*` (`docker.networkdriver/1.0`, libnetwork's remote driver API): the requests
//! dockerd sends, the replies it decodes, and the mapping between them and a driver's typed
//! answers, shared by the wasm host and the SDK's native server.
//!
//! | endpoint | success (200) |
//! |---|---|
//! | `Plugin.Activate` | `{"Implements": ["NetworkDriver"]}` |
//! | `GetCapabilities` | `{"Scope": "local", "ConnectivityScope": "local"}` |
//! | `CreateEndpoint` | `{"Interface": {...}}` or `{"Interface": null}` |
//! | `EndpointOperInfo` | `{"Value": {...}}` |
//! | `Join` | `{"InterfaceName": {"SrcName", "DstPrefix"}, "Gateway", ...}` |
//! | the rest | `{"Err": ""}` |
//!
//! The calls dockerd 20.10 makes only under swarm or with a cluster store — `AllocateNetwork`,
//! `FreeNetwork`, `DiscoverNew`, `DiscoverDelete` — and `GwAllocCheck` (added in moby 28) are
//! decoded but answered 404 "unsupported" by both packagings without reaching the driver: plugd
//! serves a single engine, and dockerd only logs a failed Discover* (docs/protocol.md §network).
//! `ProgramExternalConnectivity` and `RevokeExternalConnectivity` are optional: a driver that does
//! not implement them answers 404, which libnetwork reads as success.

use super::request::{self, method_of};
use super::{DriverError, Manifest};
use crate::Reply;
use crate::gojson::{Field, Form, Kind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `Implements` entry of a network plugin.
pub const IMPLEMENTS: &str = "NetworkDriver";
const ACTIVATE: &str = "Plugin.Activate";

/// Endpoints of the network subsystem, in dockerd's spelling.
pub const GET_CAPABILITIES: &str = "NetworkDriver.GetCapabilities";
/// See [`GET_CAPABILITIES`].
pub const CREATE_NETWORK: &str = "NetworkDriver.CreateNetwork";
/// See [`GET_CAPABILITIES`].
pub const DELETE_NETWORK: &str = "NetworkDriver.DeleteNetwork";
/// See [`GET_CAPABILITIES`].
pub const CREATE_ENDPOINT: &str = "NetworkDriver.CreateEndpoint";
/// See [`GET_CAPABILITIES`].
pub const ENDPOINT_OPER_INFO: &str = "NetworkDriver.EndpointOperInfo";
/// See [`GET_CAPABILITIES`].
pub const DELETE_ENDPOINT: &str = "NetworkDriver.DeleteEndpoint";
/// See [`GET_CAPABILITIES`].
pub const JOIN: &str = "NetworkDriver.Join";
/// See [`GET_CAPABILITIES`].
pub const LEAVE: &str = "NetworkDriver.Leave";
/// See [`GET_CAPABILITIES`].
pub const DISCOVER_NEW: &str = "NetworkDriver.DiscoverNew";
/// See [`GET_CAPABILITIES`].
pub const DISCOVER_DELETE: &str = "NetworkDriver.DiscoverDelete";
/// See [`GET_CAPABILITIES`].
pub const PROGRAM_EXTERNAL_CONNECTIVITY: &str = "NetworkDriver.ProgramExternalConnectivity";
/// See [`GET_CAPABILITIES`].
pub const REVOKE_EXTERNAL_CONNECTIVITY: &str = "NetworkDriver.RevokeExternalConnectivity";
/// See [`GET_CAPABILITIES`].
pub const ALLOCATE_NETWORK: &str = "NetworkDriver.AllocateNetwork";
/// See [`GET_CAPABILITIES`].
pub const FREE_NETWORK: &str = "NetworkDriver.FreeNetwork";
/// See [`GET_CAPABILITIES`].
pub const GW_ALLOC_CHECK: &str = "NetworkDriver.GwAllocCheck";

const TEXT: Kind = Kind::Str(Form::Text);
const ANY_MAP: Kind = Kind::Map(&Kind::Any);
/// Go's `IPAMData`: addresses dockerd's IPAM chose, as CIDRs.
const IPAM_DATA: Kind = Kind::Struct(&[
    Field::new("AddressSpace", TEXT),
    Field::new("Pool", TEXT),
    Field::new("Gateway", TEXT),
    Field::new("AuxAddresses", Kind::Map(&TEXT)),
]);
const NETWORK_ID: Field = Field::new("NetworkID", TEXT);
const ENDPOINT_ID: Field = Field::new("EndpointID", TEXT);
/// `{NetworkID}` (DeleteNetwork, FreeNetwork).
const NETWORK_REQUEST: Kind = Kind::Struct(&[NETWORK_ID]);
/// `{NetworkID, EndpointID}` (EndpointOperInfo, DeleteEndpoint, Leave, RevokeExternalConnectivity).
const ENDPOINT_REQUEST: Kind = Kind::Struct(&[NETWORK_ID, ENDPOINT_ID]);
/// `CreateNetworkRequest` (also AllocateNetwork's shape, whose options are strings; read as any).
const CREATE_NETWORK_REQUEST: Kind = Kind::Struct(&[
    NETWORK_ID,
    Field::new("Options", ANY_MAP),
    Field::new("IPv4Data", Kind::Slice(&IPAM_DATA)),
    Field::new("IPv6Data", Kind::Slice(&IPAM_DATA)),
]);
/// `CreateEndpointRequest`.
const CREATE_ENDPOINT_REQUEST: Kind = Kind::Struct(&[
    NETWORK_ID,
    ENDPOINT_ID,
    Field::new(
        "Interface",
        Kind::Ptr(&Kind::Struct(&[
            Field::new("Address", TEXT),
            Field::new("AddressIPv6", TEXT),
            Field::new("MacAddress", TEXT),
        ])),
    ),
    Field::new("Options", ANY_MAP),
]);
/// `JoinRequest`.
const JOIN_REQUEST: Kind = Kind::Struct(&[
    NETWORK_ID,
    ENDPOINT_ID,
    Field::new("SandboxKey", TEXT),
    Field::new("Options", ANY_MAP),
]);
/// `ProgramExternalConnectivityRequest`.
const PROGRAM_REQUEST: Kind =
    Kind::Struct(&[NETWORK_ID, ENDPOINT_ID, Field::new("Options", ANY_MAP)]);
/// `DiscoveryNotification`.
const DISCOVERY_REQUEST: Kind = Kind::Struct(&[
    Field::new("DiscoveryType", Kind::Int),
    Field::new("DiscoveryData", Kind::Any),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Ids {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireIpam {
    #[serde(rename = "AddressSpace")]
    address_space: String,
    #[serde(rename = "Pool")]
    pool: String,
    #[serde(rename = "Gateway")]
    gateway: String,
    #[serde(rename = "AuxAddresses")]
    aux_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireCreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, Value>>,
    #[serde(rename = "IPv4Data")]
    ipv4: Option<Vec<WireIpam>>,
    #[serde(rename = "IPv6Data")]
    ipv6: Option<Vec<WireIpam>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireInterface {
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "AddressIPv6")]
    address_ipv6: String,
    #[serde(rename = "MacAddress")]
    mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireCreateEndpoint {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Interface")]
    interface: Option<WireInterface>,
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireJoin {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "SandboxKey")]
    sandbox_key: String,
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, Value>>,
}

/// One pool dockerd's IPAM gave a network (`IPv4Data`/`IPv6Data` entries); mirrors WIT
/// `network-driver.ipam-data`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamData {
    /// The IPAM driver's address space.
    pub address_space: String,
    /// The pool, as a CIDR (`10.55.0.0/24`).
    pub pool: String,
    /// The gateway as a CIDR (`10.55.0.1/24`): a driver's Join returns it without the `/nn`.
    pub gateway: String,
    /// Reserved addresses by name (`--aux-address`), CIDRs, sorted by name.
    pub aux_addresses: Vec<(String, String)>,
}

impl From<WireIpam> for IpamData {
    fn from(w: WireIpam) -> Self {
        IpamData {
            address_space: w.address_space,
            pool: w.pool,
            gateway: w.gateway,
            aux_addresses: w.aux_addresses.unwrap_or_default().into_iter().collect(),
        }
    }
}

/// An endpoint's addresses (`CreateEndpoint.Interface`, in and out); mirrors WIT
/// `network-driver.endpoint-interface`. Empty means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInterface {
    /// IPv4 address as a CIDR.
    pub address: String,
    /// IPv6 address as a CIDR.
    pub address_ipv6: String,
    /// MAC address.
    pub mac_address: String,
}

/// The interface a driver hands dockerd in Join; mirrors WIT `network-driver.interface-name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceName {
    /// An existing interface in dockerd's network namespace, moved into the container.
    pub src_name: String,
    /// What it is renamed to in the container, plus a number (`eth` → `eth0`).
    pub dst_prefix: String,
}

/// A route Join asks for; mirrors WIT `network-driver.static-route`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticRoute {
    /// CIDR.
    pub destination: String,
    /// 0: via `next_hop`; 1: connected (on the interface).
    pub route_type: i64,
    /// IP; empty for a connected route.
    pub next_hop: String,
}

/// Join's answer; mirrors WIT `network-driver.join-response`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinInfo {
    /// The interface to move into the container; `None` gives the container only `lo`.
    pub interface_name: Option<InterfaceName>,
    /// Default gateway, a plain IP inside the interface's subnet (not a CIDR), or empty.
    pub gateway: String,
    /// IPv6 default gateway, or empty.
    pub gateway_ipv6: String,
    /// Extra routes.
    pub static_routes: Vec<StaticRoute>,
    /// True: no gateway and do not make `docker_gwbridge` for one.
    pub disable_gateway_service: bool,
}

/// One decoded call. Options are JSON objects dockerd fills (`com.docker.network.generic` holds
/// the user's `-o`); they are passed on as `(key, JSON text of the value)`, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate`.
    Activate,
    /// The driver's scopes.
    GetCapabilities,
    /// A network was created.
    CreateNetwork {
        /// 64-hex network id.
        network_id: String,
        /// Options as `(key, JSON value)`.
        options: Vec<(String, String)>,
        /// IPv4 pools.
        ipv4_data: Vec<IpamData>,
        /// IPv6 pools.
        ipv6_data: Vec<IpamData>,
    },
    /// A network was removed.
    DeleteNetwork {
        /// Network id.
        network_id: String,
    },
    /// An endpoint is being made (before Join), with the addresses IPAM gave it.
    CreateEndpoint {
        /// Network id.
        network_id: String,
        /// 64-hex endpoint id.
        endpoint_id: String,
        /// Addresses dockerd already set (`None` when it sent none).
        interface: Option<EndpointInterface>,
        /// Options as `(key, JSON value)`.
        options: Vec<(String, String)>,
    },
    /// Operational data about an endpoint (mandatory at container start).
    EndpointOperInfo {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// An endpoint is gone.
    DeleteEndpoint {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// A container (sandbox) joins an endpoint.
    Join {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
        /// Path of the sandbox's network namespace (it does not exist yet at Join).
        sandbox_key: String,
        /// Options as `(key, JSON value)`.
        options: Vec<(String, String)>,
    },
    /// The container leaves the endpoint.
    Leave {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// The endpoint became the container's gateway endpoint (optional).
    ProgramExternalConnectivity {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
        /// Options as `(key, JSON value)`.
        options: Vec<(String, String)>,
    },
    /// It no longer is (optional).
    RevokeExternalConnectivity {
        /// Network id.
        network_id: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// A swarm- or cluster-only call (`AllocateNetwork`, `FreeNetwork`, `DiscoverNew`,
    /// `DiscoverDelete`, `GwAllocCheck`): answered "unsupported" without reaching the driver.
    Unsupported {
        /// The method, for the message.
        method: &'static str,
    },
}

fn options(o: Option<BTreeMap<String, Value>>) -> Vec<(String, String)> {
    o.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body Go would not decode.
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        let ids = || request::read::<Ids>(method, body, &ENDPOINT_REQUEST);
        Ok(match method {
            ACTIVATE => Request::Activate,
            GET_CAPABILITIES => {
                request::no_arguments(method, body)?;
                Request::GetCapabilities
            }
            CREATE_NETWORK => {
                let r: WireCreateNetwork = request::read(method, body, &CREATE_NETWORK_REQUEST)?;
                let pools = |p: Option<Vec<WireIpam>>| {
                    p.unwrap_or_default()
                        .into_iter()
                        .map(IpamData::from)
                        .collect()
                };
                Request::CreateNetwork {
                    network_id: r.network_id,
                    options: options(r.options),
                    ipv4_data: pools(r.ipv4),
                    ipv6_data: pools(r.ipv6),
                }
            }
            DELETE_NETWORK => {
                let r: Ids = request::read(method, body, &NETWORK_REQUEST)?;
                Request::DeleteNetwork {
                    network_id: r.network_id,
                }
            }
            CREATE_ENDPOINT => {
                let r: WireCreateEndpoint = request::read(method, body, &CREATE_ENDPOINT_REQUEST)?;
                Request::CreateEndpoint {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                    interface: r.interface.map(|i| EndpointInterface {
                        address: i.address,
                        address_ipv6: i.address_ipv6,
                        mac_address: i.mac_address,
                    }),
                    options: options(r.options),
                }
            }
            ENDPOINT_OPER_INFO => {
                let r = ids()?;
                Request::EndpointOperInfo {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                }
            }
            DELETE_ENDPOINT => {
                let r = ids()?;
                Request::DeleteEndpoint {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                }
            }
            JOIN => {
                let r: WireJoin = request::read(method, body, &JOIN_REQUEST)?;
                Request::Join {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                    sandbox_key: r.sandbox_key,
                    options: options(r.options),
                }
            }
            LEAVE => {
                let r = ids()?;
                Request::Leave {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                }
            }
            PROGRAM_EXTERNAL_CONNECTIVITY => {
                let r: WireJoin = request::read(method, body, &PROGRAM_REQUEST)?;
                Request::ProgramExternalConnectivity {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                    options: options(r.options),
                }
            }
            REVOKE_EXTERNAL_CONNECTIVITY => {
                let r = ids()?;
                Request::RevokeExternalConnectivity {
                    network_id: r.network_id,
                    endpoint_id: r.endpoint_id,
                }
            }
            ALLOCATE_NETWORK => {
                request::read::<Value>(method, body, &CREATE_NETWORK_REQUEST)?;
                Request::Unsupported {
                    method: ALLOCATE_NETWORK,
                }
            }
            FREE_NETWORK => {
                request::read::<Value>(method, body, &NETWORK_REQUEST)?;
                Request::Unsupported {
                    method: FREE_NETWORK,
                }
            }
            DISCOVER_NEW | DISCOVER_DELETE => {
                request::read::<Value>(method, body, &DISCOVERY_REQUEST)?;
                Request::Unsupported {
                    method: if method == DISCOVER_NEW {
                        DISCOVER_NEW
                    } else {
                        DISCOVER_DELETE
                    },
                }
            }
            GW_ALLOC_CHECK => Request::Unsupported {
                method: GW_ALLOC_CHECK,
            },
            _ => return Err(request::unknown(method, "network driver")),
        })
    }
}

pub use super::Scope;

/// A driver's successful answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// GetCapabilities: `(Scope, ConnectivityScope)`.
    Capabilities(Scope, Scope),
    /// CreateNetwork, DeleteNetwork, DeleteEndpoint, Leave, Program/RevokeExternalConnectivity.
    Done,
    /// CreateEndpoint: `None` (or all fields empty) leaves dockerd's addresses as they are; a
    /// field dockerd already set must stay empty or dockerd rolls the endpoint back.
    Endpoint(Option<EndpointInterface>),
    /// EndpointOperInfo: free-form `(key, value)` pairs.
    OperInfo(Vec<(String, String)>),
    /// Join.
    Join(JoinInfo),
}

#[derive(Serialize)]
struct WireInterfaceOut {
    #[serde(rename = "Address", skip_serializing_if = "String::is_empty")]
    address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    address_ipv6: String,
    #[serde(rename = "MacAddress", skip_serializing_if = "String::is_empty")]
    mac_address: String,
}

#[derive(Serialize)]
struct WireRoute {
    #[serde(rename = "Destination")]
    destination: String,
    #[serde(rename = "RouteType")]
    route_type: i64,
    #[serde(rename = "NextHop", skip_serializing_if = "String::is_empty")]
    next_hop: String,
}

#[derive(Serialize)]
struct WireName {
    #[serde(rename = "SrcName")]
    src_name: String,
    #[serde(rename = "DstPrefix")]
    dst_prefix: String,
}

/// The reply dockerd gets for a driver's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return e.reply(),
    };
    use serde_json::json;
    match answer {
        Response::Activate => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Response::Capabilities(scope, connectivity) => super::json(&json!({
            "Scope": scope.as_str(),
            "ConnectivityScope": connectivity.as_str(),
        })),
        Response::Done => super::json(&json!({})),
        Response::Endpoint(iface) => {
            let iface = iface
                .filter(|i| *i != EndpointInterface::default())
                .map(|i| WireInterfaceOut {
                    address: i.address,
                    address_ipv6: i.address_ipv6,
                    mac_address: i.mac_address,
                });
            super::json(&json!({ "Interface": iface }))
        }
        Response::OperInfo(pairs) => {
            let value: BTreeMap<String, String> = pairs.into_iter().collect();
            super::json(&json!({ "Value": value }))
        }
        Response::Join(j) => {
            let mut out = serde_json::Map::new();
            if let Some(n) = j.interface_name.filter(|n| !n.src_name.is_empty()) {
                let name = WireName {
                    src_name: n.src_name,
                    dst_prefix: n.dst_prefix,
                };
                out.insert("InterfaceName".into(), json!(name));
            }
            if !j.gateway.is_empty() {
                out.insert("Gateway".into(), json!(j.gateway));
            }
            if !j.gateway_ipv6.is_empty() {
                out.insert("GatewayIPv6".into(), json!(j.gateway_ipv6));
            }
            if !j.static_routes.is_empty() {
                let routes: Vec<WireRoute> = j
                    .static_routes
                    .into_iter()
                    .map(|r| WireRoute {
                        destination: r.destination,
                        route_type: r.route_type,
                        next_hop: r.next_hop,
                    })
                    .collect();
                out.insert("StaticRoutes".into(), json!(routes));
            }
            if j.disable_gateway_service {
                out.insert("DisableGatewayService".into(), json!(true));
            }
            super::json(&Value::Object(out))
        }
    }
}

/// The answer to a [`Request::Unsupported`] call (and to an optional call a driver lacks).
pub fn unsupported(method: &str) -> DriverError {
    DriverError::unsupported(format!(
        "{method} is not supported (it is only sent under swarm or with a cluster store)"
    ))
}

#[cfg(test)]
mod tests;
