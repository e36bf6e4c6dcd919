//! SIGTERM stops the native server cleanly: `serve_volume_driver` returns `Ok`, the socket is
//! gone and idle keep-alive connections are closed. A test binary of its own, because the signal
//! goes to the whole process.

#![cfg(all(unix, not(target_arch = "wasm32")))]

mod common;

use common::{Client, MemoryDriver, TempDir, wait_for_socket};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn sigterm_removes_the_socket_and_returns_ok() {
    let dir = TempDir::new("term");
    let socket = dir.0.join("plugin.sock");
    let (done_tx, done) = mpsc::channel();
    let path = socket.clone();
    std::thread::spawn(move || {
        let result = plugd_plugin_sdk::serve_volume_driver(MemoryDriver::default(), &path);
        done_tx.send(result.map_err(|e| e.to_string())).unwrap();
    });
    wait_for_socket(&socket);
    let mut idle = Client::connect(&socket);
    assert_eq!(idle.call("/VolumeDriver.List", "").status, 200);

    // The server installs its handler before its socket appears, so this cannot kill the test.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());

    let result = done
        .recv_timeout(Duration::from_secs(10))
        .expect("the server stops within its grace period");
    assert_eq!(result, Ok(()));
    assert!(!socket.exists(), "the socket is removed");
    assert!(idle.closed_by_server(), "idle connections are closed");
}
