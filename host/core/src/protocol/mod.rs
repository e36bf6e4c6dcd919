//! The engine↔plugin protocol (HTTP+JSON over a unix socket), typed once for both runtimes.
//!
//! dockerd decodes every reply case-insensitively, ignores unknown fields and treats only HTTP 200 as
//! success; errors travel as `{"Err": "..."}`. The request structs accept `null` where dockerd sends
//! it (`"Opts":null`) and an empty body where dockerd sends none.

pub mod replies;
pub mod status;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The error body of every subsystem but IPAM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrBody {
    /// The message dockerd shows after `<Method>: `.
    #[serde(rename = "Err")]
    pub err: String,
}

/// `VolumeDriver.*` requests and replies.
pub mod volume {
    use super::*;

    /// Endpoints of the volume subsystem, in dockerd's spelling.
    pub const CREATE: &str = "VolumeDriver.Create";
    /// See [`CREATE`].
    pub const REMOVE: &str = "VolumeDriver.Remove";
    /// See [`CREATE`].
    pub const MOUNT: &str = "VolumeDriver.Mount";
    /// See [`CREATE`].
    pub const UNMOUNT: &str = "VolumeDriver.Unmount";
    /// See [`CREATE`].
    pub const PATH: &str = "VolumeDriver.Path";
    /// See [`CREATE`].
    pub const GET: &str = "VolumeDriver.Get";
    /// See [`CREATE`].
    pub const LIST: &str = "VolumeDriver.List";
    /// See [`CREATE`].
    pub const CAPABILITIES: &str = "VolumeDriver.Capabilities";

    /// `{"Name", "Opts"}` (Create).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CreateRequest {
        /// Volume name.
        #[serde(rename = "Name", alias = "name")]
        pub name: String,
        /// `-o` options; dockerd sends `null` when there are none.
        #[serde(rename = "Opts", alias = "opts")]
        pub opts: Option<BTreeMap<String, String>>,
    }

    /// `{"Name"}` (Remove, Path, Get).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct NameRequest {
        /// Volume name.
        #[serde(rename = "Name", alias = "name")]
        pub name: String,
    }

    /// `{"Name", "ID"}` (Mount, Unmount). `ID` is per mount point, not the container id.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct MountRequest {
        /// Volume name.
        #[serde(rename = "Name", alias = "name")]
        pub name: String,
        /// Caller id, stable between Mount and its Unmount.
        #[serde(rename = "ID", alias = "id", alias = "Id")]
        pub id: String,
    }

    /// A volume as Get and List describe it.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Volume {
        /// Volume name.
        #[serde(rename = "Name")]
        pub name: String,
        /// Host path (after plugd's translation).
        #[serde(
            rename = "Mountpoint",
            skip_serializing_if = "String::is_empty",
            default
        )]
        pub mountpoint: String,
        /// RFC 3339; must be absent rather than `""` or dockerd fails to decode it.
        #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none", default)]
        pub created_at: Option<String>,
        /// Free-form status shown by `volume inspect`.
        #[serde(rename = "Status", skip_serializing_if = "Option::is_none", default)]
        pub status: Option<BTreeMap<String, serde_json::Value>>,
    }

    /// Reply carrying a path (Mount, Path).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct MountpointReply {
        /// Host path.
        #[serde(rename = "Mountpoint")]
        pub mountpoint: String,
        /// Empty on success.
        #[serde(rename = "Err")]
        pub err: String,
    }

    /// Reply to Get.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct GetReply {
        /// `null` with an empty `Err` means "no such volume".
        #[serde(rename = "Volume")]
        pub volume: Option<Volume>,
        /// Empty on success.
        #[serde(rename = "Err")]
        pub err: String,
    }

    /// Reply to List.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ListReply {
        /// Every volume the driver knows.
        #[serde(rename = "Volumes")]
        pub volumes: Vec<Volume>,
        /// Empty on success.
        #[serde(rename = "Err")]
        pub err: String,
    }

    /// `{"Scope": "local"|"global"}`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Capability {
        /// `local` or `global`.
        #[serde(rename = "Scope")]
        pub scope: String,
    }

    /// Reply to Capabilities.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct CapabilitiesReply {
        /// The driver's scope.
        #[serde(rename = "Capabilities")]
        pub capabilities: Capability,
    }
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
        let r: volume::CreateRequest =
            serde_json::from_str(r#"{"Name":"v1","Opts":null}"#).unwrap();
        assert_eq!(r.opts, None);
        let r: volume::MountRequest = serde_json::from_str(r#"{"name":"v1","id":"x"}"#).unwrap();
        assert_eq!((r.name.as_str(), r.id.as_str()), ("v1", "x"));
    }
}
