//! The privileges and process a plugin actually gets, computed once from its config and settings.
//!
//! A plugin's facts live in two copies: the declared `Config` and the `Settings` that `docker
//! plugin set` changes. dockerd reads some from one and some from the other (`InitSpec`): mounts
//! from `Config.Mounts` (where `set` writes a source), devices, env and args from `Settings`,
//! capabilities and namespaces from `Config`. Both runtimes and the privilege list read them here,
//! so they cannot disagree about which copy counts.
//!
//! Specs built without a manager (tests, tools) may fill only one copy; the rules below take the
//! other copy where the one dockerd reads is empty, which never changes a spec the manager built
//! (its settings start as [`Settings::initial`] and `set` writes both copies).

use crate::config::{Device, Mount, PluginConfig, Settings};

/// moby's default capabilities for a plugin (`oci/caps/defaults.go`), in its order:
/// `CapEff = 0xa80425fb`. The native sandbox starts from them and `plugd check` expects them, so
/// they are written once, here.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// dockerd's `oci.DefaultPathEnv` value for Linux, written once as a literal so both constants
/// below are the same text.
macro_rules! default_path {
    () => {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    };
}

/// dockerd's `PATH` for plugins: the daemon's entrypoint check and the init's argv lookup search
/// it when the env sets none, so both find the same program.
pub const DEFAULT_PATH: &str = default_path!();

/// dockerd's `oci.DefaultPathEnv` entry, always the first env entry of a native plugin (never
/// de-duplicated).
pub const DEFAULT_PATH_ENV: &str = concat!("PATH=", default_path!());

/// The `Env` entry by which a wasm plugin says how many instances of it may serve calls at once
/// (module docs of `plugd-wasm`'s `instance`): absent or `1`, one instance and every call
/// serialised on it, so state a guest keeps in memory is seen by every later call; `N` (up to
/// [`MAX_INSTANCES`]), a pool of up to N instances, each call on any idle one, so only state the
/// guest keeps outside its memory (files) is shared. It is an ordinary env entry so that the
/// bundle's author declares it in `config.json` and a user can see it in `inspect` and, where the
/// author made it settable, turn pooling off with `set PLUGD_INSTANCES=1`. The native runtime
/// ignores it: a native plugin's concurrency is its own process's.
pub const INSTANCES_ENV: &str = "PLUGD_INSTANCES";

/// Most instances a wasm plugin may ask for: each is a thread and its own linear memory (up to
/// the per-instance memory limit), and past the host's cores they add memory, not throughput.
pub const MAX_INSTANCES: usize = 8;

/// What one plugin is given, whichever runtime runs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    /// `Config.Mounts` in order (the settings' list when the config declares none), each with its
    /// source after `set`: the config's, or, where that is `null`, the source of the settings
    /// entry of the same name.
    pub mounts: Vec<Mount>,
    /// `Settings.Devices`: the devices the sandbox gets (dockerd ignores `Config.Linux.Devices` at
    /// enable).
    pub devices: Vec<Device>,
    /// Config devices with no settings entry of that name: given to nobody, but still asked for,
    /// so a runtime that can give no devices refuses them too.
    pub declared_only_devices: Vec<Device>,
    /// `Linux.AllowAllDevices`.
    pub allow_all_devices: bool,
    /// `Linux.Capabilities` as declared (added to dockerd's defaults by the native sandbox).
    pub capabilities: Vec<String>,
    /// `Network.Type` as declared (`host` shares the host's network).
    pub network: String,
    /// `PidHost`.
    pub pid_host: bool,
    /// `IpcHost`.
    pub ipc_host: bool,
    /// `Settings.Env`, `NAME=value` in order (the sandbox's `PATH` default is the runtime's).
    pub env: Vec<String>,
    /// argv: `Entrypoint` followed by `Settings.Args`.
    pub args: Vec<String>,
}

impl Effective {
    /// The one reading of a plugin's config and settings every runtime and the privilege list use.
    pub fn of(config: &PluginConfig, settings: &Settings) -> Effective {
        let declared = config.mounts.as_deref().unwrap_or_default();
        let mounts = if declared.is_empty() {
            settings.mounts.clone()
        } else {
            declared
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut m = m.clone();
                    if m.source.is_none() {
                        m.source =
                            mirror(&settings.mounts, i, &m.name).and_then(|s| s.source.clone());
                    }
                    m
                })
                .collect()
        };
        let declared_only_devices = config
            .linux
            .devices
            .iter()
            .flatten()
            .filter(|d| !settings.devices.iter().any(|s| s.name == d.name))
            .cloned()
            .collect();
        let mut args = config.entrypoint.clone().unwrap_or_default();
        args.extend(settings.args.iter().cloned());
        Effective {
            mounts,
            devices: settings.devices.clone(),
            declared_only_devices,
            allow_all_devices: config.linux.allow_all_devices,
            capabilities: config.linux.capabilities.clone().unwrap_or_default(),
            network: config.network.kind.clone(),
            pid_host: config.pid_host,
            ipc_host: config.ipc_host,
            env: settings.env.clone(),
            args,
        }
    }

    /// Whether the plugin shares the host's network namespace.
    pub fn host_network(&self) -> bool {
        self.network == "host"
    }

    /// `Settings.Env` split at the first `=` (an entry without one is a name with an empty value).
    pub fn env_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env
            .iter()
            .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
    }

    /// How many instances may serve the plugin's calls at once ([`INSTANCES_ENV`]); an error
    /// names the entry and what it should be. The last entry of that name counts, as for any env.
    pub fn instances(&self) -> Result<usize, String> {
        let Some((_, value)) = self.env_pairs().filter(|(k, _)| *k == INSTANCES_ENV).last() else {
            return Ok(1);
        };
        match value.parse::<usize>() {
            Ok(n) if (1..=MAX_INSTANCES).contains(&n) && !value.starts_with('+') => Ok(n),
            _ => Err(format!(
                "env {INSTANCES_ENV}={value:?}: expected a whole number from 1 to {MAX_INSTANCES}"
            )),
        }
    }

    /// Every device the plugin names: the effective ones, then those only the config declares.
    pub fn named_devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().chain(&self.declared_only_devices)
    }
}

/// The settings entry mirroring config mount `i`, as `set` finds it: the same index if its name
/// matches, else the first of that name; an unnamed mount has none (it cannot be set).
fn mirror<'a>(list: &'a [Mount], i: usize, name: &str) -> Option<&'a Mount> {
    match list.get(i) {
        Some(m) if m.name == name => Some(m),
        _ if name.is_empty() => None,
        _ => list.iter().find(|m| m.name == name),
    }
}

/// Configs with settings applied on which every consumer of [`Effective`] is checked: each
/// runtime's tests assert that what it grants is what this model says, case by case, so the two
/// runtimes see the same values through it. Mount sources are directories under `root` (a test
/// that needs them to exist creates them). `(case name, config, settings)`.
#[doc(hidden)]
pub fn cases(root: &str) -> Vec<(&'static str, PluginConfig, Settings)> {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let base = || PluginConfig {
        entrypoint: Some(strings(&["/plugin"])),
        ..PluginConfig::default()
    };
    let bind = |name: &str, source: Option<&str>, destination: &str, opts: &[&str]| Mount {
        name: name.into(),
        source: source.map(str::to_owned),
        destination: destination.into(),
        kind: "bind".into(),
        options: Some(strings(opts)),
        settable: Some(strings(&["source"])),
        ..Mount::default()
    };
    let with_set = |config: PluginConfig, args: &[&str]| {
        let mut config = config;
        let mut settings = Settings::initial(&config);
        crate::settable::apply(&mut config, &mut settings, &strings(args))
            .expect("the table's sets apply");
        (config, settings)
    };
    let mut out = Vec::new();

    let (c, s) = with_set(base(), &[]);
    out.push(("bare", c, s));

    let mut c = base();
    c.env = Some(vec![crate::config::Env {
        name: "DEBUG".into(),
        value: Some("0".into()),
        settable: Some(strings(&["value"])),
        ..Default::default()
    }]);
    c.args.name = "args".into();
    c.args.value = Some(strings(&["-v"]));
    c.args.settable = Some(strings(&["value"]));
    let (c, s) = with_set(c, &["DEBUG=1", "args=--debug x"]);
    out.push(("env and args set", c, s));

    let mut c = base();
    c.mounts = Some(vec![
        bind("data", Some(&format!("{root}/old")), "/data", &["rbind"]),
        bind("ro", Some(&format!("{root}/ro")), "/ro", &["rbind", "ro"]),
    ]);
    let (c, s) = with_set(c, &[&format!("data={root}/new")]);
    out.push(("mount source set", c, s));

    let mut c = base();
    c.linux.capabilities = Some(strings(&["CAP_SYS_ADMIN"]));
    c.network.kind = "host".into();
    c.pid_host = true;
    c.ipc_host = true;
    let (c, s) = with_set(c, &[]);
    out.push(("host namespaces and a capability", c, s));

    let mut c = base();
    c.linux.devices = Some(vec![Device {
        name: "dev".into(),
        path: Some("/dev/null".into()),
        settable: Some(strings(&["path"])),
        ..Device::default()
    }]);
    let (c, s) = with_set(c, &["dev=/dev/zero"]);
    out.push(("device path set", c, s));

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_what_the_plugin_gets() {
        let cases = cases("/srv");
        let get = |name: &str| {
            let (_, c, s) = cases.iter().find(|(n, ..)| *n == name).unwrap();
            Effective::of(c, s)
        };
        let e = get("env and args set");
        assert_eq!(e.env, ["DEBUG=1"]);
        assert_eq!(e.args, ["/plugin", "--debug", "x"]);
        let e = get("mount source set");
        let sources: Vec<_> = e.mounts.iter().map(|m| m.source.as_deref()).collect();
        assert_eq!(sources, [Some("/srv/new"), Some("/srv/ro")]);
        let e = get("device path set");
        assert_eq!(e.devices[0].path.as_deref(), Some("/dev/zero"));
        assert!(e.declared_only_devices.is_empty());
        let e = get("host namespaces and a capability");
        assert!(e.host_network() && e.pid_host && e.ipc_host);
        assert_eq!(e.capabilities, ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn the_copy_dockerd_reads_wins_and_the_other_fills_gaps() {
        let mount = |name: &str, source: Option<&str>| Mount {
            name: name.into(),
            source: source.map(str::to_owned),
            destination: format!("/{name}"),
            ..Mount::default()
        };
        let mut c = PluginConfig {
            mounts: Some(vec![mount("a", Some("/h1")), mount("b", None)]),
            ..PluginConfig::default()
        };
        let s = Settings {
            mounts: vec![mount("a", Some("/stale")), mount("b", Some("/set"))],
            ..Settings::default()
        };
        let e = Effective::of(&c, &s);
        let sources: Vec<_> = e.mounts.iter().map(|m| m.source.as_deref()).collect();
        assert_eq!(sources, [Some("/h1"), Some("/set")]);
        // No config mounts: the settings' list.
        let e = Effective::of(&PluginConfig::default(), &s);
        assert_eq!(e.mounts, s.mounts);
        // Devices are the settings'; config-only ones are named, never given.
        c.linux.devices = Some(vec![Device {
            name: "gpu".into(),
            ..Device::default()
        }]);
        let e = Effective::of(&c, &Settings::default());
        assert!(e.devices.is_empty());
        assert_eq!(e.named_devices().count(), 1);
    }

    #[test]
    fn instances_are_one_unless_declared_and_refused_when_malformed() {
        let with = |env: &[&str]| Effective {
            env: env.iter().map(|e| e.to_string()).collect(),
            ..Effective::default()
        };
        assert_eq!(with(&[]).instances(), Ok(1));
        assert_eq!(with(&["PLUGD_INSTANCES=4"]).instances(), Ok(4));
        // The last entry of a name wins, as in a process's environment.
        assert_eq!(
            with(&["PLUGD_INSTANCES=4", "PLUGD_INSTANCES=1"]).instances(),
            Ok(1)
        );
        for bad in ["0", "9", "", "+2", "two", "2 "] {
            let e = with(&[&format!("PLUGD_INSTANCES={bad}")])
                .instances()
                .unwrap_err();
            assert!(e.contains("PLUGD_INSTANCES") && e.contains("1 to 8"), "{e}");
        }
    }
}
