//! The engine↔plugin protocol (HTTP+JSON over a unix socket), typed once for both runtimes.
//!
//! dockerd decodes every reply case-insensitively, ignores unknown fields and treats only HTTP 200 as
//! success; errors travel as `{"Err": "..."}`. The request structs accept `null` where dockerd sends
//! it (`"Opts":null`) and an empty body where dockerd sends none.

pub mod authz;
mod error;
pub mod ipam;
pub mod logdriver;
pub mod metrics;
pub mod network;
pub mod replies;
pub mod request;
pub mod status;
pub mod volume;

pub use error::{DriverError, ErrorCode};

use serde::{Deserialize, Serialize};

/// The media type plugd answers with (go-plugins-helpers uses the same one; nobody checks it).
pub const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.1+json";

/// The `Implements` string dockerd's legacy activation expects for a managed `Interface.Types` entry,
/// or `None` for a type no engine consumer would match (dockerd accepts any string there).
pub fn implements_for_type(t: &str) -> Option<&'static str> {
    let (prefix_cap, _version) = t.split_once('/').unwrap_or((t, ""));
    let (prefix, cap) = prefix_cap.rsplit_once('.')?;
    if prefix != "docker" {
        return None;
    }
    Some(match cap {
        "volumedriver" => "VolumeDriver",
        "networkdriver" => "NetworkDriver",
        "ipamdriver" => "IpamDriver",
        "authz" => "authz",
        "logdriver" => "LogDriver",
        "metricscollector" => "MetricsCollector",
        "secretprovider" => "secretprovider",
        _ => return None,
    })
}

/// Reply to `/Plugin.Activate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Subsystem strings, e.g. `VolumeDriver`.
    #[serde(rename = "Implements")]
    pub implements: Vec<String>,
}

/// A 200 with `value` as its JSON body; a value that cannot be encoded (never, for the protocol's
/// types) is a 500 rather than a panic.
pub fn json<T: Serialize>(value: &T) -> crate::Reply {
    match serde_json::to_vec(value) {
        Ok(body) => crate::Reply::ok(body),
        Err(e) => crate::Reply::err(
            status::PLUGIN_ERROR,
            &format!("cannot encode the reply: {e}"),
        ),
    }
}

/// Whether what a driver makes (a volume, a network) is seen from one host or cluster-wide: the
/// `Scope` of `VolumeDriver.Capabilities` and the `Scope`/`ConnectivityScope` of
/// `NetworkDriver.GetCapabilities`; mirrors WIT `volume-driver.scope` and `network-driver.scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This host only: what dockerd assumes when a volume driver's `Capabilities` fails, and the
    /// only scope a network can have without swarm.
    #[default]
    Local,
    /// Shared by every host of a swarm (dockerd refuses such networks without one).
    Global,
}

impl Scope {
    /// The protocol's spelling (`"local"`, `"global"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// The error body of every subsystem but IPAM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrBody {
    /// The message dockerd shows after `<Method>: `.
    #[serde(rename = "Err")]
    pub err: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implements_maps_only_docker_prefixed_known_types() {
        assert_eq!(
            implements_for_type("docker.volumedriver/1.0"),
            Some("VolumeDriver")
        );
        assert_eq!(implements_for_type("docker.authz/1.0"), Some("authz"));
        assert_eq!(
            implements_for_type("docker.ipamdriver/1.1"),
            Some("IpamDriver")
        );
        assert_eq!(implements_for_type("Docker.VolumeDriver/1.0"), None);
        assert_eq!(implements_for_type("docker.dummy/1.0"), None);
        assert_eq!(implements_for_type("volumedriver"), None);
    }

    #[test]
    fn requests_tolerate_null_and_lowercase() {
        let r = volume::Request::decode(volume::CREATE, br#"{"Name":"v1","Opts":null}"#).unwrap();
        assert_eq!(
            r,
            volume::Request::Create {
                name: "v1".into(),
                opts: vec![]
            }
        );
        let r = volume::Request::decode(volume::MOUNT, br#"{"name":"v1","id":"x"}"#).unwrap();
        assert_eq!(
            r,
            volume::Request::Mount {
                name: "v1".into(),
                id: "x".into()
            }
        );
    }
}
