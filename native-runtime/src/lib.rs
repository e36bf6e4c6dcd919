//! plugd's native runtime: runs a managed plugin's rootfs in plugd's own sandbox (namespaces,
//! capabilities, mounts, device cgroup), at parity with what dockerd + containerd + runc give it,
//! without an OCI runtime or a shim per plugin.
//!
//! The pieces, one module each:
//! - [`spec`]: the plugin → [`plugd_init::SandboxSpec`], by moby's rules;
//! - [`cgroup`]: the plugin's cgroup and device rules;
//! - `host`: what a plugin holds on the host (FIFOs, cgroup, rshared propagated mount, state);
//! - `launcher`: the sealed copy of `plugd-init` and the one thread that forks it;
//! - `process`: the plugin process by pidfd (signals, exit, reaping, start time);
//! - `instance`: readiness, health, stop; `forward`: protocol calls to the plugin's socket;
//! - `logrelay`: a log driver's FIFOs, relayed from the engine's into the sandbox;
//! - `logs`: the plugin's stdout/stderr → plugd's log; `propagation`: host-side mount
//!   propagation; `state`: `state.json`, for adoption after a plugd restart;
//! - `rootfs`: is the entrypoint there.
//!
//! ```no_run
//! # async fn demo(spec: plugd_core::PluginSpec) -> Result<(), Box<dyn std::error::Error>> {
//! use plugd_core::Runtime;
//! use plugd_native::NativeRuntime;
//! use std::time::Duration;
//!
//! let runtime = NativeRuntime::builder()
//!     .init_binary("/usr/libexec/plugd/plugd-init")
//!     .build()?; // seals the init binary, starts the launcher thread
//! runtime.prepare(&spec).await?; // at create / enable: refuse what cannot run
//! let instance = runtime.start(&spec).await?; // adopt or launch; returns once the socket answers
//! let reply = instance.call("VolumeDriver.List", bytes::Bytes::from_static(b"{}")).await;
//! assert_eq!(reply.status, 200);
//! instance.stop(Duration::from_secs(10)).await; // SIGTERM, SIGKILL, cleanup
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod cgroup;
mod forward;
mod host;
mod instance;
mod launcher;
mod logrelay;
mod logs;
mod process;
mod propagation;
mod rootfs;
mod runtime;
pub mod spec;
mod state;
#[cfg(test)]
mod testutil;

pub use forward::DEFAULT_CALL_TIMEOUT;
pub use launcher::is_static_elf;
pub use runtime::{BuildError, NativeRuntime, NativeRuntimeBuilder};

/// The runtime's name, as [`plugd_core::Runtime::name`] and [`plugd_core::RuntimeError`] give it.
pub const RUNTIME_NAME: &str = "native";
