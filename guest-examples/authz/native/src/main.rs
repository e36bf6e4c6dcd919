//! `plugd-example-authz`: the example authorization policy as a native plugin binary, serving
//! Docker's plugin protocol on `/run/docker/plugins/authz.sock` (`Interface.Socket` of
//! `config-native.json`; `plugd_plugin_sdk::socket_path` lists the overrides).

#[cfg(target_arch = "wasm32")]
compile_error!(
    "plugd-example-authz-native is the native packaging; for wasm32 build plugd-example-authz"
);

// Included rather than depended on: the wasm crate is a `cdylib` (see the volume example).
#[path = "../../src/policy.rs"]
mod policy;

use std::process::ExitCode;

fn main() -> ExitCode {
    plugd_plugin_sdk::run_authz_plugin(policy::DenyPaths::from_env(), "authz.sock")
}
