//! `IpamDriver.*` (`docker.ipamdriver/1.0`): the requests dockerd sends, the replies it decodes,
//! and the mapping between them and a driver's typed answers, used by the wasm host and by the
//! SDK's native server alike.
//!
//! Read from libnetwork c5aa85f9 (what dockerd 20.10.24 vendors), `ipams/remote/remote.go` and
//! `ipams/remote/api/api.go`, and observed against dockerd 20.10.24:
//!
//! | endpoint | request | success (200) |
//! |---|---|---|
//! | `Plugin.Activate` | — | `{"Implements": ["IpamDriver"]}` |
//! | `GetCapabilities` | — | `{"RequiresMACAddress": b, "RequiresRequestReplay": b}` |
//! | `GetDefaultAddressSpaces` | — | `{"LocalDefaultAddressSpace": s, "GlobalDefaultAddressSpace": s}` |
//! | `RequestPool` | `{"AddressSpace", "Pool", "SubPool", "Options", "V6"}` | `{"PoolID", "Pool": cidr, "Data"}` |
//! | `ReleasePool` | `{"PoolID"}` | `{}` |
//! | `RequestAddress` | `{"PoolID", "Address", "Options"}` | `{"Address": cidr, "Data"}` |
//! | `ReleaseAddress` | `{"PoolID", "Address": plain ip}` | `{}` |
//!
//! **Errors.** IPAM's in-band error field is `Error` (a 200 with a non-empty `Error` is an error
//! to dockerd, shown as `remote: <msg>`); but a non-200 goes through `pkg/plugins`' client first,
//! which reads only `Err` from the body and otherwise shows the whole body as the message. plugd
//! answers a driver error with the code's status (404 for `Unsupported`, else 500) and **both**
//! fields, `{"Err": msg, "Error": msg}`: dockerd shows `IpamDriver.<Method>: <msg>`, and a reader
//! following IPAM's own api type finds the message too. [`DriverError::reply`] (`Err` only) is
//! not used here.
//!
//! `GetCapabilities` is optional: any failure (a 404 from [`ErrorCode::Unsupported`]) makes
//! dockerd register the driver without capabilities. `GetDefaultAddressSpaces` is called once, at
//! registration (20.10; newer dockerd calls it per pool).
//!
//! [`ErrorCode::Unsupported`]: super::ErrorCode::Unsupported

use super::request::{self, method_of};
use super::{DriverError, Manifest};
use crate::Reply;
use crate::gojson::{Field, Form, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Endpoints of the IPAM subsystem, in dockerd's spelling.
pub const GET_CAPABILITIES: &str = "IpamDriver.GetCapabilities";
/// See [`GET_CAPABILITIES`].
pub const GET_DEFAULT_ADDRESS_SPACES: &str = "IpamDriver.GetDefaultAddressSpaces";
/// See [`GET_CAPABILITIES`].
pub const REQUEST_POOL: &str = "IpamDriver.RequestPool";
/// See [`GET_CAPABILITIES`].
pub const RELEASE_POOL: &str = "IpamDriver.ReleasePool";
/// See [`GET_CAPABILITIES`].
pub const REQUEST_ADDRESS: &str = "IpamDriver.RequestAddress";
/// See [`GET_CAPABILITIES`].
pub const RELEASE_ADDRESS: &str = "IpamDriver.ReleaseAddress";

/// The `Implements` entry of an IPAM plugin.
pub const IMPLEMENTS: &str = "IpamDriver";
/// The `RequestAddress` option naming what the address is for.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
/// [`REQUEST_ADDRESS_TYPE`]'s value when dockerd asks for a network's gateway address; also the
/// `RequestPool` `Data` key by which a driver can hand the gateway over with the pool.
pub const GATEWAY: &str = "com.docker.network.gateway";
/// The `RequestAddress` option carrying the endpoint's MAC, sent only to a driver whose
/// capabilities say `RequiresMACAddress`.
pub const MAC_ADDRESS: &str = "com.docker.network.endpoint.macaddress";

const ACTIVATE: &str = "Plugin.Activate";
const TEXT: Kind = Kind::Str(Form::Text);
const STRING_MAP: Kind = Kind::Map(&TEXT);

/// Go's `RequestPoolRequest`.
const POOL_REQUEST: Kind = Kind::Struct(&[
    Field::new("AddressSpace", TEXT),
    Field::new("Pool", TEXT),
    Field::new("SubPool", TEXT),
    Field::new("Options", STRING_MAP),
    Field::new("V6", Kind::Bool),
]);
/// Go's `ReleasePoolRequest`.
const RELEASE_POOL_REQUEST: Kind = Kind::Struct(&[Field::new("PoolID", TEXT)]);
/// Go's `RequestAddressRequest`.
const ADDRESS_REQUEST: Kind = Kind::Struct(&[
    Field::new("PoolID", TEXT),
    Field::new("Address", TEXT),
    Field::new("Options", STRING_MAP),
]);
/// Go's `ReleaseAddressRequest`.
const RELEASE_ADDRESS_REQUEST: Kind =
    Kind::Struct(&[Field::new("PoolID", TEXT), Field::new("Address", TEXT)]);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PoolRequestWire {
    #[serde(rename = "AddressSpace")]
    address_space: String,
    #[serde(rename = "Pool")]
    pool: String,
    #[serde(rename = "SubPool")]
    sub_pool: String,
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, String>>,
    #[serde(rename = "V6")]
    v6: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AddressRequestWire {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, String>>,
}

/// `RequestPool`'s arguments; mirrors WIT `ipam-driver.pool-request`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    /// One of the names [`AddressSpaces`] gave.
    pub address_space: String,
    /// The user's `--subnet` (a CIDR), or empty: the driver picks one.
    pub pool: String,
    /// The user's `--ip-range` inside `pool`, or empty.
    pub sub_pool: String,
    /// `--ipam-opt key=value`, sorted by key.
    pub options: Vec<(String, String)>,
    /// An IPv6 pool is wanted.
    pub v6: bool,
}

/// `RequestPool`'s answer; mirrors WIT `ipam-driver.pool`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    /// The driver's id for the pool; dockerd passes it back in every later call.
    pub pool_id: String,
    /// The pool as a CIDR (`10.66.0.0/24`).
    pub pool: String,
    /// Free-form pairs; a CIDR under [`GATEWAY`] is used as the network's gateway (and no gateway
    /// `RequestAddress` follows).
    pub data: Vec<(String, String)>,
}

/// `RequestAddress`'s arguments; mirrors WIT `ipam-driver.address-request`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRequest {
    /// The pool, as [`Pool::pool_id`].
    pub pool_id: String,
    /// A plain IP the user asked for (`--gateway`, `--ip`), or empty: the driver picks one.
    pub address: String,
    /// Sorted by key; `RequestAddressType` = [`GATEWAY`] for a network's gateway.
    pub options: Vec<(String, String)>,
}

impl AddressRequest {
    /// Whether dockerd asks for the network's gateway address.
    pub fn is_gateway(&self) -> bool {
        self.options
            .iter()
            .any(|(k, v)| k == REQUEST_ADDRESS_TYPE && v == GATEWAY)
    }
}

/// `RequestAddress`'s answer; mirrors WIT `ipam-driver.address`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// The address with the pool's prefix length, a CIDR (`10.66.0.2/24`): dockerd refuses a
    /// plain IP.
    pub address: String,
    /// Free-form pairs.
    pub data: Vec<(String, String)>,
}

/// `GetCapabilities`' answer; mirrors WIT `ipam-driver.capabilities`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// dockerd then sends each endpoint's MAC under [`MAC_ADDRESS`].
    pub requires_mac_address: bool,
    /// dockerd then replays `RequestPool`/`RequestAddress` for existing networks at its start.
    pub requires_request_replay: bool,
}

/// `GetDefaultAddressSpaces`' answer; mirrors WIT `ipam-driver.address-spaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSpaces {
    /// The address space of local-scope networks.
    pub local: String,
    /// The address space of global-scope networks.
    pub global: String,
}

/// One decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate` (plugd's gateway answers it itself; a native server must).
    Activate,
    /// The driver's capabilities.
    GetCapabilities,
    /// The driver's address space names.
    GetDefaultAddressSpaces,
    /// Allocate a pool.
    RequestPool(PoolRequest),
    /// Free pool `pool_id`.
    ReleasePool {
        /// As [`Pool::pool_id`].
        pool_id: String,
    },
    /// Allocate an address in a pool.
    RequestAddress(AddressRequest),
    /// Free `address` (a plain IP) in pool `pool_id`.
    ReleaseAddress {
        /// As [`Pool::pool_id`].
        pool_id: String,
        /// A plain IP (no prefix), as dockerd sends it.
        address: String,
    },
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body Go would not decode.
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        Ok(match method {
            ACTIVATE => Request::Activate,
            GET_CAPABILITIES => {
                request::no_arguments(method, body)?;
                Request::GetCapabilities
            }
            GET_DEFAULT_ADDRESS_SPACES => {
                request::no_arguments(method, body)?;
                Request::GetDefaultAddressSpaces
            }
            REQUEST_POOL => {
                let r: PoolRequestWire = request::read(method, body, &POOL_REQUEST)?;
                Request::RequestPool(PoolRequest {
                    address_space: r.address_space,
                    pool: r.pool,
                    sub_pool: r.sub_pool,
                    options: request::pairs(r.options),
                    v6: r.v6,
                })
            }
            RELEASE_POOL => {
                let r: AddressRequestWire = request::read(method, body, &RELEASE_POOL_REQUEST)?;
                Request::ReleasePool { pool_id: r.pool_id }
            }
            REQUEST_ADDRESS => {
                let r: AddressRequestWire = request::read(method, body, &ADDRESS_REQUEST)?;
                Request::RequestAddress(AddressRequest {
                    pool_id: r.pool_id,
                    address: r.address,
                    options: request::pairs(r.options),
                })
            }
            RELEASE_ADDRESS => {
                let r: AddressRequestWire = request::read(method, body, &RELEASE_ADDRESS_REQUEST)?;
                Request::ReleaseAddress {
                    pool_id: r.pool_id,
                    address: r.address,
                }
            }
            _ => return Err(request::unknown(method, "IPAM driver")),
        })
    }
}

/// A driver's successful answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// GetCapabilities.
    Capabilities(Capabilities),
    /// GetDefaultAddressSpaces.
    AddressSpaces(AddressSpaces),
    /// RequestPool.
    Pool(Pool),
    /// RequestAddress.
    Address(Address),
    /// ReleasePool, ReleaseAddress.
    Done,
}

#[derive(Serialize)]
struct CapabilitiesReply {
    #[serde(rename = "RequiresMACAddress")]
    requires_mac_address: bool,
    #[serde(rename = "RequiresRequestReplay")]
    requires_request_replay: bool,
}

#[derive(Serialize)]
struct AddressSpacesReply {
    #[serde(rename = "LocalDefaultAddressSpace")]
    local: String,
    #[serde(rename = "GlobalDefaultAddressSpace")]
    global: String,
}

#[derive(Serialize)]
struct PoolReply {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(rename = "Pool")]
    pool: String,
    #[serde(rename = "Data")]
    data: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct AddressReply {
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Data")]
    data: BTreeMap<String, String>,
}

/// The error body of an IPAM reply (see the module docs for why both fields).
#[derive(Serialize)]
struct ErrorReply<'a> {
    #[serde(rename = "Err")]
    err: &'a str,
    #[serde(rename = "Error")]
    error: &'a str,
}

/// The reply dockerd gets for a driver error: the code's status, `{"Err": msg, "Error": msg}`.
pub fn error_reply(e: &DriverError) -> Reply {
    let message = e.to_string();
    let body = serde_json::to_vec(&ErrorReply {
        err: &message,
        error: &message,
    })
    .expect("strings always serialize");
    Reply {
        status: e.code.status(),
        body: body.into(),
    }
}

/// The reply dockerd gets for a driver's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return error_reply(&e),
    };
    match answer {
        Response::Activate => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Response::Capabilities(c) => super::json(&CapabilitiesReply {
            requires_mac_address: c.requires_mac_address,
            requires_request_replay: c.requires_request_replay,
        }),
        Response::AddressSpaces(s) => super::json(&AddressSpacesReply {
            local: s.local,
            global: s.global,
        }),
        Response::Pool(p) => super::json(&PoolReply {
            pool_id: p.pool_id,
            pool: p.pool,
            data: p.data.into_iter().collect(),
        }),
        Response::Address(a) => super::json(&AddressReply {
            address: a.address,
            data: a.data.into_iter().collect(),
        }),
        Response::Done => super::json(&serde_json::json!({})),
    }
}

/// Checks a successful `RequestPool` reply before dockerd acts on it: dockerd's bridge driver
/// puts the pool's gateway, prefix length included, on a bridge in the host's namespace, and
/// libnetwork checks neither that the gateway is inside the pool nor that the pool is the subnet
/// the user asked for. So: a pool of prefix length 0 is refused; when the user named a pool
/// (`requested`), the reply must be that pool; a gateway given in `Data` must be a CIDR inside
/// the pool with the pool's prefix length.
pub fn check_pool_reply(requested: &str, pool: &str, gateway: Option<&str>) -> Result<(), String> {
    let (net, len) = parse_cidr(pool).ok_or_else(|| format!("Pool {pool:?} is not a CIDR"))?;
    if len == 0 {
        return Err(format!("Pool {pool:?} covers every address"));
    }
    if !requested.is_empty() && requested != pool {
        return Err(format!("Pool {pool:?} is not the requested {requested:?}"));
    }
    if let Some(gw) = gateway {
        let (ip, gw_len) = parse_cidr(gw).ok_or_else(|| format!("gateway {gw:?} is not a CIDR"))?;
        if gw_len != len || !same_network(ip, net, len) {
            return Err(format!("gateway {gw:?} is not an address of Pool {pool:?}"));
        }
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u32)> {
    crate::gojson::forms::cidr(s).ok()?;
    let (ip, len) = s.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

fn same_network(a: std::net::IpAddr, b: std::net::IpAddr, len: u32) -> bool {
    use std::net::IpAddr::{V4, V6};
    let (a, b, bits) = match (a, b) {
        (V4(a), V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (V6(a), V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let host_bits = bits - len.min(bits);
    a >> host_bits == b >> host_bits
}

#[cfg(test)]
mod tests;
