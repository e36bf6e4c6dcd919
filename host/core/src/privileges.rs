//! Privileges a config implies, computed exactly as dockerd does, compared as multisets.
//!
//! `docker plugin install` shows these to the user and sends back the list the user accepted; the
//! pull is refused unless it matches what the config implies. dockerd compares them after sorting
//! with an unstable sort, so two `mount` entries can pair up differently when a client reorders
//! them: comparing as multisets is what that comparison means. (dockerd ≤ v29.3 also skipped the
//! first sorted entry; we compare every entry, as v29.4 does.)

use crate::config::{PluginConfig, Settings};
use crate::effective::Effective;
use serde::{Deserialize, Deserializer, Serialize};

/// One privilege, in the Engine API's shape (`GET /plugins/privileges`, the pull body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privilege {
    /// `network`, `mount`, `capabilities`, …: what the comparison keys on.
    #[serde(rename = "Name", alias = "name", default)]
    pub name: String,
    /// Human text; ignored by the comparison, so any client wording is accepted.
    #[serde(rename = "Description", alias = "description", default)]
    pub description: String,
    /// The granted values; compared as a sorted list. A client's `null` reads as `[]`.
    #[serde(
        rename = "Value",
        alias = "value",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub value: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn privilege(name: &str, description: &str, value: Vec<String>) -> Privilege {
    Privilege {
        name: name.to_owned(),
        description: description.to_owned(),
        value,
    }
}

/// dockerd's `computePrivileges` for a config as pulled (its settings still the initial copy), which
/// is what `install` shows before anything is set.
pub fn compute(config: &PluginConfig) -> Vec<Privilege> {
    of(&Effective::of(config, &Settings::initial(config)))
}

/// dockerd's `computePrivileges`, in its order: network, host ipc, host pid, one `mount` per mount
/// with a source, one `device` per device with a path, allow-all-devices, capabilities. The order
/// matters because the CLI prints the list as is for the user to accept. Read from the same
/// [`Effective`] the runtimes enforce, so the list shown is the one granted.
pub fn of(effective: &Effective) -> Vec<Privilege> {
    let mut out = Vec::new();
    let network = &effective.network;
    // "none" is listed although it grants nothing more than "bridge" does; dockerd lists it.
    if !matches!(network.as_str(), "" | "null" | "bridge") {
        out.push(privilege(
            "network",
            "permissions to access a network",
            vec![network.clone()],
        ));
    }
    let yes = || vec!["true".to_owned()];
    if effective.ipc_host {
        out.push(privilege(
            "host ipc namespace",
            "allow access to host ipc namespace",
            yes(),
        ));
    }
    if effective.pid_host {
        out.push(privilege(
            "host pid namespace",
            "allow access to host pid namespace",
            yes(),
        ));
    }
    for source in effective.mounts.iter().filter_map(|m| m.source.as_ref()) {
        out.push(privilege(
            "mount",
            "host path to mount",
            vec![source.clone()],
        ));
    }
    for path in effective.named_devices().filter_map(|d| d.path.as_ref()) {
        out.push(privilege(
            "device",
            "host device to access",
            vec![path.clone()],
        ));
    }
    if effective.allow_all_devices {
        out.push(privilege(
            "allow-all-devices",
            "allow 'rwm' access to all devices",
            yes(),
        ));
    }
    if !effective.capabilities.is_empty() {
        out.push(privilege(
            "capabilities",
            "list of additional capabilities required",
            effective.capabilities.clone(),
        ));
    }
    out
}

/// Whether two privilege lists grant the same: equal as multisets of `(Name, sorted Value)`,
/// `Description` ignored.
pub fn same(a: &[Privilege], b: &[Privilege]) -> bool {
    a.len() == b.len() && normalised(a) == normalised(b)
}

fn normalised(list: &[Privilege]) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = list
        .iter()
        .map(|p| {
            let mut value: Vec<&str> = p.value.iter().map(String::as_str).collect();
            value.sort_unstable();
            (p.name.as_str(), value)
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Device, Mount};

    fn names(list: &[Privilege]) -> Vec<&str> {
        list.iter().map(|p| p.name.as_str()).collect()
    }

    fn mount(source: Option<&str>) -> Mount {
        Mount {
            source: source.map(str::to_owned),
            ..Mount::default()
        }
    }

    fn everything() -> PluginConfig {
        let mut c = PluginConfig::default();
        c.network.kind = "host".into();
        c.ipc_host = true;
        c.pid_host = true;
        c.mounts = Some(vec![mount(Some("/a")), mount(None), mount(Some("/b"))]);
        let device = |p: Option<&str>| Device {
            path: p.map(str::to_owned),
            ..Device::default()
        };
        c.linux.devices = Some(vec![device(Some("/dev/fuse")), device(None)]);
        c.linux.allow_all_devices = true;
        c.linux.capabilities = Some(vec!["CAP_SYS_ADMIN".into(), "CAP_NET_ADMIN".into()]);
        c
    }

    #[test]
    fn order_and_shape_follow_dockerd() {
        let list = compute(&everything());
        assert_eq!(
            names(&list),
            [
                "network",
                "host ipc namespace",
                "host pid namespace",
                "mount",
                "mount",
                "device",
                "allow-all-devices",
                "capabilities"
            ]
        );
        assert_eq!(list[3].value, ["/a"]);
        assert_eq!(list[4].value, ["/b"]);
        assert_eq!(list[5].value, ["/dev/fuse"]);
        assert_eq!(list[7].value, ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
        let json = serde_json::to_value(&list[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Name": "network", "Description": "permissions to access a network", "Value": ["host"]})
        );
    }

    #[test]
    fn network_none_is_a_privilege_but_bridge_null_and_empty_are_not() {
        let mut c = PluginConfig::default();
        for (kind, expected) in [
            ("none", 1),
            ("host", 1),
            ("bridge", 0),
            ("null", 0),
            ("", 0),
        ] {
            c.network.kind = kind.into();
            let list = compute(&c);
            assert_eq!(list.len(), expected, "network type {kind:?}");
            if expected == 1 {
                assert_eq!(list[0].value, [kind]);
            }
        }
    }

    #[test]
    fn empty_capabilities_give_no_privilege() {
        let mut c = PluginConfig::default();
        c.linux.capabilities = Some(vec![]);
        assert!(compute(&c).is_empty());
    }

    #[test]
    fn same_is_a_multiset_comparison() {
        let computed = compute(&everything());
        let mut reordered = computed.clone();
        reordered.swap(3, 4); // the two mounts
        reordered.reverse();
        reordered[0].value.reverse(); // capabilities, now first
        for p in &mut reordered {
            p.description = "anything".into();
        }
        assert!(same(&computed, &reordered));

        let mut changed = reordered.clone();
        changed[4].value = vec!["/c".into()]; // a mount source
        assert!(!same(&computed, &changed));
        assert!(!same(&computed, &computed[1..]));
        let mut twice = computed.clone();
        twice[4] = twice[3].clone(); // same length, "/a" twice instead of "/a" and "/b"
        assert!(!same(&computed, &twice));
    }

    /// The docs show `vieux/sshfs` asking for network [host] and capabilities [CAP_SYS_ADMIN], but
    /// their example config.json puts `capabilities` at the top level, where it is dropped.
    #[test]
    fn docs_sshfs_example_asks_for_its_capability_only_under_linux() {
        let text = include_str!("../../../tests/fixtures/configs/seed-sshfs.json");
        let (config, _) = PluginConfig::parse(text.as_bytes()).unwrap();
        let shown = |list: &[Privilege]| -> Vec<(String, Vec<String>)> {
            list.iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect()
        };
        let network = ("network".to_owned(), vec!["host".to_owned()]);
        assert_eq!(shown(&compute(&config)), std::slice::from_ref(&network));
        let fixed = text
            .replace("\"capabilities\"", "\"linux\": {\"capabilities\"")
            .replace("]\n}", "]}\n}");
        let (config, warnings) = PluginConfig::parse(fixed.as_bytes()).unwrap();
        assert!(warnings.is_empty());
        let caps = ("capabilities".to_owned(), vec!["CAP_SYS_ADMIN".to_owned()]);
        assert_eq!(shown(&compute(&config)), [network, caps]);
    }

    /// The list shown is read from the model the runtimes enforce: a source or path `set` changed
    /// is the one listed.
    #[test]
    fn privileges_list_the_effective_sources_and_paths() {
        for (case, config, settings) in crate::effective::cases("/srv") {
            let effective = Effective::of(&config, &settings);
            let listed = |name: &str| -> Vec<String> {
                of(&effective)
                    .into_iter()
                    .filter(|p| p.name == name)
                    .flat_map(|p| p.value)
                    .collect()
            };
            let mounts = effective.mounts.iter().map(|m| &m.source);
            let devices = effective.devices.iter().map(|d| &d.path);
            for (name, values) in [
                ("mount", mounts.collect::<Vec<_>>()),
                ("device", devices.collect()),
            ] {
                let values: Vec<String> = values.into_iter().flatten().cloned().collect();
                assert_eq!(listed(name), values, "{case}: {name}");
            }
            assert_eq!(listed("capabilities"), effective.capabilities, "{case}");
        }
        let (_, config, settings) = crate::effective::cases("/srv").swap_remove(2);
        assert_eq!(
            of(&Effective::of(&config, &settings))[0].value,
            ["/srv/new"]
        );
    }

    #[test]
    fn client_json_with_lower_case_keys_and_null_value_is_read() {
        let p: Vec<Privilege> =
            serde_json::from_str(r#"[{"name":"network","Value":null}]"#).unwrap();
        assert_eq!(p[0], privilege("network", "", vec![]));
    }
}
