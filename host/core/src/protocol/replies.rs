//! Every reply dockerd decodes, as the Go type it decodes it into: the one table the socket
//! gateway rebuilds replies from, whichever runtime produced them.
//!
//! Sources: moby's `daemon/volume/drivers/proxy.go` and `adapter.go` (volume),
//! `libnetwork/drivers/remote/api` (network), `libnetwork/ipams/remote/api` (IPAM, whose in-band
//! error is `Error`), `pkg/authorization` (AuthZ, which ignores `Err` on a 200), `daemon/logger`
//! (log drivers) and `daemon/metrics` (metrics collectors, whose reply body is ignored); see
//! `../shared/reference/moby-plugin-protocol.md` §2. Strings dockerd turns into an address or an
//! interface carry the [`Form`] it parses them with.

use crate::gojson::{Field, Form, Kind};

/// How one method's reply reaches dockerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// dockerd decodes the body into this type: plugd decodes it the same way and re-encodes it.
    Typed {
        /// The Go type.
        kind: &'static Kind,
        /// Which field, if any, is the in-band error of a 200 reply.
        error: ErrorField,
    },
    /// dockerd looks only at the status (`MetricsCollector.*`): the body becomes `{}`.
    StatusOnly,
    /// A stream dockerd parses itself, frame by frame (`LogDriver.ReadLogs`): re-framed entry by
    /// entry by the gateway (`host/src/socket/logstream.rs`).
    Stream,
}

/// The in-band error field of a 200 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorField {
    /// `Err` (volume, network, log drivers).
    Err,
    /// `Error` (IPAM); a 200 carrying `Err` instead is a success to dockerd.
    Error,
    /// None: AuthZ replies decide by `Allow` and dockerd ignores `Err` on a 200.
    None,
}

impl ErrorField {
    /// The JSON key, if any.
    pub fn key(self) -> Option<&'static str> {
        match self {
            ErrorField::Err => Some("Err"),
            ErrorField::Error => Some("Error"),
            ErrorField::None => None,
        }
    }
}

/// The subsystems whose methods dockerd calls. A method under one of these prefixes that is not
/// in [`shape`] is refused (404) rather than relayed: a future dockerd may call it and act on it.
pub const SUBSYSTEMS: [&str; 7] = [
    "Plugin.",
    "VolumeDriver.",
    "NetworkDriver.",
    "IpamDriver.",
    "AuthZPlugin.",
    "LogDriver.",
    "MetricsCollector.",
];

/// True when dockerd could call `method` (it is in one of [`SUBSYSTEMS`]).
pub fn is_engine_method(method: &str) -> bool {
    SUBSYSTEMS.iter().any(|p| method.starts_with(p))
}

const TEXT: Kind = Kind::Str(Form::Text);
const ERR: Field = Field::new("Err", TEXT);
const ERROR: Field = Field::new("Error", TEXT);
const STRING_MAP: Kind = Kind::Map(&TEXT);
const ANY_MAP: Kind = Kind::Map(&Kind::Any);

/// `{"Err"}` alone.
pub static ERR_ONLY: Kind = Kind::Struct(&[ERR]);
/// IPAM's `{"Error"}` alone.
pub static ERROR_ONLY: Kind = Kind::Struct(&[ERROR]);

/// A volume in Get and List replies (`proxyVolume`).
pub static VOLUME: Kind = Kind::Struct(&[
    Field::new("Name", TEXT),
    Field::new("Mountpoint", TEXT),
    Field::new("CreatedAt", Kind::Time),
    Field::new("Status", ANY_MAP),
]);
/// Mount and Path replies.
pub static VOLUME_MOUNTPOINT: Kind = Kind::Struct(&[Field::new("Mountpoint", TEXT), ERR]);
/// Get's reply: a `null` volume with no error is "no such volume".
pub static VOLUME_GET: Kind = Kind::Struct(&[Field::new("Volume", Kind::Ptr(&VOLUME)), ERR]);
/// List's reply.
pub static VOLUME_LIST: Kind = Kind::Struct(&[Field::new("Volumes", Kind::Slice(&VOLUME)), ERR]);
/// Capabilities' reply.
pub static VOLUME_CAPABILITIES: Kind = Kind::Struct(&[
    Field::new("Capabilities", Kind::Struct(&[Field::new("Scope", TEXT)])),
    ERR,
]);

/// NetworkDriver.GetCapabilities.
pub static NETWORK_CAPABILITIES: Kind = Kind::Struct(&[
    Field::new("Scope", TEXT),
    Field::new("ConnectivityScope", TEXT),
    Field::new("GwAllocChecker", Kind::Bool),
    ERR,
]);
/// NetworkDriver.GwAllocCheck.
pub static NETWORK_GW_ALLOC_CHECK: Kind = Kind::Struct(&[
    Field::new("SkipIPv4", Kind::Bool),
    Field::new("SkipIPv6", Kind::Bool),
    ERR,
]);
/// NetworkDriver.AllocateNetwork.
pub static NETWORK_ALLOCATE: Kind = Kind::Struct(&[Field::new("Options", STRING_MAP), ERR]);
/// NetworkDriver.CreateEndpoint: the addresses dockerd assigns to the endpoint.
pub static NETWORK_CREATE_ENDPOINT: Kind = Kind::Struct(&[
    Field::new(
        "Interface",
        Kind::Ptr(&Kind::Struct(&[
            Field::new("Address", Kind::Str(Form::Cidr)),
            Field::new("AddressIPv6", Kind::Str(Form::Cidr)),
            Field::new("MacAddress", Kind::Str(Form::Mac)),
        ])),
    ),
    ERR,
]);
/// NetworkDriver.EndpointOperInfo.
pub static NETWORK_OPER_INFO: Kind = Kind::Struct(&[Field::new("Value", ANY_MAP), ERR]);
/// NetworkDriver.Join: the interface dockerd moves into the container, gateways and routes.
pub static NETWORK_JOIN: Kind = Kind::Struct(&[
    Field::new(
        "InterfaceName",
        Kind::Ptr(&Kind::Struct(&[
            Field::new("SrcName", Kind::Str(Form::IfName)),
            Field::new("DstPrefix", Kind::Str(Form::IfPrefix)),
            Field::new("DstName", Kind::Str(Form::IfName)),
        ])),
    ),
    Field::new("Gateway", Kind::Str(Form::Ip)),
    Field::new("GatewayIPv6", Kind::Str(Form::Ip)),
    Field::new(
        "StaticRoutes",
        Kind::Slice(&Kind::Struct(&[
            Field::new("Destination", Kind::Str(Form::Cidr)),
            Field::new("RouteType", Kind::Int),
            Field::new("NextHop", Kind::Str(Form::Ip)),
        ])),
    ),
    Field::new("DisableGatewayService", Kind::Bool),
    ERR,
]);

/// IpamDriver.GetCapabilities.
pub static IPAM_CAPABILITIES: Kind = Kind::Struct(&[
    Field::new("RequiresMACAddress", Kind::Bool),
    Field::new("RequiresRequestReplay", Kind::Bool),
    ERROR,
]);
/// IpamDriver.GetDefaultAddressSpaces.
pub static IPAM_ADDRESS_SPACES: Kind = Kind::Struct(&[
    Field::new("LocalDefaultAddressSpace", TEXT),
    Field::new("GlobalDefaultAddressSpace", TEXT),
    ERROR,
]);
/// IpamDriver.RequestPool.
pub static IPAM_REQUEST_POOL: Kind = Kind::Struct(&[
    Field::new("PoolID", TEXT),
    Field::new("Pool", Kind::Str(Form::Cidr)),
    Field::new("Data", STRING_MAP),
    ERROR,
]);
/// IpamDriver.RequestAddress.
pub static IPAM_REQUEST_ADDRESS: Kind = Kind::Struct(&[
    Field::new("Address", Kind::Str(Form::Cidr)),
    Field::new("Data", STRING_MAP),
    ERROR,
]);

/// AuthZPlugin.AuthZReq / AuthZRes.
pub static AUTHZ: Kind = Kind::Struct(&[
    Field::new("Allow", Kind::Bool),
    Field::new("Msg", TEXT),
    ERR,
]);

/// LogDriver.Capabilities (`{"Cap": {"ReadLogs"}}`, not what Docker's docs show).
pub static LOG_CAPABILITIES: Kind = Kind::Struct(&[
    Field::new("Cap", Kind::Struct(&[Field::new("ReadLogs", Kind::Bool)])),
    ERR,
]);

const fn typed(kind: &'static Kind, error: ErrorField) -> Shape {
    Shape::Typed { kind, error }
}

/// How dockerd reads the reply to `method`; `None` for a method it never calls.
pub fn shape(method: &str) -> Option<Shape> {
    use ErrorField as E;
    Some(match method {
        "VolumeDriver.Create" | "VolumeDriver.Remove" | "VolumeDriver.Unmount" => {
            typed(&ERR_ONLY, E::Err)
        }
        "VolumeDriver.Mount" | "VolumeDriver.Path" => typed(&VOLUME_MOUNTPOINT, E::Err),
        "VolumeDriver.Get" => typed(&VOLUME_GET, E::Err),
        "VolumeDriver.List" => typed(&VOLUME_LIST, E::Err),
        "VolumeDriver.Capabilities" => typed(&VOLUME_CAPABILITIES, E::Err),

        "NetworkDriver.GetCapabilities" => typed(&NETWORK_CAPABILITIES, E::Err),
        "NetworkDriver.GwAllocCheck" => typed(&NETWORK_GW_ALLOC_CHECK, E::Err),
        "NetworkDriver.AllocateNetwork" => typed(&NETWORK_ALLOCATE, E::Err),
        "NetworkDriver.CreateEndpoint" => typed(&NETWORK_CREATE_ENDPOINT, E::Err),
        "NetworkDriver.EndpointOperInfo" => typed(&NETWORK_OPER_INFO, E::Err),
        "NetworkDriver.Join" => typed(&NETWORK_JOIN, E::Err),
        "NetworkDriver.CreateNetwork"
        | "NetworkDriver.DeleteNetwork"
        | "NetworkDriver.FreeNetwork"
        | "NetworkDriver.DeleteEndpoint"
        | "NetworkDriver.Leave"
        | "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => typed(&ERR_ONLY, E::Err),

        "IpamDriver.GetCapabilities" => typed(&IPAM_CAPABILITIES, E::Error),
        "IpamDriver.GetDefaultAddressSpaces" => typed(&IPAM_ADDRESS_SPACES, E::Error),
        "IpamDriver.RequestPool" => typed(&IPAM_REQUEST_POOL, E::Error),
        "IpamDriver.RequestAddress" => typed(&IPAM_REQUEST_ADDRESS, E::Error),
        "IpamDriver.ReleasePool" | "IpamDriver.ReleaseAddress" => typed(&ERROR_ONLY, E::Error),

        "AuthZPlugin.AuthZReq" | "AuthZPlugin.AuthZRes" => typed(&AUTHZ, E::None),

        "LogDriver.StartLogging" | "LogDriver.StopLogging" => typed(&ERR_ONLY, E::Err),
        "LogDriver.Capabilities" => typed(&LOG_CAPABILITIES, E::Err),
        "LogDriver.ReadLogs" => Shape::Stream,

        "MetricsCollector.StartMetrics" | "MetricsCollector.StopMetrics" => Shape::StatusOnly,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_method_with_a_shape_is_in_a_subsystem() {
        for m in [
            "VolumeDriver.Mount",
            "NetworkDriver.Join",
            "IpamDriver.RequestPool",
            "AuthZPlugin.AuthZReq",
            "LogDriver.ReadLogs",
            "MetricsCollector.StartMetrics",
        ] {
            assert!(shape(m).is_some() && is_engine_method(m), "{m}");
        }
        assert!(shape("VolumeDriver.Frobnicate").is_none());
        assert!(is_engine_method("VolumeDriver.Frobnicate"));
        assert!(!is_engine_method("Probe.Report"));
    }

    #[test]
    fn ipam_errors_are_error_and_authz_has_none() {
        assert!(matches!(
            shape("IpamDriver.RequestAddress"),
            Some(Shape::Typed {
                error: ErrorField::Error,
                ..
            })
        ));
        assert!(matches!(
            shape("AuthZPlugin.AuthZRes"),
            Some(Shape::Typed {
                error: ErrorField::None,
                ..
            })
        ));
    }
}
