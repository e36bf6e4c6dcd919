//! The native packaging end to end: `serve_volume_driver` on a temp socket, driven with raw
//! HTTP/1.1 as dockerd sends it.

#![cfg(all(unix, not(target_arch = "wasm32")))]

mod common;

use common::{Client, MemoryDriver, TempDir, wait_for_socket};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Starts a server on `<dir>/plugin.sock` in a thread of its own; it lives as long as the test
/// process (only a signal stops it, see tests/sigterm.rs).
fn start(dir: &Path) -> PathBuf {
    let socket = dir.join("plugin.sock");
    let path = socket.clone();
    std::thread::spawn(move || {
        plugd_plugin_sdk::serve_volume_driver(MemoryDriver::default(), &path).unwrap()
    });
    wait_for_socket(&socket);
    socket
}

#[test]
fn one_keep_alive_connection_serves_every_endpoint() {
    let dir = TempDir::new("all");
    let socket = start(&dir.0);
    let mut c = Client::connect(&socket);

    // dockerd sends Activate with no body at all and List/Capabilities with `{}`.
    let r = c.call("/Plugin.Activate", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "application/vnd.docker.plugins.v1.1+json"
    );
    assert_eq!(r.json(), json!({"Implements": ["VolumeDriver"]}));
    let r = c.call("/VolumeDriver.Capabilities", "{}\n");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Capabilities": {"Scope": "local"}}))
    );
    let r = c.call("/VolumeDriver.List", "");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Volumes": [], "Err": ""}))
    );

    // Get fails, dockerd calls Create: the engine's volume-create sequence.
    let r = c.call("/VolumeDriver.Get", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (500, json!({"Err": "no such volume \"v1\""}))
    );
    let r = c.call("/VolumeDriver.Create", "{\"Name\":\"v1\",\"Opts\":null}\n");
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    let r = c.call(
        "/VolumeDriver.Create",
        r#"{"Name":"v2","Opts":{"size":"1G"}}"#,
    );
    assert_eq!(r.status, 200, "{:?}", r.json());

    // An error reply, then a success, on the same connection.
    let r = c.call(
        "/VolumeDriver.Create",
        r#"{"Name":"v3","Opts":{"bad":"x"}}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (500, json!({"Err": "unknown option \"bad\""}))
    );
    let r = c.call("/VolumeDriver.Get", r#"{"name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"Volume": {"Name": "v1", "Mountpoint": "/data/v1", "Status": {"mounts": "0"}}, "Err": ""})
        ),
        "a lower-case field name is read too"
    );

    let id = "a".repeat(64);
    let r = c.call(
        "/VolumeDriver.Mount",
        &format!(r#"{{"Name":"v1","ID":"{id}"}}"#),
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Mountpoint": "/data/v1", "Err": ""}))
    );
    let r = c.call("/VolumeDriver.Path", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Mountpoint": "/data/v1", "Err": ""}))
    );
    let r = c.call("/VolumeDriver.Remove", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (500, json!({"Err": "volume \"v1\" is in use"}))
    );
    let r = c.call(
        "/VolumeDriver.Unmount",
        &format!(r#"{{"Name":"v1","ID":"{id}"}}"#),
    );
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    let r = c.call("/VolumeDriver.List", "{}");
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"Volumes": [
                {"Name": "v1", "Mountpoint": "/data/v1"},
                {"Name": "v2", "Mountpoint": "/data/v2"},
            ], "Err": ""})
        )
    );
    let r = c.call("/VolumeDriver.Remove", r#"{"Name":"v1"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    let r = c.call("/VolumeDriver.Path", r#"{"Name":"v1"}"#);
    assert_eq!(r.status, 500);
    let r = c.call("/VolumeDriver.Capabilities", "{}");
    assert_eq!(r.status, 200, "the connection is still good after errors");
}

#[test]
fn protocol_errors_keep_the_connection() {
    let dir = TempDir::new("errors");
    let socket = start(&dir.0);
    let mut c = Client::connect(&socket);

    let r = c.call("/NetworkDriver.GetCapabilities", "");
    assert_eq!(r.status, 404);
    assert!(
        r.json()["Err"]
            .as_str()
            .unwrap()
            .contains("is not implemented"),
        "{:?}",
        r.json()
    );
    let r = c.call("/VolumeDriver.Get", "{oops");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["Err"]
            .as_str()
            .unwrap()
            .starts_with("VolumeDriver.Get: invalid request body")
    );
    c.send_raw(&Client::request_bytes("GET", "/VolumeDriver.List", ""));
    let r = c.read_response();
    assert_eq!(r.status, 405);
    assert!(r.json()["Err"].as_str().unwrap().contains("POST only"));

    // A panicking driver call fails that call only.
    let r = c.call("/VolumeDriver.Create", r#"{"Name":"panic"}"#);
    assert_eq!(
        (r.status, r.json()),
        (
            500,
            json!({"Err": "VolumeDriver.Create: the plugin panicked"})
        )
    );
    let r = c.call("/VolumeDriver.Create", r#"{"Name":"after"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));

    // Pipelined requests are answered in order; a chunked body is read like any other.
    let mut both = Client::request_bytes("POST", "/VolumeDriver.Get", r#"{"Name":"after"}"#);
    both.extend(Client::request_bytes(
        "POST",
        "/VolumeDriver.Get",
        r#"{"Name":"none"}"#,
    ));
    c.send_raw(&both);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().status, 500);
    let body = r#"{"Name":"after"}"#;
    c.send_raw(
        format!(
            "POST /VolumeDriver.Path HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Mountpoint": "/data/after", "Err": ""}))
    );
}

#[test]
fn stale_socket_is_replaced_and_a_live_one_is_refused() {
    let dir = TempDir::new("stale");
    let socket = dir.0.join("plugin.sock");
    // A socket file nobody listens on, as a killed plugin leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let live = start(&dir.0);
    assert_eq!(live, socket);
    let r = Client::connect(&socket).call("/VolumeDriver.List", "");
    assert_eq!(r.status, 200);

    let err = plugd_plugin_sdk::serve_volume_driver(MemoryDriver::default(), &socket).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    let r = Client::connect(&socket).call("/VolumeDriver.List", "");
    assert_eq!(r.status, 200, "the first server still owns its socket");

    let file = dir.0.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = plugd_plugin_sdk::serve_volume_driver(MemoryDriver::default(), &file).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
