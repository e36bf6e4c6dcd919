//! `plugd-example-network`: the example network driver as a native plugin binary, serving
//! Docker's plugin protocol on `/run/docker/plugins/net.sock`.

#[cfg(target_arch = "wasm32")]
compile_error!(
    "plugd-example-network-native is the native packaging; for wasm32 build plugd-example-network"
);

// The driver lives in the wasm crate (a `cdylib`), included rather than depended on.
#[path = "../../src/driver.rs"]
mod driver;

use std::process::ExitCode;

fn main() -> ExitCode {
    plugd_plugin_sdk::run_network_driver(driver::VethDriver::default(), "net.sock")
}
