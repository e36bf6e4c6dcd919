//! Host bindings generated from `wit/`, kept in one module so the generated names do not leak into
//! the rest of the crate.
//!
//! The host binds one world of its own that exports every driver interface; a component exports
//! only the ones its `Interface.Types` declare, and `drivers` locates just those (per interface,
//! never the world as a whole), so any combination of types works without a world per
//! combination on the host side. plugd's probe (`plugd check`) is one more export of that world,
//! located only in the probe component.
//!
//! Exports are async: every call goes through `call_async` on a fiber, which is what lets epoch
//! interruption yield to tokio and lets a `tokio::time::timeout` drop a call that is blocked in a
//! host function.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    inline: "
        package plugd:host;
        world any-plugin {
            export docker:plugin/volume-driver@0.1.0;
            export docker:plugin/authz@0.1.0;
            export docker:plugin/ipam-driver@0.1.0;
            export docker:plugin/network-driver@0.1.0;
            export docker:plugin/log-driver@0.1.0;
            import docker:plugin/host-links@0.1.0;
            export docker:plugin/metrics-collector@0.1.0;
            import docker:plugin/engine-metrics@0.1.0;
            export docker:plugin/probe@0.1.0;
        }
    ",
    path: "../../wit",
    world: "plugd:host/any-plugin",
    exports: { default: async },
});

pub(crate) use docker::plugin::engine_metrics;
pub(crate) use docker::plugin::host_links;
pub(crate) use docker::plugin::types::{Error as GuestError, ErrorCode};
pub(crate) use exports::docker::plugin::authz;
pub(crate) use exports::docker::plugin::ipam_driver;
pub(crate) use exports::docker::plugin::log_driver;
pub(crate) use exports::docker::plugin::metrics_collector;
pub(crate) use exports::docker::plugin::network_driver;
pub(crate) use exports::docker::plugin::probe;
pub(crate) use exports::docker::plugin::volume_driver;
