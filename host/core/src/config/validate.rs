//! The checks dockerd never makes (its `validateConfig` is `return nil // TODO`).
//!
//! Each rule refuses a config at create or pull that Docker would accept and then fail on later:
//! at enable (no socket, no entrypoint, a null device path panics dockerd), at first use (a
//! mis-cased type is never matched by a consumer), or never visibly (runc silently drops a
//! capability spelled `sys_admin`). Refusing early, with the field's JSON path and the offending
//! value, is the point.

use super::{ConfigError, Device, Interface, Mount, PluginConfig, Warning};

/// The Linux capabilities, in kernel order: the index is the capability number. Only these exact
/// spellings reach the kernel through runc; anything else is dropped without an error.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities an `Interface.Types` entry may name; consumers match them only in lower case.
pub(super) const TYPE_CAPABILITIES: [&str; 10] = [
    "volumedriver",
    "networkdriver",
    "ipamdriver",
    "authz",
    "logdriver",
    "metricscollector",
    "secretprovider",
    "csicontroller",
    "csinode",
    "graphdriver",
];

/// The only protocol scheme dockerd builds an HTTP client for (`""` defaults to it).
pub(super) const HTTP_SCHEME: &str = "moby.plugins.http/v1";

pub(super) const NETWORK_TYPES: [&str; 5] = ["", "none", "host", "bridge", "null"];

/// Runs every rule in config key order and reports the first failure.
pub(super) fn all(c: &PluginConfig) -> Result<(), ConfigError> {
    entrypoint(c.entrypoint.as_deref())?;
    interface(&c.interface)?;
    capabilities(c.linux.capabilities.as_deref().unwrap_or_default())?;
    for (i, device) in c.linux.devices.iter().flatten().enumerate() {
        self::device(i, device)?;
    }
    for (i, mount) in c.mounts.iter().flatten().enumerate() {
        self::mount(i, mount)?;
    }
    network(&c.network.kind)?;
    propagated_mount(&c.propagated_mount)
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, message)
}

/// `None` for an absolute path without `..`, else what is wrong with it.
fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        Some("must be an absolute path")
    } else if path.split('/').any(|c| c == "..") {
        Some("must not contain a `..` component")
    } else {
        None
    }
}

fn entrypoint(entrypoint: Option<&[String]>) -> Result<(), ConfigError> {
    const NEED: &str =
        "the plugin needs a command to run (for a wasm plugin, the component's path)";
    match entrypoint {
        None => Err(invalid("Entrypoint", format!("got null; {NEED}"))),
        Some([]) => Err(invalid("Entrypoint", format!("got []; {NEED}"))),
        Some(args) => match args.iter().position(String::is_empty) {
            Some(i) => Err(invalid(
                format!("Entrypoint[{i}]"),
                "got \"\"; entries must not be empty",
            )),
            None => Ok(()),
        },
    }
}

fn interface(interface: &Interface) -> Result<(), ConfigError> {
    const EXAMPLE: &str =
        "a plugin must declare at least one type, e.g. \"docker.volumedriver/1.0\"";
    let types = match interface.types.as_deref() {
        None => return Err(invalid("Interface.Types", format!("got null; {EXAMPLE}"))),
        Some([]) => return Err(invalid("Interface.Types", format!("got []; {EXAMPLE}"))),
        Some(types) => types,
    };
    for (i, t) in types.iter().enumerate() {
        if let Some(message) = type_problem(t) {
            return Err(invalid(format!("Interface.Types[{i}]"), message));
        }
    }
    socket(&interface.socket)?;
    let scheme = &interface.protocol_scheme;
    if !scheme.is_empty() && scheme != HTTP_SCHEME {
        return Err(invalid(
            "Interface.ProtocolScheme",
            format!(
                "{scheme:?}: only {HTTP_SCHEME:?} (or empty) is supported; dockerd would create no HTTP client for this plugin"
            ),
        ));
    }
    Ok(())
}

/// `None` for `docker.<known capability>/<major>.<minor>`, else why not, with the canonical
/// spelling when the capability is recognisable.
fn type_problem(t: &str) -> Option<String> {
    let (prefix_cap, version) = t.split_once('/').unwrap_or((t, ""));
    let (prefix, cap) = prefix_cap.rsplit_once('.').unwrap_or(("", prefix_cap));
    let version_ok = is_major_minor(version);
    if prefix == "docker" && TYPE_CAPABILITIES.contains(&cap) && version_ok {
        return None;
    }
    let cap_lower = cap.to_ascii_lowercase();
    if !TYPE_CAPABILITIES.contains(&cap_lower.as_str()) {
        let known: Vec<String> = TYPE_CAPABILITIES
            .iter()
            .map(|c| format!("docker.{c}"))
            .collect();
        return Some(format!(
            "{t:?}: unknown capability {cap:?}; known: {}",
            known.join(", ")
        ));
    }
    let suggestion = format!(
        "docker.{cap_lower}/{}",
        if version_ok { version } else { "1.0" }
    );
    let why = if t.eq_ignore_ascii_case(&suggestion) {
        "types are case-sensitive and consumers only match lower case"
    } else if !version_ok {
        "the version must be <major>.<minor>"
    } else {
        "the prefix must be `docker`"
    };
    Some(format!("{t:?}: {why}; did you mean {suggestion:?}?"))
}

fn is_major_minor(version: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    version
        .split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

fn socket(socket: &str) -> Result<(), ConfigError> {
    let problem = if socket.is_empty() {
        "got \"\"; name the socket file the plugin listens on, e.g. \"plugin.sock\"".to_owned()
    } else if socket.contains('/') {
        format!("{socket:?}: must be a file name directly inside /run/docker/plugins, without `/`")
    } else if socket == "." || socket == ".." {
        format!("{socket:?}: must be a file name, not a directory")
    } else {
        return Ok(());
    };
    Err(invalid("Interface.Socket", problem))
}

fn capabilities(caps: &[String]) -> Result<(), ConfigError> {
    for (i, name) in caps.iter().enumerate() {
        if CAPABILITIES.contains(&name.as_str()) {
            continue;
        }
        let norm = name.trim().to_ascii_uppercase().replace('-', "_");
        let canonical = format!("CAP_{}", norm.strip_prefix("CAP_").unwrap_or(&norm));
        let message = if CAPABILITIES.contains(&canonical.as_str()) {
            format!(
                "{name:?} is not the canonical spelling (runc would silently drop it); did you mean {canonical:?}?"
            )
        } else {
            format!("{name:?} is not a Linux capability (CAP_CHOWN … CAP_CHECKPOINT_RESTORE)")
        };
        return Err(invalid(format!("Linux.Capabilities[{i}]"), message));
    }
    Ok(())
}

fn settable(list: &Option<Vec<String>>, field: &str) -> bool {
    list.iter().flatten().any(|s| s == field)
}

fn device(i: usize, device: &Device) -> Result<(), ConfigError> {
    let field = format!("Linux.Devices[{i}].Path");
    let name = &device.name;
    let path_settable = settable(&device.settable, "path");
    let message = match device.path.as_deref() {
        None if path_settable => format!(
            "null: device {name:?} has no path, and `docker plugin set` cannot fill a null one (\"plugin config has no device path\"); declare \"path\": \"\" to leave it to the user"
        ),
        None => format!(
            "null: device {name:?} has no path and `path` is not settable (dockerd would panic at enable)"
        ),
        Some("") if path_settable => return Ok(()),
        Some("") => format!("got \"\": device {name:?} has no path and `path` is not settable"),
        Some(path) => match path_problem(path) {
            Some(problem) => format!("{path:?}: {problem}"),
            None => return Ok(()),
        },
    };
    Err(invalid(field, message))
}

fn mount(i: usize, mount: &Mount) -> Result<(), ConfigError> {
    let destination = &mount.destination;
    if let Some(problem) = path_problem(destination) {
        return Err(invalid(
            format!("Mounts[{i}].Destination"),
            format!("{destination:?}: {problem}"),
        ));
    }
    let message = match mount.source {
        Some(_) => return Ok(()),
        None if settable(&mount.settable, "source") => format!(
            "null: the mount at {destination:?} has no source, and `docker plugin set` cannot fill a null one (\"plugin config has no mount source\"); declare \"source\": \"\" to leave it to the user"
        ),
        None => {
            format!("null: the mount at {destination:?} has no source and `source` is not settable")
        }
    };
    Err(invalid(format!("Mounts[{i}].Source"), message))
}

fn network(kind: &str) -> Result<(), ConfigError> {
    if NETWORK_TYPES.contains(&kind) {
        return Ok(());
    }
    let lower = kind.to_ascii_lowercase();
    let hint = if NETWORK_TYPES.contains(&lower.as_str()) {
        format!("; did you mean {lower:?}?")
    } else {
        String::new()
    };
    Err(invalid(
        "Network.Type",
        format!("{kind:?}: must be one of \"host\", \"none\", \"bridge\", \"null\" or \"\"{hint}"),
    ))
}

fn propagated_mount(path: &str) -> Result<(), ConfigError> {
    match path_problem(path) {
        Some(problem) if !path.is_empty() => {
            Err(invalid("PropagatedMount", format!("{path:?}: {problem}")))
        }
        _ => Ok(()),
    }
}

/// Warnings for `Settable` entries `docker plugin set` would refuse: only one field per kind can
/// ever be set, so anything else there is a mistake the author finds out about late.
pub(super) fn settable_warnings(c: &PluginConfig) -> Vec<Warning> {
    let mut out = Vec::new();
    for (i, env) in c.env.iter().flatten().enumerate() {
        unsettable(&mut out, &format!("Env[{i}]"), &env.settable, "value");
    }
    for (i, mount) in c.mounts.iter().flatten().enumerate() {
        unsettable(&mut out, &format!("Mounts[{i}]"), &mount.settable, "source");
    }
    for (i, device) in c.linux.devices.iter().flatten().enumerate() {
        unsettable(
            &mut out,
            &format!("Linux.Devices[{i}]"),
            &device.settable,
            "path",
        );
    }
    unsettable(&mut out, "Args", &c.args.settable, "value");
    out
}

fn unsettable(out: &mut Vec<Warning>, path: &str, list: &Option<Vec<String>>, allowed: &str) {
    for (j, field) in list.iter().flatten().enumerate() {
        if field != allowed {
            out.push(Warning(format!(
                "`{path}.Settable[{j}]` is {field:?}, but only {allowed:?} can be set there; `docker plugin set` would refuse it"
            )));
        }
    }
}
