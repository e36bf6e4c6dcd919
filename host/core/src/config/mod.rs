//! The plugin `config.json` (v1 schema), as Docker defines it and as `docker plugin inspect` prints it.
//!
//! Field order and `null`-versus-`[]` are kept exactly, because the docker CLI prints the server's
//! JSON verbatim and users diff it. Parsing (keys in any case, as Go's decoder accepts them) and
//! validation live in this module too; see [`PluginConfig::parse`].

use serde::{Deserialize, Serialize};

mod canon;
#[cfg(test)]
mod props;
mod raw;
#[cfg(test)]
mod rule_tests;
pub mod schema;
#[cfg(test)]
mod tests;
mod validate;

pub use validate::CAPABILITIES;

/// One plugin's configuration, in the canonical (PascalCase, Go struct order) shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginConfig {
    /// Settable argument list appended to the entrypoint.
    #[serde(rename = "Args")]
    pub args: Args,
    /// Free text shown by `ls`.
    #[serde(rename = "Description")]
    pub description: String,
    /// Deprecated engine-set field; kept only when a stored config carried it.
    #[serde(
        rename = "DockerVersion",
        skip_serializing_if = "Option::is_none",
        default
    )]
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
#[serde(default)]
pub struct Interface {
    /// Only `""` and `moby.plugins.http/v1` are HTTP.
    #[serde(
        rename = "ProtocolScheme",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub protocol_scheme: String,
    /// Socket file name inside `/run/docker/plugins` of the plugin.
    #[serde(rename = "Socket")]
    pub socket: String,
    /// `docker.<capability>/<version>` strings.
    #[serde(rename = "Types")]
    pub types: Option<Vec<String>>,
}

/// A settable named value: Go's `PluginConfigArgs` (`Value` a list) and `PluginEnv` (`Value` a
/// string) are this shape with two value types, so Rust has one generic struct for both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Setting<V> {
    /// Shown in inspect.
    #[serde(rename = "Description")]
    pub description: String,
    /// The name `set` uses (for `Env`, the variable name).
    #[serde(rename = "Name")]
    pub name: String,
    /// Which fields `set` may change (`value`).
    #[serde(rename = "Settable")]
    pub settable: Option<Vec<String>>,
    /// The default (`Args`: arguments; `Env`: `null` entries are left out of the initial settings).
    #[serde(rename = "Value")]
    pub value: Option<V>,
}

/// `Args`: default arguments, settable as a whole.
pub type Args = Setting<Vec<String>>;

/// One `Env` entry.
pub type Env = Setting<String>;

/// One `Mounts` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

impl Mount {
    /// A bind mount as runc (and plugd-init) decide it: `Type` `bind`, or a `bind`/`rbind` option
    /// whatever the type says (`tmpfs` with `rbind` binds its source).
    pub fn is_bind(&self) -> bool {
        let opts = self.options.as_deref().unwrap_or_default();
        self.kind == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind")
    }

    /// Read-only by mount(8)'s rule: the last of `ro`/`rw` wins; default read-write.
    pub fn read_only(&self) -> bool {
        self.options
            .iter()
            .flatten()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro")
    }
}

/// `Linux`: capabilities and devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[serde(default)]
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
#[serde(default)]
pub struct Network {
    /// `host`, `none`, `bridge`, `null` or empty.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `User`: both ids omitted when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[serde(default)]
pub struct RootFs {
    /// Layer digests.
    #[serde(rename = "diff_ids")]
    pub diff_ids: Option<Vec<String>>,
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl PluginConfig {
    /// Reads a `config.json` the way dockerd does (keys in any case, `null` and missing fields
    /// anywhere, unknown keys ignored), then refuses what dockerd would only fail on later (see
    /// [`PluginConfig::validate`]). The warnings name what Docker would have dropped silently, which
    /// is how an author learns that the docs' top-level `capabilities` never took effect.
    pub fn parse(bytes: &[u8]) -> Result<(PluginConfig, Vec<Warning>), ConfigError> {
        let (config, warnings) = Self::decode(bytes)?;
        config.validate()?;
        Ok((config, warnings))
    }

    /// Checks the rules dockerd leaves to enable time or never checks; public because the manager
    /// must re-check after `set` changed a mount source or device path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::all(self)
    }

    /// dockerd's own decoding, without validation.
    fn decode(bytes: &[u8]) -> Result<(PluginConfig, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let canonical = canon::canonicalise(raw::from_slice(bytes)?, &mut warnings)?;
        let mut config: PluginConfig =
            serde_json::from_value(canonical).map_err(|e| ConfigError::Json(e.to_string()))?;
        config.drop_go_zero_values();
        warnings.extend(validate::settable_warnings(&config));
        Ok((config, warnings))
    }

    /// These fields are `omitempty` non-pointers in Go: a zero value read in is never written out,
    /// so clearing it keeps our inspect output byte-for-byte dockerd's.
    fn drop_go_zero_values(&mut self) {
        if self.docker_version.as_deref() == Some("") {
            self.docker_version = None;
        }
        if self.user.uid == Some(0) {
            self.user.uid = None;
        }
        if self.user.gid == Some(0) {
            self.user.gid = None;
        }
    }
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
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
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

impl Settings {
    /// dockerd's `InitEmptySettings`: what a freshly created or pulled plugin starts with, so that
    /// inspect shows `[]` (never `null`) and the runtime can read effective values from one place.
    /// Env entries whose value is `null` are left out, as dockerd does.
    pub fn initial(config: &PluginConfig) -> Settings {
        Settings {
            args: config.args.value.clone().unwrap_or_default(),
            devices: config.linux.devices.clone().unwrap_or_default(),
            env: config
                .env
                .iter()
                .flatten()
                .filter_map(|e| e.value.as_ref().map(|v| format!("{}={v}", e.name)))
                .collect(),
            mounts: config.mounts.clone().unwrap_or_default(),
        }
    }

    /// The settings an upgraded plugin starts with: the new config's initial ones, with what the
    /// user changed (a value that differs from the old config's default, `set` after install)
    /// carried over wherever the new config still declares it (an env var of the same name —
    /// declared with no value included —, a mount or device of the same name, the args when
    /// their name is unchanged). dockerd keeps the old settings whole, so an env var the new
    /// version adds never reaches it, one it dropped still does, and a default it changed never
    /// applies; plugd keeps exactly the user's choices that still mean something.
    pub fn carried(
        old: &Settings,
        old_config: &PluginConfig,
        new_config: &PluginConfig,
    ) -> Settings {
        let mut new = Settings::initial(new_config);
        let value_of = |env: &[String], name: &str| {
            env.iter().find_map(|e| {
                e.split_once('=')
                    .filter(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let old_default = |name: &str| {
            old_config
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        for declared in new_config.env.iter().flatten() {
            let Some(user) = value_of(&old.env, &declared.name) else {
                continue;
            };
            if old_default(&declared.name).as_deref() == Some(user.as_str()) {
                continue;
            }
            let entry = format!("{}={user}", declared.name);
            match new
                .env
                .iter_mut()
                .find(|e| e.split_once('=').is_some_and(|(n, _)| n == declared.name))
            {
                Some(slot) => *slot = entry,
                None => new.env.push(entry),
            }
        }
        let old_mounts = old_config.mounts.clone().unwrap_or_default();
        for m in &mut new.mounts {
            let default = old_mounts
                .iter()
                .find(|o| o.name == m.name)
                .map(|o| &o.source);
            if let Some(kept) = old
                .mounts
                .iter()
                .find(|o| !o.name.is_empty() && o.name == m.name)
                && default != Some(&kept.source)
            {
                m.source = kept.source.clone();
            }
        }
        let old_devices = old_config.linux.devices.clone().unwrap_or_default();
        for d in &mut new.devices {
            let default = old_devices
                .iter()
                .find(|o| o.name == d.name)
                .map(|o| &o.path);
            if let Some(kept) = old
                .devices
                .iter()
                .find(|o| !o.name.is_empty() && o.name == d.name)
                && default != Some(&kept.path)
            {
                d.path = kept.path.clone();
            }
        }
        let old_args = old_config.args.value.clone().unwrap_or_default();
        if !new_config.args.name.is_empty()
            && new_config.args.name == old_config.args.name
            && old.args != old_args
        {
            new.args = old.args.clone();
        }
        new
    }
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
