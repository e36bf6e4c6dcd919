//! The plugin `config.json` (v1 schema), as Docker defines it and as `docker plugin inspect` prints it.
//!
//! Field order and `null`-versus-`[]` are kept exactly, because the docker CLI prints the server's
//! JSON verbatim and users diff it. Parsing (keys in any case, as Go's decoder accepts them) and
//! validation live in this module too; see [`PluginConfig::parse`].

use serde::{Deserialize, Serialize};

/// One plugin's configuration, in the canonical (PascalCase, Go struct order) shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    /// Settable argument list appended to the entrypoint.
    #[serde(rename = "Args")]
    pub args: Args,
    /// Free text shown by `ls`.
    #[serde(rename = "Description")]
    pub description: String,
    /// Deprecated engine-set field; kept only when a stored config carried it.
    #[serde(rename = "DockerVersion", skip_serializing_if = "Option::is_none", default)]
    pub docker_version: Option<String>,
    /// Link to the plugin's documentation.
    #[serde(rename = "Documentation")]
    pub documentation: String,
    /// argv prefix; for a wasm plugin `entrypoint[0]` names the component inside rootfs.
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables, settable or fixed.
    #[serde(rename = "Env")]
    pub env: Option<Vec<Env>>,
    /// What the plugin implements and where it listens.
    #[serde(rename = "Interface")]
    pub interface: Interface,
    /// Share the host IPC namespace.
    #[serde(rename = "IpcHost")]
    pub ipc_host: bool,
    /// Capabilities and devices.
    #[serde(rename = "Linux")]
    pub linux: Linux,
    /// Mounts requested by the plugin.
    #[serde(rename = "Mounts")]
    pub mounts: Option<Vec<Mount>>,
    /// Network namespace choice.
    #[serde(rename = "Network")]
    pub network: Network,
    /// Share the host PID namespace.
    #[serde(rename = "PidHost")]
    pub pid_host: bool,
    /// Path inside the plugin whose mounts propagate to the host (empty: none).
    #[serde(rename = "PropagatedMount")]
    pub propagated_mount: String,
    /// Ignored by the engine (the plugin runs as uid 0); kept for round-tripping.
    #[serde(rename = "User")]
    pub user: User,
    /// Working directory (empty: `/`).
    #[serde(rename = "WorkDir")]
    pub work_dir: String,
    /// Set by the engine at create: the layer digests of the rootfs.
    #[serde(rename = "rootfs", skip_serializing_if = "Option::is_none", default)]
    pub rootfs: Option<RootFs>,
}

/// `Interface`: the plugin's types and socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Only `""` and `moby.plugins.http/v1` are HTTP.
    #[serde(rename = "ProtocolScheme", skip_serializing_if = "String::is_empty", default)]
    pub protocol_scheme: String,
    /// Socket file name inside `/run/docker/plugins` of the plugin.
    #[serde(rename = "Socket")]
    pub socket: String,
    /// `docker.<capability>/<version>` strings.
    #[serde(rename = "Types")]
    pub types: Option<Vec<String>>,
}

/// `Args`: a settable argument list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Args {
    /// Shown in inspect.
    #[serde(rename = "Description")]
    pub description: String,
    /// The name `set` uses.
    #[serde(rename = "Name")]
    pub name: String,
    /// Which fields `set` may change (`value`).
    #[serde(rename = "Settable")]
    pub settable: Option<Vec<String>>,
    /// Default arguments.
    #[serde(rename = "Value")]
    pub value: Option<Vec<String>>,
}

/// One `Env` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Env {
    /// Shown in inspect.
    #[serde(rename = "Description")]
    pub description: String,
    /// Variable name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Which fields `set` may change (`value`).
    #[serde(rename = "Settable")]
    pub settable: Option<Vec<String>>,
    /// Default value; `null` entries are left out of the initial settings.
    #[serde(rename = "Value")]
    pub value: Option<String>,
}

/// One `Mounts` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Shown in inspect.
    #[serde(rename = "Description")]
    pub description: String,
    /// Absolute path inside the plugin.
    #[serde(rename = "Destination")]
    pub destination: String,
    /// The name `set` uses.
    #[serde(rename = "Name")]
    pub name: String,
    /// Mount options (`rbind`, `ro`, …).
    #[serde(rename = "Options")]
    pub options: Option<Vec<String>>,
    /// Which fields `set` may change (`source`).
    #[serde(rename = "Settable")]
    pub settable: Option<Vec<String>>,
    /// Host path; `null` until set.
    #[serde(rename = "Source")]
    pub source: Option<String>,
    /// Mount type (`bind`, `tmpfs`, …).
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `Linux`: capabilities and devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Linux {
    /// Give the plugin every device.
    #[serde(rename = "AllowAllDevices")]
    pub allow_all_devices: bool,
    /// Canonical `CAP_*` names added to Docker's defaults.
    #[serde(rename = "Capabilities")]
    pub capabilities: Option<Vec<String>>,
    /// Devices to expose.
    #[serde(rename = "Devices")]
    pub devices: Option<Vec<Device>>,
}

/// One `Linux.Devices` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Shown in inspect.
    #[serde(rename = "Description")]
    pub description: String,
    /// The name `set` uses.
    #[serde(rename = "Name")]
    pub name: String,
    /// Host device path; `null` until set.
    #[serde(rename = "Path")]
    pub path: Option<String>,
    /// Which fields `set` may change (`path`).
    #[serde(rename = "Settable")]
    pub settable: Option<Vec<String>>,
}

/// `Network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// `host`, `none`, `bridge`, `null` or empty.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `User`: both ids omitted when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Group id.
    #[serde(rename = "GID", skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<u32>,
    /// User id.
    #[serde(rename = "UID", skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<u32>,
}

/// `rootfs` (lower-case key, set by the engine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Layer digests.
    #[serde(rename = "diff_ids")]
    pub diff_ids: Option<Vec<String>>,
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A key Docker would silently ignore, or another oddity worth telling the author about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a `config.json` was refused: always names the field (as a JSON path) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, a wrong JSON type, or trailing data.
    #[error("invalid config json: {0}")]
    Json(String),
    /// A field whose value breaks a rule.
    #[error("invalid config: {field}: {message}")]
    Invalid {
        /// JSON path of the field, e.g. `Linux.Devices[0].Path`.
        field: String,
        /// What is wrong, quoting the value.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { field: field.into(), message: message.into() }
    }
}

/// `Settings`: the values `set` changed, applied over the config at enable. All four start as `[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Effective extra arguments.
    #[serde(rename = "Args")]
    pub args: Vec<String>,
    /// Effective devices.
    #[serde(rename = "Devices")]
    pub devices: Vec<Device>,
    /// Effective `NAME=value` environment.
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    /// Effective mounts.
    #[serde(rename = "Mounts")]
    pub mounts: Vec<Mount>,
}

/// A plugin as the Engine API shows it (`GET /plugins/{name}/json`), in dockerd's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginObject {
    /// The declared configuration.
    #[serde(rename = "Config")]
    pub config: PluginConfig,
    /// Whether the plugin is serving.
    #[serde(rename = "Enabled")]
    pub enabled: bool,
    /// Random 64-hex id.
    #[serde(rename = "Id")]
    pub id: String,
    /// `name:tag`.
    #[serde(rename = "Name")]
    pub name: String,
    /// Where it came from (for create: the name).
    #[serde(rename = "PluginReference", default)]
    pub plugin_reference: String,
    /// Effective settings.
    #[serde(rename = "Settings")]
    pub settings: Settings,
}
