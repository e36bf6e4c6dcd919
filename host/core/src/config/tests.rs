//! Parsing tests: the committed fixtures, Go's decoding rules, and warnings.
//! (Validation rules are tested next to them, in `validate.rs`.)

use super::*;
use serde_json::{Value, json};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/fixtures/configs/", $name))
    };
}

fn parse(text: &str) -> (PluginConfig, Vec<String>) {
    let (config, warnings) = PluginConfig::parse(text.as_bytes()).unwrap();
    (config, warnings.into_iter().map(|w| w.0).collect())
}

fn json_error(text: &str) -> String {
    match PluginConfig::parse(text.as_bytes()) {
        Err(ConfigError::Json(message)) => message,
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn seed_sshfs_parses_with_the_capabilities_hint() {
    let (config, warnings) = parse(fixture!("seed-sshfs.json"));
    assert_eq!(
        warnings,
        ["top-level `capabilities` is ignored; did you mean `linux.capabilities`?"]
    );
    // Docker drops it too: the plugin gets no CAP_SYS_ADMIN.
    assert_eq!(config.linux.capabilities, None);
    assert_eq!(config.network.kind, "host");
    assert_eq!(config.interface.socket, "sshfs.sock");
    assert_eq!(
        config.entrypoint,
        Some(vec!["/go/bin/docker-volume-sshfs".to_owned()])
    );
}

#[test]
fn seed_plugins_json_config_parses_with_hints_in_its_own_case() {
    let (config, warnings) = parse(fixture!("seed-plugins-json-config.json"));
    assert_eq!(
        warnings,
        [
            "top-level `Devices` is ignored; did you mean `Linux.Devices`?",
            "top-level `Capabilities` is ignored; did you mean `Linux.Capabilities`?",
        ]
    );
    assert_eq!(config.args, Args::default());
    assert_eq!(config.work_dir, "");
}

#[test]
fn seed_network_parses_with_an_unknown_key_warning() {
    let (config, warnings) = parse(fixture!("seed-network.json"));
    assert_eq!(
        warnings,
        ["top-level `ipam` is ignored: not a config.json key"]
    );
    assert_eq!(
        config.interface.types,
        Some(vec!["docker.networkdriver/1.0".to_owned()])
    );
}

#[test]
fn other_seeds_parse_without_warnings() {
    let seeds = [
        fixture!("seed-volume.json"),
        fixture!("seed-logging.json"),
        fixture!("seed-authz.json"),
        fixture!("seed-ipam.json"),
    ];
    for text in seeds {
        let (config, warnings) = parse(text);
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(config.network.kind, "host");
        assert!(config.linux.capabilities.is_some_and(|c| !c.is_empty()));
        assert!(
            config
                .mounts
                .is_some_and(|m| m.len() == 1 && m[0].source.is_some())
        );
    }
    let (volume, _) = parse(fixture!("seed-volume.json"));
    assert_eq!(
        volume.propagated_mount,
        "/var/lib/docker/plugins/myvolumeplugin/data"
    );
}

/// The docs' own `config.md` example declares a tmpfs mount without a source: dockerd creates it
/// and then fails every enable with "mount source is not specified". It decodes; we refuse it.
#[test]
fn seed_no_remove_decodes_but_fails_validation_on_its_sourceless_tmpfs() {
    let text = fixture!("seed-no-remove.json");
    let (config, warnings) = PluginConfig::decode(text.as_bytes()).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(config.args.value, Some(vec![]));
    assert_eq!(config.env.as_ref().unwrap()[0].value.as_deref(), Some("1"));
    let devices = config.linux.devices.as_ref().unwrap();
    assert_eq!(devices[0].path.as_deref(), Some("/dev/cpu_dma_latency"));
    match PluginConfig::parse(text.as_bytes()) {
        Err(ConfigError::Invalid { field, message }) => {
            assert_eq!(field, "Mounts[1].Source");
            assert!(message.contains("\"/foobar\""), "{message}");
            assert!(
                message.contains("has no source and `source` is not settable"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn without_docker_version(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove("DockerVersion");
    }
    v
}

#[test]
fn observed_configs_round_trip_to_dockerds_inspect_output() {
    let observed = [
        fixture!("observed-refvol.json"),
        fixture!("observed-bindmount.json"),
        fixture!("observed-device-fuse.json"),
        fixture!("observed-nocaps-netnone.json"),
        fixture!("observed-sysadmin-nethost.json"),
    ];
    for text in observed {
        let (config, warnings) = parse(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let captured: Value = serde_json::from_str(text).unwrap();
        let ours = serde_json::to_value(&config).unwrap();
        assert_eq!(
            without_docker_version(ours),
            without_docker_version(captured)
        );
    }
}

#[test]
fn initial_settings_match_the_captured_inspect_settings() {
    let (refvol, _) = parse(fixture!("observed-refvol.json"));
    let expected = json!({"Args": [], "Devices": [], "Mounts": [], "Env": [
        "REFVOL_LOG=/data/refvol-requests.jsonl", "REFVOL_DATA=/data",
        "REFVOL_IGNORE_TERM=0", "REFVOL_NO_LISTEN=0"]});
    assert_eq!(
        serde_json::to_value(Settings::initial(&refvol)).unwrap(),
        expected
    );

    let (bind, _) = parse(fixture!("observed-bindmount.json"));
    let settings = Settings::initial(&bind);
    assert_eq!(Some(settings.mounts), bind.mounts);
    assert_eq!(settings.env, ["PROBE_CASE=bindmount"]);

    let (fuse, _) = parse(fixture!("observed-device-fuse.json"));
    let settings = serde_json::to_value(Settings::initial(&fuse)).unwrap();
    let device = json!({"Description": "", "Name": "", "Path": "/dev/fuse", "Settable": null});
    assert_eq!(settings["Devices"], json!([device]));
}

#[test]
fn initial_settings_skip_null_env_values_and_are_never_null() {
    let mut config = PluginConfig::default();
    let env = |name: &str, value: Option<&str>| Env {
        name: name.into(),
        value: value.map(str::to_owned),
        ..Env::default()
    };
    config.env = Some(vec![
        env("A", Some("1")),
        env("B", None),
        env("C", Some("")),
    ]);
    config.args.value = Some(vec!["x".into(), "y".into()]);
    let settings = Settings::initial(&config);
    assert_eq!(settings.env, ["A=1", "C="]);
    assert_eq!(settings.args, ["x", "y"]);
    let empty = serde_json::to_value(Settings::initial(&PluginConfig::default())).unwrap();
    assert_eq!(
        empty,
        json!({"Args": [], "Devices": [], "Env": [], "Mounts": []})
    );
}

const PASCAL: &str = r#"{
  "Description": "d", "Documentation": "u", "Entrypoint": ["/p", "-v"], "WorkDir": "/w",
  "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock",
                "ProtocolScheme": "moby.plugins.http/v1"},
  "Network": {"Type": "host"}, "IpcHost": true, "PidHost": true, "PropagatedMount": "/data",
  "User": {"UID": 1, "GID": 2},
  "Mounts": [{"Name": "m", "Description": "md", "Settable": ["source"], "Source": "/s",
              "Destination": "/d", "Type": "bind", "Options": ["rbind"]}],
  "Env": [{"Name": "E", "Description": "ed", "Settable": ["value"], "Value": "v"}],
  "Args": {"Name": "a", "Description": "ad", "Settable": ["value"], "Value": ["x"]},
  "Linux": {"Capabilities": ["CAP_SYS_ADMIN"], "AllowAllDevices": true,
            "Devices": [{"Name": "dv", "Description": "dd", "Settable": ["path"], "Path": "/dev/x"}]},
  "rootfs": {"type": "layers", "diff_ids": ["sha256:0"]}
}"#;

#[test]
fn lower_case_and_pascal_case_give_equal_structs() {
    let lower = r#"{
      "description": "d", "documentation": "u", "entrypoint": ["/p", "-v"], "workdir": "/w",
      "interface": {"types": ["docker.volumedriver/1.0"], "socket": "p.sock",
                    "protocolscheme": "moby.plugins.http/v1"},
      "network": {"type": "host"}, "ipchost": true, "pidHost": true, "propagatedMount": "/data",
      "user": {"uid": 1, "gid": 2},
      "mounts": [{"name": "m", "description": "md", "settable": ["source"], "source": "/s",
                  "destination": "/d", "type": "bind", "options": ["rbind"]}],
      "env": [{"name": "E", "description": "ed", "settable": ["value"], "value": "v"}],
      "args": {"name": "a", "description": "ad", "settable": ["value"], "value": ["x"]},
      "linux": {"capabilities": ["CAP_SYS_ADMIN"], "allowAllDevices": true,
                "devices": [{"name": "dv", "description": "dd", "settable": ["path"], "path": "/dev/x"}]},
      "ROOTFS": {"TYPE": "layers", "Diff_IDs": ["sha256:0"]}
    }"#;
    let (pascal, w1) = parse(PASCAL);
    let (lower, w2) = parse(lower);
    assert!(w1.is_empty() && w2.is_empty(), "{w1:?} {w2:?}");
    assert_eq!(pascal, lower);
    assert_eq!(pascal.user.gid, Some(2));
    assert_eq!(pascal.rootfs.as_ref().unwrap().kind, "layers");
    // Go's fold also maps KELVIN SIGN to k and LONG S to s.
    let odd = PASCAL
        .replace("\"Network\"", "\"networ\u{212A}\"")
        .replace("\"Socket\"", "\"\u{17F}ocket\"");
    assert_eq!(parse(&odd).0, pascal);
}

#[test]
fn pascal_case_round_trips_to_the_same_json() {
    let (config, _) = parse(PASCAL);
    let input: Value = serde_json::from_str(PASCAL).unwrap();
    let output = serde_json::to_value(&config).unwrap();
    assert_eq!(output, input);
}

fn minimal(extra: &str) -> String {
    let base = r#""Entrypoint":["/p"],"Interface":{"Types":["docker.authz/1.0"],"Socket":"s"}"#;
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

#[test]
fn duplicate_keys_apply_in_document_order() {
    let (c, _) = parse(&minimal(r#""description":"a","Description":"b""#));
    assert_eq!(c.description, "b");
    let (c, _) = parse(&minimal(r#""Description":"b","description":"a""#));
    assert_eq!(c.description, "a");
    // A repeated struct merges into what was decoded so far, as Go does.
    let (c, _) = parse(&minimal(
        r#""Linux":{"AllowAllDevices":true},"linux":{"Capabilities":["CAP_BPF"]}"#,
    ));
    assert!(c.linux.allow_all_devices);
    assert_eq!(c.linux.capabilities, Some(vec!["CAP_BPF".to_owned()]));
    // A repeated list replaces.
    let (c, _) = parse(&minimal(r#""Entrypoint":["/q","x"]"#));
    assert_eq!(c.entrypoint, Some(vec!["/q".to_owned(), "x".to_owned()]));
}

#[test]
fn null_is_tolerated_everywhere_as_go_reads_it() {
    // The moby test fixture's shape, plus nulls in every non-pointer field.
    let text = minimal(
        r#""Env":null,"Mounts":null,"Args":{"Value":null,"Name":null},"Description":null,
        "IpcHost":null,"User":{"UID":null},"Linux":null,"Network":{"Type":null},"rootfs":null,
        "WorkDir":null,"PropagatedMount":null,"DockerVersion":null"#,
    );
    let (c, warnings) = parse(&text);
    assert!(warnings.is_empty());
    let expected = PluginConfig::parse(minimal("").as_bytes()).unwrap().0;
    assert_eq!(c, expected);
    // null after a value: clears a list or pointer, leaves a string alone.
    let (c, _) = parse(&minimal(
        r#""Description":"kept","Description":null,"Mounts":[],"Mounts":null"#,
    ));
    assert_eq!((c.description.as_str(), c.mounts), ("kept", None));
    // null elements are Go's zero values.
    let (c, _) = parse(&minimal(r#""Args":{"Value":["a",null]}"#));
    assert_eq!(c.args.value, Some(vec!["a".to_owned(), String::new()]));
    let (d, _) = PluginConfig::decode(minimal(r#""Mounts":[null]"#).as_bytes()).unwrap();
    assert_eq!(d.mounts, Some(vec![Mount::default()]));
    assert!(
        PluginConfig::parse(b"null").is_err(),
        "a null document decodes but is invalid"
    );
}

#[test]
fn go_omitempty_zero_values_are_not_re_emitted() {
    let (c, _) = parse(&minimal(r#""User":{"UID":0,"GID":0},"DockerVersion":"""#));
    assert_eq!(c.user, User::default());
    assert_eq!(c.docker_version, None);
    let out = serde_json::to_value(&c).unwrap();
    assert_eq!(out["User"], json!({}));
    assert!(out.get("DockerVersion").is_none());
}

#[test]
fn wrong_json_types_name_the_field() {
    let cases = [
        (
            r#"{"Interface":{"Socket":5}}"#,
            "`Interface.Socket` must be a string, not number 5",
        ),
        (
            r#"{"IpcHost":"true"}"#,
            "`IpcHost` must be a boolean, not string \"true\"",
        ),
        (
            r#"{"User":{"UID":-1}}"#,
            "`User.UID` must be an unsigned 32-bit integer, not number -1",
        ),
        (
            r#"{"user":{"uid":1.5}}"#,
            "`User.UID` must be an unsigned 32-bit integer, not number 1.5",
        ),
        (
            r#"{"Entrypoint":"/p"}"#,
            "`Entrypoint` must be an array of strings, not string \"/p\"",
        ),
        (
            r#"{"Entrypoint":["/p",1]}"#,
            "`Entrypoint[1]` must be a string, not number 1",
        ),
        (
            r#"{"linux":{"devices":[{"path":true}]}}"#,
            "`Linux.Devices[0].Path` must be a string, not true",
        ),
        (
            r#"{"Mounts":["/x"]}"#,
            "`Mounts[0]` must be an object, not string \"/x\"",
        ),
        (
            r#"{"Network":"host"}"#,
            "`Network` must be an object, not string \"host\"",
        ),
        ("[]", "the config must be a JSON object, not an array"),
    ];
    for (text, message) in cases {
        assert_eq!(json_error(text), message, "{text}");
        let display = PluginConfig::parse(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(display, format!("invalid config json: {message}"));
    }
    assert!(json_error("{").contains("EOF"));
}

#[test]
fn trailing_data_after_the_json_value_is_refused() {
    for text in [minimal("") + " {}", minimal("") + "x", minimal("") + "\n[]"] {
        let err = PluginConfig::parse(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid config json: trailing"), "{err}");
    }
    assert!(PluginConfig::parse((minimal("") + " \n\t").as_bytes()).is_ok());
}

#[test]
fn unknown_keys_warn_with_their_path_and_a_hint_where_one_exists() {
    let text = minimal(
        r#""devices":[],"Interface2":1,"linux":{"capability":[],"Capabilities":[],"socket":"x"},
        "Mounts":[{"Source":"/s","Destination":"/d","path":"/x","name":"m"}],"type":"host""#,
    );
    let (_, warnings) = parse(&text);
    assert_eq!(
        warnings,
        [
            "top-level `devices` is ignored; did you mean `linux.devices`?",
            "top-level `Interface2` is ignored: not a config.json key",
            "`Linux.capability` is ignored: not a config.json key",
            "`Linux.socket` is ignored; did you mean `interface.socket`?",
            "`Mounts[0].path` is ignored; did you mean `linux.devices[].path`?",
            // Network.Type, Mounts[].Type and rootfs.type: ambiguous, so no hint.
            "top-level `type` is ignored: not a config.json key",
        ]
    );
}

#[test]
fn settable_fields_docker_would_refuse_are_warned_about() {
    let text = minimal(
        r#""Env":[{"Name":"E","Settable":["value","name"]}],
        "Mounts":[{"Name":"m","Source":"","Destination":"/d","Settable":["source","destination"]}],
        "Linux":{"Devices":[{"Name":"d","Path":"","Settable":["path","Path"]}]},
        "Args":{"Name":"a","Settable":["values"]}"#,
    );
    let (_, warnings) = parse(&text);
    assert_eq!(
        warnings,
        [
            "`Env[0].Settable[1]` is \"name\", but only \"value\" can be set there; `docker plugin set` would refuse it",
            "`Mounts[0].Settable[1]` is \"destination\", but only \"source\" can be set there; `docker plugin set` would refuse it",
            "`Linux.Devices[0].Settable[1]` is \"Path\", but only \"path\" can be set there; `docker plugin set` would refuse it",
            "`Args.Settable[0]` is \"values\", but only \"value\" can be set there; `docker plugin set` would refuse it",
        ]
    );
}

#[test]
fn upgrade_carries_what_the_user_changed_and_nothing_else() {
    let parse = |json: &str| PluginConfig::parse(json.as_bytes()).unwrap().0;
    let old_config = parse(
        r#"{"Interface":{"Socket":"p.sock","Types":["docker.volumedriver/1.0"]},"Entrypoint":["/p"],
        "Env":[{"Name":"KEEP","Settable":["value"],"Value":"a"},
               {"Name":"DEFAULTED","Settable":["value"],"Value":"old-default"},
               {"Name":"TOKEN","Settable":["value"]},
               {"Name":"DROPPED","Settable":["value"],"Value":"x"}]}"#,
    );
    let new_config = parse(
        r#"{"Interface":{"Socket":"p.sock","Types":["docker.volumedriver/1.0"]},"Entrypoint":["/p"],
        "Env":[{"Name":"KEEP","Settable":["value"],"Value":"b"},
               {"Name":"DEFAULTED","Settable":["value"],"Value":"new-default"},
               {"Name":"TOKEN","Settable":["value"]},
               {"Name":"ADDED","Settable":["value"],"Value":"new"}]}"#,
    );
    let mut old = Settings::initial(&old_config);
    // The user set KEEP, TOKEN (declared without a value) and DROPPED; DEFAULTED is untouched.
    for e in &mut old.env {
        if e.starts_with("KEEP=") {
            *e = "KEEP=mine".into();
        }
        if e.starts_with("DROPPED=") {
            *e = "DROPPED=gone".into();
        }
    }
    old.env.push("TOKEN=secret".into());
    let carried = Settings::carried(&old, &old_config, &new_config);
    let mut env = carried.env.clone();
    env.sort();
    assert_eq!(
        env,
        [
            "ADDED=new",
            "DEFAULTED=new-default",
            "KEEP=mine",
            "TOKEN=secret"
        ]
    );
}
