//! One test per validation rule: each asserts the JSON path of the field and that the message
//! quotes the offending value.

use super::validate::{CAPABILITIES, HTTP_SCHEME, NETWORK_TYPES, TYPE_CAPABILITIES};
use super::{ConfigError, PluginConfig};
use serde_json::{Value, json};

fn base() -> Value {
    json!({"Entrypoint": ["/p"], "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"}})
}

fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let slot = doc.pointer_mut(parent).unwrap();
    slot.as_object_mut().unwrap().insert(key.to_owned(), value);
    doc
}

fn check(doc: &Value) -> Result<(), ConfigError> {
    PluginConfig::parse(doc.to_string().as_bytes()).map(|_| ())
}

/// The failing field and message; every message must quote the offending value.
#[track_caller]
fn refused(doc: &Value, field: &str, quoted: &str) -> String {
    match check(doc) {
        Err(ConfigError::Invalid { field: f, message }) => {
            assert_eq!(f, field, "{message}");
            assert!(
                message.contains(quoted),
                "{message:?} does not quote {quoted:?}"
            );
            message
        }
        other => panic!("expected {field} to be refused, got {other:?}"),
    }
}

#[test]
fn base_is_valid() {
    check(&base()).unwrap();
}

#[test]
fn types_must_be_present() {
    refused(
        &with("/Interface/Types", json!(null)),
        "Interface.Types",
        "null",
    );
    refused(
        &with("/Interface/Types", json!([])),
        "Interface.Types",
        "[]",
    );
    let mut doc = base();
    doc["Interface"].as_object_mut().unwrap().remove("Types");
    refused(&doc, "Interface.Types", "null");
}

#[test]
fn every_known_type_is_accepted() {
    for cap in TYPE_CAPABILITIES {
        check(&with(
            "/Interface/Types",
            json!([format!("docker.{cap}/1.0"), "docker.authz/2.13"]),
        ))
        .unwrap();
    }
}

#[test]
fn mis_cased_type_suggests_the_lower_case_form() {
    let doc = with(
        "/Interface/Types",
        json!(["docker.authz/1.0", "Docker.VolumeDriver/1.0"]),
    );
    let m = refused(&doc, "Interface.Types[1]", "\"Docker.VolumeDriver/1.0\"");
    assert!(m.contains("case-sensitive"), "{m}");
    assert!(
        m.contains("did you mean \"docker.volumedriver/1.0\"?"),
        "{m}"
    );
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let m = refused(
        &with("/Interface/Types", json!(["docker.storage/1.0"])),
        "Interface.Types[0]",
        "\"docker.storage/1.0\"",
    );
    assert!(
        m.contains("docker.volumedriver, docker.networkdriver"),
        "{m}"
    );
    assert!(m.contains("docker.graphdriver"), "{m}");
}

#[test]
fn type_needs_the_docker_prefix_and_a_major_minor_version() {
    let m = refused(
        &with("/Interface/Types", json!(["volumedriver/1.0"])),
        "Interface.Types[0]",
        "\"volumedriver/1.0\"",
    );
    assert!(
        m.contains("prefix") && m.contains("\"docker.volumedriver/1.0\""),
        "{m}"
    );
    for bad in [
        "docker.volumedriver",
        "docker.volumedriver/1",
        "docker.volumedriver/v1.0",
    ] {
        let m = refused(
            &with("/Interface/Types", json!([bad])),
            "Interface.Types[0]",
            &format!("{bad:?}"),
        );
        assert!(m.contains("<major>.<minor>"), "{m}");
    }
}

#[test]
fn socket_must_be_a_plain_file_name() {
    refused(
        &with("/Interface/Socket", json!("")),
        "Interface.Socket",
        "\"\"",
    );
    refused(
        &with("/Interface/Socket", json!(null)),
        "Interface.Socket",
        "\"\"",
    );
    refused(
        &with("/Interface/Socket", json!("run/p.sock")),
        "Interface.Socket",
        "\"run/p.sock\"",
    );
    refused(
        &with("/Interface/Socket", json!("..")),
        "Interface.Socket",
        "\"..\"",
    );
    refused(
        &with("/Interface/Socket", json!(".")),
        "Interface.Socket",
        "\".\"",
    );
}

#[test]
fn protocol_scheme_must_be_http() {
    check(&with("/Interface/ProtocolScheme", json!(HTTP_SCHEME))).unwrap();
    check(&with("/Interface/ProtocolScheme", json!(""))).unwrap();
    let doc = with("/Interface/ProtocolScheme", json!("moby.plugins.grpc/v1"));
    refused(&doc, "Interface.ProtocolScheme", "\"moby.plugins.grpc/v1\"");
}

#[test]
fn entrypoint_must_be_present_without_empty_entries() {
    refused(&with("/Entrypoint", json!(null)), "Entrypoint", "null");
    refused(&with("/Entrypoint", json!([])), "Entrypoint", "[]");
    refused(
        &with("/Entrypoint", json!(["/p", ""])),
        "Entrypoint[1]",
        "\"\"",
    );
}

fn mount(source: Value, destination: &str, settable: Value) -> Value {
    with(
        "/Mounts",
        json!([{"Name": "m", "Source": source, "Destination": destination, "Settable": settable}]),
    )
}

#[test]
fn mount_destination_must_be_absolute_without_dot_dot() {
    check(&mount(json!("/s"), "/d/..x", json!(null))).unwrap();
    refused(
        &mount(json!("/s"), "d", json!(null)),
        "Mounts[0].Destination",
        "\"d\"",
    );
    refused(
        &mount(json!("/s"), "", json!(null)),
        "Mounts[0].Destination",
        "\"\"",
    );
    refused(
        &mount(json!("/s"), "/d/../etc", json!(null)),
        "Mounts[0].Destination",
        "\"/d/../etc\"",
    );
}

#[test]
fn mount_without_source_is_refused() {
    let m = refused(
        &mount(json!(null), "/d", json!(null)),
        "Mounts[0].Source",
        "null",
    );
    assert!(
        m.contains("has no source and `source` is not settable"),
        "{m}"
    );
    // Settable does not help: dockerd's set refuses a null source too.
    let m = refused(
        &mount(json!(null), "/d", json!(["source"])),
        "Mounts[0].Source",
        "null",
    );
    assert!(m.contains("plugin config has no mount source"), "{m}");
    check(&mount(json!(""), "/d", json!(["source"]))).unwrap();
}

fn device(path: Value, settable: Value) -> Value {
    with(
        "/Linux",
        json!({"Devices": [{"Name": "dev", "Path": path, "Settable": settable}]}),
    )
}

#[test]
fn device_needs_a_path_or_a_settable_one() {
    let m = refused(
        &device(json!(null), json!(null)),
        "Linux.Devices[0].Path",
        "null",
    );
    assert!(
        m.contains("`path` is not settable") && m.contains("panic"),
        "{m}"
    );
    let m = refused(
        &device(json!(null), json!(["path"])),
        "Linux.Devices[0].Path",
        "null",
    );
    assert!(m.contains("plugin config has no device path"), "{m}");
    refused(
        &device(json!(""), json!(null)),
        "Linux.Devices[0].Path",
        "\"\"",
    );
    check(&device(json!(""), json!(["path"]))).unwrap();
    check(&device(json!("/dev/fuse"), json!(null))).unwrap();
}

#[test]
fn device_path_must_be_absolute() {
    refused(
        &device(json!("dev/fuse"), json!(["path"])),
        "Linux.Devices[0].Path",
        "\"dev/fuse\"",
    );
    refused(
        &device(json!("/dev/../etc/x"), json!(null)),
        "Linux.Devices[0].Path",
        "\"/dev/../etc/x\"",
    );
}

#[test]
fn propagated_mount_must_be_absolute_when_set() {
    check(&with("/PropagatedMount", json!(""))).unwrap();
    check(&with("/PropagatedMount", json!("/data"))).unwrap();
    refused(
        &with("/PropagatedMount", json!("data")),
        "PropagatedMount",
        "\"data\"",
    );
    refused(
        &with("/PropagatedMount", json!("/data/../..")),
        "PropagatedMount",
        "\"/data/../..\"",
    );
}

#[test]
fn network_type_must_be_known() {
    for ok in NETWORK_TYPES {
        check(&with("/Network", json!({"Type": ok}))).unwrap();
    }
    let m = refused(
        &with("/Network", json!({"Type": "Host"})),
        "Network.Type",
        "\"Host\"",
    );
    assert!(m.ends_with("did you mean \"host\"?"), "{m}");
    refused(
        &with("/Network", json!({"Type": "overlay"})),
        "Network.Type",
        "\"overlay\"",
    );
}

#[test]
fn every_canonical_capability_is_accepted() {
    assert_eq!(CAPABILITIES.len(), 41);
    check(&with(
        "/Linux",
        json!({"Capabilities": CAPABILITIES.to_vec()}),
    ))
    .unwrap();
}

#[test]
fn non_canonical_capability_spellings_suggest_the_canonical_one() {
    for bad in [
        "sys_admin",
        "SYS_ADMIN",
        "cap_sys_admin",
        "Cap_Sys_Admin",
        "sys-admin",
    ] {
        let doc = with("/Linux", json!({"Capabilities": ["CAP_CHOWN", bad]}));
        let m = refused(&doc, "Linux.Capabilities[1]", &format!("{bad:?}"));
        assert!(m.contains("did you mean \"CAP_SYS_ADMIN\"?"), "{m}");
    }
}

#[test]
fn unknown_capability_is_refused() {
    let m = refused(
        &with("/Linux", json!({"Capabilities": ["CAP_FLY"]})),
        "Linux.Capabilities[0]",
        "\"CAP_FLY\"",
    );
    assert!(m.contains("not a Linux capability"), "{m}");
    refused(
        &with("/Linux", json!({"Capabilities": [null]})),
        "Linux.Capabilities[0]",
        "\"\"",
    );
}

#[test]
fn validate_is_callable_after_changes() {
    let (mut config, _) = PluginConfig::parse(base().to_string().as_bytes()).unwrap();
    config.propagated_mount = "rel".into();
    let err = config.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: PropagatedMount: \"rel\": must be an absolute path"
    );
}
