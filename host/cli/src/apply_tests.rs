use super::*;

const FILE: &str = "set.toml";

fn parsed(text: &str) -> Result<Desired, String> {
    parse(FILE, Path::new("/etc/plugd"), text)
}

/// A plugin as the daemon lists it: the static fixture's shape, with one settable env var.
fn obj(name: &str, reference: &str, enabled: bool, data_dir: &str) -> PluginObject {
    serde_json::from_value(serde_json::json!({
        "Config": {
            "Description": "", "Documentation": "",
            "Interface": {"Socket": "static.sock", "Types": ["docker.volumedriver/1.0"]},
            "Entrypoint": ["/static-plugin"], "WorkDir": "/",
            "Network": {"Type": "none"},
            "Env": [{"Name": "DATA_DIR", "Description": "", "Settable": ["value"], "Value": data_dir}],
            "Args": {"Name": "", "Description": "", "Settable": null, "Value": null},
            "Linux": {"Capabilities": null, "AllowAllDevices": false, "Devices": null},
            "Mounts": null, "PropagatedMount": "/data",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:00"]}
        },
        "Enabled": enabled,
        "Id": format!("{:064}", name.len()),
        "Name": name,
        "PluginReference": reference,
        "Settings": {"Args": [], "Devices": [], "Env": [format!("DATA_DIR={data_dir}")], "Mounts": []}
    }))
    .expect("a plugin object")
}

fn want(name: &str, reference: &str, enabled: bool, settings: &[&str]) -> Want {
    Want {
        name: name.into(),
        source: Source::Registry(reference.into()),
        enabled,
        privileges: Vec::new(),
        settings: settings.iter().map(|s| s.to_string()).collect(),
    }
}

fn planned(desired: &Desired, current: &[PluginObject]) -> Vec<String> {
    plan(FILE, desired, current, &Record::default(), &HashMap::new())
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn every_field_parses() {
    let d = parsed(
        r#"
prune = true

[[plugin]]
name = "vol"
reference = "127.0.0.1:5000/plugins/vol:v1"
enabled = false
privileges = [{ name = "network", value = ["host"] }, { name = "mount", value = ["/var/lib"] }]
settings = { DATA_DIR = "/x", "data.source" = "/srv" }

[[plugin]]
name = "acme/local:2"
bundle = "bundles/local"
"#,
    )
    .unwrap();
    assert!(d.prune);
    assert_eq!(d.plugins.len(), 2);
    let v = &d.plugins[0];
    assert_eq!(v.name, "vol:latest");
    assert_eq!(
        v.source,
        Source::Registry("127.0.0.1:5000/plugins/vol:v1".into())
    );
    assert!(!v.enabled);
    assert_eq!(v.privileges.len(), 2);
    assert_eq!(v.privileges[1].value, ["/var/lib"]);
    assert_eq!(v.settings, ["DATA_DIR=/x", "data.source=/srv"]);
    let l = &d.plugins[1];
    assert_eq!(l.name, "acme/local:2");
    assert_eq!(
        l.source,
        Source::Bundle(PathBuf::from("/etc/plugd/bundles/local"))
    );
    assert!(l.enabled, "enabled by default");
    assert!(l.privileges.is_empty() && l.settings.is_empty());
}

#[test]
fn references_are_kept_in_their_full_form() {
    let d = parsed("[[plugin]]\nname = \"a\"\nreference = \"vieux/sshfs\"\n").unwrap();
    assert_eq!(
        d.plugins[0].source,
        Source::Registry("docker.io/vieux/sshfs:latest".into())
    );
    let empty = parsed("").unwrap();
    assert!(!empty.prune && empty.plugins.is_empty());
}

#[test]
fn bad_files_are_refused_naming_the_file_plugin_and_field() {
    let err = |text: &str| parsed(text).unwrap_err();
    let e = err("[[plugin]]\nname = \"a\"\nreference = \"x\"\nenable = true\n");
    assert!(
        e.starts_with("set.toml: ") && e.contains("unknown field `enable`"),
        "{e}"
    );
    let e = err("prun = true\n");
    assert!(e.contains("unknown field `prun`"), "{e}");
    let e = err("[[plugin]]\nname = \"a\"\n");
    assert!(
        e.contains("plugin 1 (\"a\")") && e.contains("exactly one of"),
        "{e}"
    );
    let e = err("[[plugin]]\nname = \"a\"\nreference = \"x\"\nbundle = \"b\"\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("[[plugin]]\nname = \"A\"\nreference = \"x\"\n");
    assert!(e.contains("plugin 1 (\"A\"): name:"), "{e}");
    let e = err("[[plugin]]\nname = \"a\"\nreference = \"x::\"\n");
    assert!(e.contains("reference \"x::\""), "{e}");
    let e = err(&format!(
        "[[plugin]]\nname = \"a@sha256:{}\"\nreference = \"x\"\n",
        "0".repeat(64)
    ));
    assert!(e.contains("cannot have a digest"), "{e}");
    let e = err(
        "[[plugin]]\nname = \"a\"\nreference = \"x\"\n[[plugin]]\nname = \"a:latest\"\nbundle = \"b\"\n",
    );
    assert!(e.contains("plugin 2") && e.contains("named twice"), "{e}");
    let e = err("[[plugin]]\nname = \"a\"\nreference = \"x\"\nsettings = { \"=x\" = \"1\" }\n");
    assert!(e.contains("settings: \"=x\""), "{e}");
    let e = err("[[plugin]]\nname = \"a\"\nreference = \"x\"\nsettings = { N = 1 }\n");
    assert!(e.contains("invalid type: integer"), "{e}");
    let e = err(
        "[[plugin]]\nname = \"a\"\nreference = \"x\"\nprivileges = [{ name = \"network\", values = [] }]\n",
    );
    assert!(e.contains("unknown field `values`"), "{e}");
    let e = err("[[plugin]]\nname = \"a\"\nbundle = \"\"\n");
    assert!(e.contains("bundle: empty path"), "{e}");
}

#[test]
fn from_empty_everything_is_installed_set_and_enabled() {
    let d = Desired {
        prune: false,
        plugins: vec![
            want("a:latest", "r/a:v1", true, &["DATA_DIR=/x"]),
            want("b:latest", "r/b:v1", false, &[]),
        ],
    };
    assert_eq!(
        planned(&d, &[]),
        [
            "install a:latest from r/a:v1",
            "set a:latest DATA_DIR=/x",
            "enable a:latest",
            "install b:latest from r/b:v1",
        ]
    );
}

#[test]
fn a_node_as_the_file_says_needs_nothing() {
    let d = Desired {
        prune: true,
        plugins: vec![want(
            "a:latest",
            "docker.io/library/a:v1",
            true,
            &["DATA_DIR=/x"],
        )],
    };
    // The reference compares in normalised form.
    let current = [obj("a:latest", "a:v1", true, "/x")];
    assert!(planned(&d, &current).is_empty());
}

#[test]
fn changes_are_planned_in_order_with_removals_last() {
    let d = Desired {
        prune: true,
        plugins: vec![
            want("a:latest", "docker.io/library/a:v2", true, &["DATA_DIR=/y"]),
            want("b:latest", "docker.io/library/b:v1", false, &[]),
            want("c:latest", "docker.io/library/c:v1", true, &["DATA_DIR=/z"]),
        ],
    };
    let current = [
        obj("gone:latest", "gone:v1", true, "/data"),
        obj("a:latest", "a:v1", true, "/data"),
        obj("b:latest", "b:v1", true, "/data"),
        obj("c:latest", "c:v1", true, "/data"),
    ];
    assert_eq!(
        planned(&d, &current),
        [
            "upgrade a:latest from a:v1 to docker.io/library/a:v2",
            "set a:latest DATA_DIR=/y",
            "disable b:latest",
            "set c:latest DATA_DIR=/z",
            "disable gone:latest",
            "remove gone:latest",
        ]
    );
    // Without prune, a plugin the file does not name is left alone.
    let kept = Desired {
        prune: false,
        ..d.clone()
    };
    assert!(!planned(&kept, &current).iter().any(|s| s.contains("gone")));
}

#[test]
fn a_disabled_plugin_to_disable_and_set_is_not_enabled_on_the_way() {
    let d = Desired {
        prune: false,
        plugins: vec![want("a:latest", "a:v1", false, &["DATA_DIR=/y"])],
    };
    assert_eq!(
        planned(&d, &[obj("a:latest", "a:v1", true, "/x")]),
        ["disable a:latest", "set a:latest DATA_DIR=/y"]
    );
}

#[test]
fn settings_that_do_not_exist_fail_the_plan_naming_them() {
    let d = Desired {
        prune: false,
        plugins: vec![want("a:latest", "a:v1", true, &["NOPE=1"])],
    };
    let e = plan(
        FILE,
        &d,
        &[obj("a:latest", "a:v1", true, "/x")],
        &Record::default(),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "set.toml: plugin a:latest: settings: setting \"NOPE\" not found in the plugin configuration"
    );
}

#[test]
fn bundle_plugins_are_judged_by_the_recorded_id_and_digest() {
    let mut w = want("l:latest", "unused", true, &[]);
    w.source = Source::Bundle(PathBuf::from("/b"));
    let d = Desired {
        prune: false,
        plugins: vec![w],
    };
    let current = [obj("l:latest", "l:latest", true, "/data")];
    let digests = HashMap::from([("l:latest".to_string(), "sha256:1".to_string())]);
    let record = |id: &str, digest: &str| Record {
        bundles: BTreeMap::from([(
            "l:latest".to_string(),
            BundleRecord {
                id: id.into(),
                digest: digest.into(),
            },
        )]),
    };
    let steps = |r: &Record| -> Vec<String> {
        plan(FILE, &d, &current, r, &digests)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let id = current[0].id.clone();
    assert!(steps(&record(&id, "sha256:1")).is_empty());
    let replaced = [
        "disable l:latest",
        "remove l:latest",
        "create l:latest from bundle /b",
        "enable l:latest",
    ];
    assert_eq!(steps(&record(&id, "sha256:2")), replaced, "changed content");
    assert_eq!(
        steps(&record("other", "sha256:1")),
        replaced,
        "re-created by hand"
    );
    assert_eq!(steps(&Record::default()), replaced, "never recorded");
}

#[test]
fn restore_args_undo_exactly_what_differs() {
    let old = obj("a:latest", "a:v1", true, "/x");
    let now = obj("a:latest", "a:v1", true, "/y");
    assert_eq!(restore_args(&old.settings, &now), ["DATA_DIR=/x"]);
    assert!(restore_args(&old.settings, &old).is_empty());
}

#[test]
fn bundle_digests_follow_content_not_times() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path();
    fs::create_dir_all(b.join("rootfs/bin")).unwrap();
    fs::write(b.join("config.json"), "{}").unwrap();
    fs::write(b.join("rootfs/bin/p"), "one").unwrap();
    std::os::unix::fs::symlink("p", b.join("rootfs/bin/q")).unwrap();
    let first = bundle_digest(b).unwrap();
    assert!(first.starts_with("sha256:") && first.len() == 71);
    // Rewriting the same bytes (a new mtime) keeps the digest.
    fs::write(b.join("rootfs/bin/p"), "one").unwrap();
    assert_eq!(bundle_digest(b).unwrap(), first);
    fs::write(b.join("rootfs/bin/p"), "two").unwrap();
    let second = bundle_digest(b).unwrap();
    assert_ne!(second, first);
    fs::set_permissions(b.join("rootfs/bin/p"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(bundle_digest(b).unwrap(), second, "modes count");
}

#[test]
fn records_round_trip_and_are_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.json");
    assert_eq!(load_record(&path).unwrap(), Record::default());
    let r = Record {
        bundles: BTreeMap::from([(
            "l:latest".to_string(),
            BundleRecord {
                id: "i".into(),
                digest: "d".into(),
            },
        )]),
    };
    save_record(&path, &r).unwrap();
    assert_eq!(load_record(&path).unwrap(), r);
    fs::write(&path, "{\"bundles\":{},\"extra\":1}").unwrap();
    assert!(
        load_record(&path)
            .unwrap_err()
            .contains("not an apply record")
    );
}

/// The shipped Kubernetes manifest parses as YAML, and the plugin set its ConfigMap carries
/// parses with the real apply parser: the example cannot rot.
#[test]
fn the_shipped_daemonset_and_its_plugin_set_parse() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/plugd.yaml"
    );
    let text = fs::read_to_string(path).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .collect();
    let kind = |d: &serde_yaml::Value| d["kind"].as_str().unwrap_or("").to_string();
    let kinds: Vec<String> = docs.iter().map(kind).collect();
    assert!(kinds.contains(&"ConfigMap".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"DaemonSet".to_string()), "{kinds:?}");
    let cm = docs.iter().find(|d| kind(d) == "ConfigMap").unwrap();
    let set = cm["data"]["plugins.toml"]
        .as_str()
        .expect("the ConfigMap holds plugins.toml");
    let desired = parse("plugins.toml", Path::new("/etc/plugd"), set).unwrap();
    assert!(!desired.plugins.is_empty());
    let ds = docs.iter().find(|d| kind(d) == "DaemonSet").unwrap();
    let volumes = ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == cm["metadata"]["name"]),
        "the DaemonSet mounts the ConfigMap it ships"
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(1)
    );
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    let commands: Vec<String> = containers
        .iter()
        .map(|c| {
            serde_yaml::to_string(&c["command"]).unwrap()
                + &serde_yaml::to_string(&c["args"]).unwrap()
        })
        .collect();
    assert!(
        commands.iter().any(|c| c.contains("daemon")),
        "{commands:?}"
    );
    assert!(commands.iter().any(|c| c.contains("apply")), "{commands:?}");
}

#[test]
fn snapshots_are_exact_copies_checked_against_the_planned_digest() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    fs::write(bundle.join("config.json"), "{}").unwrap();
    fs::write(bundle.join("rootfs/etc/x"), "x").unwrap();
    fs::set_permissions(
        bundle.join("rootfs/etc/x"),
        fs::Permissions::from_mode(0o4750),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", bundle.join("rootfs/link")).unwrap();
    let state = dir.path().join("state.json");
    let digest = bundle_digest(&bundle).unwrap();
    let copy = snapshot(&state, &bundle, &digest).unwrap();
    assert_eq!(copy, snapshot_path(&state, &digest));
    assert_eq!(
        bundle_digest(&copy).unwrap(),
        digest,
        "modes and links kept"
    );
    assert_eq!(
        fs::read_link(copy.join("rootfs/link")).unwrap(),
        Path::new("/etc/passwd"),
        "a symlink is copied, never followed"
    );
    // A bundle that changed since it was planned is refused, and no copy of it is kept.
    fs::write(bundle.join("rootfs/etc/x"), "y").unwrap();
    let new = bundle_digest(&bundle).unwrap();
    let e = snapshot(&state, &bundle, "sha256:0").unwrap_err();
    assert!(e.contains("changed during the run"), "{e}");
    // Copies no recorded plugin uses are deleted; the recorded one stays.
    snapshot(&state, &bundle, &new).unwrap();
    let record = Record {
        bundles: BTreeMap::from([(
            "b:latest".to_string(),
            BundleRecord {
                id: "i".into(),
                digest: new.clone(),
            },
        )]),
    };
    prune_snapshots(&state, &record);
    assert!(snapshot_path(&state, &new).is_dir());
    assert!(!copy.exists());
    assert!(!snapshot_path(&state, "sha256:0").exists());
}

#[test]
fn a_second_run_is_refused_while_one_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let held = lock(&state).unwrap();
    let e = lock(&state).unwrap_err();
    assert!(e.contains("another plugd apply is running"), "{e}");
    drop(held);
    lock(&state).unwrap();
}
