//! `plugd-example-ipam`: the example IPAM driver as a native plugin binary, serving Docker's
//! plugin protocol on `/run/docker/plugins/ipam.sock` (`Interface.Socket` of
//! `config-native.json`; `plugd_plugin_sdk::socket_path` lists the overrides).

#[cfg(target_arch = "wasm32")]
compile_error!(
    "plugd-example-ipam-native is the native packaging; for wasm32 build plugd-example-ipam"
);

// The driver lives in the wasm crate, one copy of the logic for both packagings; it is included
// rather than depended on because that crate is a `cdylib`.
#[path = "../../src/driver.rs"]
#[allow(dead_code)]
mod driver;

use std::process::ExitCode;

fn main() -> ExitCode {
    plugd_plugin_sdk::run_ipam_driver(driver::FilePools::from_env(), "ipam.sock")
}
