//! The native packaging as a host runs it: the real binary, its socket found the way a plugin
//! sandbox provides it, the example's answers over HTTP (the same ones plugd-wasm's guest test
//! expects from the wasm packaging), and a clean exit on SIGTERM.

#[path = "../../../sdk/tests/common/mod.rs"]
mod common;

use common::{Client, TempDir, wait_for_socket};
use serde_json::json;
use std::process::{Child, Command};

/// Kills the plugin if the test fails before stopping it.
struct Plugin(Child);

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_the_example_driver_and_stops_on_sigterm() {
    let dir = TempDir::new("native");
    let data = dir.0.join("data");
    std::fs::create_dir(&data).unwrap();
    let run = dir.0.join("run");
    // No argument and no $PLUGIN_SOCKET: the default name, volume.sock, in $SOCKET_DIR (in a
    // plugin sandbox: /run/docker/plugins, the default).
    let mut plugin = Plugin(
        Command::new(env!("CARGO_BIN_EXE_plugd-example-volume"))
            .env_remove("PLUGIN_SOCKET")
            .env("SOCKET_DIR", &run)
            .env("VOLUME_ROOT", &data)
            .spawn()
            .unwrap(),
    );
    let socket = run.join("volume.sock");
    wait_for_socket(&socket);
    let mut c = Client::connect(&socket);
    let at = |name: &str| data.join(name).to_str().unwrap().to_string();

    let r = c.call("/VolumeDriver.Capabilities", "{}");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Capabilities": {"Scope": "local"}}))
    );
    let r = c.call("/VolumeDriver.List", "");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Volumes": [], "Err": ""}))
    );
    let r = c.call("/VolumeDriver.Create", r#"{"Name":"v1","Opts":null}"#);
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    assert!(data.join("v1").is_dir());
    let r = c.call("/VolumeDriver.Create", r#"{"Name":"v1","Opts":{"a":"b"}}"#);
    assert_eq!(r.status, 200, "create is idempotent");

    for bad in ["../evil", "a/b", ".", "..", ""] {
        let body = json!({ "Name": bad }).to_string();
        let r = c.call("/VolumeDriver.Create", &body);
        assert_eq!(r.status, 500, "{bad:?}");
        assert_eq!(
            r.json()["Err"],
            format!("invalid volume name {bad:?}"),
            "{bad:?}"
        );
    }
    assert!(!dir.0.join("evil").exists());

    // After those errors, on the same connection:
    let r = c.call("/VolumeDriver.Get", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"Volume": {"Name": "v1", "Mountpoint": at("v1")}, "Err": ""})
        )
    );
    let r = c.call("/VolumeDriver.Mount", r#"{"Name":"v1","ID":"abc"}"#);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Mountpoint": at("v1"), "Err": ""}))
    );
    let r = c.call("/VolumeDriver.Path", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"Mountpoint": at("v1"), "Err": ""}))
    );
    let r = c.call("/VolumeDriver.Unmount", r#"{"Name":"v1","ID":"abc"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    c.call("/VolumeDriver.Create", r#"{"Name":"v2"}"#);
    let r = c.call("/VolumeDriver.List", "{}");
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"Volumes": [
                {"Name": "v1", "Mountpoint": at("v1")},
                {"Name": "v2", "Mountpoint": at("v2")},
            ], "Err": ""})
        )
    );
    let r = c.call("/VolumeDriver.Remove", r#"{"Name":"v1"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"Err": ""})));
    assert!(!data.join("v1").exists());
    let r = c.call("/VolumeDriver.Get", r#"{"Name":"v1"}"#);
    assert_eq!(
        (r.status, r.json()),
        (500, json!({"Err": "no such volume \"v1\""}))
    );

    let pid = plugin.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = plugin.0.wait().unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
    assert!(!socket.exists(), "the socket is removed");
    assert!(c.closed_by_server());
}
