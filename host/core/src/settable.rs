//! `docker plugin set`: dockerd's syntax, lookup and messages, with its state bugs fixed.
//!
//! Kept exactly as dockerd (`v2/settable.go`, `Plugin.Set`), because users and scripts depend on it:
//! - Syntax `<name>[.<field>][=<value>]`: the first `=` splits off the value (none means `""`); a
//!   leading `=` is an error; the field is what follows the *last* `.` of the name, only if that dot
//!   is not the first character (so `A.B=x` sets field `B` of `A`, and `a.=x` means "no field").
//! - Lookup order: `Env[].Name`, then `Mounts[].Name`, then `Linux.Devices[].Name`, then
//!   `Args.Name`; the first match wins.
//! - Field resolution: without a field, a single-entry `Settable` supplies it and more entries are
//!   an error; the field must then be both allowed for the kind (`value`, `source`, `path`,
//!   `value`) and listed in `Settable`. The "not settable" message names the defaulted field.
//! - Effects: env replaces `NAME=…` in `Settings.Env` or appends it; args become
//!   `value.split(' ')` (a single-space split, so `""` gives `[""]`); a mount or device whose
//!   source or path is `null` cannot be set.
//! - Messages: every [`SetError`] displays dockerd's text, with Go's `%q` quoting.
//!
//! Deliberately different from dockerd:
//! - **All or nothing.** dockerd applies the arguments one by one and leaves the earlier ones
//!   applied (in memory) when a later one fails; we work on copies and change nothing on error.
//! - **Config and settings agree.** dockerd's settings share the mount-source and device-path
//!   pointers with the config only until its next restart. After one, a `set` writes `Config`
//!   alone: for a mount that still works (enable reads `Config.Mounts`) but inspect shows stale
//!   settings; for a device it does nothing at all (enable reads `Settings.Devices`). We always
//!   write both, the config entry and the settings entry of the same name (the same index when it
//!   still matches, as after create; else the first entry of that name, as after an upgrade that
//!   reordered them). A settings entry that does not exist is not invented.
//! - The result is not validated here: the caller re-runs [`PluginConfig::validate`] (a device
//!   path set to a relative one is refused there, where dockerd would take it).
//! - The "disable first" precondition is the manager's (this module has no notion of enabled).

use crate::config::{PluginConfig, Settings};
use crate::gotext::go_quote;

/// Why `set` refused; `Display` is dockerd's exact message, so the CLI shows what Docker shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The argument starts with `=`.
    #[error("invalid format, must be <name>[.<field>][=<value>]")]
    InvalidFormat,
    /// No env, mount, device or args entry has this name.
    #[error("setting {} not found in the plugin configuration", go_quote(.0))]
    NotFound(String),
    /// No field given, and the entry's `Settable` lists more than one.
    #[error("multiple fields are settable, one must be specified")]
    MultipleFields,
    /// The field is not allowed for this kind, or not in the entry's `Settable`; holds `name[.field]`.
    #[error("{} is not settable", go_quote(.0))]
    NotSettable(String),
    /// The mount's `Source` is `null`, so there is nothing to overwrite.
    #[error("plugin config has no mount source")]
    NoMountSource,
    /// The device's `Path` is `null`, so there is nothing to overwrite.
    #[error("plugin config has no device path")]
    NoDevicePath,
}

/// Applies `docker plugin set` arguments to a plugin's config and settings, all or nothing; the
/// caller saves and re-validates afterwards.
pub fn apply(
    config: &mut PluginConfig,
    settings: &mut Settings,
    args: &[String],
) -> Result<(), SetError> {
    let sets = args
        .iter()
        .map(|a| Set::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut new_config = config.clone();
    let mut new_settings = settings.clone();
    for set in sets {
        set.apply(&mut new_config, &mut new_settings)?;
    }
    *config = new_config;
    *settings = new_settings;
    Ok(())
}

/// One parsed argument; an empty `field` means "not given", exactly as in dockerd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    name: String,
    field: String,
    value: String,
}

impl Set {
    fn parse(arg: &str) -> Result<Set, SetError> {
        let (mut name, value) = match arg.find('=') {
            Some(0) => return Err(SetError::InvalidFormat),
            Some(i) => (&arg[..i], &arg[i + 1..]),
            None => (arg, ""),
        };
        let mut field = "";
        if let Some(i) = name.rfind('.').filter(|&i| i > 0) {
            field = &name[i + 1..];
            name = &name[..i];
        }
        Ok(Set {
            name: name.to_owned(),
            field: field.to_owned(),
            value: value.to_owned(),
        })
    }

    /// `name.field` when a field is known (given or defaulted), else `name`.
    fn pretty(&self, field: &str) -> String {
        if field.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{field}", self.name)
        }
    }

    /// dockerd's `isSettable`: `Ok` when the given (or single settable) field may be set.
    fn check(&self, allowed: &str, settable: &Option<Vec<String>>) -> Result<(), SetError> {
        let settable = settable.as_deref().unwrap_or_default();
        let field = match (self.field.as_str(), settable) {
            ("", [only]) => only.as_str(),
            ("", [_, _, ..]) => return Err(SetError::MultipleFields),
            (field, _) => field,
        };
        if field == allowed && settable.iter().any(|s| s == field) {
            Ok(())
        } else {
            Err(SetError::NotSettable(self.pretty(field)))
        }
    }

    fn apply(&self, config: &mut PluginConfig, settings: &mut Settings) -> Result<(), SetError> {
        if let Some(env) = config.env.iter().flatten().find(|e| e.name == self.name) {
            self.check("value", &env.settable)?;
            self.set_env(&mut settings.env);
        } else if let Some((i, mount)) = find_mut(&mut config.mounts, |m| m.name == self.name) {
            self.check("source", &mount.settable)?;
            let source = mount.source.as_mut().ok_or(SetError::NoMountSource)?;
            source.clone_from(&self.value);
            if let Some(mirror) = same_entry(&mut settings.mounts, i, |m| m.name == self.name) {
                mirror.source = Some(self.value.clone());
            }
        } else if let Some((i, device)) =
            find_mut(&mut config.linux.devices, |d| d.name == self.name)
        {
            self.check("path", &device.settable)?;
            let path = device.path.as_mut().ok_or(SetError::NoDevicePath)?;
            path.clone_from(&self.value);
            if let Some(mirror) = same_entry(&mut settings.devices, i, |d| d.name == self.name) {
                mirror.path = Some(self.value.clone());
            }
        } else if config.args.name == self.name {
            self.check("value", &config.args.settable)?;
            settings.args = self.value.split(' ').map(str::to_owned).collect();
        } else {
            return Err(SetError::NotFound(self.name.clone()));
        }
        Ok(())
    }

    fn set_env(&self, env: &mut Vec<String>) {
        let entry = format!("{}={}", self.name, self.value);
        let existing = env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(self.name.as_str()));
        match existing {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
}

/// The first entry of a config list matching the name, with its index.
fn find_mut<T>(list: &mut Option<Vec<T>>, matches: impl Fn(&T) -> bool) -> Option<(usize, &mut T)> {
    list.as_mut()?
        .iter_mut()
        .enumerate()
        .find(|(_, entry)| matches(entry))
}

/// The settings entry mirroring config entry `i`: the same index if its name still matches, else
/// the first entry with that name.
fn same_entry<T>(list: &mut [T], i: usize, matches: impl Fn(&T) -> bool) -> Option<&mut T> {
    let index = match list.get(i) {
        Some(entry) if matches(entry) => i,
        _ => list.iter().position(&matches)?,
    };
    list.get_mut(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Device, Env, Mount};

    fn strings(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    /// env DEBUG (value), env MULTI (value+name), env FIXED (not settable), mount data (source),
    /// mount nosrc (source, null), device dev (path), device nopath (path, null), args (value).
    fn plugin() -> (PluginConfig, Settings) {
        let mut c = PluginConfig::default();
        let env = |name: &str, settable: &[&str]| Env {
            name: name.into(),
            value: Some("0".into()),
            settable: strings(settable),
            ..Env::default()
        };
        c.env = Some(vec![
            env("DEBUG", &["value"]),
            env("MULTI", &["value", "name"]),
            env("FIXED", &[]),
        ]);
        let mount = |name: &str, source: Option<&str>| Mount {
            name: name.into(),
            source: source.map(str::to_owned),
            destination: "/d".into(),
            settable: strings(&["source"]),
            ..Mount::default()
        };
        c.mounts = Some(vec![mount("data", Some("/old")), mount("nosrc", None)]);
        let device = |name: &str, path: Option<&str>| Device {
            name: name.into(),
            path: path.map(str::to_owned),
            settable: strings(&["path"]),
            ..Device::default()
        };
        c.linux.devices = Some(vec![
            device("dev", Some("/dev/null")),
            device("nopath", None),
        ]);
        c.args.name = "args".into();
        c.args.settable = strings(&["value"]);
        c.args.value = strings(&["-v"]);
        let s = Settings::initial(&c);
        (c, s)
    }

    fn set(args: &[&str]) -> Result<(PluginConfig, Settings), SetError> {
        let (mut c, mut s) = plugin();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        apply(&mut c, &mut s, &args).map(|()| (c, s))
    }

    #[track_caller]
    fn message(args: &[&str]) -> String {
        set(args).unwrap_err().to_string()
    }

    #[test]
    fn syntax_follows_dockerd() {
        let parsed = |a: &str| Set::parse(a).unwrap();
        let p = parsed("a=b=c");
        assert_eq!(
            (p.name.as_str(), p.field.as_str(), p.value.as_str()),
            ("a", "", "b=c")
        );
        let p = parsed("a.b.c=x.y");
        assert_eq!(
            (p.name.as_str(), p.field.as_str(), p.value.as_str()),
            ("a.b", "c", "x.y")
        );
        let p = parsed("novalue");
        assert_eq!((p.name.as_str(), p.value.as_str()), ("novalue", ""));
        let p = parsed(".hidden=1");
        assert_eq!((p.name.as_str(), p.field.as_str()), (".hidden", ""));
        let p = parsed("a.=1");
        assert_eq!((p.name.as_str(), p.field.as_str()), ("a", ""));
    }

    #[test]
    fn leading_equals_is_invalid_format() {
        assert_eq!(
            message(&["=x"]),
            "invalid format, must be <name>[.<field>][=<value>]"
        );
        // Checked for every argument before anything is looked up.
        assert_eq!(set(&["NOPE=1", "=x"]).unwrap_err(), SetError::InvalidFormat);
    }

    #[test]
    fn unknown_name_is_not_found() {
        assert_eq!(
            message(&["NOPE=1"]),
            "setting \"NOPE\" not found in the plugin configuration"
        );
        assert_eq!(
            message(&["data.x.source=/x"]),
            "setting \"data.x\" not found in the plugin configuration"
        );
    }

    #[test]
    fn several_settable_fields_need_one_named() {
        assert_eq!(
            message(&["MULTI=1"]),
            "multiple fields are settable, one must be specified"
        );
        let (_, s) = set(&["MULTI.value=1"]).unwrap();
        assert!(s.env.contains(&"MULTI=1".to_owned()));
        assert_eq!(message(&["MULTI.name=1"]), "\"MULTI.name\" is not settable");
    }

    #[test]
    fn not_settable_names_the_field_given_or_defaulted() {
        assert_eq!(message(&["FIXED=1"]), "\"FIXED\" is not settable");
        assert_eq!(
            message(&["DEBUG.source=1"]),
            "\"DEBUG.source\" is not settable"
        );
        assert_eq!(message(&["data.path=/x"]), "\"data.path\" is not settable");
        assert_eq!(
            message(&["args.source=x"]),
            "\"args.source\" is not settable"
        );
        // A single Settable entry supplies the field, so the message names it.
        let (mut c, mut s) = plugin();
        c.env.as_mut().unwrap()[0].settable = strings(&["name"]);
        let err = apply(&mut c, &mut s, &["DEBUG=1".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "\"DEBUG.name\" is not settable");
    }

    #[test]
    fn null_mount_source_and_device_path_cannot_be_set() {
        assert_eq!(message(&["nosrc=/x"]), "plugin config has no mount source");
        assert_eq!(
            message(&["nopath.path=/dev/x"]),
            "plugin config has no device path"
        );
    }

    #[test]
    fn env_replaces_or_appends_in_settings_only() {
        let (c, s) = set(&["DEBUG=1"]).unwrap();
        assert_eq!(s.env, ["DEBUG=1", "MULTI=0", "FIXED=0"]);
        assert_eq!(c, plugin().0);
        let (mut c, mut s) = plugin();
        s.env.clear();
        apply(&mut c, &mut s, &["DEBUG.value=a=b".to_owned()]).unwrap();
        assert_eq!(s.env, ["DEBUG=a=b"]);
    }

    #[test]
    fn mount_source_is_set_in_config_and_settings() {
        let (c, s) = set(&["data=/new"]).unwrap();
        assert_eq!(c.mounts.unwrap()[0].source.as_deref(), Some("/new"));
        assert_eq!(s.mounts[0].source.as_deref(), Some("/new"));
        let (c, s) = set(&["data.source="]).unwrap();
        assert_eq!(c.mounts.unwrap()[0].source.as_deref(), Some(""));
        assert_eq!(s.mounts[0].source.as_deref(), Some(""));
    }

    #[test]
    fn device_path_is_set_in_config_and_settings() {
        let (c, s) = set(&["dev.path=/dev/fuse"]).unwrap();
        assert_eq!(
            c.linux.devices.unwrap()[0].path.as_deref(),
            Some("/dev/fuse")
        );
        assert_eq!(s.devices[0].path.as_deref(), Some("/dev/fuse"));
    }

    #[test]
    fn settings_mirror_is_found_by_name_when_indexes_differ() {
        let (mut c, mut s) = plugin();
        s.devices.reverse();
        s.mounts.remove(0);
        let args = ["dev=/dev/zero".to_owned(), "data=/m".to_owned()];
        apply(&mut c, &mut s, &args).unwrap();
        assert_eq!(s.devices[1].path.as_deref(), Some("/dev/zero"));
        assert_eq!(s.devices[0].path, None, "nopath untouched");
        assert_eq!(s.mounts.len(), 1, "no settings entry is invented");
        assert_eq!(c.mounts.unwrap()[0].source.as_deref(), Some("/m"));
    }

    #[test]
    fn args_are_split_on_single_spaces() {
        let (c, s) = set(&["args=a b  c"]).unwrap();
        assert_eq!(s.args, ["a", "b", "", "c"]);
        assert_eq!(c.args.value, strings(&["-v"]));
        let (_, s) = set(&["args"]).unwrap();
        assert_eq!(s.args, [""]);
    }

    #[test]
    fn lookup_order_is_env_mounts_devices_args() {
        let (mut c, mut s) = plugin();
        let env = c.env.as_mut().unwrap();
        env[0].name = "data".into(); // an env named like the mount wins
        apply(&mut c, &mut s, &["data=/x".to_owned()]).unwrap();
        assert!(s.env.contains(&"data=/x".to_owned()));
        assert_eq!(
            c.mounts.as_ref().unwrap()[0].source.as_deref(),
            Some("/old")
        );
        c.args.name = "dev".into(); // a device named like the args wins
        apply(&mut c, &mut s, &["dev=/dev/x".to_owned()]).unwrap();
        assert_eq!(s.devices[0].path.as_deref(), Some("/dev/x"));
        assert_eq!(s.args, ["-v"]);
    }

    #[test]
    fn a_failing_argument_changes_nothing() {
        let (mut c, mut s) = plugin();
        let args = ["DEBUG=1", "data=/new", "dev=/dev/x", "args=z", "NOPE=1"];
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        assert!(apply(&mut c, &mut s, &args).is_err());
        assert_eq!((c, s), plugin());
    }

    #[test]
    fn messages_quote_like_go() {
        assert_eq!(
            go_quote("a\"b\\c\n\t\u{1}\u{7f}\u{85}é"),
            r#""a\"b\\c\n\t\x01\x7f\u0085é""#
        );
        assert_eq!(
            message(&["a\"b=1"]),
            r#"setting "a\"b" not found in the plugin configuration"#
        );
    }
}
