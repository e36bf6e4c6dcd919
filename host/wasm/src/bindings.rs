//! Host bindings generated from `wit/` (world `docker:plugin/volume-plugin`), kept in one module so
//! the generated names do not leak into the rest of the crate.
//!
//! Exports are async: every call goes through `call_async` on a fiber, which is what lets epoch
//! interruption yield to tokio and lets a `tokio::time::timeout` drop a call that is blocked in a
//! host function.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "volume-plugin",
    path: "../../wit",
    exports: { default: async },
});

pub(crate) use docker::plugin::types::{Error as GuestError, ErrorCode};
pub(crate) use exports::docker::plugin::volume_driver::{Scope, Volume as GuestVolume};
