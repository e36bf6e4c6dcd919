//! An example authorization plugin for plugd, written once on `plugd-plugin-sdk` and packaged
//! twice: this crate is the wasm component (`plugd_example_authz.wasm`), `native/` the static
//! binary. The policy is [`DenyPaths`].

mod policy;

pub use policy::DenyPaths;

plugd_plugin_sdk::export_authorizer!(DenyPaths, DenyPaths::from_env());
