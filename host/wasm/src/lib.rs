//! plugd's wasm runtime: runs a managed plugin whose entrypoint is a WebAssembly component
//! (exporting the `docker:plugin` interfaces of `wit/`) under wasmtime, in-process.
//!
//! The pieces, one module each:
//! - [`entrypoint`]: find `rootfs/<entrypoint[0]>` without leaving the rootfs, and tell a component
//!   from a core module or a native binary ([`entrypoint_kind`], [`is_component`]);
//! - `policy`: the plugin's declared privileges → a WASI context, deny by default, refusing
//!   by name whatever cannot be honoured (docs/privileges.md has the table);
//! - `engine`: the one [`wasmtime::Engine`] and its epoch ticker thread;
//! - `cache`: precompiled components on disk, keyed by content and engine;
//! - `view`: what a preopen really is: a detached `nodev` clone of the source's mount, without
//!   its submounts, so plugd's root privileges do not reach device nodes or procfs through it;
//! - `instance`: one long-lived component instance per enabled plugin on a thread of its own,
//!   replaced after a fault, its memories and tables capped together;
//! - `drivers`: which driver interfaces the component exports (from `Interface.Types`) and which
//!   one a call is for; for plugd's probe (`plugd check`, `WasmRuntime`'s `start_probe`), its one
//!   `Probe.Check` export, in a component run with the plugin's own policy and imports;
//! - `volume`: the volume-driver WIT interface ↔ plugd-core's protocol types;
//! - `authz`: the authz WIT interface ↔ plugd-core's protocol types;
//! - `network`: the network-driver WIT interface ↔ plugd-core's protocol types;
//! - `metrics`: the metrics-collector WIT interface ↔ plugd-core's protocol types, its tick
//!   schedule, and the `engine-metrics` import;
//! - `links`: the `host-links` import, veth pairs plugd makes for a network driver;
//! - `output`: guest stdout/stderr → plugd's log, bounded;
//! - `bindings`: the generated host bindings, quarantined.
//!
//! ```no_run
//! # async fn demo(spec: plugd_core::PluginSpec) -> Result<(), Box<dyn std::error::Error>> {
//! use plugd_core::Runtime;
//! use plugd_wasm::WasmRuntime;
//! use std::time::Duration;
//!
//! let runtime = WasmRuntime::builder()
//!     .cache_dir("/var/lib/plugd/wasm-cache")
//!     .call_timeout(Duration::from_secs(10))
//!     .memory_limit(128 << 20)
//!     .build()?;
//! runtime.prepare(&spec).await?; // at create / enable: refuse, compile, cache
//! let instance = runtime.start(&spec).await?; // at enable: instantiated = ready
//! let reply = instance.call("VolumeDriver.List", bytes::Bytes::from_static(b"{}")).await;
//! assert_eq!(reply.status, 200);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod authz;
mod bindings;
mod cache;
mod drivers;
mod engine;
pub mod entrypoint;
mod instance;
mod ipam;
mod links;
mod logdriver;
mod logstreams;
mod metrics;
mod network;
mod output;
mod policy;
mod runtime;
#[cfg(test)]
mod testutil;
mod view;
mod volume;

pub use entrypoint::{EntrypointKind, entrypoint_kind, is_component};
pub use runtime::{
    BuildError, DEFAULT_CALL_TIMEOUT, DEFAULT_MEMORY_LIMIT, PROBE_FILE, WasmRuntime,
    WasmRuntimeBuilder, default_probe_component,
};

/// The runtime's name, as [`plugd_core::Runtime::name`] and [`plugd_core::RuntimeError`] give it.
pub const RUNTIME_NAME: &str = "wasm";
